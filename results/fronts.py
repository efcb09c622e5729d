"""Pareto fronts, hypervolumes and comparisons across runs.

The front is the non-dominated set of (accuracy up, latency down) over a run's candidates
(:func:`mobilenas.search.pareto.pareto_mask`), on one of two latency axes:

``table``     the latency the run scored with: the lookup table's prediction (a tabular run: its
              benchmark's latency column, itself a measurement);
``measured``  the latency measured end to end where it is known, the table's prediction where
              it is not (``latency_source`` says which, per point; plots draw the two apart).

The hypervolume (:func:`mobilenas.search.pareto.hypervolume`) is the area the front dominates
up to a reference point ``(accuracy, latency_ms)``, in accuracy x milliseconds. The default
reference point is accuracy 0 and twice the (largest) target latency, shared by every run of a
comparison so their figures are comparable; ``hypervolume_normalised`` divides by the
reference box, ``latency_ms x (1 - accuracy)``: with accuracy 0 it is the mean, over budgets
from 0 to the reference latency, of the best accuracy the run found within the budget.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mobilenas.errors import did_you_mean
from mobilenas.results.common import RunBase, number_or_nan
from mobilenas.results.load import RunResults, load_run, load_runs, printable
from mobilenas.results.search_run import SearchResults
from mobilenas.search.pareto import hypervolume as _hypervolume
from mobilenas.search.pareto import pareto_mask

LATENCY_KINDS = ("table", "measured")
REFERENCE_LATENCY_FACTOR = 2.0
# Per-run figures that make sense to average over seeds.
COMPARED_METRICS = (
    "best_reward", "best_accuracy", "best_latency_ms", "best_feasible_accuracy", "best_feasible_final_accuracy", "hypervolume",
    "hypervolume_normalised", "front_size", "trials_to_best", "regret_pp",
)


@dataclass(frozen=True)
class ReferencePoint:
    """The hypervolume's reference point: the worst accuracy and latency (ms) that still count."""

    accuracy: float
    latency_ms: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.accuracy) and 0 <= self.accuracy < 1):
            raise ValueError(f"the reference point's accuracy must be a fraction in [0, 1), got {self.accuracy}")
        if not (math.isfinite(self.latency_ms) and self.latency_ms > 0):
            raise ValueError(f"the reference point's latency must be a positive number of ms, got {self.latency_ms}")

    @classmethod
    def parse(cls, text: str) -> ReferencePoint:
        """``ACCURACY,LATENCY`` as typed on a command line: ``0.5,20ms``, ``0,0.03s``, ``0.2,15``."""
        from mobilenas.units import parse_duration_ms

        parts = [p.strip() for p in re.split(r"[,;]", str(text))]
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"a reference point is ACCURACY,LATENCY (like 0.5,20ms), got {text!r}")
        try:
            accuracy = float(parts[0])
        except ValueError:
            raise ValueError(f"the reference point's accuracy {parts[0]!r} is not a number (like 0.5)") from None
        latency = parse_duration_ms(parts[1], what="the reference point's latency")
        return cls(accuracy, latency)

    def as_tuple(self) -> tuple[float, float]:
        return (self.accuracy, self.latency_ms)

    def to_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "latency_ms": self.latency_ms}


#: what the functions below take for a run: a loaded run (:func:`load_run`) or its folder
RunLike = RunResults | str | Path
#: what they take for a reference point: a :class:`ReferencePoint`, ``(accuracy, latency_ms)``, or ``"0.5,20ms"``
ReferenceLike = ReferencePoint | tuple[float, float] | Sequence[float] | str


def as_run(run: RunLike) -> RunResults:
    """``run`` itself, or the run in the folder ``run`` names (:func:`load_run`)."""
    if isinstance(run, RunBase):
        return run
    if isinstance(run, (str, Path)):
        return load_run(run)
    raise TypeError(f"expected a run (mobilenas.results.load_run(folder)) or a run's folder, got {type(run).__name__}")


def as_runs(runs: Sequence[RunLike]) -> list[RunResults]:
    """Runs as :func:`as_run` takes them; folders are read with labels made unique (:func:`load_runs`)."""
    if isinstance(runs, (str, Path, RunBase)):
        raise TypeError("expected a list of runs (or of runs' folders), got a single one; put it in a list")
    runs = list(runs)
    if runs and all(isinstance(r, (str, Path)) for r in runs):
        return load_runs(runs)  # type: ignore[arg-type]
    return [as_run(r) for r in runs]


