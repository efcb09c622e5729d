"""Shared book-keeping for strategies: numbering, pending proposals, state helpers, configs.

(:func:`check_tell` lives in :mod:`mobilenas.search.base`, for strategies of one's own too.)"""

from __future__ import annotations

import dataclasses
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mobilenas.errors import SpecError, did_you_mean
from mobilenas.search.base import Observation, Proposal, Strategy, check_tell


class BookkeepingStrategy(Strategy):
    """A :class:`Strategy` that numbers proposals 0, 1, 2, ... and checks every ``tell``.

    Subclasses implement :meth:`_propose` (indices plus a plain-data note kept until the tell,
    such as the log-probability under the policy that sampled it) and :meth:`_observe`.
    """

    def __init__(self, num_options: Sequence[int], seed: int = 0) -> None:
        super().__init__(num_options, seed)
        self._next_number = 0
        self._pending: dict[int, tuple[tuple[int, ...], Any]] = {}

    @abstractmethod
    def _propose(self, number: int) -> tuple[tuple[int, ...], Any]:
        """Indices for proposal ``number`` and a note (plain data) handed back to ``_observe``."""

    @abstractmethod
    def _observe(self, number: int, indices: tuple[int, ...], note: Any, observation: Observation) -> None:
        """Learn from the observation of proposal ``number``."""

    def ask(self) -> Proposal:
        number = self._next_number
        indices, note = self._propose(number)
        indices = tuple(int(i) for i in indices)
        assert len(indices) == len(self.num_options) and all(0 <= i < n for i, n in zip(indices, self.num_options, strict=True)), indices
        self._pending[number] = (indices, note)
        self._next_number += 1
        return Proposal(number, indices)

    def tell(self, number: int, observation: Observation) -> None:
        number = check_tell(number, self._pending, self._next_number, observation)
        indices, note = self._pending[number]
        # Popped only once the subclass accepted it, so a rejected tell can be corrected.
        self._observe(number, indices, note, observation)
        del self._pending[number]

    @property
    def pending_numbers(self) -> list[int]:
        """Numbers asked but not yet told."""
        return sorted(self._pending)

    def _bookkeeping_state(self) -> dict[str, Any]:
        return {"strategy": self.name, "num_options": list(self.num_options), "seed": self.seed, "next_number": self._next_number, "pending": [[n, list(ix), note] for n, (ix, note) in sorted(self._pending.items())]}

    def _load_bookkeeping(self, state: Mapping[str, Any]) -> None:
        check_state_matches(self, state)
        self._next_number = int(state["next_number"])
        self._pending = {int(n): (tuple(int(i) for i in ix), note) for n, ix, note in state["pending"]}


def check_state_matches(strategy: Strategy, state: Mapping[str, Any]) -> None:
    """Refuse a state saved by another strategy or for other decisions (a mixed-up checkpoint)."""
    if not isinstance(state, Mapping) or "strategy" not in state:
        raise ValueError(f"not a saved {strategy.name} strategy state")
    if state["strategy"] != strategy.name:
        raise ValueError(f"this checkpoint holds a {state['strategy']!r} strategy, not {strategy.name!r}")
    if [int(n) for n in state["num_options"]] != list(strategy.num_options):
        raise ValueError(f"this checkpoint is for decisions with {list(state['num_options'])} options, not {list(strategy.num_options)}")


def observation_to_dict(observation: Observation) -> dict[str, Any]:
    """The plain-data part of an observation (``info`` is dropped: it may hold anything)."""
    return {"reward": observation.reward, "accuracy": observation.accuracy, "latency_ms": observation.latency_ms, "status": observation.status}


def observation_from_dict(data: Mapping[str, Any]) -> Observation:
    return Observation(reward=float(data["reward"]), accuracy=data["accuracy"], latency_ms=data["latency_ms"], status=str(data["status"]))


def numpy_rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """A generator's state as plain data (ints and strings)."""
    return dict(rng.bit_generator.state)


def numpy_rng_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = dict(state)
    return rng


# --------------------------------------------------------------------------- configs


def check_positive(strategy: str, name: str, value: float, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise SpecError(f"{strategy}.{name}", f"must be a number {bound}, got {value!r}")


def check_whole(strategy: str, name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise SpecError(f"{strategy}.{name}", f"must be a whole number >= {minimum}, got {value!r}")


def check_fraction(strategy: str, name: str, value: float, open_low: bool = False, open_high: bool = False) -> None:
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not (low_ok and high_ok):
        interval = ("(" if open_low else "[") + "0, 1" + (")" if open_high else "]")
        raise SpecError(f"{strategy}.{name}", f"must be a number in {interval}, got {value!r}")


def _coerce(strategy: str, name: str, annotation: str, value: Any) -> Any:
    """Turn a command-line string into the field's type (``"0.01"`` -> 0.01); other values pass."""
    if not isinstance(value, str):
        return value
    kinds = [part.strip() for part in str(annotation).split("|")]
    if "None" in kinds and value.lower() in ("none", "null"):
        return None
    if "bool" in kinds:
        if value.lower() in ("true", "1", "yes", "on"):
            return True
        if value.lower() in ("false", "0", "no", "off"):
            return False
        raise SpecError(f"{strategy}.{name}", f"expected true or false, got {value!r}")
    if "int" in kinds:
        try:
            return int(value)
        except ValueError:
            raise SpecError(f"{strategy}.{name}", f"expected a whole number, got {value!r}") from None
    if "float" in kinds:
        try:
            return float(value)
        except ValueError:
            raise SpecError(f"{strategy}.{name}", f"expected a number, got {value!r}") from None
    return value


def _annotation(kind: Any) -> str:
    """A field's type as text, ``"float"`` or ``"int | None"``, whether it was written under
    ``from __future__ import annotations`` (a string) or not (``float``, ``int | None``)."""
    return kind if isinstance(kind, str) else getattr(kind, "__name__", None) or str(kind)


def config_from_mapping(strategy: str, cls: type[Any], data: Mapping[str, Any]) -> Any:
    """Build config ``cls`` from a mapping (JSON or ``key=value`` strings), naming bad keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SpecError(f"{strategy}.{unknown[0]}", f"unknown option{did_you_mean(unknown[0], fields)} (known: {', '.join(fields) or 'none'})")
    values = {name: _coerce(strategy, name, _annotation(fields[name].type), value) for name, value in data.items()}
    return cls(**values)


# --------------------------------------------------------------------------- torch helpers


def torch_generator(seed: int) -> Any:
    """A CPU ``torch.Generator`` seeded with ``seed`` (never the global one)."""
    import torch

    return torch.Generator().manual_seed(int(seed))


def init_uniform_(module: Any, bound: float, generator: Any) -> None:
    """Initialise every parameter of ``module`` uniformly in [-bound, bound] from ``generator``.

    Done by hand so that building a policy never touches PyTorch's global random state.
    """
    import torch

    with torch.no_grad():
        for parameter in module.parameters():
            parameter.uniform_(-bound, bound, generator=generator)


def clone_state(state: Any) -> Any:
    """A deep copy in which tensors are detached clones (a snapshot, not a view of live weights)."""
    import copy

    import torch

    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {key: clone_state(value) for key, value in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(clone_state(value) for value in state)
    return copy.deepcopy(state)
