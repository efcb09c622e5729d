"""mobilenas.results pieces with closed-form answers: reference points, hypervolumes, axes, parsing."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobilenas.results import (
    ReferencePoint,
    SearchResults,
    hypervolume,
    load_run,
    pareto_front,
    points,
    run_summary,
    summarize,
)
from mobilenas.results.calibration import calibration_summary, read_calibration_csv
from mobilenas.results.cli import main as nas_results
from mobilenas.results.fronts import normalised
from mobilenas.results.plots import plot_convergence, plot_front, plot_reward_landscape, save_figure
from mobilenas.results.references import DEFAULT_REFERENCES, parse_accuracies, parse_names
from mobilenas.results.search_run import TRIAL_COLUMNS
from mobilenas.search.cli import main as nas_search
from mobilenas.search.rewards import RewardSpec

from helpers import write_cell_benchmark


def _run(rows: list[dict[str, object]], target_ms: float = 4.0) -> SearchResults:
    """A search's results as values (what load_run returns), for closed-form checks."""
    trials = pd.DataFrame([{c: None for c in TRIAL_COLUMNS} | {"source": "trained", "status": "ok", "reward": 0.0} | r for r in rows])
    for column in ("accuracy", "latency_ms", "measured_latency_ms", "reward"):
        trials[column] = pd.to_numeric(trials[column]).astype(float)
    trials["order"] = range(len(trials))
    trials["number"] = range(len(trials))
    manifest = {"kind": "search", "target_latency_ms": target_ms, "reward": RewardSpec.soft().to_dict(), "problem": "network", "strategy": {"name": "random"}, "seed": 0}
    return SearchResults(Path("."), "synthetic", manifest, trials, pd.DataFrame(), pd.DataFrame(columns=["order", "number"]), None)


def test_hypervolume_and_its_normalisation_by_hand() -> None:
    run = _run([
        {"accuracy": 0.5, "latency_ms": 1.0},
        {"accuracy": 0.7, "latency_ms": 2.0},
        {"accuracy": 0.6, "latency_ms": 3.0},  # dominated by the second
        {"accuracy": 0.9, "latency_ms": 9.0},  # beyond the reference latency
        {"accuracy": 0.95, "latency_ms": 1.5, "status": "failed"},  # failed trials are never on the front
    ])
    reference = ReferencePoint(0.0, 4.0)
    assert hypervolume(run, reference) == pytest.approx(1.0 * 0.5 + 2.0 * 0.7)
    assert normalised(hypervolume(run, reference), reference) == pytest.approx(1.9 / 4.0)
    assert hypervolume(run, ReferencePoint(0.6, 4.0)) == pytest.approx(2.0 * 0.1)
    assert list(pareto_front(run)["latency_ms"]) == [1.0, 2.0, 9.0]
    summary = run_summary(run)  # default: accuracy 0, twice the 4 ms target
    assert summary["reference_point"] == {"accuracy": 0.0, "latency_ms": 8.0}
    assert summary["best_feasible_accuracy"] == 0.7 and summary["front_size"] == 3


def test_measured_axis_falls_back_to_the_table_point_by_point() -> None:
    run = _run([
        {"accuracy": 0.5, "latency_ms": 1.0, "measured_latency_ms": 3.0},
        {"accuracy": 0.6, "latency_ms": 2.0},
    ])
    frame = points(run, "measured")
    assert list(frame["front_latency_ms"]) == [3.0, 2.0] and list(frame["latency_source"]) == ["measured", "table"]
    # Measured, the first is slower and less accurate than the second: it leaves the front.
    assert list(pareto_front(run, "measured")["accuracy"]) == [0.6]
    assert list(pareto_front(run, "table")["accuracy"]) == [0.5, 0.6]
    with pytest.raises(ValueError, match="latency must be one of table, measured"):
        points(run, "guessed")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.01, 20.0)), min_size=1, max_size=30))
