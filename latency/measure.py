"""Timing a model on a device: the backends and the :class:`Measurement` value.

Protocol (every backend): the model gets a fixed input (seeded normal noise, batch 1 unless told
otherwise), ``warmup`` untimed runs, then ``repeats`` timed runs; the latency is the **median**
and the spread (inter-quartile range, standard deviation, extremes) is reported beside it.
:func:`measure_interleaved` times several models in rounds, each round visiting the models in a
fresh random order, so that slow drift of the machine is shared by all of them instead of
biasing whichever was timed last.

Backends:

* :class:`OnnxRuntimeBackend` (default): the model is exported to ONNX (opset 17, TorchScript
  exporter) and run by ONNX Runtime's CPU execution provider at ``ORT_ENABLE_ALL`` with a fixed
  number of intra-op threads (default 1, like MnasNet's single big core).
* :class:`TorchBackend`: PyTorch eager mode, ``torch.no_grad()``, ``torch.set_num_threads``.
* :class:`CommandBackend`: a command you give runs on the exported ``.onnx`` file (for example a
  script that pushes it to a phone and runs the vendor's benchmark tool) and prints milliseconds.

Clock: with one thread, ONNX Runtime and PyTorch execute the whole graph on the calling thread, so
by default (``timer="auto"``) one-thread measurements use that thread's CPU time
(``CLOCK_THREAD_CPUTIME_ID``). On an idle core it equals wall time; on a shared machine it leaves
out the time the operating system gave to other processes, which otherwise shows up as outliers
of several milliseconds. With more threads the work runs on a thread pool and the wall clock is
used. ``timer="wall"`` forces the wall clock.

Cold cache: when asked (``cold_cache=True``), a buffer twice the size of the last-level cache is
written before each timed run, so the model's weights come from memory rather than cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import shlex
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenas.latency.device import DeviceInfo, host_device, last_level_cache_bytes
from mobilenas.space.arch import Architecture
from mobilenas.space.builder import build_model
from mobilenas.space.export import export_onnx
from mobilenas.torchutil import torch_threads

TIMERS = ("auto", "thread", "wall")
DEFAULT_WARMUP = 5
DEFAULT_REPEATS = 30
INPUT_SEED = 0


@dataclass(frozen=True)
class Spread:
    """How much the timed runs varied, in milliseconds."""

    iqr_ms: float
    std_ms: float
    p25_ms: float
    p75_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Spread:
        values = np.asarray(samples_ms, dtype=float)
        if values.size == 0:
            nan = float("nan")
            return cls(nan, nan, nan, nan, nan, nan)
        p25, p75 = (float(v) for v in np.percentile(values, [25, 75]))
        return cls(p75 - p25, float(values.std(ddof=1)) if values.size > 1 else 0.0, p25, p75, float(values.min()), float(values.max()))

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Measurement:
    """One latency measurement: the median of ``runs`` timed runs, its spread, and the device."""

    latency_ms: float
    spread: Spread
    runs: int
    device: DeviceInfo

    @classmethod
    def of(cls, samples_ms: Sequence[float], device: DeviceInfo) -> Measurement:
        if not samples_ms:
            raise ValueError("a measurement needs at least one timed run")
        return cls(float(np.median(samples_ms)), Spread.of(samples_ms), len(samples_ms), device)

    @property
    def relative_iqr(self) -> float:
        """IQR as a fraction of the median (a quick noise figure)."""
        return self.spread.iqr_ms / self.latency_ms if self.latency_ms > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "spread": self.spread.to_dict(), "runs": self.runs, "device": self.device.to_dict()}


# --------------------------------------------------------------------------- runners


class Runner(ABC):
    """A model prepared on a backend, ready to be timed many times."""

    input_shape: tuple[int, ...]

    @abstractmethod
    def run_timed(self, runs: int, *, cold_cache: bool = False) -> list[float]:
        """Time ``runs`` runs; milliseconds each."""

    def warm_up(self, runs: int) -> None:
        """Untimed runs (caches, allocator arenas, lazy initialisation)."""
        if runs > 0:
            self.run_timed(runs)

    def close(self) -> None:
        """Release what the runner holds (sessions, temporary files); nothing by default."""
        return None


def _fixed_input(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(INPUT_SEED).standard_normal(shape).astype(np.float32)


class _CacheFlusher:
    """Writes a buffer larger than the last-level cache, evicting whatever a model left there."""

    def __init__(self) -> None:
        cache = last_level_cache_bytes() or 32 * 1024**2
        size = min(max(2 * cache, 16 * 1024**2), 512 * 1024**2)
        self.buffer = np.zeros(size // 4, dtype=np.float32)

    def __call__(self) -> None:
        np.add(self.buffer, 1.0, out=self.buffer)


def _clock(timer: str, threads: int) -> Callable[[], int]:
    if timer == "thread" or (timer == "auto" and threads == 1):
        return time.thread_time_ns
    return time.perf_counter_ns


def _resolved_timer(timer: str, threads: int) -> str:
    return "thread" if timer == "thread" or (timer == "auto" and threads == 1) else "wall"


class _OrtRunner(Runner):
    def __init__(self, model_bytes: bytes, input_shape: tuple[int, ...], threads: int, clock: Callable[[], int], flusher: Callable[[], _CacheFlusher]) -> None:
        from mobilenas.space.export import INPUT_NAME, onnxruntime_session

        self.session: Any = onnxruntime_session(model_bytes, threads=threads)
        self.input_shape = input_shape
        self.feed = {INPUT_NAME: _fixed_input(input_shape)}
        self.clock = clock
        self.flusher = flusher

    def run_timed(self, runs: int, *, cold_cache: bool = False) -> list[float]:
        run, feed, clock = self.session.run, self.feed, self.clock
        flush = self.flusher() if cold_cache else None
        samples = []
        for _ in range(runs):
            if flush is not None:
                flush()
            start = clock()
            run(None, feed)
            samples.append((clock() - start) / 1e6)
        return samples

    def close(self) -> None:
        self.session = None


class _TorchRunner(Runner):
    def __init__(self, module: nn.Module, input_shape: tuple[int, ...], threads: int, clock: Callable[[], int], flusher: Callable[[], _CacheFlusher]) -> None:
        self.module = module.eval()
        self.input_shape = input_shape
        self.input = torch.from_numpy(_fixed_input(input_shape))
        self.threads = threads
        self.clock = clock
        self.flusher = flusher

    def run_timed(self, runs: int, *, cold_cache: bool = False) -> list[float]:
        flush = self.flusher() if cold_cache else None
        samples = []
        with torch_threads(self.threads), torch.inference_mode():
            for _ in range(runs):
                if flush is not None:
                    flush()
                start = self.clock()
                self.module(self.input)
                samples.append((self.clock() - start) / 1e6)
        return samples


@contextlib.contextmanager
def _seeded_torch(seed: int) -> Iterator[None]:
    # Random weights do not change latency, but a fixed seed keeps exported models identical
    # between runs without touching the caller's global generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --------------------------------------------------------------------------- backends


class LatencyBackend(ABC):
    """Times models on one device. See the module docstring for the protocol."""

    #: the runtime's name, recorded in measurements and tables
    runtime: str = ""

    def __init__(self, threads: int = 1, *, warmup: int = DEFAULT_WARMUP, repeats: int = DEFAULT_REPEATS, timer: str = "auto") -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup must be a whole number >= 0, got {warmup!r}")
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"repeats must be a whole number >= 1, got {repeats!r}")
        if timer not in TIMERS:
            raise ValueError(f"timer {timer!r} is not one of {', '.join(TIMERS)}")
        self.threads = threads
        self.warmup = warmup
        self.repeats = repeats
        self.timer = timer
        self._flusher: _CacheFlusher | None = None

    @abstractmethod
    def device(self) -> DeviceInfo:
        """The device and runtime (without input shape and date)."""

    @abstractmethod
    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Runner:
        """Make ``module`` (eval mode, input ``input_shape``) ready to be timed."""

    def _flush(self) -> _CacheFlusher:
        if self._flusher is None:
            self._flusher = _CacheFlusher()
        return self._flusher

    def measure_module(
        self,
        module: nn.Module,
        input_shape: tuple[int, ...],
        *,
        repeats: int | None = None,
        warmup: int | None = None,
        cold_cache: bool = False,
    ) -> Measurement:
        """Warm up, then time ``repeats`` runs (defaults: the backend's) and take the median."""
        runner = self.prepare(module, tuple(input_shape))
        try:
            runner.warm_up(self.warmup if warmup is None else warmup)
            samples = runner.run_timed(repeats or self.repeats, cold_cache=cold_cache)
        finally:
            runner.close()
        return Measurement.of(samples, self.device().with_shape(tuple(input_shape)))

    def describe(self) -> str:
        return self.device().describe()


class OnnxRuntimeBackend(LatencyBackend):
    """ONNX Runtime, CPU execution provider, ``ORT_ENABLE_ALL``, ``threads`` intra-op threads."""

    runtime = "onnxruntime"

    def device(self) -> DeviceInfo:
        import onnxruntime

        return host_device("onnxruntime", onnxruntime.__version__, "CPUExecutionProvider", self.threads, _resolved_timer(self.timer, self.threads))

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Runner:
        batch, channels, height, width = input_shape
        if height != width:
            raise ValueError(f"only square inputs are supported, got {height}x{width}")
        data = export_onnx(module, input_size=height, in_channels=channels, batch_size=batch)
        return _OrtRunner(data, input_shape, self.threads, _clock(self.timer, self.threads), self._flush)


class TorchBackend(LatencyBackend):
    """PyTorch eager mode on the CPU with ``threads`` intra-op threads."""

    runtime = "torch"

    def device(self) -> DeviceInfo:
        return host_device("torch", torch.__version__, "cpu-eager", self.threads, _resolved_timer(self.timer, self.threads))

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Runner:
        return _TorchRunner(module, input_shape, self.threads, _clock(self.timer, self.threads), self._flush)


# --------------------------------------------------------------------------- custom command

_NUMBER = r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
# ``latency_ms: 12.3`` (``=`` or a space also; the unit optional after that key), or any number followed by ``ms``
_MS_PATTERN = re.compile(rf"\blatency_ms[\"']?\s*[:=]?\s*({_NUMBER})(?:[ \t]*ms\b|(?![\w.]|[ \t]*[A-Za-z\u00b5]))|({_NUMBER})\s*ms\b")
# a number followed by microseconds (``1500 us``, ``1500µs``), read when no millisecond is printed
_US_PATTERN = re.compile(rf"({_NUMBER})[ \t]*(?:us|\u00b5s|\u03bcs)\b")
_AFTER_MS_KEY = re.compile(r"\blatency_ms[\"']?\s*[:=]?\s*$")
_PLACEHOLDERS = ("model", "threads", "batch", "channels", "height", "width")


def parse_command_output(text: str) -> float:
    """Milliseconds printed by a benchmark command.

    Accepted, in this order: a last line that is a JSON object with ``latency_ms``; otherwise
    the last number that follows the key ``latency_ms`` (``latency_ms: 12.3``, ``latency_ms=12.3
    ms``) or is followed by ``ms`` (``median: 12.3 ms``, ``avg=4.1ms``) anywhere in the output;
    otherwise the last number followed by ``us`` or ``µs`` (``1500 us``), in microseconds.
    Raises ``ValueError`` when none is found. A bare number is not read (it has no unit), nor
    seconds (benchmark tools print their total run time in seconds, beside the per-run figure).
    """
    import json

    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    value: float | None = None
    if lines and lines[-1].startswith("{"):
        try:
            data = json.loads(lines[-1])
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("latency_ms"), int | float) and not isinstance(data.get("latency_ms"), bool):
            value = float(data["latency_ms"])
    if value is None:
        matches = _MS_PATTERN.findall(text)
        # not after the key latency_ms, which says milliseconds: "latency_ms: 12 us" is a contradiction, not read
        micro = [m.group(1) for m in _US_PATTERN.finditer(text) if not _AFTER_MS_KEY.search(text, 0, m.start())]
        if not matches and not micro:
            tail = " | ".join(lines[-3:]) if lines else "(no output)"
            raise ValueError(
                "the benchmark command printed no milliseconds (expected a number after latency_ms, e.g. 'latency_ms: 12.3', a number followed by ms or us,"
                f" e.g. 'median 12.3 ms', or a JSON line with latency_ms; a bare number or seconds are not read); its output ended with: {tail}"
            )
        if matches:
            keyed = [k for k, _ in matches if k]  # the key says what the number is: it wins over a later "N ms" (a warm-up's time, say)
            value = float(keyed[-1] if keyed else matches[-1][1])
        else:
            value = float(micro[-1]) / 1000.0
    if not math.isfinite(value) or value <= 0:  # a JSON line is held to this too (it passed 0 and NaN)
        raise ValueError(f"the benchmark command printed a latency of {value} ms, which is not positive")
    return value