def as_reference(reference: ReferenceLike | None) -> ReferencePoint | None:
    """A reference point as given: a :class:`ReferencePoint`, ``(accuracy, latency_ms)``, or text
    as on the command line (``"0.5,20ms"``); ``None`` stays ``None`` (the default point)."""
    if reference is None or isinstance(reference, ReferencePoint):
        return reference
    if isinstance(reference, str):
        return ReferencePoint.parse(reference)
    values = [v for v in reference if isinstance(v, (int, float)) and not isinstance(v, bool)] if isinstance(reference, Sequence) else []
    if len(values) != 2 or len(reference) != 2:
        raise TypeError(f"a reference point is ReferencePoint(accuracy, latency_ms), a pair (accuracy, latency_ms) or text like '0.5,20ms', got {reference!r}")
    return ReferencePoint(float(values[0]), float(values[1]))


def check_latency(latency: str) -> None:
    if latency not in LATENCY_KINDS:
        raise ValueError(f"latency must be one of {', '.join(LATENCY_KINDS)}, got {latency!r}")


def points(run: RunLike, latency: str = "table") -> pd.DataFrame:
    """The run's candidates with the latency axis chosen: ``front_latency_ms`` and ``latency_source``."""
    check_latency(latency)
    run = as_run(run)
    frame = run.candidates().copy()
    table = frame["latency_ms"].astype(float)
    if latency == "measured":
        measured = pd.to_numeric(frame["measured_latency_ms"], errors="coerce").astype(float)
        known = measured.notna() & np.isfinite(measured)
        frame["front_latency_ms"] = measured.where(known, table)
        frame["latency_source"] = np.where(known, "measured", "table")
    else:
        frame["front_latency_ms"] = table
        frame["latency_source"] = "table"
    return frame


def pareto_front(run: RunLike, latency: str = "table") -> pd.DataFrame:
    """The non-dominated candidates of ``run``, fastest first (columns of :func:`points`)."""
    return front_of(points(run, latency))


