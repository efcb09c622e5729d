"""Benchmark 1: search strategies on the NAS-Bench-201 table under latency targets.

For each latency column (device) of ``nb201_cifar10_dev.csv.gz`` and targets at its 25% and 50%
latency quantiles, every strategy searches the 15,625-cell NAS-Bench-201 space for ``--queries``
queries, ``--seeds`` times:

* the reward is MnasNet's, computed from the ``val_acc_12ep`` column (a 12-epoch proxy) and the
  device's latency; by default the *hard* constraint (alpha = 0, beta = -1: the accuracy itself
  within the target, ACC x T/LAT beyond it), the natural reward for a constrained search;
* a *query* is one distinct architecture looked up in the table. De-duplication is on: a
  strategy proposing an architecture it already evaluated is told the known result at once and
  that costs no query (as it would cost no training in a real search). A run stops after
  ``--queries`` queries, or earlier if the strategy converges (1000 duplicates in a row);
* the *choice* of a run is the evaluated architecture with the highest reward among those that
  meet the target (what a user keeps); its *regret* is the best ``test_acc_200ep`` of any
  architecture meeting the target minus the choice's ``test_acc_200ep``, in percentage points.
  *Meets target* is whether the highest-reward architecture overall (no feasibility filter:
  what the reward alone steers to) is within the target.

Runs are in-process (table look-ups are cheap: no Ray), one thread, and cached one line per
(strategy, options, reward, column, target, seed) in ``benchmarks/strategies_nb201.cache/``, so
an interrupted benchmark resumes where it stopped. Run it under the shared CPU lock::

    flock /tmp/mobilenas-cpu.lock python benchmarks/strategies_nb201.py

It prints a table and writes ``benchmarks/strategies_nb201.md``, ``.json`` and ``.png``
(regret against queries). ``--option ppo.learning_rate=0.02`` etc. override strategy options
(used to tune the defaults; results of non-default options go to ``--out`` of your choice).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from _common import check_out, command_line, provenance, stem_file

from mobilenas.cliutil import (
    ArgumentParser,
    positive_float,
    positive_int,
    progress,
    run_main,
    seed_number,
)
from mobilenas.runs import Journal, atomic_write_json, atomic_write_text
from mobilenas.search.base import Observation, recorded_strategy_name, short_strategy_name
from mobilenas.search.rewards import RewardSpec
from mobilenas.search.strategies import (
    STRATEGIES,
    code_fingerprint,
    config_to_dict,
    is_plugin,
    make_strategy,
    parse_options,
    strategy_class,
)
from mobilenas.search.tabular import TabularEvaluator
from mobilenas.search.wrappers import Deduplicate, LatencyFilter, SearchStopped
from mobilenas.space.nb201 import nb201_space

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "nb201" / "nb201_cifar10_dev.csv.gz"
DEFAULT_STRATEGIES = ("ppo", "reinforce", "evolution", "random", "tpe", "nsga2")
LATENCY_COLUMNS = ("latency_ms_raspi4", "latency_ms_pixel3", "latency_ms_xeon_gold_6226")
CHECKPOINTS = (25, 50, 100, 150, 200, 250, 300)
MAX_CONSECUTIVE_DUPLICATES = 1000
BENCHMARK_VERSION = 1


@dataclass(frozen=True)
class Cell:
    """One (device column, target) problem."""

    column: str
    quantile: float
    target_latency_ms: float
    best_final: float  # best test_acc_200ep (fraction) within the target
    optimum_final: float  # test_acc_200ep of the best val_acc_12ep (the reward's optimum) within the target


def run_one(evaluator: TabularEvaluator, cell: Cell, strategy_name: str, config: Any, reward: RewardSpec, seed: int, queries: int, max_latency_ratio: float | None = None) -> dict[str, Any]:
    """One search; returns the run's record (everything the tables and plots need).

    ``max_latency_ratio``: wrap the strategy in nas-search's latency filter (``--max-latency-ratio``):
    a proposal over that many times the target is rejected before its look-up (no query) and
    told the reward of accuracy 0, which is 0 for MnasNet's rewards.
    """
    space = nb201_space()
    strategy: Any = make_strategy(strategy_name, [len(d.options) for d in space.decisions], seed, config)
    if max_latency_ratio is not None:
        strategy = LatencyFilter(strategy, lambda indices: evaluator.latency_ms(space.decode(indices)), max_latency_ratio * cell.target_latency_ms, penalty=0.0)
    search = Deduplicate(strategy, space.decode, max_consecutive_duplicates=MAX_CONSECUTIVE_DUPLICATES)
    evaluated: list[tuple[str, float, float, float]] = []  # arch, reward, latency, final
    trajectory: dict[int, float] = {}
    best_feasible: tuple[float, float] | None = None  # (reward, final) of the current choice
    asked = 0
    converged = False
    started = time.perf_counter()
    while len(evaluated) < queries:
        try:
            proposal = search.ask()
        except SearchStopped:
            converged = True
            break
        asked += 1
        arch = space.decode(proposal.indices)
        result = evaluator.evaluate(arch)
        assert result.latency_ms is not None and result.final_accuracy is not None
        breakdown = reward(result.accuracy, result.latency_ms, cell.target_latency_ms)
        search.tell(proposal.number, Observation(breakdown.reward, result.accuracy, result.latency_ms))
        evaluated.append((arch, breakdown.reward, result.latency_ms, result.final_accuracy))
        if result.latency_ms <= cell.target_latency_ms and (best_feasible is None or breakdown.reward > best_feasible[0]):
            best_feasible = (breakdown.reward, result.final_accuracy)
        if len(evaluated) in CHECKPOINTS:
            trajectory[len(evaluated)] = (cell.best_final - best_feasible[1]) * 100 if best_feasible else math.nan
    wall_time_s = time.perf_counter() - started
    feasible = [e for e in evaluated if e[2] <= cell.target_latency_ms]
    choice = max(feasible, key=lambda e: e[1]) if feasible else None
    top = max(evaluated, key=lambda e: e[1])
    # A run that stops early keeps its choice at the later checkpoints.
    last = math.nan
    for checkpoint in CHECKPOINTS:
        if checkpoint in trajectory:
            last = trajectory[checkpoint]
        elif checkpoint <= queries and checkpoint > len(evaluated):
            trajectory[checkpoint] = last
    return {
        "strategy": strategy_name,
        "column": cell.column,
        "quantile": cell.quantile,
        "seed": seed,
        "target_latency_ms": cell.target_latency_ms,
        "queries": len(evaluated),
        "proposals": search.counts.get("duplicate", 0) + search.counts.get("rejected", 0) + asked,
        "rejected": search.counts.get("rejected", 0),
        "converged": converged,
        "choice": None if choice is None else choice[0],
        "choice_final": None if choice is None else choice[3],
        "regret_pp": None if choice is None else (cell.best_final - choice[3]) * 100,
        "top_reward_meets_target": top[2] <= cell.target_latency_ms,
        "trajectory": {str(k): v for k, v in sorted(trajectory.items())},
        "wall_time_s": wall_time_s,
    }


# Options added after runs were cached, with the value that reproduces the earlier behaviour: left
# out of the cache key at that value, so the cached runs stay valid (they ran exactly that code).
OPTIONS_ADDED_LATER = {"ppo": {"risk_seeking": None, "learn_from_repeats": True}, "evolution": {"tournament_replacement": False}}


def cache_key(strategy: str, config: Any, reward: RewardSpec, queries: int, data_fingerprint: str, max_latency_ratio: float | None = None) -> str:
    later = OPTIONS_ADDED_LATER.get(strategy, {})
    options = {k: v for k, v in config_to_dict(config).items() if not (k in later and v == later[k])}
    fields = {"v": BENCHMARK_VERSION, "strategy": strategy, "config": options, "reward": reward.to_dict(), "queries": queries, "data": data_fingerprint, "dup": MAX_CONSECUTIVE_DUPLICATES}
    if max_latency_ratio is not None:  # only then: the runs cached before the filter keep their keys
        fields["max_latency_ratio"] = max_latency_ratio
    if is_plugin(strategy):  # a strategy of one's own changes as its author edits it: its code is part of the key
        fields["code"] = code_fingerprint(strategy)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def cache_stem(strategy: str) -> str:
    """A file name's start for ``strategy``: its short name (``ppo``, ``greedy.py_Greedy``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", short_strategy_name(strategy))