class CommandBackend(LatencyBackend):
    """Runs a user command on the exported ``.onnx`` file and reads the milliseconds it prints.

    ``template`` is a command line with placeholders ``{model}`` (path of the exported ONNX file,
    required), ``{threads}``, ``{batch}``, ``{channels}``, ``{height}``, ``{width}``; it is split
    like a shell would (no shell runs it). Each call of the command is one measurement: the
    command does its own warm-up and repetitions and prints its median (see
    :func:`parse_command_output` for what it may print). ``repeats`` calls of the command are made
    and their median taken. ``device_name`` names the target device in tables.

    Worked example (runs here, times ONNX Runtime in a subprocess)::

        nas-latency measure mobilenetv3-large \\
            --command "python -m mobilenas.latency.ort_command {model} --threads {threads}"
    """

    runtime = "command"

    def __init__(self, template: str, *, device_name: str | None = None, threads: int = 1, repeats: int = 1, timeout_s: float = 600.0) -> None:
        super().__init__(threads, warmup=0, repeats=repeats, timer="auto")
        if not isinstance(template, str) or not template.strip():
            raise ValueError("the benchmark command is empty; give a command line with {model}, e.g. 'python my_bench.py {model}'")
        try:
            tokens = shlex.split(template)
        except ValueError as error:
            raise ValueError(f"cannot split the benchmark command {template!r}: {error}") from None
        fields = {name for token in tokens for _, name, _, _ in _string_formatter().parse(token) if name is not None}
        unknown = sorted(fields - set(_PLACEHOLDERS))
        if unknown:
            raise ValueError(f"the benchmark command uses unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; known: {', '.join('{' + p + '}' for p in _PLACEHOLDERS)}")
        if "model" not in fields:
            raise ValueError(f"the benchmark command {template!r} has no {{model}} placeholder for the exported .onnx file")
        self.template = template
        self.tokens = tuple(tokens)
        self.device_name = device_name
        self.timeout_s = timeout_s

    def device(self) -> DeviceInfo:
        return host_device("command", "", "", self.threads, "command", command=self.template, device_name=self.device_name)

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Runner:
        return _CommandRunner(self, module, input_shape)

    def command_for(self, model_path: Path, input_shape: tuple[int, ...]) -> list[str]:
        batch, channels, height, width = input_shape
        values = {"model": str(model_path), "threads": self.threads, "batch": batch, "channels": channels, "height": height, "width": width}
        return [token.format(**values) for token in self.tokens]


