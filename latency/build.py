"""Building tables for a search space, the correction, and the fastest and slowest architectures of a space.

* :func:`space_signatures` enumerates every signature a :class:`SearchSpace` can produce at an
  input size, stage by stage (``SearchSpace.stage_blocks`` for each value combination and each
  input width ``SearchSpace.stage_input_channels`` allows), never the whole space.
* :func:`build_table` measures each of them once (progress bar with ETA; resumes an interrupted
  build from the entries already in the file), then fits the correction.
* :func:`open_or_create_table` gives a table for a space lazily: an existing file, or an empty one
  with its header, filled as predictions measure what they miss. Its correction is fitted right
  away on ``correction_samples`` architectures measured end to end (the space's fastest, then
  random ones); with ``correction_samples=0`` it stays the identity (plain sum,
  ``predict`` warns) until :func:`ensure_correction` is called.
* :func:`fastest_latency` finds the space's fastest architecture by the table, by dynamic
  programming over stages (state: a stage's output width); :func:`slowest_latency` its slowest.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobilenas.latency.measure import LatencyBackend, OnnxRuntimeBackend, measure_architectures
from mobilenas.latency.signature import OpSignature
from mobilenas.latency.table import (
    Correction,
    LookupTable,
    Method,
    MissingEntryError,
    table_name_prefix,
)
from mobilenas.runs import mobilenas_home
from mobilenas.space.arch import Architecture, Block, conv_output_size, make_divisible
from mobilenas.space.builder import adapt_for_input_size
from mobilenas.space.search_space import SearchSpace

# 20: enough for the three-parameter correction (a, b, se_ms) to be fitted stably.
DEFAULT_BUILD_CORRECTION_SAMPLES = 20
# 8: the fewest end-to-end points from which the correction has its SE term (MIN_POINTS_FOR_SE_TERM).
DEFAULT_LAZY_CORRECTION_SAMPLES = 8


# --------------------------------------------------------------------------- default paths


def default_table_path(space: SearchSpace, backend: LatencyBackend | None = None, input_size: int = 224) -> Path:
    """Where the table of ``space`` on ``backend``'s device at ``input_size`` lives by default.

    ``$MOBILENAS_HOME/tables/<space>-<space fingerprint>-<size>px-[<device name>-]<runtime>-<threads>t-<device fingerprint>.jsonl``,
    the device name (``--device-name``) where a command measures on a named device. The
    classifier's class count does not enter the name: a 10-class search shares the table built
    for the 1000-class space (entries are keyed by signature; its head is one more entry).
    """
    device = (backend or OnnxRuntimeBackend()).device()
    folder = mobilenas_home() / "tables"
    tail = f"{device.runtime}-{device.threads}t-{device.fingerprint()[:8]}.jsonl"
    unnamed = folder / f"{table_name_prefix(space)}{input_size}px-{tail}"
    if not device.device_name:
        return unnamed
    named = folder / f"{table_name_prefix(space)}{input_size}px-{re.sub(r'[^A-Za-z0-9._-]+', '_', device.device_name).strip('._-')[:40] or 'device'}-{tail}"
    return unnamed if unnamed.exists() and not named.exists() else named  # a table made before names carried the device


# --------------------------------------------------------------------------- enumeration


def _stage_layout(space: SearchSpace, input_size: int) -> tuple[int, list[int], list[int]]:
    """Stem stride, first-layer stride of each stage and input size of each stage at ``input_size``.

    Every architecture of a space shares its strides (only a stage's first layer strides), so the
    builder's adaptation to a small input changes the same layers for all of them.
    """
    sample = space.extremes()[0]
    adapted, _ = adapt_for_input_size(sample, input_size)
    stem_stride = adapted.stem.stride
    strides = [stage[0].stride for stage in adapted.stages]
    sizes = []
    size = conv_output_size(input_size, stem_stride)
    for stride in strides:
        sizes.append(size)
        size = conv_output_size(size, stride)
    sizes.append(size)  # entering the head
    return stem_stride, strides, sizes


def _stage_widths(space: SearchSpace, stage_index: int) -> tuple[int, ...]:
    stage = space.stages[stage_index]
    return tuple(sorted({make_divisible(stage.base_channels * m, space.divisor) for m in stage.fields()["width_multiplier"]}))


def _combinations(choices: Mapping[str, Sequence[Any]]) -> Iterator[dict[str, Any]]:
    names = list(choices)
    for values in itertools.product(*(choices[n] for n in names)):
        yield dict(zip(names, values, strict=True))


@dataclass(frozen=True)
class _StagePlan:
    index: int
    in_size: int
    first_stride: int


def _stage_blocks(space: SearchSpace, plan: _StagePlan, values: Mapping[str, Any], in_channels: int) -> tuple[Block, ...]:
    blocks = space.stage_blocks(plan.index, values, in_channels)
    if blocks[0].stride != plan.first_stride:  # the input-size adaptation removed this stride
        blocks = (dataclasses.replace(blocks[0], stride=plan.first_stride), *blocks[1:])
    return blocks


def _block_signatures(blocks: Sequence[Block], in_channels: int, in_size: int, se_gate: str) -> list[OpSignature]:
    signatures = []
    size = in_size
    for block in blocks:
        signatures.append(OpSignature.of_block(block, in_channels, size, se_gate))
        in_channels, size = block.out_channels, conv_output_size(size, block.stride)
    return signatures


def _plans(space: SearchSpace, input_size: int) -> tuple[OpSignature, list[_StagePlan], int]:
    stem_stride, strides, sizes = _stage_layout(space, input_size)
    stem = dataclasses.replace(space.stem, stride=stem_stride)
    plans = [_StagePlan(i, sizes[i], strides[i]) for i in range(len(space.stages))]
    return OpSignature.of_stem(stem, input_size), plans, sizes[-1]


def space_signatures(space: SearchSpace, input_size: int = 224) -> list[OpSignature]:
    """Every signature an architecture of ``space`` can have at ``input_size`` (each once).

    Enumerated per stage: for each input width the stage can receive and each combination of the
    stage's choices (the layer count at its largest up to two layers: every layer after the first
    has the same signature), the stage's blocks, via ``SearchSpace.stage_blocks``.
    """
    stem, plans, head_size = _plans(space, input_size)
    found: dict[OpSignature, None] = {stem: None}
    for plan in plans:
        stage = space.stages[plan.index]
        choices = dict(stage.choices)
        if "num_layers" in choices:
            choices["num_layers"] = (min(2, max(choices["num_layers"])),)
        for in_channels in space.stage_input_channels(plan.index):
            for values in _combinations(choices):
                blocks = _stage_blocks(space, plan, values, in_channels)
                for signature in _block_signatures(blocks, in_channels, plan.in_size, space.se_gate):
                    found.setdefault(signature, None)
    for width in _stage_widths(space, len(space.stages) - 1):
        found.setdefault(OpSignature.of_head(space.head, width, head_size), None)
    return list(found)


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_table` did."""

    table: LookupTable
    path: Path
    entries: int
    measured: int
    reused: int
    wall_time_s: float
    correction: Correction
    #: entries this build needed that another process (a build or search on the same table) measured meanwhile
    shared: int = 0


