"""Small shared pieces for the tests: tiny architectures and spaces."""

from __future__ import annotations

from typing import Any

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


def write_cell_benchmark(path, seed: int = 0) -> None:
    """A NAS-Bench-201-shaped CSV over all 15,625 cells with made-up, learnable values.

    Accuracy grows with the number of 3x3 convolutions and latency with every convolution, so a
    latency target creates a real trade-off; one device column is written.
    """
    import numpy as np
    import pandas as pd

    from mobilenas.space.nb201 import CellSpace

    space = CellSpace()
    rng = np.random.default_rng(seed)
    rows = []
    for index, indices in enumerate(space.all_indices()):
        ops = np.asarray(indices)
        conv3 = int((ops == 3).sum())
        conv1 = int((ops == 2).sum())
        accuracy = 60 + 5 * conv3 + 2 * conv1 + rng.normal(0, 1)
        latency = 1 + 4 * conv3 + 1.5 * conv1 + abs(rng.normal(0, 0.2))
        rows.append({"index": index, "arch_str": space.decode(indices), "val_acc_12ep": min(accuracy, 99.0),
                     "test_acc_200ep": min(accuracy + 5, 99.5), "latency_ms_toy": latency})
    pd.DataFrame(rows).to_csv(path, index=False)


def cell_search_args(cells, out, *extra: str) -> list[str]:
    """nas-search's arguments for a quiet search of ``cells`` (a :func:`write_cell_benchmark` CSV)
    at a 9 ms target on its device, into ``out``."""
    return ["--space", "nb201", "--benchmark", str(cells), "--latency-column", "latency_ms_toy", "--target-latency", "9ms", "--out", str(out), "--quiet", *extra]


def run_nas_latency(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    """``nas-latency ARGV`` in-process: its exit code, stdout and stderr (argparse's own errors included)."""
    from mobilenas.latency.cli import main

    try:
        code = main(argv, prog="nas-latency")
    except SystemExit as exit_:  # argparse's own errors
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def execute_notebook(notebook: Any, folder: Any) -> Any:
    """Run every cell of ``notebook`` (a path, read here, or a notebook already read) with its
    kernel in ``folder``; returns the notebook with its outputs. A cell that fails raises
    (nbclient's CellExecutionError), so a test need not look for error outputs."""
    import nbformat
    from nbclient import NotebookClient

    if not isinstance(notebook, nbformat.NotebookNode):
        notebook = nbformat.read(notebook, as_version=4)
    NotebookClient(notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(folder)}}).execute()
    return notebook
