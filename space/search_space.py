"""Search spaces: immutable values made of ordered categorical decisions.

A :class:`SearchSpace` is separate from the architectures it describes. It is a fixed skeleton
(stem, head, and per stage a base width, base depth and stride, MobileNetV2-style) plus, per
stage, a set of fields that are either *decided* (several options) or *fixed* (one value). Each
decision has a stable, readable path (``stage3.kernel_size``; stages are numbered from 1 as in
the MnasNet paper) and ordered options. Within a stage every layer shares the stage's choices
(MnasNet's factorized hierarchical space); the stride applies to the first layer.

Stage fields:

====================  ======================================================================
``conv_op``           ``conv`` (regular), ``ds`` (depthwise-separable), ``ir_e{r}`` (MBConv
                      with expansion ratio r); exclusive with ``expansion_ratio``
``expansion_ratio``   MBConv expansion; 1 builds a ``ds`` block (no 1x1 expansion, as
                      torchvision and timm build MobileNetV3's expansion-1 blocks)
``kernel_size``       3, 5 or 7
``se_ratio``          0 (no SE) or a ratio; the squeeze width follows the space's ``se_rule``
``activation``        ``relu``, ``relu6`` or ``hswish``
``skip``              ``identity`` (residual wherever shapes allow) or ``none``
``width_multiplier``  output channels = make_divisible(base width * multiplier, 8)
``num_layers``        the stage's depth (options are absolute counts)
====================  ======================================================================

``se_rule``: ``input`` squeezes to ``max(1, int(block input * ratio))`` (MnasNet's official code);
``expanded`` to ``make_divisible(SE channels * ratio, 8)`` (MobileNetV3).

Because several index vectors can decode to the same network (a width multiplier that rounds to
the same channel count; ``skip`` on a stage whose only layer cannot have a residual), ``encode``
returns the first matching option; ``decode(encode(a)) == a`` always holds for an ``a`` in the
space.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import numbers
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mobilenas.errors import SpecError, did_you_mean
from mobilenas.space.arch import (
    ACTIVATIONS,
    KERNEL_SIZES,
    MAX_BLOCKS_PER_STAGE,
    MAX_CHANNELS,
    MAX_STAGES,
    MAX_WIDTH_MULTIPLIER,
    SE_GATES,
    Architecture,
    Block,
    Head,
    Stem,
    _build,
    _check_keys,
    _expect_mapping,
    as_architecture,
    as_whole,
    diff,
    make_divisible,
)

if TYPE_CHECKING:
    from mobilenas.space.nb201 import CellSpace

SPACE_SCHEMA_VERSION = 1
FIELDS = ("conv_op", "expansion_ratio", "kernel_size", "se_ratio", "activation", "skip", "width_multiplier", "num_layers")
SE_RULES = ("input", "expanded")
SKIP_OPTIONS = ("identity", "none")
# Stage fields that are whole numbers: an integral float (3.0, as JSON may write it) is read as the int
WHOLE_FIELDS = ("kernel_size", "num_layers")


@dataclass(frozen=True)
class Decision:
    """One categorical decision: a stable path and its ordered options (JSON scalars)."""

    path: str
    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        if not self.options:
            raise SpecError(self.path, "a decision needs at least one option")

    def index(self, value: Any) -> int:
        for i, option in enumerate(self.options):
            if _same_option(option, value):
                return i
        raise SpecError(self.path, f"{value!r} is not one of {', '.join(str(o) for o in self.options)}")


def _same_option(option: Any, value: Any) -> bool:
    numeric = (int, float)
    if isinstance(option, bool) or isinstance(value, bool):
        return type(option) is type(value) and option == value
    if isinstance(option, numeric) and isinstance(value, numeric):
        return math.isclose(option, value, rel_tol=1e-9, abs_tol=1e-12)
    return bool(option == value)


# Bounds far past any published mobile network (MobileNetV3-Large: 960 channels, 6x expansion, 1.0x
# width, 4 layers a stage): a space beyond them is a typo, which would otherwise surface minutes
# later as an out-of-memory error or a 25-minute latency measurement.
MAX_EXPANSION = 32
MAX_LAYERS = MAX_BLOCKS_PER_STAGE
MAX_BASE_CHANNELS = 16384


def _number(value: Any) -> bool:
    """A real, finite number (not a bool, not NaN or infinity: JSON's parser accepts both)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


_IR_OP = re.compile(r"ir_e([0-9]+(?:\.[0-9]+)?)")


def _parse_conv_op(path: str, value: Any) -> tuple[str, float | None]:
    if value in ("conv", "ds"):
        return str(value), None
    match = _IR_OP.fullmatch(value) if isinstance(value, str) else None
    if match:
        ratio = float(match.group(1))
        if ratio < 1:  # fewer expanded channels than input ones: "expanded_channels: must be >= 1" at sampling, or a squeeze
            raise SpecError(path, f"{value!r}: an MBConv's expansion ratio is at least 1 (ir_e1 keeps the input width); use ir_e1 or more, or ds")
        if ratio <= MAX_EXPANSION:
            return "ir", ratio
    raise SpecError(path, f"{value!r} is not a conv op; use conv, ds or ir_e<ratio> with a ratio up to {MAX_EXPANSION} (e.g. ir_e6)")


def _option_key(name: str, value: Any) -> Any:
    """What an option means, for the duplicate check: ``ir_e6`` and ``ir_e6.0`` are one conv op."""
    return _parse_conv_op(name, value) if name == "conv_op" else value


def _validate_field(path: str, name: str, value: Any) -> None:
    if name == "conv_op":
        _parse_conv_op(path, value)
    elif name == "expansion_ratio":
        if not _number(value) or not 1 <= value <= MAX_EXPANSION:
            raise SpecError(path, f"an expansion ratio must be a number from 1 to {MAX_EXPANSION}, got {value!r}")
    elif name == "kernel_size":
        if isinstance(value, bool) or not isinstance(value, int) or value not in KERNEL_SIZES:
            raise SpecError(path, f"{value!r} is not one of {', '.join(map(str, KERNEL_SIZES))}")
    elif name == "se_ratio":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise SpecError(path, f"an SE ratio must be a number in [0, 1], got {value!r}")
    elif name == "activation":
        if value not in ACTIVATIONS:
            raise SpecError(path, f"{value!r} is not one of {', '.join(ACTIVATIONS)}")
    elif name == "skip":
        if value not in SKIP_OPTIONS:
            raise SpecError(path, f"{value!r} is not one of {', '.join(SKIP_OPTIONS)}")
    elif name == "width_multiplier":
        if not _number(value) or not 0 < value <= MAX_WIDTH_MULTIPLIER:
            raise SpecError(path, f"a width multiplier must be a positive number up to {MAX_WIDTH_MULTIPLIER}, got {value!r}")
    elif name == "num_layers":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LAYERS:
            raise SpecError(path, f"a layer count must be a whole number from 1 to {MAX_LAYERS}, got {value!r}")


@dataclass(frozen=True)
class StageSpec:
    """One stage of the skeleton: base width, base depth, first-layer stride, and its fields.

    ``choices`` maps a field to its options (a decision); ``fixed`` maps a field to one value.
    Every field in :data:`FIELDS` except one of ``conv_op``/``expansion_ratio`` must be given,
    exactly once, in one of the two.
    """

    base_channels: int
    base_layers: int
    stride: int
    choices: tuple[tuple[str, tuple[Any, ...]], ...]
    fixed: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        def whole(name: str, value: Any) -> Any:  # 3.0 (JSON) -> 3 where the field is a whole number
            return as_whole(value) if name in WHOLE_FIELDS else value

        choices = tuple((k, tuple(v)) for k, v in (self.choices.items() if isinstance(self.choices, Mapping) else self.choices))
        fixed = self.fixed.items() if isinstance(self.fixed, Mapping) else self.fixed
        written = dict(choices)  # as given, for the messages (3.0 listed twice, not 3)
        object.__setattr__(self, "choices", tuple((k, tuple(whole(k, o) for o in v)) for k, v in choices))
        object.__setattr__(self, "fixed", tuple((k, whole(k, v)) for k, v in fixed))
        for name, most in (("base_channels", MAX_BASE_CHANNELS), ("base_layers", MAX_LAYERS)):
            value = as_whole(getattr(self, name))
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
                raise SpecError(name, f"expected a whole number from 1 to {most}, got {value!r}")
            object.__setattr__(self, name, value)
        stride = as_whole(self.stride)
        if isinstance(stride, bool) or not isinstance(stride, int) or stride not in (1, 2):  # true == 1 in Python
            raise SpecError("stride", f"expected 1 or 2, got {self.stride!r}")
        object.__setattr__(self, "stride", stride)
        given = [k for k, _ in self.choices] + [k for k, _ in self.fixed]
        for name in given:
            if name not in FIELDS:
                raise SpecError(name, f"unknown stage field (known: {', '.join(FIELDS)})")
            if given.count(name) > 1:
                raise SpecError(name, "given twice (as a choice and fixed, or twice)")
        required = [f for f in FIELDS if f not in ("conv_op", "expansion_ratio")]
        for name in required:
            if name not in given:
                raise SpecError(name, "missing: every stage must decide or fix it")
        if ("conv_op" in given) == ("expansion_ratio" in given):
            raise SpecError("conv_op", "give exactly one of conv_op and expansion_ratio")
        for name, options in self.choices:
            if not options:
                raise SpecError(name, "a decision needs at least one option")
            for i, value in enumerate(options):
                _validate_field(f"{name}[{i}]", name, value)
                key = _option_key(name, value)
                if any(_same_option(_option_key(name, earlier), key) for earlier in options[:i]):  # it would be drawn twice as often
                    raise SpecError(f"{name}[{i}]", f"{written[name][i]!r} is listed twice; give each option once")
        for name, value in self.fixed:
            _validate_field(name, name, value)

    @classmethod
    def of(cls, base_channels: int, base_layers: int, stride: int, choices: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any] | None = None) -> StageSpec:
        """Build from mappings (``{"kernel_size": (3, 5)}``) rather than tuples of pairs."""
        return cls(base_channels, base_layers, stride, tuple((k, tuple(v)) for k, v in choices.items()), tuple((fixed or {}).items()))

    def fields(self) -> dict[str, tuple[Any, ...]]:
        """Every field with its options (fixed fields have one), in canonical order."""
        merged = {k: v for k, v in self.choices} | {k: (v,) for k, v in self.fixed}
        return {name: merged[name] for name in FIELDS if name in merged}


