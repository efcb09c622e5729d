"""mobilenas.latency: on-device latency, lookup tables, and proof that they predict well.

Measuring (:mod:`.measure`)
    ``measure(arch, backend=OnnxRuntimeBackend(threads=1), input_size=224) -> Measurement``
    times a whole network: fixed input, warm-up, median of repeated runs, spread reported
    (``Measurement.latency_ms``, ``.spread`` (IQR, std, quartiles, extremes), ``.runs``,
    ``.device``: CPU model, cores, runtime and version, threads, batch, input shape, date, clock).
    Backends share one protocol (:class:`LatencyBackend`): :class:`OnnxRuntimeBackend` (default;
    CPU execution provider, ``ORT_ENABLE_ALL``), :class:`TorchBackend` (eager) and
    :class:`CommandBackend` (your command on the exported ``.onnx`` file, e.g.
    ``CommandBackend("python -m mobilenas.latency.ort_command {model}")``, the worked example in
    :mod:`.ort_command`, or a script that pushes the file to a phone). Several networks are
    best timed together: :func:`measure_architectures` interleaves their runs.

Lookup tables (:mod:`.table`, :mod:`.signature`)
    Entries are keyed by :class:`OpSignature` (op type, input H/W/C, output and expanded
    channels, kernel, stride, SE channels and gate, activation, skip; plus the stem and the head),
    never by a layer name. ``LookupTable.predict(arch) = a * sum(entries) + b + se_ms * (blocks
    with squeeze-and-excitation)``: the per-device correction ``(a, b, se_ms)`` is fitted by least
    squares (relative error) on architectures measured end to end and stored in the table's header; with no end-to-end point yet it is the identity
    and ``predict`` warns. A missing signature is measured on demand
    (``predict(arch, measure_missing=True)``, ``ensure(arch)``, appended to the file) or raises
    :class:`MissingEntryError` naming it; never zero. A table used on another device raises
    :class:`DeviceMismatchError` unless ``force=True`` (``--force-device``).

Building (:mod:`.build`)
    ``build_table(space, path=..., input_size=224, backend=..., progress=True)`` measures every
    signature the space can produce (stage by stage, resumable) and fits the correction.
    ``open_or_create_table(space, path=None, ...)`` gives the space's table at
    ``default_table_path(space, backend, input_size)`` (under ``$MOBILENAS_HOME/tables``, default
    ``~/.cache/mobilenas/tables``), created empty (lazy) if missing, its correction fitted on a
    few architectures measured right away (``correction_samples``, default 8; 0 = identity until
    ``ensure_correction``). ``fastest_latency(space, table, measure_missing=...)`` returns
    ``(latency_ms, Architecture)``, the space's fastest architecture by the table (exact dynamic
    programming over stages on a full table; on a lazy one it measures only the options that can
    be fastest, assuming latency never falls with kernel, expansion, SE, width or depth);
    ``slowest_latency`` likewise the slowest.

Proof of fidelity (:mod:`.calibrate`)
    ``calibrate(space, table, samples=50)`` samples architectures, measures them end to end
    (interleaved), and reports ``mape``, ``within_5pct``, ``within_10pct`` (fractions),
    ``spearman``, ``rmse_ms``, with a CSV and a scatter plot.

Command line: ``nas-latency measure|build|predict|calibrate|fastest|info`` (= ``mobilenas latency``).

For the search and NetAdapt, the whole contract is::

    table = open_or_create_table(space, input_size=224)             # lazy, corrected
    latency_ms = table.predict(arch, measure_missing=True)          # < 1 ms once entries exist
    table.predict_breakdown(arch)                                   # per-op entries (ms)
    fastest_ms, fastest_arch = fastest_latency(space, table, measure_missing=True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from mobilenas.lazy import lazy_exports
from mobilenas.space.arch import Architecture

if TYPE_CHECKING:  # imported on first use (mobilenas.lazy), so --help does not load torch
    from mobilenas.latency.build import (
        BuildResult,
        build_table,
        correction_architectures,
        default_table_path,
        ensure_correction,
        fastest_latency,
        open_or_create_table,
        slowest_latency,
        space_signatures,
    )
    from mobilenas.latency.calibrate import (
        CalibrationReport,
        CalibrationRow,
        calibrate,
        fidelity,
        spearman,
    )
    from mobilenas.latency.device import DeviceInfo
    from mobilenas.latency.measure import (
        CommandBackend,
        LatencyBackend,
        Measurement,
        OnnxRuntimeBackend,
        Spread,
        TorchBackend,
        make_backend,
        measure,
        measure_architectures,
        measure_interleaved,
        parse_command_output,
    )
    from mobilenas.latency.signature import OpSignature, PlacedSignature, architecture_signatures
    from mobilenas.latency.table import (
        BreakdownRow,
        Correction,
        DeviceMismatchError,
        EndToEndPoint,
        Entry,
        LookupTable,
        Method,
        MissingEntryError,
    )
    from mobilenas.runs import mobilenas_home


class LatencyModel(Protocol):
    """Anything that predicts an architecture's latency in milliseconds (a :class:`LookupTable`)."""

    def predict(self, arch: Architecture, *, measure_missing: bool = False) -> float: ...


__all__ = [
    "BreakdownRow",
    "BuildResult",
    "CalibrationReport",
    "CalibrationRow",
    "CommandBackend",
    "Correction",
    "DeviceInfo",
    "DeviceMismatchError",
    "EndToEndPoint",
    "Entry",
    "LatencyBackend",
    "LatencyModel",
    "LookupTable",
    "Measurement",
    "Method",
    "MissingEntryError",
    "OnnxRuntimeBackend",
    "OpSignature",
    "PlacedSignature",
    "Spread",
    "TorchBackend",
    "architecture_signatures",
    "build_table",
    "calibrate",
    "correction_architectures",
    "default_table_path",
    "ensure_correction",
    "fastest_latency",
    "fidelity",
    "make_backend",
    "measure",
    "measure_architectures",
    "measure_interleaved",
    "mobilenas_home",
    "open_or_create_table",
    "parse_command_output",
    "slowest_latency",
    "space_signatures",
    "spearman",
]

lazy_exports(__name__, __file__)
