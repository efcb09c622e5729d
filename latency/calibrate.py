"""Proof of fidelity: how well a table predicts latencies measured end to end.

:func:`calibrate` samples architectures from a space (seeded, distinct, none of those the table's
correction was fitted on, so the check is out of sample), makes sure the table has their ops,
predicts each, measures each end to end with the runs of all of them interleaved (so drift of the
machine hits every architecture alike), and reports:

* ``mape``: mean absolute percentage error, as a fraction (0.031 = 3.1%);
* ``within_5pct`` / ``within_10pct``: share of architectures whose prediction is within +-5% /
  +-10% of the measurement (fractions 0..1);
* ``spearman``: Spearman rank correlation of predicted and measured latencies;
* ``rmse_ms``: root mean square error in milliseconds.

With an output directory it writes ``calibration.csv`` (one row per architecture),
``calibration.png`` (measured vs predicted, with the +-5% and +-10% bands) and
``calibration.json`` (the summary).
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobilenas.latency.measure import Measurement, measure_architectures
from mobilenas.latency.table import Correction, LookupTable
from mobilenas.space.arch import Architecture
from mobilenas.space.search_space import SearchSpace


@dataclass(frozen=True)
class CalibrationRow:
    """One architecture: predicted (after correction) and measured latency."""

    index: int
    fingerprint: str
    notation: str
    sum_ms: float
    predicted_ms: float
    measured_ms: float
    measured_iqr_ms: float

    @property
    def error(self) -> float:
        """Relative error ``(predicted - measured) / measured``."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


