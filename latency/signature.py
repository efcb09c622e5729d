"""Operation signatures: what a lookup-table entry is keyed by, and the models that time them.

An :class:`OpSignature` is everything about one operation that changes its latency and nothing
else: the op (``stem``, a block type ``ir``/``ds``/``conv``, or ``head``), its input height,
width and channels, output channels, expanded channels, kernel, stride, squeeze-and-excitation
channels and gate, activation and identity skip (and for the head its hidden and class counts).
Two layers with the same signature are the same entry wherever they sit in whichever network;
layer names never appear.

:func:`architecture_signatures` lists an architecture's signatures in network order (stem, blocks,
head), with the path of each. The models that time a signature are built here too, from the one
builder's modules (see :func:`signature_module`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mobilenas.errors import SpecError
from mobilenas.space.arch import Architecture, Block, Head, Stem, block_contexts, conv_output_size
from mobilenas.space.builder import BlockModule, ConvBNAct, HeadModule, adapt_for_input_size

OPS = ("stem", "ir", "ds", "conv", "head")
_ACT = {"relu": "re", "relu6": "r6", "hswish": "hs"}
_GATE = {"sigmoid": "sig", "hardsigmoid": "hsig"}


@dataclass(frozen=True)
class OpSignature:
    """One operation's latency-relevant shape and configuration (see the module docstring).

    Unused fields are 0, ``""`` or ``False``: ``expanded_channels`` is set for ``ir`` only,
    ``se_gate`` only when ``se_channels`` > 0, ``hidden_channels``/``num_classes`` for the head
    only (whose ``out_channels`` is its 1x1 convolution's width).
    """

    op: str
    in_height: int
    in_width: int
    in_channels: int
    out_channels: int
    kernel_size: int = 1
    stride: int = 1
    expanded_channels: int = 0
    se_channels: int = 0
    se_gate: str = ""
    activation: str = ""
    skip: bool = False
    hidden_channels: int = 0
    num_classes: int = 0

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise SpecError("op", f"{self.op!r} is not one of {', '.join(OPS)}")
        for name in ("in_height", "in_width", "in_channels", "out_channels", "kernel_size", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(name, f"expected a whole number >= 1, got {value!r}")
        for name in ("expanded_channels", "se_channels", "hidden_channels", "num_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SpecError(name, f"expected a whole number >= 0, got {value!r}")
        if self.activation and self.activation not in _ACT:
            raise SpecError("activation", f"{self.activation!r} is not one of {', '.join(_ACT)}")
        if self.se_gate and self.se_gate not in _GATE:
            raise SpecError("se_gate", f"{self.se_gate!r} is not one of {', '.join(_GATE)}")
        if self.se_channels and not self.se_gate:
            raise SpecError("se_gate", "an op with SE channels needs its gate (sigmoid or hardsigmoid)")

    @property
    def key(self) -> str:
        """A readable, unique text form: ``ir_h56w56_i24_x144_o24_k3_s1_se40hsig_nre_skip``."""
        size = f"h{self.in_height}w{self.in_width}"
        if self.op == "stem":
            return f"stem_{size}_i{self.in_channels}_o{self.out_channels}_k{self.kernel_size}_s{self.stride}_n{_ACT[self.activation]}"
        if self.op == "head":
            hidden = f"_fc{self.hidden_channels}" if self.hidden_channels else ""
            return f"head_{size}_i{self.in_channels}_c{self.out_channels}{hidden}_o{self.num_classes}_n{_ACT[self.activation]}"
        parts = [self.op, size, f"i{self.in_channels}"]
        if self.expanded_channels:
            parts.append(f"x{self.expanded_channels}")
        parts += [f"o{self.out_channels}", f"k{self.kernel_size}", f"s{self.stride}"]
        if self.se_channels:
            parts.append(f"se{self.se_channels}{_GATE[self.se_gate]}")
        parts.append(f"n{_ACT[self.activation]}")
        if self.skip:
            parts.append("skip")
        return "_".join(parts)

    def __str__(self) -> str:
        return self.key

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "signature") -> OpSignature:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{where}: unknown keys {', '.join(unknown)}")
        try:
            return cls(**data)
        except (TypeError, SpecError) as error:
            raise ValueError(f"{where}: {error}") from None

    # ------------------------------------------------------------------ constructors

    @classmethod
    def of_stem(cls, stem: Stem, input_size: int) -> OpSignature:
        return cls("stem", input_size, input_size, stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride, activation=stem.activation)

    @classmethod
    def of_block(cls, block: Block, in_channels: int, in_size: int, se_gate: str) -> OpSignature:
        return cls(
            block.type,
            in_size,
            in_size,
            in_channels,
            block.out_channels,
            block.kernel_size,
            block.stride,
            expanded_channels=block.expanded_channels or 0,
            se_channels=block.se_channels,
            se_gate=se_gate if block.se_channels else "",
            activation=block.activation,
            skip=block.skip,
        )

    @classmethod
    def of_head(cls, head: Head, in_channels: int, in_size: int) -> OpSignature:
        return cls(
            "head",
            in_size,
            in_size,
            in_channels,
            head.conv_channels,
            activation=head.activation,
            hidden_channels=head.hidden_channels or 0,
            num_classes=head.num_classes,
        )

    # ------------------------------------------------------------------ views

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """``(1, channels, height, width)``: the batch-1 input this op sees."""
        return (1, self.in_channels, self.in_height, self.in_width)

    def block(self) -> Block:
        """The :class:`Block` this signature describes (block ops only)."""
        if self.op in ("stem", "head"):
            raise ValueError(f"{self.key} is not a block")
        return Block(
            self.op,
            self.kernel_size,
            self.stride,
            self.out_channels,
            self.activation,
            expanded_channels=self.expanded_channels or None,
            se_channels=self.se_channels,
            skip=self.skip,
        )


@dataclass(frozen=True)
class PlacedSignature:
    """A signature with where it sits in an architecture (``stem``, ``stages[2].blocks[0]``, ``head``)."""

    path: str
    signature: OpSignature


def architecture_signatures(arch: Architecture, input_size: int) -> tuple[PlacedSignature, ...]:
    """Stem, every block, head: the signatures of ``arch`` at a square ``input_size`` input.

    The architecture is first adapted to the input size exactly as the builder adapts it
    (:func:`mobilenas.space.builder.adapt_for_input_size`), so the signatures describe the
    network that is measured end to end.
    """
    arch, _ = adapt_for_input_size(arch, input_size)
    placed = [PlacedSignature("stem", OpSignature.of_stem(arch.stem, input_size))]
    contexts = block_contexts(arch, input_size)
    for context in contexts:
        placed.append(PlacedSignature(context.path, OpSignature.of_block(context.block, context.in_channels, context.in_size, arch.se_gate)))
    final = contexts[-1].out_size if contexts else conv_output_size(input_size, arch.stem.stride)
    placed.append(PlacedSignature("head", OpSignature.of_head(arch.head, arch.last_channels, final)))
    return tuple(placed)


# --------------------------------------------------------------------------- measured models


class GlobalPool(nn.Module):
    """Mean over height and width, keeping them (``N x C x 1 x 1``): a cheap graph end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def feeder(channels: int) -> nn.Module:
    """A depthwise 3x3 convolution (+ folded batch norm) that hands the op its input.

    Inside a network an op reads a tensor the previous layer has just written, in the runtime's
    internal layout (ONNX Runtime converts convolutions to a blocked ``NCHWc`` layout and
    reorders only at the graph's edges). Timing the op behind this cheap feeder, minus the
    feeder alone, reproduces that instead of charging the op for layout conversions at a graph
    input that a network does not have.
    """
    return ConvBNAct(channels, channels, 3, 1, channels, None)


def op_module(signature: OpSignature) -> nn.Module:
    """The op itself, built by the builder's own modules."""
    if signature.op == "stem":
        return ConvBNAct(signature.in_channels, signature.out_channels, signature.kernel_size, signature.stride, 1, signature.activation)
    if signature.op == "head":
        # HeadModule reads its input width from the architecture's last block; a one-block
        # stand-in architecture carries the width and the head.
        head = Head(signature.out_channels, signature.num_classes, signature.activation, hidden_channels=signature.hidden_channels or None, dropout=0.0)
        stand_in = Architecture(
            stem=Stem(signature.in_channels, "relu"),
            stages=((Block("ds", 3, 1, signature.in_channels, "relu"),),),
            head=head,
        )
        return HeadModule(stand_in)
    return BlockModule(signature.block(), signature.in_channels, signature.se_gate or "sigmoid")


def signature_module(signature: OpSignature, method: str) -> nn.Module:
    """The model timed for ``signature``.

    ``isolated``: the op alone. ``in-context``: :func:`feeder` -> op -> :class:`GlobalPool`
    (the stem, which reads the network's input, is timed as stem -> pool; the head ends in its
    own classifier); :func:`baseline_module` is subtracted.
    """
    op = op_module(signature)
    if method == "isolated":
        return op.eval()
    if signature.op == "stem":
        return nn.Sequential(op, GlobalPool()).eval()
    if signature.op == "head":
        return nn.Sequential(feeder(signature.in_channels), op).eval()
    return nn.Sequential(feeder(signature.in_channels), op, GlobalPool()).eval()


def baseline_signature(signature: OpSignature) -> tuple[int, int, int] | None:
    """``(channels, height, width)`` of the baseline subtracted in the in-context method, or ``None``."""
    if signature.op == "stem":
        return None
    return (signature.in_channels, signature.in_height, signature.in_width)


def baseline_module(channels: int) -> nn.Module:
    """:func:`feeder` -> :class:`GlobalPool`: what the in-context method subtracts."""
    return nn.Sequential(feeder(channels), GlobalPool()).eval()
