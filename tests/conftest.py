from __future__ import annotations

import os

import pytest

# Tests must be deterministic and fit a 2-core machine: one intra-op thread per process.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cells(tmp_path_factory: pytest.TempPathFactory):
    """A NAS-Bench-201-shaped CSV of every cell (see helpers.write_cell_benchmark), made once."""
    from helpers import write_cell_benchmark

    path = tmp_path_factory.mktemp("bench") / "cells.csv"
    write_cell_benchmark(path)
    return path
