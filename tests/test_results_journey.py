"""nas-results along a user's journey over tabular searches: what a review found said wrongly, or
drawn so as to mislead, checked on real runs (``nas-search`` in-process on a generated
NAS-Bench-201-shaped CSV, seconds each)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex

from mobilenas.results import compare_runs, group_runs, load_run, load_runs
from mobilenas.results.calibration import TABLE_AFTER_FIT, TABLE_FIT, describe
from mobilenas.results.cli import main as nas_results
from mobilenas.results.plots import (
    plot_comparison,
    plot_convergence,
    plot_front,
    plot_reward_landscape,
)
from mobilenas.search.cli import main as nas_search

from helpers import cell_search_args, execute_notebook


@pytest.fixture(scope="module")
def runs(cells: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ppo and random at 9 ms (soft reward), random at 12 ms with the hard reward, and random at
    9 ms on the benchmark's other accuracy column (another problem)."""
    root = tmp_path_factory.mktemp("journey")
    made = {}
    for name, extra in (
        ("ppo", ["--strategy", "ppo"]),
        ("random", ["--strategy", "random"]),
        ("random-hard-12", ["--strategy", "random", "--reward", "hard", "--target-latency", "12ms"]),
        ("random-other", ["--strategy", "random", "--reward-column", "test_acc_200ep"]),
    ):
        assert nas_search(cell_search_args(cells, root / name, "--samples", "30", *extra)) == 0
        made[name] = root / name
    return made


def _cut(run: Path, to: Path, keep: float) -> Path:
    """A copy of ``run`` whose events.jsonl keeps the first ``keep`` of its lines (0: emptied)."""
    shutil.copytree(run, to)
    lines = (to / "events.jsonl").read_text().splitlines(keepends=True)
    (to / "events.jsonl").write_text("".join(lines[: int(len(lines) * keep)]))
    return to