def front_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The non-dominated rows of a :func:`points` frame, fastest first."""
    if frame.empty:
        return frame
    mask = pareto_mask(frame["accuracy"].to_numpy(dtype=float), frame["front_latency_ms"].to_numpy(dtype=float))
    return frame[mask].sort_values(["front_latency_ms", "accuracy"], ascending=[True, False]).reset_index(drop=True)


def default_reference_point(runs: RunLike | Sequence[RunLike]) -> ReferencePoint:
    """Accuracy 0 and twice the largest target latency of ``runs`` (see the module docstring)."""
    group = [as_run(runs)] if isinstance(runs, (RunBase, str, Path)) else as_runs(runs)
    targets = [r.target_latency_ms for r in group if math.isfinite(r.target_latency_ms) and r.target_latency_ms > 0]
    if targets:
        return ReferencePoint(0.0, REFERENCE_LATENCY_FACTOR * max(targets))
    latencies = [float(points(r)["front_latency_ms"].max()) for r in group if len(r.candidates())]
    if not latencies:
        raise ValueError("no run has a target latency or a candidate to derive a reference point from; give one (like 0,20ms)")
    return ReferencePoint(0.0, 1.1 * max(latencies))


def hypervolume(run: RunLike, reference: ReferenceLike | None = None, latency: str = "table") -> float:
    """Area (accuracy x ms) the run's front dominates up to ``reference`` (default: :func:`default_reference_point`);
    NaN for a run with no candidate (no front), 0 for a front no point of which beats ``reference``."""
    run = as_run(run)
    return _volume_of(points(run, latency), as_reference(reference) or default_reference_point(run))


def _volume_of(frame: pd.DataFrame, reference: ReferencePoint) -> float:
    if frame.empty:  # no candidate: no front to measure (NaN, as its other figures), not a front of area 0
        return math.nan
    return float(_hypervolume(frame["accuracy"].to_numpy(dtype=float), frame["front_latency_ms"].to_numpy(dtype=float), reference.as_tuple()))


def normalised(value: float, reference: ReferencePoint) -> float:
    """A hypervolume as a fraction of the reference box (see the module docstring)."""
    return value / (reference.latency_ms * (1.0 - reference.accuracy))


def best_so_far(run: SearchResults | str | Path) -> pd.DataFrame:
    """For each trained trial in finishing order: ``order``, ``number``, ``reward``, ``best_reward`` so far."""
    loaded = as_run(run)
    if not isinstance(loaded, SearchResults):
        raise TypeError(f"best_so_far takes a search run; {loaded.path} is a {type(loaded).__name__}")
    run = loaded
    trained = run.trained()
    rewards = trained["reward"].astype(float).where(trained["status"] == "ok", 0.0).fillna(0.0)
    return pd.DataFrame({
        "trial": np.arange(1, len(trained) + 1),
        "order": trained["order"].to_numpy(),
        "number": trained["number"].to_numpy(),
        "reward": rewards.to_numpy(),
        "best_reward": rewards.cummax().to_numpy(),
    })


def _elapsed_s(run: SearchResults) -> float:
    finished = run.trials["finished"].dropna()
    created = pd.to_datetime(run.manifest.get("created"), errors="coerce", utc=True)
    if finished.empty or pd.isna(created):
        return math.nan
    return float((finished.max() - created).total_seconds())


def run_summary(run: RunLike, reference: ReferenceLike | None = None, latency: str = "table") -> dict[str, Any]:
    """One run's figures (what ``nas-results show --json`` prints under ``summary``).

    ``training_time_s`` is the sum of the trainings' own times (a search's trials, which run side by
    side with several workers; a NetAdapt run's iterations); ``elapsed_s``, a search's time from
    its start to its last result.
    """
    run = as_run(run)
    reference = as_reference(reference) or default_reference_point(run)
    frame = points(run, latency)
    front = front_of(frame)
    volume = _volume_of(frame, reference)
    target = run.target_latency_ms
    accurate = most_accurate_within(frame, target)
    common: dict[str, Any] = {
        "run": run.label,
        "path": printable(str(run.path)),  # a table cell: undecodable bytes of the name shown as U+FFFD
        "kind": run.kind,
        "strategy": run.strategy,
        "seed": run.seed,
        "target_latency_ms": target,
        "latency_axis": latency,
        "candidates": len(frame),
        "front_size": len(front),
        "hypervolume": volume,
        "hypervolume_normalised": normalised(volume, reference),
        "reference_point": reference.to_dict(),
        "best_feasible_accuracy": float(accurate["accuracy"]) if accurate is not None else math.nan,
        # the final column (a tabular benchmark's test_acc_200ep) of that architecture: what a
        # comparison of strategies on a benchmark reports; NaN where runs have no final column
        "best_feasible_final_accuracy": number_or_nan(accurate.get("final_accuracy")) if accurate is not None else math.nan,
        "measured_points": int((frame["latency_source"] == "measured").sum()) if latency == "measured" else int(frame["measured_latency_ms"].notna().sum()),
    }
    if isinstance(run, SearchResults):
        counts = run.counts()
        ok = run.candidates()
        # the highest reward; of equal rewards the faster (the one that dominates: the fastest of
        # equals, as most_accurate_within names it and nas-search's best.json), then the earlier
        ranked = ok[ok["reward"].notna()].sort_values(["reward", "latency_ms"], ascending=[False, True], kind="stable")
        best_row = ranked.iloc[0] if len(ranked) else None
        common.update({
            "problem": run.problem,
            "space": run.space_name,
            "reward": run.reward_description,
            "samples": run.samples,
            "stopped": run.stopped,
            # its --samples done, or stopped early by its strategy; otherwise interrupted, stopped by
            # --time-limit or running now, and its figures are those of a part of the search
            "finished": bool(run.stopped) or (run.samples is not None and counts["trained"] >= run.samples),
            "time_limit_s": run.time_limit_s,
            "journal_unread": run.journal_unread,  # the figures come from trials.csv: why
            "results_unread": run.results_unread,  # no result could be read, though best.json is there: why
            **counts,
            "best_number": int(best_row["number"]) if best_row is not None else None,
            "best_reward": float(best_row["reward"]) if best_row is not None else math.nan,
            "best_accuracy": float(best_row["accuracy"]) if best_row is not None else math.nan,
            "best_latency_ms": float(best_row["latency_ms"]) if best_row is not None else math.nan,
            "best_measured_latency_ms": float(best_row["measured_latency_ms"]) if best_row is not None and pd.notna(best_row["measured_latency_ms"]) else math.nan,
            "best_final_accuracy": float(best_row["final_accuracy"]) if best_row is not None and pd.notna(best_row["final_accuracy"]) else math.nan,
            "best_architecture": str(best_row["architecture"]) if best_row is not None else None,
            "best_feasible_number": int(accurate["number"]) if accurate is not None else None,
            "best_feasible_latency_ms": float(accurate["front_latency_ms"]) if accurate is not None else math.nan,
            "trials_to_best": int((run.trained()["number"] == best_row["number"]).to_numpy().argmax()) + 1 if best_row is not None else None,
            "training_time_s": float(run.trials.loc[run.trials["source"] == "trained", "wall_time_s"].sum()),
            "elapsed_s": _elapsed_s(run),
        })
    else:
        refined = run.refined or {}
        iterations = run.iterations
        start = iterations.iloc[0] if len(iterations) else None
        common.update({
            "problem": "netadapt",
            "space": None,
            "reward": None,
            "source": run.source,
            "selection": run.selection,
            "finished": run.finished,
            "iterations": max(0, len(iterations) - 1),
            "start_latency_ms": run.start_latency_ms,
            "start_accuracy": float(start["accuracy"]) if start is not None else math.nan,
            "best_reward": math.nan,
            "best_accuracy": number_or_nan(refined.get("accuracy")) if refined else (float(iterations["accuracy"].iloc[-1]) if len(iterations) else math.nan),
            "best_latency_ms": number_or_nan(refined.get("latency_ms")) if refined else (float(iterations["latency_ms"].iloc[-1]) if len(iterations) else math.nan),
            "best_measured_latency_ms": number_or_nan(refined.get("measured_latency_ms")) if refined else math.nan,
            "test_accuracy": number_or_nan(refined.get("test_accuracy")) if refined else math.nan,
            "best_architecture": refined.get("notation") if refined else (str(iterations["notation"].iloc[-1]) if len(iterations) else None),
            "trials_to_best": None,
            "training_time_s": float(iterations["wall_time_s"].sum()) if len(iterations) else 0.0,
            "time_limit_s": run.time_limit_s,
        })
        # an iteration begun and not committed (killed, or stopped by --time-limit): its finished
        # proposals are kept for the resume
        begun = run.unfinished_iteration
        common.update(dict(zip(("unfinished_iteration", "unfinished_proposals_done", "unfinished_proposals_planned"), begun or (None, None, None), strict=True)))
        # a long training killed part way: its finished epochs are kept for the resume
        training = run.long_training_in_progress
        common.update(dict(zip(("unfinished_training", "unfinished_training_epochs_done", "unfinished_training_epochs"), training or (None, None, None), strict=True)))
        # the budget is met by the table's latency (what NetAdapt prunes by), up to float rounding
        common["meets_budget"] = bool(common["best_latency_ms"] <= run.target_latency_ms * (1 + 1e-9)) if refined else None
        # Within the budget, the network the run delivers: the refined one (an iteration's accuracy
        # after its short fine-tune, perhaps higher, was the best of its proposals on the same
        # validation images, and those weights are not the run's result)
        delivered = frame[frame["source"] == "refined"]
        within = len(delivered) and float(delivered["front_latency_ms"].iloc[0]) <= target * (1 + 1e-9)
        common["best_feasible_accuracy"] = float(delivered["accuracy"].iloc[0]) if within else math.nan
    return common


def most_accurate_within(frame: pd.DataFrame, target_ms: float) -> pd.Series | None:
    """The row of :func:`points` of highest accuracy whose ``front_latency_ms`` meets ``target_ms``
    (the fastest of equals, as ``nas-search`` names it), or None."""
    if not math.isfinite(target_ms):
        return None
    within = frame[frame["front_latency_ms"] <= target_ms]
    if within.empty:
        return None
    return within.sort_values(["accuracy", "front_latency_ms"], ascending=[False, True], kind="stable").iloc[0]


def compare_runs(runs: Sequence[RunLike], reference: ReferenceLike | None = None, latency: str = "table") -> pd.DataFrame:
    """One row per run (:func:`run_summary`), all against one reference point (default: shared by all runs)."""
    runs = as_runs(runs)
    if not runs:
        raise ValueError("give at least one run to compare")
    reference = as_reference(reference) or default_reference_point(runs)
    rows = [run_summary(run, reference, latency) for run in runs]
    oracles = _Oracles()
    for run, row in zip(runs, rows, strict=True):
        row["reference_point"] = f"{reference.accuracy:g},{reference.latency_ms:g}ms"
        if isinstance(run, SearchResults) and run.problem == "tabular":
            oracle, why = oracles.of(run)
            row["oracle_final_accuracy"] = oracle
            row["regret_pp"] = 100.0 * (oracle - row["best_feasible_final_accuracy"]) if oracle is not None else math.nan
            row["oracle_unavailable"] = why
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        # counts (samples, trials, iterations, ...) stay whole numbers where another run lacks them
        # (pandas made them floats: "samples": 4.0 in --json); missing is None
        values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in (row.get(column) for row in rows)]
        given = [v for v in values if v is not None]
        if frame[column].dtype.kind == "f" and given and all(isinstance(v, int) and not isinstance(v, bool) for v in given):
            frame[column] = pd.Series(values, index=frame.index, dtype=object)
    if "regret_pp" in frame.columns:
        frame["regret_pp"] = pd.to_numeric(frame["regret_pp"], errors="coerce").astype(float)
    leading = ["run", "kind", "strategy", "seed", "target_latency_ms", "best_reward", "best_accuracy", "best_latency_ms", "best_feasible_accuracy", "front_size", "hypervolume", "hypervolume_normalised"]
    return frame[[c for c in leading if c in frame.columns] + [c for c in frame.columns if c not in leading]]


def check_group_columns(comparison: pd.DataFrame, by: Sequence[str]) -> None:
    """Raise a ValueError naming the columns to choose from unless ``by`` names one or more columns of ``comparison``."""
    choices = [c for c in ("strategy", "target_latency_ms", "seed", "samples", "kind", "problem", "space", "reward") if c in comparison.columns]
    if not by:  # pandas said only "No group keys passed!"
        raise ValueError(f"give at least one column to group runs by; choose from {', '.join(choices)}")
    unknown = [name for name in by if name not in comparison.columns]
    if unknown:
        raise ValueError(f"cannot group runs by {', '.join(unknown)}{did_you_mean(unknown[0], choices)}; choose from {', '.join(choices)}")


def summarize(comparison: pd.DataFrame, by: Sequence[str] = ("strategy",), metrics: Sequence[str] = COMPARED_METRICS) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metrics`` per group of runs (e.g. per strategy over seeds).

    Columns are ``(metric, statistic)`` pairs flattened to ``metric_mean``, ``metric_std``, one
    ``runs`` count, and ``metric_runs``: how many of those runs the metric's mean is over (a run
    with no figure, NaN, is left out: one with no candidate, or none within its target); the
    standard deviation of a single run is NaN.
    """
    check_group_columns(comparison, by)
    present = [m for m in metrics if m in comparison.columns]
    numeric = comparison[[*by, *present]].copy()
    for metric in present:
        numeric[metric] = pd.to_numeric(numeric[metric], errors="coerce")
    grouped = numeric.groupby(list(by), dropna=False, sort=True)
    table = grouped[present].agg(["mean", "std", "count"])
    table.columns = [f"{metric}_{'runs' if stat == 'count' else stat}" for metric, stat in table.columns]
    table.insert(0, "runs", grouped.size())
    return table.reset_index()