def _string_formatter() -> Any:
    import string

    return string.Formatter()


class _CommandRunner(Runner):
    def __init__(self, backend: CommandBackend, module: nn.Module, input_shape: tuple[int, ...]) -> None:
        self.backend = backend
        self.input_shape = input_shape
        self.directory = tempfile.TemporaryDirectory(prefix="mobilenas-latency-")
        self.path = Path(self.directory.name) / "model.onnx"
        _, channels, height, _ = input_shape
        export_onnx(module, self.path, input_size=height, in_channels=channels, batch_size=input_shape[0])

    def run_timed(self, runs: int, *, cold_cache: bool = False) -> list[float]:
        command = self.backend.command_for(self.path, self.input_shape)
        samples = []
        for _ in range(runs):
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=self.backend.timeout_s, check=False)
            except FileNotFoundError:
                raise ValueError(f"the benchmark command {command[0]!r} was not found; check --command") from None
            except subprocess.TimeoutExpired:
                raise ValueError(f"the benchmark command ran longer than {self.backend.timeout_s:g} s: {shlex.join(command)}") from None
            if result.returncode != 0:
                tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["(no output)"]
                raise ValueError(f"the benchmark command failed with exit code {result.returncode}: {tail[0]}")
            samples.append(parse_command_output(result.stdout))
        return samples

    def warm_up(self, runs: int) -> None:
        # The command warms up by itself; a separate warm-up call would only cost time.
        return None

    def close(self) -> None:
        self.directory.cleanup()


