"""Random search: every decision uniformly at random, independently."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobilenas.search.base import Observation
from mobilenas.search.strategies._common import (
    BookkeepingStrategy,
    numpy_rng_from_state,
    numpy_rng_state,
)


@dataclass(frozen=True)
class RandomConfig:
    """Random search has no options."""


class RandomSearch(BookkeepingStrategy):
    """Uniform sampling over index vectors; learns nothing (the baseline every search must beat)."""

    name = "random"

    def __init__(self, num_options: Sequence[int], seed: int = 0, config: RandomConfig | None = None) -> None:
        super().__init__(num_options, seed)
        self.config = config or RandomConfig()
        self._rng = np.random.default_rng(self.seed)
        self._told = 0

    def _propose(self, number: int) -> tuple[tuple[int, ...], Any]:
        return tuple(int(self._rng.integers(n)) for n in self.num_options), None

    def _observe(self, number: int, indices: tuple[int, ...], note: Any, observation: Observation) -> None:
        self._told += 1

    def state_dict(self) -> dict[str, Any]:
        return {**self._bookkeeping_state(), "rng": numpy_rng_state(self._rng), "told": self._told}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_bookkeeping(state)
        self._rng = numpy_rng_from_state(state["rng"])
        self._told = int(state["told"])

    def summary(self) -> dict[str, float]:
        return {"told": float(self._told), "pending": float(len(self._pending))}
