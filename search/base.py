"""The seams of the search: proposals, observations, and the ask/tell strategy contract.

A strategy sees only decisions (how many options each has) and what came back for each
proposal; it never sees an architecture, a latency table or a trainer. The orchestrator is the
only piece that sees everything.

Contract of :class:`Strategy` (enforced for every implementation by
:mod:`mobilenas.search.contract`, a test class to inherit):

* ``ask()`` returns a :class:`Proposal` whose ``indices`` has one entry per decision, each in
  ``range(num_options[d])``, and a ``number`` that is unique and increasing for that strategy.
* ``tell(number, observation)`` is called at most once per asked number, in any order, and
  possibly after further asks (asynchronous batches: the controller keeps proposing while
  earlier trials are still running). Telling an unknown or already-told number raises
  ``ValueError``.
* ``state_dict()`` returns plain data (JSON-serialisable values, lists, dicts, and
  ``torch.Tensor``s, saved with ``torch.save``) that captures everything, including random
  generators and proposals asked but not yet told. After ``load_state_dict(state)`` on a fresh
  instance built with the same arguments, the strategy behaves exactly as the original would
  have: the same next asks for the same tells. ``load_state_dict`` raises ``ValueError`` for a
  state that is not this strategy's.
* ``summary()`` returns named numbers (``{'entropy': 1.2}``), journaled with each result.
* Randomness comes only from the ``seed`` given to the constructor.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STATUS_OK = "ok"
STATUS_INFEASIBLE = "infeasible"  # rejected before training (over the latency budget by the table)
STATUS_FAILED = "failed"  # evaluation failed (diverged, crashed) after its retries
STATUSES = (STATUS_OK, STATUS_INFEASIBLE, STATUS_FAILED)
# The error of a training that --early-stopping's scheduler ended (status failed: the strategy is
# told the failure penalty), so that summaries count these apart from failures.
EARLY_STOPPED = "stopped early by the scheduler"


def stopped_early_words(count: int) -> str:
    """``'5 stopped early by --early-stopping, '`` for a summary's counts; empty for none."""
    return f"{count} stopped early by --early-stopping, " if count else ""


@dataclass(frozen=True)
class Proposal:
    """An architecture proposed by a strategy: one option index per decision."""

    number: int
    indices: tuple[int, ...]


@dataclass(frozen=True)
class Observation:
    """What came back for a proposal.

    ``reward`` is the scalar single-objective strategies maximise (already computed by the
    reward function, penalties included). ``accuracy`` (0..1) and ``latency_ms`` are given to
    multi-objective strategies (NSGA-II: accuracy up, latency down); ``None`` when unknown.
    """

    reward: float
    accuracy: float | None = None
    latency_ms: float | None = None
    status: str = STATUS_OK
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")
        if not math.isfinite(self.reward):
            raise ValueError(f"reward must be finite, got {self.reward}")


def check_tell(number: Any, pending: Mapping[int, Any], next_number: int, observation: Any) -> int:
    """Validate a ``tell`` against the proposals ``pending`` (keyed by number) when ``next_number`` is
    the next to be asked; return the number as an ``int``. Raises ``ValueError`` for a number never
    asked or already told and for malformed input, as the contract asks of every strategy."""
    if isinstance(number, bool) or not isinstance(number, numbers.Integral):  # numpy's integers too
        raise ValueError(f"a proposal number is an int, got {number!r}")
    if not isinstance(observation, Observation):
        raise ValueError(f"tell expects an Observation, got {type(observation).__name__}")
    number = int(number)
    if number not in pending:
        if 0 <= number < next_number:
            raise ValueError(f"proposal {number} was already told")
        raise ValueError(f"proposal {number} was never asked (asked so far: 0..{next_number - 1})")
    return number


def recorded_strategy_name(name: str) -> str:
    """``--strategy`` as a run records it: ``FILE.py:CLASS`` with the file's absolute path (a resume
    may start in another folder); built-in names and ``MODULE:CLASS`` as they are."""
    where, colon, cls_name = name.rpartition(":")
    if colon and where.endswith(".py"):
        from pathlib import Path

        return f"{Path(where).expanduser().resolve()}:{cls_name}"
    return name


def short_strategy_name(name: str) -> str:
    """A strategy's name for tables and legends: ``file.py:Class`` without the file's folder."""
    where, colon, cls_name = name.rpartition(":")
    return f"{where.replace(chr(92), '/').rpartition('/')[2]}:{cls_name}" if colon and where.endswith(".py") else name


class Strategy(ABC):
    """Ask/tell search strategy over categorical decisions (see the module docstring)."""

    #: the name used on the command line (``--strategy``)
    name: str = ""

    def __init__(self, num_options: Sequence[int], seed: int = 0) -> None:
        if not num_options or any(int(n) < 1 for n in num_options):
            raise ValueError(f"every decision needs at least one option, got {list(num_options)}")
        self.num_options = tuple(int(n) for n in num_options)
        self.seed = int(seed)

    @abstractmethod
    def ask(self) -> Proposal:
        """Propose the next architecture."""

    @abstractmethod
    def tell(self, number: int, observation: Observation) -> None:
        """Report what proposal ``number`` achieved."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this strategy is."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (on an instance built with the same arguments)."""

    def summary(self) -> dict[str, float]:
        """Scalars worth logging over time (entropy, baseline, ...); empty by default."""
        return {}


@dataclass(frozen=True)
class EvalResult:
    """What an evaluator found for one candidate.

    ``accuracy`` (fraction 0..1) is the selection signal: validation accuracy of a proxy training
    on the held-out split, or a tabular benchmark's reward column. ``final_accuracy`` is reported
    only, never used for selection (a tabular benchmark's final column; ``None`` for proxies).
    ``latency_ms`` is a latency the evaluator itself knows (a tabular benchmark's device column);
    ``None`` when latency comes from the lookup table instead.
    """

    accuracy: float
    wall_time_s: float = 0.0
    final_accuracy: float | None = None
    latency_ms: float | None = None
    status: str = STATUS_OK
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Evaluator(ABC):
    """Scores one candidate (an ``Architecture``, or a cell string for a tabular space).

    ``cheap`` evaluators (table look-ups) run in-process; expensive ones (training) run on the
    Ray executor. ``evaluate`` must not change the working directory or global state, and must
    report failures through ``status``/``error`` rather than raise when the candidate is at fault.
    """

    cheap: bool = False

    @abstractmethod
    def evaluate(self, candidate: Any, seed: int = 0) -> EvalResult:
        """Evaluate ``candidate`` (deterministically for a given ``seed``)."""
