"""The two kinds of search problem: networks with a latency table, cells with a tabular benchmark."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from mobilenas.search.orchestrator import Problem
from mobilenas.search.tabular import TabularEvaluator
from mobilenas.space.arch import Architecture
from mobilenas.space.nb201 import CellSpace
from mobilenas.space.search_space import SearchSpace

_CACHE_LIMIT = 4096


class NetworkProblem(Problem):
    """An :class:`Architecture` space; latency comes from ``latency_ms(arch)`` (the lookup table)."""

    kind = "network"

    def __init__(self, space: SearchSpace, latency_ms: Callable[[Architecture], float]) -> None:
        self.space = space
        self._latency = latency_ms
        # decode + fingerprint cost about a millisecond; the wrappers ask for both per proposal.
        self._decoded: dict[tuple[int, ...], Architecture] = {}
        self._latency_cache: dict[str, float] = {}

    def decode(self, indices: Sequence[int]) -> Architecture:
        key = tuple(int(i) for i in indices)
        arch = self._decoded.get(key)
        if arch is None:
            if len(self._decoded) >= _CACHE_LIMIT:
                self._decoded.clear()
            arch = self.space.decode(key)
            self._decoded[key] = arch
        return arch

    def key(self, indices: Sequence[int]) -> str:
        return self.decode(indices).fingerprint()

    def latency_ms(self, indices: Sequence[int]) -> float:
        arch = self.decode(indices)
        fingerprint = arch.fingerprint()
        if fingerprint not in self._latency_cache:
            self._latency_cache[fingerprint] = float(self._latency(arch))
        return self._latency_cache[fingerprint]

    def describe(self, candidate: Any) -> str:
        return str(candidate.to_notation())

    def to_json(self, candidate: Any) -> Any:
        return candidate.to_dict()


class TabularProblem(Problem):
    """A cell space scored by a tabular benchmark whose latency column is the device."""

    kind = "tabular"

    def __init__(self, space: CellSpace, evaluator: TabularEvaluator) -> None:
        # a cell missing from the table would stop the search at the first proposal of it: say so now
        missing = [cell for cell in map(space.decode, space.all_indices()) if cell not in evaluator]
        if missing:
            raise ValueError(
                f"{evaluator.path.name} lacks {len(missing):,} of the {space.size():,} cells of the {space.name} space "
                f"(e.g. {missing[0]!r}); a search needs the whole table (such as nb201_cifar10_dev.csv.gz)"
            )
        self.space = space
        self.evaluator = evaluator

    def key(self, indices: Sequence[int]) -> str:
        return str(self.space.decode(tuple(indices)))

    def latency_ms(self, indices: Sequence[int]) -> float:
        """The latency column's value; NaN for an empty cell, which its evaluation then reports as a
        failed trial (the search goes on) instead of stopping the search before it is journaled."""
        value = self.evaluator.entry(self.space.decode(tuple(indices))).latency_ms
        return math.nan if value is None else value
