"""Figures of runs: fronts, the reward landscape, convergence, calibration, NetAdapt's progress.

Every function returns a :class:`matplotlib.figure.Figure` made without ``pyplot`` (no global
figure state, no backend to choose: it renders with Agg wherever it is saved) and never shows
it; :func:`save_figure` writes a PNG atomically. In a notebook, display the figure (or the PNG).
Axes are labelled with their units; targets are dashed vertical lines.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from mobilenas.netadapt.choices import refined_label
from mobilenas.results.common import RunBase
from mobilenas.results.fronts import (
    best_so_far,
    check_latency,
    front_of,
    most_accurate_within,
    points,
)
from mobilenas.results.load import RunResults
from mobilenas.results.netadapt_run import NetAdaptResults
from mobilenas.results.search_run import SearchResults
from mobilenas.runs import atomic_write_bytes
from mobilenas.search.base import EARLY_STOPPED

PALETTE = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
REFERENCE_COLOR = "0.25"
DPI = 130


def save_figure(figure: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``figure`` as a PNG at ``path`` (atomically; folders created) and return the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figures are written as PNG files; give a path ending in .png, got {path}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _figure(width: float, height: float, rows: int = 1, columns: int = 1, **options: Any) -> tuple[Figure, Any]:
    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, **options)
    return figure, axes


def _as_list(runs: RunResults | Sequence[RunResults]) -> list[RunResults]:
    return [runs] if isinstance(runs, RunBase) else list(runs)


def latency_label(runs: Sequence[RunResults], latency: str) -> str:
    tabular = [isinstance(r, SearchResults) and r.problem == "tabular" for r in runs]
    if all(tabular):
        return "latency (ms, benchmark's measurement)"
    if latency == "measured":
        return "latency (ms, measured end to end; hollow: lookup table)"
    return "latency (ms, lookup table or benchmark)" if any(tabular) else "latency (ms, lookup table)"


def accuracy_label(runs: Sequence[RunResults]) -> str:
    kinds = set()
    for run in runs:
        if isinstance(run, NetAdaptResults):
            kinds.add("validation accuracy (after fine-tuning)")
        elif run.problem == "tabular":
            column = run.manifest.get("benchmark", {}).get("reward_column") or run.manifest.get("config", {}).get("reward_column", "")
            kinds.add(f"accuracy (benchmark {column})".replace(" ()", ""))
        else:
            kinds.add("validation accuracy (proxy training)")
    return kinds.pop() if len(kinds) == 1 else "validation accuracy"


def _ms(value: float) -> str:
    return f"{value:.3g} ms"


def _targets(axes: Axes, runs: Sequence[RunResults], colors: dict[str, str], shared: str = "tab:red", groups: dict[str, str] | None = None) -> None:
    """A dashed line at each target: in ``shared`` where there is one; otherwise in the colour of
    the run, or the group (``groups``: run label -> group), whose target it is, black where it is
    the target of several groups' runs."""
    targets: dict[float, list[str]] = {}
    for run in runs:
        if math.isfinite(run.target_latency_ms):
            targets.setdefault(round(run.target_latency_ms, 9), []).append(run.label)
    single = len(targets) == 1
    for target, labels in targets.items():
        owners = list(dict.fromkeys((groups or {}).get(label, label) for label in labels))
        color = shared if single else colors[labels[0]] if len(owners) == 1 else "black"
        word = "budget" if all(isinstance(r, NetAdaptResults) for r in runs if r.label in labels) else "target"
        axes.axvline(target, color=color, linestyle="--", linewidth=1.1, label=f"{word} {_ms(target)}" + ("" if single else f" ({', '.join(owners)})" if len(owners) < 3 else ""))