BACKENDS = ("onnxruntime", "torch", "command")


def make_backend(name: str = "onnxruntime", *, threads: int = 1, command: str | None = None, device_name: str | None = None, repeats: int | None = None, warmup: int | None = None, timer: str = "auto") -> LatencyBackend:
    """A backend by name (what the command line's ``--backend`` offers)."""
    if command is not None and name == "torch":
        raise ValueError("--command cannot be combined with --backend torch (the command does the timing); drop one of them")
    if command is not None and name in ("onnxruntime", "command"):
        return CommandBackend(command, device_name=device_name, threads=threads, repeats=repeats or 1)
    if name == "command":
        raise ValueError("--backend command needs --command 'TEMPLATE' with a {model} placeholder")
    if device_name is not None:
        # without a command the device is this machine; a name given here would label the table
        # wrongly, and ``--device cuda`` abbreviates to --device-name on commands that have no --device
        raise ValueError(
            f"--device-name {device_name!r} names the device a --command measures on; without --command"
            f" models are timed by {name} on this machine's CPU: drop --device-name, or add --command"
        )
    options: dict[str, Any] = {"threads": threads, "timer": timer}
    if repeats is not None:
        options["repeats"] = repeats
    if warmup is not None:
        options["warmup"] = warmup
    if name == "onnxruntime":
        return OnnxRuntimeBackend(**options)
    if name == "torch":
        return TorchBackend(**options)
    raise ValueError(f"unknown latency backend {name!r}; choose one of {', '.join(BACKENDS)}")