def _open(path: Path, space: SearchSpace, backend: LatencyBackend, input_size: int, force_device: bool, method: Method | None) -> LookupTable:
    table, _ = LookupTable.load_or_create(
        path, backend=backend, force=force_device, input_size=input_size, method=method, space_name=space.name, space_fingerprint=space.layout_fingerprint()
    )
    if table.input_size != input_size:
        raise ValueError(f"{path} is a table for {table.input_size}x{table.input_size} inputs, not {input_size}x{input_size}; give another --table or --input-size {table.input_size}")
    if method is not None and method != table.method:
        raise ValueError(f"{path} was measured {_method_words(table.method)}; {_method_fix(table, method)}")
    return table


def _method_words(method: Method) -> str:
    runs = f"{method.repeats} timed run" + ("s" if method.repeats != 1 else "")
    return f"with method {method.name} ({runs} per entry, {method.warmup} warm-up{', cold cache' if method.cold_cache else ''})"


def _method_fix(table: LookupTable, asked: Method) -> str:
    """How to resume ``table`` after ``asked`` differed from its method: the options that give its
    method, where the command line can (else: none, which keep the table's)."""
    from_command_line = Method(name=table.method.name, warmup=asked.warmup, repeats=table.method.repeats)  # what --method/--repeats make
    keep = "or drop --method and --repeats (a build resumes with the table's method)"
    if from_command_line == table.method:
        return f"resume it with --method {table.method.name} --repeats {table.method.repeats}, {keep}, or give another --table"
    return "resume it without --method and --repeats (a build resumes with the table's method), or give another --table"


