"""The contract every :class:`mobilenas.search.base.Strategy` must honour, as a reusable test class
(pytest; the built-in strategies, the wrappers and strategies of one's own are tested with it).

A test class for a strategy inherits :class:`StrategyContract` and defines ``make(num_options,
seed)``; class attributes adjust the toy problem (``num_options``, ``learns``, ...)::

    from mobilenas.search.contract import StrategyContract
    from mobilenas.search.strategies import make_strategy

    class TestGreedy(StrategyContract):
        def make(self, num_options, seed):
            return make_strategy("greedy.py:Greedy", num_options, seed)
 The toy
problem: one option per decision is better (``good_option``); the reward is the share of
decisions (with more than one option) at their better option. Learning strategies must beat
the uniform expectation there clearly; non-learning ones must stay near it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from mobilenas.search.base import STATUS_FAILED, STATUS_INFEASIBLE, Observation, Proposal, Strategy
from mobilenas.search.wrappers import SearchStopped


def good_option(decision: int, options: int) -> int:
    """The better option of a decision on the toy problem."""
    return (2 * decision + 1) % options


def toy_reward(indices: Sequence[int], num_options: Sequence[int]) -> float:
    scored = [d for d, n in enumerate(num_options) if n > 1]
    return float(np.mean([indices[d] == good_option(d, num_options[d]) for d in scored]))


def random_expectation(num_options: Sequence[int]) -> float:
    return float(np.mean([1.0 / n for n in num_options if n > 1]))


def toy_observation(indices: Sequence[int], num_options: Sequence[int]) -> Observation:
    reward = toy_reward(indices, num_options)
    # Latency constant: a multi-objective strategy then optimises accuracy alone.
    return Observation(reward=reward, accuracy=reward, latency_ms=1.0)


def drive(strategy: Strategy, steps: int, order_seed: int, max_pending: int = 4, finish: bool = True) -> list[Proposal]:
    """Ask ``steps`` proposals, keeping up to ``max_pending`` in flight and telling them in a
    seeded random order (asynchronous batches). Stops early if the strategy says so."""
    order = random.Random(order_seed)
    pending: list[Proposal] = []
    asked: list[Proposal] = []
    for _ in range(steps):
        try:
            proposal = strategy.ask()
        except SearchStopped:
            break
        asked.append(proposal)
        pending.append(proposal)
        while len(pending) >= max_pending or (pending and order.random() < 0.3):
            done = pending.pop(order.randrange(len(pending)))
            strategy.tell(done.number, toy_observation(done.indices, strategy.num_options))
    if finish:
        for done in order.sample(pending, len(pending)):
            strategy.tell(done.number, toy_observation(done.indices, strategy.num_options))
    return asked


def assert_plain(value: Any, path: str = "state") -> None:
    """Only JSON-like values and tensors, so ``torch.load(weights_only=True)`` can read it."""
    if isinstance(value, torch.Tensor) or value is None or isinstance(value, bool | int | float | str):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str | int), f"{path}: key {key!r} is a {type(key).__name__}"
            assert_plain(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            assert_plain(item, f"{path}[{i}]")
        return
    raise AssertionError(f"{path} is a {type(value).__name__}, not plain data or a tensor")


def save_and_load(state: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "strategy.pt"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)
    assert isinstance(loaded, dict)
    return loaded


class StrategyContract:
    """Inherit and define :meth:`make`. Every test here applies to every strategy and wrapper."""

    num_options: ClassVar[tuple[int, ...]] = (3, 1, 5, 2, 4, 3)
    #: whether the strategy must learn the toy problem (False: it must not drift from uniform)
    learns: ClassVar[bool] = True
    learning_steps: ClassVar[int] = 150
    #: the last this many told rewards are averaged to judge learning
    learning_window: ClassVar[int] = 50
    learning_margin: ClassVar[float] = 0.15
    #: seeds averaged over (one unlucky seed must not decide)
    learning_seeds: ClassVar[tuple[int, ...]] = (11, 12, 13)

    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        raise NotImplementedError

    # ----------------------------------------------------------------- asks

    def test_asks_are_valid_and_increasingly_numbered(self) -> None:
        strategy = self.make(self.num_options, seed=0)
        asked = drive(strategy, 40, order_seed=1)
        assert len(asked) >= 20
        numbers = [p.number for p in asked]
        assert numbers == sorted(set(numbers)), numbers
        for proposal in asked:
            assert isinstance(proposal, Proposal)
            assert len(proposal.indices) == len(self.num_options)
            assert all(isinstance(i, int) and 0 <= i < n for i, n in zip(proposal.indices, self.num_options, strict=True)), proposal

    def test_tell_unknown_or_twice_raises(self) -> None:
        strategy = self.make(self.num_options, seed=0)
        first = strategy.ask()
        with pytest.raises(ValueError, match="never asked"):
            strategy.tell(first.number + 1000, toy_observation(first.indices, self.num_options))
        with pytest.raises(ValueError):
            strategy.tell("0", toy_observation(first.indices, self.num_options))  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            strategy.tell(first.number, {"reward": 1.0})  # type: ignore[arg-type]
        strategy.tell(first.number, toy_observation(first.indices, self.num_options))
        with pytest.raises(ValueError, match="already told"):
            strategy.tell(first.number, toy_observation(first.indices, self.num_options))
        # Still usable afterwards.
        second = strategy.ask()
        assert second.number > first.number
        strategy.tell(second.number, toy_observation(second.indices, self.num_options))

    def test_asynchronous_tells_out_of_order(self) -> None:
        strategy = self.make(self.num_options, seed=0)
        batch = [strategy.ask() for _ in range(8)]
        assert len({p.number for p in batch}) == 8
        # Tell the later half first, ask more while the rest are in flight, then finish.
        for proposal in reversed(batch[4:]):
            strategy.tell(proposal.number, toy_observation(proposal.indices, self.num_options))
        more = [strategy.ask() for _ in range(3)]
        assert min(p.number for p in more) > max(p.number for p in batch)
        for proposal in [batch[2], more[1], batch[0], more[0], batch[3], more[2], batch[1]]:
            strategy.tell(proposal.number, toy_observation(proposal.indices, self.num_options))
        assert isinstance(strategy.ask(), Proposal)

    def test_penalised_statuses_are_accepted(self) -> None:
        strategy = self.make(self.num_options, seed=0)
        a, b, c = strategy.ask(), strategy.ask(), strategy.ask()
        strategy.tell(a.number, Observation(0.0, None, 5.0, STATUS_INFEASIBLE))
        strategy.tell(b.number, Observation(0.0, None, None, STATUS_FAILED))
        strategy.tell(c.number, toy_observation(c.indices, self.num_options))
        drive(strategy, 10, order_seed=2)

    # ----------------------------------------------------------------- determinism and state

    def test_same_seed_gives_the_same_proposals(self) -> None:
        first = drive(self.make(self.num_options, seed=7), 40, order_seed=3)
        second = drive(self.make(self.num_options, seed=7), 40, order_seed=3)
        assert first == second

    def test_different_seeds_give_different_proposals(self) -> None:
        first = drive(self.make(self.num_options, seed=1), 30, order_seed=3)
        second = drive(self.make(self.num_options, seed=2), 30, order_seed=3)
        assert [p.indices for p in first] != [p.indices for p in second]

    def test_state_dict_is_plain_data(self, tmp_path: Path) -> None:
        strategy = self.make(self.num_options, seed=0)
        drive(strategy, 25, order_seed=4, finish=False)
        state = strategy.state_dict()
        assert_plain(state)
        loaded = save_and_load(state, tmp_path)
        assert set(loaded) == set(state)

    def test_state_round_trip_continues_identically(self, tmp_path: Path) -> None:
        original = self.make(self.num_options, seed=5)
        drive(original, 30, order_seed=6, finish=True)
        # Leave proposals in flight at save time: they must be tellable after the restore.
        in_flight = [original.ask() for _ in range(3)]
        restored = self.make(self.num_options, seed=5)
        restored.load_state_dict(save_and_load(original.state_dict(), tmp_path))
        for strategy in (original, restored):
            for proposal in (in_flight[1], in_flight[2], in_flight[0]):
                strategy.tell(proposal.number, toy_observation(proposal.indices, self.num_options))
        assert drive(original, 40, order_seed=8) == drive(restored, 40, order_seed=8)
        assert original.summary().keys() == restored.summary().keys()

    def test_state_dict_is_a_snapshot(self, tmp_path: Path) -> None:
        """A state taken, then left in memory while the strategy goes on, does not change."""
        strategy = self.make(self.num_options, seed=3)
        drive(strategy, 20, order_seed=1)
        snapshot = strategy.state_dict()
        on_disk = save_and_load(snapshot, tmp_path)
        drive(strategy, 30, order_seed=2)
        from_memory, from_disk = self.make(self.num_options, seed=3), self.make(self.num_options, seed=3)
        from_memory.load_state_dict(snapshot)
        from_disk.load_state_dict(on_disk)
        assert drive(from_memory, 20, order_seed=9) == drive(from_disk, 20, order_seed=9)

    def test_loading_a_foreign_state_raises(self) -> None:
        strategy = self.make(self.num_options, seed=0)
        with pytest.raises(ValueError):
            strategy.load_state_dict({"strategy": "no-such-strategy", "wrapper": "no-such-wrapper", "num_options": [2]})

    def test_summary_is_named_floats(self) -> None:
        strategy = self.make(self.num_options, seed=0)
        drive(strategy, 25, order_seed=1)
        summary = strategy.summary()
        assert all(isinstance(k, str) and isinstance(v, float) for k, v in summary.items()), summary

    # ----------------------------------------------------------------- learning

    def test_toy_problem(self) -> None:
        """Learners beat uniform sampling where one option per decision is better."""
        lates = []
        for seed in self.learning_seeds:
            strategy = self.make(self.num_options, seed=seed)
            rewards: list[float] = []
            for _ in range(self.learning_steps):
                try:
                    proposal = strategy.ask()
                except SearchStopped:
                    break
                observation = toy_observation(proposal.indices, self.num_options)
                rewards.append(observation.reward)
                strategy.tell(proposal.number, observation)
            lates.append(float(np.mean(rewards[-self.learning_window:])))
        late = float(np.mean(lates))
        chance = random_expectation(self.num_options)
        if self.learns:
            assert late > chance + self.learning_margin, f"mean reward {late:.3f} over the last {self.learning_window}, uniform {chance:.3f}"
        else:
            assert abs(late - chance) < 0.08, f"mean reward {late:.3f}, uniform {chance:.3f}"
