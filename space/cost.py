"""Parameters and multiply-accumulates computed from the value alone, without torch.

Conventions (the usual ones for the MobileNet family): parameters are trainable tensors
(convolution weights, batch-norm scale and shift, SE and linear weights with their biases;
batch-norm running statistics are buffers, not parameters). MACs count convolutions and linear
layers only (``out_elements * in_channels / groups * k * k``); batch norm, activations, pooling,
the SE scaling and residual additions are not counted. The tests check both against the built
module, and MobileNetV2's 300M MACs at 224x224.

:func:`count_macs` counts the network mobilenas builds, trains and times at a size (the one
``build_model(arch, input_size=N)`` builds, adapted to small inputs by
:func:`~mobilenas.space.arch.adapt_for_input_size`); :func:`architecture_cost` the value exactly as
given, fed an ``input_size`` input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mobilenas.space.arch import (
    Architecture,
    Block,
    adapt_for_input_size,
    as_architecture,
    check_input_size,
    conv_output_size,
)


@dataclass(frozen=True)
class Cost:
    """Trainable parameters and multiply-accumulates (one image)."""

    params: int
    macs: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.macs + other.macs)


ZERO = Cost(0, 0)


def conv_cost(in_channels: int, out_channels: int, kernel_size: int, groups: int, out_size: int, *, bias: bool = False, bn: bool = True) -> Cost:
    weights = out_channels * (in_channels // groups) * kernel_size * kernel_size
    params = weights + (out_channels if bias else 0) + (2 * out_channels if bn else 0)
    return Cost(params, weights * out_size * out_size)


def se_cost(channels: int, squeeze: int) -> Cost:
    reduce = conv_cost(channels, squeeze, 1, 1, 1, bias=True, bn=False)
    expand = conv_cost(squeeze, channels, 1, 1, 1, bias=True, bn=False)
    return reduce + expand


def block_cost(block: Block, in_channels: int, in_size: int) -> Cost:
    """Cost of one block given its input channels and (square) input size."""
    out_size = conv_output_size(in_size, block.stride)
    k = block.kernel_size
    if block.type == "conv":
        cost = conv_cost(in_channels, block.out_channels, k, 1, out_size)
        mid = block.out_channels
    else:
        cost = ZERO
        mid = in_channels
        if block.type == "ir":
            assert block.expanded_channels is not None
            mid = block.expanded_channels
            cost += conv_cost(in_channels, mid, 1, 1, in_size)
        cost += conv_cost(mid, mid, k, mid, out_size)
    if block.se_channels:
        cost += se_cost(mid, block.se_channels)
    if block.type != "conv":
        cost += conv_cost(mid, block.out_channels, 1, 1, out_size)
    return cost


def stem_cost(arch: Architecture, input_size: int) -> Cost:
    stem = arch.stem
    return conv_cost(stem.in_channels, stem.out_channels, stem.kernel_size, 1, conv_output_size(input_size, stem.stride))


def head_cost(arch: Architecture, feature_size: int) -> Cost:
    head = arch.head
    cost = conv_cost(arch.last_channels, head.conv_channels, 1, 1, feature_size)
    features = head.conv_channels
    if head.hidden_channels:
        cost += conv_cost(features, head.hidden_channels, 1, 1, 1, bias=True, bn=False)
        features = head.hidden_channels
    return cost + conv_cost(features, head.num_classes, 1, 1, 1, bias=True, bn=False)


def architecture_cost(arch: Architecture, input_size: int = 224) -> Cost:
    """Total parameters and MACs of ``arch`` exactly as given, fed a square ``input_size`` input
    (parameters do not depend on it). Below 224 px this may not be the network mobilenas builds
    at that size: see :func:`count_macs`, or apply ``adapt_for_input_size`` first."""
    input_size = check_input_size(input_size)
    size = conv_output_size(input_size, arch.stem.stride)
    total = stem_cost(arch, input_size)
    in_channels = arch.stem.out_channels
    for _, _, block in arch.blocks():
        total += block_cost(block, in_channels, size)
        size = conv_output_size(size, block.stride)
        in_channels = block.out_channels
    return total + head_cost(arch, size)


def count_params(arch: Architecture | str | Path) -> int:
    """Trainable parameters of ``arch`` (torch's ``sum(p.numel() for p in model.parameters())``).

    ``arch`` is an :class:`Architecture`, or a reference name, notation string or JSON path.
    """
    return architecture_cost(as_architecture(arch)).params


def count_macs(arch: Architecture | str | Path, input_size: int = 224) -> int:
    """Multiply-accumulates of one ``input_size`` x ``input_size`` image through the network
    ``build_model(arch, input_size=input_size)`` builds, which mobilenas trains and times at that
    size: where the features entering the head would be under 4x4 (below 97 px at the usual total
    stride of 32) the stem's stride, and then the first blocks', is 1 (``adapt_for_input_size``). ``arch`` as for :func:`count_params`; ``input_size`` an int >= 1
    (``TypeError`` / ``ValueError`` otherwise)."""
    adapted, _ = adapt_for_input_size(as_architecture(arch), check_input_size(input_size))
    return architecture_cost(adapted, input_size).macs
