"""mobilenas.results on a real NetAdapt run: loading, reference networks, calibration, CLI, notebook.

The run is made by ``netadapt refine`` in-process (built-in synthetic data, a few fine-tune steps,
a lookup table measured cheaply with ONNX Runtime at 128x128: isolated ops, 3 runs, identity
correction), about 20 s on two cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilenas.latency.calibrate import calibrate, fidelity
from mobilenas.latency.measure import make_backend
from mobilenas.latency.table import Correction, LookupTable, Method
from mobilenas.netadapt.cli import main as netadapt
from mobilenas.netadapt.groups import group_widths
from mobilenas.results import (
    NetAdaptResults,
    calibration_points,
    calibration_summary,
    load_run,
    pareto_front,
    read_calibration_csv,
    reference_points,
    run_summary,
)
from mobilenas.results.cli import main as nas_results
from mobilenas.runs import Journal
from mobilenas.space import Architecture, reference

from helpers import execute_notebook, tiny_space

pytestmark = pytest.mark.slow

ARCH = "stem_k3_s2_c16_nre | ds_k3_s1_c16_nre | ir_r2_k3_s2_e3_c24_nre | ir_k3_s2_e3_c32_se0.25_nhs | head_c64_o10_nre_d0.0_gsig"


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("table") / "table.jsonl"
    lookup = LookupTable.create(path, backend=make_backend("onnxruntime", threads=1), input_size=128, method=Method(name="isolated", cold_cache=False, warmup=1, repeats=3))
    lookup.set_correction(Correction(a=1.0, b=0.0, points=0, fitted=True))
    return path


@pytest.fixture(scope="module")
def run_dir(table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("netadapt") / "run"
    code = netadapt([
        "refine", ARCH, "--budget-ratio", "0.85", "--max-iterations", "3", "--train-size", "256", "--val-size", "128", "--test-size", "128",
        "--pretrain-epochs", "1", "--finetune-steps", "3", "--final-epochs", "1", "--table", str(table), "--threads", "1",
        "--initial-reduction", "0.06", "--reduction-decay", "1", "--out", str(out), "--quiet",
    ])
    assert code == 0
    return out


def test_load_reads_every_iteration(run_dir: Path) -> None:
    run = load_run(run_dir)
    assert isinstance(run, NetAdaptResults) and run.kind == "netadapt" and run.finished
    lines = Journal(run_dir / "history.jsonl").read()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert run.target_latency_ms == pytest.approx(manifest["budget_ms"])
    assert list(run.iterations["iteration"]) == [line["iteration"] for line in lines] and len(lines) >= 2
    np.testing.assert_allclose(run.iterations["latency_ms"], [line["latency_ms"] for line in lines])
    np.testing.assert_allclose(run.iterations["accuracy"], [line["accuracy"] for line in lines])
    for line, (_, widths) in zip(lines, run.widths.iterrows(), strict=True):
        assert widths.to_dict() == group_widths(Architecture.from_dict(line["architecture"]))
    assert list(run.widths.columns) == list(lines[0]["widths"])  # network order
    assert len(run.proposals) == sum(len(line["proposals"]) for line in lines)
    chosen = run.proposals[run.proposals["chosen"]]
    assert list(chosen["group"]) == [line["chosen"]["group"] for line in lines[1:]]
    assert list(run.proposals["dominated"]) == [p["dominated"] for line in lines for p in line["proposals"]] and not chosen["dominated"].any()
    refined = json.loads((run_dir / "refined.json").read_text())
    table = run.widths_before_after()
    assert dict(zip(table["group"], table["end"], strict=True)) == refined["widths"]
    assert dict(zip(table["group"], table["start"], strict=True)) == lines[0]["widths"]
    candidates = run.candidates()
    assert list(candidates["source"]) == ["iteration"] * len(lines) + ["refined"]
    assert candidates["accuracy"].iloc[-1] == pytest.approx(refined["accuracy"])
    summary = run_summary(run)
    assert summary["iterations"] == len(lines) - 1 and summary["best_accuracy"] == pytest.approx(refined["accuracy"])
    assert summary["test_accuracy"] == pytest.approx(refined["test_accuracy"])
    front = pareto_front(run)
    assert len(front) >= 1 and set(front["source"]) <= {"iteration", "refined"}


def test_a_run_in_progress_loads(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "refined.json").unlink()
    history = (copy / "history.jsonl").read_text().splitlines()
    # The last iteration was being written when the process died; an earlier line was replayed.
    # (history[-2], not a fixed index: the run may meet its budget in one iteration, 2 lines in all)
    (copy / "history.jsonl").write_text("\n".join([*history[:-1], history[-2], history[-1][: len(history[-1]) // 2]]))
    run = load_run(copy)
    assert not run.finished and run.refined is None
    assert list(run.iterations["iteration"]) == list(range(len(history) - 1))
    assert "refined" not in set(run.candidates()["source"])
    # the cut iteration's proposals finished before the kill (a resume keeps them) are listed, not
    # yet committed (a review found an interrupted run's table of proposals without them)
    cut = json.loads(history[-1])
    in_progress = run.proposals[~run.proposals["committed"]]
    assert set(in_progress["iteration"]) == {cut["iteration"]} and len(in_progress) == len(cut["proposals"])
    assert list(in_progress["group"]) == [p["group"] for p in cut["proposals"]]
    assert list(in_progress["previous_width"]) == [p["previous_width"] for p in cut["proposals"]]
    assert in_progress["accuracy"].tolist() == pytest.approx([p["accuracy"] for p in cut["proposals"]])
    assert not in_progress["chosen"].any() and in_progress["score"].isna().all()
    assert nas_results(["show", str(copy)]) == 0


def test_a_run_extended_after_it_finished_is_in_progress_again(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """netadapt refine --resume RUN --max-iterations N: until it finishes again, refined.json is
    that of an earlier iteration, not the run's result."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    history = (copy / "history.jsonl").read_text().splitlines()
    later = json.loads(history[-1])
    later["iteration"] += 1  # a new iteration committed after the extension
    (copy / "history.jsonl").write_text("\n".join([*history, json.dumps(later)]) + "\n")
    run = load_run(copy)
    assert not run.finished and run.refined is None and "refined" not in set(run.candidates()["source"])
    assert run.extended and load_run(run_dir).finished and not load_run(run_dir).extended  # the run as it was
    assert nas_results(["show", str(copy)]) == 0
    out = capsys.readouterr().out
    assert " iterations (extended; refined.json is an earlier iteration's)\n" in out
    assert f"\n  not finished    interrupted: netadapt refine --resume {copy} goes on\n" in out
    assert nas_results(["show", str(run_dir)]) == 0
    assert "not finished" not in capsys.readouterr().out


