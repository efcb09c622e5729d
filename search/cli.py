"""``nas-search``: latency-aware architecture search (MnasNet), end to end.

    nas-search --target-latency 15ms

searches the ``mobilenetv3`` space with MnasNet's PPO-trained LSTM controller and soft reward
on the built-in synthetic data set, scoring latency with a lookup table for this machine (built
lazily, measured on demand), and writes ``results/runs/<run-id>/`` with ``best.json`` and the
Pareto front. ``--resume DIR`` continues a killed run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

from mobilenas.cliutil import (
    ArgumentParser,
    add_json_flag,
    add_version_flag,
    check_writable_folder,
    count_done_before,
    duration_ms,
    latency_threads_note,
    nonnegative_int,
    positive_float,
    positive_int,
    print_json,
    progress,
    refuse_changed_on_resume,
    refuse_ineffective,
    resume_hint,
    run_main,
    seed_number,
    set_interrupt_note,
    set_resume_hint,
    stdout_kept_for_json,
    time_limit_s,
)
from mobilenas.errors import UsageError
from mobilenas.runs import RunDir, absolute_path, new_run_id, tables_folder_words
from mobilenas.train.choices import (
    PROXY_BATCH_SIZE,
    PROXY_STEPS,
    PROXY_TRAIN_SUBSET,
    PROXY_VAL_SUBSET,
)
from mobilenas.units import counted, format_ms, format_time_limit

DEFAULT_OUT_ROOT = Path("results") / "runs"
NETWORK_SPACES = ("mobilenetv3", "mnasnet", "mnasnet-relu6")
STRATEGY_NAMES = ("ppo", "reinforce", "evolution", "random", "tpe", "nsga2")
REWARD_KINDS = ("soft", "hard", "custom", "absolute")
BACKENDS = ("onnxruntime", "torch", "command")

# Options whose value a resumed run may change; everything else comes from the run's manifest.
RESUME_OVERRIDES = ("workers", "ray_address", "samples", "time_limit", "quiet", "json", "retries", "cpus_per_trial")

EPILOG = """\
examples:
  nas-search --target-latency 15ms
  nas-search --target-latency 8ms --strategy evolution --samples 60 --workers 2
  nas-search --target-latency 25ms --dataset cifar10 --data-dir ~/data --proxy-steps 600
  nas-search --space nb201 --benchmark nb201_cifar10_dev.csv.gz --latency-column latency_ms_raspi4 \\
             --target-latency 20ms --samples 300
  nas-search --resume results/runs/search-20261129-101500-ab12
  nas-search --target-latency 15ms --samples 2000 --time-limit 8h   # whichever comes first
  nas-search --target-latency 15ms --strategy my_strategy.py:Mine   # your own Strategy subclass

