"""How far a run's latency table is from end-to-end measurements: predicted against measured.

:func:`calibration_points` gathers every architecture whose latency is known both ways:

``nas-latency calibrate``  rows of a ``calibration.csv`` written by ``nas-latency calibrate``
                           (architectures sampled out of sample: the fairest check);
``trial``                  a search's trials measured end to end (``best.json``, ``nas-results
                           measure``), predicted as the search predicted them;
``iteration``              a NetAdapt run's networks, predicted with the run's frozen correction
                           and measured after every iteration;
``table end-to-end``       the table's own end-to-end points that the correction was fitted on,
                           predicted now (they flatter the table), one per network (the median
                           of a network measured more than once; :func:`table_point_counts`);
``table end-to-end, after the fit``  those measured since the correction was fitted (a NetAdapt run's
                           networks, say): out of its sample, until it is fitted again.

Each row has ``source``, ``notation``, ``fingerprint``, ``predicted_ms``, ``measured_ms``,
``error`` (``(predicted - measured) / measured``). :func:`calibration_summary` reports the
figures of :func:`mobilenas.latency.calibrate.fidelity` (``mape``, ``within_5pct``,
``within_10pct``, ``spearman``, ``rmse_ms``) per source and overall.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mobilenas.results.load import RunResults
from mobilenas.results.measured import RunLatency, open_run_latency
from mobilenas.results.netadapt_run import NetAdaptResults
from mobilenas.results.search_run import SearchResults

COLUMNS = ("source", "notation", "fingerprint", "predicted_ms", "measured_ms", "error")
CALIBRATE_SOURCE = "nas-latency calibrate"
#: ``source`` of the table's end-to-end points the correction was fitted on, and of those measured since.
TABLE_FIT = "table end-to-end"
TABLE_AFTER_FIT = "table end-to-end, after the fit"
SOURCES = (CALIBRATE_SOURCE, "trial", "iteration", TABLE_FIT, TABLE_AFTER_FIT)


def read_calibration_csv(path: str | Path) -> pd.DataFrame:
    """A ``calibration.csv`` of ``nas-latency calibrate`` (or its folder) as calibration points."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "calibration.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no calibration CSV at {path}; write one with nas-latency calibrate --out DIR")
    frame = pd.read_csv(path, on_bad_lines="skip")
    needed = {"predicted_ms", "measured_ms"}
    if not needed <= set(frame.columns):
        raise ValueError(f"{path} is not a nas-latency calibrate CSV: it lacks {', '.join(sorted(needed - set(frame.columns)))}")
    return _finish(pd.DataFrame({
        "source": CALIBRATE_SOURCE,
        "notation": frame.get("notation"),
        "fingerprint": frame.get("fingerprint"),
        "predicted_ms": pd.to_numeric(frame["predicted_ms"], errors="coerce"),
        "measured_ms": pd.to_numeric(frame["measured_ms"], errors="coerce"),
    }))


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    frame["predicted_ms"] = frame["predicted_ms"].astype(float)
    frame["measured_ms"] = frame["measured_ms"].astype(float)
    frame = frame[frame["predicted_ms"].notna() & frame["measured_ms"].notna() & (frame["measured_ms"] > 0)]
    frame["error"] = (frame["predicted_ms"] - frame["measured_ms"]) / frame["measured_ms"]
    return frame[list(COLUMNS)].reset_index(drop=True)


def calibration_points(
    run: RunResults | None = None,
    *,
    csv: str | Path | Sequence[str | Path] | None = None,
    table: str | Path | None = None,
    include_table_points: bool = True,
) -> pd.DataFrame:
    """Predicted and measured latencies from the run, its table and calibration CSVs (module docstring)."""
    frames = []
    paths = [] if csv is None else ([csv] if isinstance(csv, str | Path) else list(csv))
    for path in paths:
        frames.append(read_calibration_csv(path))
    latency: RunLatency | None = None
    if run is not None:
        if isinstance(run, NetAdaptResults):
            iterations = run.iterations
            frames.append(_finish(pd.DataFrame({
                "source": "iteration",
                "notation": iterations["notation"],
                "fingerprint": [_fingerprint(text) for text in iterations["notation"]],
                "predicted_ms": iterations["latency_ms"],
                "measured_ms": iterations["measured_latency_ms"],
            })))
        elif run.problem == "network":
            trials = run.candidates()
            measured = trials[trials["measured_latency_ms"].notna()].drop_duplicates("key")
            frames.append(_finish(pd.DataFrame({
                "source": "trial",
                "notation": measured["architecture"],
                "fingerprint": measured["key"],
                "predicted_ms": measured["latency_ms"],
                "measured_ms": measured["measured_latency_ms"],
            })))
        if include_table_points and (not isinstance(run, SearchResults) or run.problem == "network"):
            try:
                latency = open_run_latency(run.path, run.manifest, table)
            except FileNotFoundError:
                latency = None
    if latency is not None:
        frames.append(_table_points(latency, exclude=set().union(*(set(f["fingerprint"].dropna()) for f in frames)) if frames else set()))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(frames, ignore_index=True)