@dataclass(frozen=True)
class SearchSpace:
    """A named space: skeleton (stem, stages, head, SE gate and rule) plus decisions."""

    name: str
    stem: Stem
    stages: tuple[StageSpec, ...]
    head: Head
    se_gate: str = "sigmoid"
    se_rule: str = "input"
    divisor: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if not self.stages:
            raise SpecError("stages", "a space needs at least one stage")
        if self.se_gate not in SE_GATES:
            raise SpecError("se_gate", f"{self.se_gate!r} is not one of {', '.join(SE_GATES)}")
        if self.se_rule not in SE_RULES:
            raise SpecError("se_rule", f"{self.se_rule!r} is not one of {', '.join(SE_RULES)}")
        object.__setattr__(self, "divisor", as_whole(self.divisor))
        if isinstance(self.divisor, bool) or not isinstance(self.divisor, int) or self.divisor < 1:
            raise SpecError("divisor", f"channel counts are rounded to a multiple of it: expected a whole number >= 1, got {self.divisor!r}")
        if len(self.stages) > MAX_STAGES:
            raise SpecError("stages", f"at most {MAX_STAGES} stages, got {len(self.stages)}")
        self._check_widest()
        decisions = []
        for i, stage in enumerate(self.stages, start=1):
            for name, options in stage.choices:
                decisions.append(Decision(f"stage{i}.{name}", options))
        # Decisions are ordered stage by stage, fields in canonical order within a stage.
        order = {f"stage{i}.{name}": (i, FIELDS.index(name)) for i, s in enumerate(self.stages, 1) for name, _ in s.choices}
        decisions.sort(key=lambda d: order[d.path])
        object.__setattr__(self, "_decisions", tuple(decisions))

    def _check_widest(self) -> None:
        """Refuse a space whose widest choices give a layer more than MAX_CHANNELS channels.

        Each value is checked on its own already; this catches products (a wide base times a wide
        multiplier times a large expansion) before a search samples the network that holds them.
        """
        widest_in = self.stem.out_channels
        for i, stage in enumerate(self.stages):
            fields = stage.fields()
            out = make_divisible(stage.base_channels * max(fields["width_multiplier"]), self.divisor)
            if "conv_op" in fields:
                ratios = [_parse_conv_op("conv_op", op)[1] or 1.0 for op in fields["conv_op"]]
            else:
                ratios = [float(r) for r in fields["expansion_ratio"]]
            expanded = int(max(widest_in, out) * max(ratios) + 0.5)
            widest = max(out, expanded)
            if widest > MAX_CHANNELS:
                raise SpecError(
                    f"stages[{i}]",
                    f"its widest choices give a layer {widest} channels (at most {MAX_CHANNELS}): "
                    "lower base_channels, the largest width_multiplier or the largest expansion",
                )
            widest_in = out

    # ----------------------------------------------------------------- decisions

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """The decisions, stage by stage (fields in :data:`FIELDS` order within a stage); derived
        from the stages' ``choices``, which are what to edit."""
        return self._decisions  # type: ignore[attr-defined]

    def size(self) -> int:
        """Number of distinct index vectors (the product of option counts)."""
        return math.prod(len(d.options) for d in self.decisions)

    def paths(self) -> list[str]:
        """Every decision's path (``stage3.kernel_size``), in decision order."""
        return [d.path for d in self.decisions]

    def check_indices(self, indices: Sequence[int]) -> tuple[int, ...]:
        """``indices`` as a tuple of ints, one in range per decision.

        Integers of any kind (numpy's too) and whole floats (``1.0``) are taken; a fraction
        (``1.7``) raises :class:`SpecError` naming the decision, a non-number or a non-sequence
        ``TypeError``, a wrong length or an index out of range :class:`SpecError`.
        """
        indices = check_index_vector(indices, self.decisions)
        if len(indices) != len(self.decisions):
            raise SpecError("indices", f"expected {len(self.decisions)} indices for space {self.name!r}, got {len(indices)}")
        for decision, index in zip(self.decisions, indices, strict=True):
            if not 0 <= index < len(decision.options):
                raise SpecError(decision.path, f"index {index} out of range 0..{len(decision.options) - 1}")
        return indices

    def values(self, indices: Sequence[int]) -> dict[str, Any]:
        """Decision path -> chosen option."""
        indices = self.check_indices(indices)
        return {d.path: d.options[i] for d, i in zip(self.decisions, indices, strict=True)}

    # ----------------------------------------------------------------- decoding

    def stage_blocks(self, stage_index: int, values: Mapping[str, Any], in_channels: int) -> tuple[Block, ...]:
        """The blocks of stage ``stage_index`` (0-based) for the given field values.

        ``values`` maps field names (``kernel_size``...) to values; fields the stage fixes may be
        left out. Exposed so that the latency table can enumerate a stage's blocks on its own.
        """
        stage = self.stages[stage_index]
        v = {k: val for k, val in stage.fixed} | dict(values)
        out = make_divisible(stage.base_channels * v["width_multiplier"], self.divisor)
        if "conv_op" in v:
            block_type, ratio = _parse_conv_op(f"stage{stage_index + 1}.conv_op", v["conv_op"])
        else:
            ratio = float(v["expansion_ratio"])
            block_type, ratio = ("ds", None) if ratio == 1 else ("ir", ratio)
        blocks = []
        for layer in range(int(v["num_layers"])):
            stride = stage.stride if layer == 0 else 1
            expanded = int(in_channels * ratio + 0.5) if block_type == "ir" and ratio is not None else None
            se = 0
            if v["se_ratio"]:
                if self.se_rule == "input":
                    se = max(1, int(in_channels * v["se_ratio"]))
                else:
                    base = expanded if expanded is not None else (in_channels if block_type == "ds" else out)
                    se = make_divisible(base * v["se_ratio"], self.divisor)
            skip = v["skip"] == "identity" and stride == 1 and in_channels == out
            blocks.append(Block(block_type, int(v["kernel_size"]), stride, out, str(v["activation"]), expanded_channels=expanded, se_channels=se, skip=skip))
            in_channels = out
        return tuple(blocks)

    def decode(self, indices: Sequence[int]) -> Architecture:
        """The architecture chosen by one index per decision."""
        chosen = self.values(indices)
        stages = []
        in_channels = self.stem.out_channels
        for i, stage in enumerate(self.stages):
            values = {name: chosen[f"stage{i + 1}.{name}"] for name, _ in stage.choices}
            blocks = self.stage_blocks(i, values, in_channels)
            stages.append(blocks)
            in_channels = blocks[-1].out_channels
        return Architecture(stem=self.stem, stages=tuple(stages), head=self.head, se_gate=self.se_gate)

    def sample_indices(self, rng: np.random.Generator) -> tuple[int, ...]:
        """One uniformly random option index per decision, drawn from ``rng``."""
        check_rng(rng)
        return tuple(int(rng.integers(len(d.options))) for d in self.decisions)

    def sample(self, rng: np.random.Generator) -> Architecture:
        """A uniformly random architecture (uniform over index vectors); ``rng`` is a
        ``numpy.random.Generator`` (``numpy.random.default_rng(seed)``)."""
        return self.decode(self.sample_indices(rng))

    # ----------------------------------------------------------------- encoding

    def _infer_stage(self, s: int, blocks: tuple[Block, ...], in_channels: int) -> dict[str, Any]:
        """Best guess of a stage's field values from its blocks; checked by decoding afterwards."""
        first = blocks[0]
        values: dict[str, Any] = {}
        for name, options in self.stages[s].choices:
            path = f"stages[{s}].blocks[0]"
            if name == "num_layers":
                values[name] = len(blocks)
            elif name == "kernel_size":
                values[name] = first.kernel_size
            elif name == "activation":
                values[name] = first.activation
            elif name == "skip":
                could = [b for i, b in enumerate(blocks) if b.stride == 1 and (i > 0 or in_channels == b.out_channels)]
                values[name] = "none" if could and not any(b.skip for b in could) else "identity"
            elif name == "se_ratio":
                nonzero = [o for o in options if o]
                values[name] = (nonzero[0] if nonzero else 0) if first.se_channels else 0
                if first.se_channels and not nonzero:
                    raise SpecError(f"{path}.se_channels", f"SE is not an option of stage{s + 1}.se_ratio ({', '.join(map(str, options))})")
            elif name == "width_multiplier":
                for option in options:
                    if make_divisible(self.stages[s].base_channels * option, self.divisor) == first.out_channels:
                        values[name] = option
                        break
                else:
                    widths = sorted({make_divisible(self.stages[s].base_channels * o, self.divisor) for o in options})
                    raise SpecError(f"{path}.out_channels", f"{first.out_channels} is not a width of stage{s + 1} ({', '.join(map(str, widths))})")
            elif name == "conv_op":
                if first.type == "ir":
                    assert first.expanded_channels is not None
                    ratio = first.expanded_channels / in_channels
                    match = [o for o in options if str(o).startswith("ir_e") and math.isclose(float(str(o)[4:]), ratio, rel_tol=1e-3)]
                    values[name] = match[0] if match else f"ir_e{ratio:g}"
                else:
                    values[name] = first.type
            elif name == "expansion_ratio":
                if first.type == "ds":
                    values[name] = 1
                elif first.type == "ir":
                    assert first.expanded_channels is not None
                    ratio = first.expanded_channels / in_channels
                    match = [o for o in options if math.isclose(float(o), ratio, rel_tol=1e-3)]
                    values[name] = match[0] if match else ratio
                else:
                    raise SpecError(f"{path}.type", f"a regular conv is not an option of stage{s + 1} (inverted residuals only)")
        return values

    def encode(self, arch: Architecture | str | Path) -> tuple[int, ...]:
        """One index per decision such that ``decode(encode(arch)) == arch``.

        Raises ``SpecError`` naming the first path at which ``arch`` leaves the space. ``arch``
        may also be a reference name, notation string or JSON path (``load_architecture``).
        """
        arch = as_architecture(arch)
        if arch.stem != self.stem:
            hint = ""
            if arch.stem == dataclasses.replace(self.stem, in_channels=arch.stem.in_channels):
                hint = (f"; only the input channels differ ({arch.stem.in_channels} vs {self.stem.in_channels}):"
                        f" use space.for_data(num_classes, in_channels={arch.stem.in_channels})")
            raise SpecError("stem", f"differs from the stem of space {self.name!r} ({arch.stem} vs {self.stem}){hint}")
        if arch.head != self.head:
            hint = ""
            if arch.head == dataclasses.replace(self.head, num_classes=arch.head.num_classes):
                hint = (f"; only the class count differs ({arch.head.num_classes} vs {self.head.num_classes}):"
                        f" pass num_classes={arch.head.num_classes} to get_space (or use space.for_data({arch.head.num_classes}, in_channels))")
            raise SpecError("head", f"differs from the head of space {self.name!r} ({arch.head} vs {self.head}){hint}")
        if arch.se_gate != self.se_gate:
            raise SpecError("se_gate", f"space {self.name!r} uses {self.se_gate!r}, got {arch.se_gate!r}")
        if len(arch.stages) != len(self.stages):
            raise SpecError("stages", f"space {self.name!r} has {len(self.stages)} stages, got {len(arch.stages)}")
        chosen: dict[str, Any] = {}
        in_channels = self.stem.out_channels
        for s, blocks in enumerate(arch.stages):
            for name, value in self._infer_stage(s, blocks, in_channels).items():
                chosen[f"stage{s + 1}.{name}"] = value
            in_channels = blocks[-1].out_channels
        indices = []
        for decision in self.decisions:
            try:
                indices.append(decision.index(chosen[decision.path]))
            except SpecError:
                stage = int(decision.path.split(".")[0][5:]) - 1
                raise SpecError(
                    f"stages[{stage}]", f"{decision.path} would be {chosen[decision.path]!r}, not one of {', '.join(map(str, decision.options))}"
                ) from None
        decoded = self.decode(indices)
        if decoded != arch:
            where = diff(decoded, arch)
            raise SpecError(where[0] if where else "", f"not in space {self.name!r}: the nearest member differs here")
        return tuple(indices)

    def contains(self, arch: Architecture | str | Path) -> bool:
        """Whether some index vector decodes to ``arch`` (head and stem included: a 10-class
        network is in the space only ``for_data(10, ...)``); :meth:`validate` says where it is not.
        A non-architecture ``arch`` raises ``TypeError`` rather than answering False."""
        arch = as_architecture(arch)
        try:
            self.encode(arch)
        except SpecError:
            return False
        return True

    def validate(self, arch: Architecture | str | Path) -> None:
        """Raise ``SpecError`` (naming the path) unless ``arch`` is in the space."""
        self.encode(arch)

    def neighbours(self, arch: Architecture | str | Path) -> list[Architecture]:
        """Distinct architectures that differ from ``arch`` in exactly one decision."""
        arch = as_architecture(arch)
        indices = self.encode(arch)
        seen = {arch.fingerprint()}
        result = []
        for d, decision in enumerate(self.decisions):
            for option in range(len(decision.options)):
                if option == indices[d]:
                    continue
                candidate = self.decode((*indices[:d], option, *indices[d + 1:]))
                key = candidate.fingerprint()
                if key not in seen:
                    seen.add(key)
                    result.append(candidate)
        return result

    def neighbour_indices(self, indices: Sequence[int]) -> Iterator[tuple[int, ...]]:
        """Index vectors that differ from ``indices`` in exactly one position."""
        indices = self.check_indices(indices)
        for d, decision in enumerate(self.decisions):
            for option in range(len(decision.options)):
                if option != indices[d]:
                    yield (*indices[:d], option, *indices[d + 1:])

    def stage_input_channels(self, stage_index: int) -> tuple[int, ...]:
        """Every input channel count stage ``stage_index`` (0-based) can see."""
        if stage_index == 0:
            return (self.stem.out_channels,)
        previous = self.stages[stage_index - 1]
        return tuple(sorted({make_divisible(previous.base_channels * m, self.divisor) for m in previous.fields()["width_multiplier"]}))

    def extremes(self) -> tuple[Architecture, Architecture]:
        """The architectures made of every decision's first option and of every last option."""
        return (self.decode(tuple(0 for _ in self.decisions)), self.decode(tuple(len(d.options) - 1 for d in self.decisions)))

    # ----------------------------------------------------------------- serialisation

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, which :meth:`from_dict` reads back (``mobilenas show --space NAME --json``
        writes it under ``space``)."""
        return {
            "schema_version": SPACE_SCHEMA_VERSION,
            "name": self.name,
            "stem": dataclasses.asdict(self.stem),
            "head": dataclasses.asdict(self.head),
            "se_gate": self.se_gate,
            "se_rule": self.se_rule,
            "divisor": self.divisor,
            "stages": [
                {
                    "base_channels": st.base_channels,
                    "base_layers": st.base_layers,
                    "stride": st.stride,
                    "choices": {k: list(v) for k, v in st.choices},
                    "fixed": dict(st.fixed),
                }
                for st in self.stages
            ],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def fingerprint(self) -> str:
        """A stable 16-hex-digit identity of the space (sha256 of its canonical JSON, name included)."""
        import hashlib

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]

    def layout_fingerprint(self) -> str:
        """The fingerprint of the space's networks but for the classifier's class count and the
        stem's input channels (a 10-class and a 1000-class search, or one on gray and one on RGB
        images, share a latency table: the head and the stem are one more entry each)."""
        return dataclasses.replace(
            self, head=dataclasses.replace(self.head, num_classes=1000), stem=dataclasses.replace(self.stem, in_channels=3)
        ).fingerprint()

    def for_data(self, num_classes: int, in_channels: int) -> SearchSpace:
        """This space for a data set's class count and image channels (its networks as they will be deployed)."""
        space = self
        if space.head.num_classes != num_classes:
            space = dataclasses.replace(space, head=dataclasses.replace(space.head, num_classes=num_classes))
        if space.stem.in_channels != in_channels:
            space = dataclasses.replace(space, stem=dataclasses.replace(space.stem, in_channels=in_channels))
        return space

    def is_builtin(self) -> bool:
        """Whether this is the built-in space of its name (``SPACES[name]``) unchanged, but for
        the class count and input channels (:meth:`for_data`). False for an edited copy that kept
        the name (``mobilenas show --space mnasnet --json > my.json``, then edited) and for any
        other name."""
        factory = SPACES.get(self.name)
        return factory is not None and factory().layout_fingerprint() == self.layout_fingerprint()

    def describe_name(self) -> str:
        """The name, and ``(edited copy 3f2a9c1e)`` (the start of its :meth:`layout_fingerprint`)
        for a space named like a built-in one that :meth:`is_builtin` says is not it; run
        summaries (``nas-results show``) name the space the same way."""
        if self.name in SPACES and not self.is_builtin():
            return f"{self.name} (edited copy {self.layout_fingerprint()[:8]})"
        return self.name

    @classmethod
    def from_dict(cls, data: Any) -> SearchSpace:
        """Parse :meth:`to_dict`'s form, rejecting unknown keys; a :class:`SpecError` names the path."""
        _expect_mapping("", data)
        _check_keys("", data, required=("schema_version", "name", "stem", "head", "stages"), optional=("se_gate", "se_rule", "divisor"))
        if data["schema_version"] != SPACE_SCHEMA_VERSION:
            raise SpecError("schema_version", f"this mobilenas reads space schema version {SPACE_SCHEMA_VERSION}, got {data['schema_version']!r}")
        if not isinstance(data["name"], str) or not data["name"]:
            raise SpecError("name", "expected a non-empty string")
        if not isinstance(data["stages"], list):
            raise SpecError("stages", "expected a list of stages")
        stages = []
        for i, raw in enumerate(data["stages"]):
            path = f"stages[{i}]"
            _expect_mapping(path, raw)
            _check_keys(path, raw, required=("base_channels", "base_layers", "stride", "choices"), optional=("fixed",))
            for key in ("choices", "fixed"):
                if key in raw:
                    _expect_mapping(f"{path}.{key}", raw[key])
            for key, options in raw["choices"].items():
                if not isinstance(options, list):
                    raise SpecError(f"{path}.choices.{key}", "expected a list of options")
            try:
                stages.append(StageSpec.of(raw["base_channels"], raw["base_layers"], raw["stride"], raw["choices"], raw.get("fixed", {})))
            except SpecError as error:
                raise error.under(path) from None
        kwargs = {k: data[k] for k in ("se_gate", "se_rule", "divisor") if k in data}
        return cls(name=data["name"], stem=_build(Stem, "stem", data["stem"]), head=_build(Head, "head", data["head"]), stages=tuple(stages), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> SearchSpace:
        """A space's JSON; also the whole ``mobilenas show --space NAME --json`` output, or a search
        run's ``manifest.json`` (each holds the space under ``space``), read as the space they hold.

        The ``decisions`` and ``size`` beside ``space`` in ``show``'s output are derived from it:
        a file whose ``decisions`` or ``size`` were edited (rather than ``space.stages[i].choices``)
        is refused, not silently read as the unedited space (:func:`check_derived`).
        """
        data, wrapper = _unwrap(_parse_json(text))
        space = cls.from_dict(data)
        check_derived(space, wrapper)
        return space


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError("", f"not valid JSON ({error.msg} at line {error.lineno})") from None


def _unwrap(data: Any) -> tuple[Any, dict[str, Any] | None]:
    """The space in ``data`` and what holds it: ``show --space --json`` output or a manifest.json
    hold it under ``space``; a bare space's JSON is itself (no wrapper)."""
    if isinstance(data, dict) and "schema_version" not in data and isinstance(data.get("space"), dict) and "schema_version" in data["space"]:
        return data["space"], data
    return data, None


DERIVED_NOTE = "decisions and size are derived from space, for reading: to change the space, edit space itself"


def shown_json(space: SearchSpace | CellSpace) -> dict[str, Any]:
    """``mobilenas show --space NAME --json``'s payload: the ``space`` with, derived from it, its
    ``size``, ``decisions`` and ``space_fingerprint`` (of the space they were derived from)."""
    return {
        "space": space.to_dict(),
        "note": DERIVED_NOTE,
        "space_fingerprint": space.fingerprint(),
        "size": space.size(),
        "decisions": [{"path": d.path, "options": list(d.options)} for d in space.decisions],
    }


def check_derived(space: SearchSpace | CellSpace, wrapper: Mapping[str, Any] | None) -> None:
    """Refuse :func:`shown_json` output whose ``decisions`` or ``size`` were edited.

    They are derived from ``space``, and a user who edits them (the most visible lists of the
    file) would otherwise search the unedited space without a word. Lists that are only stale
    are fine: ``space`` was edited, as the README says, after they were written (the
    ``space_fingerprint`` beside them is not the space's; in a file without one, they are the
    built-in space's of that name).
    """
    if not wrapper:
        return
    problem = _derived_disagreement(space, wrapper)
    if problem is None:
        return
    written_for = wrapper.get("space_fingerprint")
    if written_for is not None:
        if written_for != space.fingerprint():
            return  # the space was edited since: the lists are stale, the space counts
    else:
        from mobilenas.space.nb201 import CellSpace

        builtin = SPACES[space.name]() if space.name in SPACES else CellSpace() if space.name == NB201 else None
        if builtin is not None and isinstance(builtin, type(space)) and _derived_disagreement(builtin, wrapper) is None:
            return  # the built-in's lists, as show wrote them, under an edited space
    raise problem


def _derived_disagreement(space: SearchSpace | CellSpace, wrapper: Mapping[str, Any]) -> SpecError | None:
    """Where ``wrapper``'s ``decisions`` or ``size`` differ from ``space``'s, as the error to raise."""
    lists = "space.stages[i].choices" if isinstance(space, SearchSpace) else "space.operations"
    fix = f"decisions and size are derived from \"space\"; edit the option lists in {lists} (or delete decisions and size)"
    if "decisions" in wrapper:
        listed = wrapper["decisions"]
        if not isinstance(listed, list) or not all(isinstance(d, dict) and "path" in d and "options" in d for d in listed):
            return SpecError("decisions", f"expected a list of {{path, options}}; {fix}")
        for d, (entry, decision) in enumerate(itertools.zip_longest(listed, space.decisions)):
            if entry is None or decision is None:
                return SpecError("decisions", f"lists {len(listed)} decisions, but \"space\" gives {len(space.decisions)}; {fix}")
            options = entry["options"]
            same = (entry["path"] == decision.path and isinstance(options, list) and len(options) == len(decision.options)
                    and all(_same_option(a, b) for a, b in zip(options, decision.options, strict=True)))
            if not same:
                given = ", ".join(map(str, options)) if isinstance(options, list) else repr(options)
                return SpecError(
                    f"decisions[{d}]",
                    f"{entry['path']}: {given} differs from what \"space\" gives ({decision.path}: {', '.join(map(str, decision.options))}); {fix}",
                )
    if "size" in wrapper and wrapper["size"] != space.size():
        return SpecError("size", f"{wrapper['size']!r}, but \"space\" gives {space.size()} index vectors; {fix}")
    return None


def check_rng(rng: Any) -> None:
    """``TypeError`` unless ``rng`` is a ``numpy.random.Generator``."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator (numpy.random.default_rng(seed)), got {type(rng).__name__}")


def check_index_vector(indices: Any, decisions: Sequence[Decision]) -> tuple[int, ...]:
    """``indices`` as ints (see :meth:`SearchSpace.check_indices`); length and range are the caller's."""
    if isinstance(indices, str | bytes | Mapping) or not isinstance(indices, Iterable):
        raise TypeError(f"indices: expected a sequence of option indices (one int per decision), got {type(indices).__name__}")
    result = []
    for d, index in enumerate(indices):
        path = decisions[d].path if d < len(decisions) else f"indices[{d}]"
        if isinstance(index, bool | np.bool_):
            raise TypeError(f"indices[{d}] ({path}): expected an int, got {index!r}")
        value = as_whole(index)
        if not isinstance(value, int):
            if isinstance(value, numbers.Real):
                raise SpecError(path, f"index {index!r} is not a whole number")
            try:
                value = index.__index__()  # an integer tensor
            except (AttributeError, TypeError):
                raise TypeError(f"indices[{d}] ({path}): expected an int, got {type(index).__name__} {index!r}") from None
        result.append(value)
    return tuple(result)


# --------------------------------------------------------------------------- the built-in spaces

# MobileNetV2's skeleton (Sandler et al. 2018, Table 2): (channels c, repeats n, stride s).
MOBILENETV2_SKELETON = ((16, 1, 1), (24, 2, 2), (32, 3, 2), (64, 4, 2), (96, 3, 1), (160, 3, 2), (320, 1, 1))


def _layer_options(base: int) -> tuple[int, ...]:
    # MnasNet: layers -1/0/+1 of the MobileNetV2 value; a stage keeps at least one layer.
    return tuple(n for n in (base - 1, base, base + 1) if n >= 1)


def mnasnet_space(num_classes: int = 1000, activation: str = "relu") -> SearchSpace:
    """MnasNet's factorized hierarchical space (Tan et al. 2019, Section 4.1 and Figure 4).

    Per stage: conv op (regular conv, depthwise-separable, MBConv expansion 3 or 6), kernel 3/5,
    SE ratio 0/0.25, skip identity/none, output filters x0.75/1.0/1.25 of MobileNetV2's, layers
    -1/0/+1 of MobileNetV2's. Stem 32 and head 1280 as MnasNet; ReLU. With
    ``activation='relu6'`` the space contains MobileNetV2 1.0 itself.
    """
    stages = tuple(
        StageSpec.of(
            c,
            n,
            s,
            choices={
                "conv_op": ("conv", "ds", "ir_e3", "ir_e6"),
                "kernel_size": (3, 5),
                "se_ratio": (0.0, 0.25),
                "skip": ("identity", "none"),
                "width_multiplier": (0.75, 1.0, 1.25),
                "num_layers": _layer_options(n),
            },
            fixed={"activation": activation},
        )
        for c, n, s in MOBILENETV2_SKELETON
    )
    return SearchSpace(
        name="mnasnet" if activation == "relu" else f"mnasnet-{activation}",
        stem=Stem(32, activation),
        stages=stages,
        head=Head(1280, num_classes, activation, dropout=0.2),
        se_gate="sigmoid",
        se_rule="input",
    )


def mobilenetv3_space(num_classes: int = 1000) -> SearchSpace:
    """A MobileNetV3-style space on MobileNetV2's 7-stage skeleton.

    Per stage: kernel 3/5/7, expansion 1/3/4/6, SE on/off (ratio 0.25 of the expanded width,
    rounded to 8, hard-sigmoid gate), activation ReLU/h-swish, width x0.75/1.0/1.25, layers
    -1/0/+1. Stem 16 h-swish and MobileNetV3-Large's efficient head (1x1 conv 960, pooled
    linear 1280, h-swish), as Howard et al. 2019, Section 5.3.
    """
    stages = tuple(
        StageSpec.of(
            c,
            n,
            s,
            choices={
                "expansion_ratio": (1, 3, 4, 6),
                "kernel_size": (3, 5, 7),
                "se_ratio": (0.0, 0.25),
                "activation": ("relu", "hswish"),
                "width_multiplier": (0.75, 1.0, 1.25),
                "num_layers": _layer_options(n),
            },
            fixed={"skip": "identity"},
        )
        for c, n, s in MOBILENETV2_SKELETON
    )
    return SearchSpace(
        name="mobilenetv3",
        stem=Stem(16, "hswish"),
        stages=stages,
        head=Head(960, num_classes, "hswish", hidden_channels=1280, dropout=0.2),
        se_gate="hardsigmoid",
        se_rule="expanded",
    )


def _mnasnet_relu6_space(num_classes: int = 1000) -> SearchSpace:
    return mnasnet_space(num_classes, activation="relu6")


SPACES = {"mnasnet": mnasnet_space, "mobilenetv3": mobilenetv3_space, "mnasnet-relu6": _mnasnet_relu6_space}


NB201 = "nb201"
_NB201_ABOUT = ("the NAS-Bench-201 cell space of tabular searches (nas-search --space nb201 --benchmark CSV), "
                "whose latencies come from the benchmark's column")


def _space_names() -> tuple[str, ...]:
    return (*SPACES, NB201)


def get_space(name: str | Path, num_classes: int = 1000) -> SearchSpace:
    """A network search space: a built-in one by name (``mnasnet``, ``mobilenetv3``,
    ``mnasnet-relu6``), or a space JSON file (also ``mobilenas show --space NAME --json``
    output), a search run's folder or its ``manifest.json``, for ``num_classes`` classes.

    Raises ``ValueError`` with a one-line message naming the file or the name (``nb201``, the
    cell space, has no networks: see :func:`load_space`).
    """
    space = load_space(name, num_classes)
    if not isinstance(space, SearchSpace):
        where = f"{name}: holds" if str(name) != NB201 else "nb201 is"
        raise ValueError(f"{where} {_NB201_ABOUT}, not a network space; network spaces here: {', '.join(SPACES)}")
    return space


def load_space(name: str | Path, num_classes: int | None = None) -> SearchSpace | CellSpace:
    """Any search space :func:`get_space` reads, and the NAS-Bench-201 cell space too: ``nb201``,
    its ``mobilenas show --space nb201 --json`` output, or a tabular search run's folder.

    ``num_classes`` sets a network space's class count (a built-in one's default is 1000, a
    file's its own); it does nothing for a cell space.
    """
    if not isinstance(name, str | Path):
        raise TypeError(f"space: expected a space name ({', '.join(_space_names())}) or a path, got {type(name).__name__}")
    text = str(name)
    if text in SPACES:
        return SPACES[text](num_classes=1000 if num_classes is None else num_classes)
    if text == NB201:
        from mobilenas.space.nb201 import nb201_space

        return nb201_space()
    path = Path(text).expanduser()
    if path.is_dir() and (path / "manifest.json").is_file():  # a search run's folder: the space it searched
        path = path / "manifest.json"
    if path.suffix.lower() == ".json" and path.is_file():
        space = _read_space_file(path)
        if isinstance(space, SearchSpace):
            space = space.for_data(space.head.num_classes if num_classes is None else num_classes, space.stem.in_channels)
        return space
    if path.is_dir():
        raise ValueError(f"search space {text} is a folder; give a space .json file in it, a search run's folder, or one of {', '.join(SPACES)}")
    if path.suffix.lower() == ".json" or "/" in text or "\\" in text:  # meant as a file
        what = "no such file" if not path.exists() else "a space file's name ends in .json"
        raise ValueError(f"search space {text}: {what}; give a space .json file (mobilenas show --space NAME --json > my_space.json writes one), or one of {', '.join(SPACES)}")
    names = ", ".join(_space_names())
    raise ValueError(f"unknown search space {text!r}{did_you_mean(text, _space_names())}; choose one of {names} or give a space .json file")


def space_from_dict(data: Any) -> SearchSpace | CellSpace:
    """A space's :meth:`SearchSpace.to_dict` form, or NAS-Bench-201's cell space's (``"kind":
    "cell"``), as the space it is (a run's manifest records either)."""
    from mobilenas.space.nb201 import CELL_KIND, CellSpace

    if isinstance(data, dict) and data.get("kind") == CELL_KIND:
        return CellSpace.from_dict(data)
    return SearchSpace.from_dict(data)


def _read_space_file(path: Path) -> SearchSpace | CellSpace:
    """The space a .json file holds (a space, ``show --space --json`` output, a run's manifest)."""
    from mobilenas.space.io import read_text_file

    text = read_text_file(path, "a space JSON file")
    try:
        data = _parse_json(text)
        inner, wrapper = _unwrap(data)
        space = space_from_dict(inner)  # the nb201 cell space too (a tabular run's manifest)
        check_derived(space, wrapper)
        return space
    except SpecError as error:  # name the file: "my_space.json: missing key 'schema_version'"
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and "architecture" in data:  # a best.json or refined.json
            raise SpecError(str(path), "holds an architecture (a search or NetAdapt result), not a search space; give its run's folder or manifest.json for the space it searched") from None
        if isinstance(data, dict) and data.get("kind") == "netadapt":
            raise SpecError(str(path), "is a NetAdapt run's manifest, which holds no search space; give a search run's folder or manifest.json") from None
        raise SpecError(f"{path}: {error.path}" if error.path else str(path), error.message) from None


def all_index_vectors(space: SearchSpace) -> Iterator[tuple[int, ...]]:
    """Every index vector (only sensible for tiny spaces)."""
    return itertools.product(*(range(len(d.options)) for d in space.decisions))