def problem_numbers(runs: Sequence[RunResults]) -> tuple[dict[str, int], str | None]:
    """Each search run's problem (what it puts on each axis: :meth:`SearchResults.problem_axes`),
    numbered from 1 in the order first given, and a one-line note naming what differs between them
    (None when all search one problem). NetAdapt runs have no number."""
    problems = {r.label: r.problem_axes() for r in runs if isinstance(r, SearchResults)}
    numbers: dict[tuple[str, ...], int] = {}
    for axes in problems.values():
        numbers.setdefault(tuple(axes.values()), len(numbers) + 1)
    differing, aspects = [], []
    for aspect in ("space", "benchmark", "accuracy", "final", "latency"):
        values = {label: axes.get(aspect, "-") for label, axes in problems.items()}
        if len(set(values.values())) > 1:
            by_value: dict[str, list[str]] = {}
            for label, value in values.items():
                by_value.setdefault(value, []).append(label)
            differing.append(f"{aspect}: " + "; ".join(f"{value} ({', '.join(labels)})" for value, labels in by_value.items()))
            aspects.append(aspect)
    note = None
    if aspects == ["final"]:  # the same search, another column reported
        note = "these runs report different final columns, so their final accuracies are not on one scale; " + " | ".join(differing)
    elif differing:
        note = "these runs search different problems, so their accuracies, latencies and hypervolumes are not on one scale; " + " | ".join(differing)
    return {label: numbers[tuple(axes.values())] for label, axes in problems.items()}, note


