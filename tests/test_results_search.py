"""mobilenas.results on real tabular searches: loading, fronts, comparisons, the CLI, the notebook.

The runs are made by ``nas-search`` in-process on a generated NAS-Bench-201-shaped CSV
(seconds each), so every figure here is checked against what the search itself wrote.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mobilenas.results import (
    NotARunError,
    ReferencePoint,
    SearchResults,
    compare_runs,
    find_runs,
    hypervolume,
    load_run,
    load_runs,
    pareto_front,
    run_summary,
    summarize,
)
from mobilenas.results.cli import main as nas_results
from mobilenas.results.plots import plot_convergence
from mobilenas.search.base import EARLY_STOPPED
from mobilenas.search.cli import main as nas_search
from mobilenas.search.pareto import hypervolume as reference_hypervolume

from helpers import execute_notebook, write_cell_benchmark

TARGET_MS = 9.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three tabular searches: ppo and random over two seeds, 30 trials each."""
    root = tmp_path_factory.mktemp("runs")
    cells = root / "cells.csv"
    write_cell_benchmark(cells)
    made = {}
    for name, strategy, seed in (("ppo-0", "ppo", 0), ("random-0", "random", 0), ("random-1", "random", 1)):
        out = root / name
        code = nas_search([
            "--space", "nb201", "--benchmark", str(cells), "--latency-column", "latency_ms_toy", "--target-latency", f"{TARGET_MS}ms",
            "--strategy", strategy, "--seed", str(seed), "--samples", "30", "--out", str(out), "--quiet",
        ])
        assert code == 0
        made[name] = out
    return made


def test_load_matches_what_the_search_wrote(runs: dict[str, Path]) -> None:
    run = load_run(runs["ppo-0"])
    assert isinstance(run, SearchResults) and run.kind == "search"
    assert run.strategy == "ppo" and run.seed == 0 and run.target_latency_ms == TARGET_MS and run.problem == "tabular"
    written = pd.read_csv(runs["ppo-0"] / "trials.csv")
    assert len(run.trials) == len(written)
    merged = run.trials.merge(written, on=["number", "source"], suffixes=("", "_csv"))
    assert len(merged) == len(written)
    np.testing.assert_allclose(merged["accuracy"], merged["accuracy_csv"])
    np.testing.assert_allclose(merged["reward"], merged["reward_csv"])
    assert list(run.trials["order"]) == list(range(len(run.trials)))
    # A tabular benchmark's latency is itself a measurement.
    np.testing.assert_allclose(run.trials["measured_latency_ms"], run.trials["latency_ms"])
    best = json.loads((runs["ppo-0"] / "best.json").read_text())
    summary = run_summary(run)
    assert summary["best_reward"] == pytest.approx(best["reward"]) and summary["best_number"] == best["number"]
    assert summary["trained"] == 30 and summary["space"] == "nb201"
    # PPO reports its entropy after every trained result.
    assert len(run.strategy_log) == 30 and run.strategy_log["entropy"].notna().all()
    assert set(run.strategy_log["number"]) == set(run.trained()["number"])
    assert len(run.proposals[run.proposals["source"] == "trained"]) == 30


def test_pareto_front_is_the_one_the_search_wrote(runs: dict[str, Path]) -> None:
    for path in runs.values():
        front = pareto_front(load_run(path))
        written = pd.read_csv(path / "pareto.csv")
        assert sorted(front["number"]) == sorted(written["number"])
        assert list(front["front_latency_ms"]) == sorted(front["front_latency_ms"])
        assert front["accuracy"].is_monotonic_increasing  # along a front, slower must mean more accurate