The run directory holds manifest.json, events.jsonl (one line per proposal and result),
strategy.pt, trials.csv, pareto.csv and best.json (architecture, accuracy, latency_ms,
measured_latency_ms, target_latency_ms, reward, weights).
"""


def build_parser(prog: str) -> ArgumentParser:
    p = ArgumentParser(prog=prog, description="Latency-aware neural architecture search (MnasNet's controller and reward).", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_flag(p)
    p.unknown_option_hints.update({
        "--threads": "say which threads: --latency-threads N (the latency measurements) or --cpus-per-trial N (each proxy training)",
        "--device": "nas-search's proxy trainings run on the CPU (nas-train and netadapt refine take --device cuda); --device-name names the device a --backend command measures on",
    })
    S = argparse.SUPPRESS
    g = p.add_argument_group("target and reward")
    g.add_argument("--target-latency", type=duration_ms, default=S, metavar="DURATION", help="latency target on the device, e.g. 15ms or 0.015s (a bare number is milliseconds; required unless --resume)")
    g.add_argument("--reward", choices=REWARD_KINDS, default=S, help="soft: ACC*(LAT/T)^-0.07 (default; the target does not change its ranking, so it is no limit); hard: alpha=0, beta=-1; custom: exponent --w; absolute: TuNAS ACC+beta*|LAT/T-1|")
    g.add_argument("--w", type=float, metavar="W", default=S, help="exponent of the custom reward, -10 to 0 (MobileNetV3-Small used -0.15)")
    g.add_argument("--beta", type=float, metavar="BETA", default=S, help="beta of the absolute reward, -10 to 0 (default -0.1)")
    g.add_argument("--max-latency-ratio", type=positive_float, default=S, metavar="R", help="reject, before training, architectures whose table latency exceeds R x target (default: no filter)")

    g = p.add_argument_group("search")
    g.add_argument("--space", default=S, metavar="SPACE", help=f"search space: {', '.join(NETWORK_SPACES)}, nb201 (needs --benchmark), a space .json, or a search run's folder for the space it searched (default mobilenetv3)")
    g.add_argument(
        "--strategy", type=_strategy_name, default=S, metavar="STRATEGY",
        help="ppo (MnasNet's LSTM controller, default), reinforce, evolution, random, tpe, nsga2, or one of your own: "
        "FILE.py:CLASS or MODULE:CLASS (a mobilenas.search.base.Strategy; see the README)",
    )
    g.add_argument("--strategy-option", action="append", default=S, metavar="KEY=VALUE", help="a strategy setting, e.g. learning_rate=0.001 (repeatable); 'help' lists the strategy's settings and defaults")
    g.add_argument("--samples", type=positive_int, default=S, metavar="N", help="architectures to evaluate (default 24; 300 for a tabular benchmark)")
    g.add_argument("--seed", type=seed_number, metavar="N", default=S, help="seed of the strategy, the data split and every training (default 0)")
    g.add_argument(
        "--time-limit", type=time_limit_s, metavar="DURATION", default=S,
        help="propose nothing new after this long, e.g. 8h, 30min or 90s: trainings already running finish, then the search "
        "ends with its summary and best.json as if its samples were done; --resume continues it, with the limit afresh "
        "(--time-limit none lifts it; default: no limit)",
    )

    g = p.add_argument_group("proxy training (network spaces)")
    g.add_argument("--dataset", default=S, metavar="NAME_OR_PATH", help="synthetic (built in, default), cifar10, an image folder, or an .npz file")
    g.add_argument("--data-dir", default=S, metavar="DIR", help="where the data set lies (e.g. the folder holding cifar-10-batches-py)")
    g.add_argument("--train-size", type=positive_int, metavar="N", default=S, help=f"training images each proxy training draws its batches from (default {PROXY_TRAIN_SUBSET})")
    g.add_argument("--val-size", type=positive_int, metavar="N", default=S, help=(
        f"validation images, carved from the training set, that the reward is measured on (default: 10%% of the training set is held out"
        f" and the reward measured on {PROXY_VAL_SUBSET} of them, or all where fewer; nas-train and netadapt refine of the result hold out the same and use all)"))
    g.add_argument("--proxy-steps", type=positive_int, metavar="N", default=S, help=f"optimisation steps of {PROXY_BATCH_SIZE} images in each proxy training (default {PROXY_STEPS})")
    g.add_argument("--early-stopping", action="store_true", default=S, help=(
        "stop hopeless proxy trainings early (ASHA on the training loss: only the better half goes on at a quarter and at half "
        "of the steps, so about 1 in 4 finishes; a stopped one is told to the strategy as a failure and counted apart)"
    ))

    g = p.add_argument_group("tabular benchmark (--space nb201)")
    g.add_argument("--benchmark", default=S, metavar="CSV", help="a NAS-Bench-201-style CSV (arch_str, accuracy and latency_ms_* columns); implies --space nb201")
    g.add_argument("--reward-column", default=S, metavar="COLUMN", help="accuracy column used as reward (default val_acc_12ep)")
    g.add_argument("--final-column", default=S, metavar="COLUMN", help="accuracy column reported, never used for selection (default test_acc_200ep)")
    g.add_argument("--latency-column", default=S, metavar="COLUMN", help="latency column, i.e. the device (e.g. latency_ms_raspi4)")
    g.add_argument("--accuracy-unit", choices=("percent", "fraction"), default=S, help="how the CSV's accuracy columns are written: percent (85.3, default, as NAS-Bench-201) or fraction (0.853)")

    g = p.add_argument_group("latency")
    g.add_argument("--table", "--latency-table", dest="latency_table", default=S, metavar="PATH", help=f"lookup table (default: one per space and device under {tables_folder_words()}, built lazily)")
    g.add_argument("--backend", "--latency-backend", dest="latency_backend", choices=BACKENDS, default=S, help="how latency is measured: onnxruntime (default), torch, or command")
    g.add_argument("--command", "--latency-command", dest="latency_command", default=S, metavar="TEMPLATE", help="for --backend command: a command run on {model} (an .onnx file) that prints milliseconds")
    g.add_argument("--device-name", default=S, metavar="NAME", help="name of the device a --command backend measures (as given to nas-latency build)")
    g.add_argument("--latency-threads", dest="threads", type=positive_int, metavar="N", default=S, help="threads of the latency measurements (default 1, like MnasNet's single big core)")
    g.add_argument("--input-size", type=positive_int, metavar="PX", default=S, help="deployment input resolution the latency is measured at (default: the --table's, else 224)")
    g.add_argument("--force-device", action="store_true", default=S, help="use a latency table measured on another device")

    g = p.add_argument_group("execution (proxy trainings; a tabular search looks up its table in this process)")
    g.add_argument("--workers", type=positive_int, metavar="N", default=S, help="proxy trainings at once (default: CPU cores / --cpus-per-trial, at most 8)")
    g.add_argument("--cpus-per-trial", type=positive_float, metavar="CPUS", default=S, help="CPUs (and torch threads) of each proxy training (default 1)")
    g.add_argument("--ray-address", default=S, metavar="ADDR", help="join this Ray cluster (HOST:PORT, or auto: RAY_ADDRESS or the last ray start here) instead of starting a local one on 127.0.0.1")
    g.add_argument("--retries", type=nonnegative_int, metavar="N", default=S, help="restarts of a crashed trial before it is recorded as failed (default 2)")
    g.add_argument("--executor", choices=("ray", "inline"), default=S, help="ray: proxy trainings on Ray Tune (default); inline: in this process, one at a time")

    g = p.add_argument_group("output")
    g.add_argument("--out", default=S, metavar="DIR", help="run directory (default results/runs/<run-id>)")
    g.add_argument("--resume", default=S, metavar="DIR", help="continue the run in DIR with its own arguments")
    g.add_argument("--keep-weights", choices=("best", "all"), default=S, help="keep the weights of the best trial only (default) or of every trial")
    g.add_argument("--no-measure", action="store_true", default=S, help="do not measure the best architecture's latency end to end at the end")
    g.add_argument("--quiet", action="store_true", default=S, help="no progress bar")
    add_json_flag(p)
    p.set_defaults(json=False)
    return p


DEFAULTS: dict[str, Any] = {
    "reward": "soft", "w": None, "beta": None, "max_latency_ratio": None, "space": "mobilenetv3", "strategy": "ppo",
    "strategy_option": [], "samples": None, "seed": 0, "dataset": "synthetic", "data_dir": None, "train_size": None,
    "val_size": None, "proxy_steps": None, "early_stopping": False, "benchmark": None, "reward_column": "val_acc_12ep",
    "final_column": "test_acc_200ep", "latency_column": None, "accuracy_unit": "percent", "latency_table": None, "latency_backend": "onnxruntime",
    "latency_command": None, "device_name": None, "threads": 1, "input_size": 224, "force_device": False, "workers": None, "cpus_per_trial": 1.0,
    "ray_address": None, "retries": 2, "executor": "ray", "time_limit": None, "out": None, "keep_weights": "best", "no_measure": False, "quiet": False,
}

NETWORK_ONLY = (
    "dataset", "data_dir", "train_size", "val_size", "proxy_steps", "early_stopping", "latency_table", "latency_backend",
    "latency_command", "device_name", "threads", "input_size", "force_device", "keep_weights", "no_measure",
)
TABULAR_ONLY = ("reward_column", "final_column", "latency_column", "accuracy_unit")
# how trainings are spread over processes: a tabular search's lookups run in this process, in turn
EXECUTION = ("workers", "cpus_per_trial", "ray_address", "retries", "executor")


def resolve_config(given: dict[str, Any], typed: Collection[str] | None = None) -> dict[str, Any]:
    """Options as typed, completed with defaults; checks that the combination makes sense.

    ``typed``: the options typed on this command line (default: all of ``given``); on a resume,
    ``given`` also holds the run's recorded options, which are not checked again.
    """
    config = {**DEFAULTS, **given}
    typed = set(given if typed is None else typed)
    if config.get("target_latency") is None:
        raise UsageError("--target-latency is required (e.g. --target-latency 15ms), unless you --resume a run")
    if config["benchmark"] and "space" not in typed and config["space"] == DEFAULTS["space"]:
        config["space"] = "nb201"  # a tabular benchmark is a search over its own cell space
    tabular = config["space"] == "nb201"
    if tabular and not config["benchmark"]:
        raise UsageError("--space nb201 needs --benchmark CSV (a NAS-Bench-201 table such as nb201_cifar10_dev.csv.gz)")
    if config["benchmark"] and not tabular:
        raise UsageError(f"--benchmark is for the tabular space nb201, not --space {config['space']}; drop --space or give --space nb201")
    if not tabular and config["latency_table"] and "input_size" not in given:  # (a resumed run gives its own)
        from mobilenas.latency.table import table_input_size

        # a table's own size, as nas-latency predict and netadapt take it (a 64 px table was refused for not being 224 px)
        config["input_size"] = table_input_size(Path(config["latency_table"]).expanduser()) or DEFAULTS["input_size"]
    # options of the other kind of search would be silently ignored: refuse them instead
    ignored = [key for key in (NETWORK_ONLY if tabular else TABULAR_ONLY) if config[key] != DEFAULTS[key]]
    refuse_ineffective(ignored, "on a tabular search (accuracy and latency come from --benchmark)" if tabular else "without --space nb201 --benchmark CSV")
    if tabular:
        refuse_ineffective([key for key in EXECUTION if key in typed], "on a tabular search (its table lookups run in this process, one at a time)")
    if config["executor"] == "inline":  # --cpus-per-trial still sets the training threads
        inline = [key for key in ("workers", "ray_address", "retries", "early_stopping") if key in typed]  # early stopping: a Tune scheduler's
        refuse_ineffective(inline, "with --executor inline (trainings run in this process, one at a time)", alternative=", or drop --executor inline" if "executor" in typed else "")
    if "early_stopping" in typed and config["proxy_steps"] == 1:  # ASHA compares trainings part-way: one step has no part-way
        refuse_ineffective(["early_stopping"], "with --proxy-steps 1 (it stops a training part-way, by its loss against the others')", alternative=", or give more --proxy-steps")
    if config["reward"] == "custom" and config["w"] is None:
        raise UsageError("--reward custom needs --w (e.g. --w -0.15)")
    if config["w"] is not None and config["reward"] != "custom":
        raise UsageError("--w sets the exponent of --reward custom; add --reward custom")
    if config["beta"] is not None and config["reward"] != "absolute":
        raise UsageError("--beta sets the penalty of --reward absolute; add --reward absolute")
    if config["latency_backend"] == "command" and not config["latency_command"]:
        raise UsageError("--backend command needs --command 'your_tool {model}'")
    if config["samples"] is None:
        config["samples"] = 300 if tabular else 24
    if tabular:  # recorded as what happens
        config.update(workers=1, executor="inline")
    elif config["workers"] is None:
        config["workers"] = max(1, min(8, int((os.cpu_count() or 1) // config["cpus_per_trial"])))
    return config


# --------------------------------------------------------------------------- building the pieces


def _reward(config: dict[str, Any]) -> Any:
    from mobilenas.search.rewards import RewardSpec

    return RewardSpec.from_options(config["reward"], w=config["w"], beta=config["beta"])


def _strategy_name(text: str) -> str:
    """--strategy: a built-in name, or FILE.py:CLASS (its path made absolute, for a resume from
    elsewhere) or MODULE:CLASS; the class is loaded, and checked, with the strategy's options."""
    if text in STRATEGY_NAMES:
        return text
    if ":" not in text:
        from mobilenas.search.strategies import unknown_strategy_message

        raise argparse.ArgumentTypeError(unknown_strategy_message(text, STRATEGY_NAMES))
    from mobilenas.search.base import recorded_strategy_name

    return recorded_strategy_name(text)


