"""A run's latency axis: its lookup table, its correction, and latencies measured end to end.

Network runs (a ``nas-search`` over an architecture space, a NetAdapt run) scored latency with a
lookup table (:class:`mobilenas.latency.LookupTable`) named in the manifest. :class:`RunLatency`
reopens it with the correction the run used (a NetAdapt run freezes its own; a search uses the
one in its manifest's table description when recorded, else the table's), so anything placed on
the run's axes (reference networks) is predicted exactly as the run's candidates were.

Reading a table for predictions does not measure anything, so it works on any machine (the
device check is skipped); measuring (missing ops, ``nas-results measure``) insists on the
table's own device.

Latencies measured end to end, where known, come from the table's end-to-end points (matched by
architecture fingerprint; the median when measured more than once), from ``best.json`` (the
search's own measurement of its best) and from ``measured.jsonl`` in the run directory, which
:func:`measure_candidates`
(``nas-results measure RUN``) appends to: one JSON line per architecture measured on the
table's device (``fingerprint``, ``notation``, ``latency_ms``, ``iqr_ms``, ``runs``,
``device``, ``device_fingerprint``, ``measured``).

A tabular run has no table: its benchmark's latency column is already a measurement.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mobilenas.results.common import read_json_object
from mobilenas.results.search_run import BEST_JSON
from mobilenas.runs import Journal, now_iso

MEASURED = "measured.jsonl"


def table_path(root: Path, manifest: dict[str, Any]) -> Path | None:
    """Where the run's latency table is (``None`` for a tabular run or when the manifest names none).

    A relative path is tried as given (the run was started from the current folder) and then
    next to the run directory.
    """
    named: Any = None
    if manifest.get("kind") == "netadapt":
        latency = manifest.get("latency")
        if isinstance(latency, dict):
            named = latency.get("table")
    else:
        if manifest.get("problem") == "tabular":
            return None
        described = manifest.get("latency_table")
        if isinstance(described, dict):
            named = described.get("path") or described.get("table")
        elif isinstance(described, str):
            named = described
        if not named:
            named = manifest.get("config", {}).get("latency_table")
    if not named:
        return None
    path = Path(str(named)).expanduser()
    if path.is_absolute() or path.exists():
        return path
    beside = root / path
    return beside if beside.exists() else path


def _recorded_correction(manifest: dict[str, Any]) -> dict[str, Any] | None:
    block = manifest.get("latency") if manifest.get("kind") == "netadapt" else manifest.get("latency_table")
    if isinstance(block, dict) and isinstance(block.get("correction"), dict):
        return dict(block["correction"])
    return None


@dataclass
class RunLatency:
    """A run's latency table with the correction the run used (see the module docstring)."""

    table: Any  # mobilenas.latency.LookupTable
    correction: Any  # mobilenas.latency.Correction
    path: Path

    @property
    def input_size(self) -> int:
        return int(self.table.input_size)

    @property
    def device(self) -> str:
        return str(self.table.device.describe())

    def missing(self, arch: Any) -> int:
        """How many of ``arch``'s op signatures the table lacks."""
        return len(self.table.missing(arch))

    def predict(self, arch: Any, *, measure_missing: bool = False) -> float:
        """Latency of ``arch`` in ms by the table and the run's correction.

        Missing ops raise :class:`mobilenas.latency.MissingEntryError`, or are measured on this
        machine (which must be the table's device) and appended to the table when
        ``measure_missing``.
        """
        if measure_missing and self.missing(arch):
            self._check_device()
        return float(self.table.predict(arch, measure_missing=measure_missing, correction=self.correction))

    def measured(self) -> dict[str, float]:
        """Fingerprint -> median end-to-end latency (ms) of the table's end-to-end points."""
        samples: dict[str, list[float]] = {}
        for point in self.table.end_to_end_points():
            if math.isfinite(point.latency_ms):
                samples.setdefault(point.fingerprint, []).append(float(point.latency_ms))
        return {key: float(np.median(values)) for key, values in samples.items()}

    def _check_device(self) -> None:
        self.table.check_device(None, force=False)

    def backend(self) -> Any:
        """The table's measuring backend, refused on another device."""
        self._check_device()
        return self.table.measuring_backend()


def open_run_latency(root: Path, manifest: dict[str, Any], table: str | Path | None = None) -> RunLatency | None:
    """The run's table (or ``table`` if given) with the run's correction; ``None`` for tabular runs.

    Raises ``FileNotFoundError`` naming the table when the manifest names one that is gone.
    """
    from mobilenas.latency.table import Correction, LookupTable

    path = Path(table).expanduser() if table is not None else table_path(root, manifest)
    if path is None:
        return None
    if not path.is_file():
        raise FileNotFoundError(f"the latency table of run {root} is not at {path}; give it with --latency-table PATH (table=...)")
    with warnings.catch_warnings():
        # Predictions from a table are plain arithmetic; only measuring needs the table's device.
        warnings.simplefilter("ignore")
        loaded = LookupTable.load(path, force=True)
    loaded.forced_device = False  # measuring missing ops must still happen on the table's device
    recorded = _recorded_correction(manifest) if table is None else None
    correction = Correction.from_dict(recorded) if recorded is not None else loaded.correction
    return RunLatency(loaded, correction, path)


