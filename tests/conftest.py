from __future__ import annotations

import os

import pytest

# Tests must be deterministic and fit a 2-core machine: one intra-op thread per process.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(1)