def test_a_finished_runs_unreadable_refined_json_is_written_again_by_resume(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A copy whose refined.json was damaged: nas-results says so (not "extended", not "interrupted"),
    and netadapt refine --resume writes it again from the event log, with the copy's own files."""
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "refined.json").write_text('{"architecture": {"sche')
    run = load_run(copy)
    assert run.refined_unreadable and not run.extended and not run.finished
    assert nas_results(["show", str(copy)]) == 0
    out = capsys.readouterr().out
    assert " (refined.json unreadable)\n" in out and "extended" not in out and "interrupted" not in out
    assert f"refined.json: netadapt refine --resume {copy} writes it again" in out
    assert netadapt(["refine", "--resume", str(copy)]) == 0
    captured = capsys.readouterr()
    assert "refined.json was unreadable: written again from the run's event log" in captured.err
    assert f"refined.json: {copy.resolve() / 'refined.json'}" in captured.out  # the copy's, not the original's
    refined = json.loads((copy / "refined.json").read_text())
    original = json.loads((run_dir / "refined.json").read_text())
    assert refined["run"] == str(copy.resolve()) and refined["weights"] == str(copy.resolve() / "refined.pt")
    assert {k: v for k, v in refined.items() if k not in ("run", "weights", "onnx")} == {k: v for k, v in original.items() if k not in ("run", "weights", "onnx")}
    assert load_run(copy).finished
    # an empty object is no result either (it had stayed, shown as a finished run with no figures),
    # and a deleted file is said to be missing
    for damage, said in (("{}", "unreadable"), (None, "missing")):
        if damage is None:
            (copy / "refined.json").unlink()
        else:
            (copy / "refined.json").write_text(damage)
            assert load_run(copy).refined_unreadable and not load_run(copy).finished
        assert netadapt(["refine", "--resume", str(copy), "--quiet"]) == 0
        assert f"refined.json was {said}: written again from the run's event log" in capsys.readouterr().err
        assert json.loads((copy / "refined.json").read_text()) == refined