@dataclass(frozen=True)
class RunGroups:
    """How the runs of a comparison are grouped for their means and for the colours of a figure
    (:func:`group_runs`)."""

    #: the comparison (:func:`compare_runs`), with ``problem_number`` where the runs search more than one problem
    table: pd.DataFrame
    #: its columns that make a group
    by: tuple[str, ...]
    #: search run label -> its problem's number (:func:`problem_numbers`)
    problems: dict[str, int]
    #: what differs between the runs' problems, in one line; None when nothing does
    note: str | None

    def summary(self) -> pd.DataFrame:
        """Mean and std per group (:func:`summarize`)."""
        return summarize(self.table, self.by)

    def names(self) -> dict[str, str]:
        """Run label -> its group's name, for a figure (``ppo``, ``ppo, target 20.00 ms``, ``random, problem 2``)."""
        from mobilenas.units import format_ms

        # a reward by its kind ("soft reward") where that tells the runs' rewards apart; in full otherwise
        described = {str(v) for v in self.table["reward"]} if "reward" in self.by else set()
        short_rewards = len({d.split(":")[0] for d in described}) == len(described)

        def cell(column: str, value: Any) -> str:
            if column == "target_latency_ms":
                return f"target {format_ms(float(value))}"
            if column == "problem_number":
                return f"problem {value}"
            if column == "reward" and short_rewards:
                return f"{str(value).split(':')[0]} reward"
            return str(value)

        return {str(row["run"]): ", ".join(cell(c, row[c]) for c in self.by) for row in self.table.to_dict("records")}

    def problem_legend(self) -> str:
        """Which runs search which problem (``problem 1: a, b; problem 2: c``); empty when they search one."""
        if "problem_number" not in self.by:
            return ""
        members: dict[int, list[str]] = {}
        for label, number in self.problems.items():
            members.setdefault(number, []).append(label)
        return "; ".join(f"problem {n}: {', '.join(labels)}" for n, labels in sorted(members.items()))


