"""mobilenas.results on a real network search: reference networks, proxy-trained references, measurements.

The run is ``nas-search`` in-process over the tiny test space: inline executor, a 3-step proxy
on 64 synthetic images, a lookup table at 32x32 built lazily in the test's folder; about 15 s.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mobilenas.latency.calibrate import calibrate
from mobilenas.latency.table import Correction, LookupTable
from mobilenas.results import (
    SearchResults,
    calibration_points,
    load_run,
    measure_candidates,
    pareto_front,
    reference_points,
    run_summary,
    train_references,
)
from mobilenas.results.cli import main as nas_results
from mobilenas.search.cli import main as nas_search
from mobilenas.space import Architecture, count_macs, count_params, reference
from mobilenas.space.cost import architecture_cost

from helpers import execute_notebook, tiny_space

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("network")
    space = root / "space.json"
    space.write_text(tiny_space().to_json())
    table = root / "table.jsonl"
    out = root / "run"
    cwd = os.getcwd()
    os.chdir(root)  # --out given relative, as typed in a shell
    try:
        code = nas_search([
            "--space", str(space), "--executor", "inline", "--proxy-steps", "3", "--train-size", "64", "--val-size", "64",
            "--input-size", "32", "--samples", "6", "--target-latency", "5ms", "--latency-table", str(table), "--out", "run",
            "--quiet",
        ])
    finally:
        os.chdir(cwd)
    assert code == 0
    return out, table


def test_best_json_paths_hold_from_any_folder(search: tuple[Path, Path]) -> None:
    # A script reads best.json's weights from wherever it runs; they were 'run/weights/...' (relative
    # to the folder nas-search ran in) when --out was relative.
    out, _ = search
    best = json.loads((out / "best.json").read_text())
    assert best["run"] == str(out.resolve())
    assert Path(best["weights"]).is_absolute() and Path(best["weights"]).is_file()


def test_trials_carry_fingerprints_and_measured_latencies(search: tuple[Path, Path]) -> None:
    out, table = search
    run = load_run(out)
    assert isinstance(run, SearchResults) and run.problem == "network" and run.num_classes == 10
    axes = run.problem_axes()  # what nas-results compare checks before putting runs on one plot
    assert axes["accuracy"] == "synthetic after a 3-step proxy training"
    assert axes["latency"].startswith("table of ") and axes["latency"].endswith(" at 32px") and "?" not in axes["latency"]
    trained = run.trained()
    assert len(trained) == 6
    for row in trained.itertuples():
        assert Architecture.from_notation(row.architecture).fingerprint() == row.key
    best = json.loads((out / "best.json").read_text())
    measured = run.trials.set_index("key")["measured_latency_ms"]
    assert measured[best["fingerprint"]] == pytest.approx(best["measured_latency_ms"])
    summary = run_summary(run)
    assert summary["best_measured_latency_ms"] == pytest.approx(best["measured_latency_ms"])
    # Points the table measured end to end (its correction's) are matched by fingerprint.
    lookup = LookupTable.load(table)
    for point in lookup.end_to_end_points():
        rows = run.trials[run.trials["key"] == point.fingerprint]
        if len(rows) and point.fingerprint != best["fingerprint"]:
            assert rows["measured_latency_ms"].iloc[0] == pytest.approx(point.latency_ms)


def test_references_are_predicted_with_the_runs_correction(search: tuple[Path, Path]) -> None:
    out, table = search
    run = load_run(out)
    placed = reference_points(run, ["mobilenetv3-small@0.5", "mnasnet-a1@0.5"], measure_missing=True)
    manifest = json.loads((out / "manifest.json").read_text())
    correction = Correction.from_dict(manifest["latency_table"]["correction"])
    lookup = LookupTable.load(table)
    for row in placed.itertuples():
        arch = reference(row.name).with_num_classes(10)
        assert row.latency_ms == pytest.approx(correction.apply(lookup.predict_sum(arch), lookup.se_blocks(arch)))
        assert row.missing_ops == 0 and row.params == count_params(arch)
        # of the network timed at the run's 32 px (stem stride 1): they had been of the one built for 224 px
        assert row.macs == count_macs(arch, 32) > architecture_cost(arch, 32).macs
    # Once measured, the ops are in the table: no measurement is needed to place them again.
    again = reference_points(run, ["mobilenetv3-small@0.5", "mnasnet-a1@0.5"])
    np.testing.assert_allclose(again["latency_ms"], placed["latency_ms"])


def test_references_proxy_trained_like_the_candidates_and_cached(search: tuple[Path, Path]) -> None:
    out, _ = search
    run = load_run(out)
    first = train_references(run, ["mobilenetv3-small@0.5"], progress=False)
    assert list(first["cached"]) == [False] and first["status"].iloc[0] == "ok"
    accuracy = float(first["accuracy"].iloc[0])
    # The same proxy task, run directly, gives the same accuracy (training is deterministic).
    from mobilenas.train.data import load_dataset
    from mobilenas.train.proxy import ProxyConfig, train_proxy

    manifest = json.loads((out / "manifest.json").read_text())
    data = load_dataset("synthetic", seed=0, val_size=64)
    config = dataclasses.replace(ProxyConfig.from_dict(manifest["proxy"]), seed=0)
    direct = train_proxy(reference("mobilenetv3-small@0.5").with_num_classes(10), data, config)
    assert direct.accuracy == pytest.approx(accuracy)
    stored = json.loads((out / "references.json").read_text())["references"]["mobilenetv3-small@0.5"]
    assert stored["accuracy"] == accuracy and stored["fingerprint"] == reference("mobilenetv3-small@0.5").with_num_classes(10).fingerprint()
    second = train_references(run, ["mobilenetv3-small@0.5"], progress=False)
    assert list(second["cached"]) == [True] and second["accuracy"].iloc[0] == accuracy
    placed = reference_points(run, ["mobilenetv3-small@0.5"], measure_missing=True).iloc[0]
    assert placed["accuracy"] == accuracy and placed["accuracy_source"] == "proxy"
    # A given accuracy wins over the proxy's.
    given = reference_points(run, ["mobilenetv3-small@0.5"], accuracies={"mobilenetv3-small@0.5": 0.5}).iloc[0]
    assert given["accuracy"] == 0.5 and given["accuracy_source"] == "given"


def test_measure_the_front_and_use_it(search: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = search
    run = load_run(out)
    front = pareto_front(run)
    unmeasured = front[front["measured_latency_ms"].isna()]
    # show --measured names the trials that stand on the measured front by their table latency
    # (none measured yet but the best) and the command that measures exactly those
    on_measured = pareto_front(run, latency="measured")
    pending = [str(int(n)) for n in on_measured.loc[on_measured["latency_source"] != "measured", "number"]]
    assert nas_results(["show", str(out), "--measured"]) == 0
    shown = capsys.readouterr().out
    assert (f"on this front {'is' if len(pending) == 1 else 'are'} not measured yet (latency by the table): "
            f"nas-results measure {out} --trials {','.join(pending)}" in shown) == bool(pending)
    rows = measure_candidates(run, rounds=2, progress=False)
    assert sorted(rows["number"]) == sorted(unmeasured["number"])
    assert (rows["latency_ms"] > 0).all()
    # The search measures its best; when the front is that one trial there is nothing to cache.
    if not unmeasured.empty:
        cache = [json.loads(line) for line in (out / "measured.jsonl").read_text().splitlines()]
        assert {c["fingerprint"] for c in cache} >= set(unmeasured["key"])
    reloaded = load_run(out)
    assert pareto_front(reloaded)["measured_latency_ms"].notna().all()
    # On the measured axis, a trial not measured yet stands at the table's estimate; on a busy
    # machine the measured front points read slower than the table, so such a trial can join the
    # front there. Measuring those too converges on a front that is measured throughout.
    for _ in range(len(reloaded.candidates())):
        on_measured = pareto_front(reloaded, latency="measured")
        pending = on_measured[on_measured["latency_source"] != "measured"]
        if pending.empty:
            break
        measure_candidates(reloaded, [int(n) for n in pending["number"]], rounds=2, progress=False)
        reloaded = load_run(out)
    on_measured = pareto_front(reloaded, latency="measured")
    assert (on_measured["latency_source"] == "measured").all()
    assert measure_candidates(reloaded, progress=False).empty  # nothing left to measure
    points = calibration_points(reloaded)
    assert set(points["source"]) >= {"trial"} and len(points[points["source"] == "trial"]) >= len(front)
    with pytest.raises(ValueError, match="no successful trained trial numbered 999"):
        measure_candidates(reloaded, [999], progress=False)
    assert nas_results(["measure", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["measured"] == []


def test_plot_with_references_and_the_notebook(search: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, table = search
    front = tmp_path / "front.png"
    assert nas_results([
        "plot", str(out), "--out", str(front), "--measured", "--references", "mobilenetv3-small@0.5,mnasnet-a1@0.5",
        "--reference-accuracy", "mnasnet-a1@0.5=0.15", "--measure-missing",
    ]) == 0
    with Image.open(front) as image:
        assert image.width > 600
    report = calibrate(tiny_space(), LookupTable.load(table), samples=3, rounds=2, out_dir=tmp_path / "calibration", progress=False)
    assert report.csv_path is not None

    from mobilenas.results import notebook_path

    monkeypatch.setenv("MOBILENAS_RUN", str(out))
    monkeypatch.setenv("MOBILENAS_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("MOBILENAS_REFERENCES", "mobilenetv3-small@0.5,mnasnet-a1@0.5")
    monkeypatch.setenv("MOBILENAS_CALIBRATION_CSV", report.csv_path)
    monkeypatch.setenv("MOBILENAS_LATENCY", "measured")
    notebook = execute_notebook(notebook_path("pareto"), tmp_path)
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert written == ["calibration.png", "convergence.png", "front.png", "fronts.png", "reward_landscape.png"]
    tables = [o for c in notebook.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert any("nas-latency calibrate" in t["data"]["text/html"] for t in tables)


def test_measure_says_when_a_run_has_no_trial_yet(search: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    out, _ = search
    run = tmp_path / "killed-at-once"
    shutil.copytree(out, run)
    (run / "events.jsonl").write_text("")  # killed before any result
    for name in ("trials.csv", "pareto.csv", "best.json", "measured.jsonl"):
        (run / name).unlink(missing_ok=True)
    capsys.readouterr()
    assert nas_results(["measure", str(run)]) == 0
    assert capsys.readouterr().out.strip() == "nothing to measure: the run has no successful trial yet"
    for _ in range(2):  # the second time, the front was measured before: said as such
        assert nas_results(["measure", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.strip().endswith("every chosen architecture was measured before (--remeasure to measure again)")


def test_a_search_on_gray_images_hands_over_a_one_channel_network(search: tuple[Path, Path], tmp_path: Path) -> None:
    # best.json said in_channels 3 (the space's) while its weights had a one-channel stem (the
    # trainer adapted each network to the data), and the latency was that of the RGB stem.
    _, table = search
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (96, 12, 12), dtype=np.uint8)
    y = rng.integers(0, 3, 96)
    np.savez(tmp_path / "gray.npz", x_train=x[:80], y_train=y[:80], x_test=x[80:], y_test=y[80:])
    space = tmp_path / "space.json"
    space.write_text(tiny_space().to_json())
    out = tmp_path / "gray-run"
    entries = len(table.read_text().splitlines())
    assert nas_search([
        "--space", str(space), "--executor", "inline", "--proxy-steps", "2", "--dataset", str(tmp_path / "gray.npz"), "--input-size", "32",
        "--samples", "2", "--target-latency", "5ms", "--latency-table", str(table), "--out", str(out), "--quiet", "--no-measure",
    ]) == 0
    best = json.loads((out / "best.json").read_text())
    arch = Architecture.from_dict(best["architecture"])
    assert arch.stem.in_channels == 1 and arch.head.num_classes == 3 and best["preprocessing"]["input_shape"][1] == 1
    weights = torch.load(best["weights"])
    assert tuple(weights["stem.conv.weight"].shape)[1] == 1
    # the RGB searches' table serves it: only its one-channel stem (and its 3-class head) are new entries
    added = [json.loads(line).get("key", "") for line in table.read_text().splitlines()[entries:]]
    assert any(key.startswith("stem_") and "_i1_" in key for key in added)
    assert all(key.startswith(("stem_", "head_")) for key in added if key)


def test_one_reference_accuracy_leaves_the_unasked_references_off_the_figure(search: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """With --reference-accuracy alone, the default references the table cannot place are noted on
    stderr, as without it; they were all listed as "not placed" over the figure's data."""
    import argparse

    from mobilenas.results.cli import _reference_frame
    from mobilenas.results.references import DEFAULT_REFERENCES

    out, _ = search
    run = load_run(out)
    args = argparse.Namespace(reference_accuracy=["mobilenetv3-small=0.2"], references=None, latency_table=None, measure_missing=False)
    frame = _reference_frame(run, args, default_all=True)
    err = capsys.readouterr().err
    unplaced = frame[frame["latency_ms"].isna()]
    assert set(unplaced["name"]) <= {"mobilenetv3-small"}
    assert "not placed (" in err and len(frame) < len(DEFAULT_REFERENCES)  # the tiny table lacks most of their ops
    assert "mobilenetv3-small" in set(frame["name"])