def _strategy_config(config: dict[str, Any]) -> Any:
    """The strategy's options, checked (before any data, table or measurement work)."""
    from mobilenas.search.strategies import config_from_dict

    options: dict[str, str] = {}
    for item in config["strategy_option"] or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key:
            raise UsageError(f"--strategy-option expects KEY=VALUE, got {item!r}")
        options[key.strip()] = value.strip()
    return config_from_dict(config["strategy"], options)


def _note_random_phase(config: dict[str, Any], strategy_config: Any) -> None:
    """Say so when --samples ends before the strategy has learned anything (nsga2's population of
    50 against the 24 samples of a network search): the run is then a random search."""
    from mobilenas.search.strategies import random_phase

    phase = random_phase(config["strategy"], strategy_config)
    if phase is not None and config["samples"] <= phase[1]:
        option, count = phase
        print(
            f"note: --samples {config['samples']} ends within {config['strategy']}'s first {count} proposals ({option}), which nothing it"
            f" has learned steers yet: this search is a random search; raise --samples or lower {option} (--strategy-option {option}=N)",
            file=sys.stderr,
        )


def _note_poor_target(setup: Setup) -> None:
    """Say so when a tabular target is met only by architectures that barely learn: the search
    then returns one of them, as good as the target allows, which reads like a failed search."""
    if setup.evaluator is None:
        return
    poor = setup.evaluator.poor_within(setup.config["target_latency"])
    if poor is not None:
        within, top, reaching = poor
        column = setup.config["reward_column"]
        print(
            f"note: every architecture of the table within the {setup.config['target_latency']:g} ms target scores at most {within:.3f} in {column!r},"
            f" under half the table's best ({top:.3f}); from --target-latency {reachable_target_ms(reaching):g}ms architectures reach half of it",
            file=sys.stderr,
        )


def _note_target_is_no_limit(setup: Setup) -> None:
    """Say so when the target cannot change which architecture scores best, although users who
    type --target-latency expect a limit: a reward with one exponent on both sides (soft, custom
    --w) without a latency filter, or a target that even the space's slowest architecture meets."""
    config, reward = setup.config, setup.reward
    target = f"{config['target_latency']:g} ms"
    if setup.slowest is not None and config["target_latency"] >= 100 * setup.fastest_ms:  # (the fastest is known: the slowest may take measuring)
        slowest_ms, what = setup.slowest()
        if config["target_latency"] >= 100 * slowest_ms:  # 15s typed for 15ms, say (as nas-latency fastest says it)
            slowest_name = what.split(" (")[0]  # its notation, if any, is for the hard reward's note below
            print(
                f"note: the target, {target}, is over 100 times {slowest_name}'s {format_ms(slowest_ms)};"
                " if it was meant in milliseconds, give the unit ms (15ms; 15s is 15000 ms)",
                file=sys.stderr,
            )
    if not reward.target_changes_ranking:
        if config["max_latency_ratio"] is not None:
            return
        if reward.beta == 0:
            how = f"the {reward.kind} reward with w = 0 is the accuracy alone, so the {target} target is no limit and latency does not change which architecture scores best"
        else:
            cost = (1.0 - 2.0**reward.beta) * 100
            how = (f"the {reward.kind} reward ACC x (LAT/T)^{reward.beta:g} scales every architecture's reward by the same T^{-reward.beta:g}, so the {target}"
                   f" target is no limit and does not change which one scores best (each 2x in latency costs {cost:.1f}% relative accuracy, whatever the target)")
        print(f"note: {how}; for a limit use --reward hard, or --max-latency-ratio 1 to reject what the table puts over it", file=sys.stderr)
        return
    if reward.kind == "absolute" or setup.slowest is None:  # the absolute reward pays for nearing the target from either side
        return
    slowest_ms, what = setup.slowest()
    if slowest_ms <= config["target_latency"]:
        within = "the accuracy alone" if reward.alpha == 0 else f"ACC x (LAT/T)^{reward.alpha:g}, which ranks alike under every target"
        print(
            f"note: even {what} takes only {format_ms(slowest_ms)} by the latency table, within the {target} target, so the target"
            f" constrains nothing: the {reward.kind} reward is then {within}; a target below {format_ms(slowest_ms)} trades accuracy for latency",
            file=sys.stderr,
        )