def build_table(
    space: SearchSpace,
    *,
    path: str | Path | None = None,
    input_size: int = 224,
    backend: LatencyBackend | None = None,
    progress: bool = True,
    correction_samples: int = DEFAULT_BUILD_CORRECTION_SAMPLES,
    seed: int = 0,
    force_device: bool = False,
    method: Method | None = None,
    limit: int | None = None,
    refit_correction: bool = False,
) -> BuildResult:
    """Measure every signature of ``space`` at ``input_size`` into the table at ``path``.

    Resumes: signatures already in the file are not measured again. Entries are measured in a
    seeded random order, so slow drift of the machine spreads over all kinds of ops instead of
    biasing the last stages. Then the correction is fitted on ``correction_samples``
    architectures measured end to end (:func:`ensure_correction`). ``limit`` stops after that
    many new entries (what a test uses to simulate an interrupted build). ``refit_correction``
    fits the correction on ``correction_samples`` new end-to-end measurements, which then replace
    the table's points (until they are all measured, the table keeps its points and correction;
    with ``correction_samples=0`` the points are forgotten and the correction is the identity).
    ``path`` defaults to :func:`default_table_path`.
    """
    backend = backend or OnnxRuntimeBackend()
    target = Path(path) if path is not None else default_table_path(space, backend, input_size)
    start = time.perf_counter()
    table = _open(target, space, backend, input_size, force_device, method)
    table.measure_into_forced = force_device  # the build resumes that table, as asked
    wanted = space_signatures(space, input_size)
    todo = [s for s in wanted if s not in table]
    if todo or refit_correction or len(table.end_to_end_points()) < correction_samples:
        table.check_writable("the build would measure into it")  # now, not after minutes of measuring
    reused = len(wanted) - len(todo)
    order = np.random.default_rng(seed).permutation(len(todo))
    todo = [todo[int(i)] for i in order]
    if limit is not None:
        todo = todo[:limit]
    measured = table.ensure_signatures(todo, progress=progress, desc=f"table {space.name} {input_size}px" + (f" (resuming, {reused} done)" if reused else ""))
    complete = limit is None or len(todo) + reused >= len(wanted)
    if refit_correction and correction_samples == 0:
        table.drop_end_to_end()
    if complete and correction_samples > 0:
        ensure_correction(table, space, samples=correction_samples, seed=seed, progress=progress, replace=refit_correction)
    shared = sum(1 for s in todo if s in table) - measured  # in the table now, not by this process
    return BuildResult(table, target, len(table), measured, reused, time.perf_counter() - start, table.correction, shared)