def _draw_run(axes: Axes, run: RunResults, latency: str, color: str, show_all: bool, many: bool, linestyle: str = "-", legend: bool = True, floor: float = -math.inf) -> None:
    """One run's points, front and best; none of those below ``floor`` (left off the accuracy
    axis, :func:`_bulk_floor`), so that they set neither axis's range and the front's line stops
    at the points drawn."""
    frame = points(run, latency)
    label = run.label
    everything = frame
    frame = frame[frame["accuracy"] >= floor]

    def named(text: str) -> str | None:
        return text if legend else None

    measured_axis = latency == "measured"
    if frame.empty:
        axes.plot([], [], color=color, label=named(f"{label}: {'no successful candidate' if everything.empty else 'every candidate off the axis'}"))
        return
    if isinstance(run, NetAdaptResults):
        steps = frame[frame["source"] == "iteration"]
        axes.plot(steps["front_latency_ms"], steps["accuracy"], linestyle, color=color, linewidth=1.0, alpha=0.6)
        _scatter_by_source(axes, steps, color, 28, named(f"{label}: iterations"), measured_axis=measured_axis)
        if len(steps):
            axes.annotate("start", (steps["front_latency_ms"].iloc[0], steps["accuracy"].iloc[0]), xytext=(4, 4), textcoords="offset points", fontsize=7, color=color)
        refined = frame[frame["source"] == "refined"]
        if len(refined):
            axes.plot(refined["front_latency_ms"], refined["accuracy"], "*", markersize=15, color=color, markeredgecolor="black", markeredgewidth=0.6, label=named(f"{label}: {refined_label(run.refined or {})}"), zorder=5)
        return
    if show_all:
        _scatter_by_source(axes, frame, color, 12, named(f"{label}: all trials") if not many else None, measured_axis=measured_axis, alpha=0.35)
    whole = front_of(everything)  # the run's front, of which the points on the axis are drawn
    front = whole[whole["accuracy"] >= floor]
    hidden = len(whole) - len(front)
    axes.step(front["front_latency_ms"], front["accuracy"], where="post", color=color, linestyle=linestyle, linewidth=1.6,
              label=named(f"{label}: Pareto front ({len(whole)}{f', {hidden} off the axis' if hidden else ''})"))
    _scatter_by_source(axes, front, color, 30, None, measured_axis=measured_axis)
    best = everything.loc[everything["reward"].idxmax()]
    if best["accuracy"] >= floor:
        axes.plot([best["front_latency_ms"]], [best["accuracy"]], "*", markersize=14, color=color, markeredgecolor="black", markeredgewidth=0.6, label=named(f"{label}: best reward ({best['reward']:.3f})"), zorder=5)
    accurate = most_accurate_within(everything, run.target_latency_ms)
    over = bool(best["front_latency_ms"] > run.target_latency_ms)  # False for no target (NaN)
    if legend and not many and accurate is not None and int(accurate["number"]) != int(best["number"]) and accurate["accuracy"] >= floor and (accurate["accuracy"] > best["accuracy"] or over):
        # where nas-search's summary and nas-results show name it: more accurate than the best, or the best is over the target
        axes.plot([accurate["front_latency_ms"]], [accurate["accuracy"]], "D", markersize=8, color=color, markeredgecolor="black", markeredgewidth=0.6, label=f"{label}: most accurate within the target (#{int(accurate['number'])})", zorder=5)


LINESTYLES = ("-", "--", ":", "-.")


def run_styles(runs: Sequence[RunResults], groups: dict[str, str] | None = None) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """A colour and a line style per run label, and the colour of each group.

    Without ``groups`` (run label -> group name), or when every run is a group of its own, each
    run has its own colour and the second dict is empty. Otherwise runs of one group (one
    strategy, say) share its colour and differ by line style, so a figure of 20 runs of 5
    strategies reads as 5 colours rather than a palette that repeats after 10.
    """
    if not groups or len({groups.get(r.label, r.label) for r in runs}) == len(runs):
        return {run.label: (PALETTE[i % len(PALETTE)], "-") for i, run in enumerate(runs)}, {}
    names = list(dict.fromkeys(groups.get(r.label, r.label) for r in runs))
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    styles: dict[str, tuple[str, str]] = {}
    seen: dict[str, int] = {}
    for run in runs:
        name = groups.get(run.label, run.label)
        styles[run.label] = (colors[name], LINESTYLES[seen.get(name, 0) % len(LINESTYLES)])
        seen[name] = seen.get(name, 0) + 1
    return styles, colors


def _group_handles(runs: Sequence[RunResults], groups: dict[str, str], colors: dict[str, str]) -> tuple[list[Any], list[str]]:
    counts: dict[str, int] = {}
    for run in runs:
        name = groups.get(run.label, run.label)
        counts[name] = counts.get(name, 0) + 1
    handles: list[Any] = [Line2D([], [], color=colors[name], linewidth=1.8) for name in counts]
    labels = [f"{name} ({n} run{'s' if n != 1 else ''})" for name, n in counts.items()]
    return handles, labels


def _scatter_by_source(axes: Axes, frame: pd.DataFrame, color: str, size: float, label: str | None, *, measured_axis: bool, alpha: float = 1.0, marker: str = "o") -> None:
    """Points filled; on the measured axis, those whose latency is only the table's are hollow."""
    if measured_axis:
        measured = frame["latency_source"] == "measured"
        filled, hollow = frame[measured], frame[~measured]
    else:
        filled, hollow = frame, frame.iloc[0:0]
    if len(filled):
        axes.scatter(filled["front_latency_ms"], filled["accuracy"], s=size, color=color, alpha=alpha, marker=marker, label=label, zorder=3)
        label = None
    if len(hollow):
        axes.scatter(hollow["front_latency_ms"], hollow["accuracy"], s=size, facecolors="none", edgecolors=color, alpha=alpha, marker=marker, label=label, zorder=3)


