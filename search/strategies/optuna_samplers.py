"""Optuna's TPE and NSGA-II behind the ask/tell contract.

Each decision is a categorical parameter ``d0``, ``d1``, ... with choices ``0 .. n-1``, asked
through Optuna's ask/tell API (``study.ask(fixed_distributions)``). Proposal numbers are Optuna's
trial numbers.

Optuna's storage is never authoritative: :meth:`state_dict` holds every trial (parameters,
values, state, and the system attributes the samplers keep there, such as NSGA-II's
generations) plus the study's system attributes; :meth:`load_state_dict` rebuilds an in-memory
study from them with ``study.add_trial(optuna.trial.create_trial(...))``. For exact
continuation after a reload, every ask uses a fresh sampler seeded from ``(seed, number)``, so
no hidden sampler random state has to be saved.

* ``tpe`` maximises the observation's ``reward`` (penalties included).
* ``nsga2`` is multi-objective: ``accuracy`` up, ``latency_ms`` down. Observations with status
  ``infeasible`` or ``failed`` are recorded with a constraint violation, so NSGA-II ranks them
  below every feasible architecture (constrained domination, Deb et al. 2002).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mobilenas.search.base import STATUS_OK, Observation
from mobilenas.search.strategies._common import (
    BookkeepingStrategy,
    check_fraction,
    check_state_matches,
    check_whole,
)

_STUDY_NAME = "mobilenas"
_CONSTRAINT_KEY = "constraints:status"  # what optuna.trial.Trial.set_constraint("status", v) writes


@dataclass(frozen=True)
class TPEConfig:
    """Optuna's TPESampler options.

    ``n_startup_trials``: random proposals before the model is used; ``n_ei_candidates``:
    candidates scored per parameter; ``multivariate``: model decisions jointly (Falkner et al.
    2018) rather than one by one; ``constant_liar``: treat running trials as bad, so
    asynchronous asks spread out. Optuna's defaults except ``multivariate=True``: measured on
    NAS-Bench-201 with de-duplication, independent TPE re-proposes known cells so often (~4,800
    proposals for 300 distinct queries) that a search took ~30x longer (Optuna's TPE costs
    O(trials) per ask) with no better regret.
    """

    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = True
    constant_liar: bool = True

    def __post_init__(self) -> None:
        check_whole("tpe", "n_startup_trials", self.n_startup_trials, minimum=0)
        check_whole("tpe", "n_ei_candidates", self.n_ei_candidates)
        for name in ("multivariate", "constant_liar"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"tpe.{name} must be true or false, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class NSGA2Config:
    """Optuna's NSGAIISampler options (Optuna's defaults).

    ``population_size``: proposals per generation (the first generation is random);
    ``crossover_prob``: chance that a child is bred by crossover rather than copied from a
    parent; ``swapping_prob``: chance that each decision comes from the other parent in a
    crossover; ``mutation_prob``: chance that each decision is redrawn at random (None: one over
    the number of decisions).
    """

    population_size: int = 50
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5
    mutation_prob: float | None = None

    def __post_init__(self) -> None:
        check_whole("nsga2", "population_size", self.population_size, minimum=2)
        check_fraction("nsga2", "crossover_prob", self.crossover_prob)
        check_fraction("nsga2", "swapping_prob", self.swapping_prob)
        if self.mutation_prob is not None:
            check_fraction("nsga2", "mutation_prob", self.mutation_prob)


def _plain(value: Any) -> Any:
    """``value`` if it is JSON data (what samplers put in system attributes), else an error."""
    json.dumps(value)
    return value


class OptunaStrategy(BookkeepingStrategy):
    """Common part of the Optuna strategies: the study, its rebuild, parameter naming."""

    directions: tuple[Literal["maximize", "minimize"], ...] = ("maximize",)

    def __init__(self, num_options: Sequence[int], seed: int = 0) -> None:
        super().__init__(num_options, seed)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._distributions: dict[str, Any] = {self.param_name(d): optuna.distributions.CategoricalDistribution(list(range(n))) for d, n in enumerate(self.num_options)}
        self._new_study()

    @staticmethod
    def param_name(decision: int) -> str:
        return f"d{decision}"

    def _new_study(self) -> None:
        import optuna

        self._storage = optuna.storages.InMemoryStorage()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.study = optuna.create_study(storage=self._storage, study_name=_STUDY_NAME, directions=list(self.directions), sampler=self._sampler(0))
        self._study_id = self._storage.get_study_id_from_name(_STUDY_NAME)

    def _sampler(self, number: int) -> Any:
        """The sampler for proposal ``number``, seeded from (seed, number)."""
        raise NotImplementedError

    def _sampler_seed(self, number: int) -> int:
        return int(np.random.SeedSequence([self.seed, number]).generate_state(1)[0])

    def _propose(self, number: int) -> tuple[tuple[int, ...], Any]:
        self.study.sampler = self._sampler(number)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self.study.ask(self._distributions)
        assert trial.number == number, (trial.number, number)
        return tuple(int(trial.params[self.param_name(d)]) for d in range(len(self.num_options))), None

    def _trial_id(self, number: int) -> int:
        return int(self._storage.get_trial_id_from_study_id_trial_number(self._study_id, number))

    def _tell_optuna(self, number: int, values: list[float]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.study.tell(number, values)

    # ----------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        trials = []
        for trial in self.study.get_trials(deepcopy=False):
            trials.append({
                "number": trial.number,
                "state": trial.state.name,
                "params": {name: int(value) for name, value in trial.params.items()},
                "values": None if trial.values is None else [float(v) for v in trial.values],
                "system_attrs": {key: _plain(value) for key, value in trial.system_attrs.items()},
            })
        study_attrs = {key: _plain(value) for key, value in self._storage.get_study_system_attrs(self._study_id).items()}
        return {**self._bookkeeping_state(), "trials": trials, "study_system_attrs": study_attrs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import optuna

        check_state_matches(self, state)
        trials = sorted(state["trials"], key=lambda t: int(t["number"]))
        if [int(t["number"]) for t in trials] != list(range(len(trials))):
            raise ValueError("the saved Optuna trials are not numbered 0..n-1")
        self._load_bookkeeping(state)
        self._new_study()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for saved in trials:
                trial_state = optuna.trial.TrialState[saved["state"]]
                self.study.add_trial(optuna.trial.create_trial(
                    state=trial_state,
                    params=dict(saved["params"]),
                    distributions={name: self._distributions[name] for name in saved["params"]},
                    values=saved["values"] if trial_state == optuna.trial.TrialState.COMPLETE else None,
                    system_attrs=dict(saved["system_attrs"]),
                ))
        for key, value in state["study_system_attrs"].items():
            self._storage.set_study_system_attr(self._study_id, key, value)

    def summary(self) -> dict[str, float]:
        import optuna

        complete = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return {"told": float(len(complete)), "pending": float(len(self._pending))}


class TPE(OptunaStrategy):
    """Tree-structured Parzen Estimator (Bergstra et al. 2011) maximising the reward."""

    name = "tpe"
    directions = ("maximize",)

    def __init__(self, num_options: Sequence[int], seed: int = 0, config: TPEConfig | None = None) -> None:
        self.config = config or TPEConfig()
        super().__init__(num_options, seed)

    def _sampler(self, number: int) -> Any:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.samplers.TPESampler(
                n_startup_trials=self.config.n_startup_trials,
                n_ei_candidates=self.config.n_ei_candidates,
                multivariate=self.config.multivariate,
                constant_liar=self.config.constant_liar,
                seed=self._sampler_seed(number),
            )

    def _observe(self, number: int, indices: tuple[int, ...], note: Any, observation: Observation) -> None:
        self._tell_optuna(number, [float(observation.reward)])

    def summary(self) -> dict[str, float]:
        import optuna

        complete = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        best = max((t.values[0] for t in complete), default=float("nan"))
        return {**super().summary(), "best_reward": float(best)}


class NSGA2(OptunaStrategy):
    """NSGA-II (Deb et al. 2002) on two objectives: accuracy (maximise), latency_ms (minimise)."""

    name = "nsga2"
    directions = ("maximize", "minimize")

    def __init__(self, num_options: Sequence[int], seed: int = 0, config: NSGA2Config | None = None) -> None:
        self.config = config or NSGA2Config()
        super().__init__(num_options, seed)

    def _sampler(self, number: int) -> Any:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.samplers.NSGAIISampler(
                population_size=self.config.population_size,
                crossover_prob=self.config.crossover_prob,
                swapping_prob=self.config.swapping_prob,
                mutation_prob=self.config.mutation_prob,
                seed=self._sampler_seed(number),
            )

    def _observe(self, number: int, indices: tuple[int, ...], note: Any, observation: Observation) -> None:
        ok = observation.status == STATUS_OK
        if ok and (observation.accuracy is None or observation.latency_ms is None):
            raise ValueError(f"nsga2 needs accuracy and latency_ms in every ok observation (proposal {number})")
        accuracy = observation.accuracy if observation.accuracy is not None else 0.0
        latency_ms = observation.latency_ms if observation.latency_ms is not None else 0.0
        # Violation 1 for infeasible/failed, 0 otherwise: constrained domination ranks them last.
        self._storage.set_trial_system_attr(self._trial_id(number), _CONSTRAINT_KEY, 0.0 if ok else 1.0)
        self._tell_optuna(number, [float(accuracy), float(latency_ms)])

    def pareto_front(self) -> list[tuple[int, tuple[int, ...], float, float]]:
        """``(number, indices, accuracy, latency_ms)`` of the feasible non-dominated trials."""
        front = []
        for trial in self.study.best_trials:
            if trial.system_attrs.get(_CONSTRAINT_KEY, 0.0) > 0:
                continue
            indices = tuple(int(trial.params[self.param_name(d)]) for d in range(len(self.num_options)))
            front.append((trial.number, indices, float(trial.values[0]), float(trial.values[1])))
        return sorted(front, key=lambda item: item[3])
