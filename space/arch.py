"""The :class:`Architecture` value: what a network is.

An architecture is a frozen tree of plain values: a :class:`Stem`, stages of explicit
:class:`Block` specs, and a :class:`Head`. Every channel count is explicit (expanded, output,
squeeze-and-excitation), so NetAdapt can set any width and the latency table can key on exact
shapes. Blocks never store their input channels: the one cross-block rule (block ``i`` reads what
block ``i-1`` wrote) is applied by :func:`block_contexts` and by the builder.

Values validate on construction, round-trip through JSON (``schema_version``, unknown keys
rejected) and through the block notation (:mod:`mobilenas.space.notation`), and have a stable
:meth:`Architecture.fingerprint`.

Block types (torchvision / timm semantics):

``ir``    inverted residual (MBConv): 1x1 expand -> BN -> act -> kxk depthwise -> BN -> act
          -> [SE] -> 1x1 project -> BN [-> + input]. Always has the expand convolution.
``ds``    depthwise-separable (MBConv without expansion): kxk depthwise -> BN -> act -> [SE]
          -> 1x1 project -> BN [-> + input]. MobileNetV2's t=1 block, MnasNet's SepConv.
``conv``  regular convolution: kxk conv -> BN -> act -> [SE] [-> + input].

SE is reduce 1x1 conv (bias) -> ReLU -> expand 1x1 conv (bias) -> gate (``se_gate``: sigmoid for
MnasNet, hard-sigmoid for MobileNetV3), acting on the depthwise output (``ir``: the expanded
channels; ``ds``: the input channels; ``conv``: the output channels).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilenas.errors import SpecError

SCHEMA_VERSION = 1

BLOCK_TYPES = ("ir", "ds", "conv")
KERNEL_SIZES = (3, 5, 7)
STRIDES = (1, 2)
ACTIVATIONS = ("relu", "relu6", "hswish")
SE_GATES = ("sigmoid", "hardsigmoid")

# Bounds far past any published mobile network (EfficientNet-B7, among the widest: 3840 expanded
# channels, 2560 in its head, 7 stages of at most 10 blocks): a value beyond them is a typo, which
# would otherwise surface as an out-of-memory error (a 10^12-channel stem asks for 108 TB) or an
# hours-long latency measurement.
MAX_CHANNELS = 65536
MAX_CLASSES = 1 << 20
MAX_STAGES = 64
MAX_BLOCKS_PER_STAGE = 64
MAX_WIDTH_MULTIPLIER = 16

# Inputs of another size than the 224x224 the references were designed for: the feature map
# entering the head is kept at least this wide (see :func:`adapt_for_input_size`).
MIN_FINAL_FEATURE_SIZE = 4


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never more than 10% below it.

    The rounding rule of the MobileNet family (torchvision ``_make_divisible``).
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_output_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded convolution of odd kernel (``ceil(size / stride)``)."""
    return (size - 1) // stride + 1


# --------------------------------------------------------------------------- field checks


def _describe(options: tuple[Any, ...]) -> str:
    return ", ".join(str(o) for o in options)


def as_whole(value: Any) -> Any:
    """``value`` as an ``int`` where it is a whole number written otherwise (``3.0`` in JSON, a
    numpy integer); anything else as it was, for the caller's check to refuse. Bools stay bools:
    ``true`` is not a number here."""
    if type(value) is int or isinstance(value, bool):  # the usual case first: every Architecture checks many
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _whole(path: str, value: Any, *, minimum: int = 1, maximum: int = MAX_CHANNELS) -> int:
    """``value`` as an ``int`` (``3.0`` -> 3), or a :class:`SpecError` naming ``path``."""
    value = as_whole(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"expected a whole number, got {value!r}")
    if value < minimum:
        raise SpecError(path, f"must be >= {minimum}, got {value}")
    if value > maximum:
        raise SpecError(path, f"must be at most {maximum}, got {value}")
    return value


def _whole_choice(path: str, value: Any, options: tuple[int, ...]) -> int:
    """``value`` as one of the whole numbers ``options`` (``3.0`` -> 3; ``true`` and 3.5 refused)."""
    value = as_whole(value)
    if isinstance(value, float):  # 3.5 (3.0 is 3 by now)
        raise SpecError(path, f"expected a whole number (one of {_describe(options)}), got {value!r}")
    _check_choice(path, value, options)  # true, "3", 4
    return int(value)