def strategy_labels(strategies: Sequence[str]) -> dict[str, str]:
    """Each strategy's name in tables, legends and ``--option``: a strategy of one's own from a file is
    ``file.py:Class`` without its folder, or with as many of its folders as tell it from another
    strategy's file of the same name (``a/greedy.py:Greedy`` beside ``b/greedy.py:Greedy``)."""

    def label(name: str, folders: int) -> str:
        where, colon, cls_name = name.rpartition(":")
        if not (colon and where.endswith(".py")):
            return name
        return f"{'/'.join(where.replace(chr(92), '/').split('/')[-1 - folders:])}:{cls_name}"

    labels = {}
    for name in strategies:
        folders = 0
        while label(name, folders) != name and any(label(other, folders) == label(name, folders) for other in strategies if other != name):
            folders += 1
        labels[name] = label(name, folders)
    return labels


def at_least_two(text: str) -> int:
    """argparse type of --seeds: a seed-to-seed standard deviation needs two seeds."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value} is too few: a seed-to-seed standard deviation needs at least 2 seeds")
    return value


def summarise(records: dict[str, list[dict[str, Any]]], cells: Sequence[Cell], seeds: Sequence[int]) -> dict[str, Any]:
    """Per label and cell: mean and seed-to-seed std of regret, share meeting the target.

    ``overall``: the mean over seeds of each seed's mean regret over the cells, and the
    standard deviation of those per-seed means.
    """
    with warnings.catch_warnings():  # a target no run chose within: its means are NaN (and said so in the tables)
        warnings.simplefilter("ignore", RuntimeWarning)
        return _summarise(records, cells, seeds)


def _summarise(records: dict[str, list[dict[str, Any]]], cells: Sequence[Cell], seeds: Sequence[int]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for label, runs_of_label in records.items():
        per_cell = {}
        per_seed = np.full((len(seeds), len(cells)), np.nan)
        runs_by_cell = []
        for c, cell in enumerate(cells):
            runs = sorted((r for r in runs_of_label if r["column"] == cell.column and r["quantile"] == cell.quantile), key=lambda r: r["seed"])
            assert [r["seed"] for r in runs] == list(seeds), (label, cell)
            runs_by_cell.append(runs)
            regrets = np.array([math.nan if r["regret_pp"] is None else r["regret_pp"] for r in runs])
            per_seed[:, c] = regrets
            per_cell[f"{cell.column}@{cell.quantile:g}"] = {
                "target_latency_ms": cell.target_latency_ms,
                "regret_mean_pp": float(np.nanmean(regrets)),
                "regret_std_pp": float(np.nanstd(regrets, ddof=1)),
                "no_feasible_choice": int(np.isnan(regrets).sum()),
                "meets_target_share": float(np.mean([r["top_reward_meets_target"] for r in runs])),
                "queries_mean": float(np.mean([r["queries"] for r in runs])),
                "proposals_mean": float(np.mean([r["proposals"] for r in runs])),
                "converged_runs": int(sum(r["converged"] for r in runs)),
                "wall_time_s_mean": float(np.mean([r["wall_time_s"] for r in runs])),
                "trajectory_mean_pp": {k: float(np.nanmean([r["trajectory"][k] for r in runs])) for k in runs[0]["trajectory"]},
            }
        # A run that chose nothing within its target has no regret: nanmean leaves it out of the
        # means, so it is counted here and the tables say so (and call no target met while any exist).
        seed_means = np.nanmean(per_seed, axis=1)
        # The same overall figure after fewer queries (the trajectories' checkpoints).
        by_budget = {}
        for checkpoint in runs_of_label[0]["trajectory"]:
            at = np.array([[r["trajectory"][checkpoint] for r in runs] for runs in runs_by_cell]).T  # seeds x cells
            means = np.nanmean(at, axis=1)
            by_budget[checkpoint] = {"mean_pp": float(np.mean(means)), "std_pp": float(np.std(means, ddof=1)), "no_choice_yet": int(np.isnan(at).sum())}
        table[label] = {
            "no_feasible_choice": int(np.isnan(per_seed).sum()),
            "overall_by_queries": by_budget,
            "cells": per_cell,
            "overall_regret_mean_pp": float(np.mean(seed_means)),
            "overall_regret_std_pp": float(np.std(seed_means, ddof=1)),
            "per_seed_overall_pp": [float(v) for v in seed_means],
            "overall_meets_target_share": float(np.mean([c["meets_target_share"] for c in per_cell.values()])),
            "overall_queries_mean": float(np.mean([c["queries_mean"] for c in per_cell.values()])),
        }
    return table


def render(summary: dict[str, Any], cells: Sequence[Cell], meta: dict[str, Any]) -> str:
    names = list(summary)
    lines = [
        "# Strategies on NAS-Bench-201 under latency targets",
        "",
        f"Reproduce: `{meta['command']}` (under `flock /tmp/mobilenas-cpu.lock`; {meta['wall_time_min']:.0f} min of CPU on this machine, one thread).",
        "",
        f"Table `{meta['data']}` ({meta['rows']} cells). Reward: MnasNet `{meta['reward']}` on `val_acc_12ep` (fraction) and the device's latency. "
        f"{len(meta['seeds'])} seeds ({meta['seeds'][0]}..{meta['seeds'][-1]}) x {meta['queries']} queries per strategy and target. A *query* is one distinct architecture looked up (de-duplication on: "
        "re-proposing a known architecture is answered from memory and costs no query; a run also ends if 1000 proposals in a row are known). "
        "*Regret*: best `test_acc_200ep` within the target minus `test_acc_200ep` of the run's choice (the highest-reward evaluated architecture "
        "within the target), in percentage points, mean +- seed-to-seed standard deviation. *Meets*: share of runs whose highest-reward "
        "architecture overall is within the target."
        + (
            f" **Latency filter** (nas-search's `--max-latency-ratio {meta['max_latency_ratio']:g}`): a proposal over {meta['max_latency_ratio']:g} x the target "
            "by the table is rejected before its look-up (no query) and told the reward 0, so every query is within "
            f"{meta['max_latency_ratio']:g} x the target."
            if meta.get("max_latency_ratio") is not None else ""
        ),
        "",
        "Strategy options: " + "; ".join(f"`{n}` {json.dumps(meta['configs'][n])}" for n in names),
        "",
        "| strategy | " + " | ".join(f"{c.column.removeprefix('latency_ms_')} <= {c.target_latency_ms:.3g} ms (q{int(c.quantile * 100)})" for c in cells) + " | overall |",
        "| --- | " + " | ".join("---" for _ in cells) + " | --- |",
    ]
    for name in names:
        row = summary[name]
        cells_text = []
        for cell in cells:
            result = row["cells"][f"{cell.column}@{cell.quantile:g}"]
            missed = result.get("no_feasible_choice", 0)
            chose = f"; {missed} of {len(meta['seeds'])} runs chose nothing within it" if missed else ""
            regret = "no regret" if missed == len(meta["seeds"]) else f"{result['regret_mean_pp']:.2f} +- {result['regret_std_pp']:.2f}"
            cells_text.append(f"{regret} (meets {result['meets_target_share']:.0%}{chose})")
        missed_all = row.get("no_feasible_choice", 0)
        left_out = f"; {missed_all} runs chose nothing within their target, left out of the means" if missed_all else ""
        lines.append(f"| {name} | " + " | ".join(cells_text) + f" | {row['overall_regret_mean_pp']:.2f} +- {row['overall_regret_std_pp']:.2f} (meets {row['overall_meets_target_share']:.0%}{left_out}) |")
    floor = [(c.best_final - c.optimum_final) * 100 for c in cells]
    lines.append("| *reward's optimum* | " + " | ".join(f"{f:.2f}" for f in floor) + f" | {np.mean(floor):.2f} |")
    lines += [
        "",
        "*Reward's optimum*: the regret of the architecture with the best `val_acc_12ep` among all those within the target (ties to the faster), "
        "i.e. of a strategy that found the reward's maximum with every query it wanted. The 12-epoch accuracy ranks the "
        "200-epoch one imperfectly, so this is the floor a search reaches by optimising its reward better; a run can land "
        "below it only by luck (choosing a lower-reward architecture that happens to train better to 200 epochs).",
    ]
    lines += ["", "Queries used (mean) and runs that stopped early because the strategy converged:", "",
              "| strategy | " + " | ".join(f"{c.column.removeprefix('latency_ms_')} q{int(c.quantile * 100)}" for c in cells) + " |",
              "| --- | " + " | ".join("---" for _ in cells) + " |"]
    for name in names:
        row = summary[name]["cells"]
        lines.append(f"| {name} | " + " | ".join(f"{row[f'{c.column}@{c.quantile:g}']['queries_mean']:.0f} ({row[f'{c.column}@{c.quantile:g}']['converged_runs']} conv.)" for c in cells) + " |")
    if "ppo" in summary and "random" in summary:
        lines += ["", "Target: PPO (MnasNet's controller) beats random search by more than the seed-to-seed standard deviation.", ""]
        seeds = len(summary["ppo"]["per_seed_overall_pp"])
        missing = {name: summary[name].get("no_feasible_choice", 0) for name in ("ppo", "random")}
        unjudged = _no_choice_reason(missing)
        if unjudged:
            lines.append(f"- n/a: {unjudged}, so no target is called met")
        for cell in cells:
            key = f"{cell.column}@{cell.quantile:g}"
            ppo, rnd = summary["ppo"]["cells"][key], summary["random"]["cells"][key]
            gap = rnd["regret_mean_pp"] - ppo["regret_mean_pp"]
            spread = max(ppo["regret_std_pp"], rnd["regret_std_pp"])
            cell_missing = _no_choice_reason({"ppo": ppo.get("no_feasible_choice", 0), "random": rnd.get("no_feasible_choice", 0)})
            lines.append(f"- {key}: random - ppo = {gap:.2f} pp vs std {spread:.2f} pp: {_met(gap > spread, cell_missing)}")
        gap, error = _overall_gap(summary, "ppo", "random")
        paired_error = _paired_error(summary, "ppo", "random")
        spread = max(summary["ppo"]["overall_regret_std_pp"], summary["random"]["overall_regret_std_pp"])
        lines.append(f"- overall (per-seed mean over the {len(cells)} targets): random - ppo = {gap:.2f} pp vs std {spread:.2f} pp: {_met(gap > spread, unjudged)}")
        if seeds < MIN_SEEDS_FOR_ERRORS:
            lines.append(f"- for scale: standard errors n/a ({_too_few(seeds)}); the target asks for more than one seed-to-seed standard deviation.")
        else:
            lines.append(
                f"- for scale: the unpaired standard error of that overall difference over {seeds} seeds (sqrt((std_ppo^2 + std_random^2) / n), "
                f"the seeds' pairing ignored) is {error:.2f} pp (difference = {gap / error:.1f} unpaired standard errors); the paired one (the standard "
                f"deviation of the per-seed differences / sqrt(n), PPO and random on the same seed, as the bootstrap below) is {paired_error:.2f} pp "
                f"({_in_errors(gap, paired_error)} paired standard errors); the target asks for more than one seed-to-seed standard deviation."
            )
        readings = _margin_bootstrap(summary)
        lines.append(
            "- the verdict depends on whose standard deviation is meant: "
            + "; ".join(
                f"{name}{' (the reading used above)' if name == STRICTEST else ''} {gap - m['margin_pp']:.2f} pp: {_met(m['margin_pp'] > 0, unjudged)}"
                for name, m in readings.items()
            )
            + ". The strictest reading decides here."
        )
        if seeds < MIN_SEEDS_FOR_ERRORS:
            lines.append(f"- how sure each verdict is: n/a ({_too_few(seeds)}: a bootstrap over so few seeds draws the same few values again and again).")
        elif unjudged:
            lines.append(f"- how sure each verdict is: n/a ({unjudged}).")
        else:
            lines.append(
                f"- how sure each verdict is (the {seeds} seeds resampled with their PPO and random runs paired, "
                f"{BOOTSTRAP_DRAWS} bootstrap draws): margin = (random - ppo) - std on these seeds [5%, 95% quantiles over the draws], and the share of draws in which it is met: "
                + "; ".join(f"{name} {m['margin_pp']:+.2f} [{m['low_pp']:+.2f}, {m['high_pp']:+.2f}] pp, met in {m['met_share']:.0%}" for name, m in readings.items())
                + "."
            )
        lines += [
            "",
            "The same overall comparison after fewer queries (each run's choice at that point; same runs):",
            "",
            "| queries | ppo | random | random - ppo | larger std | met |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for checkpoint, at in summary["ppo"]["overall_by_queries"].items():
            other = summary["random"]["overall_by_queries"][checkpoint]
            gap_at, spread_at = other["mean_pp"] - at["mean_pp"], max(at["std_pp"], other["std_pp"])
            none_yet = at.get("no_choice_yet", 0) + other.get("no_choice_yet", 0)
            met_at = f"n/a ({none_yet} runs had no choice within their target yet)" if none_yet else ("yes" if gap_at > spread_at else "no")
            lines.append(f"| {checkpoint} | {at['mean_pp']:.2f} +- {at['std_pp']:.2f} | {other['mean_pp']:.2f} +- {other['std_pp']:.2f} | {gap_at:.2f} | {spread_at:.2f} | {met_at} |")
        final = summary["random"]["overall_regret_mean_pp"]
        reached = [int(k) for k, v in summary["ppo"]["overall_by_queries"].items() if v["mean_pp"] <= final]
        if reached:
            lines.append(f"\nPPO reaches random search's {meta['queries']}-query regret ({final:.2f} pp) by {min(reached)} queries.")
    lines += _published_ordering(summary)
    lines += ["", f"![regret against queries]({meta.get('figure', 'strategies_nb201.png')})", ""]
    return "\n".join(lines)


MIN_SEEDS_FOR_ERRORS = 5  # below it a standard error or a bootstrap share over seeds says little: n/a


def _too_few(seeds: int) -> str:
    return f"{seeds} seeds; standard errors and bootstrap shares need at least {MIN_SEEDS_FOR_ERRORS}"


def _no_choice_reason(missing: dict[str, int]) -> str:
    """Why a PPO-versus-random verdict is not given: runs with no choice within their target (their
    regret is unknown, so the means leave them out); '' when there are none."""
    said = [f"{count} {name} run{'s' if count != 1 else ''}" for name, count in missing.items() if count]
    if not said:
        return ""
    return f"{' and '.join(said)} chose nothing within the target (no regret, left out of the means)"


def _met(met: bool, unjudged: str) -> str:
    if unjudged:
        return "n/a (runs without a choice)"
    return "met" if met else "NOT met"


def _in_errors(gap: float, error: float, signed: bool = False) -> str:
    """``gap`` in standard errors, one decimal (with its sign if ``signed``); n/a without a spread."""
    return "n/a" if error == 0 or not math.isfinite(error) else f"{gap / error:{'+' if signed else ''}.1f}"


def _paired_error(summary: dict[str, Any], a: str, b: str) -> float:
    """The standard error of the overall difference b - a with the seeds paired: the standard
    deviation of the per-seed differences over sqrt(n)."""
    change = np.asarray(summary[b]["per_seed_overall_pp"], dtype=float) - np.asarray(summary[a]["per_seed_overall_pp"], dtype=float)
    return float(change.std(ddof=1) / np.sqrt(len(change)))


def _overall_gap(summary: dict[str, Any], a: str, b: str) -> tuple[float, float]:
    """How much lower ``a``'s overall regret is than ``b``'s (pp), and the unpaired standard error of
    that difference (sqrt((std_a^2 + std_b^2) / n): each seed's runs of a and b are not paired)."""
    n = len(summary[a]["per_seed_overall_pp"])
    gap = summary[b]["overall_regret_mean_pp"] - summary[a]["overall_regret_mean_pp"]
    error = ((summary[a]["overall_regret_std_pp"] ** 2 + summary[b]["overall_regret_std_pp"] ** 2) / n) ** 0.5
    return gap, error


BOOTSTRAP_DRAWS = 10000
STRICTEST = "the larger of the two"


def _margin_bootstrap(summary: dict[str, Any], draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> dict[str, dict[str, float]]:
    """How sure the target's verdict is under each reading of "the seed-to-seed standard deviation".

    The seeds are resampled with replacement, each seed's PPO and random runs together (they share
    the seed, so the pairing is kept); each draw recomputes the overall gap (random - ppo) and the
    standard deviations, and the margin gap - std. Returns, per reading (PPO's own std, pooled, the
    larger of the two), the margin on the data itself, its 5% and 95% quantiles over the draws and
    the share of draws in which the margin is positive. Fixed ``seed``: the report is reproducible.
    """
    ppo = np.asarray(summary["ppo"]["per_seed_overall_pp"], dtype=float)
    rnd = np.asarray(summary["random"]["per_seed_overall_pp"], dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(ppo), size=(draws, len(ppo)))

    def margins(p: np.ndarray, r: np.ndarray) -> dict[str, np.ndarray]:
        gap = r.mean(axis=-1) - p.mean(axis=-1)
        sp, sr = p.std(axis=-1, ddof=1), r.std(axis=-1, ddof=1)
        return {"PPO's own": gap - sp, "pooled": gap - np.sqrt((sp**2 + sr**2) / 2), STRICTEST: gap - np.maximum(sp, sr)}

    observed, resampled = margins(ppo, rnd), margins(ppo[picks], rnd[picks])
    return {
        name: {
            "margin_pp": float(observed[name]),
            "low_pp": float(np.quantile(resampled[name], 0.05)),
            "high_pp": float(np.quantile(resampled[name], 0.95)),
            "met_share": float(np.mean(resampled[name] > 0)),
        }
        for name in observed
    }


def _published_ordering(summary: dict[str, Any]) -> list[str]:
    """Lines checking NAS-Bench-201's published ordering: regularized evolution >= REINFORCE > random."""
    if not all(name in summary for name in ("evolution", "reinforce", "random")):
        return []
    seeds = len(summary["random"]["per_seed_overall_pp"])
    lines = ["", "Published ordering on NAS-Bench-201 (Dong & Yang 2020): regularized evolution >= REINFORCE > random. Here (overall regret, same runs; "
             "unpaired standard errors, sqrt((std_a^2 + std_b^2) / n)):", ""]
    for a, b, relation in (("reinforce", "random", ">"), ("evolution", "random", ">"), ("evolution", "reinforce", ">=")):
        gap, error = _overall_gap(summary, a, b)
        missing = _no_choice_reason({name: summary[name].get("no_feasible_choice", 0) for name in (a, b)})
        if seeds < MIN_SEEDS_FOR_ERRORS or missing:
            lines.append(f"- {a} {relation} {b}: {b} - {a} = {gap:+.2f} pp: n/a ({missing or _too_few(seeds)})")
            continue
        if gap > 2 * error:
            verdict = "holds (more than 2 standard errors)"
        elif gap > -2 * error:
            verdict = "equal within 2 standard errors" + (": consistent with >=" if relation == ">=" else ": NOT shown")
        else:
            verdict = "reversed (more than 2 standard errors)"
        lines.append(f"- {a} {relation} {b}: {b} - {a} = {gap:+.2f} pp ({_in_errors(gap, error, signed=True)} unpaired standard errors): {verdict}")
    return lines


def plot(summary: dict[str, Any], cells: Sequence[Cell], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(cells) // 2 + len(cells) % 2, figsize=(4 * (len(cells) // 2 + len(cells) % 2), 7), squeeze=False)
    for ax, cell in zip(axes.T.flat, cells, strict=False):
        key = f"{cell.column}@{cell.quantile:g}"
        for name, row in summary.items():
            trajectory = row["cells"][key]["trajectory_mean_pp"]
            ax.plot([int(k) for k in trajectory], list(trajectory.values()), marker="o", markersize=3, label=name)
        ax.set_title(f"{cell.column.removeprefix('latency_ms_')} <= {cell.target_latency_ms:.3g} ms (q{int(cell.quantile * 100)})", fontsize=9)
        ax.set_xlabel("queries")
        ax.set_ylabel("regret (pp of test_acc_200ep)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


@dataclass(frozen=True)
class Entry:
    """One strategy with its options, under a label for the tables."""

    label: str
    strategy: str
    config: Any


def run_all(
    entries: Sequence[Entry], cells: Sequence[Cell], seeds: Sequence[int], reward: RewardSpec, queries: int, cache: Path,
    evaluators: dict[str, TabularEvaluator], shard: tuple[int, int] = (0, 1), max_latency_ratio: float | None = None,
) -> dict[str, list[dict[str, Any]]] | None:
    """Every (entry, cell, seed) run, from the cache where it is there; new runs are appended to it.

    ``shard=(k, n)`` runs only every n-th missing run starting at the k-th (to spread the work
    over processes; each configuration has its own cache file) and returns None when that leaves
    runs missing, so that only a run with every result renders the tables.
    """
    cache.mkdir(parents=True, exist_ok=True)
    (cache / ".gitignore").write_text("*\n")
    fingerprint = next(iter(evaluators.values())).fingerprint()
    journals = {e.label: Journal(cache / f"{cache_stem(e.strategy)}-{cache_key(e.strategy, e.config, reward, queries, fingerprint, max_latency_ratio)}.jsonl") for e in entries}
    done: dict[tuple[str, str, float, int], dict[str, Any]] = {}
    for label, journal in journals.items():
        for record in journal.read():
            done[(label, record["column"], record["quantile"], record["seed"])] = record
    todo = [(e, cell, seed) for e in entries for cell in cells for seed in seeds if (e.label, cell.column, cell.quantile, seed) not in done]
    print(f"{sum(1 for e in entries for c in cells for s in seeds) - len(todo)} runs cached, {len(todo)} to run", file=sys.stderr)
    mine = todo[shard[0]::shard[1]]
    for entry, cell, seed in progress(mine, desc="runs", unit="run"):
        record = run_one(evaluators[cell.column], cell, entry.strategy, entry.config, reward, seed, queries, max_latency_ratio)
        journals[entry.label].append(record)
        done[(entry.label, cell.column, cell.quantile, seed)] = record
    if len(mine) < len(todo):
        return None
    return {e.label: [done[(e.label, c.column, c.quantile, s)] for c in cells for s in seeds] for e in entries}


# Candidate options tried on the tuning seeds (never the reported ones), one change at a time
# from the previous defaults, then combinations of what helped: see strategies_nb201.tuning.md.
TUNING_SEEDS = range(100, 105)
TUNING: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("random", ()),
    ("evolution", ()),
    ("evolution", ("population_size=20", "tournament_size=5")),
    ("reinforce", ()),
    ("reinforce", ("learning_rate=0.02",)),
    ("reinforce", ("learning_rate=0.1",)),
    ("tpe", ()),
    ("nsga2", ()),
    ("ppo", ("tanh_constant=none",)),
    ("ppo", ("entropy_weight=0.05", "tanh_constant=none")),
    ("ppo", ("learning_rate=0.003", "tanh_constant=none")),
    ("ppo", ("normalize_advantages=false", "learning_rate=0.005", "tanh_constant=none")),
    ("ppo", ("batch_size=5", "tanh_constant=none")),
    ("ppo", ("batch_size=20", "tanh_constant=none")),
    ("ppo", ("epochs=2", "tanh_constant=none")),
    ("ppo", ("batch_size=20", "learning_rate=0.005", "tanh_constant=none")),
    ("ppo", ("batch_size=30", "learning_rate=0.005", "tanh_constant=none")),
    ("ppo", ("tanh_constant=1.5",)),
    ("ppo", ("tanh_constant=2.0",)),
    ("ppo", ("tanh_constant=2.5",)),
)

# Round 2 (`--tune ppo`): the controller alone, around its round-1 default, on twice as many
# tuning seeds (the differences sought are a tenth of a point; 5 seeds cannot resolve them).
TUNING_SEEDS_PPO = range(100, 110)
TUNING_PPO: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("random", ()),
    ("ppo", ()),
    ("ppo", ("center_advantages=true",)),
    ("ppo", ("learning_rate=0.02",)),
    ("ppo", ("learning_rate=0.005",)),
    ("ppo", ("batch_size=20",)),
    ("ppo", ("epochs=8",)),
    ("ppo", ("entropy_weight=0.01",)),
    ("ppo", ("baseline_decay=0.95",)),
    ("ppo", ("tanh_constant=1.75",)),
)
# Round 3 (`--tune ppo2`): round 2 found a plateau of the usual knobs; this one tries training on
# the best share of each batch only (the risk-seeking policy gradient, ``risk_seeking``) and a
# smaller LSTM, on 20 tuning seeds (paired with the defaults on the same seeds).
TUNING_SEEDS_PPO2 = range(100, 120)
TUNING_PPO2: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("random", ()),
    ("ppo", ()),
    ("ppo", ("risk_seeking=0.5",)),
    ("ppo", ("risk_seeking=0.3", "batch_size=20")),
    ("ppo", ("hidden_size=32",)),
)
# Round 4 (`--tune ppo3`): the controller trains on each distinct architecture once
# (``learn_from_repeats=false``): with the defaults nearly 9 in 10 of its proposals are repeats.
TUNING_PPO3: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("random", ()),
    ("ppo", ()),
    ("ppo", ("learn_from_repeats=false",)),
    ("ppo", ("learn_from_repeats=false", "batch_size=5")),
)
# Round 5 (`--tune ppo4`): the controller's choice at 300 queries improves little after 250 (it
# proposes mostly repeats by then); knobs that slow its collapse, each paired with the defaults on
# the round 3 seeds (the two round 2 ones that had looked best, now paired, and two new ones).
TUNING_PPO4: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("random", ()),
    ("ppo", ()),
    ("ppo", ("tanh_constant=1.75",)),
    ("ppo", ("learning_rate=0.005",)),
    ("ppo", ("entropy_weight=0.003",)),
    ("ppo", ("temperature=1.5",)),
)
# Round 6 (`--tune ppo5`): the tanh constant bounds each decision's logits, so it caps how sure
# the policy gets (2.0: at most 0.93 for one of 5 options; 1.75: 0.89, which in round 5 cut the
# repeats from 2663 to 1171 proposals and the regret by 0.03 +- 0.04 pp); the same direction
# further (1.5: 0.83, 1.25: 0.76), paired with the defaults on the round 3 seeds.
TUNING_PPO5: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("random", ()),
    ("ppo", ()),
    ("ppo", ("tanh_constant=1.5",)),
    ("ppo", ("tanh_constant=1.25",)),
)