def open_or_create_table(
    space: SearchSpace,
    path: str | Path | None = None,
    *,
    input_size: int = 224,
    backend: LatencyBackend | None = None,
    force_device: bool = False,
    correction_samples: int = DEFAULT_LAZY_CORRECTION_SAMPLES,
    seed: int = 0,
    progress: bool = False,
) -> LookupTable:
    """The table of ``space`` at ``path`` (default :func:`default_table_path`), created empty if missing.

    A new table is lazy: its header is written now and entries are measured when a prediction
    misses them (``predict(arch, measure_missing=True)``, ``table.ensure(arch)``). Unless
    ``correction_samples`` is 0, the correction is fitted now if the table has fewer end-to-end
    points than that: the space's fastest architecture and random ones are measured (about 2 s
    each at 224x224 on one CPU thread, their ops included; 8 by default).
    """
    backend = backend or OnnxRuntimeBackend()
    target = Path(path) if path is not None else default_table_path(space, backend, input_size)
    table = _open(target, space, backend, input_size, force_device, None)
    if correction_samples > 0:
        ensure_correction(table, space, samples=correction_samples, seed=seed, progress=progress)
    return table


def correction_architectures(space: SearchSpace, count: int, seed: int, exclude: set[str], first: Sequence[Architecture] = ()) -> list[Architecture]:
    """``count`` distinct architectures for fitting: ``first`` (unless excluded), then seeded random ones.

    Random members of the space are what a search predicts, so the fit is made where it is used;
    :func:`ensure_correction` puts the space's fastest architecture first, where the question
    "can the target be reached at all" is asked and where the fixed per-inference cost weighs
    most. (The largest architecture is left out on purpose: measured here it lies off the line
    the typical ones follow and pulls the fit away from them.)
    """
    chosen: list[Architecture] = []
    seen = set(exclude)
    candidates: list[Architecture] = list(first)
    rng = np.random.default_rng([seed, 0xC0EF])
    attempts = 0
    while len(chosen) < count and attempts < 100 * max(count, 1):
        arch = candidates.pop(0) if candidates else space.sample(rng)
        attempts += 1
        key = arch.fingerprint()
        if key not in seen:
            seen.add(key)
            chosen.append(arch)
    return chosen


def ensure_correction(
    table: LookupTable,
    space: SearchSpace,
    *,
    samples: int = DEFAULT_LAZY_CORRECTION_SAMPLES,
    seed: int = 0,
    rounds: int = 10,
    progress: bool = False,
    replace: bool = False,
) -> Correction:
    """Make sure the correction rests on at least ``samples`` end-to-end points, then refit it.

    Missing points are the space's fastest architecture by the table and random ones (see
    :func:`correction_architectures`), their ops measured into the table, then all of them
    measured end to end, interleaved. Call again with a larger ``samples`` to refresh the
    correction with more points. ``replace``: measure ``samples`` new points (chosen as for a
    table without any) and put them in the place of the table's points once all are measured
    (:meth:`LookupTable.replace_end_to_end`): an interruption leaves the table as it was.
    """
    if replace or samples > _architectures_measured(table):
        table.check_writable(f"{samples} architectures would be measured end to end into it for its correction")  # now, not after measuring
        # One process at a time measures a table's end-to-end points: another build of the same
        # table waits, then finds them in the file and measures only what is still missing.
        with table.end_to_end_lock(say_waiting=progress):
            table.take_in_end_to_end_points()
            if replace or samples > _architectures_measured(table):
                return _measure_correction_points(table, space, samples, seed, rounds, progress, replace)
    if not table.correction.fitted or table.correction.points != _architectures_measured(table):
        return table.fit_correction()
    return table.correction


def _architectures_measured(table: LookupTable) -> int:
    """How many architectures the table's end-to-end points are of (one measured twice counts once)."""
    return len({point.fingerprint for point in table.end_to_end_points()})


