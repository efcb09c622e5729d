from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mobilenas.search.base import (
    STATUS_FAILED,
    STATUS_INFEASIBLE,
    STATUS_OK,
    Observation,
    Proposal,
    Strategy,
)
from mobilenas.search.contract import StrategyContract, save_and_load, toy_observation
from mobilenas.search.rewards import RewardSpec, ZeroAccuracyPenalty
from mobilenas.search.strategies import PPOConfig, make_strategy
from mobilenas.search.wrappers import (
    KNOWN_CHUNK,
    Deduplicate,
    HandleFailures,
    LatencyFilter,
    NoFeasibleProposal,
    SearchConverged,
    StrategyWrapper,
    WrapperEvent,
)


class Scripted(Strategy):
    """Proposes a fixed list of index vectors in order and records what it is told."""

    name = "scripted"

    def __init__(self, script: Sequence[tuple[int, ...]], num_options: Sequence[int] = (4, 4)) -> None:
        super().__init__(num_options, 0)
        self.script = list(script)
        self.asked = 0
        self.told: dict[int, Observation] = {}

    def ask(self) -> Proposal:
        proposal = Proposal(self.asked, self.script[self.asked % len(self.script)])
        self.asked += 1
        return proposal

    def tell(self, number: int, observation: Observation) -> None:
        if number in self.told or number >= self.asked:
            raise ValueError(f"bad tell {number}")
        self.told[number] = observation

    def state_dict(self) -> dict[str, Any]:
        return {"asked": self.asked, "told": {n: [o.reward, o.status] for n, o in self.told.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.asked = int(state["asked"])
        self.told = {int(n): Observation(r, status=s) for n, (r, s) in state["told"].items()}


def key(indices: tuple[int, ...]) -> str:
    return ",".join(map(str, indices))


def latency(indices: tuple[int, ...]) -> float:
    """A toy latency table: each option index costs 1 ms."""
    return 1.0 + float(sum(indices))


# --------------------------------------------------------------------------- the contract


class TestDeduplicateContract(StrategyContract):
    num_options = (4, 4, 4, 4, 4, 2)

    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        return Deduplicate(make_strategy("ppo", num_options, seed), key, max_consecutive_duplicates=50)


class TestLatencyFilterContract(StrategyContract):
    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        # Every toy-optimal architecture stays under the limit.
        return LatencyFilter(make_strategy("evolution", num_options, seed), latency, limit_ms=12.0)


class TestHandleFailuresContract(StrategyContract):
    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        return HandleFailures(make_strategy("reinforce", num_options, seed), penalty=-1.0)


class TestStackedWrappersContract(StrategyContract):
    num_options = (4, 4, 4, 4, 4, 2)

    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        inner = HandleFailures(make_strategy("reinforce", num_options, seed))
        return Deduplicate(LatencyFilter(inner, latency, limit_ms=14.0), key, max_consecutive_duplicates=50)


class TestDeduplicateRandomContract(StrategyContract):
    learns = False
    num_options = (4, 4, 4, 4, 4, 2)

    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        return Deduplicate(make_strategy("random", num_options, seed), key)


# --------------------------------------------------------------------------- de-duplication


def test_known_architecture_is_told_at_once_and_not_handed_out() -> None:
    inner = Scripted([(0, 1), (0, 1), (2, 2)])
    dedup = Deduplicate(inner, key)
    first = dedup.ask()
    assert first == Proposal(0, (0, 1))
    observation = Observation(0.7, 0.7, 3.0)
    dedup.tell(0, observation)
    second = dedup.ask()
    # (0, 1) again as number 1: told the known result, skipped; (2, 2) is handed out as 2.
    assert second == Proposal(2, (2, 2))
    assert inner.told[1].reward == 0.7 and inner.told[1].info == {"duplicate_of": 0}
    events = dedup.drain_events()
    assert events == [WrapperEvent("duplicate", 1, (0, 1), inner.told[1], "0,1", 0)]
    assert dedup.drain_events() == []
    assert dedup.counts == {"duplicate": 1}
    assert dedup.lookup((0, 1)) == observation and dedup.lookup((3, 3)) is None
    assert dedup.num_known == 1
    with pytest.raises(ValueError, match=r"proposal 1 was already told .or was handled inside the deduplicate wrapper and never handed out."):
        dedup.tell(1, observation)


def test_twin_in_flight_waits_for_its_result() -> None:
    inner = Scripted([(1, 1), (1, 1), (3, 0)])
    dedup = Deduplicate(inner, key)
    first = dedup.ask()
    second = dedup.ask()  # (1, 1) again while 0 is in flight: held; (3, 0) handed out
    assert (first.number, second.number) == (0, 2)
    assert 1 not in inner.told
    assert [e.kind for e in dedup.drain_events()] == ["waiting"]
    dedup.tell(0, Observation(0.4, status=STATUS_OK))
    assert inner.told[1].reward == 0.4 and inner.told[1].info == {"duplicate_of": 0}
    (reused,) = dedup.drain_events()
    assert (reused.kind, reused.number, reused.twin, reused.indices) == ("reused", 1, 0, (1, 1))
    dedup.tell(2, Observation(0.1))
    assert sorted(inner.told) == [0, 1, 2]


def test_key_function_decides_what_a_duplicate_is() -> None:
    inner = Scripted([(0, 1), (1, 0), (2, 2)])
    # Order-insensitive key: (0, 1) and (1, 0) build "the same" network.
    dedup = Deduplicate(inner, lambda ix: str(sorted(ix)))
    dedup.tell(dedup.ask().number, Observation(0.5))
    assert dedup.ask().indices == (2, 2)
    assert dedup.counts == {"duplicate": 1}


def test_converged_after_many_consecutive_duplicates() -> None:
    inner = Scripted([(1, 2)])
    dedup = Deduplicate(inner, key, max_consecutive_duplicates=5)
    dedup.tell(dedup.ask().number, Observation(0.9))
    # after a single distinct architecture, it looks like a strategy that ignores what it is told
    with pytest.raises(SearchConverged, match=r"^the scripted strategy proposed 5 already-evaluated architectures in a row after only 1 distinct one: does it keep"):
        dedup.ask()
    assert inner.asked == 6 and len(inner.told) == 6
    assert dedup.counts == {"duplicate": 5}
    # after ten, like a search that has converged
    inner = Scripted([(i // 4, i % 4) for i in range(10)])
    dedup = Deduplicate(inner, key, max_consecutive_duplicates=5)
    for _ in range(10):
        dedup.tell(dedup.ask().number, Observation(0.9))
    with pytest.raises(SearchConverged, match=r"proposed 5 already-evaluated architectures in a row .10 distinct ones evaluated.: the search has converged$"):
        dedup.ask()
    # a space of four architectures, all evaluated, is done, not stuck
    inner = Scripted([(0, 0), (0, 1), (1, 0), (1, 1)], num_options=(2, 2))
    dedup = Deduplicate(inner, key, max_consecutive_duplicates=5)
    for _ in range(4):
        dedup.tell(dedup.ask().number, Observation(0.9))
    with pytest.raises(SearchConverged, match=r".4 distinct ones evaluated.: the search has converged$"):
        dedup.ask()


def test_failed_results_are_reused_unless_asked_not_to() -> None:
    for reuse, expected in ((True, (2, 2)), (False, (0, 0))):
        inner = Scripted([(0, 0), (0, 0), (2, 2)])
        dedup = Deduplicate(inner, key, reuse_failures=reuse)
        dedup.tell(dedup.ask().number, Observation(0.0, status=STATUS_FAILED))
        assert dedup.ask().indices == expected


def test_deduplicate_state_keeps_known_in_flight_and_waiting(tmp_path: Path) -> None:
    def build() -> Deduplicate:
        return Deduplicate(Scripted([(0, 0), (1, 1), (0, 0), (1, 1), (2, 3), (3, 3)]), key)

    original = build()
    a = original.ask()
    original.tell(a.number, Observation(0.3))
    b = original.ask()  # (1, 1), in flight
    c = original.ask()  # (0, 0) known -> told; (1, 1) waits on b; (2, 3) handed out
    assert (b.number, c.number) == (1, 4)
    restored = build()
    restored.load_state_dict(save_and_load(original.state_dict(), tmp_path))
    for dedup in (original, restored):
        dedup.tell(b.number, Observation(0.6))  # releases the waiting twin (number 3)
        dedup.tell(c.number, Observation(0.2))
        assert dedup.ask().indices == (3, 3)
        assert [(e.kind, e.number) for e in dedup.drain_events()] == [("duplicate", 2), ("waiting", 3), ("reused", 3)]
        assert dedup.counts == {"duplicate": 1, "waiting": 1, "reused": 1}
        inner = dedup.inner
        assert isinstance(inner, Scripted) and inner.told[3].reward == 0.6


def _memory_of(count: int) -> Deduplicate:
    """A de-duplication that knows ``count`` architectures of a (100, 100) space, with odd numbers."""
    dedup = Deduplicate(make_strategy("random", (100, 100), 0), key)
    for i in range(count):
        accuracy = None if i % 7 == 0 else np.float32(i / count)  # numpy numbers from an evaluator too
        status = STATUS_FAILED if i % 7 == 0 else STATUS_OK
        dedup.remember((i // 100, i % 100), Observation(-i / 3.0, accuracy, 1.0 + i / 9.0, status), number=3 * i)
    return dedup


def test_a_large_memory_is_saved_and_restored_exactly(tmp_path: Path) -> None:
    count = 3 * KNOWN_CHUNK + 17
    original = _memory_of(count)
    restored = Deduplicate(make_strategy("random", (100, 100), 0), key)
    restored.load_state_dict(save_and_load(original.state_dict(), tmp_path))
    assert restored.num_known == count
    for i in range(count):
        indices = (i // 100, i % 100)
        before, after = original.lookup(indices), restored.lookup(indices)
        assert before is not None and after is not None
        assert (after.reward, after.accuracy, after.latency_ms, after.status) == (before.reward, before.accuracy, before.latency_ms, before.status)
    assert restored.state_dict() == original.state_dict()  # and it saves again as it was saved


def test_saving_the_memory_does_not_encode_it_again() -> None:
    # A checkpoint per proposal: encoding every known architecture each time made a long search
    # quadratic. What is saved is encoded once; each save adds fewer than KNOWN_CHUNK new rows.
    dedup = _memory_of(5 * KNOWN_CHUNK + 3)
    first = dedup.state_dict()
    second = dedup.state_dict()
    assert len(first["known"]) < KNOWN_CHUNK
    assert first["known_chunks"] and all(a is b for a, b in zip(first["known_chunks"], second["known_chunks"], strict=True))


def test_a_memory_saved_before_chunks_still_loads() -> None:
    original = _memory_of(40)
    state = original.state_dict()
    old = {k: v for k, v in state.items() if k != "known_chunks"}  # the form saved before chunks
    restored = Deduplicate(make_strategy("random", (100, 100), 0), key)
    restored.load_state_dict(old)
    assert restored.num_known == 40 and restored.lookup((0, 39)) == original.lookup((0, 39))


def test_remember_results_from_elsewhere() -> None:
    dedup = Deduplicate(Scripted([(1, 1), (2, 2)]), key)
    dedup.remember((1, 1), Observation(0.8), number=17)
    assert dedup.ask().indices == (2, 2)
    (event,) = dedup.drain_events()
    assert event.twin == 17 and event.observation is not None and event.observation.reward == 0.8


# --------------------------------------------------------------------------- latency filter


def test_over_budget_proposals_are_rejected_with_the_penalty() -> None:
    inner = Scripted([(3, 3), (0, 1), (2, 3)])
    limit = LatencyFilter(inner, latency, limit_ms=4.0, penalty=-0.5)
    proposal = limit.ask()
    assert proposal == Proposal(1, (0, 1))
    rejected = inner.told[0]
    assert (rejected.reward, rejected.status, rejected.latency_ms, rejected.accuracy) == (-0.5, STATUS_INFEASIBLE, 7.0, None)
    assert rejected.info == {"limit_ms": 4.0}
    (event,) = limit.drain_events()
    assert (event.kind, event.number, event.indices, event.observation) == ("rejected", 0, (3, 3), rejected)
    limit.tell(1, Observation(0.9, 0.9, 2.0))
    assert inner.told[1].reward == 0.9
    assert limit.counts == {"rejected": 1}


def test_unreachable_limit_stops_the_search() -> None:
    limit = LatencyFilter(Scripted([(3, 3), (2, 2)]), latency, limit_ms=2.0, max_consecutive_rejections=10)
    with pytest.raises(NoFeasibleProposal, match="proposed 10 architectures over the 2 ms limit in a row"):
        limit.ask()
    assert limit.counts == {"rejected": 10}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit_ms": 0.0}, "limit_ms must be a positive number of milliseconds, got 0.0"),
        ({"limit_ms": 5.0, "penalty": float("nan")}, "penalty must be a finite number or a function of the latency"),
        ({"limit_ms": 5.0, "max_consecutive_rejections": 0}, "max_consecutive_rejections must be a whole number >= 1"),
    ],
)
def test_latency_filter_arguments_are_checked(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LatencyFilter(Scripted([(0, 0)]), latency, **options)


def test_wrappers_need_a_strategy() -> None:
    with pytest.raises(ValueError, match="a wrapper needs a Strategy to wrap, got str"):
        HandleFailures("ppo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_consecutive_duplicates must be a whole number >= 1"):
        Deduplicate(Scripted([(0, 0)]), key, max_consecutive_duplicates=0)


# --------------------------------------------------------------------------- failures


def test_failed_observations_become_the_penalty() -> None:
    inner = Scripted([(0, 0), (1, 1)])
    handler = HandleFailures(inner, penalty=-0.25)
    a, b = handler.ask(), handler.ask()
    handler.tell(a.number, Observation(0.5, None, None, STATUS_FAILED, {"error": "diverged"}))
    handler.tell(b.number, Observation(0.5, 0.5, 3.0))
    assert inner.told[0].reward == -0.25 and inner.told[0].status == STATUS_FAILED
    assert inner.told[0].info == {"error": "diverged", "reported_reward": 0.5}
    assert inner.told[1].reward == 0.5
    (event,) = handler.drain_events()
    assert (event.kind, event.number) == ("failed", 0)
    with pytest.raises(ValueError, match="already told"):
        handler.tell(a.number, Observation(0.5))


def test_a_penalty_may_depend_on_the_latency_and_is_then_below_any_trained_reward() -> None:
    # TuNAS's absolute reward is negative away from the target: a constant 0 told a crash (or a
    # rejection) more than a slow architecture that trained (0.1 at 3x the target: -0.1).
    spec = RewardSpec.from_options("absolute")
    penalty = ZeroAccuracyPenalty(spec, 5.0)
    assert penalty(15.0) == pytest.approx(-0.2) and penalty(5.0) == 0.0 and penalty(None) == 0.0 and penalty(float("nan")) == 0.0
    assert ZeroAccuracyPenalty(RewardSpec.from_options("soft"), 5.0)(15.0) == 0.0  # MnasNet's rewards: 0, as before
    inner = Scripted([(3, 3), (0, 0)])
    handler = LatencyFilter(HandleFailures(inner, penalty=penalty), latency, limit_ms=6.0, penalty=penalty)
    first = handler.ask()  # (3, 3) at 7 ms is rejected on the way
    handler.tell(first.number, Observation(0.0, None, 15.0, STATUS_FAILED))
    rejected, failed = inner.told[0], inner.told[1]
    assert rejected.status == STATUS_INFEASIBLE and rejected.reward == pytest.approx(penalty(7.0)) == pytest.approx(-0.04)
    assert failed.status == STATUS_FAILED and failed.reward == pytest.approx(-0.2)
    for accuracy in (0.0, 0.05, 0.1):
        assert spec(accuracy, 15.0, 5.0).reward >= failed.reward


# --------------------------------------------------------------------------- stacking


def test_stacked_wrappers_report_all_events_by_number() -> None:
    inner = Scripted([(3, 3), (0, 1), (0, 1), (1, 0), (3, 2)], num_options=(4, 4))
    stack = Deduplicate(LatencyFilter(HandleFailures(inner, penalty=-1.0), latency, limit_ms=3.0), key)
    assert stack.describe() == "deduplicate(latency_filter(handle_failures(scripted)))"
    assert stack.name == "scripted" and stack.unwrap() is inner
    first = stack.ask()  # 0 rejected, 1 handed out
    stack.tell(first.number, Observation(0.0, status=STATUS_FAILED))
    second = stack.ask()  # 2 duplicate of 1 (reused failure), 3 handed out
    assert (first.number, second.number) == (1, 3)
    stack.tell(second.number, Observation(0.6, 0.6, 2.0))
    events = stack.drain_events()
    # The duplicate of a failed architecture reaches HandleFailures as a failure again.
    assert [(e.kind, e.number) for e in events] == [("rejected", 0), ("failed", 1), ("duplicate", 2), ("failed", 2)]
    assert stack.counts == {"rejected": 1, "failed": 2, "duplicate": 1}
    assert inner.told[1].reward == -1.0 and inner.told[2].reward == -1.0  # the penalty was reused
    summary = stack.summary()
    assert summary["deduplicate_duplicate"] == 1.0 and summary["latency_filter_rejected"] == 1.0
    assert [e.to_dict()["kind"] for e in events] == ["rejected", "failed", "duplicate", "failed"]
    assert WrapperEvent.from_dict(events[0].to_dict()) == WrapperEvent("rejected", 0, (3, 3), Observation(0.0, None, 7.0, STATUS_INFEASIBLE), None, None)


def test_wrapper_state_must_match_the_wrapper() -> None:
    dedup = Deduplicate(make_strategy("random", (2, 2), 0), key)
    limit = LatencyFilter(make_strategy("random", (2, 2), 0), latency, 10.0)
    with pytest.raises(ValueError, match="not a deduplicate wrapper's state"):
        dedup.load_state_dict(limit.state_dict())
    assert isinstance(dedup, StrategyWrapper)


def test_ppo_with_deduplication_converges_on_a_tiny_space() -> None:
    # 8 architectures: PPO soon proposes only known ones and the wrapper says so.
    ppo = make_strategy("ppo", (2, 2, 2), seed=0, config=PPOConfig(batch_size=4, learning_rate=0.05))
    dedup = Deduplicate(ppo, key, max_consecutive_duplicates=30)
    handed = []
    with pytest.raises(SearchConverged):
        for _ in range(100):
            proposal = dedup.ask()
            handed.append(proposal.indices)
            dedup.tell(proposal.number, toy_observation(proposal.indices, (2, 2, 2)))
    assert len(handed) == len(set(handed)) <= 8
    assert (1, 1, 1) in handed  # the toy optimum: good_option(d, 2) == 1


def test_a_filter_rejecting_many_in_a_row_says_so_as_it_goes() -> None:
    # ask spun through thousands of rejections with the progress bar frozen
    from mobilenas.search.wrappers import REJECTIONS_BETWEEN_CALLS

    asked = []

    def latency(indices: tuple[int, ...]) -> float:
        asked.append(indices)
        return 1.0 if len(asked) > 2 * REJECTIONS_BETWEEN_CALLS + 10 else 99.0  # over the limit until then

    limit = LatencyFilter(make_strategy("random", [3, 3, 3], 0), latency, limit_ms=5.0)
    calls: list[int] = []
    limit.on_rejections = lambda: calls.append(limit.counts.get("rejected", 0))
    limit.ask()
    assert calls == [REJECTIONS_BETWEEN_CALLS, 2 * REJECTIONS_BETWEEN_CALLS]  # the count the bar shows, as it grows


def test_a_summary_is_checked_for_named_numbers_and_zero_dimensional_tensors_count() -> None:
    import numpy as np
    import torch

    from mobilenas.search.wrappers import StrategyBug, checked_summary

    # a 0-d tensor or array was journaled as its number before the check: it stays accepted
    assert checked_summary({"a": torch.tensor(0.5), "b": np.float32(1.5), "c": np.array(2.0), "d": 3, "e": float("nan")}) == {"a": 0.5, "b": 1.5, "c": 2.0, "d": 3.0}
    for bad in ({"a": torch.tensor([1.0, 2.0])}, {"a": "warm"}, {"a": True}, {1: 0.5}, None, [("a", 1.0)]):
        with pytest.raises(StrategyBug, match=r"^summary\(\) returned "):
            checked_summary(bad)