def test_references_on_a_measured_axis_are_drawn_as_table_latencies(search: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Their latency is the table's: on the measured axis they are hollow and say so (drawn filled,
    they read as measured, and the table's 36% over-prediction flipped their order with trials)."""
    from mobilenas.results.plots import plot_front

    out, _ = search
    run = load_run(out)
    # as reference_points places two (the tiny table lacks their ops: placed by hand)
    frame = pd.DataFrame([
        {"name": "mobilenetv3-small", "family": "mobilenetv3-small", "latency_ms": 1.0, "accuracy": 0.2, "accuracy_source": "given", "missing_ops": 0},
        {"name": "mobilenetv2", "family": "mobilenetv2", "latency_ms": 2.0, "accuracy": float("nan"), "accuracy_source": "", "missing_ops": 0},
    ])
    for latency, said in (("measured", True), ("table", False)):
        axes = plot_front(run, latency=latency, references=frame).axes[0]
        labels = [t.get_text() for t in axes.get_legend().get_texts()]
        reference = next(label for label in labels if label.startswith("mobilenetv3"))
        assert reference.endswith("(table latency)") == said
        line = next(line for line in axes.get_lines() if line.get_label() == reference)
        assert (line.get_markerfacecolor() == "none") == said
        assert (f"reference networks (latency only){' (table latency)' if said else ''}") in labels


def test_bad_options_are_refused_before_any_figure_or_work(search: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # figures wrote three figures before it read --calibration-csv; references ignored --retrain without --train
    out, _ = search
    assert nas_results(["figures", str(out), "--calibration-csv", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "figures")]) == 2
    assert "nope.csv" in capsys.readouterr().err and not list((tmp_path / "figures").glob("*.png"))
    for flag in ("--retrain", "--quiet"):
        assert nas_results(["references", str(out), flag]) == 2
        assert f"{flag} would have no effect without --train; drop it, or add --train" in capsys.readouterr().err


def test_compare_measured_shows_the_best_measured_latency(search: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`compare --measured` says "latency by measurement where known": its best-latency column was the table's."""
    import shutil

    from mobilenas.units import format_ms

    original, _ = search
    out = tmp_path / "run"
    shutil.copytree(original, out)
    best = json.loads((out / "best.json").read_text())
    best["measured_latency_ms"] = 3 * best["latency_ms"]  # as a slower device's measurement would be: told apart in print
    (out / "best.json").write_text(json.dumps(best))
    for flags, shown in (([], best["latency_ms"]), (["--measured"], best["measured_latency_ms"])):
        assert nas_results(["compare", str(out), "--out", str(tmp_path / "c.png"), *flags]) == 0
        lines = capsys.readouterr().out.splitlines()
        row = lines[next(i for i, line in enumerate(lines) if "best latency" in line) + 1]  # the one run's row
        assert format_ms(shown) in row, (flags, row)


@pytest.mark.slow
def test_a_run_whose_table_is_elsewhere_is_drawn_without_references(search: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A run copied from another machine (its latency table left behind): the front is drawn, the
    default references are left off with a note; asked-for ones are refused, naming the way out."""
    import shutil

    from mobilenas.results import notebook_path

    original, _ = search
    run = tmp_path / "copied"
    shutil.copytree(original, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["latency_table"]["path"] = str(tmp_path / "left-behind.jsonl")
    (run / "manifest.json").write_text(json.dumps(manifest))
    assert nas_results(["plot", str(run), "--out", str(tmp_path / "front.png")]) == 0
    assert "note: reference networks not drawn: the latency table of run" in capsys.readouterr().err
    assert (tmp_path / "front.png").is_file()
    assert nas_results(["plot", str(run), "--out", str(tmp_path / "refs.png"), "--references", "mobilenetv2"]) == 2
    assert "left-behind.jsonl; give it with --latency-table PATH (table=...), or leave out --references" in capsys.readouterr().err
    monkeypatch.setenv("MOBILENAS_RUN", str(run))
    monkeypatch.setenv("MOBILENAS_FIGURES", str(tmp_path / "figures"))
    notebook = execute_notebook(notebook_path("pareto"), tmp_path)
    text = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "reference networks not drawn" in text and (tmp_path / "figures" / "front.png").is_file()


def test_show_says_trained_and_calibration_counts_networks_and_points(search: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a network search trains its architectures (a tabular one looks them up: "evaluated"); the
    # calibration counted "10 networks" of a table nas-latency info said held 12 end-to-end points
    # (two networks measured twice): both true, of other things, now said
    out, table = search
    assert nas_results(["show", str(out)]) == 0
    assert "  trials          6 trained (0 failed) of --samples 6" in capsys.readouterr().out
    twice = tmp_path / "table.jsonl"
    lines = table.read_text().splitlines(keepends=True)
    measured = [line for line in lines if json.loads(line).get("kind") == "end_to_end"]
    assert measured  # the search measured its best end to end
    twice.write_text("".join(lines) + measured[0])  # one network measured again
    points = {json.loads(line)["fingerprint"] for line in measured}
    assert nas_results(["calibration", str(out), "--latency-table", str(twice)]) == 0
    printed = capsys.readouterr().out
    assert (f"(the table's {len(measured) + 1} end-to-end points are measurements of {len(points)} networks: "
            "a network measured more than once counts once here, at its median)") in printed
    assert nas_results(["calibration", str(out), "--latency-table", str(table)]) == 0
    assert "end-to-end points are measurements of" not in capsys.readouterr().out  # one point per network: nothing to tell apart


def test_an_edited_copy_of_a_space_is_another_problem(search: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An edited copy of a space keeps its name ("show --space mnasnet --json > mine.json", then
    edit): runs on it and on the original had been averaged as one problem by `compare`."""
    import shutil

    from mobilenas.space import SearchSpace, get_space

    original, _ = search
    manifest = json.loads((original / "manifest.json").read_text())
    space = SearchSpace.from_dict(manifest["space"])

    def copy(name: str, edited: SearchSpace) -> Path:
        out = tmp_path / name
        shutil.copytree(original, out)
        data = json.loads((out / "manifest.json").read_text())
        data["space"], data["space_name"] = edited.to_dict(), edited.name
        (out / "manifest.json").write_text(json.dumps(data))
        return out

    # the built-in mnasnet as it ships, for this run's 10 classes and its images' channels: its name alone
    builtin = copy("builtin", get_space("mnasnet").for_data(space.head.num_classes, space.stem.in_channels))
    assert load_run(builtin).space_identity == "mnasnet"
    # the same with one stage's kernel options cut: the same name, another problem
    stage = dataclasses.replace(get_space("mnasnet").stages[0], choices={**dict(get_space("mnasnet").stages[0].choices), "kernel_size": (3,)})
    cut = get_space("mnasnet").for_data(space.head.num_classes, space.stem.in_channels)
    cut = dataclasses.replace(cut, stages=(stage, *cut.stages[1:]))
    edited = copy("edited", cut)
    identity = load_run(edited).space_identity
    assert identity == cut.describe_name() == f"mnasnet (edited copy {cut.layout_fingerprint()[:8]})"  # as `mobilenas show` names it
    assert load_run(original).space_identity.startswith(f"{space.name} (from a file ")  # the tests' own space
    assert nas_results(["compare", str(builtin), str(edited), "--out", str(tmp_path / "c.png"), "--json"]) == 0
    captured = capsys.readouterr()
    assert "these runs search different problems" in captured.err and f"space: mnasnet (builtin); {identity} (edited)" in captured.err
    assert [g["problem_number"] for g in json.loads(captured.out)["groups"]] == [1, 2]
    assert nas_results(["show", str(edited)]) == 0
    assert f"space {identity}," in capsys.readouterr().out