TUNING_GRIDS = {
    "defaults": (TUNING_SEEDS, TUNING, ".tuning.md"),
    "ppo": (TUNING_SEEDS_PPO, TUNING_PPO, ".tuning-ppo.md"),
    "ppo2": (TUNING_SEEDS_PPO2, TUNING_PPO2, ".tuning-ppo2.md"),
    "ppo3": (TUNING_SEEDS_PPO2, TUNING_PPO3, ".tuning-ppo3.md"),
    "ppo4": (TUNING_SEEDS_PPO2, TUNING_PPO4, ".tuning-ppo4.md"),
    "ppo5": (TUNING_SEEDS_PPO2, TUNING_PPO5, ".tuning-ppo5.md"),
}


def render_tuning(summary: dict[str, Any], entries: Sequence[Entry], meta: dict[str, Any]) -> str:
    lines = [
        "# Tuning the strategies' defaults on NAS-Bench-201 (tuning seeds only)",
        "",
        f"Reproduce: `{meta['command']}` (under `flock /tmp/mobilenas-cpu.lock`). Same problem, reward and metrics as "
        f"`strategies_nb201.md`, but on seeds {meta['seeds'][0]}..{meta['seeds'][-1]}, which the reported benchmark (seeds 0..19) never uses, "
        "so the defaults are not fitted to the reported numbers. Overall regret: mean over seeds of the mean over the 6 targets "
        "(pp of test_acc_200ep), +- the seed-to-seed standard deviation; queries: distinct architectures evaluated (300 unless the "
        "strategy converged first); proposals: architectures proposed, repeats answered from memory included; *vs ppo defaults*: "
        "each seed's overall regret minus that of the controller's defaults on the same seed, mean +- its standard error "
        "(negative is better).",
        "",
        f"| strategy | {meta['options_header']} | overall regret (pp) | vs ppo defaults (paired, pp) | meets target | queries | proposals | s/run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    baseline = summary.get("ppo")  # the controller with its defaults, where the grid has it
    for entry in entries:
        row = summary[entry.label]
        changed = entry.label.partition(" ")[2] or "(defaults)"
        wall = np.mean([c["wall_time_s_mean"] for c in row["cells"].values()])
        proposals = np.mean([c["proposals_mean"] for c in row["cells"].values()])
        paired = "-"
        if baseline is not None and entry.strategy == "ppo" and entry.label != "ppo":
            change = np.array(row["per_seed_overall_pp"]) - np.array(baseline["per_seed_overall_pp"])
            paired = f"{change.mean():+.2f} +- {change.std(ddof=1) / np.sqrt(len(change)):.2f}"
        lines.append(
            f"| {entry.strategy} | {changed} | {row['overall_regret_mean_pp']:.2f} +- {row['overall_regret_std_pp']:.2f} | {paired} | "
            f"{row['overall_meets_target_share']:.0%} | {row['overall_queries_mean']:.0f} | {proposals:.0f} | {wall:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _protocol_options(tune: str | None) -> list[str]:
    """The options whose defaults make the protocol of the committed results (a tuning grid names
    its strategies, options and seeds itself)."""
    shared = ["--data", "--columns", "--quantiles", "--queries", "--reward"]
    return shared if tune else [*shared, "--strategies", "--seeds", "--first-seed", "--option"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="strategies_nb201", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the NAS-Bench-201 CSV (default: %(default)s)")
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES), help="comma-separated (default: %(default)s); a strategy of your own is FILE.py:CLASS or MODULE:CLASS (with --out)")
    parser.add_argument("--columns", default=",".join(LATENCY_COLUMNS), help="latency columns (default: all three devices)")
    parser.add_argument("--quantiles", default="0.25,0.5", help="latency quantiles used as targets (default: %(default)s)")
    parser.add_argument("--seeds", type=at_least_two, default=20, metavar="N", help="runs per strategy and target, seeds FIRST_SEED .. FIRST_SEED+N-1 (default: %(default)s)")
    parser.add_argument("--first-seed", type=seed_number, default=0, help="the first seed (default: %(default)s; the tuning grids use their own seeds)")
    parser.add_argument("--queries", type=positive_int, default=300, metavar="N", help="distinct architectures looked up per run (default: %(default)s)")
    parser.add_argument("--reward", choices=("hard", "soft"), default="hard", help="MnasNet's reward on the 12-epoch accuracy and the latency (default: %(default)s)")
    parser.add_argument("--max-latency-ratio", type=positive_float, default=None, metavar="R", help="nas-search's latency filter: reject proposals over R x target before their look-up (no query; told reward 0) (default: no filter)")
    parser.add_argument("--option", action="append", default=[], metavar="STRATEGY.KEY=VALUE", help="override a strategy option, e.g. ppo.learning_rate=0.02")
    parser.add_argument("--tune", nargs="?", const="defaults", choices=sorted(TUNING_GRIDS), help="run a tuning grid on its tuning seeds (never the reported ones): `defaults` (every strategy; writes STEM.tuning.md), `ppo`, `ppo2`, `ppo3`, `ppo4` or `ppo5` (the controller; STEM.tuning-ppo.md, -ppo2.md ... -ppo5.md)")
    parser.add_argument("--shard", default="0/1", metavar="K/N", help="run only the K-th of every N missing runs (start N processes with K = 0..N-1 to use N cores, then once more without --shard to write the tables)")
    parser.add_argument("--cache", type=Path, default=HERE / "strategies_nb201.cache", help="folder of finished runs, one file per configuration; a rerun reads them instead of searching again (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE / "strategies_nb201", help="output stem: writes STEM.md, STEM.json, STEM.png (default: the committed results, benchmarks/strategies_nb201; a run that changes the protocol's options needs its own)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    if args.out.is_dir():  # a stem: /tmp would write /tmp.md, /tmp.json and /tmp.png
        parser.error(f"--out {args.out} is a folder: give a file stem in it, e.g. --out {args.out / 'strategies_nb201'}")

    torch.set_num_threads(1)
    if args.max_latency_ratio is not None:
        if args.tune:
            parser.error("--tune runs the benchmark as reported, without a latency filter: leave --max-latency-ratio out")
        if args.out == HERE / "strategies_nb201" and not args.no_write:
            parser.error("give --out STEM (or --no-write) with --max-latency-ratio: the default writes the committed results, which have no latency filter")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not strategies:
        parser.error("--strategies names none: give one or more, e.g. ppo,random")
    for position, name in enumerate(strategies):
        if is_plugin(name):
            strategies[position] = name = recorded_strategy_name(name)
            if args.out == HERE / "strategies_nb201" and not args.no_write:
                parser.error(f"give --out STEM (or --no-write) to compare {name}: the default writes the committed results of the built-in strategies")
            strategy_class(name)  # loaded now: a bad name is one line, before any run
        elif name not in STRATEGIES:
            parser.error(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}, or give one of your own as FILE.py:CLASS or MODULE:CLASS")
    if args.out == HERE / "strategies_nb201" and not args.no_write:  # the committed results are the protocol's only (a strategy of one's own is said above)
        changed = [option for option in _protocol_options(args.tune) if getattr(args, option.lstrip("-").replace("-", "_")) != parser.get_default(option.lstrip("-").replace("-", "_"))]
        if changed:
            parser.error(f"give --out STEM (or --no-write): the default writes the committed results of the benchmark's protocol, and {', '.join(changed)} change{'s' if len(changed) == 1 else ''} it")
    if not args.no_write:  # before the runs, not after them
        suffixes = (TUNING_GRIDS[args.tune][2],) if args.tune else (".md", ".json", ".png")
        check_out(parser, *(stem_file(args.out, suffix) for suffix in suffixes))
    twice = next((name for position, name in enumerate(strategies) if name in strategies[:position]), None)
    if twice is not None:
        parser.error(f"--strategies names {short_strategy_name(twice)} twice: name each strategy once (compare its options in separate --out runs)")
    labels = strategy_labels(strategies)
    overrides: dict[str, list[str]] = {name: [] for name in strategies}
    for option in args.option:
        setting, equals, value = option.partition("=")
        name, dot, key = setting.rpartition(".")  # 'ppo.learning_rate=0.02', 'mine.py:Greedy.warmup=3'
        name = next((s for s in strategies if name in (s, labels[s])), name)
        if not dot or not equals or name not in overrides:
            parser.error(f"--option {option!r} must be STRATEGY.KEY=VALUE for one of {', '.join(labels.values())}")
        overrides[name].append(f"{key}={value}")
    reward = RewardSpec.from_options(args.reward)
    try:
        quantiles = [float(q) for q in args.quantiles.split(",")]
        if not all(0 <= q <= 1 for q in quantiles):
            raise ValueError
    except ValueError:
        parser.error(f"--quantiles {args.quantiles!r} must be numbers in [0, 1] separated by commas, e.g. 0.25,0.5")
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    try:
        k, n = (int(part) for part in args.shard.split("/"))
        if not 0 <= k < n:
            raise ValueError
    except ValueError:
        parser.error(f"--shard {args.shard!r} must be K/N with 0 <= K < N, e.g. 0/2")
    if args.tune:
        tune_seeds, grid, _ = TUNING_GRIDS[args.tune]
        seeds = list(tune_seeds)
        entries = [Entry(" ".join((name, *options)), name, parse_options(name, list(options))) for name, options in grid]
    else:
        seeds = list(range(args.first_seed, args.first_seed + args.seeds))
        entries = [Entry(labels[name], name, parse_options(name, overrides[name])) for name in strategies]

    if not args.data.is_file():  # the default is where ../shared/data lies beside this checkout
        parser.error(f"--data {args.data}: no such file; give --data PATH of the NAS-Bench-201 CSV (nb201_cifar10_dev.csv.gz, in the shared data's nb201/)")
    evaluators = {column: TabularEvaluator(args.data, latency_column=column) for column in columns}
    cells = []
    for column in columns:
        for quantile in quantiles:
            target = evaluators[column].latency_quantile(quantile)
            best = evaluators[column].best_feasible(target)
            assert best is not None and best.final_accuracy is not None
            optimum = evaluators[column].best_feasible(target, by="reward")
            assert optimum is not None and optimum.final_accuracy is not None
            cells.append(Cell(column, quantile, target, best.final_accuracy, optimum.final_accuracy))

    started = time.perf_counter()
    records = run_all(entries, cells, seeds, reward, args.queries, args.cache, evaluators, (k, n), args.max_latency_ratio)
    if records is None:
        print(f"shard {k}/{n} done; run again without --shard to write the tables", file=sys.stderr)
        return 0
    summary = summarise(records, cells, seeds)
    total_wall_min = sum(r["wall_time_s"] for runs in records.values() for r in runs) / 60
    command = command_line(__file__, argv, flock=False)
    meta = {
        "command": command, "data": args.data.name, "rows": len(next(iter(evaluators.values()))), "reward": reward.describe(),
        "seeds": seeds, "queries": args.queries, "max_latency_ratio": args.max_latency_ratio, "configs": {e.label: config_to_dict(e.config) for e in entries},
        "wall_time_min": total_wall_min, "this_session_s": time.perf_counter() - started,
    }
    if args.tune:
        ppo_defaults = ", ".join(f"{k}={v}" for k, v in config_to_dict(parse_options("ppo", [])).items())
        meta["options_header"] = (
            "options (ppo's default is now tanh_constant=2.0; `none` = unbounded logits, the earlier default)"
            if args.tune == "defaults"
            else f"options changed from the defaults{' at the time' if args.tune == 'ppo' else ''} ({ppo_defaults})"
        )
        text = render_tuning(summary, entries, meta)
        print(text)
        if not args.no_write:
            atomic_write_text(stem_file(args.out, TUNING_GRIDS[args.tune][2]), text)
        return 0
    meta["figure"] = stem_file(args.out, ".png").name
    text = render(summary, cells, meta)
    print(text)
    if not args.no_write:
        atomic_write_text(stem_file(args.out, ".md"), text)
        margins = {"target_margins": _margin_bootstrap(summary)} if "ppo" in summary and "random" in summary else {}
        atomic_write_json(stem_file(args.out, ".json"), {"meta": meta, "cells": [c.__dict__ for c in cells], "summary": summary, **margins, "provenance": provenance(__file__, argv)})
        plot(summary, cells, stem_file(args.out, ".png"))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, None, "strategies_nb201"))
