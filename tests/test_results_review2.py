"""nas-results after a second review of tabular strategy comparisons: the space's name, the best of
tied rewards, runs with no result or unreadable files, short notes, notes the table cannot show
(targets, an all-zero hypervolume), the notebook's notes, and regret against the benchmark's oracle.

Every run is a real tabular search (``nas-search`` in-process on a generated NAS-Bench-201-shaped
CSV, seconds each).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mobilenas.results import (
    compare_runs,
    comparison_notes,
    group_runs,
    load_run,
    load_runs,
    run_summary,
    summarize,
)
from mobilenas.results.cli import main as nas_results
from mobilenas.search.cli import main as nas_search
from mobilenas.space import CellSpace

from helpers import cell_search_args, execute_notebook, write_cell_benchmark


def _write_tied_benchmark(path: Path) -> None:
    """A NAS-Bench-201-shaped CSV whose reward column has few distinct values (as NB201's
    isomorphic cells share theirs), so many architectures tie on accuracy at other latencies."""
    space = CellSpace()
    rng = np.random.default_rng(3)
    rows = []
    for index, indices in enumerate(space.all_indices()):
        ops = np.asarray(indices)
        conv3, conv1 = int((ops == 3).sum()), int((ops == 2).sum())
        rows.append({"index": index, "arch_str": space.decode(indices), "val_acc_12ep": 60.0 + 5 * conv3,
                     "test_acc_200ep": 65.0 + 5 * conv3 + 2 * conv1 + round(float(rng.normal(0, 1)), 2),
                     "latency_ms_toy": 1 + 6 * conv3 + 0.5 * conv1 + abs(float(rng.normal(0, 0.5)))})
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.fixture(scope="module")
def runs(cells: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """random at 9 ms (seeds 0, 1), random at 12 ms, random on a tied benchmark, and random on
    another benchmark file of the same name (cells.csv)."""
    root = tmp_path_factory.mktemp("review2")
    made = {}
    for name, bench, extra in (
        ("r0", cells, ["--strategy", "random", "--seed", "0"]),
        ("r1", cells, ["--strategy", "random", "--seed", "1"]),
        ("r12", cells, ["--strategy", "random", "--seed", "0", "--target-latency", "12ms"]),
    ):
        assert nas_search(cell_search_args(bench, root / name, "--samples", "30", *extra)) == 0
        made[name] = root / name
    tied = root / "tied" / "cells.csv"
    tied.parent.mkdir()
    _write_tied_benchmark(tied)
    assert nas_search(cell_search_args(tied, root / "tie", "--samples", "60", "--strategy", "random", "--reward", "hard")) == 0
    made["tie"] = root / "tie"
    other = root / "other" / "cells.csv"  # same file name, other values
    other.parent.mkdir()
    write_cell_benchmark(other, seed=1)
    assert nas_search(cell_search_args(other, root / "other-run", "--samples", "30", "--strategy", "random", "--seed", "1")) == 0
    made["other"] = root / "other-run"
    made["tied_csv"] = tied
    return made


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


# ----------------------------------------------------------------------------- 1.4 the space


def test_a_tabular_runs_space_is_named_not_unreadable(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the cell space went to the network-space parser: "space nb201 (unreadable)" for every tabular run
    assert load_run(runs["r0"]).space_identity == "nb201"
    assert nas_results(["show", str(runs["r0"])]) == 0
    out = capsys.readouterr().out
    assert "tabular problem, space nb201, strategy random" in out and "unreadable" not in out
    edited = _copy(runs["r0"], tmp_path / "edited")
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["space"]["operations"] = manifest["space"]["operations"][1:]  # an edited copy of nb201
    (edited / "manifest.json").write_text(json.dumps(manifest))
    fingerprint = CellSpace.from_dict(manifest["space"]).fingerprint()[:8]
    assert load_run(edited).space_identity == f"nb201 (edited copy {fingerprint})"
    assert load_run(edited).problem_axes()["space"] == f"nb201 (edited copy {fingerprint})"  # another problem than nb201's


# ----------------------------------------------------------------------------- 1.1 ties


def test_of_tied_rewards_the_best_is_the_faster(runs: dict[str, Path]) -> None:
    run = load_run(runs["tie"])
    ok = run.candidates()
    top = ok[ok["reward"] == ok["reward"].max()]
    # the test means something: several trials tie, and the first of them is not the fastest
    assert len(top) > 1 and top["latency_ms"].iloc[0] > top["latency_ms"].min()
    summary = run_summary(run)
    fastest = top.sort_values("latency_ms", kind="stable").iloc[0]
    assert summary["best_number"] == int(fastest["number"])
    assert summary["best_latency_ms"] == pytest.approx(float(fastest["latency_ms"]))
    # "best" and "within target" now name one network (the hard reward: the best is within the target)
    assert summary["best_number"] == summary["best_feasible_number"]


# ----------------------------------------------------------------------------- 1.2 empty runs


def test_a_run_with_no_candidate_has_no_hypervolume_and_means_say_over_how_many(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(runs["r1"] / "manifest.json", empty / "manifest.json")  # a run that has no result yet
    loaded = load_runs([runs["r0"], empty])
    table = compare_runs(loaded)
    assert math.isnan(table.loc[1, "hypervolume"]) and math.isnan(table.loc[1, "hypervolume_normalised"])  # was 0.0
    grouped = summarize(table).set_index("strategy")
    assert grouped.loc["random", "runs"] == 2
    assert grouped.loc["random", "hypervolume_normalised_runs"] == 1 and grouped.loc["random", "best_reward_runs"] == 1
    assert grouped.loc["random", "hypervolume_normalised_mean"] == pytest.approx(table.loc[0, "hypervolume_normalised"])  # not halved by a 0
    assert nas_results(["compare", str(runs["r0"]), str(empty), "--out", str(tmp_path / "f.png")]) == 0
    captured = capsys.readouterr()
    assert "(1 of 2)" in captured.out
    assert "note: run empty has no successful trial: it is shown as '-' and left out of the means" in captured.err


# ----------------------------------------------------------------------------- 1.3 unreadable files


def test_unreadable_or_missing_trials_are_said_not_shown_as_an_empty_search(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = _copy(runs["r1"], tmp_path / "garbage")
    (garbage / "trials.csv").write_text("garbage,,,\n")
    (garbage / "events.jsonl").unlink()
    both = _copy(runs["r1"], tmp_path / "both")
    (both / "trials.csv").unlink()
    (both / "events.jsonl").unlink()
    assert load_run(garbage).results_unread is not None and load_run(garbage).results_unread.startswith("trials.csv is unreadable")
    assert load_run(both).results_unread == "trials.csv and events.jsonl are missing"
    assert load_run(runs["r1"]).results_unread is None
    best = json.loads((runs["r1"] / "best.json").read_text())
    for run, words in ((garbage, "trials.csv is unreadable"), (both, "trials.csv and events.jsonl are missing")):
        assert nas_results(["show", str(run)]) == 0
        out = capsys.readouterr().out
        assert f"  unreadable      {words}" in out
        assert "no successful trial yet" not in out and f"best.json names trial #{best['number']}" in out
        for command in (["plot", str(run), "--out", str(tmp_path / "p.png")], ["figures", str(run), "--out", str(tmp_path / "figs")]):
            assert nas_results(command) == 2
            err = capsys.readouterr().err
            assert words in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "p.png").exists() and not (tmp_path / "figs").exists()
    assert nas_results(["compare", str(runs["r0"]), str(garbage), "--out", str(tmp_path / "f.png")]) == 0
    err = capsys.readouterr().err
    assert "note: run garbage: trials.csv is unreadable" in err and "left out of the means" in err


# ----------------------------------------------------------------------------- 2.1 short notes


def test_a_missing_journal_is_called_missing_and_compare_notes_are_short(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gone = _copy(runs["r1"], tmp_path / "gone")
    (gone / "events.jsonl").unlink()
    assert nas_results(["show", str(gone)]) == 0
    out = capsys.readouterr().out
    assert "events.jsonl is missing" in out and "holds 0 events" not in out and "cut short, replaced or damaged" not in out
    cut = _copy(runs["r1"], tmp_path / "cut")
    lines = (cut / "events.jsonl").read_text().splitlines(keepends=True)
    (cut / "events.jsonl").write_text("".join(lines[: len(lines) // 2]))  # a resume refuses it
    assert nas_results(["compare", str(runs["r0"]), str(gone), str(cut), "--out", str(tmp_path / "f.png")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    unfinished = [n for n in notes if "not finished" in n]
    assert len(unfinished) == 1 and "cut (" in unfinished[0] and f"refused: see nas-results show {cut}" in unfinished[0]  # the path: a command, not a label
    gone_note = [n for n in notes if n.startswith("note: run gone:")]
    assert len(gone_note) == 1 and "events.jsonl is missing" in gone_note[0] and f"see nas-results show {gone}" in gone_note[0]
    assert all(len(n.replace(str(tmp_path), "")) < 200 for n in notes), notes  # were over 600 characters


# ----------------------------------------------------------------------------- 2.2 / 2.4 notes


def test_compare_notes_other_targets_and_an_all_zero_hypervolume(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert nas_results(["compare", str(runs["r0"]), str(runs["r12"]), "--out", str(tmp_path / "f.png")]) == 0
    err = capsys.readouterr().err
    assert "note: these runs have different targets (9.00 ms: r0; 12.00 ms: r12)" in err and "accuracy 0, 24.00 ms" in err
    assert nas_results(["compare", str(runs["r0"]), str(runs["r1"]), "--reference-point", "0.99,0.001ms", "--out", str(tmp_path / "g.png")]) == 0
    err = capsys.readouterr().err
    assert "note: every hypervolume is 0" in err and "more accurate than 0.99 and faster than" in err
    assert nas_results(["compare", str(runs["r0"]), str(runs["r1"]), "--out", str(tmp_path / "h.png")]) == 0
    assert "different targets" not in capsys.readouterr().err


def test_compare_refuses_an_out_in_a_folder_that_does_not_exist(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "no" / "such" / "q.png"
    assert nas_results(["compare", str(runs["r0"]), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"the folder {out.parent} does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "no").exists()


def test_two_benchmarks_of_one_file_name_are_two_problems(runs: dict[str, Path]) -> None:
    loaded = load_runs([runs["r1"], runs["other"]])
    groups = group_runs(loaded, compare_runs(loaded))
    assert groups.problems == {"r1": 1, "other-run": 2}
    assert groups.note is not None and "benchmark: cells.csv (sha256 " in groups.note


# ----------------------------------------------------------------------------- 2.3 the notebook's notes


def test_the_notes_are_a_function_the_notebook_calls(runs: dict[str, Path], tmp_path: Path) -> None:
    cut = _copy(runs["r1"], tmp_path / "cut")
    lines = (cut / "events.jsonl").read_text().splitlines(keepends=True)
    (cut / "events.jsonl").write_text("".join(lines[: len(lines) // 2]))
    manifest = json.loads((cut / "manifest.json").read_text())
    manifest["config"]["samples"] = 300  # pooled with a 30-sample run
    (cut / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_runs([runs["r0"], cut])
    groups = group_runs(loaded, compare_runs(loaded))
    notes = comparison_notes(loaded, groups.table, groups.by)
    assert any(n.startswith("1 run not finished: cut (") for n in notes)
    assert "group random pools runs of different --samples (30, 300); give --by strategy,samples to keep them apart" in notes
    notebook = json.loads((Path(__file__).parents[1] / "results" / "pareto.ipynb").read_text())
    assert any("results.comparison_notes(runs, groups.table, groups.by)" in "".join(c["source"]) for c in notebook["cells"])


@pytest.mark.slow
def test_the_notebook_prints_the_notes_and_takes_a_folder_with_a_colon(runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    from mobilenas.results import notebook_path

    colon = _copy(runs["r1"], tmp_path / "runs" / "h-greedy.py:Greedy-s1")
    cut = _copy(runs["r1"], tmp_path / "runs" / "cut")
    lines = (cut / "events.jsonl").read_text().splitlines(keepends=True)
    (cut / "events.jsonl").write_text("".join(lines[: len(lines) // 2]))
    monkeypatch.setenv("MOBILENAS_RUN", str(runs["r0"]))
    monkeypatch.setenv("MOBILENAS_COMPARE", f"{colon},{cut}")
    monkeypatch.setenv("MOBILENAS_FIGURES", str(tmp_path / "figures"))
    notebook = execute_notebook(notebook_path("pareto"), tmp_path)
    text = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "note: 1 run not finished: cut (" in text
    assert "h-greedy.py:Greedy-s1" in "".join(json.dumps(o.get("data", {})) + o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))


# ----------------------------------------------------------------------------- 3 regret


def test_compare_gives_the_oracle_and_each_runs_regret(runs: dict[str, Path], cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(cells)
    oracle_9 = float(frame.loc[frame["latency_ms_toy"] <= 9.0, "test_acc_200ep"].max()) / 100
    oracle_12 = float(frame.loc[frame["latency_ms_toy"] <= 12.0, "test_acc_200ep"].max()) / 100
    table = compare_runs(load_runs([runs["r0"], runs["r12"]]))
    assert list(table["oracle_final_accuracy"]) == pytest.approx([oracle_9, oracle_12])
    assert list(table["regret_pp"]) == pytest.approx(list(100 * (table["oracle_final_accuracy"] - table["best_feasible_final_accuracy"])))
    assert (table["regret_pp"] >= 0).all() and table["regret_pp"].notna().all()
    assert nas_results(["compare", str(runs["r0"]), str(runs["r1"]), "--out", str(tmp_path / "f.png"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert all(row["oracle_final_accuracy"] == pytest.approx(oracle_9) for row in printed["runs"])
    assert printed["groups"][0]["regret_pp_mean"] == pytest.approx(float(np.mean([row["regret_pp"] for row in printed["runs"]])))
    assert nas_results(["compare", str(runs["r0"]), str(runs["r1"]), "--out", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    assert "regret (pp)" in out and f"{oracle_9:.4f} within 9.00 ms" in out
    # the benchmark moved: no regret, and a note saying why
    moved = _copy(runs["tie"], tmp_path / "tie")
    shutil.move(str(runs["tied_csv"]), str(tmp_path / "moved.csv"))
    try:
        table = compare_runs(load_runs([moved]))
        assert math.isnan(table.loc[0, "regret_pp"]) and "is not there" in table.loc[0, "oracle_unavailable"]
        assert nas_results(["compare", str(moved), "--out", str(tmp_path / "g.png")]) == 0
        assert "note: regret n/a for tie: its benchmark" in capsys.readouterr().err
    finally:
        shutil.move(str(tmp_path / "moved.csv"), str(runs["tied_csv"]))
    assert os.path.isfile(runs["tied_csv"])