def _strategy(config: dict[str, Any], problem: Any, strategy_config: Any, reward: Any) -> Any:
    from mobilenas.search.rewards import ZeroAccuracyPenalty
    from mobilenas.search.strategies import make_strategy
    from mobilenas.search.wrappers import Deduplicate, HandleFailures, LatencyFilter

    num_options = [len(d.options) for d in problem.space.decisions]
    penalty = ZeroAccuracyPenalty(reward, config["target_latency"])  # failed and rejected: as if accuracy 0
    inner: Any = HandleFailures(make_strategy(config["strategy"], num_options, config["seed"], strategy_config), penalty=penalty)
    if config["max_latency_ratio"] is not None:
        limit = config["max_latency_ratio"] * config["target_latency"]
        inner = LatencyFilter(inner, problem.latency_ms, limit, penalty=penalty)
    return Deduplicate(inner, problem.key), strategy_config


def _backend(config: dict[str, Any]) -> Any:
    from mobilenas.latency import make_backend

    command = config["latency_command"] if config["latency_backend"] == "command" else None
    note = latency_threads_note(config["threads"], "--latency-threads", command=command)
    if note:
        print(note, file=sys.stderr)
    return make_backend(config["latency_backend"], threads=config["threads"], command=command, device_name=config["device_name"])


@dataclasses.dataclass
class Setup:
    """Everything a run needs, resolved from its configuration."""

    config: dict[str, Any]
    problem: Any
    strategy: Any
    strategy_config: Any
    reward: Any
    data: Any = None
    proxy_config: Any = None
    table: Any = None
    evaluator: Any = None
    fastest_ms: float = math.nan
    fastest_desc: str = ""
    slowest: Callable[[], tuple[float, str]] | None = None  # (ms, what it is): measures what a lazy table lacks, so asked only when needed
    correction_note: str | None = None  # a resumed run's table correction refitted since it started: said where it evaluates more


def build_setup(config: dict[str, Any], *, say: Any, recorded: dict[str, Any] | None = None) -> Setup:
    """The run's pieces. ``recorded``: the manifest of the run being resumed, whose space (as it was
    then, not as its file reads now) and benchmark (checked unchanged) the run keeps."""
    reward = _reward(config)
    try:
        strategy_options = _strategy_config(config)
    except ValueError as error:
        from mobilenas.search.strategies import is_plugin

        if recorded is None or not is_plugin(config["strategy"]):
            raise
        # the run's own strategy, by the path or module it was started with, is gone or broken
        name = config["strategy"]
        where = name.rpartition(":")[0]
        if where.endswith(".py") and not Path(where).is_file():
            raise UsageError(f"this run searches with {name}, and {where} is gone; put the file back there, or give its new place"
                             f" (nas-search --resume RUN --strategy NEW.py:{name.rpartition(':')[2]}), to resume") from None
        reason = str(error).removeprefix(f"strategy {name!r}: ")
        raise UsageError(f"this run's strategy {name} cannot be loaded now: {reason}; mend it to resume") from None
    if config["space"] == "nb201":
        from mobilenas.search.problems import TabularProblem
        from mobilenas.search.tabular import TabularEvaluator
        from mobilenas.space.nb201 import CellSpace

        evaluator = TabularEvaluator(config["benchmark"], config["reward_column"], config["final_column"], config["latency_column"], accuracy_unit=config["accuracy_unit"])
        then = ((recorded or {}).get("benchmark") or {}).get("fingerprint")
        if then and evaluator.fingerprint() != then:
            raise UsageError(f"{config['benchmark']} has changed since the run started (fingerprint {evaluator.fingerprint()}, was {then}); resume with the table the run used")
        problem: Any = TabularProblem(CellSpace(), evaluator)
        strategy, strategy_config = _strategy(config, problem, strategy_options, reward)
        fastest = evaluator.fastest_latency_ms()
        return Setup(config, problem, strategy, strategy_config, reward, evaluator=evaluator, fastest_ms=fastest, fastest_desc="the fastest architecture of the table",
                     slowest=lambda: (evaluator.slowest_latency_ms(), "the slowest architecture of the table"))

    from mobilenas.latency import fastest_latency, open_or_create_table, slowest_latency
    from mobilenas.search.problems import NetworkProblem
    from mobilenas.space.search_space import get_space
    from mobilenas.train.data import load_dataset
    from mobilenas.train.proxy import ProxyConfig

    data = load_dataset(config["dataset"], data_dir=config["data_dir"], seed=config["seed"], val_size=config["val_size"])
    if config["train_size"] is not None and config["train_size"] > len(data.train):  # the proxy's own default may be cut down; a typed size is not
        raise UsageError(
            f"--train-size {config['train_size']} is more than the {len(data.train):,} training images of {data.name} left after the"
            f" validation split; give at most {len(data.train)}, or leave it out for the proxy default ({PROXY_TRAIN_SUBSET}, cut to what there is)"
        )
    if recorded is not None:
        from mobilenas.space.search_space import SearchSpace

        space = SearchSpace.from_dict(recorded["space"])
    else:
        # the networks as they will be deployed: the data's classes and channels (gray images: a one-channel stem)
        space = get_space(config["space"]).for_data(data.num_classes, data.in_channels)
    proxy_config = ProxyConfig(threads=max(1, int(config["cpus_per_trial"])))
    changes: dict[str, Any] = {}
    if config["proxy_steps"] is not None:
        changes["steps"] = config["proxy_steps"]
    if config["train_size"] is not None:
        changes["train_subset"] = config["train_size"]
    if config["val_size"] is not None:
        changes["val_subset"] = config["val_size"]
    proxy_config = dataclasses.replace(proxy_config, **changes)
    say(f"latency table for space {space.name} at {config['input_size']}x{config['input_size']} ({config['latency_backend']}, {counted(config['threads'], 'thread')})")
    recorded_table = (recorded or {}).get("latency_table") or {}  # as the resumed run recorded it
    if recorded_table.get("path") and not Path(recorded_table["path"]).exists():
        print(f"note: the run's latency table {recorded_table['path']} no longer exists; a new one is measured for the rest of the run", file=sys.stderr)
    if config["latency_table"] and recorded is None and not Path(config["latency_table"]).expanduser().exists():
        # a mistyped --table had started a new table without a word (and made its folders)
        print(f"note: --table {config['latency_table']} does not exist yet: a new table is made there, measured as the search needs it", file=sys.stderr)
    table = open_or_create_table(
        space, config["latency_table"], input_size=config["input_size"], backend=_backend(config),
        force_device=config["force_device"], seed=config["seed"], progress=not config["quiet"],
    )
    other = table.built_for_another(space)
    if other and recorded is None:
        print(
            f"note: latency table {table.path} was built for {other}: the entries this search needs that it lacks are measured"
            f" as they come, and its correction was fitted on that space's networks (nas-latency calibrate --space {shlex.quote(str(config['space']))}"
            f" --table {shlex.quote(str(table.path))} checks it on this one)",
            file=sys.stderr,
        )
    then = recorded_table.get("correction")
    now = table.correction
    correction_note = None
    if then and any(abs(float(then.get(k) or 0.0) - getattr(now, k)) > 1e-9 for k in ("a", "b", "se_ms")):
        # refitted since (nas-latency build or calibrate --update-correction): keep the table's, say so
        # (even with --quiet) where the run evaluates more: a finished run has no later trials
        correction_note = (
            f"note: the latency table's correction changed since the run started ({_line(then.get('a', 1), then.get('b', 0), then.get('se_ms') or 0.0)} "
            f"then, {_line(now.a, now.b, now.se_ms)} now): the trials evaluated from here on are placed by the new one, those before by the old,"
            " so their table latencies are not on one scale"
        )
    problem = NetworkProblem(space, lambda arch: table.predict(arch, measure_missing=True))
    fastest, fastest_arch = fastest_latency(space, table, measure_missing=True, progress=not config["quiet"])
    strategy, strategy_config = _strategy(config, problem, strategy_options, reward)

    def slowest() -> tuple[float, str]:
        latency, arch = slowest_latency(space, table, measure_missing=True, progress=not config["quiet"])
        return latency, f"the slowest architecture of space {space.name} ({arch.to_notation()})"

    return Setup(config, problem, strategy, strategy_config, reward, data=data, proxy_config=proxy_config, table=table,
                 fastest_ms=fastest, fastest_desc=f"the fastest architecture of space {space.name} ({fastest_arch.to_notation()})", slowest=slowest,
                 correction_note=correction_note)