def _draw_references(axes: Axes, references: pd.DataFrame, on_measured_axis: bool = False) -> list[str]:
    """References with an accuracy as points (a line per family across widths); others as x-axis markers.

    Their latency is the lookup table's: on a measured axis (``on_measured_axis``) they are hollow, as
    the trials whose latency was not measured are, and their legend entries say so."""
    notes = []
    by_table = " (table latency)" if on_measured_axis else ""
    placed = references[references["latency_ms"].notna()]
    for name in references.loc[references["latency_ms"].isna(), "name"]:
        row = references[references["name"] == name].iloc[0]
        notes.append(f"{name}: {int(row['missing_ops'])} ops missing from the table")
    known = placed[placed["accuracy"].notna()]
    markers = ("s", "D", "^", "v", "P", "X")
    for index, (family, group) in enumerate(known.groupby("family", sort=False)):
        group = group.sort_values("latency_ms")
        axes.plot(group["latency_ms"], group["accuracy"], linestyle=":", marker=markers[index % len(markers)], color=REFERENCE_COLOR, markersize=6, linewidth=1.0,
                  markerfacecolor="none" if on_measured_axis else REFERENCE_COLOR, label=f"{family} ({', '.join(sorted(set(group['accuracy_source'])))} accuracy){by_table}")
        for row in group.itertuples():
            axes.annotate(str(row.name), (row.latency_ms, row.accuracy), xytext=(4, -9), textcoords="offset points", fontsize=6.5, color=REFERENCE_COLOR)
    unknown = placed[placed["accuracy"].isna()]
    if len(unknown):
        transform = axes.get_xaxis_transform()
        axes.scatter(unknown["latency_ms"], np.zeros(len(unknown)), marker="^", s=45, facecolors="none" if on_measured_axis else REFERENCE_COLOR, edgecolors=REFERENCE_COLOR,
                     transform=transform, clip_on=False, zorder=4, label=f"reference networks (latency only){by_table}")
        for row in unknown.itertuples():
            axes.axvline(row.latency_ms, color=REFERENCE_COLOR, linestyle=":", linewidth=0.7, alpha=0.6)
            axes.text(row.latency_ms, 0.03, f" {row.name}", rotation=90, transform=transform, fontsize=6.5, color=REFERENCE_COLOR, va="bottom", ha="center")
    return notes


def plot_front(
    runs: RunResults | Sequence[RunResults],
    *,
    latency: str = "table",
    references: pd.DataFrame | None = None,
    show_all: bool = True,
    title: str | None = None,
    axes: Axes | None = None,
    log_latency: bool = False,
    groups: dict[str, str] | None = None,
) -> Figure:
    """The accuracy/latency front of one run or several overlaid, with reference networks.

    Each search run: every successful trial (faint), its front (a step line, the best accuracy
    reachable at each latency), its best-reward trial (a star) and the most accurate trial within the
    target (a diamond) where that is more accurate than the best (the soft reward pays for speed) or
    the best is over the target, as nas-search's summary names it. Each NetAdapt run: its trajectory
    of iterations and the refined network (a star). ``references`` is a frame of
    :func:`mobilenas.results.references.reference_points`. With ``latency="measured"`` points
    whose latency was not measured are hollow. ``groups`` (run label -> group, e.g. its
    strategy) colours runs by group, one legend entry per group (:func:`run_styles`).
    """
    group = _as_list(runs)
    check_latency(latency)
    if axes is None:
        figure, grid = _figure(10.0, 5.2)  # the legend beside the axes
        axes = grid[0][0]
    else:
        figure = axes.get_figure()  # type: ignore[assignment]
    styles, group_colors = run_styles(group, groups)
    colors = {label: color for label, (color, _) in styles.items()}
    many = len(group) > 3
    drawn = [_drawn_accuracies(run, latency, show_all) for run in group]
    if references is not None and len(references):
        drawn.append(references.loc[references["latency_ms"].notna(), "accuracy"].to_numpy(dtype=float))
    bulk = _bulk_of(np.concatenate(drawn) if drawn else np.empty(0))
    for run in group:
        color, linestyle = styles[run.label]
        _draw_run(axes, run, latency, color, show_all, many, linestyle=linestyle, legend=not group_colors, floor=bulk[0] if bulk else -math.inf)
    _targets(axes, group, colors, shared="black" if group_colors else "tab:red", groups=groups if group_colors else None)  # red is a group's colour there
    notes = _draw_references(axes, references, on_measured_axis=latency == "measured") if references is not None and len(references) else []
    off_axis = None
    if bulk is not None:
        bottom, top, off_axis = bulk
        margin = 0.06 * max(top - bottom, 0.01)
        axes.set_ylim(bottom - margin, top + margin)
    if log_latency:
        axes.set_xscale("log")
        _log_labels(axes)
    axes.set_xlabel(latency_label(group, latency))
    axes.set_ylabel(accuracy_label(group))
    axes.grid(alpha=0.3)
    if title is None:
        if all(isinstance(r, NetAdaptResults) for r in group):
            title = f"NetAdapt trajectory of {group[0].label}" if len(group) == 1 else f"NetAdapt trajectories of {len(group)} runs"
        else:
            title = f"Pareto front of {group[0].label}" if len(group) == 1 else f"Pareto fronts of {len(group)} runs"
    axes.set_title(title)
    handles, labels = axes.get_legend_handles_labels()
    if group_colors:  # one entry per group, then what a star means
        grouped, names = _group_handles(group, groups or {}, group_colors)
        star = Line2D([], [], marker="*", linestyle="", markersize=12, color="0.6", markeredgecolor="black", markeredgewidth=0.6)
        netadapt = [isinstance(run, NetAdaptResults) for run in group]
        meaning = "refined network of each run" if all(netadapt) else "best reward of each search, refined network of each NetAdapt run" if any(netadapt) else "best reward of each run"
        handles, labels = [*grouped, star, *handles], [*names, meaning, *labels]
    if latency == "measured":
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="0.3"))
        labels.append("latency from the table (not measured)")
    if off_axis:  # a line of the legend (a note in a corner covered points)
        handles.append(Line2D([], [], linestyle="", marker=""))
        labels.append(off_axis)
    # beside the axes: inside, even at loc="best", it covered trials (matplotlib weighs a point
    # under it against a line through another corner)
    axes.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, framealpha=0.85)
    if notes:
        # under the axes and their label, where it hides no point (inside, it covered trials)
        axes.annotate(textwrap.fill("not placed: " + "; ".join(notes), 130), xy=(1.0, 0.0), xycoords="axes fraction", xytext=(0, -34), textcoords="offset points",
                      fontsize=6, ha="right", va="top", color="0.35")
    return figure