def test_front_points_are_not_dominated(pairs: list[tuple[float, float]]) -> None:
    run = _run([{"accuracy": a, "latency_ms": lat} for a, lat in pairs])
    front = pareto_front(run)
    for row in front.itertuples():
        dominated = [(a, lat) for a, lat in pairs if a >= row.accuracy and lat <= row.latency_ms and (a > row.accuracy or lat < row.latency_ms)]
        assert not dominated
    # Every point is dominated by, or equal to, a front point.
    for a, lat in pairs:
        assert ((front["accuracy"] >= a) & (front["latency_ms"] <= lat)).any()
    reference = ReferencePoint(0.0, 25.0)
    assert 0.0 <= normalised(hypervolume(run, reference), reference) <= 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.5,20ms", (0.5, 20.0)), ("0,0.03s", (0.0, 30.0)), ("0.2, 15", (0.2, 15.0)), ("0.1;1500us", (0.1, 1.5))],
)
def test_reference_point_parses_what_users_type(text: str, expected: tuple[float, float]) -> None:
    assert ReferencePoint.parse(text).as_tuple() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("20ms", "ACCURACY,LATENCY"), ("x,20ms", "is not a number"), ("0.5,fast", "cannot read 'fast'"), ("1,20ms", "fraction in [0, 1)"), ("0.5,0", "must be positive")],
)
def test_reference_point_errors_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as error:
        ReferencePoint.parse(text)
    assert fragment in str(error.value)


def test_reference_names_and_accuracies() -> None:
    assert parse_names(None) == DEFAULT_REFERENCES == parse_names("all")
    assert parse_names("none") == ()
    assert parse_names("mobilenetv2@0.75, mnasnet-a1,mobilenetv2@0.75") == ("mobilenetv2@0.75", "mnasnet-a1")
    with pytest.raises(ValueError, match="unknown reference network 'efficientnet': choose from"):
        parse_names("efficientnet")
    with pytest.raises(ValueError, match=r"unknown reference network 'mobilenetv3-smal@0.75' \(did you mean 'mobilenetv3-small'\?\): choose"):
        parse_names("mobilenetv3-smal@0.75")
    with pytest.raises(ValueError, match="width"):
        parse_names("mobilenetv2@-1")
    assert parse_accuracies(["mobilenetv2=0.72", "mnasnet-a1@0.5=0.6"]) == {"mobilenetv2": 0.72, "mnasnet-a1@0.5": 0.6}
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\] \(0.72, not 72\)"):
        parse_accuracies(["mobilenetv2=72"])
    with pytest.raises(ValueError, match="NAME=ACCURACY"):
        parse_accuracies(["mobilenetv2"])


def test_summarize_mean_and_std_per_group() -> None:
    table = pd.DataFrame({
        "strategy": ["ppo", "ppo", "random", "ppo"],
        "target_latency_ms": [5.0, 5.0, 5.0, 10.0],
        "best_reward": [0.7, 0.8, 0.6, 0.9],
        "hypervolume_normalised": [0.5, 0.7, 0.4, np.nan],
    })
    grouped = summarize(table, ["strategy", "target_latency_ms"], metrics=["best_reward", "hypervolume_normalised"])
    first = grouped.iloc[0]
    assert (first["strategy"], first["target_latency_ms"], first["runs"]) == ("ppo", 5.0, 2)
    assert first["best_reward_mean"] == pytest.approx(0.75) and first["best_reward_std"] == pytest.approx(np.std([0.7, 0.8], ddof=1))
    assert math.isnan(grouped.iloc[1]["hypervolume_normalised_mean"])  # its only run has no hypervolume


def test_calibration_csv_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "calibration.csv"
    path.write_text("index,predicted_ms,measured_ms,notation\n0,1.0,1.25,a\n1,2.0,2.0,b\n2,3.0,2.5,c\n")
    points_frame = read_calibration_csv(tmp_path)
    np.testing.assert_allclose(points_frame["error"], [-0.2, 0.0, 0.2])
    summary = calibration_summary(points_frame).iloc[0]
    assert summary["count"] == 3 and summary["mape"] == pytest.approx(0.4 / 3) and summary["within_10pct"] == pytest.approx(1 / 3)
    assert summary["spearman"] == pytest.approx(1.0) and summary["bias"] == pytest.approx(0.0)
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="lacks measured_ms, predicted_ms"):
        read_calibration_csv(path)
    with pytest.raises(FileNotFoundError, match="nas-latency calibrate --out"):
        read_calibration_csv(tmp_path / "nowhere")


