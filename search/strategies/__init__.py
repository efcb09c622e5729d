"""Search strategies behind the ask/tell contract of mobilenas.search.base.Strategy.

========== ===================================================== =====================
name       strategy                                              config
========== ===================================================== =====================
ppo        MnasNet's controller: LSTM policy trained with PPO    :class:`PPOConfig`
reinforce  TuNAS's REINFORCE with independent per-decision logits :class:`ReinforceConfig`
evolution  regularized (aging) evolution                         :class:`EvolutionConfig`
random     uniform random search                                 :class:`RandomConfig`
tpe        Optuna's TPE sampler (maximises the reward)           :class:`TPEConfig`
nsga2      Optuna's NSGA-II (accuracy up, latency_ms down)        :class:`NSGA2Config`
========== ===================================================== =====================

``make_strategy(name, num_options, seed, config=None)`` builds one; ``config_from_dict(name,
data)`` builds its config from JSON or ``key=value`` command-line strings, and
``config_to_dict(config)`` is what a run manifest stores.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mobilenas.search.base import Strategy
from mobilenas.search.strategies._common import config_from_mapping
from mobilenas.search.strategies.evolution import EvolutionConfig, RegularizedEvolution
from mobilenas.search.strategies.optuna_samplers import NSGA2, TPE, NSGA2Config, TPEConfig
from mobilenas.search.strategies.ppo import LSTMPolicy, PPOConfig, PPOController
from mobilenas.search.strategies.random_search import RandomConfig, RandomSearch
from mobilenas.search.strategies.reinforce import Reinforce, ReinforceConfig


@dataclass(frozen=True)
class StrategyInfo:
    """A registered strategy: its class, config class and a one-line description."""

    name: str
    cls: Callable[..., Strategy]
    config_cls: type[Any]
    description: str


STRATEGIES: dict[str, StrategyInfo] = {
    info.name: info
    for info in (
        StrategyInfo("ppo", PPOController, PPOConfig, "MnasNet's controller: an LSTM policy trained with PPO"),
        StrategyInfo("reinforce", Reinforce, ReinforceConfig, "REINFORCE with independent per-decision logits (TuNAS)"),
        StrategyInfo("evolution", RegularizedEvolution, EvolutionConfig, "regularized (aging) evolution"),
        StrategyInfo("random", RandomSearch, RandomConfig, "uniform random search"),
        StrategyInfo("tpe", TPE, TPEConfig, "Optuna's TPE (maximises the reward)"),
        StrategyInfo("nsga2", NSGA2, NSGA2Config, "Optuna's NSGA-II (accuracy up, latency down)"),
    )
}


def _info(name: str) -> StrategyInfo:
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def make_strategy(name: str, num_options: Sequence[int], seed: int = 0, config: Any = None) -> Strategy:
    """Build strategy ``name`` over decisions with ``num_options`` options each.

    ``config`` is that strategy's config dataclass (``None``: its defaults).
    """
    info = _info(name)
    if config is not None and not isinstance(config, info.config_cls):
        raise ValueError(f"strategy {name!r} takes a {info.config_cls.__name__}, got {type(config).__name__}")
    return info.cls(num_options, seed, config)


def default_config(name: str) -> Any:
    return _info(name).config_cls()


def config_from_dict(name: str, data: Mapping[str, Any] | None) -> Any:
    """Strategy ``name``'s config from a mapping; strings (``"0.01"``, ``"true"``) are converted."""
    return config_from_mapping(name, _info(name).config_cls, data or {})


# The option that sets how many proposals a strategy draws at random before anything it has seen
# steers it (PPO and REINFORCE: the first policy update comes after one batch of results).
RANDOM_PHASE = {"ppo": "batch_size", "reinforce": "batch_size", "evolution": "population_size", "tpe": "n_startup_trials", "nsga2": "population_size"}


def random_phase(name: str, config: Any) -> tuple[str, int] | None:
    """``(option, proposals)``: how many of strategy ``name``'s first proposals are random draws
    (``None`` for random search, which is nothing else)."""
    option = RANDOM_PHASE.get(_info(name).name)
    return (option, int(getattr(config, option))) if option else None


def describe_options(name: str) -> list[dict[str, Any]]:
    """Strategy ``name``'s options: ``name``, ``default``, ``type`` and ``description``.

    The description is the clause of the config's docstring that explains the option: the one
    that starts with the option's name in double backquotes, else the first that mentions it
    (empty if none does).
    """
    config_cls = _info(name).config_cls
    defaults = config_cls()
    body = " ".join(line.strip() for line in (config_cls.__doc__ or "").splitlines()[1:])
    # Clauses: bullets ("* ``x``: ..."), "; ``x``: ..." parts, and sentences.
    clauses = [c.strip() for c in re.split(r"\s*\*\s+(?=``)|(?<=[.;])\s+(?=``)|(?<=\.)\s+(?=[A-Z])", body) if c.strip()]
    rows = []
    for field in dataclasses.fields(config_cls):
        quoted = f"``{field.name}``"
        text = next((c for c in clauses if c.startswith(quoted)), None) or next((c for c in clauses if quoted in c), "")
        rows.append({
            "name": field.name,
            "default": getattr(defaults, field.name),
            "type": str(field.type),
            "description": text.replace("``", "").rstrip(";"),
        })
    return rows


def config_to_dict(config: Any) -> dict[str, Any]:
    """The plain-data form of a config (for the run manifest)."""
    return dataclasses.asdict(config)


def parse_options(name: str, options: Sequence[str]) -> Any:
    """Strategy ``name``'s config from ``key=value`` strings (``--strategy-option lr=0.01``)."""
    data: dict[str, str] = {}
    for option in options:
        key, equals, value = option.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"strategy option {option!r} is not key=value (e.g. learning_rate=0.01)")
        data[key.strip()] = value.strip()
    return config_from_dict(name, data)


__all__ = [
    "NSGA2",
    "STRATEGIES",
    "TPE",
    "EvolutionConfig",
    "LSTMPolicy",
    "NSGA2Config",
    "PPOConfig",
    "PPOController",
    "RandomConfig",
    "RandomSearch",
    "RegularizedEvolution",
    "Reinforce",
    "ReinforceConfig",
    "StrategyInfo",
    "TPEConfig",
    "config_from_dict",
    "config_to_dict",
    "default_config",
    "describe_options",
    "make_strategy",
    "parse_options",
]