def group_runs(runs: Sequence[RunResults], table: pd.DataFrame, by: Sequence[str] | None = None) -> RunGroups:
    """Group the runs of ``table`` (:func:`compare_runs` of ``runs``) as ``nas-results compare`` does.

    ``by`` given: those columns (checked as :func:`summarize` checks them). By default the
    strategy, plus the reward and the target where runs differ in them, plus the problem where they
    search different ones (``problem_number``): rewards of other targets or reward functions are
    on other scales, and accuracies and latencies of other problems too, so they are not averaged.
    """
    problems, note = problem_numbers(runs)
    table = table.copy()
    if by is None:
        columns = ["strategy"] + [c for c in ("reward", "target_latency_ms") if c in table.columns and table[c].nunique() > 1]
        if len(set(problems.values())) > 1:
            table["problem_number"] = [problems.get(str(label), 0) for label in table["run"]]
            columns.append("problem_number")
    else:
        columns = list(by)
    check_group_columns(table, columns)  # a bad column: said before any figure is drawn
    return RunGroups(table=table, by=tuple(columns), problems=problems, note=note)


class _Oracles:
    """Each tabular benchmark's oracle, loaded once per distinct benchmark (file, columns, unit) of
    a comparison: the best final-column accuracy of any architecture within a target latency
    (:meth:`mobilenas.search.tabular.TabularEvaluator.best_feasible`, the oracle of regret)."""

    def __init__(self) -> None:
        self._benchmarks: dict[tuple[Any, ...], tuple[Any, str | None]] = {}

    def of(self, run: SearchResults) -> tuple[float | None, str | None]:
        """The oracle (a fraction) for ``run``'s benchmark and target, or None and why not."""
        bench = run.manifest.get("benchmark")
        if not isinstance(bench, dict) or not bench.get("path"):
            return None, "its manifest does not record the benchmark it searched"
        target = run.target_latency_ms
        if not (math.isfinite(target) and target > 0):
            return None, "it has no target latency"
        columns = ("reward_column", "final_column", "latency_column", "arch_column", "accuracy_unit")
        key = (str(bench["path"]), *(str(bench.get(c)) for c in columns))
        if key not in self._benchmarks:
            self._benchmarks[key] = self._load(bench)
        evaluator, why = self._benchmarks[key]
        if evaluator is None:
            return None, why
        recorded = bench.get("fingerprint")
        if recorded and evaluator.fingerprint() != recorded:
            return None, f"the benchmark at {bench['path']} changed since the run (fingerprint {evaluator.fingerprint()}, the run's {recorded})"
        best = evaluator.best_feasible(target)
        if best is None:
            return None, f"no architecture of {Path(str(bench['path'])).name} meets its target"
        return float(best.final_accuracy), None

    @staticmethod
    def _load(bench: dict[str, Any]) -> tuple[Any, str | None]:
        from mobilenas.search.tabular import TabularEvaluator

        path = Path(str(bench["path"]))
        if not path.is_file():
            return None, f"its benchmark {path} is not there (moved or on another machine)"
        try:
            evaluator = TabularEvaluator(path, reward_column=str(bench.get("reward_column")), final_column=str(bench.get("final_column")),
                                         latency_column=str(bench.get("latency_column")), arch_column=str(bench.get("arch_column", "arch_str")),
                                         accuracy_unit=str(bench.get("accuracy_unit", "percent")))
        except (ValueError, OSError) as error:
            return None, f"its benchmark {path} cannot be read ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
        evaluator.fingerprint = functools.lru_cache(maxsize=1)(evaluator.fingerprint)  # type: ignore[method-assign]
        return evaluator, None