# --------------------------------------------------------------------------- architectures


def network_module(arch: Architecture, input_size: int, seed: int = 0) -> nn.Module:
    """The network measured for ``arch`` at ``input_size`` (adapted as the builder adapts it)."""
    with _seeded_torch(seed):
        return build_model(arch, input_size=input_size).eval()


#: How far (a fraction) one end-to-end timing may lie from the table's prediction before it is
#: timed twice more and the median kept (one timing on a machine busy for a moment can be far off);
#: the table is within 10% for 100% of networks on this machine (benchmarks/latency_calibration.md).
MEASUREMENT_RECHECK = 0.15


def measure(arch: Architecture, backend: LatencyBackend | None = None, input_size: int = 224, *, batch_size: int = 1, repeats: int | None = None) -> Measurement:
    """End-to-end latency of ``arch`` (square ``input_size`` input, ``batch_size``) on ``backend``.

    The default backend is :class:`OnnxRuntimeBackend` with one thread. The network is the one the
    builder makes for that input size (:func:`mobilenas.space.builder.adapt_for_input_size`).
    """
    backend = backend or OnnxRuntimeBackend()
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"input_size must be a whole number >= 1, got {input_size!r}")
    model = network_module(arch, input_size)
    return backend.measure_module(model, (batch_size, arch.stem.in_channels, input_size, input_size), repeats=repeats)


def activation_bytes(arch: Architecture, input_size: int, batch_size: int = 1) -> int:
    """A lower bound of the memory (bytes) running ``arch`` at ``input_size`` needs: the largest op's
    float32 input and widest output together, from the op signatures alone (nothing allocated)."""
    from mobilenas.latency.signature import architecture_signatures

    peak = arch.stem.in_channels * input_size * input_size
    for placed in architecture_signatures(arch, input_size):
        signature = placed.signature
        widest = max(signature.in_channels, signature.out_channels, signature.expanded_channels)
        peak = max(peak, signature.in_height * signature.in_width * (signature.in_channels + widest))
    return 4 * batch_size * peak