def _line(a: float, b: float, se_ms: float = 0.0) -> str:
    """A correction as people write it: ``1.0412 x sum - 0.002 ms``, with ``+ 0.088 ms per SE
    block`` where it has that term (left out, a refit that moved time into it read as a large drop)."""
    se = f" {'-' if float(se_ms) < 0 else '+'} {abs(float(se_ms)):.3f} ms per SE block" if round(float(se_ms), 3) else ""
    return f"{float(a):.4f} x sum {'-' if float(b) < 0 else '+'} {abs(float(b)):.3f} ms{se}"


def _note_changed_strategy(name: str, recorded: dict[str, Any] | None) -> None:
    """A resumed run whose strategy of one's own was edited since it started goes on with the new
    code; say so (a note, even with --quiet), since its trials then come from two versions."""
    from mobilenas.search.strategies import code_fingerprint

    then = ((recorded or {}).get("strategy") or {}).get("code_sha256")
    if then and code_fingerprint(name) != then:
        print(f"note: {name.rpartition(':')[0]} changed since this run started; the run goes on with the code as it is now", file=sys.stderr)


def _manifest(setup: Setup) -> dict[str, Any]:
    from mobilenas.search.strategies import code_fingerprint, config_to_dict

    config = setup.config
    manifest: dict[str, Any] = {
        "kind": "search",
        "config": {k: v for k, v in config.items() if k not in ("json", "quiet", "resume")},
        "seed": config["seed"],
        "target_latency_ms": config["target_latency"],
        "reward": setup.reward.to_dict(),
        "strategy": {
            "name": config["strategy"], "config": config_to_dict(setup.strategy_config), "wrappers": setup.strategy.describe(),
            **({"code_sha256": code} if (code := code_fingerprint(config["strategy"])) else {}),
        },
        "space": setup.problem.space.to_dict(),
        "space_name": setup.problem.space.name,
        "problem": setup.problem.kind,
        "fastest_latency_ms": setup.fastest_ms,
    }
    if setup.table is not None:
        manifest["latency_table"] = setup.table.summary()
    if setup.evaluator is not None:
        manifest["benchmark"] = setup.evaluator.describe()
    if setup.data is not None:
        manifest["dataset"] = setup.data.summary()
        manifest["proxy"] = setup.proxy_config.to_dict()
    return manifest


# --------------------------------------------------------------------------- running


def _progress_hook(config: dict[str, Any], total: int, seconds_left: Any = None) -> tuple[Any, Any]:
    """The search's bar and the hook that redraws it; ``seconds_left`` (the time limit's) caps its ETA."""
    bar = progress(total=total, desc="search", enabled=not config["quiet"], unit="arch", seconds_left=seconds_left)
    redrawn = 0.0  # when the postfix alone was last drawn
    submitted = False

    def update(search: Any) -> None:
        nonlocal redrawn, submitted
        if not submitted and search.in_flight:
            # The clock starts with the first evaluation: Ray's start-up (5-10 s) counted in the
            # elapsed time and, worse, in the rate the first ETAs come from.
            submitted = True
            if not bar.disable:  # (a disabled bar has no clock)
                bar.start_t = bar.last_print_t = bar._time()
        done = search.trained_count
        bar.total = search.samples
        best = search.best
        postfix: dict[str, Any] = {"running": len(search.in_flight)}
        left = search.time_limit.left_text()
        if left is not None:
            postfix["time_left"] = left
        if best is not None:
            postfix.update(best=f"{best.reward:.4f} (acc {best.accuracy:.3f}, {best.latency_ms:.2f}ms)")  # the best trial's, not the latest's
        counts = getattr(search.strategy, "counts", {})
        if counts:
            postfix.update({k: str(v) for k, v in counts.items() if k in ("duplicate", "rejected")})  # tqdm shows 10000 as 1e+4
        bar.set_postfix(postfix, refresh=False)
        if done > bar.n:
            bar.update(done - bar.n)
        elif not bar.disable and time.monotonic() - redrawn >= bar.mininterval:
            # A new submission changes only the postfix; drawn only when a trial ended, the bar would
            # always show one training fewer than run (the one that just ended, not yet replaced).
            bar.refresh()
            redrawn = time.monotonic()

    return bar, update


