"""Regularized (aging) evolution, Real et al. 2019 ("Regularized Evolution for Image Classifier
Architecture Search", Algorithm 1), in its asynchronous form.

The first ``population_size`` proposals are uniformly random. After that, each proposal is a
child: ``tournament_size`` members are drawn from the population (with replacement, as the
reference code of Real et al. and NAS-Bench-201's REA draw them: "the element stays in the
population"), the one with the highest reward is the parent, and the child changes one decision
of the parent to another option (a neighbour). Every told observation joins the population;
when it exceeds ``population_size`` the *oldest* member is removed (aging), whatever its reward. Penalised
observations (infeasible, failed) join like any other, with their penalty reward.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobilenas.search.base import Observation
from mobilenas.search.strategies._common import (
    BookkeepingStrategy,
    check_whole,
    numpy_rng_from_state,
    numpy_rng_state,
)


@dataclass(frozen=True)
class EvolutionConfig:
    """Regularized evolution's options.

    ``population_size``: the P most recent architectures, from which parents are drawn (the
    first P are random; the oldest dies as each child is told); ``tournament_size``: how many
    of them (S, at most P) are drawn at random, the best of which is mutated into the next
    child. Defaults are those of the NAS-Bench-201 paper's REA baseline (P = 10, S = 3), tuned
    there for a few hundred queries. ``tournament_replacement``: whether a tournament draws its
    members with replacement (the default, as the reference code: a member may be drawn twice, so
    the best of the population is not always in it) or without (this code's earlier behaviour:
    with S = P every tournament then holds the whole population, so the best is always mutated).
    """

    population_size: int = 10
    tournament_size: int = 3
    tournament_replacement: bool = True

    def __post_init__(self) -> None:
        check_whole("evolution", "population_size", self.population_size, minimum=1)
        check_whole("evolution", "tournament_size", self.tournament_size, minimum=1)
        if not isinstance(self.tournament_replacement, bool):
            raise ValueError(f"evolution.tournament_replacement must be true or false, got {self.tournament_replacement!r}")
        if self.tournament_size > self.population_size:
            raise ValueError(f"evolution.tournament_size ({self.tournament_size}) must be at most population_size ({self.population_size})")


class RegularizedEvolution(BookkeepingStrategy):
    """Aging evolution with tournament selection and single-decision mutation."""

    name = "evolution"

    def __init__(self, num_options: Sequence[int], seed: int = 0, config: EvolutionConfig | None = None) -> None:
        super().__init__(num_options, seed)
        self.config = config or EvolutionConfig()
        self._rng = np.random.default_rng(self.seed)
        # (number, indices, reward), oldest first.
        self._population: deque[tuple[int, tuple[int, ...], float]] = deque()
        self._random_asked = 0
        self._children_asked = 0
        self._told = 0
        self._mutable = [d for d, n in enumerate(self.num_options) if n > 1]

    def _random(self) -> tuple[int, ...]:
        return tuple(int(self._rng.integers(n)) for n in self.num_options)

    def _mutate(self, parent: tuple[int, ...]) -> tuple[int, ...]:
        if not self._mutable:
            return parent
        decision = self._mutable[int(self._rng.integers(len(self._mutable)))]
        # Another option of that decision, uniformly: shift by 1..n-1 modulo n.
        n = self.num_options[decision]
        option = (parent[decision] + 1 + int(self._rng.integers(n - 1))) % n
        return (*parent[:decision], option, *parent[decision + 1:])

    def _propose(self, number: int) -> tuple[tuple[int, ...], Any]:
        if self._random_asked < self.config.population_size or not self._population:
            # The initial population, or (asynchronously) nothing told yet to select from.
            self._random_asked += 1
            return self._random(), "random"
        size = min(self.config.tournament_size, len(self._population))
        picks = self._rng.choice(len(self._population), size=size, replace=self.config.tournament_replacement)
        # Highest reward wins; among equals the youngest (higher number), so ties are deterministic.
        winner = max((self._population[int(p)] for p in picks), key=lambda member: (member[2], member[0]))
        self._children_asked += 1
        return self._mutate(winner[1]), "child"

    def _observe(self, number: int, indices: tuple[int, ...], note: Any, observation: Observation) -> None:
        self._told += 1
        self._population.append((number, indices, float(observation.reward)))
        while len(self._population) > self.config.population_size:
            self._population.popleft()

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._bookkeeping_state(),
            "rng": numpy_rng_state(self._rng),
            "population": [[n, list(ix), r] for n, ix, r in self._population],
            "random_asked": self._random_asked,
            "children_asked": self._children_asked,
            "told": self._told,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_bookkeeping(state)
        self._rng = numpy_rng_from_state(state["rng"])
        self._population = deque((int(n), tuple(int(i) for i in ix), float(r)) for n, ix, r in state["population"])
        self._random_asked = int(state["random_asked"])
        self._children_asked = int(state["children_asked"])
        self._told = int(state["told"])

    @property
    def population(self) -> list[tuple[int, tuple[int, ...], float]]:
        """The current population as ``(number, indices, reward)``, oldest first."""
        return list(self._population)

    def summary(self) -> dict[str, float]:
        rewards = [r for _, _, r in self._population]
        return {
            "population": float(len(rewards)),
            "population_best_reward": max(rewards) if rewards else float("nan"),
            "population_mean_reward": float(np.mean(rewards)) if rewards else float("nan"),
            "children": float(self._children_asked),
        }