def _measure_correction_points(table: LookupTable, space: SearchSpace, samples: int, seed: int, rounds: int, progress: bool, replace: bool) -> Correction:
    """:func:`ensure_correction`'s measuring: the points it lacks, then the fit."""
    have = set() if replace else {point.fingerprint for point in table.end_to_end_points()}
    # chosen by the plain sum when no correction is to be trusted (a refit is chosen as on a table without points)
    _, fastest = _extreme_latency(space, table, slowest=False, measure_missing=True, exhaustive=False, progress=False, correction=Correction() if replace else None)
    archs = correction_architectures(space, samples - len(have), seed + len(have), have, first=(fastest,))
    wanted: dict[OpSignature, None] = {}
    for arch in archs:
        wanted.update(dict.fromkeys(table.missing(arch)))
    table.ensure_signatures(list(wanted), progress=progress, desc="measuring ops (correction)")
    from mobilenas.cliutil import progress as progress_bar

    bar = progress_bar(total=len(archs) * (rounds + 1), desc=f"end-to-end, {len(archs)} architectures (correction)", enabled=progress, unit="step")
    try:
        measurements = measure_architectures(archs, table.measuring_backend(), table.input_size, rounds=rounds, seed=seed, on_progress=bar.update)
    finally:
        bar.close()
    if replace:
        return table.replace_end_to_end(archs, measurements)
    for arch, measurement in zip(archs, measurements, strict=True):
        table.record_end_to_end(arch, measurement, refit=False)
    return table.fit_correction()


# --------------------------------------------------------------------------- fastest and slowest architectures


def _ordered_extreme(name: str, options: Sequence[Any], slowest: bool = False) -> list[Any]:
    """Options of one field that can be the fastest (or the slowest), assuming documented monotonicity."""
    pick = max if slowest else min
    if name in ("kernel_size", "expansion_ratio", "se_ratio", "width_multiplier", "num_layers"):
        return [pick(options, key=float)]
    if name == "conv_op":
        kept = [o for o in options if o not in ("ds",) and not str(o).startswith("ir_e")]
        expanding = [o for o in options if str(o).startswith("ir_e")]
        if "ds" in options and not (slowest and expanding):  # ds is no slower than any inverted residual
            kept.append("ds")
        elif expanding:
            kept.append(pick(expanding, key=lambda o: float(str(o)[4:])))
        return kept
    return list(options)  # activation, skip: no order assumed


def _candidates(space: SearchSpace, stage_index: int, exhaustive: bool, slowest: bool = False) -> list[dict[str, Any]]:
    choices: dict[str, Sequence[Any]] = dict(space.stages[stage_index].choices)
    if not exhaustive:
        choices = {name: _ordered_extreme(name, options, slowest) for name, options in choices.items()}
    return list(_combinations(choices))


def fastest_latency(
    space: SearchSpace,
    table: LookupTable,
    *,
    measure_missing: bool = False,
    exhaustive: bool | None = None,
    progress: bool = False,
) -> tuple[float, Architecture]:
    """The fastest architecture of ``space`` by ``table``, and its predicted latency in ms.

    Dynamic programming over stages: the state is a stage's output width, the cost of a stage
    the sum of its blocks' entries given its input width; the head's entry depends on the last
    width. The correction ``a * sum + b`` (``a > 0``) keeps the order, so the minimum sum is the
    minimum prediction.

    ``exhaustive``: ``True`` considers every option of every decision (exact); ``False``
    considers per stage only the options that can be fastest if latency never decreases with
    kernel size, expansion ratio, SE ratio, width and layer count (and a depthwise-separable
    block is no slower than an inverted residual): all activations, skips and regular
    convolutions are still compared by their entries. ``None`` (default) is exhaustive when the
    table already holds every signature of the space, and pruned otherwise, so a lazily filled
    table measures only a handful of ops. ``measure_missing`` measures what the considered
    options lack; without it a missing entry raises :class:`MissingEntryError`.
    """
    return _extreme_latency(space, table, slowest=False, measure_missing=measure_missing, exhaustive=exhaustive, progress=progress)


