"""The one builder: :class:`Architecture` -> ``torch.nn.Module``.

Nothing else in mobilenas constructs layers from specs. Module names are stable and meaningful,
because NetAdapt copies surviving filters between two builds by name:

``stem.conv/bn``; ``stages.{s}.{b}.expand.conv/bn`` (ir), ``.dw.conv/bn``, ``.se.reduce/expand``,
``.project.conv/bn`` (ir, ds), ``.conv.conv/bn`` (conv); ``head.conv.conv/bn``, ``head.hidden``,
``head.classifier``.

Inputs of another size than the 224x224 the references were designed for are handled by
:func:`adapt_for_input_size`, applied when ``build_model(arch, input_size=...)`` is given a size;
the changes it made are recorded on the module as ``model.adaptation``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

# adapt_for_input_size lives beside the shapes (torch-free, for the cost model); importable from here too
from mobilenas.space.arch import Architecture, Block, adapt_for_input_size, as_architecture

BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def activation_module(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


class ConvBNAct(nn.Module):
    """kxk conv (no bias, 'same' padding) -> BN -> optional activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int, activation: str | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = activation_module(activation) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 reduce (bias) -> ReLU -> 1x1 expand (bias) -> gate -> scale."""

    def __init__(self, channels: int, squeeze_channels: int, gate: str) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid() if gate == "hardsigmoid" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.gate(self.expand(self.act(self.reduce(scale))))
        return x * scale


class BlockModule(nn.Module):
    """One :class:`Block`; the submodules present depend on its type."""

    def __init__(self, block: Block, in_channels: int, se_gate: str) -> None:
        super().__init__()
        self.spec = block
        self.skip = block.skip
        k, s = block.kernel_size, block.stride
        self.expand: nn.Module | None = None
        self.dw: nn.Module | None = None
        self.project: nn.Module | None = None
        self.conv: nn.Module | None = None
        if block.type == "conv":
            self.conv = ConvBNAct(in_channels, block.out_channels, k, s, 1, block.activation)
            se_channels = block.out_channels
        else:
            mid = in_channels
            if block.type == "ir":
                assert block.expanded_channels is not None
                mid = block.expanded_channels
                self.expand = ConvBNAct(in_channels, mid, 1, 1, 1, block.activation)
            self.dw = ConvBNAct(mid, mid, k, s, mid, block.activation)
            se_channels = mid
        self.se = SqueezeExcite(se_channels, block.se_channels, se_gate) if block.se_channels else None
        if block.type != "conv":
            self.project = ConvBNAct(se_channels, block.out_channels, 1, 1, 1, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.conv is not None:
            y = self.conv(y)
        else:
            if self.expand is not None:
                y = self.expand(y)
            assert self.dw is not None
            y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        if self.project is not None:
            y = self.project(y)
        return x + y if self.skip else y


class HeadModule(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        head = arch.head
        self.conv = ConvBNAct(arch.last_channels, head.conv_channels, 1, 1, 1, head.activation)
        self.pool = nn.AdaptiveAvgPool2d(1)
        features = head.conv_channels
        self.hidden: nn.Linear | None = None
        self.hidden_act: nn.Module = nn.Identity()
        if head.hidden_channels:
            self.hidden = nn.Linear(features, head.hidden_channels)
            self.hidden_act = activation_module(head.activation)
            features = head.hidden_channels
        self.dropout = nn.Dropout(head.dropout)
        self.classifier = nn.Linear(features, head.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.conv(x)), 1)
        if self.hidden is not None:
            x = self.hidden_act(self.hidden(x))
        return self.classifier(self.dropout(x))


class Network(nn.Module):
    """The module built from an :class:`Architecture` (kept as ``self.arch``)."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        self.adaptation: tuple[str, ...] = ()
        stem = arch.stem
        self.stem = ConvBNAct(stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride, 1, stem.activation)
        in_channels = stem.out_channels
        stages = []
        for stage in arch.stages:
            modules = []
            for block in stage:
                modules.append(BlockModule(block, in_channels, arch.se_gate))
                in_channels = block.out_channels
            stages.append(nn.Sequential(*modules))
        self.stages = nn.Sequential(*stages)
        self.head = HeadModule(arch)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` (eval mode) with the batch norm of every :class:`ConvBNAct`
    folded into its convolution (weights scaled, a bias added), as ONNX Runtime does on export.

    Its outputs equal ``model.eval()``'s to float rounding, and it runs 1.3-1.7x faster on a CPU
    (batch norm in eval mode is a pass over every activation; ``benchmarks/train_eval_speed.md``).
    ``model`` is left as it was. Any module works; only :class:`ConvBNAct` layers, whose forward is
    known, are folded.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, ConvBNAct) and isinstance(module.bn, nn.BatchNorm2d) and module.bn.running_mean is not None:
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()  # type: ignore[assignment]
    return folded


def _init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet initialisation."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


def build_model(arch: Architecture | str | Path, *, input_size: int | None = None) -> Network:
    """Build the network (random weights, train mode); with ``input_size``, first apply
    :func:`adapt_for_input_size` (the changes are ``model.adaptation``). ``arch`` may also be a
    reference name, notation string or architecture JSON path (:func:`load_architecture`)."""
    arch = as_architecture(arch)
    adaptation: tuple[str, ...] = ()
    if input_size is not None:
        arch, adaptation = adapt_for_input_size(arch, input_size)
    model = Network(arch)
    model.adaptation = adaptation
    return model
