"""mobilenas.results: runs as DataFrames, Pareto fronts, comparisons, reference networks and plots.

Loading (:mod:`.load`)
    ``load_run(path)`` reads a ``nas-search`` run (:class:`SearchResults`: ``trials``,
    ``proposals``, ``strategy_log`` frames, ``best``, ``manifest``) or a ``netadapt refine`` run
    (:class:`NetAdaptResults`: ``iterations``, ``widths``, ``proposals`` frames, ``refined``).
    ``load_runs(paths)`` reads several with unique labels; ``find_runs(folder)`` lists the runs
    under a folder, ``latest_run(kind)`` finds the newest (the notebooks' default); ``candidates_frame(runs)`` and ``trials_frame(runs)`` stack them. A path
    that is not a run raises :class:`NotARunError` (one line; exit code 2 from ``nas-results``).

Fronts and comparisons (:mod:`.fronts`); a run is a loaded one or its folder, a reference point
a :class:`ReferencePoint`, a pair ``(accuracy, latency_ms)`` or text like ``"0.5,20ms"``
    ``pareto_front(run, latency="table"|"measured")``, ``hypervolume(run, ReferencePoint(acc,
    latency_ms))`` (default reference: accuracy 0, twice the target), ``run_summary(run)``,
    ``compare_runs(runs)`` (one row per run: best reward/accuracy, accuracy within the target,
    front size, hypervolume; for tabular runs the benchmark's oracle and the regret in points),
    ``summarize(table, by=("strategy",))`` (mean and std per group, and over how many runs),
    ``comparison_notes(runs, table, by)`` (what ``nas-results compare`` notes: runs unfinished or
    unreadable, groups pooling other --samples, targets that differ, ...),
    ``group_runs(runs, table)`` (the groups ``nas-results compare`` takes means over and colours
    by: per strategy, apart where runs differ in target, reward or problem), ``best_so_far(run)``.

Reference networks (:mod:`.references`)
    ``reference_points(run, names)`` places MobileNetV2/V3 and MnasNet (and width multipliers)
    on the run's latency axis through its own table; accuracies given by the user, or
    ``train_references(run)`` (proxy-trained like the candidates, cached in the run directory).

Latency calibration (:mod:`.calibration`, :mod:`.measured`)
    ``calibration_points(run, csv=...)`` and ``calibration_summary(points)``: the table's
    predictions against end-to-end measurements; ``measure_candidates(run)`` measures a
    search's front on the table's device (cached in ``measured.jsonl``).

Figures (:mod:`.plots`)
    ``plot_front``, ``plot_comparison``, ``plot_reward_landscape``, ``plot_convergence``,
    ``plot_calibration``, ``plot_netadapt_progress``, ``plot_widths``, ``plot_width_history``;
    ``save_figure(figure, "front.png")``.

Notebooks: ``results/pareto.ipynb`` and ``results/netadapt.ipynb`` (installed with the package;
``notebook_path("pareto")``) take the run directory from ``MOBILENAS_RUN`` (or their parameters
cell) and save their figures as PNG files. Command line: ``nas-results show|plot|compare|
references|measure|calibration|figures``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mobilenas.lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use (mobilenas.lazy), so --help does not load pandas
    from mobilenas.results.calibration import (
        calibration_points,
        calibration_summary,
        read_calibration_csv,
    )
    from mobilenas.results.fronts import (
        LATENCY_KINDS,
        ReferencePoint,
        RunGroups,
        best_so_far,
        compare_runs,
        comparison_notes,
        default_reference_point,
        group_runs,
        hypervolume,
        pareto_front,
        points,
        run_summary,
        summarize,
    )
    from mobilenas.results.load import (
        NotARunError,
        RunResults,
        candidates_frame,
        find_runs,
        latest_run,
        load_run,
        load_runs,
        resolve_run,
        trials_frame,
    )
    from mobilenas.results.measured import measure_candidates
    from mobilenas.results.netadapt_run import NetAdaptResults
    from mobilenas.results.references import DEFAULT_REFERENCES, reference_points, train_references
    from mobilenas.results.search_run import SearchResults

NOTEBOOKS = ("pareto", "netadapt")


def notebook_path(name: str) -> Path:
    """The installed notebook ``pareto`` or ``netadapt`` (``.ipynb``)."""
    if name not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {name!r}; choose {' or '.join(NOTEBOOKS)}")
    return Path(__file__).with_name(f"{name}.ipynb")


def notebook_for_run(name: str, run: str | Path, inside: bool = False) -> dict:
    """The notebook ``name`` (as JSON) with its parameters cell set to read ``run``: what
    ``nas-results notebook RUN`` writes, to open from anywhere. ``inside``: the copy is written into
    the run's folder and reads the folder it is in (Jupyter runs a notebook in its own folder), so
    it follows the run when the folder is copied or moved; elsewhere it names the run's absolute
    path."""
    import json

    notebook = json.loads(notebook_path(name).read_text(encoding="utf-8"))
    cell = next(c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    lines = cell["source"] if isinstance(cell["source"], list) else cell["source"].splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.startswith("RUN_DIR = "))
    if inside:  # a kernel started elsewhere (papermill, nbclient without a path) reads the run it was written into
        lines[index] = (f"RUN_DIR = os.getcwd() if os.path.isfile('manifest.json') else {str(Path(run).resolve())!r}"
                        "  # this notebook's folder, the run it was written into by nas-results notebook (MOBILENAS_RUN is not read)\n")
    else:
        lines[index] = f"RUN_DIR = {str(Path(run).resolve())!r}  # the run this copy was written for by nas-results notebook (MOBILENAS_RUN is not read)\n"
    cell["source"] = lines
    return notebook


__all__ = [
    "DEFAULT_REFERENCES",
    "LATENCY_KINDS",
    "NOTEBOOKS",
    "NetAdaptResults",
    "NotARunError",
    "ReferencePoint",
    "RunGroups",
    "RunResults",
    "SearchResults",
    "best_so_far",
    "calibration_points",
    "calibration_summary",
    "candidates_frame",
    "compare_runs",
    "comparison_notes",
    "default_reference_point",
    "find_runs",
    "group_runs",
    "hypervolume",
    "latest_run",
    "load_run",
    "load_runs",
    "measure_candidates",
    "notebook_for_run",
    "notebook_path",
    "pareto_front",
    "points",
    "read_calibration_csv",
    "reference_points",
    "resolve_run",
    "run_summary",
    "summarize",
    "train_references",
    "trials_frame",
]

lazy_exports(__name__, __file__)