def _measure_best(setup: Setup, search: Any, say: Any) -> float | None:
    if setup.table is None or setup.config["no_measure"] or search.best is None:
        return None
    from mobilenas.latency import measure
    from mobilenas.latency.measure import MEASUREMENT_RECHECK
    from mobilenas.space.arch import Architecture

    recorded = search.recorded_measurement()
    if recorded is not None:  # a finished run resumed (or extended without a new best): measured already
        return recorded
    payload = search.best_payload()
    arch = Architecture.from_dict(payload["architecture"])
    say("measuring the best architecture end to end ...")
    backend, size, predicted = setup.table.measuring_backend(), setup.table.input_size, float(payload["latency_ms"])
    latencies = [measure(arch, backend, size).latency_ms]
    if abs(latencies[0] / predicted - 1) > MEASUREMENT_RECHECK:
        # One timing on a machine that was busy for a moment can be far off (18 ms for an 11.5 ms
        # network measured here, right after another job stopped): time it twice more, keep the median.
        say(f"measured {format_ms(latencies[0])}, {_off(latencies[0], predicted)} the table's {format_ms(predicted)}: measuring twice more")
        latencies += [measure(arch, backend, size).latency_ms for _ in range(2)]
    value = float(sorted(latencies)[len(latencies) // 2])
    note = measurement_note(latencies, value, predicted, search.target_latency_ms)
    if note:
        print(
            f"{note}: the table's correction may be out of date for this machine "
            f"(check it with nas-latency calibrate --space {shlex.quote(str(setup.config['space']))} --table {shlex.quote(str(setup.table.path))})",
            file=sys.stderr,
        )
    return value


def measurement_note(latencies: Sequence[float], value: float, predicted: float, target: float) -> str | None:
    """What to say of the best's end-to-end latency ``value`` (the median of ``latencies``) against
    its ``predicted`` table latency: a gap of more than 15%, or a gap of any size that puts the two
    on different sides of the ``target`` (the table says it misses, the measurement that it meets,
    or the other way round), which decides whether the winner can ship."""
    from mobilenas.latency.measure import MEASUREMENT_RECHECK

    far = abs(value / predicted - 1) > MEASUREMENT_RECHECK
    sides = (predicted <= target) != (value <= target)
    if not (far or sides):
        return None
    side = ""
    if sides:
        side = f"; by the table it {'meets' if predicted <= target else 'misses'} the {target:g} ms target, measured it {'meets' if value <= target else 'misses'} it"
    return (
        f"note: the best measures {format_ms(value)} end to end ({', '.join(format_ms(v) for v in latencies)}), {_off(value, predicted)} "
        f"its {format_ms(predicted)} by the latency table{side}"
    )


def _off(measured: float, predicted: float) -> str:
    """``59% above`` or ``20% below``: how ``measured`` compares with ``predicted``."""
    return f"{abs(measured / predicted - 1):.0%} {'above' if measured > predicted else 'below'}"


def _trial_dict(trial: Any) -> dict[str, Any] | None:
    """A trial as --json gives it (the front's points and the most accurate within the target)."""
    if trial is None:
        return None
    return {"number": trial.number, "accuracy": trial.accuracy, "latency_ms": trial.latency_ms, "reward": trial.reward, "architecture": trial.architecture}


def _within_target_lines(search: Any, reward_kind: str, target: float) -> list[str]:
    """The most accurate architecture within the target, where it is not the reward's best: a
    user asking for 20 ms may be handed 2.6 ms at 73% by the soft reward when 18.7 ms at 81% was
    found; and always where the best is over the target (by the table), so that a user with a
    budget sees what meets it, or that nothing evaluated does."""
    best, accurate = search.best, search.most_accurate_within_target()
    if best is None:
        return []
    over = best.latency_ms > target
    if accurate is None:
        return [f"nothing evaluated is within the {target:g} ms target by the table; --max-latency-ratio 1 spends every evaluation within it"] if over else []
    if accurate.accuracy <= best.accuracy and not over:
        return []
    hint = "" if reward_kind == "hard" else "; --reward hard ranks by accuracy alone within the target"
    lines = [
        f"most accurate within the target: #{accurate.number}, accuracy {accurate.accuracy:.4f}, latency {format_ms(accurate.latency_ms)} by the table",
        f"  {accurate.architecture}",
        f"  ranked below the best by the {reward_kind} reward ({accurate.reward:.4f} < {best.reward:.4f}){hint}",
    ]
    if accurate.weights:  # kept with --keep-weights all
        lines.append(f"  its weights: {search.run.root / accurate.weights}")
    return lines


def _pareto_lines(search: Any, limit: int = 15) -> list[str]:
    front = search.pareto()
    if not front:
        return ["(no successful trial: no Pareto front)"]
    rows = [("#", "accuracy", "latency", "reward", "architecture")]
    for t in front[:limit]:
        rows.append((str(t.number), f"{t.accuracy:.4f}", format_ms(t.latency_ms), f"{t.reward:.4f}", t.architecture if len(t.architecture) < 90 else t.architecture[:87] + "..."))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows]
    if len(front) > limit:
        lines.append(f"... {len(front) - limit} more in pareto.csv")
    return lines


def _moved_strategy(typed: str | None, recorded: str) -> bool:
    """Whether ``--strategy`` typed on a resume names the run's own class of one's own in another
    file, the run's file being gone (moved): ``FILE.py:CLASS`` with the same ``CLASS``."""
    if not typed or typed == recorded:
        return False
    (new, _, new_class), (old, _, old_class) = typed.rpartition(":"), recorded.rpartition(":")
    return new.endswith(".py") and old.endswith(".py") and new_class == old_class and not Path(old).is_file() and Path(new).is_file()


def _record_absolute_paths(config: dict[str, Any]) -> None:
    """The files a new run reads, by absolute path in its manifest: --resume works from any folder."""
    for key in ("benchmark", "data_dir", "latency_table"):
        if config[key]:
            config[key] = absolute_path(config[key])
    if config["space"] not in ("nb201", *NETWORK_SPACES) and Path(config["space"]).expanduser().is_file():
        config["space"] = absolute_path(config["space"])
    if config["space"] != "nb201":
        from mobilenas.train.data import absolute_dataset

        config["dataset"] = absolute_dataset(config["dataset"])


def main(argv: Sequence[str] | None = None, prog: str = "nas-search") -> int:
    return run_main(lambda a: _main(a, prog), argv, prog)


def _print_strategy_options(name: str, emit_json: bool) -> int:
    """``--strategy-option help``: the strategy's options, their defaults and what they do."""
    import textwrap

    from mobilenas.search.strategies import describe_options

    rows = describe_options(name)
    if emit_json:
        print_json({"strategy": name, "options": rows})
        return 0
    if not rows:
        print(f"{name} has no options")
        return 0
    print(f"{name} options (--strategy-option KEY=VALUE, repeatable; defaults shown):")
    for row in rows:
        print(f"  {row['name']}={row['default']}")
        description = row["description"].removeprefix(f"{row['name']}: ")
        for line in textwrap.wrap(description, width=92):
            print(f"      {line}")
    return 0


def _main(argv: Sequence[str] | None, prog: str) -> int:
    try:
        with contextlib.ExitStack() as held:  # the run's claim (RunDir.claim) lasts until the end
            return _search(argv, prog, held)
    except Exception as error:
        # A strategy of one's own that fails: its traceback is what its author needs, then one line
        # that says whose code it was and how the run goes on once it is fixed. One that returned
        # what breaks the contract gets that line alone (the traceback would show only our code).
        from mobilenas.search.wrappers import StrategyBug

        plugins = sys.modules.get("mobilenas.search.strategies")
        hint = resume_hint()
        then = f"; completed work is saved; once it is fixed, continue with: {hint}" if hint else ""
        if isinstance(error, StrategyBug):
            owner = plugins.plugin_name(error.strategy) if plugins is not None and error.strategy is not None else None
            whose = f"your strategy {owner}" if owner else f"the strategy {error.strategy.__name__ if error.strategy else ''}".rstrip()
            print(f"{prog}: {whose}: {error}{then}", file=sys.stderr)
            return 1
        name = plugins.raised_by_plugin(error) if plugins is not None else None
        if name is None:
            raise
        import traceback

        traceback.print_exception(error)
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"{prog}: your strategy {name} raised {type(error).__name__}{': ' + detail if detail else ''} (traceback above){then}", file=sys.stderr)
        return 1