def test_save_figure_writes_png_only(tmp_path: Path) -> None:
    run = _run([{"accuracy": 0.5, "latency_ms": 1.0, "reward": 0.5}])
    figure = plot_front(run)
    with pytest.raises(ValueError, match=r"ending in \.png"):
        save_figure(figure, tmp_path / "front.svg")
    path = save_figure(figure, tmp_path / "deep" / "front.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_that_just_started_reads_and_draws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run with its manifest but no result yet (the first trial is training)."""
    cells = tmp_path / "cells.csv"
    write_cell_benchmark(cells)
    full = tmp_path / "full"
    assert nas_search(["--space", "nb201", "--benchmark", str(cells), "--latency-column", "latency_ms_toy", "--target-latency", "9ms", "--samples", "3", "--out", str(full), "--quiet"]) == 0
    capsys.readouterr()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copy(full / "manifest.json", fresh / "manifest.json")
    events = (full / "events.jsonl").read_text().splitlines()
    (fresh / "events.jsonl").write_text(events[0] + "\n")  # one proposal, no result
    run = load_run(fresh)
    assert run.trials.empty and len(run.proposals) == 1 and run.best is None
    summary = run_summary(run)
    assert summary["front_size"] == 0 and math.isnan(summary["hypervolume"]) and summary["best_number"] is None  # no front, no hypervolume (not 0: compare averaged that in)
    assert nas_results(["show", str(fresh)]) == 0
    shown = capsys.readouterr().out
    assert "no successful trial yet" in shown and "best accuracy -" not in shown  # '-' read as a value missing
    assert "  within target   no successful trial, so nothing is within the " in shown
    assert nas_results(["figures", str(fresh), "--out", str(tmp_path / "figures")]) == 0
    assert len(list((tmp_path / "figures").glob("*.png"))) == 3
    for figure in (plot_convergence(run), plot_reward_landscape(run)):
        save_figure(figure, tmp_path / "x.png")
    assert json.loads((fresh / "manifest.json").read_text())["kind"] == "search"


def test_a_few_points_far_below_the_rest_are_left_off_the_accuracy_axis_and_named() -> None:
    """NAS-Bench-201's cells cut off from their output sit at chance accuracy and zero latency, on
    every front: drawn, they squeeze the fronts into the top of the figure."""
    bulk = [{"accuracy": a, "latency_ms": 1.0 + 10 * i / 29} for i, a in enumerate(np.linspace(0.73, 0.85, 30))]
    chance = [{"accuracy": 0.097, "latency_ms": 0.01 * (i + 1)} for i in range(3)]

    def axis_and_notes(rows: list[dict[str, object]]) -> tuple[tuple[float, float], list[str]]:
        axes = plot_front(_run(rows, target_ms=8.0), show_all=True).axes[0]
        legend = axes.get_legend()
        assert not any(t.get_text().startswith("off the axis") for t in axes.texts)  # a corner note wrote over points
        return axes.get_ylim(), [t.get_text() for t in legend.get_texts() if t.get_text().startswith("off the axis")]

    (low, high), notes = axis_and_notes(bulk + chance)
    assert 0.72 < low < 0.73 and 0.85 < high < 0.86
    assert notes == ["off the axis: 3 points below, down to 0.097"]
    (low, _), notes = axis_and_notes(bulk)  # nothing far below: the usual axis
    assert low < 0.73 and not notes
    spread = [{"accuracy": a, "latency_ms": 1.0 + i} for i, a in enumerate(np.linspace(0.1, 0.85, 30))]
    (low, _), notes = axis_and_notes(spread + chance)  # no wide gap: everything stays
    assert low < 0.097 and not notes
    (low, _), notes = axis_and_notes(bulk[:12] + chance)  # a fifth of the points below: they are data, not a few outliers
    assert low < 0.097 and not notes


def test_the_most_accurate_within_the_target_is_the_fastest_of_equals() -> None:
    # proxy accuracies are multiples of 1/validation images, so equal ones are common; nas-search
    # and nas-results name the same one
    import pandas as pd

    from mobilenas.results.fronts import most_accurate_within

    frame = pd.DataFrame({"number": [0, 1, 2, 3], "accuracy": [0.5, 0.7, 0.7, 0.9], "front_latency_ms": [3.0, 9.0, 6.0, 12.0]})
    assert most_accurate_within(frame, 10.0)["number"] == 2
    assert most_accurate_within(frame, 12.0)["number"] == 3
    assert most_accurate_within(frame, 2.0) is None and most_accurate_within(frame, float("nan")) is None


def test_reward_landscape_colour_bars_label_every_tick_apart() -> None:
    """Proxy accuracies in a narrow band (0.10-0.14) printed 0.11, 0.11, 0.12, 0.12 on the colour bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    spec = RewardSpec.soft()
    rows = [{"accuracy": a, "latency_ms": lat, "reward": spec(a, lat, 4.0).reward}
            for a, lat in zip(np.linspace(0.10, 0.14, 12), np.linspace(2.0, 6.0, 12), strict=True)]
    figure = plot_reward_landscape(_run(rows))
    FigureCanvasAgg(figure).draw()
    bars = [axes for axes in figure.axes if axes.get_label() == "<colorbar>"]
    assert len(bars) == 2
    for bar in bars:
        labels = [t.get_text() for t in bar.get_yticklabels() if t.get_text()]
        assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