def physical_memory_bytes() -> int | None:
    """This machine's memory in bytes (None where the system does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_fits_in_memory(arch: Architecture, input_size: int, option: str = "--input-size", batch_size: int = 1) -> None:
    """Refuse (``ValueError``, one line) an input size whose activations alone exceed this machine's
    memory, before anything is allocated: the export runs the network once in PyTorch and the
    runtime holds its own buffers, so about three times :func:`activation_bytes` is needed."""
    total = physical_memory_bytes()
    needed = 3 * activation_bytes(arch, input_size, batch_size)
    if total is not None and needed > total:
        raise ValueError(
            f"{option} {input_size}: the network needs about {_gigabytes(needed)} of memory at {input_size}x{input_size}, more than this machine's"
            f" {_gigabytes(total)}; give a smaller {option}"
        )


def _gigabytes(count: int) -> str:
    return f"{count / 1e9:,.0f} GB" if count >= 1e10 else f"{count / 1e9:.1f} GB"


ModelFactory = Callable[[], tuple[nn.Module, tuple[int, ...]]]


INTERLEAVED_GROUP = 64  # models prepared and timed together by measure_interleaved (bounds memory)


def measure_interleaved(
    factories: Sequence[ModelFactory],
    backend: LatencyBackend,
    *,
    rounds: int = 10,
    runs_per_round: int | None = None,
    seed: int = 0,
    cold_cache: bool = False,
    group_size: int = INTERLEAVED_GROUP,
    on_progress: Callable[[int], None] | None = None,
    on_done: Callable[[list[int], list[Measurement]], None] | None = None,
) -> list[Measurement]:
    """Time several models with their runs interleaved, so drift is shared by all of them.

    ``factories`` build each model and its input shape when needed. Models are prepared
    ``group_size`` at a time (to bound memory); within a group, each of ``rounds`` rounds visits
    the models in a fresh random order (``seed``) and times ``runs_per_round`` runs of each
    (default: the backend's repeats spread over the rounds), so every model's runs are spread
    over the whole measuring time and a burst of load from another process hits a few runs of
    many models rather than all runs of one. Each visit starts with one untimed run, so the
    timed runs see warm caches as repeated runs of one model do. Returns one :class:`Measurement` per model, in the
    order given. ``on_progress(1)`` is called once per model prepared and once per model and
    round timed (``len(factories) * (rounds + 1)`` calls in all); ``on_done(indices,
    measurements)`` as each group is finished (to keep them before a later group is interrupted).
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    per_round = runs_per_round or max(1, math.ceil(backend.repeats / rounds))
    rng = np.random.default_rng(seed)
    device = backend.device()
    tick = on_progress or (lambda done: None)
    results: list[Measurement] = []
    for start in range(0, len(factories), group_size):
        indices = list(range(start, min(start + group_size, len(factories))))
        runners: dict[int, Runner] = {}
        try:
            for i in indices:
                module, shape = factories[i]()
                runners[i] = backend.prepare(module, tuple(shape))
                del module
                runners[i].warm_up(backend.warmup)
                tick(1)
            samples: dict[int, list[float]] = {i: [] for i in indices}
            for _ in range(rounds):
                for i in rng.permutation(indices):
                    runner = runners[int(i)]
                    if not cold_cache:
                        # The models visited since this one's last turn evicted its weights
                        # from the caches; one untimed run brings them back, so every timed run
                        # is a warm repeat, as in a plain measurement of this model alone.
                        runner.warm_up(1)
                    samples[int(i)] += runner.run_timed(per_round, cold_cache=cold_cache)
                    tick(1)
        finally:
            for runner in runners.values():
                runner.close()
        group = [Measurement.of(samples[i], device.with_shape(runners[i].input_shape)) for i in indices]
        results += group
        if on_done is not None:
            on_done(indices, group)
    return results


def measure_architectures(
    archs: Sequence[Architecture],
    backend: LatencyBackend,
    input_size: int = 224,
    *,
    rounds: int = 10,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
    on_done: Callable[[list[int], list[Measurement]], None] | None = None,
) -> list[Measurement]:
    """End-to-end latencies of several architectures, interleaved (:func:`measure_interleaved`).

    For a progress bar, ``on_progress`` is called ``len(archs) * (rounds + 1)`` times;
    ``on_done(indices, measurements)`` as each group of architectures is finished.
    """

    def factory(arch: Architecture) -> ModelFactory:
        return lambda: (network_module(arch, input_size), (1, arch.stem.in_channels, input_size, input_size))

    return measure_interleaved([factory(a) for a in archs], backend, rounds=rounds, seed=seed, on_progress=on_progress, on_done=on_done)