def _search(argv: Sequence[str] | None, prog: str, held: contextlib.ExitStack) -> int:
    given = vars(build_parser(prog).parse_args(argv))
    emit_json = bool(given.pop("json", False))
    resume = given.pop("resume", None)
    quiet = bool(given.get("quiet", False)) or emit_json
    if "help" in given.get("strategy_option", []):  # like --help: nothing else is read or checked
        strategy = given.get("strategy") or (RunDir.open(resume, kind="search").manifest()["config"]["strategy"] if resume else DEFAULTS["strategy"])
        return _print_strategy_options(strategy, emit_json)

    def say(message: str) -> None:
        if not quiet:
            print(message, file=sys.stderr)

    recorded: dict[str, Any] | None = None  # the manifest of the run being resumed (held, so it stays as read)
    moved = False  # --strategy NEW.py:CLASS given on a resume, the run's file gone
    if not resume:  # until the run folder exists (a latency table being built keeps what it measured)
        set_interrupt_note("no search was started yet, so there is nothing to resume (latencies measured so far are kept in the table); run the same command again")
    if resume:
        run = held.enter_context(RunDir.open(resume, kind="search").claim())
        recorded = run.manifest()
        stored = dict(recorded["config"])
        moved = _moved_strategy(given.get("strategy"), stored["strategy"])
        if moved:  # the file moved: the run goes on with it there (recorded once the run has resumed)
            say(f"the run's strategy file {stored['strategy'].rpartition(':')[0]} is gone: using {given['strategy'].rpartition(':')[0]}")
            stored["strategy"] = given["strategy"]
        # the run's own command typed again with --resume is fine; a changed option is not
        typed = {**stored, **given}
        _record_absolute_paths(typed)  # paths compare as the run recorded them
        refuse_changed_on_resume({k: typed[k] for k in given if k not in RESUME_OVERRIDES}, stored,
                                 "only --workers, --ray-address, --samples, --time-limit, --retries, --cpus-per-trial and --quiet may change")
        given = {k: v for k, v in given.items() if k in RESUME_OVERRIDES}
        config = resolve_config({**stored, **given}, typed=given)
        config["out"] = str(run.root)
    else:
        config = resolve_config(given)
        _record_absolute_paths(config)
        # where the run will go: checked before the data set, the table or any training
        if config["out"]:
            check_writable_folder(config["out"], f"--out {config['out']}")
            RunDir(config["out"]).refuse_existing("search")
        else:
            check_writable_folder(DEFAULT_OUT_ROOT, f"the default run folder {DEFAULT_OUT_ROOT} (choose another with --out)")
    config["quiet"] = quiet
    on_ray = config["space"] != "nb201" and config["executor"] == "ray"  # proxy trainings as Ray Tune trials
    if on_ray:
        from mobilenas.search.execution import check_ray_address

        check_ray_address(config["ray_address"])  # Ray would retry a dead address for minutes, mid-run
    setup = build_setup(config, say=say, recorded=recorded)
    target = config["target_latency"]
    if setup.fastest_ms > target:
        raise UsageError(
            f"even {setup.fastest_desc} takes {format_ms(setup.fastest_ms)} by the latency table, over the {target:g} ms target; "
            f"choose --target-latency {reachable_target_ms(setup.fastest_ms):g}ms or more" + (", or a smaller space" if setup.evaluator is None else "")
        )
    if setup.evaluator is not None and (scored := setup.evaluator.fastest_scored_latency_ms()) > target:
        column = config["reward_column"]
        raise UsageError(
            f"every architecture of the table within the {target:g} ms target lacks a {column!r} value (a search would only record failures); "
            + (f"the fastest with one takes {format_ms(scored)}: choose --target-latency {reachable_target_ms(scored):g}ms or more" if math.isfinite(scored)
               else f"no row has both a {column!r} value and a latency: choose another --reward-column")
        )
    ratio = config["max_latency_ratio"]
    if ratio is not None and setup.fastest_ms > ratio * target:  # the filter would reject every proposal, 10,000 in a row
        raise UsageError(
            f"--max-latency-ratio {ratio:g} rejects everything over {format_ms(ratio * target)} ({ratio:g} x the {target:g} ms target), but even "
            f"{setup.fastest_desc} takes {format_ms(setup.fastest_ms)} by the latency table; give --max-latency-ratio {reachable_target_ms(setup.fastest_ms / target):g} or more"
        )
    if resume:
        say(f"resuming {run.root}")
        _note_changed_strategy(config["strategy"], recorded)
    else:  # notes once every check has passed (a bad option gets its error alone); a resumed run says it once read
        _note_random_phase(config, setup.strategy_config)
        _note_target_is_no_limit(setup)
        _note_poor_target(setup)
        out = Path(config["out"]) if config["out"] else DEFAULT_OUT_ROOT / new_run_id("search")
        run = held.enter_context(RunDir.create(out, _manifest(setup)).claim())
        config["out"] = str(run.root)
        say(f"run directory {run.root}")
    set_interrupt_note("completed work is saved")
    set_resume_hint(f"nas-search --resume {shlex.quote(str(run.root))}")

    from mobilenas.search.base import EARLY_STOPPED, stopped_early_words
    from mobilenas.search.execution import joins_cluster, oversubscription_note
    from mobilenas.search.orchestrator import SearchRun

    if config["space"] != "nb201" and not (on_ray and joins_cluster(config["ray_address"])):  # trainings on this machine
        note = oversubscription_note(config["workers"] if on_ray else 1, config["cpus_per_trial"], "proxy trainings")
        if note:
            print(note, file=sys.stderr)  # a note, not progress: said even with --quiet
    deployment = None
    if setup.data is not None:  # a network search: how the winner's input is prepared
        from mobilenas.train.data import preprocessing

        deployment = preprocessing(setup.data.summary(), setup.table.input_size)
    search = SearchRun(
        run, setup.problem, setup.strategy, setup.reward, target, config["samples"], seed=config["seed"],
        keep_weights=config["keep_weights"], preprocessing=deployment,
    )
    if resume:
        search.resume()
        if "samples" in given and search.submitted > search.samples:
            raise UsageError(
                f"--samples {search.samples} is below the {search.submitted} architectures {run.root} has already asked for; "
                "give more to extend the run, or drop --samples to finish it as it was"
            )
        if search.stopped and search.samples > int(stored["samples"]):
            # the strategy itself ended the search (it converged): more samples would be more repeats
            raise UsageError(
                f"{run.root} stopped early, so --samples cannot take it further: {search.stopped}; "
                "start a new run to search more (another --seed, or --strategy-option settings that explore more)"
            )
        if moved and recorded is not None:  # every check passed and the strategy's checkpoint loaded from the new place: the run's now
            recorded["config"]["strategy"] = config["strategy"]
            if isinstance(recorded.get("strategy"), dict):
                recorded["strategy"]["name"] = config["strategy"]
            run.update_manifest(config=recorded["config"], strategy=recorded.get("strategy"))
        changed: dict[str, Any] = {}
        if search.samples != int(stored["samples"]):  # more, or fewer (not below what was asked): the run's count now
            changed["samples"] = search.samples
        if "time_limit" in given and config["time_limit"] != stored.get("time_limit"):
            changed["time_limit"] = config["time_limit"]  # the limit the next plain --resume applies (none lifts it for good)
        if changed:
            run.update_manifest(config={**stored, **changed})
        if search.stopped:
            say(f"the run stopped early ({counted(len(search.trained), 'architecture')} evaluated; why: below); nothing left to evaluate")
        elif search.done:
            say(f"the run is complete ({counted(len(search.trained), 'architecture')} evaluated); nothing left to evaluate (--samples N extends it)")
        else:
            _note_random_phase(config, setup.strategy_config)
            if setup.correction_note:
                print(setup.correction_note, file=sys.stderr)
    search.set_time_limit(config["time_limit"])
    if config["time_limit"] is not None and not search.done:
        say(f"time limit {format_time_limit(config['time_limit'])}: nothing new is proposed after {search.time_limit.ends_at()}")
    # the bar once the resumed run has been checked (a refused --samples drew it before the error)
    # a finished run resumed has nothing to count (it drew an empty bar, then a full one)
    bar, search.on_update = _progress_hook({**config, "quiet": config["quiet"] or search.done}, config["samples"], search.time_limit.seconds_left)
    count_done_before(bar, len(search.trained))  # counted, but not in the rate that the ETA comes from
    set_resume_hint(f"nas-search --resume {shlex.quote(str(run.root))}")
    started = time.time()
    try:
        if search.done:
            pass  # a finished run resumed: no Ray, no trials; the summary below is rebuilt from the journal
        elif setup.evaluator is not None:
            from mobilenas.search.orchestrator import run_inline

            run_inline(search, lambda submission: (setup.evaluator.evaluate(submission.candidate), None))
        else:
            from mobilenas.search.proxy import ProxySettings, evaluate_inline

            settings = ProxySettings(setup.proxy_config, str(run.root), keep_weights=True, early_stopping=config["early_stopping"], train_images=len(setup.data.train))
            if config["executor"] == "inline":
                from mobilenas.search.orchestrator import run_inline

                run_inline(search, lambda submission: evaluate_inline(submission, search, setup.data, settings))
            else:
                from mobilenas.search.tune_driver import run_on_tune

                with stdout_kept_for_json(emit_json):  # Ray writes to stdout, which --json keeps for its object
                    run_on_tune(search, setup.data, settings, workers=config["workers"], cpus_per_trial=config["cpus_per_trial"], ray_address=config["ray_address"], retries=config["retries"])
    finally:
        bar.close()
    measured = _measure_best(setup, search, say)
    search.write_best(measured)
    payload = search.best_payload(measured)
    trained = search.trained
    duplicates = sum(1 for t in search.trials if t.source in ("duplicate", "reused"))
    stopped_early = sum(1 for t in trained if t.status != "ok" and t.error == EARLY_STOPPED)
    summary = {
        "run": str(run.root.resolve()),
        "best_json": str(run.path("best.json").resolve()) if payload else None,
        "best": payload,
        "trials": len(trained),
        "failed": sum(1 for t in trained if t.status != "ok") - stopped_early,
        "stopped_early": stopped_early,
        "duplicates": duplicates,
        "rejected": sum(1 for t in search.trials if t.source == "rejected"),
        "pareto": [_trial_dict(t) for t in search.pareto()],
        "most_accurate_within_target": _trial_dict(search.most_accurate_within_target()),
        "stopped": search.stopped,
        "time_limit_reached": search.time_limit_reached,
        "wall_time_s": time.time() - started,
    }
    if emit_json:
        print_json(summary)
        return 0 if payload else 1
    print()
    if search.stopped:
        print(f"the search stopped early: {search.stopped}")
    if search.time_limit_reached:
        print(
            f"the search reached its time limit ({format_time_limit(config['time_limit'])}) after {len(trained)} of {search.samples} architectures; "
            f"nas-search --resume {shlex.quote(str(run.root))} continues it"
        )
    print(
        f"{counted(len(trained), 'architecture')} evaluated ({stopped_early_words(stopped_early)}{summary['failed']} failed, {counted(duplicates, 'duplicate')} reused, "
        f"{summary['rejected']} rejected by the latency filter) in {summary['wall_time_s']:.0f} s" + (" (this session: the run was resumed)" if resume else "")
    )
    print()
    print("Pareto front (accuracy vs table latency):")
    for line in _pareto_lines(search):
        print("  " + line)
    print()
    if payload is None:
        print(f"no architecture trained successfully; see {run.path('trials.csv')}")
        return 1
    print(f"best (reward {payload['reward']:.4f}): accuracy {payload['accuracy']:.4f}, latency {format_ms(payload['latency_ms'])} by the table")
    print(f"  {payload['notation']}")
    over = payload["latency_ms"] > target  # by the table, as the search ranked it
    if measured is not None:
        print(f"  measured {format_ms(measured)} for a {target:g} ms target (achieved / target = {measured / target:.2f}){': over the target by the table' if over else ''}")
    else:
        print(f"  latency / target = {payload['latency_ms'] / target:.2f}{': over the target' if over else ''}")
    for line in _within_target_lines(search, setup.reward.kind, target):
        print(line)
    print(f"best.json: {run.path('best.json')}")
    print(f"the front as a figure: nas-results plot {shlex.quote(str(run.root))} (writes {run.path('front.png')}); in Jupyter: nas-results notebook {shlex.quote(str(run.root))}")
    if setup.data is not None and payload.get("weights"):
        print(_next_steps(run.path("best.json"), setup.data.name, config, setup.proxy_config.steps))
    return 0