def _drawn_accuracies(run: RunResults, latency: str, show_all: bool) -> np.ndarray:
    """The accuracies :func:`_draw_run` puts on the axes: every trial, or only the front's."""
    frame = points(run, latency)
    if not isinstance(run, NetAdaptResults) and not show_all and len(frame):
        frame = front_of(frame)
    return frame["accuracy"].to_numpy(dtype=float)


def _bulk_of(accuracies: np.ndarray) -> tuple[float, float, str] | None:
    """The accuracy axis without a few points far below all others (NAS-Bench-201's cells cut off
    from their output: chance accuracy at zero latency, always on the front), which would squeeze
    everything else into the top of the figure: the lowest and highest accuracy kept, and what is
    off the axis, for the legend; None when nothing is left off. Points left off are not drawn, so
    they set neither the latency axis's range (a log axis spanned 1e-2 ms for them) nor the front's
    line.

    A few, far below: at most 15% of the points, under a gap wider than half of all the accuracies'
    range.
    """
    values = np.sort(accuracies[np.isfinite(accuracies)])
    if len(values) < 4 or values[-1] <= values[0]:
        return None
    gaps = np.diff(values)
    cut = int(np.argmax(gaps))  # values[: cut + 1] lie below the widest gap
    if gaps[cut] <= 0.5 * (values[-1] - values[0]) or cut + 1 > 0.15 * len(values):
        return None
    below = cut + 1
    return float(values[cut + 1]), float(values[-1]), f"off the axis: {below} point{'s' if below != 1 else ''} below, down to {values[0]:.3f}"


def plot_comparison(
    runs: Sequence[RunResults], *, latency: str = "table", references: pd.DataFrame | None = None, title: str | None = None, groups: dict[str, str] | None = None
) -> Figure:
    """Several fronts on one axes (left) and each search's best reward against trials evaluated (right).

    ``groups`` (run label -> group name, e.g. the strategy) gives the runs of a group one colour
    and the legends one entry per group; ``nas-results compare`` groups by its ``--by`` columns.
    """
    group = _as_list(runs)
    searches = [r for r in group if isinstance(r, SearchResults) and len(r.trained())]
    figure, grid = _figure(15.5, 5.4, 1, 2 if searches else 1, width_ratios=[1.9, 1] if searches else None)  # the first legend beside its axes
    plot_front(group, latency=latency, references=references, axes=grid[0][0], show_all=len(group) <= 3, title=title or f"Pareto fronts of {len(group)} runs", groups=groups)
    if searches:
        axes = grid[0][1]
        styles, group_colors = run_styles(group, groups)
        for run in searches:
            curve = best_so_far(run)
            color, linestyle = styles[run.label]
            label = None if group_colors else f"{run.label} ({run.strategy}, seed {run.seed})"
            axes.step(curve["trial"], curve["best_reward"], where="post", color=color, linestyle=linestyle, label=label)
        axes.set_xlabel("trials evaluated")
        axes.set_ylabel("best reward so far")
        axes.set_title("search progress" + _reward_scales(searches), fontsize=10)
        axes.grid(alpha=0.3)
        if group_colors:
            axes.legend(*_group_handles(searches, groups or {}, group_colors), fontsize=7, loc="lower right")
        else:
            axes.legend(fontsize=7, loc="lower right")
    return figure


