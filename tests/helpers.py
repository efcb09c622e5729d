"""Small shared pieces for the tests: tiny architectures and spaces."""

from __future__ import annotations

import torch

from mobilenas.space import Architecture, Block, Head, SearchSpace, StageSpec, Stem


def tiny_arch(num_classes: int = 10, se_gate: str = "sigmoid") -> Architecture:
    """A 3-block network that touches every block type, SE and both skip states."""
    return Architecture(
        stem=Stem(8, "relu", stride=2),
        stages=(
            (Block("ds", 3, 1, 8, "relu", skip=True),),
            (Block("ir", 5, 2, 16, "hswish", expanded_channels=24, se_channels=8),
             Block("conv", 3, 1, 16, "relu6", se_channels=4, skip=True)),
        ),
        head=Head(32, num_classes, "hswish", hidden_channels=24, dropout=0.0),
        se_gate=se_gate,
    )


def tiny_space(num_classes: int = 10) -> SearchSpace:
    """A 3-stage space small enough to enumerate, with every field kind."""
    return SearchSpace(
        name="tiny",
        stem=Stem(8, "relu"),
        stages=(
            StageSpec.of(8, 1, 1, {"conv_op": ("ds", "ir_e3", "conv"), "kernel_size": (3, 5)}, {"se_ratio": 0.0, "activation": "relu", "skip": "identity", "width_multiplier": 1.0, "num_layers": 1}),
            StageSpec.of(16, 2, 2, {"expansion_ratio": (1, 3), "se_ratio": (0.0, 0.25), "width_multiplier": (0.5, 1.0), "num_layers": (1, 2)}, {"kernel_size": 3, "activation": "hswish", "skip": "identity"}),
            StageSpec.of(24, 1, 2, {"skip": ("identity", "none"), "activation": ("relu", "hswish")}, {"expansion_ratio": 4, "kernel_size": 3, "se_ratio": 0.0, "width_multiplier": 1.0, "num_layers": 2}),
        ),
        head=Head(32, num_classes, "relu", dropout=0.0),
        se_rule="expanded",
    )


def randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give batch norms non-trivial statistics so numerical comparisons mean something."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
        elif isinstance(module, torch.nn.Linear):
            module.weight.data.normal_(0, 0.1, generator=generator)
