"""The latency lookup table: entries keyed by operation signature, plus a fitted correction.

Prediction
    ``predict(arch) = a * S + b`` where ``S`` is the sum of the table's entries for the
    architecture's stem, blocks and head (:func:`~mobilenas.latency.signature.architecture_signatures`)
    and ``(a, b)`` is the table's per-device :class:`Correction`. The sum of separately timed
    operations is not the latency of the network they make: the network pays a fixed cost per
    inference (the call into the runtime, the input's layout conversion, the output) that is paid
    once, not once per op; the runtime fuses across op boundaries; and weights that stay in cache
    while one op is timed alone compete for it inside a large network. ``a`` and ``b`` are fitted
    by least squares on the *relative* error over architectures measured end to end on the same
    device (stored in the file as ``end_to_end`` records; an architecture measured more than once
    counts once, at the median of its timings), so the correction is specific to the
    device, runtime and input size and is refreshed whenever more end-to-end points arrive.
    With no end-to-end point the correction is the identity (``fitted: false``; ``predict``
    warns); with one point it is a pure scale (``b = 0``).

    From 8 end-to-end points up the correction has a third term, ``se_ms`` per block with
    squeeze-and-excitation (kept only when positive): inside a network an SE block costs more
    than its in-context entry. Measured on the development machine (50 random mobilenetv3-space
    networks, ONNX Runtime, 1 thread) the residuals of ``a * S + b`` fell by 0.04 ms per SE block
    (correlation -0.53 with the SE count), and fitting the term on 12 networks raised the share of
    held-out networks within +-5% from 79% to 84% (400 random splits); see
    ``benchmarks/latency_calibration.md``.

How entries are timed (``method``)
    ``in-context`` (default): the op runs behind a cheap depthwise "feeder" convolution and ends
    in a global pool; the feeder alone (the "baseline") is subtracted: the two models run
    alternately and the entry is the median of the paired differences. This charges the op what
    it costs inside a network, not the layout conversions at a graph input. ``cold_cache=True``
    evicts the caches before each run instead of timing warm repeats; measured on the
    development machine (AMD EPYC, ONNX Runtime, 1 thread, 25 held-out mobilenetv3-space
    architectures) the warm in-context method predicted best (MAPE 2.1% after correction, against
    5.0% cold in-context, 4.9% warm isolated and 13% cold isolated), so warm is the default. ``isolated``: the op alone, for
    backends where a model costs minutes to run (a phone behind a custom command).

File (JSON lines, one object a line, appended and fsynced as entries are measured, so an
interrupted build or a killed search loses at most the entry in flight)
    line 1, the header: ``format``, ``version``, ``units`` ("ms"), ``device`` (CPU model, cores,
    runtime and version, threads, ...), ``device_fingerprint``, ``runtime``, ``runtime_version``,
    ``threads``, ``batch_size``, ``input_size``, ``created``, ``versions``, ``space``,
    ``method`` and ``correction``; then records of ``kind`` ``op`` (an entry: ``key``,
    ``signature``, ``latency_ms``, ``iqr_ms``, ``runs``, ``op_ms``, ``baseline_ms``,
    ``measured``) and ``end_to_end`` (an architecture's notation and measured latency). A torn line left by a killed writer is
    skipped, and so is a damaged one (a latency that is negative, NaN or infinite, or no number;
    an end-to-end latency of 0); a damaged header is refused. The first record of a key wins.

Device check
    A table is tied to the device fingerprint in its header. Loading it where the same runtime
    has another fingerprint (another CPU, runtime version or thread count) raises
    :class:`DeviceMismatchError` unless ``force=True`` (``--force-device``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import re
import shlex
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mobilenas.latency.device import DeviceInfo, now_iso
from mobilenas.latency.method import Method
from mobilenas.latency.signature import (
    OpSignature,
    PlacedSignature,
    architecture_signatures,
    baseline_module,
    baseline_signature,
    signature_module,
)
from mobilenas.space.arch import Architecture

if TYPE_CHECKING:  # measure imports torch; the table is read without it (nas-latency info, --help)
    from mobilenas.latency.measure import LatencyBackend, Measurement, Runner

TABLE_FORMAT = "mobilenas-latency-table"
TABLE_VERSION = 1
UNITS = "ms"
_SIGNATURE_CACHE_SIZE = 8192


class MissingEntryError(ValueError):
    """A signature the prediction needs is not in the table (and was not measured)."""

    def __init__(self, table: LookupTable, missing: Sequence[PlacedSignature], placed: Sequence[PlacedSignature] = ()) -> None:
        """``missing``: what the table lacks; ``placed``: every op of the architecture predicted
        (when there is one), to tell an architecture of another space from a table not built yet."""
        self.signatures = tuple(p.signature for p in missing)
        where = f"latency table {table.path}" if table.path else "the latency table"

        def lacks(shown: Sequence[PlacedSignature]) -> str:
            more = f" and {len(shown) - 1} more" if len(shown) > 1 else ""
            return f"{where} has no entry for {shown[0].signature.key} (at {shown[0].path}){more}"

        on_demand = "measure them on demand (nas-latency predict --measure-missing; measure_missing=True in Python)"
        name = table.header.space_name
        stem = next((p.signature for p in placed if p.signature.op == "stem"), None)
        stems = {dataclasses.replace(e.signature, out_channels=1) for e in table.entries() if e.signature.op == "stem"}
        if name and stem is not None and stems and dataclasses.replace(stem, out_channels=1) not in stems:
            # every architecture of a space has the space's stem, its width aside (NetAdapt prunes it):
            # a stem of another kernel, stride or activation is another space's
            super().__init__(
                f"{lacks(missing)}: the table is for space {name}, and this architecture is not of it"
                f" (its stem is another); give the table of the architecture's own space (--table PATH, or --space NAME), or {on_demand}"
            )
            return
        outside, heads = _outside_the_tables_space(table, [p.signature for p in missing])
        if outside:
            shown = [p for p in missing if p.signature in outside]
            super().__init__(
                f"{lacks(shown)}, and space {name}, which the table was built for, has no such"
                f" {'op' if len(shown) == 1 else 'ops'}: nas-latency build would not measure {'it' if len(shown) == 1 else 'them'}; {on_demand}"
            )
            return
        from mobilenas.space.search_space import SPACES

        space = name if name in SPACES else "SPACE"  # a custom space: its .json
        classes = f" --num-classes {heads[0]}" if heads else ""
        fix = (
            f"measure missing entries on demand (nas-latency predict --measure-missing; measure_missing=True in Python) or fill the table "
            f"with {build_command(table, space, classes.strip())}"
        )
        super().__init__(f"{lacks(missing)}; {fix}")


def _outside_the_tables_space(table: LookupTable, missing: Sequence[OpSignature]) -> tuple[set[OpSignature] | None, list[int]]:
    """Which of ``missing`` the built-in space the table was built for cannot produce (None where
    that is not known: a custom space, or another definition of it), and the class counts of the
    missing heads other than the space's default (nas-latency build's ``--num-classes``)."""
    from mobilenas.space.search_space import SPACES, get_space

    name = table.header.space_name
    if name not in SPACES:
        return None, []
    space = get_space(name)
    if table.built_for_another(space) is not None:
        return None, []
    from mobilenas.latency.build import space_signatures  # build imports this module

    def without_classes(signature: OpSignature) -> OpSignature:
        return dataclasses.replace(signature, num_classes=0) if signature.op == "head" else signature

    produced = {without_classes(s) for s in space_signatures(space, table.input_size)}
    outside = {s for s in missing if without_classes(s) not in produced}
    heads = sorted({s.num_classes for s in missing if s.op == "head" and s not in outside and s.num_classes != space.head.num_classes})
    return outside, heads


class DeviceMismatchError(ValueError):
    """A table measured on one device is used on another."""


class TableExistsError(ValueError):
    """:meth:`LookupTable.create` found a table at its path (perhaps made by another process just now)."""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Correction:
    """``latency_ms = a * sum_ms + b + se_ms * se_blocks``, fitted per device (see the module docstring).

    ``se_blocks`` is the number of blocks with squeeze-and-excitation in the architecture.
    """

    a: float = 1.0
    b: float = 0.0
    points: int = 0
    fitted: bool = False
    rmse_ms: float | None = None
    mape: float | None = None
    fitted_at: str = ""
    se_ms: float = 0.0

    def apply(self, sum_ms: float, se_blocks: int = 0) -> float:
        return self.a * sum_ms + self.b + self.se_ms * se_blocks

    def describe(self) -> str:
        """The formula with its numbers, e.g. ``1.2000 * sum +0.3000 ms +0.0440 ms per SE block``."""
        text = f"{self.a:.4f} * sum {self.b:+.4f} ms"
        return text + (f" {self.se_ms:+.4f} ms per SE block" if self.se_ms else "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Correction:
        """Read a correction back; a field of the wrong kind or out of range (a damaged file) raises
        a one-line ``ValueError`` naming it (``correction.a 'x'``)."""
        if not isinstance(data, dict):
            raise ValueError(f"correction: expected an object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}

        def number(name: str, low: float | None, *, above: bool = False, optional: bool = False) -> None:
            if name not in values or (optional and values[name] is None):
                return
            value = values[name]
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if ok and low is not None:
                ok = value > low if above else value >= low
            if not ok:
                bound = "" if low is None else f" {'>' if above else '>='} {low:g}"
                raise ValueError(f"correction.{name} {value!r} is not a finite number{bound}")

        number("a", 0.0, above=True)  # a fit's slope is positive (Correction.fit falls back to a pure scale)
        number("b", None)
        number("se_ms", 0.0)  # kept only when positive
        number("rmse_ms", 0.0, optional=True)
        number("mape", 0.0, optional=True)
        points = values.get("points", 0)
        if isinstance(points, bool) or not isinstance(points, int) or points < 0:
            raise ValueError(f"correction.points {points!r} is not a whole number >= 0")
        if not isinstance(values.get("fitted", False), bool):
            raise ValueError(f"correction.fitted {values['fitted']!r} is not true or false")
        if not isinstance(values.get("fitted_at", ""), str):
            raise ValueError(f"correction.fitted_at {values['fitted_at']!r} is not a date")
        for name in ("a", "b", "se_ms"):  # a whole number written by hand: a float like the rest
            if name in values:
                values[name] = float(values[name])
        return cls(**values)

    @classmethod
    def fit(cls, sums_ms: Sequence[float], measured_ms: Sequence[float], se_blocks: Sequence[int] | None = None) -> Correction:
        """Least squares on relative error: minimise ``sum(((a*s + b + c*k - m) / m)^2)``.

        The SE term ``c`` (``se_ms``) is fitted only from :data:`MIN_POINTS_FOR_SE_TERM` points
        up, when ``se_blocks`` is given and varies, and kept only when it comes out positive (an
        extra op cannot make a network faster); otherwise the fit is ``a*s + b``. One point gives
        a pure scale (``b = 0``); none gives the identity. A fit whose slope is not positive
        (nonsense from too few, too similar points) falls back to a pure scale.
        """
        s = np.asarray(sums_ms, dtype=float)
        m = np.asarray(measured_ms, dtype=float)
        k = np.zeros_like(s) if se_blocks is None else np.asarray(se_blocks, dtype=float)
        if s.size == 0:
            return cls()
        c = 0.0
        if s.size == 1 or np.ptp(s) <= 1e-9 * max(float(np.max(s)), 1e-12):
            a, b = float(np.median(m / s)), 0.0
        else:
            a, b = _least_squares_relative([s, np.ones_like(s)], m)
            if s.size >= MIN_POINTS_FOR_SE_TERM and np.ptp(k) > 0:
                a3, b3, c3 = _least_squares_relative([s, np.ones_like(s), k], m)
                if c3 > 0 and a3 > 0:
                    a, b, c = a3, b3, c3
            if a <= 0:
                a, b = float(np.median(m / s)), 0.0
        predicted = a * s + b + c * k
        return cls(
            a=a,
            b=b,
            points=int(s.size),
            fitted=True,
            rmse_ms=float(np.sqrt(np.mean((predicted - m) ** 2))),
            mape=float(np.mean(np.abs(predicted - m) / m)),
            fitted_at=now_iso(),
            se_ms=c,
        )


# Below this many end-to-end points the correction has no SE term (three parameters on a
# handful of points would fit the noise).
MIN_POINTS_FOR_SE_TERM = 8


def _least_squares_relative(columns: Sequence[np.ndarray], measured: np.ndarray) -> list[float]:
    """Coefficients minimising the summed squared relative error of ``sum(coef * column)``."""
    design = np.stack([column / measured for column in columns], axis=1)
    solution, *_ = np.linalg.lstsq(design, np.ones_like(measured), rcond=None)
    return [float(v) for v in solution]


@dataclass(frozen=True)
class TableHeader:
    """The first line of a table file: what, where and how it was measured."""

    device: DeviceInfo
    input_size: int
    batch_size: int = 1
    method: Method = dataclasses.field(default_factory=Method)
    correction: Correction = Correction()
    created: str = ""
    versions: tuple[tuple[str, str], ...] = ()
    space_name: str | None = None
    space_fingerprint: str | None = None

    @property
    def device_fingerprint(self) -> str:
        return self.device.fingerprint()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "units": UNITS,
            # (a measurement's shape and date, blank for a table: its input_size and created say them)
            "device": {k: v for k, v in self.device.to_dict().items() if v or k not in ("input_shape", "date")},
            "device_fingerprint": self.device_fingerprint,
            "runtime": self.device.runtime,
            "runtime_version": self.device.runtime_version,
            "threads": self.device.threads,
            "batch_size": self.batch_size,
            "input_size": self.input_size,
            "created": self.created,
            "versions": dict(self.versions),
            "space": {"name": self.space_name, "fingerprint": self.space_fingerprint} if self.space_name else None,
            "method": self.method.to_dict(),
            "correction": self.correction.to_dict(),
            "prediction": "latency_ms = correction.a * (sum of entry latency_ms over stem, blocks, head) + correction.b + correction.se_ms * (blocks with squeeze-and-excitation)",
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TableHeader:
        if not isinstance(data, dict) or data.get("format") != TABLE_FORMAT:
            raise ValueError(f"{where} is not a mobilenas latency table (its first line has no \"format\": \"{TABLE_FORMAT}\")")
        if data.get("version") != TABLE_VERSION:
            raise ValueError(f"{where}: table format version {data.get('version')!r}; this mobilenas reads version {TABLE_VERSION}")
        if data.get("units") != UNITS:
            raise ValueError(f"{where}: units {data.get('units')!r}; expected {UNITS!r}")
        try:
            space = data.get("space") or {}
            input_size = int(data["input_size"])
            if input_size < 1:
                raise ValueError(f"input_size {input_size}")
            return cls(
                device=DeviceInfo.from_dict(data["device"], f"{where}: device"),
                input_size=input_size,
                batch_size=int(data.get("batch_size", 1)),
                method=Method.from_dict(data.get("method", {})),
                correction=Correction.from_dict(data.get("correction", {})),
                created=str(data.get("created", "")),
                versions=tuple(sorted((str(k), str(v)) for k, v in dict(data.get("versions", {})).items())),
                space_name=space.get("name"),
                space_fingerprint=space.get("fingerprint"),
            )
        except KeyError as error:
            raise ValueError(f"{where}: the header lacks {error.args[0]!r}") from None
        except (TypeError, AttributeError, ValueError) as error:  # a value of the wrong kind: a damaged header
            raise ValueError(f"{where}: the header (its first line) is damaged ({error}); rebuild the table, or restore the file") from None


@dataclass(frozen=True)
class Entry:
    """One measured op: ``latency_ms`` is what the prediction adds up."""

    signature: OpSignature
    latency_ms: float
    iqr_ms: float
    runs: int
    measured: str
    op_ms: float
    baseline_ms: float = 0.0

    def to_record(self) -> dict[str, Any]:
        return {
            "kind": "op",
            "key": self.signature.key,
            "signature": self.signature.to_dict(),
            "latency_ms": self.latency_ms,
            "iqr_ms": self.iqr_ms,
            "runs": self.runs,
            "op_ms": self.op_ms,
            "baseline_ms": self.baseline_ms,
            "measured": self.measured,
        }


@dataclass(frozen=True)
class EndToEndPoint:
    """An architecture measured end to end on the table's device (for the correction)."""

    notation: str
    fingerprint: str
    latency_ms: float
    iqr_ms: float
    runs: int
    measured: str

    def architecture(self) -> Architecture:
        return Architecture.from_notation(self.notation)

    def to_record(self) -> dict[str, Any]:
        return {"kind": "end_to_end", **dataclasses.asdict(self)}