def resume_refusal(path: Path, kind: str) -> str | None:
    """Why a resume (``nas-search --resume`` for ``kind`` ``search``, else ``netadapt refine
    --resume``) would refuse the run at ``path`` for a journal cut short or gone, or None."""
    from mobilenas.runs import RunDir

    if kind == "search":
        from mobilenas.search.orchestrator import journal_cut_short

        return journal_cut_short(RunDir(path))  # (it says a missing events.jsonl is missing)
    from mobilenas.netadapt.run import check_history

    try:
        check_history(RunDir(path))
    except ValueError as error:
        return str(error)
    return None


def _label(text: Any, limit: int = 40) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(run: Any) -> str:
    """The run's folder as a command line takes it (its label is only the folder's name: a command
    naming it worked from the folder above it alone)."""
    import shlex

    return shlex.quote(str(run.path))


def comparison_notes(runs: Sequence[RunResults], table: pd.DataFrame, by: Sequence[str], reference: ReferenceLike | None = None) -> list[str]:
    """One-line notes on a comparison (:func:`compare_runs` of ``runs``, grouped by ``by``) that its
    table and means do not show: what ``nas-results compare`` prints under ``note:``, and the notebook too.

    Runs with no result (none yet, or their files unreadable) and runs not finished; means over
    runs of other ``--samples`` or of one seed twice; targets that differ (with the default
    ``reference``, ``None``, the shared reference point moves with the largest target); a
    hypervolume of 0 for every run (no point beats the reference point); regret not available.
    """
    from mobilenas.units import format_ms

    notes: list[str] = []
    by_label = {run.label: run for run in runs}
    records = table.to_dict("records")
    # runs whose results are unreadable, or that have none: '-' in the table, left out of the means
    for row in records:
        run = by_label.get(row["run"])
        unread = getattr(run, "results_unread", None)
        if unread:
            best = " (best.json is there)" if getattr(run, "best", None) is not None else ""
            notes.append(f"run {_label(row['run'])}: {unread}{best}: no trial can be read, so it is shown as '-' and left out of the means; see nas-results show {_show(run)}")
        elif isinstance(run, SearchResults) and row.get("candidates") == 0:
            notes.append(f"run {_label(row['run'])} has no successful trial: it is shown as '-' and left out of the means")
        elif isinstance(run, SearchResults) and run.journal_unread and row.get("finished"):  # unfinished ones are noted below
            refused = f"; nas-search --resume refuses it: see nas-results show {_show(run)}" if resume_refusal(run.path, "search") else ""
            notes.append(f"run {_label(row['run'])}: {run.journal_unread} (its figures come from trials.csv){refused}")
    unfinished = [row for row in records if row.get("finished") is not None and row.get("finished") == row.get("finished") and not bool(row.get("finished"))
                  and not isinstance(row.get("results_unread"), str)]  # noted above
    if unfinished:
        parts = []
        for row in unfinished:
            run = by_label.get(row["run"])
            samples, trained, limit = row.get("samples"), row.get("trained"), row.get("time_limit_s")
            if row.get("kind") == "search":
                word = "trained" if row.get("problem") == "network" else "evaluated"
                done = f"{trained} of {int(samples)} {word}" if samples is not None and samples == samples else f"{trained} {word}"
            else:
                done = f"{row.get('iterations')} iterations"
            if run is not None and _running(run.path):
                state = "running now"
            elif run is not None and resume_refusal(run.path, "search" if row.get("kind") == "search" else "netadapt"):
                state = f"refused: see nas-results show {_show(run)}"
            elif limit is not None and limit == limit:
                state = "stopped at its time limit"
            else:
                state = "interrupted"
            parts.append(f"{_label(row['run'])} ({done}, {state})")
        them = "it is" if len(parts) == 1 else "they are"
        goes_on = " (--resume goes on)" if any(p.endswith(("interrupted)", "time limit)")) for p in parts) else ""
        notes.append(f"{len(parts)} run{'' if len(parts) == 1 else 's'} not finished: {'; '.join(parts)}; {them} compared on what {them.split()[0]} did so far{goes_on}")
    notes.extend(_uneven_groups(table, by))
    # targets: the default reference point is twice the largest, shared by every run
    targets: dict[float, list[str]] = {}
    for row in records:
        target = row.get("target_latency_ms")
        if target is not None and target == target:
            targets.setdefault(float(target), []).append(_label(row["run"]))
    if len(targets) > 1:
        point = as_reference(reference)
        which = "given" if point is not None else "the default: twice the largest target"
        point = point or default_reference_point(runs)
        listed = "; ".join(f"{format_ms(t)}: {', '.join(labels)}" for t, labels in sorted(targets.items()))
        notes.append(f"these runs have different targets ({listed}); every hypervolume is measured to one reference point, "
                     f"accuracy {point.accuracy:g}, {format_ms(point.latency_ms)} ({which}), so a run's hypervolume here differs from its own alone")
    volumes = [float(v) for v in pd.to_numeric(table.get("hypervolume", pd.Series(dtype=float)), errors="coerce") if v == v]
    if volumes and all(v == 0 for v in volumes):
        point = as_reference(reference) or default_reference_point(runs)
        notes.append(f"every hypervolume is 0: no run has a point more accurate than {point.accuracy:g} and faster than {format_ms(point.latency_ms)} "
                     "(the reference point); give a reference point of lower accuracy or higher latency")
    if "oracle_unavailable" in table.columns:
        missing: dict[str, list[str]] = {}
        for row in records:
            why = row.get("oracle_unavailable")
            if isinstance(why, str) and why:
                missing.setdefault(why, []).append(_label(row["run"]))
        for why, labels in missing.items():
            notes.append(f"regret n/a for {', '.join(labels)}: {why}")
    return notes


def _running(path: Path) -> bool:
    from mobilenas.runs import RunDir

    return RunDir(path).holder() is not None


def _uneven_groups(table: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """Groups whose mean ± std pools runs that are not repeats of one experiment: other --samples,
    or the same seed twice (the same run, counted as two)."""
    notes: list[str] = []
    columns = [c for c in by if c in table.columns]
    if not columns or "samples" not in table.columns:
        return notes
    for key, group in table.groupby(columns, dropna=False, sort=True):
        if len(group) < 2:
            continue
        name = ", ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        samples = sorted({int(v) for v in group["samples"] if v is not None and v == v})
        if len(samples) > 1:
            notes.append(f"group {name} pools runs of different --samples ({', '.join(map(str, samples))}); give --by strategy,samples to keep them apart")
        seeds = [v for v in group["seed"] if v is not None and v == v] if "seed" in group.columns else []
        twice = sorted({int(v) for v in seeds if seeds.count(v) > 1})
        if twice and len(samples) <= 1:
            notes.append(f"group {name} holds more than one run of seed {', '.join(map(str, twice))}: the same search twice counts as two runs in its mean and std")
    return notes