def test_compare_says_a_cut_journal_is_refused_as_show_does(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # compare sent it to "--resume goes on", which refuses it; show said so already
    cut = _cut(runs["random"], tmp_path / "cut", 0.5)
    assert nas_results(["show", str(cut)]) == 0
    shown = capsys.readouterr().out
    assert "not finished    nas-search --resume refuses it as it is: " in shown
    assert nas_results(["compare", str(cut), str(runs["ppo"]), "--out", str(tmp_path / "f.png")]) == 0
    err = capsys.readouterr().err
    assert "note: 1 run not finished: cut (" in err and f"refused: see nas-results show {cut}" in err  # short: show has the reason
    assert "strategy.pt reflects" not in err and "--resume goes on" not in err
    assert nas_search(["--resume", str(cut), "--quiet"]) == 2  # as said
    capsys.readouterr()


def test_an_emptied_journal_is_said_and_so_is_the_refusal(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # show read trials.csv in silence and reported a finished run as any other
    empty = _cut(runs["random"], tmp_path / "empty", 0.0)
    assert load_run(empty).journal_unread == "events.jsonl is empty"
    assert load_run(runs["random"]).journal_unread is None
    assert nas_results(["show", str(empty)]) == 0
    journal = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  journal ")]
    assert len(journal) == 1
    assert f"events.jsonl is empty: the figures come from {empty / 'trials.csv'}; nas-search --resume refuses it as it is: " in journal[0]
    assert "holds 0 events but strategy.pt reflects" in journal[0]
    assert nas_results(["show", str(empty), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["journal_unread"] == "events.jsonl is empty"
    assert nas_results(["compare", str(empty), str(runs["ppo"]), "--out", str(tmp_path / "f.png")]) == 0
    err = capsys.readouterr().err
    assert f"note: run empty: events.jsonl is empty (its figures come from trials.csv); nas-search --resume refuses it: see nas-results show {empty}" in err
    (empty / "events.jsonl").unlink()
    assert load_run(empty).journal_unread == "events.jsonl is missing"
    assert nas_search(["--resume", str(empty), "--quiet"]) == 2  # a resume refuses it, as said
    assert f"{empty / 'events.jsonl'} is missing (strategy.pt reflects" in capsys.readouterr().err  # not "holds 0 events"


@pytest.mark.parametrize("by", [",", "", " , "])
def test_compare_by_nothing_names_the_columns(runs: dict[str, Path], tmp_path: Path, by: str, capsys: pytest.CaptureFixture[str]) -> None:
    # it printed pandas' "No group keys passed!"
    assert nas_results(["compare", str(runs["ppo"]), str(runs["random"]), "--by", by, "--out", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert "give at least one column to group runs by; choose from strategy, target_latency_ms, seed" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "f.png").exists()


@pytest.mark.parametrize(("command", "example"), [("compare", "fronts.png"), ("plot", "front.png")])
def test_a_folder_as_out_is_refused_before_the_work(runs: dict[str, Path], tmp_path: Path, command: str, example: str, capsys: pytest.CaptureFixture[str]) -> None:
    # it failed with "Is a directory" once the figure was drawn (and, for compare, nothing of --csv written)
    folder = tmp_path / "adir.png"
    folder.mkdir()
    extra = [str(runs["random"]), "--csv", str(tmp_path / "t.csv")] if command == "compare" else []
    assert nas_results([command, str(runs["ppo"]), *extra, "--out", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"--out {folder} is a folder; give a file name, like {folder / example}" in err and len(err.strip().splitlines()) == 1
    assert not list(folder.iterdir()) and not (tmp_path / "t.csv").exists()


def test_notebook_out_as_a_folder_suggests_a_file_in_it(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert nas_results(["notebook", str(runs["ppo"]), "--out", str(tmp_path)]) == 2
    assert f"give the notebook's file name (like {tmp_path / 'pareto.ipynb'})" in capsys.readouterr().err


def test_groups_of_the_library_are_those_of_the_cli(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = [runs["random"], runs["ppo"], runs["random-other"]]
    loaded = load_runs(paths)
    groups = group_runs(loaded, compare_runs(loaded))
    assert groups.by == ("strategy", "problem_number")
    assert groups.note is not None and groups.note.startswith("these runs search different problems")
    assert groups.names() == {"random": "random, problem 1", "ppo": "ppo, problem 1", "random-other": "random, problem 2"}
    assert groups.problem_legend() == "problem 1: random, ppo; problem 2: random-other"
    assert nas_results(["compare", *map(str, paths), "--out", str(tmp_path / "f.png"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["by"] == list(groups.by)
    assert [(g["strategy"], g["problem_number"], g["runs"]) for g in printed["groups"]] == [("ppo", 1, 1), ("random", 1, 1), ("random", 2, 1)]
    assert [g["best_reward_mean"] for g in printed["groups"]] == pytest.approx(list(groups.summary()["best_reward_mean"]))
    # rewards by their kind where that tells them apart
    hard = load_runs([runs["random"], runs["random-hard-12"]])
    assert set(group_runs(hard, compare_runs(hard)).names().values()) == {"random, soft reward, target 9.00 ms", "random, hard reward, target 12.00 ms"}


@pytest.mark.slow
def test_the_notebook_groups_runs_per_problem_as_compare_does(runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # it averaged the random runs of two problems and drew them in one colour

    from mobilenas.results import notebook_path

    monkeypatch.setenv("MOBILENAS_RUN", str(runs["random"]))
    monkeypatch.setenv("MOBILENAS_COMPARE", f"{runs['ppo']},{runs['random-other']}")
    monkeypatch.setenv("MOBILENAS_FIGURES", str(tmp_path / "figures"))
    notebook = execute_notebook(notebook_path("pareto"), tmp_path)
    cell = next(c for c in notebook.cells if c.cell_type == "code" and "results.compare_runs(" in c.source)
    printed = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    assert "note: these runs search different problems" in printed and "problem 1: random, ppo; problem 2: random-other" in printed
    summary = next(o for o in cell.outputs if o.get("output_type") == "execute_result")["data"]["text/plain"]
    rows = [line.split() for line in summary.split("\n\n")[0].splitlines()[1:4]]  # the first block of columns (pandas wraps wide frames)
    assert [row[1:4] for row in rows] == [["ppo", "1", "1"], ["random", "1", "1"], ["random", "2", "1"]]  # strategy, problem, runs


def _target_colours(axes: object) -> dict[float, str]:
    return {float(line.get_xdata()[0]): to_hex(line.get_color()) for line in axes.get_lines()  # type: ignore[attr-defined]
            if line.get_linestyle() == "--" and len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]}


def _front_colours(axes: object) -> dict[str, str]:
    return {line.get_label().split(":")[0]: to_hex(line.get_color()) for line in axes.get_lines() if "Pareto front" in line.get_label()}  # type: ignore[attr-defined]


def test_compare_figure_colours_targets_by_group_and_says_rewards_differ(runs: dict[str, Path]) -> None:
    # every target line was drawn in the same red; soft and hard rewards shared the progress panel unsaid
    loaded = load_runs([runs["ppo"], runs["random"], runs["random-hard-12"]])
    figure = plot_comparison(loaded, groups={"ppo": "soft", "random": "soft", "random-hard-12": "hard"})
    fronts, progress = figure.axes[0], figure.axes[1]
    legend = fronts.get_legend()
    group_colour = {text.get_text().split(" (")[0]: to_hex(handle.get_color()) for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True) if " run" in text.get_text()}
    assert _target_colours(fronts) == {9.0: group_colour["soft"], 12.0: group_colour["hard"]} and group_colour["soft"] != group_colour["hard"]
    # each run a group of its own: a target of one run in that run's colour, of two runs in black (neither's)
    ungrouped = plot_comparison(loaded).axes[0]
    assert _target_colours(ungrouped) == {9.0: "#000000", 12.0: _front_colours(ungrouped)["random-hard-12"]}
    assert "runs of soft and hard rewards and targets 9 ms, 12 ms: not on one scale" in progress.get_title()
    assert plot_comparison(load_runs([runs["ppo"], runs["random"]])).axes[1].get_title() == "search progress"


def _off_axis_run(path: Path) -> object:
    """The run with two of its trials made NAS-Bench-201's cut-off cells: chance accuracy, ~0.01 ms."""
    run = load_run(path)
    trained = run.trials.index[(run.trials["source"] == "trained") & (run.trials["status"] == "ok")]
    run.trials.loc[trained[:2], ["accuracy", "latency_ms", "measured_latency_ms"]] = [[0.1, 0.01, 0.01], [0.1, 0.012, 0.012]]
    return run


def test_points_off_the_accuracy_axis_set_no_latency_range_nor_front_line(runs: dict[str, Path]) -> None:
    run = _off_axis_run(runs["random"])
    visible = run.candidates()
    visible = visible[visible["accuracy"] > 0.5]
    log = plot_front(run, log_latency=True).axes[0]
    low, high = log.get_xlim()
    assert low > 0.5 * float(visible["latency_ms"].min()) and high < 2 * float(visible["latency_ms"].max())  # it spanned 1e-2 ms
    labels = [t.get_text() for t in log.get_legend().get_texts()]
    assert any(label.startswith("off the axis: 2 points below, down to 0.100") for label in labels)
    assert any(label.startswith("random: Pareto front (") and label.endswith(" off the axis)") for label in labels)
    linear = plot_front(run).axes[0]
    bottom = linear.get_ylim()[0]
    front_line = next(line for line in linear.get_lines() if "Pareto front" in line.get_label())
    assert min(front_line.get_ydata()) > bottom  # no step down to the hidden point
    assert min(front_line.get_xdata()) > 0.5


def _covered(figure: object) -> int:
    """How many points of the figure's first axes lie under (or at the edge of) its legend, as saved."""
    import io

    figure.savefig(io.BytesIO(), format="png", dpi=130, bbox_inches="tight")  # type: ignore[attr-defined]
    axes = figure.axes[0]  # type: ignore[attr-defined]
    box, pad = axes.get_legend().get_window_extent(), 4.0  # a marker's radius, in pixels
    under = 0
    for collection in axes.collections:
        shown = collection.get_offset_transform().transform(collection.get_offsets())
        under += int(((shown[:, 0] >= box.x0 - pad) & (shown[:, 0] <= box.x1 + pad) & (shown[:, 1] >= box.y0 - pad) & (shown[:, 1] <= box.y1 + pad)).sum())
    return under


def test_the_legend_covers_no_trial(runs: dict[str, Path]) -> None:
    # loc="best" put it over a trial of a five-trial network search (these accuracies and latencies)
    run = load_run(runs["random"])
    trials = run.trials[run.trials["source"] == "trained"].head(5).copy()
    trials[["accuracy", "latency_ms", "measured_latency_ms"]] = [[0.129, 2.124, 2.124], [0.079, 2.739, 2.739], [0.147, 2.357, 2.357], [0.119, 2.980, 2.980], [0.102, 2.543, 2.543]]
    trials["reward"] = trials["accuracy"] * (trials["latency_ms"] / 5.0) ** -0.07
    small = dataclasses.replace(run, label="net1", trials=trials, manifest={**run.manifest, "target_latency_ms": 5.0})
    assert _covered(plot_front(small)) == 0
    for path in runs.values():
        assert _covered(plot_front(load_run(path))) == 0, path.name


def test_convergence_leaves_out_a_panel_with_nothing_to_follow(runs: dict[str, Path]) -> None:
    # random reports only how many results it was told: a straight line against the x axis
    random = plot_convergence(load_run(runs["random"]))
    assert len(random.axes) == 2
    assert random.axes[0].get_title().endswith("30 architectures evaluated (the random strategy reports no statistic to follow)")
    assert all(axes.get_ylabel() != "told" for axes in random.axes)
    ppo = plot_convergence(load_run(runs["ppo"]))
    assert len(ppo.axes) == 3 and ppo.axes[1].get_ylabel() == "entropy (nats)"
    assert "trained" not in ppo.axes[0].get_title()


def test_reward_landscape_tick_labels_do_not_overlap(runs: dict[str, Path]) -> None:
    # over four decades of LAT/T, the minor label 0.0005 ran into 0.001
    figure = plot_reward_landscape(_off_axis_run(runs["random"]))  # LAT/T down to 0.001
    FigureCanvasAgg(figure).draw()
    right = next(axes for axes in figure.axes if axes.get_xscale() == "log")
    renderer = figure.canvas.get_renderer()
    labels = [t for t in [*right.xaxis.get_majorticklabels(), *right.xaxis.get_minorticklabels()] if t.get_visible() and t.get_text()]
    assert len(labels) >= 3
    for i, first in enumerate(labels):
        for second in labels[i + 1:]:
            assert not first.get_window_extent(renderer).overlaps(second.get_window_extent(renderer)), (first.get_text(), second.get_text())


def test_calibration_rows_line_up() -> None:
    summary = pd.DataFrame([
        {"source": "trial", "count": 1, "mape": 0.1, "within_5pct": 0.0, "within_10pct": 1.0, "spearman": np.nan, "rmse_ms": 0.1, "bias": -0.1},
        {"source": TABLE_FIT, "count": 8, "mape": 0.018, "within_5pct": 1.0, "within_10pct": 1.0, "spearman": 0.976, "rmse_ms": 0.05, "bias": -0.001},
        {"source": TABLE_AFTER_FIT, "count": 2, "mape": 0.085, "within_5pct": 0.5, "within_10pct": 0.5, "spearman": 1.0, "rmse_ms": 0.1, "bias": -0.055},
        {"source": "all", "count": 11, "mape": 0.037, "within_5pct": 0.8, "within_10pct": 0.909, "spearman": 0.929, "rmse_ms": 0.07, "bias": -0.019},
    ])
    lines = describe(summary)
    for word in ("MAPE", "within", "Spearman", "bias"):
        assert len({line.index(word) for line in lines}) == 1, word
    assert lines[0].split()[1:3] == ["1", "network"] and lines[1].split()[2:4] == ["8", "networks"]
