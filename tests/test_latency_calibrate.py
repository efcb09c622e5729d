from __future__ import annotations

import csv
import json

import pytest

from mobilenas.latency import (
    LookupTable,
    Method,
    OnnxRuntimeBackend,
    calibrate,
    ensure_correction,
    fidelity,
    spearman,
)
from mobilenas.space import Architecture

from helpers import tiny_space

FAST = Method(name="in-context", cold_cache=False, warmup=1, repeats=3)


def test_fidelity_figures_by_hand() -> None:
    measured = [1.0, 2.0, 3.0, 4.0]
    predicted = [1.02, 2.3, 2.9, 4.0]  # errors 2%, 15%, -3.33%, 0%
    figures = fidelity(predicted, measured)
    assert figures["mape"] == pytest.approx((0.02 + 0.15 + 0.1 / 3 + 0.0) / 4)
    assert figures["within_5pct"] == pytest.approx(0.75)
    assert figures["within_10pct"] == pytest.approx(0.75)
    assert figures["spearman"] == pytest.approx(1.0)
    assert figures["rmse_ms"] == pytest.approx(((0.02**2 + 0.3**2 + 0.1**2) / 4) ** 0.5)


def test_spearman_by_hand_with_ties() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x = (1, 2.5, 2.5, 4) - 1, y = (1, 2, 3, 4) - 1: Pearson of the ranks
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, rel=1e-6)


def test_calibrate_measures_compares_and_writes_csv_and_plot(tmp_path) -> None:
    space = tiny_space()
    table = LookupTable.create(tmp_path / "t.jsonl", backend=OnnxRuntimeBackend(warmup=1, repeats=3), input_size=32, method=FAST)
    ensure_correction(table, space, samples=2, seed=0)
    fitted_on = {p.fingerprint for p in table.end_to_end_points()}
    report = calibrate(space, table, samples=4, seed=5, rounds=2, out_dir=tmp_path / "out", progress=False)
    assert report.samples == 4 and len(report.rows) == 4
    assert not fitted_on & {r.fingerprint for r in report.rows}  # out of sample
    for row in report.rows:
        assert row.measured_ms > 0
        assert row.predicted_ms == pytest.approx(table.correction.apply(row.sum_ms, table.se_blocks(Architecture.from_notation(row.notation))))
    assert 0 <= report.within_5pct <= report.within_10pct <= 1
    assert report.mape == pytest.approx(sum(abs(r.error) for r in report.rows) / 4)
    with open(report.csv_path) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {"predicted_ms", "measured_ms", "error_pct", "notation"} <= set(rows[0])
    assert (tmp_path / "out" / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "out" / "calibration.json").read_text())
    assert {"samples", "mape", "within_5pct", "within_10pct", "spearman", "rmse_ms"} <= set(summary)


def test_calibrate_can_feed_the_correction(tmp_path) -> None:
    space = tiny_space()
    table = LookupTable.create(tmp_path / "t.jsonl", backend=OnnxRuntimeBackend(warmup=1, repeats=3), input_size=32, method=FAST)
    calibrate(space, table, samples=3, seed=2, rounds=1, progress=False, update_correction=True)
    assert table.correction.fitted and table.correction.points == 3
    assert LookupTable.load(table.path).correction == table.correction


def test_calibrate_with_anchors_reports_drift_and_an_in_run_correction(tmp_path) -> None:
    space = tiny_space()
    table = LookupTable.create(tmp_path / "t.jsonl", backend=OnnxRuntimeBackend(warmup=1, repeats=3), input_size=32, method=FAST)
    ensure_correction(table, space, samples=3, seed=0)
    points = table.end_to_end_points()
    report = calibrate(space, table, samples=4, seed=5, rounds=2, progress=False, anchors=True)
    assert report.drift is not None and report.drift > 0 and report.in_run is not None
    fresh = report.in_run
    assert fresh["correction"]["points"] == len(points)
    # The in-run correction predicts the same sampled architectures; its figures are computed from them.
    measured = [r.measured_ms for r in report.rows]
    assert fresh["mape"] == pytest.approx(fidelity(fresh["predicted_ms"], measured)["mape"])
    assert len(fresh["predicted_ms"]) == 4
    # The table itself is untouched: same correction, same end-to-end points.
    assert table.end_to_end_points() == points
    assert calibrate(space, table, samples=2, seed=6, rounds=1, progress=False).drift is None