def test_a_runs_best_within_its_budget_is_the_network_it_delivers(run_dir: Path) -> None:
    """Not an iteration's checkpoint whose short fine-tune scored higher (a review saw 0.34 quoted for
    a refined network of 0.26)."""
    run = load_run(run_dir)
    refined = json.loads((run_dir / "refined.json").read_text())
    iterations = run.candidates()
    higher = iterations["accuracy"].iloc[:-1].max() + 0.1
    assert run_summary(run)["best_feasible_accuracy"] == pytest.approx(refined["accuracy"])
    run.iterations.loc[run.iterations.index[-1], "accuracy"] = higher  # the last iteration, at the refined network's latency
    assert run_summary(run)["best_feasible_accuracy"] == pytest.approx(refined["accuracy"])
    run.refined["latency_ms"] = run.target_latency_ms * 1.1  # over the budget: nothing delivered within it
    assert np.isnan(run_summary(run)["best_feasible_accuracy"])


def test_nas_results_notebook_writes_the_netadapt_notebook_for_a_netadapt_run(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import nbformat

    out = tmp_path / "study.ipynb"
    assert nas_results(["notebook", str(run_dir), "--out", str(out)]) == 0
    assert f"(reads {run_dir.resolve()})" in capsys.readouterr().out
    notebook = nbformat.read(out, as_version=4)
    assert "# A NetAdapt run" in notebook.cells[0].source
    assert f"RUN_DIR = {str(run_dir.resolve())!r}  # the run this copy was written for" in notebook.cells[1].source


def test_reference_networks_sit_on_the_runs_axis(run_dir: Path, table: Path) -> None:
    run = load_run(run_dir)
    names = ["mobilenetv3-small@0.75", "mobilenetv3-small"]
    before = reference_points(run, names)
    assert before["latency_ms"].isna().all() and (before["missing_ops"] > 0).all()
    placed = reference_points(run, names, accuracies={"mobilenetv3-small": 0.2}, measure_missing=True)
    assert placed["latency_ms"].notna().all() and (placed["missing_ops"] == 0).all()
    # Independently: the run's frozen correction applied to the table's sum, for a 10-class network.
    correction = Correction.from_dict(json.loads((run_dir / "manifest.json").read_text())["latency"]["correction"])
    lookup = LookupTable.load(table)
    for row in placed.itertuples():
        arch = reference(row.name).with_num_classes(10)
        assert row.fingerprint == arch.fingerprint()
        assert row.latency_ms == pytest.approx(correction.apply(lookup.predict_sum(arch), lookup.se_blocks(arch)))
    assert placed.set_index("name").loc["mobilenetv3-small", "accuracy"] == 0.2
    assert placed.set_index("name").loc["mobilenetv3-small", "accuracy_source"] == "given"
    assert np.isnan(placed.set_index("name").loc["mobilenetv3-small@0.75", "accuracy"])


def test_calibration_from_the_iterations_and_a_calibrate_csv(run_dir: Path, table: Path, tmp_path: Path) -> None:
    run = load_run(run_dir)
    points = calibration_points(run)
    iterations = points[points["source"] == "iteration"]
    assert len(iterations) == len(run.iterations)
    np.testing.assert_allclose(iterations["predicted_ms"], run.iterations["latency_ms"])
    np.testing.assert_allclose(iterations["measured_ms"], run.iterations["measured_latency_ms"])
    # The table's end-to-end points that are the iterations' own measurements are not counted twice.
    assert not set(points.loc[points["source"] == "table end-to-end", "fingerprint"]) & set(iterations["fingerprint"])
    report = calibrate(tiny_space(), LookupTable.load(table), samples=3, rounds=2, out_dir=tmp_path / "calibration", progress=False)
    from_csv = read_calibration_csv(tmp_path / "calibration")
    assert len(from_csv) == 3
    summary = calibration_summary(from_csv).set_index("source")
    assert summary.loc["nas-latency calibrate", "mape"] == pytest.approx(report.mape, rel=1e-3)
    both = calibration_points(run, csv=tmp_path / "calibration" / "calibration.csv")
    summary = calibration_summary(both).set_index("source")
    expected = fidelity(both["predicted_ms"].tolist(), both["measured_ms"].tolist())
    assert summary.loc["all", "mape"] == pytest.approx(expected["mape"]) and summary.loc["all", "count"] == len(both)
    out = tmp_path / "calibration.png"
    assert nas_results(["calibration", str(run_dir), "--csv", str(tmp_path / "calibration"), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000


def test_show_and_figures(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert nas_results(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    lines = Journal(run_dir / "history.jsonl").read()
    assert "netadapt" in out and "finished" in out
    side = json.loads((run_dir / "refined.json").read_text())["side_by_side"]
    assert f"  measured        refined / start = {side['ratio']:.2f} (" in out and "timed side by side at the end" in out
    start = json.loads((run_dir / "refined.json").read_text())["start"]  # its test accuracy beside the result's
    assert f"  start           accuracy {start['accuracy']:.4f}, test accuracy {start['test_accuracy']:.4f}, latency" in out
    for line in lines[1:]:
        assert f"{line['chosen']['group']}" in out and f"{line['chosen']['previous_width']}->{line['chosen']['width']}" in out
    # The network the run ends with has its own row, starred when it is on the front (where its
    # long training usually puts it alone): every front point is starred somewhere in the table.
    refined = json.loads((run_dir / "refined.json").read_text())
    assert refined["iterations"] >= 1 and "after the final fine-tune (1 epoch)" in out
    final_row = [row for row in out.splitlines() if row.split()[:1] == ["final"]]
    assert len(final_row) == 1 and "final fine-tune (1 epoch)" in final_row[0] and f"{refined['accuracy']:.4f}" in final_row[0]
    front = pareto_front(load_run(run_dir))
    assert final_row[0].rstrip().endswith("*") == ("refined" in set(front["source"]))
    table = out[out.index("iterations (* = on the accuracy/latency front):"):]
    assert sum(row.rstrip().endswith("*") for row in table.splitlines()) == len(front)
    assert nas_results(["show", str(run_dir), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert len(payload["iterations"]) == len(lines) and payload["refined"]["notation"]
    assert nas_results(["figures", str(run_dir), "--out", str(tmp_path), "--references", "none"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["calibration.png", "front.png", "progress.png", "width_history.png", "widths.png"]
    for path in tmp_path.glob("*.png"):
        with Image.open(path) as image:
            assert image.width > 500


def test_show_says_when_a_run_ends_above_its_budget(run_dir: Path, table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert nas_results(["show", str(run_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["meets_budget"] is (summary["best_latency_ms"] <= summary["target_latency_ms"])
    # stopped by --max-iterations short of its budget: it reads finished, so say what is left. (A
    # budget far above the smallest reachable network, by granularity 4: at 0.6 and granularity 8 a
    # freshly measured table put the smallest at 0.61 of the start once, and the run was refused;
    # and far below the start: at 0.75 a noisy entry of the freshly measured table once put the
    # first iteration's network at 0.74 of the start, within the budget.)
    out = tmp_path / "short"
    assert netadapt([
        "refine", ARCH, "--budget-ratio", "0.5", "--granularity", "4", "--max-iterations", "1", "--train-size", "256", "--val-size", "128", "--test-size", "128",
        "--pretrain-epochs", "1", "--finetune-steps", "2", "--final", "none", "--table", str(table), "--threads", "1",
        "--initial-reduction", "0.06", "--reduction-decay", "1", "--out", str(out), "--quiet",
    ]) == 0
    capsys.readouterr()
    assert nas_results(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "1 iteration, finished" in shown
    assert "  above budget    ends at " in shown and f"stopped by --max-iterations 1; netadapt refine --resume {out} --max-iterations N (N above 1) goes on" in shown
    assert nas_results(["show", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["meets_budget"] is False


def test_figures_name_the_final_training_the_run_did(run_dir: Path) -> None:
    """Legends say what the refined network's last training was (a retraining was labelled a
    'long fine-tune', and the progress plot showed the raw setting, 'finetune')."""
    from mobilenas.netadapt.choices import refined_label
    from mobilenas.results import plots

    assert refined_label({"final": "retrain", "final_epochs": 10}) == "refined after retraining from scratch (10 epochs)"
    assert refined_label({"final": "none", "final_epochs": 0}) == refined_label({}) == "refined (no final training)"
    run = load_run(run_dir)

    def legend(figure) -> list[str]:
        return [text.get_text() for axes in figure.axes if axes.get_legend() for text in axes.get_legend().get_texts()]

    assert f"refined after the final fine-tune (1 epoch): {run.refined['accuracy']:.3f}" in legend(plots.plot_netadapt_progress(run))
    assert f"{run.label}: refined after the final fine-tune (1 epoch)" in legend(plots.plot_front(run))


def test_netadapt_notebook_runs(run_dir: Path, tmp_path: Path) -> None:
    import nbformat

    from mobilenas.results import notebook_path

    notebook = nbformat.read(notebook_path("netadapt"), as_version=4)
    # Parameters injected papermill-style, as a cell after the one tagged "parameters". No RUN_DIR:
    # the notebook opens the newest NetAdapt run under runs/ (its own folder's, as results/runs).
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    injected = f"RUN_DIR = ''\nOUT_DIR = {str(tmp_path / 'figures')!r}\nREFERENCES = 'mobilenetv3-small'"
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(injected))
    shutil.copytree(run_dir, tmp_path / "runs" / "netadapt-run")
    execute_notebook(notebook, tmp_path)
    text = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert f"RUN_DIR not set: the newest netadapt run, {Path('runs') / 'netadapt-run'}" in text
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert written == ["calibration.png", "progress.png", "trajectory.png", "width_history.png", "widths.png"]
    for name in written:
        with Image.open(tmp_path / "figures" / name) as image:
            assert image.width > 500


def test_the_progress_figure_counts_iterations_in_whole_numbers_even_with_one(run_dir: Path) -> None:
    # A run stopped by its time limit before any iteration finished has only iteration 0: its axis
    # was ticked at -0.04, -0.02, 0.00, ...
    import dataclasses

    from mobilenas.results import plots

    run = load_run(run_dir)
    assert isinstance(run, NetAdaptResults)
    for rows in (run.iterations.iloc[:1], run.iterations):
        axes = plots.plot_netadapt_progress(dataclasses.replace(run, iterations=rows)).axes[1]
        low, high = axes.get_xlim()
        ticks = [t for t in axes.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert low < rows["iteration"].min() and high > rows["iteration"].max()
    # each iteration's target is drawn at that iteration, also where there is only one (a step
    # line drew none for one iteration, and half of the first and the last)
    for rows in (run.iterations.iloc[:2], run.iterations):
        axes = plots.plot_netadapt_progress(dataclasses.replace(run, iterations=rows)).axes[1]
        targets = next(line for line in axes.get_lines() if line.get_label() == "iteration's target")
        assert list(targets.get_xdata()) == list(rows["iteration"].iloc[1:])
        assert targets.get_marker() == "_" and targets.get_drawstyle() == "default"  # a mark at the iteration, not a step
        assert list(targets.get_ydata()) == pytest.approx(list(rows["target_latency_ms"].iloc[1:]))


def test_compare_json_keeps_counts_whole_beside_a_netadapt_run(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A search's counts (samples, trained, ...) are missing from a NetAdapt run's row; pandas made
    them floats ("samples": 3.0) in compare --json."""
    from mobilenas.search.cli import main as nas_search

    from helpers import write_cell_benchmark

    cells = tmp_path / "cells.csv"
    write_cell_benchmark(cells)
    search = tmp_path / "search"
    assert nas_search(["--space", "nb201", "--benchmark", str(cells), "--latency-column", "latency_ms_toy", "--target-latency", "9ms", "--samples", "3", "--out", str(search), "--quiet"]) == 0
    capsys.readouterr()
    assert nas_results(["compare", str(search), str(run_dir), "--out", str(tmp_path / "c.png"), "--json"]) == 0
    rows = {row["kind"]: row for row in json.loads(capsys.readouterr().out)["runs"]}
    assert rows["search"]["samples"] == 3 and isinstance(rows["search"]["samples"], int)
    assert isinstance(rows["search"]["trained"], int) and isinstance(rows["netadapt"]["iterations"], int)
    assert rows["netadapt"]["samples"] is None and rows["search"]["iterations"] is None