def cached_measurements(root: Path) -> pd.DataFrame:
    """``measured.jsonl`` of the run (see the module docstring) as a frame; empty when absent."""
    columns = ["fingerprint", "notation", "latency_ms", "iqr_ms", "runs", "device", "device_fingerprint", "measured"]
    rows = [r for r in Journal(root / MEASURED).read() if isinstance(r.get("fingerprint"), str) and isinstance(r.get("latency_ms"), int | float)]
    return pd.DataFrame(rows, columns=columns)


def known_measurements(root: Path, manifest: dict[str, Any]) -> dict[str, float]:
    """Fingerprint -> latency measured end to end (ms), for a network search.

    In rising precedence: the table's end-to-end points, ``best.json``'s measurement (the run's
    own), ``measured.jsonl`` (the latest, asked for). A table that is gone or unreadable
    contributes nothing (measured latencies are then unknown, not an error: the run is still
    readable).
    """
    known: dict[str, float] = {}
    try:
        latency = open_run_latency(root, manifest)
    except (OSError, ValueError):
        latency = None
    if latency is not None:
        known.update(latency.measured())
    best = read_json_object(root / BEST_JSON)
    if best is not None and isinstance(best.get("fingerprint"), str) and isinstance(best.get("measured_latency_ms"), int | float):
        known[best["fingerprint"]] = float(best["measured_latency_ms"])
    cache = cached_measurements(root)
    if len(cache):
        known.update(cache.groupby("fingerprint")["latency_ms"].median().astype(float).to_dict())
    return known


def measure_candidates(
    run: Any,
    numbers: Sequence[int] | None = None,
    *,
    rounds: int = 3,
    table: str | Path | None = None,
    progress: bool = True,
    remeasure: bool = False,
) -> pd.DataFrame:
    """Measure trials of a network search end to end on this machine and cache them in ``measured.jsonl``.

    ``numbers`` are trial numbers (default: the Pareto front by the table). The table's device
    must be this machine (the runs are timed with its backend, interleaved over ``rounds``).
    Architectures already measured are skipped unless ``remeasure``. Returns the rows
    measured now (columns as :func:`cached_measurements`, plus ``number``,
    ``predicted_ms``).
    """
    from mobilenas.latency.measure import Measurement, measure_architectures
    from mobilenas.space.arch import Architecture

    if run.kind != "search" or run.problem != "network":
        raise ValueError(f"run {run.path} is a {run.problem if run.kind == 'search' else run.kind} run; only network searches have architectures to measure (NetAdapt measures each iteration itself)")
    latency = open_run_latency(run.path, run.manifest, table)
    assert latency is not None
    from mobilenas.results.fronts import pareto_front

    candidates = run.candidates()
    if numbers is None:
        chosen = pareto_front(run)
    else:
        unknown = sorted(set(numbers) - set(candidates["number"]))
        if unknown:
            raise ValueError(f"run {run.path} has no successful trained trial numbered {', '.join(map(str, unknown))}")
        chosen = candidates[candidates["number"].isin(list(numbers))]
    already = set(known_measurements(run.path, run.manifest)) | set(latency.measured())
    if not remeasure:
        chosen = chosen[~chosen["key"].isin(already)]
    columns = [*cached_measurements(run.path).columns, "number", "predicted_ms"]
    if chosen.empty:
        return pd.DataFrame(columns=columns)
    archs = [Architecture.from_notation(str(text)) for text in chosen["architecture"]]
    backend = latency.backend()
    from mobilenas.cliutil import progress as progress_bar

    numbers, predictions = [int(n) for n in chosen["number"]], [float(p) for p in chosen["latency_ms"]]
    journal = Journal(run.path / MEASURED)
    rows: list[dict[str, Any]] = []

    def keep(indices: list[int], measurements: list[Measurement]) -> None:
        """Journal a finished group at once: an interrupt later loses only the group in progress."""
        for i, measurement in zip(indices, measurements, strict=True):
            row = {
                "fingerprint": archs[i].fingerprint(),
                "notation": archs[i].to_notation(),
                "latency_ms": float(measurement.latency_ms),
                "iqr_ms": float(measurement.spread.iqr_ms),
                "runs": int(measurement.runs),
                "device": measurement.device.describe(),
                "device_fingerprint": measurement.device.fingerprint(),
                "measured": now_iso(),
            }
            journal.append(row)
            rows.append({**row, "number": numbers[i], "predicted_ms": predictions[i]})
        bar.update(len(indices))

    bar = progress_bar(total=len(archs), desc="end-to-end", enabled=progress, unit="arch")
    try:
        measure_architectures(archs, backend, latency.input_size, rounds=rounds, seed=0, on_done=keep)
    finally:
        bar.close()
    return pd.DataFrame(rows, columns=columns)
