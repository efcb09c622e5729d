"""The :class:`~mobilenas.netadapt.run.LatencyModel` NetAdapt uses: a lookup table of this device.

The table is ``--table``, else the one of the run that produced the input (a search's best.json or
a NetAdapt run's refined.json, with the correction that run used, so the start latency is the one
it reported), else this device's NetAdapt table. Predictions are ``a * sum + b``
over the table's entries (:mod:`mobilenas.latency.table`);
entries NetAdapt needs that the table lacks (any channel count) are measured on demand and
appended to the table's file, so the next run finds them.

The correction ``(a, b)`` is frozen for the whole run: NetAdapt compares every proposal with the
current network and the budget, so the yardstick must not move while it runs. When the table has
no fitted correction yet, the run first measures two networks end to end, the starting one and
the smallest NetAdapt could reach (the endpoints of the range NetAdapt will travel are where the
fit matters most), records them in the table as end-to-end points, fits ``(a, b)`` on all the
table's points and stores it in the table's header: the next run on the table predicts with the
same correction (a fit of each run's own had put the same network up to 12% apart from one run to
the next). Each iteration's end-to-end measurement is recorded in the table too, without refitting:
a search's table is refitted by the search and ``nas-latency`` (as the README says); a NetAdapt
table keeps the correction its first run stored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mobilenas.latency.measure import (
    MEASUREMENT_RECHECK,
    LatencyBackend,
    Measurement,
    make_backend,
    measure,
    measure_architectures,
)
from mobilenas.latency.table import Correction, LookupTable, table_input_size
from mobilenas.runs import mobilenas_home
from mobilenas.space.arch import Architecture
from mobilenas.units import counted

DEFAULT_INPUT_SIZE = 224


class TableLatency:
    """A lookup table plus a backend for missing entries and end-to-end checks."""

    def __init__(self, table: LookupTable, backend: LatencyBackend, correction: Correction | None = None, log: Callable[[str], None] | None = None) -> None:
        self.table = table
        self.backend = backend
        self.correction = correction if correction is not None else table.correction
        self.log = log or (lambda message: None)
        self._entries_at_start = len(table)

    @property
    def input_size(self) -> int:
        return self.table.input_size

    @property
    def measured_entries(self) -> int:
        """Table entries this process has measured so far."""
        return len(self.table) - self._entries_at_start

    def predict_sum(self, arch: Architecture) -> float:
        return self.table.predict_sum(arch, measure_missing=True)

    def predict(self, arch: Architecture) -> float:
        return self.table.predict(arch, measure_missing=True, correction=self.correction)

    def measure(self, arch: Architecture, predicted: float | None = None) -> float | None:
        """End to end. Where the timing lies more than :data:`MEASUREMENT_RECHECK` from
        ``predicted`` (a busy moment of the machine), it is timed twice more and the median kept."""
        timings = [measure(arch, self.backend, input_size=self.input_size)]
        first = timings[0].latency_ms
        if predicted is not None and predicted > 0 and math.isfinite(first) and abs(first / predicted - 1) > MEASUREMENT_RECHECK:
            timings += [measure(arch, self.backend, input_size=self.input_size) for _ in range(2)]
            timings.sort(key=lambda m: m.latency_ms if math.isfinite(m.latency_ms) else math.inf)
        return self._recorded(arch, timings[len(timings) // 2])

    def measure_side_by_side(self, archs: list[Architecture]) -> list[float | None]:
        measurements = measure_architectures(archs, self.backend, input_size=self.input_size, rounds=3)
        return [self._recorded(arch, measurement) for arch, measurement in zip(archs, measurements, strict=True)]

    def _recorded(self, arch: Architecture, measurement: Measurement) -> float | None:
        """Add an end-to-end point to the table (for nas-latency later); its latency, if finite."""
        try:
            self.table.record_end_to_end(arch, measurement, refit=False)
        except (OSError, ValueError) as error:  # the table is shared data; a failed append must not end the run
            self.log(f"  could not record the end-to-end point in {self.table.path}: {error}")
        value = measurement.latency_ms
        return value if math.isfinite(value) else None

    def measure_missing(self, archs: list[Architecture], *, progress: bool = False, desc: str = "measuring table entries") -> int:
        """Measure now the entries ``archs`` need that the table lacks (with a progress bar, where
        ``progress``: at 224 px that may take minutes); returns how many were measured."""
        missing = list(dict.fromkeys(signature for arch in archs for signature in self.table.missing(arch)))
        return self.table.ensure_signatures(missing, progress=progress, desc=desc)

    def fit_if_needed(self, archs: list[Architecture]) -> None:
        """If the table has no fitted correction: measure ``archs`` end to end, add them to the
        table's end-to-end points, fit the correction on all of them and store it in the table (so
        the next run predicts as this one), and freeze it for this run."""
        if self.correction.fitted:
            return
        self.log(f"the table has no fitted correction yet: measuring {counted(len(archs), 'network')} end to end to fit one")
        for arch in archs:
            self.predict_sum(arch)  # their missing ops are measured now, before the end-to-end timing
        # Interleaved, so that a busy spell of the machine weighs on both ends of the fit alike.
        measurements = measure_architectures(archs, self.backend, input_size=self.input_size, rounds=3)
        for arch, measurement in zip(archs, measurements, strict=True):
            self.table.record_end_to_end(arch, measurement, refit=False)
        try:
            # Kept in the table: each run had fitted one of its own on two fresh timings, and
            # predicted the same network up to 12% apart from the run before.
            self.correction = self.table.fit_correction()
        except OSError as error:  # a table that cannot be rewritten: this run's fit, on its own points
            self.log(f"  could not store the correction in {self.table.path} ({error.strerror or error}); this run uses it, the next fits its own")
            self.correction = self.table.fit_on(archs, [m.latency_ms for m in measurements])
        else:
            earlier = self.correction.points - len(archs)
            these = f" (these {len(archs)} and {earlier} measured earlier)" if earlier > 0 else ""
            self.log(f"  fitted on the table's end-to-end timings of {counted(self.correction.points, 'network')}{these} and stored in the table: later runs predict alike")

    def describe(self) -> dict[str, Any]:
        header = self.table.header
        return {
            "table": str(self.table.path) if self.table.path else None,
            "device_fingerprint": header.device_fingerprint,
            "device": header.device.describe(),
            "runtime": header.device.runtime,
            "threads": header.device.threads,
            "input_size": header.input_size,
            "correction": self.correction.to_dict(),
        }


def default_table_path(backend: LatencyBackend, input_size: int) -> Path:
    """``$MOBILENAS_HOME/tables/netadapt-<size>px-<runtime>-<threads>t-<device>.jsonl``.

    Beside the search's tables (:func:`mobilenas.latency.default_table_path`); entries are keyed
    by signature, so a search table of the same device can be given with ``--table`` instead.
    """
    device = backend.device()
    return mobilenas_home() / "tables" / f"netadapt-{input_size}px-{device.runtime}-{device.threads}t-{device.fingerprint()[:8]}.jsonl"


def open_latency_model(
    *,
    table: str | None,
    backend: str,
    threads: int,
    input_size: int | None,
    command: str | None = None,
    device_name: str | None = None,
    force_device: bool = False,
    correction: dict[str, Any] | None = None,
    input_table: tuple[Path, dict[str, Any] | None] | None = None,
    log: Callable[[str], None] | None = None,
) -> TableLatency:
    """Load (or create, when missing) the table and its measuring backend.

    ``backend`` is ``onnxruntime``, ``torch`` or ``command`` (with ``command``, a template run on
    the exported ``.onnx`` file, see :class:`mobilenas.latency.CommandBackend`). ``correction``
    (from a run's manifest) replaces the table's own, so a resumed run predicts exactly as it did
    before. Without ``table``, ``input_table`` (the table of the run that produced the input, a
    search or an earlier NetAdapt run, with the correction that run froze, if any) is used when it
    was measured on this device at ``input_size``: NetAdapt then starts from the latency that run
    reported; else this device's NetAdapt table (:func:`default_table_path`).
    """
    measuring = make_backend(backend, threads=threads, command=command, device_name=device_name)
    if not table and input_table is not None:
        given, given_correction = input_table
        try:
            found = LookupTable.load(given, backend=measuring)
        except (OSError, ValueError) as error:  # another device, or a damaged file: not this run's yardstick
            if input_size is None:  # still measured at the size that run's network was built for
                input_size = table_input_size(given)
            at = f" at that run's {input_size}px" if input_size is not None else ""
            if log:
                log(f"not using the latency table of the run that produced the input ({str(error).split(';')[0]}); NetAdapt uses this device's own table{at}")
        else:
            if input_size is None or found.input_size == input_size:
                if log:
                    log(f"using the latency table of the run that produced the input: {given}")
                kept = correction if correction is not None else given_correction  # a resume keeps its own
                return TableLatency(found, measuring, Correction.from_dict(kept) if kept is not None else None, log)
            if log:
                log(f"not using the latency table of the run that produced the input: it is for {found.input_size}px inputs, not --input-size {input_size}")
    # a table made now is for the input size of the run that wrote INPUT (as the help says), else 224
    input_run_size = table_input_size(input_table[0]) if input_table is not None else None
    size = input_size or input_run_size or DEFAULT_INPUT_SIZE
    path = Path(table).expanduser() if table else default_table_path(measuring, size)
    loaded, created = LookupTable.load_or_create(path, backend=measuring, force=force_device, input_size=size)
    if created:
        if log:
            log(f"created latency table {path} for this device ({measuring.describe()}, {size}x{size} inputs); entries are measured as NetAdapt needs them")
    elif input_size is not None and loaded.input_size != input_size:
        raise ValueError(f"latency table {path} is for {loaded.input_size}x{loaded.input_size} inputs, not {input_size}; give another --table or drop --input-size")
    elif table and input_table is not None and log:
        _note_other_table(loaded, input_table[0], input_run_size, log)
    frozen = Correction.from_dict(correction) if correction is not None else None
    return TableLatency(loaded, measuring, frozen, log)


def _note_other_table(table: LookupTable, input_table: Path, input_run_size: int | None, log: Callable[[str], None]) -> None:
    """Say where ``--table`` differs from the table of the run that wrote INPUT: another input size
    (the network is pruned for that size) or a table built for another space (its correction was
    fitted on that space's networks)."""
    if input_run_size is not None and table.input_size != input_run_size:
        log(f"note: latency table {table.path} is for {table.input_size}x{table.input_size} inputs, and the run that wrote INPUT measured at"
            f" {input_run_size}x{input_run_size}: NetAdapt prunes for {table.input_size}x{table.input_size} inputs (--input-size {input_run_size} with a table of that size keeps the run's)")
    try:
        with open(input_table, encoding="utf-8") as handle:
            theirs = json.loads(handle.readline())
    except (OSError, ValueError):
        return
    space = theirs.get("space") if isinstance(theirs, dict) else None
    name, fingerprint = (space.get("name"), space.get("fingerprint")) if isinstance(space, dict) else (None, None)
    if not fingerprint or not table.header.space_fingerprint or fingerprint == table.header.space_fingerprint:
        return
    built = f"space {table.header.space_name}" if table.header.space_name != name else f"another definition of space {name}"
    log(f"note: latency table {table.path} was built for {built}, not the run's space {name}: the entries it lacks are measured as"
        f" NetAdapt needs them, and its correction was fitted on that space's networks (nas-latency calibrate --table {table.path} checks it)")