@dataclass(frozen=True)
class BreakdownRow:
    """One op of a prediction: where it is, its signature and its entry (ms, before correction)."""

    path: str
    signature: OpSignature
    latency_ms: float


def _versions() -> tuple[tuple[str, str], ...]:
    from mobilenas.runs import environment

    info = environment()
    return tuple(sorted((k, str(info[k])) for k in ("python", "mobilenas", "torch", "onnx", "onnxruntime", "numpy") if k in info))


@contextlib.contextmanager
def _locked(path: Path, *, purpose: str = "", say_waiting: str = "") -> Iterator[None]:
    """An exclusive advisory lock beside ``path`` (appends and rewrites from several processes).

    ``purpose``: another lock of the same table (``path.<purpose>.lock``), held independently of
    the table's own; ``say_waiting``: a line for stderr when another process holds the lock."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: single writer assumed
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = open(path.with_name(path.name + (f".{purpose}" if purpose else "") + ".lock"), "a")  # noqa: SIM115 (closed below)
    except OSError as error:  # name the table the user gave, not the lock file beside it
        if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):  # a shared table on a read-only mount, say
            if not path.exists():  # a table to be made there
                raise ValueError(f"latency table {path} cannot be made ({error.strerror}); give a --table in a folder you can write") from None
            raise ValueError(
                f"latency table {path} cannot be written ({error.strerror}), and the entries it lacks are measured into it as they are needed"
                f" (with a lock file beside it); copy it to a folder you can write and give that --table"
            ) from None
        raise OSError(error.errno, error.strerror, str(path)) from error
    with handle:
        if say_waiting:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                import sys

                print(f"{say_waiting} ...", file=sys.stderr, flush=True)
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        else:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------- the table


class LookupTable:
    """Latency entries keyed by :class:`OpSignature`, with the device header and correction.

    Use :meth:`load` / :meth:`create` (or :func:`mobilenas.latency.open_or_create_table`).
    ``backend`` is what measures missing entries on demand; when not given, one matching the
    header's runtime and threads is made when first needed (ONNX Runtime or PyTorch; a custom
    command backend must be passed).
    """

    def __init__(self, header: TableHeader, *, path: str | Path | None = None, backend: LatencyBackend | None = None) -> None:
        self.header = header
        self.path = Path(path) if path is not None else None
        self.backend = backend
        self._entries: dict[OpSignature, Entry] = {}
        self._end_to_end: list[EndToEndPoint] = []
        self._placed: OrderedDict[Architecture, tuple[PlacedSignature, ...]] = OrderedDict()
        self._sums: dict[Architecture, float] = {}
        self._se_counts: dict[Architecture, int] = {}
        self.skipped_lines = 0
        #: the user accepted this table on another device (``force=True``)
        self.forced_device = False
        #: measure into a table of another device (forced): only what nas-latency build --force-device asks for
        self.measure_into_forced = False
        self._warned_uncorrected = False

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(
        cls,
        path: str | Path | None,
        *,
        backend: LatencyBackend,
        input_size: int = 224,
        batch_size: int = 1,
        method: Method | None = None,
        space_name: str | None = None,
        space_fingerprint: str | None = None,
    ) -> LookupTable:
        """An empty table for ``backend``'s device; with ``path`` its header is written there.

        Refuses to overwrite an existing file (load it, or delete it first).
        """
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"input_size must be a whole number >= 1, got {input_size!r}")
        header = TableHeader(
            device=backend.device(),
            input_size=input_size,
            batch_size=batch_size,
            method=method or (Method(name="isolated", cold_cache=False, warmup=0, repeats=backend.repeats) if backend.runtime == "command" else Method()),
            created=now_iso(),
            versions=_versions(),
            space_name=space_name,
            space_fingerprint=space_fingerprint,
        )
        table = cls(header, path=path, backend=backend)
        if table.path is not None:
            # Checked and written under the table's lock: two processes that start at once on a
            # machine without the table (searches of several seeds) must not both write a header.
            with _locked(table.path):
                if table.path.exists() and table.path.stat().st_size > 0:
                    raise TableExistsError(f"{table.path} already exists; load it (it resumes) or delete it to start over")
                _atomic_write_lines(table.path, [json.dumps(table.header.to_dict())])
        return table

    @classmethod
    def load_or_create(
        cls, path: str | Path, *, backend: LatencyBackend, force: bool = False, **create_options: Any
    ) -> tuple[LookupTable, bool]:
        """The table at ``path``, created (with ``create_options``) if there is none; and whether it was.

        Safe when several processes open a missing table at once: one creates it, the others load it.
        """
        path = Path(path)
        if not (path.exists() and path.stat().st_size > 0):
            try:
                return cls.create(path, backend=backend, **create_options), True
            except TableExistsError:
                pass  # another process created it since the check above: use theirs
        return cls.load(path, backend=backend, force=force), False

    @classmethod
    def load(cls, path: str | Path, *, backend: LatencyBackend | None = None, force: bool = False) -> LookupTable:
        """Read a table file; refuse it if it was measured on another device, unless ``force``."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no latency table at {path}; build one with nas-latency build --space SPACE --table {shlex.quote(str(path))}")
        if path.is_dir():
            raise ValueError(f"{path} is a directory; give the table's .jsonl file")
        lines = _read_lines(path)
        if not lines or not lines[0].strip():
            raise ValueError(f"{path} is empty; it is not a latency table")
        try:
            lines[0].encode("utf-8")
        except UnicodeEncodeError:  # bytes that are no text (surrogates stand for them)
            raise ValueError(f"{path} is not a mobilenas latency table (not text)") from None
        try:
            header_data = json.loads(lines[0])
        except json.JSONDecodeError:
            raise ValueError(f"{path} is not a mobilenas latency table (its first line is not JSON)") from None
        header = TableHeader.from_dict(header_data, str(path))
        table = cls(header, path=path, backend=backend)
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            try:
                line.encode("utf-8")  # a line with bytes that are no text is damaged
                record = json.loads(line)
                table._absorb(record, f"{path}:{number}")
            except (json.JSONDecodeError, ValueError, KeyError, TypeError):
                # A line torn by a killed writer (or damaged by hand) is skipped, never guessed.
                table.skipped_lines += 1
        table.check_device(backend, force=force)
        table.forced_device = force
        return table

    def _absorb(self, record: Any, where: str) -> None:
        """Take in one record; a damaged one (a field missing, of the wrong kind, or a latency
        that no timing gives: negative, NaN or infinite) raises, and is skipped as a torn line is."""
        if not isinstance(record, dict):
            raise ValueError(f"{where}: not an object")
        kind = record.get("kind")
        if kind == "op":
            signature = OpSignature.from_dict(record["signature"], f"{where}: signature")
            if signature not in self._entries:
                latency = _milliseconds(record["latency_ms"], f"{where}: latency_ms")  # 0 is possible: noise clipped at 0 (in-context)
                self._entries[signature] = Entry(
                    signature,
                    latency,
                    float(record.get("iqr_ms", float("nan"))),
                    int(record.get("runs", 0)),
                    str(record.get("measured", "")),
                    _milliseconds(record.get("op_ms", latency), f"{where}: op_ms"),
                    _milliseconds(record.get("baseline_ms", 0.0), f"{where}: baseline_ms"),
                )
        elif kind == "end_to_end":
            latency = _milliseconds(record["latency_ms"], f"{where}: latency_ms", positive=True)  # a network never runs in no time
            self._end_to_end.append(
                EndToEndPoint(str(record["notation"]), str(record["fingerprint"]), latency, float(record.get("iqr_ms", float("nan"))), int(record.get("runs", 0)), str(record.get("measured", "")))
            )
        else:
            raise ValueError(f"{where}: unknown record kind {kind!r}")

    # ------------------------------------------------------------------ device

    def expected_device(self, backend: LatencyBackend | None = None) -> DeviceInfo | None:
        """The device this process would measure on, for the header's runtime (None if unknowable)."""
        if backend is not None:
            return backend.device()
        runtime = self.header.device.runtime
        if runtime in ("onnxruntime", "torch"):
            from mobilenas.latency.measure import make_backend

            return make_backend(runtime, threads=self.header.device.threads).device()
        return None  # a custom command's device is only known from its backend

    def check_device(self, backend: LatencyBackend | None = None, *, force: bool = False) -> None:
        """Raise :class:`DeviceMismatchError` if this table belongs to another device (unless ``force``)."""
        here = self.expected_device(backend)
        if here is None or here.fingerprint() == self.header.device_fingerprint:
            return
        if force:
            warnings.warn(
                f"using latency table {self.path} measured on another device ({self.header.device.describe()}) on {here.describe()} because it was forced",
                stacklevel=3,
            )
            return
        table = self.header.device
        differing = [name for name in ("cpu_model", "cpu_count", "machine", "system", "runtime", "runtime_version", "execution_provider", "threads", "command", "device_name") if getattr(table, name) != getattr(here, name)]
        details = ", ".join(f"{name} {getattr(table, name)!r} vs {getattr(here, name)!r}" for name in differing)
        if table.runtime == "command" and {"command", "device_name", "threads"} & set(differing):
            fix = f"give the options it was built with ({' '.join(device_options(table))}), or --force-device to use it anyway"
        elif table.runtime == "command":  # the same command and device, driven from another machine
            fix = "it was measured by the same --command and --device-name from another machine: give --force-device to use it"
        else:
            fix = (
                "build a table on this device (nas-latency build --space SPACE), or give --force-device to use it anyway"
                " (a table built with --command ... --device-name NAME is that device's, and predicts on any machine)"
            )
        raise DeviceMismatchError(
            f"latency table {self.path} was measured on another device (fingerprint {self.header.device_fingerprint}, here {here.fingerprint()}: {details}); {fix}"
        )

    # ------------------------------------------------------------------ views

    @property
    def input_size(self) -> int:
        return self.header.input_size

    @property
    def device(self) -> DeviceInfo:
        return self.header.device

    @property
    def correction(self) -> Correction:
        return self.header.correction

    @property
    def method(self) -> Method:
        return self.header.method

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, signature: object) -> bool:
        return signature in self._entries

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def get(self, signature: OpSignature) -> Entry | None:
        return self._entries.get(signature)

    def end_to_end_points(self) -> list[EndToEndPoint]:
        return list(self._end_to_end)

    def placed_signatures(self, arch: Architecture) -> tuple[PlacedSignature, ...]:
        """The architecture's signatures at the table's input size (cached per architecture)."""
        placed = self._placed.get(arch)
        if placed is None:
            placed = architecture_signatures(arch, self.header.input_size)
            self._placed[arch] = placed
            if len(self._placed) > _SIGNATURE_CACHE_SIZE:
                self._placed.popitem(last=False)
        return placed

    def signatures(self, arch: Architecture) -> tuple[OpSignature, ...]:
        return tuple(p.signature for p in self.placed_signatures(arch))

    def missing(self, arch: Architecture) -> list[OpSignature]:
        """Signatures of ``arch`` that have no entry (each once, in network order)."""
        seen: dict[OpSignature, None] = {}
        for placed in self.placed_signatures(arch):
            if placed.signature not in self._entries:
                seen[placed.signature] = None
        return list(seen)

    # ------------------------------------------------------------------ prediction

    def predict_sum(self, arch: Architecture, *, measure_missing: bool = False) -> float:
        """Sum of the entries of ``arch`` in ms, before the correction."""
        cached = self._sums.get(arch)
        if cached is not None:
            return cached
        entries = self._entries
        total = 0.0
        placed = self.placed_signatures(arch)
        for item in placed:
            entry = entries.get(item.signature)
            if entry is None:
                return self._sum_after_measuring(placed, measure_missing)
            total += entry.latency_ms
        # An entry never changes once in the table (the first measurement of a signature wins),
        # so a complete sum stays valid.
        self._sums[arch] = total
        if len(self._sums) > _SIGNATURE_CACHE_SIZE:
            self._sums.pop(next(iter(self._sums)))
        return total

    def _sum_after_measuring(self, placed: tuple[PlacedSignature, ...], measure_missing: bool) -> float:
        absent = [p for p in placed if p.signature not in self._entries]
        if not measure_missing:
            raise MissingEntryError(self, absent, placed)
        self.ensure_signatures([p.signature for p in absent])
        return sum(self._entries[p.signature].latency_ms for p in placed)

    def predict(self, arch: Architecture, *, measure_missing: bool = False, correction: Correction | None = None) -> float:
        """Predicted latency of ``arch`` in ms: ``a * sum + b + se_ms * SE blocks`` (see the module docstring).

        A signature missing from the table is measured now and appended to the table's file when
        ``measure_missing`` is true; otherwise :class:`MissingEntryError` names it. ``correction``
        replaces the table's own (a run's frozen correction); only the table's own warns when it
        is not fitted.
        """
        total = self.predict_sum(arch, measure_missing=measure_missing)
        if correction is None:
            correction = self.header.correction
            if not correction.fitted and not self._warned_uncorrected:
                self._warned_uncorrected = True
                warnings.warn(
                    f"latency table {self.path or ''} has no fitted correction yet (no end-to-end measurement): predictions are the plain sum of entries; "
                    "call refresh_correction() or run nas-latency build/calibrate",
                    stacklevel=2,
                )
        return correction.apply(total, self.se_blocks(arch))

    def se_blocks(self, arch: Architecture) -> int:
        """How many of ``arch``'s blocks have squeeze-and-excitation (the correction's third term; cached)."""
        count = self._se_counts.get(arch)
        if count is None:
            count = sum(1 for p in self.placed_signatures(arch) if p.signature.se_channels > 0)
            self._se_counts[arch] = count
            if len(self._se_counts) > _SIGNATURE_CACHE_SIZE:
                self._se_counts.pop(next(iter(self._se_counts)))
        return count

    def predict_breakdown(self, arch: Architecture, *, measure_missing: bool = False) -> list[BreakdownRow]:
        """Each op's entry (ms, before correction), in network order; their sum is :meth:`predict_sum`."""
        placed = self.placed_signatures(arch)
        if any(p.signature not in self._entries for p in placed):
            self._sum_after_measuring(placed, measure_missing)
        return [BreakdownRow(p.path, p.signature, self._entries[p.signature].latency_ms) for p in placed]

    # ------------------------------------------------------------------ measuring

    def measuring_backend(self) -> LatencyBackend:
        """The backend that measures missing entries (checked against the table's device)."""
        if self.backend is None:
            runtime = self.header.device.runtime
            if runtime not in ("onnxruntime", "torch"):
                device = self.header.device
                again = f"--command {shlex.quote(device.command)}" if device.command else "--command TEMPLATE"
                again += f" --device-name {shlex.quote(device.device_name)}" if device.device_name else ""
                raise ValueError(
                    f"latency table {self.path} was measured by a custom command, which is needed again to measure the entries it lacks:"
                    f" give {again} (in Python: backend=CommandBackend(...))"
                )
            from mobilenas.latency.measure import make_backend

            self.backend = make_backend(runtime, threads=self.header.device.threads)
        return self.backend

    def ensure(self, arch: Architecture, *, progress: bool = False) -> int:
        """Measure whatever ``arch`` needs that the table lacks; returns how many entries this process measured."""
        return self.ensure_signatures(self.missing(arch), progress=progress)

    def ensure_signatures(self, signatures: Iterable[OpSignature], *, progress: bool = False, desc: str = "measuring ops") -> int:
        """Measure each signature not yet in the table, appending each entry to the file as it is measured.

        Returns how many entries this process measured and kept. Processes sharing the file (two
        builds of one table, searches of several seeds) share the work: an op another one wrote
        meanwhile is taken from the file, not measured again, and a process that finds another at
        work takes the rest in an order of its own, so that the two do not walk the same order in
        step (each measuring the op the other is measuring).
        """
        todo = list(dict.fromkeys(s for s in signatures if s not in self._entries))
        if not todo:
            return 0
        backend = self.measuring_backend()
        self.check_writable(f"the entries it lacks are measured into it as they are needed ({len(todo)} now)")  # now, not after measuring them
        if not (self.forced_device and self.measure_into_forced):  # only a build resumes another device's table
            try:
                self.check_device(backend)  # also when the table was forced: reading it is one thing, writing this device's timings into it another
            except DeviceMismatchError as error:
                if not self.forced_device:
                    raise
                raise DeviceMismatchError(
                    f"latency table {self.path} is another device's (read with --force-device), and {len(todo)} entries it lacks would be measured"
                    f" here into it, mixing two devices' timings; build a table on this device (nas-latency build --space SPACE), or give one with those entries"
                ) from error
        from mobilenas.cliutil import progress as progress_bar

        bar = progress_bar(total=len(todo), desc=desc, enabled=progress, unit="op")
        baselines: dict[tuple[int, ...], Runner] = {}
        kept = 0
        reordered = False
        try:
            for index in range(len(todo)):
                signature = todo[index]
                if signature not in self._entries:
                    if self._measure(signature, backend, baselines):
                        kept += 1
                    elif not reordered:  # another process measures into the file: leave its order to it
                        reordered = True
                        rest = todo[index + 1 :]
                        order = np.random.default_rng([os.getpid(), time.time_ns()]).permutation(len(rest))
                        todo[index + 1 :] = [rest[int(i)] for i in order]
                bar.update(1)
        finally:
            bar.close()
            for runner in baselines.values():
                runner.close()
        return kept

    def _shape(self, channels: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (self.header.batch_size, channels, height, width)

    def _measure(self, signature: OpSignature, backend: LatencyBackend, baselines: dict[tuple[int, ...], Runner]) -> bool:
        """Measure ``signature`` into the table; whether this process's measurement is the one kept
        (False: another process sharing the file wrote the op first, and its entry is taken)."""
        from mobilenas.latency.measure import Spread

        found = self._adopt_from_disk(signature)  # another process sharing the file measured it meanwhile
        if found is not None:
            return False
        method = self.header.method
        shape = self._shape(signature.in_channels, signature.in_height, signature.in_width)
        runner = backend.prepare(signature_module(signature, method.name), shape)
        try:
            runner.warm_up(method.warmup)
            base_shape = baseline_signature(signature) if method.name == "in-context" else None
            if base_shape is None:
                samples = runner.run_timed(method.repeats, cold_cache=method.cold_cache)
                op_ms, baseline_ms, latency, iqr = float(np.median(samples)), 0.0, float(np.median(samples)), Spread.of(samples).iqr_ms
            else:
                key = self._shape(*base_shape)
                baseline = baselines.get(key)
                if baseline is None:
                    baseline = baselines[key] = backend.prepare(baseline_module(base_shape[0]), key)
                baseline.warm_up(method.warmup)
                op_samples: list[float] = []
                base_samples: list[float] = []
                # Op and feeder alternate run by run, so a burst of load or a slow drift hits
                # both; the entry is the median of the paired differences.
                for _ in range(method.repeats):
                    base_samples += baseline.run_timed(1, cold_cache=method.cold_cache)
                    op_samples += runner.run_timed(1, cold_cache=method.cold_cache)
                differences = np.subtract(op_samples, base_samples)
                op_ms, baseline_ms = float(np.median(op_samples)), float(np.median(base_samples))
                # Noise can make a tiny op's difference negative; an op never takes negative time.
                latency, iqr = max(float(np.median(differences)), 0.0), Spread.of(differences.tolist()).iqr_ms
        finally:
            runner.close()
        ours = Entry(signature, latency, iqr, method.repeats, now_iso(), op_ms, baseline_ms)
        return self._keep(ours) is ours

    def add_entry(self, entry: Entry) -> None:
        """Add an entry measured elsewhere (first one of a signature wins); appended to the file."""
        if entry.signature in self._entries:
            return
        self._keep(entry)

    def _keep(self, entry: Entry) -> Entry:
        """``entry``, appended to the file, unless the file holds that op already (another process
        sharing it measured it first): then that one, as a fresh load would read it."""
        self._entries[entry.signature] = entry
        existing = self._append(entry.to_record())
        if existing is None:
            return entry
        del self._entries[entry.signature]
        return self._take_op(existing, entry.signature) or self._entries.setdefault(entry.signature, entry)  # damaged: ours stands

    def _adopt_from_disk(self, signature: OpSignature) -> Entry | None:
        if self.path is None or not self.path.exists():
            return None
        with _locked(self.path):
            record = self._op_on_disk(signature.key)
        return None if record is None else self._take_op(record, signature)

    def _take_op(self, record: dict[str, Any], signature: OpSignature) -> Entry | None:
        """The entry of ``signature`` from ``record``, an op line another process wrote; None for a
        damaged line (load skips those too)."""
        try:
            self._absorb(record, str(self.path))
        except (ValueError, KeyError, TypeError):
            return None
        return self._entries.get(signature)

    def _op_on_disk(self, key: str) -> dict[str, Any] | None:
        """The file's first record of op ``key`` (call with the lock held), or None."""
        assert self.path is not None
        try:
            text = "\n".join(_read_lines(self.path))
        except OSError:
            return None
        marker = f'"key": {json.dumps(key)}'
        if marker not in text:  # the usual case, found without parsing
            return None
        for line in text.splitlines()[1:]:
            if marker in line:
                record = _parse_line(line)
                if isinstance(record, dict) and record.get("kind") == "op" and record.get("key") == key and isinstance(record.get("signature"), dict):
                    return record
        return None

    # ------------------------------------------------------------------ correction

    def record_end_to_end(self, arch: Architecture, measurement: Measurement, *, refit: bool = True) -> EndToEndPoint:
        """Store an end-to-end measurement of ``arch`` on this device; refit the correction."""
        point = EndToEndPoint(arch.to_notation(), arch.fingerprint(), measurement.latency_ms, measurement.spread.iqr_ms, measurement.runs, now_iso())
        self._end_to_end.append(point)
        self._append(point.to_record())
        if refit:
            self.fit_correction()
        return point

    def drop_end_to_end(self) -> int:
        """Forget every end-to-end point (the file is rewritten) and reset the correction to the identity.

        For refitting the correction from fresh measurements; returns how many points were dropped.
        """
        dropped = len(self._end_to_end)
        self._end_to_end = []
        self.header = dataclasses.replace(self.header, correction=Correction())
        self._warned_uncorrected = False
        if self.path is not None and self.path.exists():
            with _locked(self.path):
                lines = _read_lines(self.path)
                kept = [line for line in lines[1:] if line.strip() and not _is_end_to_end(line)]
                _atomic_write_lines(self.path, [json.dumps(self.header.to_dict()), *kept])
        return dropped

    def replace_end_to_end(self, archs: Sequence[Architecture], measurements: Sequence[Measurement]) -> Correction:
        """Replace every end-to-end point with ``archs`` measured as ``measurements`` and refit the
        correction on them, in one atomic rewrite of the file: until it, the points and correction
        the table had stand (an interrupted refit loses nothing the table held)."""
        points = [
            EndToEndPoint(arch.to_notation(), arch.fingerprint(), m.latency_ms, m.spread.iqr_ms, m.runs, now_iso())
            for arch, m in zip(archs, measurements, strict=True)
        ]
        correction = self.fit_on(list(archs), [p.latency_ms for p in points])
        header = dataclasses.replace(self.header, correction=correction)
        if self.path is not None and self.path.exists():
            with _locked(self.path):
                lines = _read_lines(self.path)
                kept = [line for line in lines[1:] if line.strip() and not _is_end_to_end(line)]
                _atomic_write_lines(self.path, [json.dumps(header.to_dict()), *kept, *(json.dumps(p.to_record()) for p in points)])
        self._end_to_end = points
        self.header = header
        self._warned_uncorrected = False
        return correction

    def check_writable(self, why: str) -> None:
        """Raise a one-line :class:`ValueError` now if the table's file cannot be written (before
        measuring what would go into it); ``why`` says what would write it."""
        if self.path is None:
            return
        import tempfile

        try:
            if self.path.exists():
                with open(self.path, "a", encoding="utf-8"):  # appends; an immutable or read-only file refuses this
                    pass
            if self.path.parent.is_dir():  # rewrites replace the file with one made beside it
                handle, probe = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".probe")
                os.close(handle)
                os.unlink(probe)
        except OSError as error:
            fix = "copy it to a folder you can write and give that --table" if error.errno == errno.EROFS else "make it (and its folder) writable, or give another --table"
            raise ValueError(f"latency table {self.path} cannot be written ({error.strerror or error}), and {why}; {fix}") from None

    def fitted_range_ms(self) -> tuple[float, float] | None:
        """The lowest and highest latency (ms) among the end-to-end points the correction rests on,
        or None with fewer than two: a prediction outside that range extrapolates the correction."""
        if len(self._end_to_end) < 2 or not self.header.correction.fitted:
            return None
        measured = [p.latency_ms for p in self._end_to_end]
        return min(measured), max(measured)

    def fit_correction(self, *, measure_missing: bool = True) -> Correction:
        """Refit the correction on every end-to-end point; stored in the header (file rewritten).

        Points that other processes sharing the file appended meanwhile are taken in first, so the
        header's correction rests on every point the file holds.
        """
        self.take_in_end_to_end_points()
        archs, measured = self.fit_points()
        correction = self.fit_on(archs, measured, measure_missing=measure_missing)
        self.set_correction(correction)
        return correction

    def fit_points(self) -> tuple[list[Architecture], list[float]]:
        """The architectures the correction is fitted on, each once, with its measured latency (ms):
        the median of its end-to-end points where it was measured more than once (by two builds of
        the table at once, or by runs on different days), so that no architecture weighs double."""
        grouped: dict[str, list[EndToEndPoint]] = {}
        for point in self._end_to_end:
            grouped.setdefault(point.fingerprint, []).append(point)
        archs = [points[0].architecture() for points in grouped.values()]
        return archs, [float(np.median([p.latency_ms for p in points])) for points in grouped.values()]

    @contextlib.contextmanager
    def end_to_end_lock(self, *, say_waiting: bool = False) -> Iterator[None]:
        """Held while this process measures end-to-end points for the correction: a second process
        (another build of the table) waits for it, then takes its points in instead of measuring the
        same architectures again. ``say_waiting``: a line on stderr while it waits."""
        if self.path is None:
            yield
            return
        with _locked(self.path, purpose="correction", say_waiting=f"waiting for another process measuring the correction of {self.path}" if say_waiting else ""):
            yield

    def take_in_end_to_end_points(self) -> None:
        """Read the end-to-end points other processes sharing the file appended since it was loaded."""
        if self.path is None or not self.path.exists():
            return
        with _locked(self.path):
            lines = _read_lines(self.path)[1:]
        mine, self._end_to_end = self._end_to_end, []
        for number, line in enumerate(lines, start=2):
            if _is_end_to_end(line):
                try:
                    self._absorb(json.loads(line), f"{self.path}:{number}")
                except (ValueError, KeyError, TypeError):  # damaged: skipped, as load skips it
                    continue
        seen = {(p.fingerprint, p.measured, p.latency_ms) for p in self._end_to_end}
        self._end_to_end += [p for p in mine if (p.fingerprint, p.measured, p.latency_ms) not in seen]  # any the file lost

    def fit_on(self, archs: Sequence[Architecture], measured_ms: Sequence[float], *, measure_missing: bool = True) -> Correction:
        """A correction fitted on ``archs`` measured end to end (``measured_ms``); the table's own is not touched."""
        sums = [self.predict_sum(arch, measure_missing=measure_missing) for arch in archs]
        return Correction.fit(sums, measured_ms, [self.se_blocks(arch) for arch in archs])

    def set_correction(self, correction: Correction) -> None:
        self.header = dataclasses.replace(self.header, correction=correction)
        self._warned_uncorrected = False
        if self.path is not None and self.path.exists():
            self._rewrite_header()

    # ------------------------------------------------------------------ files

    def records(self) -> list[dict[str, Any]]:
        """Every record after the header, in the order they would be written."""
        records: list[dict[str, Any]] = []
        records += [entry.to_record() for entry in self._entries.values()]
        records += [point.to_record() for point in self._end_to_end]
        return records

    def save(self, path: str | Path | None = None) -> Path:
        """Write the whole table atomically (header, then every record); returns the path."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("this table has no file yet; give save() a path")
        lines = [json.dumps(self.header.to_dict())] + [json.dumps(r) for r in self.records()]
        with _locked(target):
            _atomic_write_lines(target, lines)
        self.path = target
        return target

    def _append(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """Append ``record`` to the file; an op the file already holds is not appended twice (two
        processes sharing the table measured it): the record there is returned instead."""
        if self.path is None:
            return None
        line = json.dumps(record)
        with _locked(self.path):
            if record.get("kind") == "op" and self.path.exists():
                existing = self._op_on_disk(str(record["key"]))
                if existing is not None:
                    return existing
            if not self.path.exists() or not self.path.stat().st_size:  # deleted (or emptied) while in use: a table again
                line = json.dumps(self.header.to_dict()) + "\n" + line
            needs_newline = False
            if self.path.exists() and self.path.stat().st_size:
                with open(self.path, "rb") as handle:
                    handle.seek(-1, os.SEEK_END)
                    needs_newline = handle.read(1) != b"\n"
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(("\n" if needs_newline else "") + line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        return None

    def _rewrite_header(self) -> None:
        assert self.path is not None
        with _locked(self.path):
            lines = _read_lines(self.path)
            # Keep every record on disk (another process may have appended some) and swap line 1.
            _atomic_write_lines(self.path, [json.dumps(self.header.to_dict()), *lines[1:]])

    def built_for_another(self, space: Any) -> str | None:
        """What the table was built for when that is not ``space`` ("space mnasnet", "another
        definition of space mobilenetv3"), or None (the same space, or a table that does not say).

        Tables record the space's layout fingerprint (its class count left out); tables made before
        recorded its whole fingerprint, and are matched on that.
        """
        name, fingerprint = self.header.space_name, self.header.space_fingerprint
        if not fingerprint or fingerprint in (space.layout_fingerprint(), space.fingerprint()):
            return None
        if self.path is not None and self.path.name.startswith(table_name_prefix(space)):
            return None  # a table made before, under its default name, which carries the layout's fingerprint
        return f"space {name}" if name != space.name else f"another definition of space {space.name}"

    def summary(self) -> dict[str, Any]:
        """What ``nas-latency info`` shows."""
        counts: dict[str, int] = {}
        for signature in self._entries:
            counts[signature.op] = counts.get(signature.op, 0) + 1
        return {
            "path": str(self.path) if self.path else None,
            "device": self.header.device.describe(),
            "device_fingerprint": self.header.device_fingerprint,
            "input_size": self.header.input_size,
            "batch_size": self.header.batch_size,
            "entries": len(self._entries),
            "entries_by_op": counts,
            "end_to_end_points": len(self._end_to_end),
            "method": self.header.method.to_dict(),
            "correction": self.header.correction.to_dict(),
            "space": self.header.space_name,
            "created": self.header.created,
            "skipped_lines": self.skipped_lines,
        }


def device_options(device: DeviceInfo) -> list[str]:
    """The command-line options that measure on ``device`` as its table was measured (``--threads 4``,
    ``--backend torch``, ``--command ... --device-name ...``), none for the defaults."""
    options: list[str] = []
    if device.runtime == "command":
        options.append(f"--command {shlex.quote(device.command or 'TEMPLATE')}")
        if device.device_name:
            options.append(f"--device-name {shlex.quote(device.device_name)}")
    elif device.runtime == "torch":
        options.append("--backend torch")
    if device.threads != 1:
        options.append(f"--threads {device.threads}")
    return options


def build_command(table: LookupTable, space: str, *extra: str) -> str:
    """The ``nas-latency build`` command that fills ``table`` (of space ``space``, a name or .json):
    its file, input size and device options, so that it names this very table."""
    words = ["nas-latency build --space", shlex.quote(space), *(e for e in extra if e), f"--input-size {table.input_size}"]
    words += device_options(table.header.device)
    words.append(f"--table {shlex.quote(str(table.path)) if table.path else 'PATH'}")
    return " ".join(words)


def _milliseconds(value: Any, where: str, *, positive: bool = False) -> float:
    """``value`` as a latency in ms: a finite number >= 0 (> 0 with ``positive``), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{where}: {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise ValueError(f"{where}: {value!r} is not a latency (a finite number {'>' if positive else '>='} 0)")
    return number


def _read_lines(path: Path) -> list[str]:
    """The lines of a table file, bytes that are not UTF-8 (a damaged line) kept as they are, so that
    a rewrite puts them back unchanged (and load skips them)."""
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        return handle.read().splitlines()


def table_input_size(path: str | Path) -> int | None:
    """The input size a table file was measured at, from its header alone (no device check);
    None where the file is missing or is no table."""
    try:
        with open(path, encoding="utf-8") as handle:
            size = json.loads(handle.readline()).get("input_size")
    except (OSError, ValueError, AttributeError):
        return None
    return size if isinstance(size, int) and size > 0 else None


def table_name_prefix(space: Any) -> str:
    """How the default file name of ``space``'s tables begins (``latency.build.default_table_path``):
    the space's name and its layout fingerprint, which leaves out the class count."""
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', space.name)}-{space.layout_fingerprint()[:8]}-"


def _parse_line(line: str) -> Any:
    """A table line's record, or None for a damaged line (not JSON, or bytes that are not text)."""
    try:
        line.encode("utf-8")
        return json.loads(line)
    except ValueError:
        return None


def _is_end_to_end(line: str) -> bool:
    """Whether a table line is an end-to-end record (a torn or foreign line is not: it is kept, and
    ``load`` skips it as before)."""
    record = _parse_line(line)
    return isinstance(record, dict) and record.get("kind") == "end_to_end"


def _atomic_write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    from mobilenas.runs import temporary_path

    tmp = temporary_path(path)
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as handle:  # damaged lines kept as they were
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
