"""Wrappers that add behaviour around any strategy; each is a :class:`Strategy` itself.

* :class:`Deduplicate`: an architecture already evaluated is not evaluated again. The wrapper
  keys proposals by an architecture fingerprint; a proposal whose twin was already told is told
  to the inner strategy at once with the twin's observation, and the wrapper asks again. A
  proposal whose twin is still being evaluated waits (it is never handed out) and is told the
  twin's observation when that arrives. After ``max_consecutive_duplicates`` duplicates in a row
  ``ask`` raises :class:`SearchConverged`: the strategy keeps proposing what it already knows.
* :class:`LatencyFilter`: a proposal over the latency limit by the table is rejected before any
  training; the inner strategy is told ``penalty`` with status ``infeasible`` and asked again.
* :class:`HandleFailures`: an observation with status ``failed`` reaches the inner strategy
  with reward ``penalty`` (so it learns to avoid what fails), whatever reward came with it.

A ``penalty`` is a number, or a function of the architecture's latency in ms (``None`` where
unknown): nas-search gives :class:`mobilenas.search.rewards.ZeroAccuracyPenalty`, the reward of
accuracy 0 at that latency, below every trained architecture's of that latency for any reward.

Proposal numbers are the inner strategy's numbers, passed through; numbers handled inside a
wrapper are never handed out, so the numbers the orchestrator sees are increasing but may skip.

What a wrapper did is recorded as :class:`WrapperEvent` values, one per proposal it handled
itself (``duplicate``, ``waiting``, ``reused``, ``rejected``) or changed (``failed``), with the
proposal's number, indices and the observation told to the inner strategy. The orchestrator
calls :meth:`StrategyWrapper.drain_events` after each ``ask``/``tell`` and journals them (several
wrappers may act on one number, e.g. ``duplicate`` of a failed architecture, then ``failed``:
events are ordered by number, outer wrapper first); :attr:`StrategyWrapper.counts` has the totals. Wrappers nest
(``Deduplicate(LatencyFilter(HandleFailures(make_strategy(...)), ...), ...)``); the outermost
drains and counts for all of them.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mobilenas.search.base import STATUS_FAILED, STATUS_INFEASIBLE, Observation, Proposal, Strategy
from mobilenas.search.strategies._common import (
    check_tell,
    observation_from_dict,
    observation_to_dict,
)

EVENT_KINDS = ("duplicate", "waiting", "reused", "rejected", "failed")

#: Fewer distinct architectures than this before a strategy only repeats itself looks like a bug, not convergence.
FEW_DISTINCT = 10

#: De-duplication saves its memory in chunks of this many architectures, each encoded (as JSON) once.
KNOWN_CHUNK = 256


Penalty = float | Callable[[float | None], float]


def _checked_penalty(penalty: Penalty) -> Penalty:
    if callable(penalty):
        return penalty
    if isinstance(penalty, bool) or not isinstance(penalty, int | float) or not math.isfinite(penalty):
        raise ValueError(f"penalty must be a finite number or a function of the latency, got {penalty!r}")
    return float(penalty)


def _penalty_at(penalty: Penalty, latency_ms: float | None) -> float:
    return float(penalty(latency_ms)) if callable(penalty) else penalty


class StrategyBug(RuntimeError):
    """A strategy broke the ask/tell contract (see :mod:`mobilenas.search.base`): ``ask`` returned no
    valid :class:`Proposal`, ``summary`` no named numbers, ``state_dict`` what cannot be saved.

    Checked by the innermost wrapper on what the strategy itself returns, so the error names the
    strategy's method instead of surfacing later as a failure of the code that used the value.
    ``strategy`` is the class at fault.
    """

    def __init__(self, message: str, strategy: type | None = None) -> None:
        super().__init__(message)
        self.strategy = strategy


def checked_proposal(proposal: Any, num_options: Sequence[int], highest: int, strategy: type | None = None) -> Proposal:
    """``proposal`` as ``ask()`` must return it (numbers as ``int``), or :class:`StrategyBug`.

    ``highest`` is the largest number the strategy handed out before (numbers only increase).
    """

    def bug(message: str) -> StrategyBug:
        return StrategyBug(f"ask() returned {message}", strategy)

    if not isinstance(proposal, Proposal):
        return_type = "None" if proposal is None else f"a {type(proposal).__name__}"
        raise bug(f"{return_type}, not a Proposal(number, indices)")
    number = proposal.number
    if isinstance(number, bool) or not isinstance(number, numbers.Integral):
        raise bug(f"a proposal numbered {number!r}: a proposal's number is an int")
    if number <= highest:
        raise bug(f"proposal number {int(number)} after {highest}: each proposal gets a new number, larger than the last")
    indices = proposal.indices
    if isinstance(indices, str | bytes) or not isinstance(indices, Sequence):
        raise bug(f"indices {indices!r}: a proposal's indices are a tuple of ints, one per decision")
    if len(indices) != len(num_options):
        raise bug(f"{len(indices)} indices for {len(num_options)} decisions: give one option index per decision")
    for decision, (index, options) in enumerate(zip(indices, num_options, strict=True)):
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise bug(f"index {index!r} ({type(index).__name__}) for decision {decision}: an option index is an int")
        if not 0 <= index < options:
            raise bug(f"index {int(index)} for decision {decision}, which has {options} options (0..{options - 1})")
    return Proposal(int(number), tuple(int(i) for i in indices))


def checked_summary(summary: Any, strategy: type | None = None) -> dict[str, float]:
    """What ``summary()`` returned as named floats (a value that is not finite is left out: it
    has no place on a plot or in JSON), or :class:`StrategyBug`."""
    if not isinstance(summary, Mapping):
        raise StrategyBug(f"summary() returned {'None' if summary is None else 'a ' + type(summary).__name__}, not a dict of named numbers (return {{}} for none)", strategy)
    checked = {}
    for name, value in summary.items():
        if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a 0-d tensor or array (journaled as its number before the check)
            value = value.item()
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise StrategyBug(f"summary() returned {{{name!r}: {value!r}}}: a summary names numbers, e.g. {{'best_reward': 0.71}}", strategy)
        if math.isfinite(value):
            checked[name] = float(value)
    return checked


class SearchStopped(RuntimeError):
    """Raised by ``ask`` when a wrapper decides that asking again is pointless.

    The orchestrator stops asking, lets the proposals in flight finish and tells them (waiting
    duplicates are resolved by those tells), then ends the search normally.
    """


class SearchConverged(SearchStopped):
    """The strategy proposed only already-evaluated architectures many times in a row."""


class NoFeasibleProposal(SearchStopped):
    """The strategy proposed only over-budget architectures many times in a row."""


@dataclass(frozen=True)
class WrapperEvent:
    """Something a wrapper did with one proposal.

    ``kind``: ``duplicate`` (twin already known: told its observation at once), ``waiting``
    (twin in flight: held), ``reused`` (a held proposal told its twin's observation),
    ``rejected`` (over the latency limit: told the penalty), ``failed`` (a failed observation
    told to the inner strategy as the penalty). ``observation`` is what the inner strategy was
    told (``None`` for ``waiting``); ``twin`` the number whose result was reused.
    """

    kind: str
    number: int
    indices: tuple[int, ...]
    observation: Observation | None = None
    key: str | None = None
    twin: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "number": self.number,
            "indices": list(self.indices),
            "observation": None if self.observation is None else observation_to_dict(self.observation),
            "key": self.key,
            "twin": self.twin,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WrapperEvent:
        observation = None if data["observation"] is None else observation_from_dict(data["observation"])
        return cls(str(data["kind"]), int(data["number"]), tuple(int(i) for i in data["indices"]), observation, data["key"], data["twin"])


@dataclass
class _Ledger:
    """Numbers handed out and not yet told: ``number -> indices``."""

    handed: dict[int, tuple[int, ...]] = field(default_factory=dict)
    highest: int = -1

    def hand(self, proposal: Proposal) -> None:
        self.handed[proposal.number] = proposal.indices
        self.highest = max(self.highest, proposal.number)

    def take(self, number: int, observation: Observation, wrapper: str) -> tuple[int, ...]:
        try:
            number = check_tell(number, self.handed, self.highest + 1, observation)
        except ValueError as error:
            if "already told" in str(error):
                raise ValueError(f"{error} (or was handled inside the {wrapper} wrapper and never handed out)") from None
            raise
        return self.handed[number]

    def to_state(self) -> dict[str, Any]:
        return {"handed": [[n, list(ix)] for n, ix in sorted(self.handed.items())], "highest": self.highest}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Ledger:
        return cls({int(n): tuple(int(i) for i in ix) for n, ix in state["handed"]}, int(state["highest"]))


class StrategyWrapper(Strategy):
    """Common part of the wrappers: the inner strategy, the ledger of handed-out numbers, events."""

    kind: str = ""

    def __init__(self, inner: Strategy) -> None:
        if not isinstance(inner, Strategy):
            raise ValueError(f"a wrapper needs a Strategy to wrap, got {type(inner).__name__}")
        super().__init__(inner.num_options, inner.seed)
        self.inner = inner
        # The wrapped strategy's name, so ``--strategy`` and checkpoints keep meaning the same.
        self.name = inner.name
        self._ledger = _Ledger()
        self._events: list[WrapperEvent] = []
        self._counts: dict[str, int] = {}
        self._asked = -1  # the largest number the inner strategy handed out

    def _ask_inner(self) -> Proposal:
        """The inner strategy's next proposal; the strategy itself (not a wrapper) is checked."""
        if isinstance(self.inner, StrategyWrapper):
            return self.inner.ask()
        proposal = checked_proposal(self.inner.ask(), self.num_options, self._asked, type(self.inner))
        self._asked = proposal.number
        return proposal

    # ----------------------------------------------------------------- events

    def _record(self, event: WrapperEvent) -> None:
        self._events.append(event)
        self._counts[event.kind] = self._counts.get(event.kind, 0) + 1

    def drain_events(self) -> list[WrapperEvent]:
        """Events of this wrapper and the wrappers inside it since the last drain, by number."""
        inner = self.inner.drain_events() if isinstance(self.inner, StrategyWrapper) else []
        # Outer events first for the same number: the outer wrapper acted first (a duplicate of a
        # failed architecture is ``duplicate`` here, then ``failed`` in a HandleFailures inside).
        events, self._events = [*self._events, *inner], []
        return sorted(events, key=lambda event: event.number)

    @property
    def counts(self) -> dict[str, int]:
        """Totals per event kind, this wrapper and the ones inside it."""
        totals = dict(self.inner.counts) if isinstance(self.inner, StrategyWrapper) else {}
        for kind, count in self._counts.items():
            totals[kind] = totals.get(kind, 0) + count
        return totals

    def describe(self) -> str:
        inner = self.inner.describe() if isinstance(self.inner, StrategyWrapper) else self.inner.name
        return f"{self.kind}({inner})"

    def unwrap(self) -> Strategy:
        """The innermost strategy."""
        return self.inner.unwrap() if isinstance(self.inner, StrategyWrapper) else self.inner

    def summary(self) -> dict[str, float]:
        inner = self.inner.summary() if isinstance(self.inner, StrategyWrapper) else checked_summary(self.inner.summary(), type(self.inner))
        return {**inner, **{f"{self.kind}_{k}": float(v) for k, v in self._counts.items()}}

    # ----------------------------------------------------------------- state

    def _wrapper_state(self) -> dict[str, Any]:
        return {
            "wrapper": self.kind,
            "inner": self.inner.state_dict(),
            "ledger": self._ledger.to_state(),
            "events": [event.to_dict() for event in self._events],
            "counts": dict(self._counts),
            "asked": self._asked,
        }

    def _load_wrapper_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("wrapper") != self.kind:
            raise ValueError(f"this checkpoint is not a {self.kind} wrapper's state (found {state.get('wrapper') if isinstance(state, dict) else type(state).__name__!r})")
        self.inner.load_state_dict(state["inner"])
        self._ledger = _Ledger.from_state(state["ledger"])
        self._events = [WrapperEvent.from_dict(e) for e in state["events"]]
        self._counts = {str(k): int(v) for k, v in state["counts"].items()}
        self._asked = int(state.get("asked", -1))  # absent in runs before it was checked


# --------------------------------------------------------------------------- de-duplication


class Deduplicate(StrategyWrapper):
    """Never hands out an architecture twice (see the module docstring).

    ``key`` maps indices to an architecture fingerprint (several index vectors may build the
    same network, e.g. ``lambda ix: space.decode(ix).fingerprint()``; for a cell space
    ``space.decode``). Every status is reused (an infeasible or failed architecture stays so);
    ``reuse_failures=False`` lets a failed architecture be proposed again.
    """

    kind = "deduplicate"

    def __init__(self, inner: Strategy, key: Callable[[tuple[int, ...]], str], max_consecutive_duplicates: int = 1000, reuse_failures: bool = True) -> None:
        super().__init__(inner)
        if isinstance(max_consecutive_duplicates, bool) or not isinstance(max_consecutive_duplicates, int) or max_consecutive_duplicates < 1:
            raise ValueError(f"max_consecutive_duplicates must be a whole number >= 1, got {max_consecutive_duplicates!r}")
        self.key = key
        self.max_consecutive_duplicates = max_consecutive_duplicates
        self.reuse_failures = reuse_failures
        self._known: dict[str, tuple[int, Observation]] = {}
        # _known as saved, kept beside it (see _know): full chunks of rows encoded once, then the rest
        self._known_chunks: list[str] = []
        self._known_rows: list[list[Any]] = []
        self._in_flight: dict[str, int] = {}
        self._waiting: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
        self._consecutive = 0

    def _key(self, indices: tuple[int, ...]) -> str:
        return str(self.key(indices))

    def lookup(self, indices: Sequence[int]) -> Observation | None:
        """The known observation of the architecture ``indices`` builds, if any."""
        known = self._known.get(self._key(tuple(int(i) for i in indices)))
        return None if known is None else known[1]

    @property
    def num_known(self) -> int:
        """Distinct architectures with a known result."""
        return len(self._known)

    def remember(self, indices: Sequence[int], observation: Observation, number: int = -1) -> None:
        """Record a result obtained elsewhere (a previous run), so it is reused, never re-run."""
        self._know(self._key(tuple(int(i) for i in indices)), number, observation)

    def _know(self, key: str, number: int, observation: Observation) -> None:
        # The first result of an architecture is the one reused. Its saved form is made once here, not
        # for every architecture at every checkpoint (a checkpoint per proposal: that was quadratic),
        # and every KNOWN_CHUNK rows are encoded into one string, which a checkpoint copies whole
        # (pickling thousands of rows at every checkpoint was still most of a long tabular search).
        if key not in self._known:
            self._known[key] = (number, observation)
            self._known_rows.append([key, int(number), _plain_observation(observation)])
            if len(self._known_rows) >= KNOWN_CHUNK:
                self._known_chunks.append(json.dumps(self._known_rows))
                self._known_rows = []

    def _reused(self, observation: Observation, twin: int) -> Observation:
        return Observation(observation.reward, observation.accuracy, observation.latency_ms, observation.status, {"duplicate_of": twin})

    def ask(self) -> Proposal:
        while True:
            proposal = self._ask_inner()
            key = self._key(proposal.indices)
            if key in self._known:
                twin, observation = self._known[key]
                reused = self._reused(observation, twin)
                self.inner.tell(proposal.number, reused)
                self._record(WrapperEvent("duplicate", proposal.number, proposal.indices, reused, key, twin))
            elif key in self._in_flight:
                self._waiting.setdefault(key, []).append((proposal.number, proposal.indices))
                self._record(WrapperEvent("waiting", proposal.number, proposal.indices, None, key, self._in_flight[key]))
            else:
                self._in_flight[key] = proposal.number
                self._ledger.hand(proposal)
                self._consecutive = 0
                return proposal
            self._consecutive += 1
            if self._consecutive >= self.max_consecutive_duplicates:
                self._consecutive = 0
                # (a space of fewer architectures than that may simply be done: all its index vectors known)
                few = len(self._known) < min(FEW_DISTINCT, math.prod(self.num_options))
                raise SearchConverged(
                    f"the {self.inner.name or type(self.unwrap()).__name__} strategy proposed {self.max_consecutive_duplicates} already-evaluated architectures in a row "
                    + (f"after only {len(self._known)} distinct one{'' if len(self._known) == 1 else 's'}: does it keep proposing the same architectures whatever it is told?"
                       if few else f"({len(self._known)} distinct ones evaluated): the search has converged")
                )

    def tell(self, number: int, observation: Observation) -> None:
        indices = self._ledger.take(number, observation, self.kind)
        key = self._key(indices)
        self.inner.tell(number, observation)
        del self._ledger.handed[number]
        self._in_flight.pop(key, None)
        if observation.status != STATUS_FAILED or self.reuse_failures:
            self._know(key, number, observation)
        for waiting_number, waiting_indices in self._waiting.pop(key, []):
            reused = self._reused(observation, number)
            self.inner.tell(waiting_number, reused)
            self._record(WrapperEvent("reused", waiting_number, waiting_indices, reused, key, number))

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._wrapper_state(),
            "known_chunks": list(self._known_chunks),  # rows are never changed, only added
            "known": list(self._known_rows),
            "in_flight": dict(self._in_flight),
            "waiting": {key: [[n, list(ix)] for n, ix in items] for key, items in self._waiting.items()},
            "consecutive": self._consecutive,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_wrapper_state(state)
        self._known, self._known_chunks, self._known_rows = {}, [], []
        rows = [row for chunk in state.get("known_chunks", []) for row in json.loads(chunk)]  # absent before chunks
        for key, twin, obs in [*rows, *state["known"]]:
            self._know(str(key), int(twin), observation_from_dict(obs))
        self._in_flight = {str(k): int(v) for k, v in state["in_flight"].items()}
        self._waiting = {str(k): [(int(n), tuple(int(i) for i in ix)) for n, ix in items] for k, items in state["waiting"].items()}
        self._consecutive = int(state["consecutive"])

    def summary(self) -> dict[str, float]:
        return {**super().summary(), "distinct_evaluated": float(len(self._known))}


def _plain_observation(observation: Observation) -> dict[str, Any]:
    """:func:`observation_to_dict` with numbers as Python floats (JSON-encodable, a numpy float32 too)."""
    data = observation_to_dict(observation)
    for name in ("reward", "accuracy", "latency_ms"):
        if data[name] is not None:
            data[name] = float(data[name])
    return data


# --------------------------------------------------------------------------- latency filter


#: How often a :class:`LatencyFilter` that rejects proposal after proposal says so (``on_rejections``).
REJECTIONS_BETWEEN_CALLS = 50


class LatencyFilter(StrategyWrapper):
    """Rejects proposals whose table latency exceeds ``limit_ms`` before they are evaluated.

    ``latency_ms`` maps indices to the predicted latency (ms) of the architecture they build.
    A rejected proposal is told ``Observation(penalty, None, latency, 'infeasible')``; choose a
    ``penalty`` below every reward a feasible architecture can get (0 for MnasNet's rewards,
    whose values are accuracies scaled by a positive factor; a function of the latency for
    TuNAS's absolute reward, which is negative away from the target). After
    ``max_consecutive_rejections`` rejections in a row ``ask`` raises :class:`NoFeasibleProposal`.
    """

    kind = "latency_filter"

    def __init__(self, inner: Strategy, latency_ms: Callable[[tuple[int, ...]], float], limit_ms: float, penalty: Penalty = 0.0, max_consecutive_rejections: int = 10000) -> None:
        super().__init__(inner)
        if isinstance(limit_ms, bool) or not isinstance(limit_ms, int | float) or not math.isfinite(limit_ms) or limit_ms <= 0:
            raise ValueError(f"limit_ms must be a positive number of milliseconds, got {limit_ms!r}")
        if isinstance(max_consecutive_rejections, bool) or not isinstance(max_consecutive_rejections, int) or max_consecutive_rejections < 1:
            raise ValueError(f"max_consecutive_rejections must be a whole number >= 1, got {max_consecutive_rejections!r}")
        self.latency_ms = latency_ms
        self.limit_ms = float(limit_ms)
        self.penalty = _checked_penalty(penalty)
        self.max_consecutive_rejections = max_consecutive_rejections
        self._consecutive = 0
        #: called every :data:`REJECTIONS_BETWEEN_CALLS` rejections in a row (a progress bar's count moves while ``ask`` spins)
        self.on_rejections: Callable[[], None] | None = None

    def ask(self) -> Proposal:
        while True:
            proposal = self._ask_inner()
            latency = float(self.latency_ms(proposal.indices))
            if latency <= self.limit_ms:
                self._ledger.hand(proposal)
                self._consecutive = 0
                return proposal
            observation = Observation(_penalty_at(self.penalty, latency), None, latency, STATUS_INFEASIBLE, {"limit_ms": self.limit_ms})
            self.inner.tell(proposal.number, observation)
            self._record(WrapperEvent("rejected", proposal.number, proposal.indices, observation))
            self._consecutive += 1
            if self.on_rejections is not None and self._consecutive % REJECTIONS_BETWEEN_CALLS == 0:
                self.on_rejections()
            if self._consecutive >= self.max_consecutive_rejections:
                self._consecutive = 0
                raise NoFeasibleProposal(
                    f"the {self.inner.name} strategy proposed {self.max_consecutive_rejections} architectures over the "
                    f"{self.limit_ms:g} ms limit in a row; is the limit reachable in this space?"
                )

    def tell(self, number: int, observation: Observation) -> None:
        self._ledger.take(number, observation, self.kind)
        self.inner.tell(number, observation)
        del self._ledger.handed[number]

    def state_dict(self) -> dict[str, Any]:
        return {**self._wrapper_state(), "consecutive": self._consecutive}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_wrapper_state(state)
        self._consecutive = int(state["consecutive"])


# --------------------------------------------------------------------------- failures


class HandleFailures(StrategyWrapper):
    """Turns ``failed`` observations into reward ``penalty`` for the inner strategy.

    The original reward is kept in the observation's ``info['reported_reward']``.
    """

    kind = "handle_failures"

    def __init__(self, inner: Strategy, penalty: Penalty = 0.0) -> None:
        super().__init__(inner)
        self.penalty = _checked_penalty(penalty)

    def ask(self) -> Proposal:
        proposal = self._ask_inner()
        self._ledger.hand(proposal)
        return proposal

    def tell(self, number: int, observation: Observation) -> None:
        indices = self._ledger.take(number, observation, self.kind)
        if observation.status == STATUS_FAILED:
            info = {**observation.info, "reported_reward": observation.reward}
            observation = Observation(_penalty_at(self.penalty, observation.latency_ms), observation.accuracy, observation.latency_ms, STATUS_FAILED, info)
            self.inner.tell(number, observation)
            self._record(WrapperEvent("failed", number, indices, observation))
        else:
            self.inner.tell(number, observation)
        del self._ledger.handed[number]

    def state_dict(self) -> dict[str, Any]:
        return self._wrapper_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_wrapper_state(state)