def _fingerprint(notation: Any) -> str | None:
    from mobilenas.space.arch import Architecture

    try:
        return Architecture.from_notation(str(notation)).fingerprint()
    except ValueError:
        return None


def _table_points(latency: RunLatency, exclude: set[str]) -> pd.DataFrame:
    from mobilenas.latency.table import MissingEntryError

    first: dict[str, Any] = {}
    for point in latency.table.end_to_end_points():
        first.setdefault(point.fingerprint, point)
    fitted_at = str(getattr(latency.correction, "fitted_at", "") or "")
    rows = []
    for fingerprint, measured in latency.measured().items():
        if fingerprint in exclude:
            continue
        point = first[fingerprint]
        try:
            predicted = latency.predict(point.architecture())
        except (MissingEntryError, ValueError):
            continue  # an op of it is not in the table: nothing to compare
        after = _later(str(point.measured), fitted_at)
        rows.append({"source": TABLE_AFTER_FIT if after else TABLE_FIT, "notation": point.notation, "fingerprint": fingerprint, "predicted_ms": predicted, "measured_ms": measured})
    return _finish(pd.DataFrame(rows, columns=["source", "notation", "fingerprint", "predicted_ms", "measured_ms"]))


def _later(when: str, than: str) -> bool:
    """Whether ISO time ``when`` is after ``than`` (False where either is missing or unreadable)."""
    import datetime

    try:
        return datetime.datetime.fromisoformat(when) > datetime.datetime.fromisoformat(than)
    except (TypeError, ValueError):
        return False


def calibration_summary(points: pd.DataFrame) -> pd.DataFrame:
    """``mape``, ``within_5pct``, ``within_10pct`` (fractions), ``spearman``, ``rmse_ms`` and ``count`` per source and ``all``."""
    from mobilenas.latency.calibrate import fidelity

    rows: list[dict[str, Any]] = []
    groups = [(str(source), group) for source, group in points.groupby("source", sort=False)]
    if len(groups) != 1:
        groups.append(("all", points))
    for source, group in groups:
        if group.empty:
            continue
        figures = fidelity(group["predicted_ms"].tolist(), group["measured_ms"].tolist())
        rows.append({"source": source, "count": len(group), **figures, "bias": float(group["error"].mean())})
    return pd.DataFrame(rows, columns=["source", "count", "mape", "within_5pct", "within_10pct", "spearman", "rmse_ms", "bias"])


def describe(summary: pd.DataFrame) -> list[str]:
    """The summary as lines for people, one per source, in columns (the longest source name sets
    the first column's width: "table end-to-end, after the fit" pushed its row out of line)."""
    width = max((len(str(source)) for source in summary["source"]), default=0)
    lines = []
    for row in summary.itertuples():
        spearman = "-" if math.isnan(row.spearman) else f"{row.spearman:.3f}"
        networks = "network " if row.count == 1 else "networks"
        lines.append(f"{row.source:<{width}} {row.count:>4} {networks}  MAPE {100 * row.mape:5.1f}%  within ±10% {100 * row.within_10pct:5.1f}%  Spearman {spearman:>5}  bias {100 * row.bias:+.1f}%")
    return lines


def table_point_counts(run: RunResults, table: str | Path | None = None) -> tuple[int, int] | None:
    """The end-to-end points of the run's latency table (``nas-latency info`` counts these: one per
    measurement) and the networks they measure (what :func:`calibration_points` counts: a network
    measured more than once is one point, at its median); None for a run without a table here."""
    if isinstance(run, SearchResults) and run.problem != "network":
        return None
    try:
        latency = open_run_latency(run.path, run.manifest, table)
    except FileNotFoundError:
        return None
    if latency is None:
        return None
    points = [p for p in latency.table.end_to_end_points() if math.isfinite(p.latency_ms)]
    return len(points), len({p.fingerprint for p in points})