@dataclass(frozen=True)
class CalibrationReport:
    """The figures of :func:`calibrate` (shares and ``mape`` are fractions)."""

    samples: int
    mape: float
    within_5pct: float
    within_10pct: float
    spearman: float
    rmse_ms: float
    rows: tuple[CalibrationRow, ...]
    correction: Correction
    device: str
    input_size: int
    table_path: str | None
    wall_time_s: float
    csv_path: str | None = None
    plot_path: str | None = None
    json_path: str | None = None
    # With ``anchors``: the correction's own architectures measured again, interleaved with the
    # sampled ones. ``drift`` = median(now / when the correction was fitted): how much faster (<1)
    # or slower (>1) the machine runs now. ``in_run`` holds the figures with a correction refitted
    # on those fresh anchor measurements (still out of sample: no sampled architecture is used).
    drift: float | None = None
    in_run: dict[str, Any] | None = None
    # With ``update_correction``: the table's correction refitted with these measurements added
    # (``correction`` stays the one the predictions above were made with).
    updated_correction: Correction | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` payload: ``samples``, ``mape``, ``within_5pct``, ``within_10pct``, ``spearman``, ``rmse_ms`` and details."""
        return {
            "samples": self.samples,
            "mape": self.mape,
            "within_5pct": self.within_5pct,
            "within_10pct": self.within_10pct,
            "spearman": self.spearman,
            "rmse_ms": self.rmse_ms,
            "max_abs_error": float(max((abs(r.error) for r in self.rows), default=float("nan"))),
            "mean_error": float(np.mean([r.error for r in self.rows])) if self.rows else float("nan"),
            "correction": self.correction.to_dict(),
            "device": self.device,
            "input_size": self.input_size,
            "table": self.table_path,
            "wall_time_s": self.wall_time_s,
            "csv": self.csv_path,
            "plot": self.plot_path,
            "drift": self.drift,
            "in_run": self.in_run,
            "updated_correction": self.updated_correction.to_dict() if self.updated_correction is not None else None,
        }


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (ties get their average rank)."""
    a, b = _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float))
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=float)
    ranks[order] = np.arange(values.size, dtype=float)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def fidelity(predicted_ms: Sequence[float], measured_ms: Sequence[float]) -> dict[str, float]:
    """``mape``, ``within_5pct``, ``within_10pct``, ``spearman``, ``rmse_ms`` of predictions."""
    p = np.asarray(predicted_ms, dtype=float)
    m = np.asarray(measured_ms, dtype=float)
    if p.size == 0:
        raise ValueError("no architectures to compare")
    errors = np.abs(p - m) / m
    return {
        "mape": float(errors.mean()),
        "within_5pct": float(np.mean(errors <= 0.05)),
        "within_10pct": float(np.mean(errors <= 0.10)),
        "spearman": spearman(p.tolist(), m.tolist()),
        "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))),
    }


def sample_architectures(space: SearchSpace, samples: int, seed: int, exclude: set[str] | None = None) -> list[Architecture]:
    """``samples`` distinct architectures drawn uniformly (seeded), skipping fingerprints in ``exclude``."""
    rng = np.random.default_rng(seed)
    seen = set(exclude or ())
    archs: list[Architecture] = []
    attempts = 0
    while len(archs) < samples:
        attempts += 1
        if attempts > 100 * samples + 1000:
            raise ValueError(f"space {space.name!r} has fewer than {samples} distinct architectures to sample; ask for fewer --samples")
        arch = space.sample(rng)
        key = arch.fingerprint()
        if key not in seen:
            seen.add(key)
            archs.append(arch)
    return archs


def calibrate(
    space: SearchSpace,
    table: LookupTable,
    samples: int = 50,
    *,
    seed: int = 1,
    rounds: int = 10,
    out_dir: str | Path | None = None,
    progress: bool = True,
    measure_missing: bool = True,
    update_correction: bool = False,
    anchors: bool = False,
) -> CalibrationReport:
    """Compare ``table``'s predictions with end-to-end measurements of ``samples`` architectures.

    Architectures the correction was fitted on are never sampled. Missing ops are measured into
    the table first (``measure_missing``), end-to-end runs are interleaved over ``rounds``
    rounds. The report is computed with the table's correction as it was; with
    ``update_correction`` the new measurements are then added to the table's end-to-end points
    and the correction refitted (for future predictions; the report is unaffected).

    With ``anchors`` the architectures the correction was fitted on are measured again in the
    same interleaved rounds. The report then also states the machine's ``drift`` since the
    correction was fitted, and (``in_run``) the figures with a correction refitted on those fresh
    anchor runs: on a machine whose speed wanders by several percent over minutes (a shared VM),
    this separates the table's error from the machine's drift. The sampled architectures are
    never used to fit anything.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"--samples must be a whole number >= 2, got {samples!r}")
    if update_correction:  # now, not after the measurements it would keep
        table.check_writable("--update-correction would add this calibration's measurements to it")
    start = time.perf_counter()
    exclude = {p.fingerprint for p in table.end_to_end_points()}
    archs = sample_architectures(space, samples, seed, exclude)
    if measure_missing:
        from mobilenas.latency.signature import OpSignature

        wanted: dict[OpSignature, None] = {}
        for arch in archs:
            wanted.update(dict.fromkeys(table.missing(arch)))
        table.ensure_signatures(list(wanted), progress=progress, desc="measuring ops")
    correction = table.correction
    sums = [table.predict_sum(arch) for arch in archs]
    predicted = [table.predict(arch, correction=correction) for arch in archs]
    from mobilenas.cliutil import progress as progress_bar

    anchor_points = table.end_to_end_points() if anchors else []
    anchor_archs = [point.architecture() for point in anchor_points]
    everything = archs + anchor_archs
    bar = progress_bar(total=len(everything) * (rounds + 1), desc=f"end-to-end, {len(everything)} architectures", enabled=progress, unit="step")
    try:
        measured_all = measure_architectures(everything, table.measuring_backend(), table.input_size, rounds=rounds, seed=seed, on_progress=bar.update)
    finally:
        bar.close()
    measurements, anchor_runs = measured_all[: len(archs)], measured_all[len(archs) :]
    drift: float | None = None
    in_run: dict[str, Any] | None = None
    if anchor_points:
        drift = float(np.median([m.latency_ms / p.latency_ms for m, p in zip(anchor_runs, anchor_points, strict=True)]))
        fresh = table.fit_on(anchor_archs, [m.latency_ms for m in anchor_runs])
        fresh_predicted = [table.predict(arch, correction=fresh) for arch in archs]
        in_run = fidelity(fresh_predicted, [m.latency_ms for m in measurements]) | {
            "correction": {"a": fresh.a, "b": fresh.b, "se_ms": fresh.se_ms, "points": fresh.points},
            "predicted_ms": fresh_predicted,
            "mean_error": float(np.mean([(p - m.latency_ms) / m.latency_ms for p, m in zip(fresh_predicted, measurements, strict=True)])),
        }
    rows = tuple(
        CalibrationRow(i, arch.fingerprint(), arch.to_notation(), s, p, m.latency_ms, m.spread.iqr_ms)
        for i, (arch, s, p, m) in enumerate(zip(archs, sums, predicted, measurements, strict=True))
    )
    figures = fidelity(predicted, [m.latency_ms for m in measurements])
    report = CalibrationReport(
        samples=len(rows),
        mape=figures["mape"],
        within_5pct=figures["within_5pct"],
        within_10pct=figures["within_10pct"],
        spearman=figures["spearman"],
        rmse_ms=figures["rmse_ms"],
        rows=rows,
        correction=correction,
        device=table.device.describe(),
        input_size=table.input_size,
        table_path=str(table.path) if table.path else None,
        wall_time_s=time.perf_counter() - start,
        drift=drift,
        in_run=in_run,
    )
    if out_dir is not None:
        report = write_report(report, Path(out_dir))
    if update_correction:
        report = dataclasses.replace(report, updated_correction=_record(table, archs, measurements))
        if report.json_path is not None:
            from mobilenas.runs import atomic_write_json

            atomic_write_json(Path(report.json_path), report.to_dict())
    return report


def _record(table: LookupTable, archs: Sequence[Architecture], measurements: Sequence[Measurement]) -> Correction:
    for arch, measurement in zip(archs, measurements, strict=True):
        table.record_end_to_end(arch, measurement, refit=False)
    return table.fit_correction()


def write_report(report: CalibrationReport, out_dir: Path) -> CalibrationReport:
    """Write ``calibration.csv``, ``calibration.png`` and ``calibration.json`` into ``out_dir``."""
    from mobilenas.runs import atomic_write_json, atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "calibration.csv"
    lines: list[list[Any]] = [["index", "fingerprint", "predicted_ms", "measured_ms", "measured_iqr_ms", "sum_ms", "error_pct", "notation"]]
    for row in report.rows:
        lines.append([row.index, row.fingerprint, f"{row.predicted_ms:.4f}", f"{row.measured_ms:.4f}", f"{row.measured_iqr_ms:.4f}", f"{row.sum_ms:.4f}", f"{100 * row.error:.2f}", row.notation])
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    atomic_write_text(csv_path, buffer.getvalue())
    plot_path = out_dir / "calibration.png"
    plot_calibration(report, plot_path)
    report = dataclasses.replace(report, csv_path=str(csv_path), plot_path=str(plot_path), json_path=str(out_dir / "calibration.json"))
    atomic_write_json(out_dir / "calibration.json", report.to_dict())
    return report


def plot_calibration(report: CalibrationReport, path: Path) -> None:
    """Scatter of measured (x) against predicted (y) latency with the y = x line and +-5%/+-10% bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = np.array([r.measured_ms for r in report.rows])
    predicted = np.array([r.predicted_ms for r in report.rows])
    low = float(min(measured.min(), predicted.min())) * 0.9
    high = float(max(measured.max(), predicted.max())) * 1.1
    line = np.linspace(low, high, 100)
    figure, axes = plt.subplots(figsize=(6, 6), dpi=120)
    axes.fill_between(line, line * 0.9, line * 1.1, color="tab:blue", alpha=0.10, label="±10%")
    axes.fill_between(line, line * 0.95, line * 1.05, color="tab:blue", alpha=0.18, label="±5%")
    axes.plot(line, line, color="black", linewidth=0.8, label="predicted = measured")
    inside = np.abs(predicted - measured) / measured <= 0.10
    axes.scatter(measured[inside], predicted[inside], s=18, color="tab:blue", label="architecture")
    if (~inside).any():
        axes.scatter(measured[~inside], predicted[~inside], s=22, color="tab:red", marker="x", label="outside ±10%")
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_xlabel("measured latency (ms, end to end)")
    axes.set_ylabel("predicted latency (ms, lookup table)")
    axes.set_title(
        f"{report.samples} architectures, {report.input_size}x{report.input_size}\n"
        f"MAPE {100 * report.mape:.1f}%  within ±5% {100 * report.within_5pct:.0f}%  ±10% {100 * report.within_10pct:.0f}%  "
        f"Spearman {report.spearman:.3f}",
        fontsize=9,
    )
    axes.text(0.02, 0.98, report.device, transform=axes.transAxes, fontsize=7, va="top")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    from mobilenas.runs import temporary_path

    tmp = temporary_path(path, ".tmp.png")  # savefig reads the format from the name
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(path)


def report_lines(report: CalibrationReport) -> list[str]:
    """The human-readable summary ``nas-latency calibrate`` prints."""
    lines = [
        f"calibration of {report.table_path or 'the table'} on {report.device}",
        f"  architectures      {report.samples} at {report.input_size}x{report.input_size}",
        f"  MAPE               {100 * report.mape:.2f}%",
        f"  within ±5%         {100 * report.within_5pct:.1f}%",
        f"  within ±10%        {100 * report.within_10pct:.1f}%",
        f"  Spearman           {report.spearman:.4f}",
        f"  RMSE               {report.rmse_ms:.3f} ms",
        f"  correction         latency = {report.correction.describe()} (fitted on {report.correction.points} architectures measured end to end)"
        + (" (the one predicted with)" if report.updated_correction is not None else ""),
        f"  wall time          {report.wall_time_s:.0f} s",
    ]
    if report.in_run is not None and report.drift is not None:
        fresh = report.in_run
        lines += [
            f"  machine drift      {report.drift:.3f}x as long as when the correction was fitted (its architectures, measured again now: below 1 is faster now)",
            f"  in-run correction  {Correction(**fresh['correction']).describe()}: MAPE {100 * fresh['mape']:.2f}%, "
            f"within ±5% {100 * fresh['within_5pct']:.1f}%, within ±10% {100 * fresh['within_10pct']:.1f}%",
        ]
    if report.updated_correction is not None:
        new = report.updated_correction
        lines.append(f"  new correction     latency = {new.describe()} ({new.points} end-to-end points, these included; kept in the table)")
    return lines + ([f"  wrote              {', '.join(p for p in (report.csv_path, report.plot_path, report.json_path) if p)}"] if report.csv_path else [])