def slowest_latency(
    space: SearchSpace,
    table: LookupTable,
    *,
    measure_missing: bool = False,
    exhaustive: bool | None = None,
    progress: bool = False,
) -> tuple[float, Architecture]:
    """The slowest architecture of ``space`` by ``table``, and its predicted latency in ms: as
    :func:`fastest_latency`, maximising (pruned to the largest kernel, expansion, SE ratio, width
    and layer count, and to inverted residuals over depthwise-separable blocks)."""
    return _extreme_latency(space, table, slowest=True, measure_missing=measure_missing, exhaustive=exhaustive, progress=progress)


def _extreme_latency(
    space: SearchSpace,
    table: LookupTable,
    *,
    slowest: bool,
    measure_missing: bool,
    exhaustive: bool | None,
    progress: bool,
    correction: Correction | None = None,
) -> tuple[float, Architecture]:
    stem, plans, head_size = _plans(space, table.input_size)
    if exhaustive is None:
        exhaustive = all(s in table for s in space_signatures(space, table.input_size))
    candidates = [_candidates(space, plan.index, exhaustive, slowest) for plan in plans]

    # Every signature the dynamic programme will read, over the widths that can reach each stage.
    needed: dict[OpSignature, str] = {stem: "stem"}
    widths_in: set[int] = {space.stem.out_channels}
    for plan, options in zip(plans, candidates, strict=True):
        widths_out: set[int] = set()
        for in_channels in sorted(widths_in):
            for values in options:
                blocks = _stage_blocks(space, plan, values, in_channels)
                for k, signature in enumerate(_block_signatures(blocks, in_channels, plan.in_size, space.se_gate)):
                    needed.setdefault(signature, f"stages[{plan.index}].blocks[{k}]")
                widths_out.add(blocks[-1].out_channels)
        widths_in = widths_out
    for width in sorted(widths_in):
        needed.setdefault(OpSignature.of_head(space.head, width, head_size), "head")
    absent = [s for s in needed if s not in table]
    if absent:
        if not measure_missing:
            from mobilenas.latency.signature import PlacedSignature

            raise MissingEntryError(table, [PlacedSignature(needed[s], s) for s in absent])
        table.ensure_signatures(absent, progress=progress, desc=f"measuring ops ({'slowest' if slowest else 'fastest'})")

    correction = correction or table.correction
    # The correction's SE term, folded into each SE op's cost in units of the sum (a > 0), so that
    # the programme minimises the corrected latency: a * (sum + se_ms / a * SE blocks) + b.
    se_extra = correction.se_ms / correction.a

    def cost(signature: OpSignature) -> float:
        entry = table.get(signature)
        assert entry is not None
        return entry.latency_ms + (se_extra if signature.se_channels > 0 else 0.0)

    # state: width -> (summed ms so far, chosen values per stage)
    states: dict[int, tuple[float, tuple[dict[str, Any], ...]]] = {space.stem.out_channels: (cost(stem), ())}
    for plan, options in zip(plans, candidates, strict=True):
        following: dict[int, tuple[float, tuple[dict[str, Any], ...]]] = {}
        for in_channels, (so_far, chosen) in states.items():
            for values in options:
                blocks = _stage_blocks(space, plan, values, in_channels)
                total = so_far + sum(cost(s) for s in _block_signatures(blocks, in_channels, plan.in_size, space.se_gate))
                width = blocks[-1].out_channels
                if width not in following or (total > following[width][0] if slowest else total < following[width][0]):
                    following[width] = (total, (*chosen, values))
        states = following
    best_sum, best_values = (max if slowest else min)(
        ((so_far + cost(OpSignature.of_head(space.head, width, head_size)), chosen) for width, (so_far, chosen) in states.items()),
        key=lambda item: item[0],
    )
    indices = []
    for decision in space.decisions:
        stage_name, field = decision.path.split(".", 1)
        indices.append(decision.index(best_values[int(stage_name[5:]) - 1][field]))
    arch = space.decode(indices)
    return correction.apply(best_sum), arch