def test_hypervolume_uses_the_shared_reference_point(runs: dict[str, Path]) -> None:
    run = load_run(runs["random-1"])
    candidates = run.candidates()
    default = ReferencePoint(0.0, 2 * TARGET_MS)
    expected = reference_hypervolume(candidates["accuracy"], candidates["latency_ms"], (0.0, 2 * TARGET_MS))
    assert hypervolume(run) == pytest.approx(expected) and expected > 0
    custom = ReferencePoint(0.65, 12.0)
    assert hypervolume(run, custom) == pytest.approx(reference_hypervolume(candidates["accuracy"], candidates["latency_ms"], (0.65, 12.0)))
    summary = run_summary(run, default)
    assert summary["hypervolume_normalised"] == pytest.approx(expected / (2 * TARGET_MS))
    # With accuracy 0 as reference, the normalised hypervolume is the mean best accuracy over budgets 0..2T.
    budgets = np.linspace(0, 2 * TARGET_MS, 20001)[1:]
    best_within = [candidates.loc[candidates["latency_ms"] <= b, "accuracy"].max() for b in budgets]
    assert summary["hypervolume_normalised"] == pytest.approx(np.nanmean(np.nan_to_num(best_within, nan=0.0)), abs=2e-3)


def test_the_library_takes_runs_as_folders_and_reference_points_as_pairs_or_text(runs: dict[str, Path]) -> None:
    """What a notebook types: a run's folder, ``(0, 10)`` or ``"0,10ms"``; these had ended in
    AttributeErrors deep inside (``'tuple' object has no attribute 'as_tuple'``)."""
    from mobilenas.results import best_so_far, compare_runs

    run = load_run(runs["random-1"])
    custom = ReferencePoint(0.65, 12.0)
    assert hypervolume(run, (0.65, 12.0)) == hypervolume(run, "0.65,12ms") == hypervolume(str(runs["random-1"]), custom) == hypervolume(run, custom) > 0
    pd.testing.assert_frame_equal(pareto_front(str(runs["random-1"])), pareto_front(run))
    assert run_summary(runs["random-1"])["hypervolume"] == run_summary(run)["hypervolume"]
    assert list(compare_runs([runs["ppo-0"], runs["random-1"]])["run"]) == ["ppo-0", "random-1"]
    assert best_so_far(str(runs["ppo-0"]))["best_reward"].is_monotonic_increasing
    for bad in ((0.5,), (0.5, 12.0, 1.0), ("a", 12.0), {"accuracy": 0.5}):
        with pytest.raises(TypeError, match="a reference point is"):
            hypervolume(run, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fraction in"):
        hypervolume(run, (1.5, 12.0))
    with pytest.raises(TypeError, match="or a run's folder, got int"):
        pareto_front(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a list of runs"):
        compare_runs(str(runs["ppo-0"]))  # type: ignore[arg-type]


def test_compare_and_summarize_per_strategy(runs: dict[str, Path]) -> None:
    loaded = load_runs([runs["ppo-0"], runs["random-0"], runs["random-1"]])
    table = compare_runs(loaded)
    assert list(table["run"]) == ["ppo-0", "random-0", "random-1"]
    assert set(table["reference_point"]) == {"0,18ms"}
    grouped = summarize(table, ["strategy"]).set_index("strategy")
    randoms = table[table["strategy"] == "random"]["best_reward"].astype(float)
    assert grouped.loc["random", "runs"] == 2
    assert grouped.loc["random", "best_reward_mean"] == pytest.approx(randoms.mean())
    assert grouped.loc["random", "best_reward_std"] == pytest.approx(randoms.std(ddof=1))
    assert math.isnan(grouped.loc["ppo", "best_reward_std"])
    for row in table.itertuples():
        trials = pd.read_csv(Path(row.path) / "trials.csv")
        feasible = trials[(trials["source"] == "trained") & (trials["latency_ms"] <= TARGET_MS)]
        assert row.best_feasible_accuracy == pytest.approx(feasible["accuracy"].max())
        # the benchmark's final column of that same architecture (the fastest of equals, as nas-search names it)
        chosen = feasible.sort_values(["accuracy", "latency_ms"], ascending=[False, True], kind="stable").iloc[0]
        assert row.best_feasible_final_accuracy == pytest.approx(chosen["final_accuracy"])
        assert row.best_feasible_number == chosen["number"] and row.best_feasible_latency_ms == pytest.approx(chosen["latency_ms"])
    with pytest.raises(ValueError, match="cannot group runs by colour; choose from"):
        summarize(table, ["colour"])
    with pytest.raises(ValueError, match=r"cannot group runs by strategi \(did you mean 'strategy'\?\); choose from"):
        summarize(table, ["strategi"])


def test_comparison_figure_colours_runs_by_group(runs: dict[str, Path]) -> None:
    from matplotlib.colors import to_hex

    from mobilenas.results.plots import plot_comparison

    loaded = load_runs([runs["ppo-0"], runs["random-0"], runs["random-1"]])

    def fronts(figure) -> dict[str, tuple[str, str]]:  # run label -> (colour, line style) of its front
        axes = figure.axes[0]
        return {line.get_label().split(":")[0]: (to_hex(line.get_color()), line.get_linestyle()) for line in axes.get_lines() if "Pareto front" in line.get_label()}

    # ungrouped: one colour and one legend entry per run
    figure = plot_comparison(loaded)
    colours = fronts(figure)
    assert len({c for c, _ in colours.values()}) == 3
    # grouped by strategy (what nas-results compare passes): the two random runs share a colour,
    # told apart by line style; the legends name the groups
    groups = {"ppo-0": "ppo", "random-0": "random", "random-1": "random"}
    figure = plot_comparison(loaded, groups=groups)
    lines = [line for line in figure.axes[0].get_lines() if line.get_linestyle() in ("-", "--") and len(line.get_xdata()) > 1]
    by_colour: dict[str, set[str]] = {}
    for line in lines:
        by_colour.setdefault(to_hex(line.get_color()), set()).add(line.get_linestyle())
    assert by_colour.pop("#000000") == {"--"}  # the target: black, as red may be a group's colour
    assert len(by_colour) == 2 and {"-", "--"} in by_colour.values()
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels[:3] == ["ppo (1 run)", "random (2 runs)", "best reward of each run"]
    assert not any("Pareto front" in label for label in labels)
    assert [t.get_text() for t in figure.axes[1].get_legend().get_texts()] == ["ppo (1 run)", "random (2 runs)"]


def test_a_torn_journal_and_a_resumed_replay_are_read_like_the_orchestrator(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(runs["random-0"], copy)
    journal = copy / "events.jsonl"
    lines = journal.read_text().splitlines()
    results = [json.loads(line) for line in lines if json.loads(line)["type"] == "result"]
    replayed = {**results[3], "accuracy": 0.99}  # a replay of trial 3 after a resume: the last line wins
    journal.write_text("\n".join([*lines, json.dumps(replayed), '{"type": "result", "number": 99, "sour']))
    run = load_run(copy)
    assert len(run.trials) == len(results)
    row = run.trials[run.trials["number"] == results[3]["number"]].iloc[0]
    assert row["accuracy"] == 0.99 and row["order"] == len(results) - 1
    # Without a journal (only the CSV files copied), trials.csv is read, a torn last row dropped.
    journal.unlink()
    (copy / "trials.csv").write_text((copy / "trials.csv").read_text() + "31,trained,ok,0.5")
    assert len(load_run(copy).trials) == len(results)


def test_not_a_run_is_one_clear_error(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(NotARunError, match="does not exist"):
        load_run(tmp_path / "missing")
    with pytest.raises(NotARunError, match=r"holds 3 run directories .*e\.g\."):
        load_run(runs["ppo-0"].parent)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text('{"kind": "training"}')
    with pytest.raises(NotARunError, match="has kind 'training'"):
        load_run(tmp_path / "bad")
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(NotARunError, match="is not valid JSON"):
        load_run(tmp_path / "bad")
    # A file of a run stands for the run.
    assert load_run(runs["ppo-0"] / "best.json").path == runs["ppo-0"]
    assert find_runs(runs["ppo-0"].parent) == sorted(runs.values())


def test_labels_are_made_unique(runs: dict[str, Path], tmp_path: Path) -> None:
    for parent in ("a", "b"):
        shutil.copytree(runs["ppo-0"], tmp_path / parent / "run")
    loaded = load_runs([tmp_path / "a" / "run", tmp_path / "b" / "run"])
    assert [r.label for r in loaded] == ["a/run", "b/run"]
    with pytest.raises(ValueError, match="one label per run"):
        load_runs([tmp_path / "a" / "run"], labels=["x", "y"])


# --------------------------------------------------------------------------- command line


def test_show_prints_the_summary_and_the_front(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert nas_results(["show", str(runs["ppo-0"])]) == 0
    out = capsys.readouterr().out
    front = pd.read_csv(runs["ppo-0"] / "pareto.csv")
    assert "strategy ppo (seed 0)" in out and "target 9.00 ms" in out
    # looked up in the benchmark, not trained (nas-results said "30 trained" of a tabular run)
    assert "  trials          30 evaluated (0 failed) of --samples 30" in out and "trained" not in out
    assert f"{len(front)} on the front" in out
    best = json.loads((runs["ppo-0"] / "best.json").read_text())
    assert f"test_acc_200ep {best['final_accuracy']:.4f}" in out  # the benchmark's final column of the best
    for number in front["number"]:
        assert any(line.split()[:1] == [str(number)] for line in out.splitlines()), number
    assert nas_results(["show", str(runs["ppo-0"]), "--json", "--reference-point", "0.6,12ms"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["summary"]["reference_point"] == {"accuracy": 0.6, "latency_ms": 12.0}
    assert sorted(p["number"] for p in payload["pareto"]) == sorted(front["number"])


def test_plot_and_compare_write_readable_pngs(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "front.png"
    assert nas_results(["plot", str(runs["ppo-0"]), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    with Image.open(out) as image:
        assert image.width > 600 and image.height > 400
    fronts = tmp_path / "fronts.png"
    table = tmp_path / "table.csv"
    assert nas_results(["compare", *(str(p) for p in runs.values()), "--out", str(fronts), "--csv", str(table), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in payload["runs"]] == ["ppo-0", "random-0", "random-1"]
    assert {g["strategy"]: g["runs"] for g in payload["groups"]} == {"ppo": 1, "random": 2}
    with Image.open(fronts) as image:
        assert image.width > 1200
    assert next(iter(csv.DictReader(table.open())))["run"] == "ppo-0"
    assert nas_results(["compare", *(str(p) for p in runs.values()), "--out", str(fronts)]) == 0
    printed = capsys.readouterr().out
    assert "mean ± std per strategy" in printed and "random" in printed
    assert "test_acc_200ep in target" in printed  # tabular runs: the final column, per run and per strategy
    final = f"{payload['runs'][0]['best_feasible_final_accuracy']:.4f}"
    assert any(line.split()[:1] == ["ppo-0"] and final in line.split() for line in printed.splitlines())
    assert printed.startswith("3 runs; ")
    assert nas_results(["compare", str(runs["ppo-0"]), "--out", str(fronts)]) == 0
    assert capsys.readouterr().out.startswith("1 run; ")


def test_compare_writes_its_csv_into_a_new_folder(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # as --out's folder is made; it failed with exit code 1 once the figure was written
    assert nas_results(["compare", str(runs["ppo-0"]), str(runs["random-0"]), "--out", str(tmp_path / "f.png"), "--csv", str(tmp_path / "new" / "t.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "new" / "t.csv")) == 2 and (tmp_path / "f.png").is_file()
    capsys.readouterr()


def test_compare_refuses_a_latency_table_without_references(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the table only places reference networks: alone, it was silently ignored
    for extra in (["--latency-table", str(tmp_path / "t.csv")], ["--measure-missing"]):
        assert nas_results(["compare", str(runs["ppo-0"]), str(runs["random-0"]), "--out", str(tmp_path / "f.png"), *extra]) == 2
        err = capsys.readouterr().err
        assert f"{extra[0]} would have no effect without reference networks" in err and "--references NAMES" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "f.png").exists()


def test_compare_says_when_a_group_pools_runs_that_are_no_repeats(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Other --samples, or the same seed twice, pooled into one mean ± std: said, with the way out."""
    longer = tmp_path / "random-longer"
    shutil.copytree(runs["random-1"], longer)
    manifest = json.loads((longer / "manifest.json").read_text())
    manifest["config"]["samples"] = int(manifest["config"]["samples"]) * 2
    (longer / "manifest.json").write_text(json.dumps(manifest))
    assert nas_results(["compare", str(runs["random-0"]), str(longer), "--out", str(tmp_path / "a.png")]) == 0
    assert "note: group random pools runs of different --samples" in capsys.readouterr().err
    assert nas_results(["compare", str(runs["random-0"]), str(longer), "--by", "strategy,samples", "--out", str(tmp_path / "b.png")]) == 0
    assert "note: group" not in capsys.readouterr().err
    again = tmp_path / "random-0-again"
    shutil.copytree(runs["random-0"], again)
    assert nas_results(["compare", str(runs["random-0"]), str(again), "--out", str(tmp_path / "c.png")]) == 0
    assert "note: group random holds more than one run of seed 0" in capsys.readouterr().err
    assert nas_results(["compare", str(runs["random-0"]), str(runs["random-1"]), "--out", str(tmp_path / "d.png")]) == 0
    assert "note: group" not in capsys.readouterr().err


def test_compare_keeps_runs_of_other_rewards_apart(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a soft-reward and a hard-reward run of one strategy were pooled, their rewards (on other
    # scales) averaged
    hard = tmp_path / "random-hard"
    cells = runs["random-0"].parent / "cells.csv"
    assert nas_search(["--space", "nb201", "--benchmark", str(cells), "--latency-column", "latency_ms_toy", "--target-latency", f"{TARGET_MS}ms",
                       "--strategy", "random", "--seed", "0", "--samples", "30", "--reward", "hard", "--out", str(hard), "--quiet"]) == 0
    capsys.readouterr()
    assert nas_results(["compare", str(runs["random-0"]), str(runs["random-1"]), str(hard), "--out", str(tmp_path / "f.png"), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert sorted((g["strategy"], g["reward"].split(":")[0], g["runs"]) for g in groups) == [("random", "hard", 1), ("random", "soft", 2)]


def test_figures_command_writes_every_search_figure(runs: dict[str, Path], tmp_path: Path) -> None:
    assert nas_results(["figures", str(runs["random-1"]), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["convergence.png", "front.png", "reward_landscape.png"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["show", "{parent}"], "is not a mobilenas run directory"),
        (["show", "{parent}/nope"], "does not exist"),
        (["show", "{run}", "--reference-point", "high"], "a reference point is ACCURACY,LATENCY"),
        (["show", "{run}", "--reference-point", "1.5,10ms"], "must be a fraction in [0, 1)"),
        (["plot", "{run}", "--out", "front.pdf"], "give a name ending in .png"),
        (["plot", "{run}", "--references", "mobilenetv2"], "tabular search (nb201): reference networks cannot be placed"),
        (["plot", "{run}", "--reference-accuracy", "mobilenetv2=0.7"], "cannot be placed on its benchmark's axis; drop --reference-accuracy"),
        (["plot", "{run}", "--latency-table", "t.jsonl", "--measure-missing"], "cannot be placed on its benchmark's axis; drop --latency-table and --measure-missing"),
        (["plot", "{run}", "--references", "resnet50"], "unknown reference network 'resnet50'"),
        (["compare", "{run}", "--by", "colour"], "cannot group runs by colour"),
        (["compare", "{run}", "{run}/best.json"], "/best.json is given twice (also as "),  # it counted twice in the means
        (["compare", "{run}", "--out", "f.png", "--csv", "."], "--csv . is a folder; give a file name"),
        (["measure", "{run}"], "only network searches have architectures to measure"),
        (["measure", "{run}", "--trials", " , "], "--trials names no trial (' , '); give front, all, or trial numbers"),
        (["references", "{run}"], "reference networks need a network run"),
        (["calibration"], "give a run directory, or --csv"),
        (["show", "{run}", "--measured"], "--measured would have no effect on a tabular run (latencies are the benchmark's measurements); drop it"),
        (["plot", "{run}", "--measured", "--out", "front.png"], "--measured would have no effect on a tabular run"),
        (["compare", "{run}", "{parent}/random-0", "--measured"], "--measured would have no effect on tabular runs"),
        (["calibration", "{run}", "--out", "cal.png"], "is a tabular search: its latencies are the benchmark's measurements, with no lookup table to calibrate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runs: dict[str, Path], tmp_path: Path, argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = runs["ppo-0"]
    filled = [a.format(run=run, parent=run.parent) for a in argv]
    assert nas_results(filled) == 2
    err = capsys.readouterr().err
    assert fragment in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_umbrella_command_dispatches(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.cli import main as mobilenas

    assert mobilenas(["results", "show", str(runs["random-0"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["strategy"] == "random"
    assert mobilenas(["results", "show", "/nonexistent-run"]) == 2
    assert capsys.readouterr().err.startswith("mobilenas results show: error:")  # as argparse names it


@pytest.mark.slow
def test_pareto_notebook_runs_on_tabular_runs(runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    from mobilenas.results import notebook_path

    # relative paths, from a folder above the one the kernel runs in (Jupyter started in a project's
    # root, the kernel in its results/)
    monkeypatch.setenv("MOBILENAS_RUN", os.path.relpath(runs["ppo-0"], tmp_path.parent))
    monkeypatch.setenv("MOBILENAS_COMPARE", f"{runs['random-0']},{os.path.relpath(runs['random-1'], tmp_path.parent)}")
    monkeypatch.setenv("MOBILENAS_FIGURES", str(tmp_path / "figures"))
    notebook = execute_notebook(notebook_path("pareto"), tmp_path)
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert written == ["convergence.png", "front.png", "fronts.png", "reward_landscape.png"]
    for name in written:
        with Image.open(tmp_path / "figures" / name) as image:
            assert image.width > 500
    text = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "a tabular run's latencies are measurements" in text


def test_nas_results_notebook_writes_a_copy_that_reads_the_run_from_anywhere(runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A review ran the session from its own folder: results/pareto.ipynb found no run there. The
    copy in the run's folder reads the folder it is in (Jupyter runs a notebook there), so it
    follows a copied or moved run (another review: it had read the original)."""

    run = tmp_path / "run"
    shutil.copytree(runs["ppo-0"], run)
    monkeypatch.delenv("MOBILENAS_RUN", raising=False)
    monkeypatch.delenv("MOBILENAS_FIGURES", raising=False)  # figures go to the run's figures/
    assert nas_results(["notebook", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {run / 'pareto.ipynb'} (reads the run folder it is in, {run.resolve()})\nopen it: jupyter notebook {run / 'pareto.ipynb'}\n" == out
    moved = tmp_path / "moved run"
    shutil.copytree(run, moved)  # copied with its notebook
    execute_notebook(moved / "pareto.ipynb", moved)
    assert (moved / "figures" / "front.png").is_file() and not (run / "figures").exists()  # the copy's, not the original's
    # a kernel started in a folder that holds no run (papermill, nbclient without a path) reads the
    # run the notebook was written into (it had failed: "... is not a mobilenas run directory")
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    execute_notebook(run / "pareto.ipynb", nowhere)
    assert (run / "figures" / "front.png").is_file()
    shutil.rmtree(run / "figures")
    # written elsewhere (--out), it names the run; run from a folder with no run under it
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert nas_results(["notebook", str(run), "--out", str(elsewhere / "study.ipynb")]) == 0
    assert f"(reads {run.resolve()})" in capsys.readouterr().out
    execute_notebook(elsewhere / "study.ipynb", elsewhere)
    assert (run / "figures" / "front.png").is_file()
    # written once: a second time would lose the user's edits
    assert nas_results(["notebook", str(run)]) == 2
    assert "pareto.ipynb exists (perhaps with your edits): open it with jupyter notebook" in capsys.readouterr().err
    assert nas_results(["notebook", str(run), "--force", "--out", str(tmp_path / "mine.ipynb")]) == 0
    assert nas_results(["notebook", str(run), "--out", str(tmp_path / "mine.txt")]) == 2
    assert "a notebook's name ends in .ipynb" in capsys.readouterr().err


def test_latest_run_is_the_newest_of_its_kind(tmp_path: Path) -> None:
    from mobilenas.results import latest_run

    def make(root: Path, name: str, kind: str, created: str) -> Path:
        (root / name).mkdir(parents=True)
        (root / name / "manifest.json").write_text(json.dumps({"kind": kind, "created": created}))
        return root / name

    assert latest_run("search", roots=[tmp_path / "nowhere"]) is None
    make(tmp_path / "a", "old", "search", "2026-11-29T08:00:00+00:00")
    newest = make(tmp_path / "b", "new", "search", "2026-11-29T09:00:00+00:00")
    make(tmp_path / "b", "newer-but-netadapt", "netadapt", "2026-11-29T10:00:00+00:00")
    (tmp_path / "b" / "broken").mkdir()
    (tmp_path / "b" / "broken" / "manifest.json").write_text("{")
    assert latest_run("search", roots=[tmp_path / "a", tmp_path / "b"]) == newest
    assert latest_run("netadapt", roots=[tmp_path / "a", tmp_path / "b"]).name == "newer-but-netadapt"
    with pytest.raises(ValueError, match="kind 'tabular' is not one of"):
        latest_run("tabular")


def test_show_without_a_run_shows_the_newest_one(runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert nas_results(["show"]) == 2
    assert "give RUN: there is no run under runs/ or results/runs/ here" in capsys.readouterr().err
    shutil.copytree(runs["ppo-0"], tmp_path / "results" / "runs" / "the-run")
    assert nas_results(["show", "--json"]) == 0
    captured = capsys.readouterr()
    assert f"no RUN given: the newest run, {Path('results') / 'runs' / 'the-run'}" in captured.err
    assert json.loads(captured.out)["summary"]["strategy"] == "ppo"


def test_compare_notes_runs_that_search_different_problems(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fronts = tmp_path / "fronts.png"
    assert nas_results(["compare", *(str(p) for p in runs.values()), "--out", str(fronts)]) == 0
    assert "note:" not in capsys.readouterr().err  # strategies and seeds on one problem: nothing to say
    other = tmp_path / "final-as-reward"
    cells = next(iter(runs.values())).parent / "cells.csv"
    assert nas_search([
        "--space", "nb201", "--benchmark", str(cells), "--latency-column", "latency_ms_toy", "--reward-column", "test_acc_200ep",
        "--target-latency", f"{TARGET_MS}ms", "--strategy", "random", "--samples", "10", "--out", str(other), "--quiet",
    ]) == 0
    capsys.readouterr()
    assert nas_results(["compare", str(runs["ppo-0"]), str(other), "--out", str(fronts)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("note: these runs search different problems") and len(err.splitlines()) == 1
    assert "accuracy: val_acc_12ep of cells.csv (ppo-0); test_acc_200ep of cells.csv (final-as-reward)" in err
    assert "latency:" not in err and "space:" not in err  # only what differs is named
    # the means per strategy are taken per problem: before, random's three runs were pooled
    assert nas_results(["compare", str(runs["random-0"]), str(runs["random-1"]), str(other), "--out", str(fronts), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert [(g["strategy"], g["problem_number"], g["runs"]) for g in groups] == [("random", 1, 2), ("random", 2, 1)]
    assert nas_results(["compare", str(runs["random-0"]), str(runs["random-1"]), str(other), "--out", str(fronts)]) == 0
    assert "mean ± std per strategy, problem (problem 1: random-0, random-1; problem 2: final-as-reward):" in capsys.readouterr().out
    # another final column is another problem too (the final accuracies of both had been averaged)
    reported = tmp_path / "val-as-final"
    assert nas_search([
        "--space", "nb201", "--benchmark", str(cells), "--latency-column", "latency_ms_toy", "--final-column", "val_acc_12ep",
        "--target-latency", f"{TARGET_MS}ms", "--strategy", "random", "--samples", "10", "--out", str(reported), "--quiet",
    ]) == 0
    capsys.readouterr()
    assert nas_results(["compare", str(runs["random-0"]), str(reported), "--out", str(fronts), "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("note: these runs report different final columns, so their final accuracies are not on one scale; final: test_acc_200ep of cells.csv (random-0); val_acc_12ep of cells.csv (val-as-final)")
    assert [(g["strategy"], g["problem_number"]) for g in json.loads(captured.out)["groups"]] == [("random", 1), ("random", 2)]


def test_convergence_and_counts_tell_early_stopped_failed_and_rejected_apart(tmp_path: Path) -> None:
    cells = tmp_path / "cells.csv"
    write_cell_benchmark(cells)
    out = tmp_path / "run"
    assert nas_search([
        "--space", "nb201", "--benchmark", str(cells), "--latency-column", "latency_ms_toy", "--target-latency", f"{TARGET_MS}ms",
        "--strategy", "random", "--samples", "20", "--max-latency-ratio", "1.0", "--out", str(out), "--quiet",
    ]) == 0
    run = load_run(out)
    rejected = int((run.trials["source"] == "rejected").sum())
    assert rejected > 0
    # Two trained results as a Ray search with --early-stopping and a crash would have recorded them.
    trained = run.trials.index[run.trials["source"] == "trained"]
    run.trials.loc[trained[0], ["status", "error"]] = ["failed", EARLY_STOPPED]
    run.trials.loc[trained[1], ["status", "error"]] = ["failed", "RuntimeError: boom"]
    assert run.counts() == {"trained": len(trained), "failed": 1, "stopped_early": 1, "duplicates": 0, "rejected": rejected}
    labels = [t.get_text() for t in plot_convergence(run).axes[0].get_legend().get_texts()]
    assert {"trained, stopped early (1)", "trained, failed (1)", f"trained ({len(trained) - 2})", f"rejected by the latency filter ({rejected})"} <= set(labels)
    assert not any("rejected," in label for label in labels)  # rejections are not failures


def test_a_run_in_a_folder_whose_name_is_not_utf8_is_read(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """nas-search writes into such a folder and resumes it; nas-results had refused it ("'utf-8'
    codec can't encode characters ...: surrogates not allowed")."""
    import os

    odd = tmp_path / os.fsdecode(b"bad\xff\xfename")
    shutil.copytree(runs["ppo-0"], odd)
    assert nas_results(["show", str(odd), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["run"] == "bad\ufffd\ufffdname"
    assert nas_results(["compare", str(odd), str(runs["random-1"]), "--out", str(tmp_path / "fronts.png"), "--json"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["bad\ufffd\ufffdname", "random-1"]