def _reward_scales(searches: Sequence[SearchResults]) -> str:
    """A note for a panel of rewards where the runs' rewards are not on one scale: other reward
    functions (soft, hard), or other targets (a reward divides the latency by its target); empty
    where they are."""
    described = list(dict.fromkeys(r.reward_description for r in searches))
    kinds = list(dict.fromkeys(d.split(":")[0] for d in described))
    targets = list(dict.fromkeys(_ms(r.target_latency_ms) for r in searches if math.isfinite(r.target_latency_ms)))
    differ = []
    if len(described) > 1:  # "soft and hard rewards"; in full where two of one kind differ
        differ.append(f"{' and '.join(kinds if len(kinds) == len(described) else described)} rewards")
    if len(targets) > 1:
        differ.append(f"targets {', '.join(targets)}")
    return f"\n(runs of {' and '.join(differ)}: not on one scale)" if differ else ""


def plot_reward_landscape(run: SearchResults, *, resolution: int = 160) -> Figure:
    """The reward over the (latency, accuracy) plane with the run's trials on it, and reward against LAT/T.

    Left: filled contours of the run's reward function (:class:`~mobilenas.search.rewards.RewardSpec`),
    the trials, the front and the target. Right: each trial's reward against its latency as a
    multiple of the target (log scale), coloured by accuracy.
    """
    spec = run.reward_spec()
    if spec is None:
        raise ValueError(f"run {run.path} records no reward in its manifest")
    frame = points(run, "table")
    target = run.target_latency_ms
    figure, grid = _figure(13.0, 5.2, 1, 2)
    left, right = grid[0]
    if frame.empty:
        left.text(0.5, 0.5, "no successful trial yet", ha="center", transform=left.transAxes)
        return figure
    lat_low = float(min(frame["latency_ms"].min(), target)) * 0.8
    lat_high = float(max(frame["latency_ms"].max(), target)) * 1.15
    acc_low = max(0.0, float(frame["accuracy"].min()) - 0.03)
    acc_high = min(1.0, float(frame["accuracy"].max()) + 0.03)
    latencies = np.linspace(lat_low, lat_high, resolution)
    accuracies = np.linspace(acc_low, acc_high, resolution)
    grid_lat, grid_acc = np.meshgrid(latencies, accuracies)
    rewards = np.vectorize(lambda a, lat: spec(float(a), float(lat), target).reward)(grid_acc, grid_lat)
    levels = np.linspace(float(rewards.min()), float(rewards.max()), 15)
    filled = left.contourf(grid_lat, grid_acc, rewards, levels=levels, cmap="viridis", alpha=0.85)
    lines = left.contour(grid_lat, grid_acc, rewards, levels=levels[1::2], colors="white", linewidths=0.5, alpha=0.8)
    left.clabel(lines, fontsize=6, fmt="%.3f")
    # as many decimals as tell the colour bar's ticks (every other level) apart: a narrow range of
    # rewards printed 0.123 several times over
    spacing = 2 * float(levels[1] - levels[0])
    decimals = max(3, math.ceil(-math.log10(spacing))) if spacing > 0 else 3
    colorbar = figure.colorbar(filled, ax=left, format=f"%.{decimals}f")
    colorbar.set_label("reward")
    left.scatter(frame["latency_ms"], frame["accuracy"], s=20, color="white", edgecolors="black", linewidths=0.6, label="trials", zorder=3)
    front = front_of(frame)
    left.step(front["front_latency_ms"], front["accuracy"], where="post", color="white", linewidth=1.4, label="Pareto front", zorder=4)
    best = frame.loc[frame["reward"].idxmax()]
    left.plot([best["latency_ms"]], [best["accuracy"]], "*", markersize=15, color="tab:red", markeredgecolor="black", label=f"best reward {best['reward']:.3f}", zorder=5)
    left.axvline(target, color="tab:red", linestyle="--", linewidth=1.1, label=f"target {_ms(target)}")
    left.set_xlabel(latency_label([run], "table"))
    left.set_ylabel(accuracy_label([run]))
    left.set_title(f"reward landscape: {spec.describe()}", fontsize=10)
    left.legend(fontsize=7, loc="lower right", framealpha=0.85)
    ratio = frame["latency_ms"] / target
    scatter = right.scatter(ratio, frame["reward"], c=frame["accuracy"], cmap="plasma", s=22, edgecolors="black", linewidths=0.4)
    colorbar = figure.colorbar(scatter, ax=right)  # matplotlib's own labels: as many decimals as the ticks need
    colorbar.set_label(accuracy_label([run]))
    right.axvline(1.0, color="tab:red", linestyle="--", linewidth=1.1, label="LAT = T")
    right.set_xscale("log")
    _log_labels(right)
    right.set_xlabel("latency / target (LAT/T, log scale)")
    right.set_ylabel("reward")
    right.set_title("reward of each trial against its latency ratio", fontsize=10)
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=7)
    return figure


