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

A strategy of one's own is named ``MODULE:CLASS`` (an importable module) or ``FILE.py:CLASS``
wherever a name is taken (``nas-search --strategy my_strategy.py:Greedy``): a subclass of
:class:`mobilenas.search.base.Strategy` built as ``CLASS(num_options, seed, config)``, whose options,
if it has any, are the fields of the frozen dataclass in its ``config_cls`` attribute (``config`` is
then an instance of it, defaults filled in; otherwise ``None`` and it takes no options).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilenas.errors import did_you_mean
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


@dataclass(frozen=True)
class NoOptions:
    """This strategy has no options."""


_PLUGINS: dict[str, StrategyInfo] = {}


def is_plugin(name: str) -> bool:
    """Whether ``name`` names a strategy of one's own (``MODULE:CLASS`` or ``FILE.py:CLASS``)."""
    return ":" in name and name not in STRATEGIES


def unknown_strategy_message(name: str, known: Sequence[str]) -> str:
    """Why ``name`` names no strategy, and what to give: a ``.py`` file without its ``:CLASS`` is
    told the classes it defines."""
    if name.endswith(".py"):
        classes = _class_names(Path(name))
        example = f"e.g. {name}:{classes[0]}" if len(classes) == 1 else f"one of {', '.join(f'{name}:{c}' for c in classes)}" if classes else f"e.g. {name}:MyStrategy"
        return f"strategy {name!r} names a file but not its class: give FILE.py:CLASS, {example}"
    return f"unknown strategy {name!r}{did_you_mean(name, known)}: choose one of {', '.join(known)}, or give one of your own as FILE.py:CLASS or MODULE:CLASS"


def _class_names(path: Path) -> list[str]:
    """The classes defined at the top of the Python file ``path`` (none where it cannot be read)."""
    import ast

    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and not node.name.startswith("_")]
    strategies = [node for node in classes if any(ast.unparse(base).split(".")[-1].endswith("Strategy") for base in node.bases)]
    return [node.name for node in strategies or classes]


def _load_plugin(name: str) -> StrategyInfo:
    import hashlib
    import importlib
    import importlib.util
    import inspect
    import sys

    where, _, cls_name = name.rpartition(":")
    form = "give MODULE:CLASS (an importable module) or FILE.py:CLASS"
    if not where or not cls_name.isidentifier():
        raise ValueError(f"strategy {name!r}: {form}, e.g. my_strategy.py:Greedy")
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser()
            if not path.is_file():
                raise ValueError(f"strategy {name!r}: {path} is not a file; {form}")
            # one name per file, the same in every process: what a checkpoint pickled from it is found again
            module_name = f"mobilenas_strategy_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]}"
            # its folder is importable, as a script's is, so that it can import modules beside it
            # (appended: a file there never hides a module mobilenas itself imports)
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.append(folder)
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module  # dataclasses look their module up while the file runs
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
        else:
            try:
                module = importlib.import_module(where)
            except ModuleNotFoundError as error:
                if error.name and where.split(".")[0] == error.name.split(".")[0]:
                    raise ValueError(
                        f"strategy {name!r}: no module named {where!r} can be imported (is it installed? a file of "
                        f"your own is named by its path: --strategy path/to/{where.split('.')[-1]}.py:{cls_name})"
                    ) from None
                raise
    except ValueError:
        raise
    except (Exception, SystemExit) as error:  # the user's code failed while it was imported
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"strategy {name!r}: importing {where} failed: {type(error).__name__}{': ' + detail if detail else ''}") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ValueError(f"strategy {name!r}: {where} has no {cls_name!r}")
    if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
        raise ValueError(f"strategy {name!r}: {cls_name} is not a subclass of mobilenas.search.base.Strategy")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise ValueError(f"strategy {name!r}: {cls_name} does not implement {missing}")
    config_cls = getattr(cls, "config_cls", None)
    if config_cls is not None and not (inspect.isclass(config_cls) and dataclasses.is_dataclass(config_cls)):
        raise ValueError(f"strategy {name!r}: {cls_name}.config_cls must be a dataclass (its options), got {config_cls!r}")
    description = next((line.strip() for line in (cls.__doc__ or "").splitlines() if line.strip()), f"{cls_name} from {where}")
    return StrategyInfo(name, cls, config_cls or NoOptions, description)


def raised_by_plugin(error: BaseException) -> str | None:
    """The name of the strategy of one's own whose code ``error`` was raised in (a frame of its
    traceback lies in that strategy's file), or ``None``."""
    import inspect
    import traceback

    files = {}
    for name, info in _PLUGINS.items():
        try:
            files[str(Path(inspect.getfile(info.cls)).resolve())] = name
        except (TypeError, OSError):
            continue
    for frame in traceback.extract_tb(error.__traceback__):
        found = files.get(str(Path(frame.filename).resolve()))
        if found is not None:
            return found
    return None


def plugin_name(cls: type) -> str | None:
    """The name (``FILE.py:CLASS`` as given) of the strategy of one's own whose class is ``cls``, or ``None``."""
    return next((name for name, info in _PLUGINS.items() if info.cls is cls), None)


def _info(name: str) -> StrategyInfo:
    if name in STRATEGIES:
        return STRATEGIES[name]
    if not is_plugin(name):
        raise ValueError(unknown_strategy_message(name, list(STRATEGIES)))
    if name not in _PLUGINS:
        _PLUGINS[name] = _load_plugin(name)
    return _PLUGINS[name]


def make_strategy(name: str, num_options: Sequence[int], seed: int = 0, config: Any = None) -> Strategy:
    """Build strategy ``name`` over decisions with ``num_options`` options each.

    ``config`` is that strategy's config dataclass (``None``: its defaults).
    """
    info = _info(name)
    if config is not None and not isinstance(config, info.config_cls):
        raise ValueError(f"strategy {name!r} takes a {info.config_cls.__name__}, got {type(config).__name__}")
    if info.config_cls is NoOptions:
        config = None  # a strategy of one's own without options is given none
    try:
        strategy = info.cls(num_options, seed, config)
    except TypeError as error:
        if error.__traceback__ is None or error.__traceback__.tb_next is not None or not is_plugin(name):
            raise  # raised inside the constructor: its own traceback says where
        raise ValueError(f"strategy {name!r}: {error}; a strategy is built as CLASS(num_options, seed, config), so its __init__ takes those three") from None
    if not isinstance(strategy, Strategy):
        raise ValueError(f"strategy {name!r} built a {type(strategy).__name__}, not a Strategy")
    return strategy


def code_fingerprint(name: str) -> str | None:
    """For a strategy of one's own, the sha256 of the file its class is defined in (what a run
    records, to tell on resume that the code changed); ``None`` for a built-in one."""
    if not is_plugin(name):
        return None
    import hashlib
    import inspect

    return hashlib.sha256(Path(inspect.getfile(_info(name).cls)).read_bytes()).hexdigest()


def strategy_class(name: str) -> type[Strategy]:
    """The class of strategy ``name`` (one of one's own is loaded, and checked, here)."""
    return _info(name).cls  # type: ignore[return-value]


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
    lines = (config_cls.__doc__ or "").splitlines()
    # the summary line is skipped, unless it is all there is (a one-line docstring of one's own)
    body = " ".join(line.strip() for line in (lines[1:] if any(line.strip() for line in lines[1:]) else lines))
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
    "code_fingerprint",
    "config_from_dict",
    "config_to_dict",
    "default_config",
    "describe_options",
    "is_plugin",
    "make_strategy",
    "parse_options",
    "plugin_name",
    "raised_by_plugin",
    "strategy_class",
]