def _normalise(instance: Any, name: str, value: Any) -> None:
    object.__setattr__(instance, name, value)


def _check_choice(path: str, value: Any, options: tuple[Any, ...]) -> None:
    if isinstance(value, bool) and not any(isinstance(o, bool) for o in options):
        raise SpecError(path, f"{value!r} is not one of {_describe(options)}")
    if value not in options:
        raise SpecError(path, f"{value!r} is not one of {_describe(options)}" if isinstance(value, str) else f"{value} is not one of {_describe(options)}")


def _check_bool(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(path, f"expected true or false, got {value!r}")


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Stem:
    """The first convolution: kxk conv (stride 2 at 224) -> BN -> activation."""

    out_channels: int
    activation: str
    kernel_size: int = 3
    stride: int = 2
    in_channels: int = 3

    def __post_init__(self) -> None:
        # Whole numbers written as floats (3.0, from JSON) are stored as ints, so that equality,
        # the fingerprint, the notation and the builder all see one value.
        _normalise(self, "out_channels", _whole("out_channels", self.out_channels))
        _check_choice("activation", self.activation, ACTIVATIONS)
        _normalise(self, "kernel_size", _whole_choice("kernel_size", self.kernel_size, KERNEL_SIZES))
        _normalise(self, "stride", _whole_choice("stride", self.stride, STRIDES))
        _normalise(self, "in_channels", _whole("in_channels", self.in_channels))


@dataclass(frozen=True)
class Block:
    """One block; see the module docstring for what each ``type`` computes.

    ``expanded_channels`` is required for ``ir`` and must be ``None`` otherwise. ``se_channels`` is
    the squeeze width (0 = no SE). ``skip`` is an identity residual; it is only allowed where
    shapes allow (stride 1 and input channels == output channels), which the architecture checks.
    """

    type: str
    kernel_size: int
    stride: int
    out_channels: int
    activation: str
    expanded_channels: int | None = None
    se_channels: int = 0
    skip: bool = False

    def __post_init__(self) -> None:
        _check_choice("type", self.type, BLOCK_TYPES)
        _normalise(self, "kernel_size", _whole_choice("kernel_size", self.kernel_size, KERNEL_SIZES))
        _normalise(self, "stride", _whole_choice("stride", self.stride, STRIDES))
        _normalise(self, "out_channels", _whole("out_channels", self.out_channels))
        _check_choice("activation", self.activation, ACTIVATIONS)
        if self.type == "ir":
            if self.expanded_channels is None:
                raise SpecError("expanded_channels", "an 'ir' block needs its expanded channel count")
            _normalise(self, "expanded_channels", _whole("expanded_channels", self.expanded_channels))
        elif self.expanded_channels is not None:
            raise SpecError(
                "expanded_channels",
                f"only 'ir' blocks expand; a {self.type!r} block must leave it null (got {self.expanded_channels!r})",
            )
        _normalise(self, "se_channels", _whole("se_channels", self.se_channels, minimum=0))
        _check_bool("skip", self.skip)

    def se_input_channels(self, in_channels: int) -> int:
        """Channels the SE module acts on, given the block's input channels."""
        if self.type == "ir":
            assert self.expanded_channels is not None
            return self.expanded_channels
        return in_channels if self.type == "ds" else self.out_channels


@dataclass(frozen=True)
class Head:
    """1x1 conv -> BN -> act -> global pool [-> linear ``hidden_channels`` -> act] -> dropout -> classifier."""

    conv_channels: int
    num_classes: int
    activation: str
    hidden_channels: int | None = None
    dropout: float = 0.2

    def __post_init__(self) -> None:
        _normalise(self, "conv_channels", _whole("conv_channels", self.conv_channels))
        _normalise(self, "num_classes", _whole("num_classes", self.num_classes, maximum=MAX_CLASSES))
        _check_choice("activation", self.activation, ACTIVATIONS)
        if self.hidden_channels is not None:
            _normalise(self, "hidden_channels", _whole("hidden_channels", self.hidden_channels))
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, numbers.Real):
            raise SpecError("dropout", f"expected a number in [0, 1), got {self.dropout!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise SpecError("dropout", f"must be in [0, 1), got {self.dropout}")
        _normalise(self, "dropout", float(self.dropout))  # 0 and 0.0: one value, one fingerprint


@dataclass(frozen=True)
class BlockContext:
    """A block placed in its network: where it is and what shapes it sees."""

    stage: int
    index: int
    block: Block
    in_channels: int
    in_size: int
    out_size: int

    @property
    def path(self) -> str:
        return f"stages[{self.stage}].blocks[{self.index}]"


@dataclass(frozen=True)
class Architecture:
    """A whole network: stem, stages of blocks, head, and the SE gate used by every SE module."""

    stem: Stem
    stages: tuple[tuple[Block, ...], ...]
    head: Head
    se_gate: str = "sigmoid"

    def __post_init__(self) -> None:
        if not isinstance(self.stem, Stem):
            raise SpecError("stem", f"expected a Stem, got {type(self.stem).__name__}")
        if not isinstance(self.head, Head):
            raise SpecError("head", f"expected a Head, got {type(self.head).__name__}")
        # Accept lists for convenience but store tuples so the value stays hashable and immutable.
        stages = tuple(tuple(stage) for stage in self.stages)
        object.__setattr__(self, "stages", stages)
        _check_choice("se_gate", self.se_gate, SE_GATES)
        if not stages:
            raise SpecError("stages", "an architecture needs at least one stage")
        if len(stages) > MAX_STAGES:
            raise SpecError("stages", f"at most {MAX_STAGES} stages, got {len(stages)}")
        in_channels = self.stem.out_channels
        for s, stage in enumerate(stages):
            if not stage:
                raise SpecError(f"stages[{s}].blocks", "a stage needs at least one block")
            if len(stage) > MAX_BLOCKS_PER_STAGE:
                raise SpecError(f"stages[{s}].blocks", f"at most {MAX_BLOCKS_PER_STAGE} blocks a stage, got {len(stage)}")
            for b, block in enumerate(stage):
                path = f"stages[{s}].blocks[{b}]"
                if not isinstance(block, Block):
                    raise SpecError(path, f"expected a Block, got {type(block).__name__}")
                if block.skip and (block.stride != 1 or in_channels != block.out_channels):
                    raise SpecError(
                        f"{path}.skip",
                        "an identity skip needs stride 1 and equal input and output channels "
                        f"(got stride {block.stride}, {in_channels} -> {block.out_channels} channels); set skip to false",
                    )
                in_channels = block.out_channels

    # ----------------------------------------------------------------- navigation

    def blocks(self) -> Iterator[tuple[int, int, Block]]:
        """Yield ``(stage_index, block_index, block)`` in network order."""
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                yield s, b, block

    @property
    def num_blocks(self) -> int:
        """Blocks in all stages (stem and head not counted)."""
        return sum(len(stage) for stage in self.stages)

    @property
    def last_channels(self) -> int:
        """Channels entering the head."""
        return self.stages[-1][-1].out_channels

    def block_in_channels(self, stage: int, index: int) -> int:
        """Channels entering block ``stages[stage].blocks[index]`` (what the block before it writes)."""
        previous = self.stem.out_channels
        for s, b, block in self.blocks():
            if (s, b) == (stage, index):
                return previous
            previous = block.out_channels
        raise IndexError(f"no block stages[{stage}].blocks[{index}]")

    # ----------------------------------------------------------------- transformation

    def replace_block(self, stage: int, index: int, block: Block) -> Architecture:
        """A new architecture with block ``stages[stage].blocks[index]`` replaced (validated as a whole).

        ``stage`` and ``index`` count from 0 (negative ones from the end, as Python's); raises
        ``TypeError`` for a non-integer position or a ``block`` that is not a :class:`Block`, and
        :class:`SpecError` (a ``ValueError``) for a position the architecture does not have.
        """
        for name, value in (("stage", stage), ("index", index)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"replace_block: {name} must be an int, got {value!r}")
        if not isinstance(block, Block):
            raise TypeError(f"replace_block: block must be a Block, got {type(block).__name__}")
        if not -len(self.stages) <= stage < len(self.stages):
            raise SpecError(f"stages[{stage}]", f"no such stage: the architecture has {len(self.stages)} (0..{len(self.stages) - 1})")
        blocks = self.stages[stage]
        if not -len(blocks) <= index < len(blocks):
            raise SpecError(f"stages[{stage}].blocks[{index}]", f"no such block: stage {stage} has {len(blocks)} (0..{len(blocks) - 1})")
        stages = [list(s) for s in self.stages]
        stages[stage][index] = block
        return dataclasses.replace(self, stages=tuple(tuple(s) for s in stages))

    def with_num_classes(self, num_classes: int) -> Architecture:
        """The same network with a classifier for ``num_classes`` classes."""
        return dataclasses.replace(self, head=dataclasses.replace(self.head, num_classes=num_classes))

    def with_in_channels(self, in_channels: int) -> Architecture:
        """The same network for images of ``in_channels`` channels (1: gray, 3: RGB)."""
        return dataclasses.replace(self, stem=dataclasses.replace(self.stem, in_channels=in_channels))

    # ----------------------------------------------------------------- serialisation

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``schema_version``, ``stem``, ``stages`` of ``blocks``, ``head``, ``se_gate``)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "stem": dataclasses.asdict(self.stem),
            "stages": [{"blocks": [dataclasses.asdict(b) for b in stage]} for stage in self.stages],
            "head": dataclasses.asdict(self.head),
            "se_gate": self.se_gate,
        }

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text; :meth:`from_json` reads it back to an equal value."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> Architecture:
        """Parse the JSON form, rejecting unknown keys and naming the path of any error."""
        _expect_mapping("", data)
        _check_keys("", data, required=("schema_version", "stem", "stages", "head"), optional=("se_gate",))
        version = data["schema_version"]
        if version != SCHEMA_VERSION:
            raise SpecError("schema_version", f"this mobilenas reads schema version {SCHEMA_VERSION}, got {version!r}")
        stem = _build(Stem, "stem", data["stem"])
        head = _build(Head, "head", data["head"])
        raw_stages = data["stages"]
        if not isinstance(raw_stages, list):
            raise SpecError("stages", f"expected a list of stages, got {type(raw_stages).__name__}")
        stages = []
        for s, raw_stage in enumerate(raw_stages):
            _expect_mapping(f"stages[{s}]", raw_stage)
            _check_keys(f"stages[{s}]", raw_stage, required=("blocks",), optional=())
            raw_blocks = raw_stage["blocks"]
            if not isinstance(raw_blocks, list):
                raise SpecError(f"stages[{s}].blocks", f"expected a list of blocks, got {type(raw_blocks).__name__}")
            stages.append(tuple(_build(Block, f"stages[{s}].blocks[{b}]", raw) for b, raw in enumerate(raw_blocks)))
        kwargs: dict[str, Any] = {"stem": stem, "stages": tuple(stages), "head": head}
        if "se_gate" in data:
            kwargs["se_gate"] = data["se_gate"]
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        """Parse :meth:`to_json`'s text; a :class:`SpecError` names the path of any error."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError("", f"not valid JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
        return cls.from_dict(data)

    def fingerprint(self) -> str:
        """A stable 16-hex-digit identity of the network (sha256 of the canonical JSON)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_notation(self) -> str:
        """The one-line block notation (``stem_k3_s2_c16_nhs | ... | head_...``), which
        :meth:`from_notation` reads back to an equal value; see :mod:`mobilenas.space.notation`."""
        from mobilenas.space.notation import to_notation

        return to_notation(self)

    @classmethod
    def from_notation(cls, text: str) -> Architecture:
        """Parse the block notation written by :meth:`to_notation`; a :class:`SpecError` names the part that is wrong."""
        from mobilenas.space.notation import from_notation

        return from_notation(text)