def reachable_target_ms(fastest_ms: float) -> float:
    """The fastest latency rounded up to two significant digits: a target to suggest that it meets
    (7.23 -> 7.3, 12.34 -> 13, 0.0113 -> 0.012)."""
    step = 10.0 ** (math.floor(math.log10(fastest_ms)) - 1)
    suggested = round(math.ceil(fastest_ms / step) * step, 12)
    lower = round(suggested - step, 12)  # fastest_ms / step may come out a hair above a whole number
    return lower if lower >= fastest_ms else suggested


def _next_steps(best: Path, dataset_name: str, config: dict[str, Any], proxy_steps: int | None) -> str:
    """MobileNetV3's pipeline from here: train the winner fully (its weights are a short proxy
    training), then prune it with NetAdapt from those weights."""
    from mobilenas.train.cli import trained_start_commands

    data = "" if config["dataset"] == "synthetic" else f" --dataset {shlex.quote(str(config['dataset']))}" + (f" --data-dir {shlex.quote(str(config['data_dir']))}" if config["data_dir"] else "")
    proxy = f"a {proxy_steps}-step proxy training" if proxy_steps else "a proxy training"
    return "next: " + trained_start_commands(str(best), dataset_name, f"its weights are {proxy}", data)


if __name__ == "__main__":
    sys.exit(main())