def _log_labels(axes: Axes) -> None:
    """Tick labels of a log x axis as plain numbers (10, not 10^1), with minor ones at 2x and 5x
    the decades only where the axis spans at most a decade and a half: over more, 0.0005 ran into
    0.001."""

    def minor(value: float, _position: int) -> str:
        low, high = axes.get_xlim()
        if value <= 0 or low <= 0 or math.log10(high / low) > 1.5:
            return ""
        mantissa = value / 10 ** math.floor(math.log10(value))
        return f"{value:g}" if any(abs(mantissa - keep) < 1e-6 for keep in (2.0, 5.0)) else ""

    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(FuncFormatter(minor))


def _rolling(values: pd.Series, window: int) -> pd.Series:
    return values.rolling(window, min_periods=1).mean()


def plot_convergence(run: SearchResults) -> Figure:
    """The controller over time: reward, entropy (or the strategy's own statistic) and latency of samples.

    The x axis counts results told to the strategy (``order`` in ``trials``), duplicates and
    latency rejections included, as the strategy saw them.
    """
    trials = run.trials
    target = run.target_latency_ms
    log = run.strategy_log
    # the built-in strategies' statistics first; else the first a strategy of one's own reports
    # (not the bookkeeping that the orchestrator and the wrappers add to every log, nor the counts
    # of results told and proposals pending, a straight line and a flat one against this axis:
    # without a statistic the panel is left out)
    counts = ("order", "number", "distinct_evaluated", "deduplicate_duplicate", "told", "pending")
    reported = [name for name in log.columns if name not in counts and log[name].notna().any()]
    statistic = next((name for name in ("entropy", "population_mean_reward", "best_reward") if name in reported), reported[0] if reported else None)
    if statistic is None:
        figure, grid = _figure(9.0, 5.8, 2, 1, sharex=True)
        reward_axes, state_axes, latency_axes = grid[0][0], None, grid[1][0]
    else:
        figure, grid = _figure(9.0, 8.4, 3, 1, sharex=True)
        reward_axes, state_axes, latency_axes = grid[0][0], grid[1][0], grid[2][0]
    if trials.empty:
        reward_axes.text(0.5, 0.5, "no result yet", ha="center", transform=reward_axes.transAxes)
        return figure
    window = max(5, len(trials) // 10)
    styles = {"trained": ("tab:blue", "o"), "duplicate": ("tab:gray", "s"), "reused": ("tab:gray", "s"), "rejected": ("tab:red", "x")}
    for source, group in trials.groupby("source", sort=False):
        color, marker = styles.get(str(source), ("tab:purple", "o"))
        ok = group[group["status"] == "ok"]
        if len(ok):
            reward_axes.scatter(ok["order"], ok["reward"], s=12, color=color, marker=marker, alpha=0.6, label=f"{source} ({len(ok)})")
        unsuccessful = group[group["status"] != "ok"]
        if source == "rejected":  # over the latency filter's limit: never trained
            others = [(unsuccessful, "rejected by the latency filter", color, "x")]
        else:
            stopped = unsuccessful["error"] == EARLY_STOPPED
            others = [(unsuccessful[stopped], f"{source}, stopped early", "tab:gray", "v"), (unsuccessful[~stopped], f"{source}, failed", "black", "x")]
        for rows, label, other_color, other_marker in others:
            if len(rows):
                reward_axes.scatter(rows["order"], rows["reward"], s=22, color=other_color, marker=other_marker, label=f"{label} ({len(rows)})")
    ordered = trials.sort_values("order")
    reward_axes.plot(ordered["order"], _rolling(ordered["reward"].fillna(0.0), window), color="tab:orange", linewidth=1.6, label=f"mean of the last {window}")
    reward_axes.step(ordered["order"], ordered["reward"].fillna(0.0).cummax(), where="post", color="tab:green", linewidth=1.3, label="best so far")
    if "baseline" in log.columns and log["baseline"].notna().any():
        reward_axes.plot(log["order"], log["baseline"], color="tab:purple", linewidth=1.0, linestyle="--", label="controller's baseline")
    reward_axes.set_ylabel("reward")
    unfollowed = "" if statistic is not None else f" (the {run.strategy} strategy reports no statistic to follow)"
    reward_axes.set_title(f"{run.label}: {run.strategy} search, {len(run.trained())} architectures {run.evaluated_word}{unfollowed}", fontsize=10)
    reward_axes.grid(alpha=0.3)
    reward_axes.legend(fontsize=7, loc="best", ncol=2, framealpha=0.85)  # a fixed corner hid the lowest rewards (rejected ones among them)

    if state_axes is not None and statistic == "entropy":
        state_axes.plot(log["order"], log["entropy"], color="tab:blue", linewidth=1.4, label="policy entropy (nats per decision)")
        if "entropy_fraction" in log.columns and log["entropy_fraction"].gt(0).any():
            uniform = float((log["entropy"] / log["entropy_fraction"]).replace([np.inf, -np.inf], np.nan).dropna().median())
            state_axes.axhline(uniform, color="0.4", linestyle=":", label=f"uniform policy ({uniform:.2f})")
        state_axes.set_ylabel("entropy (nats)")
        state_axes.legend(fontsize=7)
    elif state_axes is not None and statistic is not None:
        state_axes.plot(log["order"], log[statistic], color="tab:blue", linewidth=1.4, label=statistic.replace("_", " "))
        state_axes.set_ylabel(statistic.replace("_", " "))
        state_axes.legend(fontsize=7)
    if state_axes is not None:
        state_axes.grid(alpha=0.3)

    sampled = ordered[ordered["latency_ms"].notna()]
    latency_axes.scatter(sampled["order"], sampled["latency_ms"], s=12, color="tab:blue", alpha=0.6, label="latency of each sample")
    latency_axes.plot(sampled["order"], sampled["latency_ms"].rolling(window, min_periods=1).median(), color="tab:orange", linewidth=1.6, label=f"median of the last {window}")
    if math.isfinite(target):
        latency_axes.axhline(target, color="tab:red", linestyle="--", linewidth=1.1, label=f"target {_ms(target)}")
    latency_axes.set_ylabel(latency_label([run], "table"))
    latency_axes.set_xlabel("results told to the strategy (in order)")
    latency_axes.grid(alpha=0.3)
    latency_axes.legend(fontsize=7, loc="upper right")
    return figure


def plot_calibration(points_frame: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Predicted (lookup table) against measured (end to end) latency, with y = x and ±10% bands."""
    figure, grid = _figure(6.4, 6.0)
    axes = grid[0][0]
    if points_frame.empty:
        axes.text(0.5, 0.5, "no architecture with both a predicted and a measured latency", ha="center", va="center", transform=axes.transAxes, fontsize=8)
        axes.set_xlabel("measured latency (ms, end to end)")
        axes.set_ylabel("predicted latency (ms, lookup table)")
        return figure
    from mobilenas.results.calibration import (
        CALIBRATE_SOURCE,
        TABLE_AFTER_FIT,
        TABLE_FIT,
        calibration_summary,
    )

    measured = points_frame["measured_ms"].to_numpy(dtype=float)
    predicted = points_frame["predicted_ms"].to_numpy(dtype=float)
    low = float(min(measured.min(), predicted.min())) * 0.85
    high = float(max(measured.max(), predicted.max())) * 1.15
    line = np.linspace(low, high, 50)
    axes.fill_between(line, line * 0.9, line * 1.1, color="tab:blue", alpha=0.12, label="±10%")
    axes.plot(line, line, color="black", linewidth=0.8, label="predicted = measured")
    markers = {CALIBRATE_SOURCE: "o", "trial": "s", "iteration": "D", TABLE_FIT: "^", TABLE_AFTER_FIT: "v"}
    summary = calibration_summary(points_frame).set_index("source")
    for index, (source, group) in enumerate(points_frame.groupby("source", sort=False)):
        figures = summary.loc[source]
        note = " (the correction's own fit points)" if source == TABLE_FIT else ""
        axes.scatter(group["measured_ms"], group["predicted_ms"], s=24, marker=markers.get(str(source), "o"), color=PALETTE[index % len(PALETTE)], edgecolors="black", linewidths=0.3,
                     label=f"{source}{note}: {len(group)}, MAPE {100 * figures['mape']:.1f}%", zorder=3)
    axes.set_xlim(low, high)
    axes.set_ylim(low, high)
    axes.set_aspect("equal")
    axes.set_xlabel("measured latency (ms, end to end)")
    axes.set_ylabel("predicted latency (ms, lookup table)")
    overall = summary.loc["all"] if "all" in summary.index else summary.iloc[0]
    spearman = "-" if math.isnan(overall["spearman"]) else f"{overall['spearman']:.3f}"
    axes.set_title(title or f"lookup table against measurements: MAPE {100 * overall['mape']:.1f}%, within ±10% {100 * overall['within_10pct']:.0f}%, Spearman {spearman}", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    return figure


def plot_netadapt_progress(run: NetAdaptResults) -> Figure:
    """Accuracy (after pruning, after the short fine-tune) and latency (table, measured, target) per iteration."""
    frame = run.iterations
    figure, grid = _figure(9.0, 6.6, 2, 1, sharex=True)
    accuracy_axes, latency_axes = grid[0][0], grid[1][0]
    if frame.empty:
        accuracy_axes.text(0.5, 0.5, "no iteration committed yet", ha="center", transform=accuracy_axes.transAxes)
        return figure
    accuracy_axes.plot(frame["iteration"], frame["accuracy"], "o-", color="tab:blue", label="after the short fine-tune")
    accuracy_axes.plot(frame["iteration"], frame["accuracy_before_finetune"], "x--", color="tab:gray", label="right after pruning")
    refined = run.refined
    if refined is not None and isinstance(refined.get("accuracy"), int | float):
        last = int(frame["iteration"].iloc[-1])
        accuracy_axes.plot([last], [refined["accuracy"]], "*", markersize=15, color="tab:green", markeredgecolor="black", label=f"{refined_label(refined)}: {refined['accuracy']:.3f}")
        if isinstance(refined.get("test_accuracy"), int | float):
            accuracy_axes.plot([last], [refined["test_accuracy"]], "P", markersize=9, color="tab:olive", label=f"refined, test split: {refined['test_accuracy']:.3f}")
    accuracy_axes.set_ylabel("validation accuracy")
    source = run.source if len(run.source) <= 60 else run.source[:57] + "..."
    accuracy_axes.set_title(f"{run.label}: NetAdapt from {source}", fontsize=10)
    accuracy_axes.grid(alpha=0.3)
    accuracy_axes.legend(fontsize=7)
    for index, row in enumerate(frame.itertuples()):
        if isinstance(row.chosen_group, str):  # above and below the line in turn, so that neighbours do not overlap
            above = index % 2 == 1
            accuracy_axes.annotate(f"{row.chosen_group} {int(row.previous_width)}→{int(row.width)}", (row.iteration, row.accuracy), xytext=(3, 5 if above else -7),
                                   textcoords="offset points", fontsize=5.5, rotation=20 if above else -20, va="bottom" if above else "top", color="0.3")
    latency_axes.plot(frame["iteration"], frame["latency_ms"], "o-", color="tab:blue", label="lookup table (run's correction)")
    if frame["measured_latency_ms"].notna().any():
        latency_axes.plot(frame["iteration"], frame["measured_latency_ms"], "s--", color="tab:orange", label="measured end to end")
    targets = frame[frame["target_latency_ms"].notna()]
    if len(targets):  # a bar at each iteration (a step line drew the first and last half as wide, and none for one iteration)
        latency_axes.plot(targets["iteration"], targets["target_latency_ms"], "_", markersize=22, markeredgewidth=1.6, color="tab:purple", label="iteration's target")
    latency_axes.axhline(run.target_latency_ms, color="tab:red", linestyle="--", linewidth=1.1, label=f"budget {_ms(run.target_latency_ms)}")
    latency_axes.set_ylabel("latency (ms)")
    latency_axes.set_xlabel("iteration (0 = the starting network)")
    latency_axes.grid(alpha=0.3)
    latency_axes.legend(fontsize=7)
    first, last = int(frame["iteration"].min()), int(frame["iteration"].max())
    latency_axes.set_xlim(first - 0.5, last + 0.5)  # at least one iteration wide: ticks at -0.04, -0.02, ... for one
    latency_axes.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)  # one iteration: one tick
    return figure


def plot_widths(run: NetAdaptResults) -> Figure:
    """Every prunable group's width at the start and at the end (horizontal bars, network order top down)."""
    table = run.widths_before_after()
    height = max(3.0, 0.32 * len(table) + 1.4)
    figure, grid = _figure(8.4, height)
    axes = grid[0][0]
    if table.empty:
        axes.text(0.5, 0.5, "no iteration committed yet", ha="center", transform=axes.transAxes)
        return figure
    positions = np.arange(len(table))[::-1]
    axes.barh(positions + 0.2, table["start"], height=0.4, color="tab:gray", label="start")
    axes.barh(positions - 0.2, table["end"], height=0.4, color="tab:blue", label="refined" if run.finished else "latest iteration")
    for position, row in zip(positions, table.itertuples(), strict=True):
        if row.end != row.start:
            axes.text(row.end, position - 0.2, f" {int(row.end)} ({100 * row.kept:.0f}%)", va="center", fontsize=6.5)
    axes.set_yticks(positions, table["group"], fontsize=7)
    axes.set_xlabel("width (channels)")
    axes.set_title(f"{run.label}: widths before and after NetAdapt", fontsize=10)
    axes.grid(alpha=0.3, axis="x")
    axes.legend(fontsize=7, loc="lower right")
    return figure


def plot_width_history(run: NetAdaptResults) -> Figure:
    """Each group's width over the iterations, as a fraction of its starting width (a heat map)."""
    widths = run.widths
    figure, grid = _figure(max(6.0, 0.35 * len(widths) + 4.0), max(3.0, 0.3 * widths.shape[1] + 1.5))
    axes = grid[0][0]
    if widths.empty:
        axes.text(0.5, 0.5, "no iteration committed yet", ha="center", transform=axes.transAxes)
        return figure
    start = widths.iloc[0].astype(float)
    fractions = widths.astype(float).divide(start, axis=1).T
    image = axes.imshow(fractions.to_numpy(), aspect="auto", cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest")
    axes.set_yticks(np.arange(len(fractions.index)), list(fractions.index), fontsize=7)
    axes.set_xticks(np.arange(len(widths.index)), [str(i) for i in widths.index], fontsize=7)
    axes.set_xlabel("iteration")
    colorbar = figure.colorbar(image, ax=axes)
    colorbar.set_label("width / starting width")
    axes.set_title(f"{run.label}: widths per iteration", fontsize=10)
    return figure