def _expect_mapping(path: str, data: Any) -> None:
    if not isinstance(data, Mapping):
        raise SpecError(path, f"expected an object, got {type(data).__name__}")


def _check_keys(path: str, data: Mapping[str, Any], *, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    for key in required:
        if key not in data:
            raise SpecError(path, f"missing key {key!r}")
    allowed = required + optional
    for key in data:
        if key not in allowed:
            raise SpecError(path, f"unknown key {key!r} (allowed: {', '.join(allowed)})")


def _build(kind: type, path: str, data: Any) -> Any:
    _expect_mapping(path, data)
    fields = dataclasses.fields(kind)
    required = tuple(f.name for f in fields if f.default is dataclasses.MISSING)
    optional = tuple(f.name for f in fields if f.default is not dataclasses.MISSING)
    _check_keys(path, data, required=required, optional=optional)
    try:
        return kind(**data)
    except SpecError as error:
        raise error.under(path) from None


def as_architecture(value: Architecture | str | Path, argument: str = "arch") -> Architecture:
    """``value`` if it is an :class:`Architecture`; a reference name (``mobilenetv2@0.75``), a
    notation string or an architecture JSON path resolved by
    :func:`mobilenas.space.io.load_architecture`; anything else a ``TypeError`` naming ``argument``."""
    if isinstance(value, Architecture):
        return value
    if isinstance(value, str | Path):
        from mobilenas.space.io import load_architecture

        return load_architecture(value)
    raise TypeError(
        f"{argument}: expected an Architecture (or a reference name such as 'mobilenetv2', a notation string "
        f"or an architecture JSON path), got {type(value).__name__}"
    )


# --------------------------------------------------------------------------- shapes


def check_input_size(input_size: Any) -> int:
    """``input_size`` (pixels, square) as an int >= 1: ``TypeError`` for a non-integer, ``ValueError`` below 1."""
    if isinstance(input_size, bool) or not isinstance(input_size, numbers.Integral):
        raise TypeError(f"input_size: expected a whole number of pixels (an int), got {input_size!r}")
    if input_size < 1:
        raise ValueError(f"input_size: must be >= 1 pixel, got {input_size}")
    return int(input_size)


def adapt_for_input_size(arch: Architecture, input_size: int) -> tuple[Architecture, tuple[str, ...]]:
    """Adapt a network designed for 224x224 to a smaller input.

    The rule: while the feature map entering the head would be smaller than 4x4, the earliest
    remaining stride-2 layer (the stem first, then blocks in order) gets stride 1. Channels and
    kernels are untouched, so parameters (and trained weights) carry over unchanged. At 224 nothing
    changes; at 32 (CIFAR) the stem and the first stride-2 block lose their stride (output 4x4),
    the usual CIFAR adaptation of MobileNetV2. Returns the adapted value and the paths changed
    (``stem.stride``, ``stages[1].blocks[0].stride``). ``build_model(arch, input_size=...)``
    applies it, and so do :func:`mobilenas.space.count_macs` and ``mobilenas show --input-size``.
    """
    input_size = check_input_size(input_size)
    changed: list[str] = []
    total = arch.stem.stride * math.prod(b.stride for _, _, b in arch.blocks())
    stem = arch.stem
    stages = [list(stage) for stage in arch.stages]
    while total > 1 and math.ceil(input_size / total) < MIN_FINAL_FEATURE_SIZE:
        if stem.stride == 2:
            stem = dataclasses.replace(stem, stride=1)
            changed.append("stem.stride")
        else:
            s, b = next((s, b) for s, stage in enumerate(stages) for b, block in enumerate(stage) if block.stride == 2)
            stages[s][b] = dataclasses.replace(stages[s][b], stride=1)
            changed.append(f"stages[{s}].blocks[{b}].stride")
        total //= 2
    if not changed:
        return arch, ()
    adapted = dataclasses.replace(arch, stem=stem, stages=tuple(tuple(stage) for stage in stages))
    return adapted, tuple(changed)


def block_contexts(arch: Architecture, input_size: int) -> tuple[BlockContext, ...]:
    """Every block with its input channels and spatial sizes for a square ``input_size`` input
    (the architecture as given: see :func:`adapt_for_input_size` for the one built at that size)."""
    input_size = check_input_size(input_size)
    size = conv_output_size(input_size, arch.stem.stride)
    in_channels = arch.stem.out_channels
    contexts = []
    for s, b, block in arch.blocks():
        out_size = conv_output_size(size, block.stride)
        contexts.append(BlockContext(s, b, block, in_channels, size, out_size))
        in_channels, size = block.out_channels, out_size
    return tuple(contexts)


def final_feature_size(arch: Architecture, input_size: int) -> int:
    """Spatial size entering the head."""
    return block_contexts(arch, input_size)[-1].out_size


def diff(a: Architecture, b: Architecture) -> list[str]:
    """Paths (``stages[2].blocks[0].kernel_size``) at which two architectures differ."""
    paths: list[str] = []

    def walk(prefix: str, x: Any, y: Any) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                walk(f"{prefix}.{key}" if prefix else key, x.get(key), y.get(key))
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                paths.append(f"{prefix} (length {len(x)} vs {len(y)})")
            for i, (u, v) in enumerate(zip(x, y, strict=False)):
                walk(f"{prefix}[{i}]", u, v)
        elif x != y:
            paths.append(prefix)

    walk("", a.to_dict(), b.to_dict())
    return paths
