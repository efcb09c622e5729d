"""``nas-results`` (= ``mobilenas results``): summaries, Pareto tables and plots of runs.

    nas-results show RUN                   summary and Pareto table (--json)
    nas-results plot RUN --out front.png   the front, with reference networks on the axes
    nas-results compare RUN... --out fronts.png
                                           several fronts on one figure plus a comparison table
    nas-results references RUN [--train]   reference networks on the run's latency axis
    nas-results measure RUN                measure the front end to end (for --measured)
    nas-results calibration RUN            the latency table against end-to-end measurements
    nas-results figures RUN --out DIR      every figure of a run (the notebooks' figures)
    nas-results notebook RUN               a copy of the run's notebook that reads it, to open in Jupyter

RUN is a run directory written by ``nas-search`` or ``netadapt refine``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mobilenas.cliutil import (
    ArgumentParser,
    KeepLinesFormatter,
    add_json_flag,
    add_version_flag,
    check_writable_folder,
    examples,
    missing_command,
    positive_int,
    print_json,
    refuse_ineffective,
    run_main,
    set_command_name,
    set_interrupt_note,
)
from mobilenas.errors import UsageError
from mobilenas.netadapt.choices import after_final, final_training
from mobilenas.search.base import stopped_early_words
from mobilenas.units import counted, format_ms, format_time_limit

EPILOG = """\
examples:
  nas-results show results/runs/search-20261129-101500-ab12
  nas-results plot results/runs/search-20261129-101500-ab12 --out front.png --measured
  nas-results plot RUN --out front.png --references mobilenetv2@0.75,mobilenetv3-small \\
      --reference-accuracy mobilenetv3-small=0.64
  nas-results compare results/runs/* --out fronts.png --by strategy
  nas-results references RUN --train     # proxy-train the references like the run's candidates

Accuracies are fractions (0.72). Latencies accept 15ms, 0.015s or a bare number of ms.
The hypervolume's reference point defaults to accuracy 0 and twice the (largest) target latency.
"""


def _reference_point(text: str) -> Any:
    from mobilenas.results.fronts import ReferencePoint

    try:
        return ReferencePoint.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_axis_options(parser: argparse.ArgumentParser, *, hypervolume: bool = True) -> None:
    parser.add_argument("--measured", action="store_true", help="put points on measured end-to-end latency where known (the table's prediction elsewhere)")
    if not hypervolume:
        return
    parser.add_argument("--reference-point", type=_reference_point, default=None, metavar="ACC,LATENCY", help="hypervolume reference point, e.g. 0.5,20ms (default: 0 and twice the target)")


def _add_reference_options(parser: argparse.ArgumentParser, default_help: str) -> None:
    parser.add_argument("--references", default=None, metavar="NAMES", help=f"reference networks to place, comma-separated (mobilenetv2@0.75,mnasnet-a1,...), all, or none ({default_help})")
    parser.add_argument("--reference-accuracy", action="append", default=[], metavar="NAME=ACC", help="a reference's accuracy on your task (fraction), e.g. mobilenetv2=0.72; repeatable")
    parser.add_argument("--measure-missing", action="store_true", help="measure ops of the references that the latency table lacks (on the table's device; appended to the table)")
    parser.add_argument("--latency-table", "--table", dest="latency_table", default=None, metavar="PATH", help="the run's latency table, if it moved since the run")


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, description="Summaries, Pareto fronts and plots of nas-search and NetAdapt runs.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_version_flag(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)

    show = commands.add_parser("show", help="print a run's summary and Pareto table", description="Print a run's summary (strategy, target, trials, best, hypervolume) and its Pareto front; a NetAdapt run's iterations.",
                                 formatter_class=KeepLinesFormatter, epilog=examples("nas-results show results/runs/search-20261129-101500-ab12", "nas-results show   # the newest run here",
                                                                                  "nas-results show RUN --measured --limit 10", "nas-results show RUN --json   # the summary and the front as one object"))
    show.add_argument("run", nargs="?", metavar="RUN", help="run directory (default: the newest run under results/runs/)")
    _add_axis_options(show)
    show.add_argument("--limit", type=positive_int, default=30, metavar="N", help="rows of the Pareto table to print (default: 30)")
    add_json_flag(show)

    plot = commands.add_parser("plot", help="draw a run's front (PNG)", description="Draw a run's accuracy/latency front with its target and the reference networks on the same latency axis.",
                                 formatter_class=KeepLinesFormatter, epilog=examples("nas-results plot results/runs/search-20261129-101500-ab12   # writes RUN/front.png",
                                                                                  "nas-results plot RUN --out front.png --measured --measure-missing",
                                                                                  "nas-results plot RUN --references mobilenetv2@0.75,mobilenetv3-small \\",
                                                                                  "    --reference-accuracy mobilenetv3-small=0.64"))
    plot.add_argument("run", nargs="?", metavar="RUN", help="run directory (default: the newest run under results/runs/)")
    plot.add_argument("--out", default=None, metavar="PNG", help="output file (default: RUN/front.png)")
    _add_axis_options(plot, hypervolume=False)
    _add_reference_options(plot, "default for network runs: all whose ops the table has")
    plot.add_argument("--log-latency", action="store_true", help="logarithmic latency axis")
    plot.add_argument("--title", default=None, help="figure title")

    compare = commands.add_parser("compare", help="overlay several runs' fronts and compare them", description="Overlay the fronts of several runs (strategies, seeds, targets) on one figure and print one row per run plus mean and std per group.",
                                    formatter_class=KeepLinesFormatter, epilog=examples("nas-results compare results/runs/* --out fronts.png --by strategy",
                                                                                     "nas-results compare RUN1 RUN2 --csv runs.csv --reference-point 0,30ms"))
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    compare.add_argument("--out", default="fronts.png", metavar="PNG", help="output figure (default: fronts.png)")
    compare.add_argument("--by", default=None, metavar="COLUMNS", help="group runs by these columns for mean and std, comma-separated (default: strategy, plus target_latency_ms when targets differ)")
    compare.add_argument("--csv", default=None, metavar="PATH", help="also write the per-run table as CSV")
    _add_axis_options(compare)
    _add_reference_options(compare, "default: none")
    add_json_flag(compare)

    references = commands.add_parser("references", help="reference networks on a run's latency axis", description="Place reference networks (MobileNetV2, MnasNet, MobileNetV3 and width multipliers) on a run's latency axis; optionally proxy-train them like the run's candidates.",
                                       formatter_class=KeepLinesFormatter, epilog=examples("nas-results references RUN", "nas-results references RUN --train   # proxy-trained as the run's candidates were",
                                                                                        "nas-results references RUN --references mobilenetv2@0.5,mnasnet-a1 --measure-missing"))
    references.add_argument("run", metavar="RUN", help="run directory of a network search or a NetAdapt run")
    _add_reference_options(references, "default: all")
    references.add_argument("--train", action="store_true", help="proxy-train the references with the search's own proxy task (cached in RUN/references.json)")
    references.add_argument("--retrain", action="store_true", help="with --train: train again even where a cached result exists")
    references.add_argument("--quiet", action="store_true", help="no progress bars")
    add_json_flag(references)

    measure = commands.add_parser("measure", help="measure a search's front end to end", description="Measure architectures of a network search end to end on this machine (the latency table's device) and cache them in RUN/measured.jsonl, for --measured and the calibration plot.",
                                    formatter_class=KeepLinesFormatter, epilog=examples("nas-results measure RUN   # the front", "nas-results measure RUN --trials 3,17,40 --rounds 5",
                                                                                     "nas-results measure RUN --trials all"))
    measure.add_argument("run", metavar="RUN", help="run directory of a network search")
    measure.add_argument("--trials", default="front", metavar="WHICH", help="front (default), all, or trial numbers such as 3,17,40")
    measure.add_argument("--rounds", type=positive_int, default=3, help="interleaved rounds of timed runs (default: 3)")
    measure.add_argument("--remeasure", action="store_true", help="measure again architectures already measured")
    measure.add_argument("--latency-table", "--table", dest="latency_table", default=None, metavar="PATH", help="the run's latency table, if it moved since the run")
    measure.add_argument("--quiet", action="store_true", help="no progress bar")
    add_json_flag(measure)

    calibration = commands.add_parser("calibration", help="the latency table against measurements", description="Compare the run's lookup-table latencies with end-to-end measurements (the run's own, its table's, and calibration CSVs of nas-latency calibrate).",
                                        formatter_class=KeepLinesFormatter, epilog=examples("nas-results calibration RUN --out calibration.png",
                                                                                         "nas-results calibration --csv calibration.csv   # of nas-latency calibrate"))
    calibration.add_argument("run", nargs="?", metavar="RUN", help="run directory (optional with --csv)")
    calibration.add_argument("--csv", action="append", default=[], metavar="PATH", help="a calibration.csv written by nas-latency calibrate (repeatable)")
    calibration.add_argument("--out", default=None, metavar="PNG", help="also draw predicted against measured latency")
    calibration.add_argument("--latency-table", "--table", dest="latency_table", default=None, metavar="PATH", help="the run's latency table, if it moved since the run")
    add_json_flag(calibration)

    notebook = commands.add_parser(
        "notebook", help="write a notebook that reads a run (to open in Jupyter)",
        description="Write a copy of the notebook for a run (pareto.ipynb for a search, netadapt.ipynb for a NetAdapt run) that reads that run "
                    "wherever Jupyter is started, by default into the run's folder, and print how to open it.",
        epilog=examples("nas-results notebook results/runs/search-20261129-101500-ab12",
                        "jupyter notebook results/runs/search-20261129-101500-ab12/pareto.ipynb"),
        formatter_class=KeepLinesFormatter,
    )
    notebook.add_argument("run", nargs="?", metavar="RUN", help="run directory (default: the newest run under results/runs/)")
    notebook.add_argument("--out", default=None, metavar="PATH", help="where to write it (default: RUN/pareto.ipynb or RUN/netadapt.ipynb)")
    notebook.add_argument("--force", action="store_true", help="write over a notebook already there (your edits to it are lost)")
    figures = commands.add_parser("figures", help="write every figure of a run", description="Write every figure of a run as PNG files: the front, the reward landscape, the convergence, the calibration (search); the progress and the widths (NetAdapt).",
                                    formatter_class=KeepLinesFormatter, epilog=examples("nas-results figures RUN   # into RUN/figures", "nas-results figures RUN --out figs --measured"))
    figures.add_argument("run", nargs="?", metavar="RUN", help="run directory (default: the newest run under results/runs/)")
    figures.add_argument("--out", default=None, metavar="DIR", help="output folder (default: RUN/figures)")
    figures.add_argument("--calibration-csv", action="append", default=[], metavar="PATH", help="a calibration.csv of nas-latency calibrate for the calibration figure (repeatable)")
    _add_reference_options(figures, "default for network runs: all whose ops the table has")
    figures.add_argument("--measured", action="store_true", help="the front on measured latency where known")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "nas-results") -> int:
    return run_main(lambda a: _main(a, prog), argv, prog)


def _main(argv: Sequence[str] | None, prog: str) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.command is None:
        raise missing_command(parser, prog)
    set_command_name(f"{prog} {args.command}")
    if args.command in ("show", "plot", "figures", "notebook") and args.run is None:
        from mobilenas.results.load import DEFAULT_RUN_ROOTS, latest_run

        newest = latest_run(None)
        if newest is None:
            raise UsageError(f"give RUN: there is no run under {' or '.join(r + '/' for r in DEFAULT_RUN_ROOTS)} here")
        args.run = str(newest)
        print(f"no RUN given: the newest run, {newest}", file=sys.stderr)
    handler = {
        "show": _show, "plot": _plot, "compare": _compare, "references": _references, "measure": _measure,
        "calibration": _calibration, "figures": _figures, "notebook": _notebook,
    }[args.command]
    return int(handler(args) or 0)


# --------------------------------------------------------------------------- helpers


def _latency(args: argparse.Namespace, runs: Sequence[Any]) -> str:
    """``measured`` with --measured, else ``table``; --measured on tabular runs only is refused (it
    would change nothing: their latencies are the benchmark's measurements)."""
    if not getattr(args, "measured", False):
        return "table"
    if runs and all(getattr(run, "problem", "") == "tabular" for run in runs):
        refuse_ineffective(["measured"], f"on {'a tabular run' if len(runs) == 1 else 'tabular runs'} (latencies are the benchmark's measurements)")
    return "measured"


def _table(rows: list[list[str]], right: Sequence[bool]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.rjust(width) if align else cell.ljust(width) for cell, width, align in zip(row, widths, right, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _short(text: Any, limit: int = 90) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reference_frame(run: Any, args: argparse.Namespace, *, default_all: bool) -> Any:
    """Reference points for plots: the named ones, or by default all whose ops the table has."""
    from mobilenas.results.references import (
        DEFAULT_REFERENCES,
        parse_accuracies,
        parse_names,
        reference_points,
    )
    from mobilenas.results.search_run import SearchResults

    accuracies = parse_accuracies(args.reference_accuracy)
    explicit = args.references is not None
    names = parse_names(args.references) if explicit else (DEFAULT_REFERENCES if default_all else ())
    names = tuple(dict.fromkeys([*names, *accuracies]))
    if not names:
        return None
    tabular = isinstance(run, SearchResults) and run.problem != "network"
    if tabular:
        given = [flag for flag, value in (("--references", explicit), ("--reference-accuracy", bool(accuracies)),
                                          ("--latency-table", args.latency_table is not None), ("--measure-missing", bool(args.measure_missing))) if value]
        if given:  # they would do nothing (said for each, as --measured is)
            raise UsageError(f"run {run.path} is a tabular search ({run.space_name}): reference networks cannot be placed on its benchmark's axis; drop {' and '.join(given)}")
        return None
    try:
        frame = reference_points(run, names, accuracies=accuracies, table=args.latency_table, measure_missing=args.measure_missing)
    except FileNotFoundError as error:  # the run's table is not on this machine (a run copied from another)
        if explicit or accuracies:
            raise UsageError(f"{error}, or leave out --references and --reference-accuracy") from None
        print(f"note: reference networks not drawn: {error}", file=sys.stderr)
        return None
    if not explicit:
        # Unasked-for references (the defaults; not those given an accuracy) whose ops the table
        # lacks are noted, not drawn.
        unasked = frame[frame["latency_ms"].isna() & ~frame["name"].isin(list(accuracies))]
        if len(unasked):
            print(f"note: {counted(len(unasked), 'reference network')} not placed ({', '.join(unasked['name'])}): the latency table lacks some of their ops; add --measure-missing to measure them", file=sys.stderr)
        frame = frame.drop(index=unasked.index)
    return frame


# --------------------------------------------------------------------------- show


def _show(args: argparse.Namespace) -> int:
    from mobilenas.results.fronts import pareto_front, run_summary
    from mobilenas.results.load import load_run
    from mobilenas.results.netadapt_run import NetAdaptResults

    run = load_run(args.run)
    latency = _latency(args, [run])
    summary = run_summary(run, args.reference_point, latency)
    front = pareto_front(run, latency)
    front_columns = ["number", "source", "accuracy", "latency_ms", "measured_latency_ms", "front_latency_ms", "latency_source", "reward", "architecture"]
    if args.json:
        from mobilenas.runs import RunDir

        holder = RunDir(run.path).holder()  # the process working on the run now, if any
        payload: dict[str, Any] = {"summary": summary, "pareto": front[[c for c in front_columns if c in front.columns]].to_dict("records"), "running_pid": holder if holder and holder > 0 else None}
        if isinstance(run, NetAdaptResults):
            payload["iterations"] = run.iterations.drop(columns=["run"]).to_dict("records")
            payload["refined"] = run.refined
        print_json(payload)
        return 0
    if isinstance(run, NetAdaptResults):
        _print_netadapt(run, summary, front, args)
    else:
        _print_search(run, summary, front, args, latency)
    return 0


def _hypervolume_line(summary: dict[str, Any]) -> str:
    point = summary["reference_point"]
    if summary["front_size"] == 0:
        return "no front (no successful trial), so no hypervolume"
    return (
        f"{summary['front_size']} on the front; hypervolume {summary['hypervolume']:.4g} (accuracy x ms) = "
        f"{summary['hypervolume_normalised']:.3f} of the box to accuracy {point['accuracy']:g}, {format_ms(point['latency_ms'])}"
    )


def _print_search(run: Any, summary: dict[str, Any], front: Any, args: argparse.Namespace, latency: str) -> None:
    print(f"run {run.path}")
    print(f"  search          {run.problem} problem, space {run.space_identity}, strategy {run.strategy} (seed {run.seed})")
    print(f"  reward          {summary['reward']}, target {format_ms(run.target_latency_ms)}")
    samples = summary.get("samples")
    asked = f" of --samples {samples}" if samples else ""
    stopped = stopped_early_words(summary.get("stopped_early", 0))
    if run.results_unread:
        print(f"  trials          none readable{asked}")
    else:
        print(f"  trials          {summary['trained']} {run.evaluated_word} ({stopped}{summary['failed']} failed){asked}, {summary['duplicates']} duplicates, {summary['rejected']} rejected by the latency filter")
    if summary.get("stopped"):
        print(f"  stopped early   {summary['stopped']}")
    elif samples and summary["trained"] < samples and not run.results_unread:  # an unreadable run is said below
        print(f"  not finished    {_unfinished(run.path, 'nas-search --resume', summary.get('time_limit_s'))}")
    if run.journal_unread:  # the not-finished line names a refusal itself
        print(f"  journal         {_journal_unread(run, refusal=summary['finished'])}")
    if run.results_unread:  # not an empty search: its results are there, but cannot be read
        print(f"  unreadable      {run.results_unread}: no trial can be read from {run.path}")
    if summary["best_number"] is None and run.results_unread and isinstance(run.best, dict):
        from mobilenas.results.common import number_or_nan

        best = run.best
        print(f"  best            best.json names trial #{best.get('number', '?')}: reward {_number(number_or_nan(best.get('reward')))}, accuracy {_number(number_or_nan(best.get('accuracy')))}, "
              f"latency {format_ms(number_or_nan(best.get('latency_ms')))} (the trials behind it are unreadable)")
    elif summary["best_number"] is None:
        print("  best            (no successful trial yet)")
    else:
        measured = f" (measured {format_ms(summary['best_measured_latency_ms'])})" if not math.isnan(summary["best_measured_latency_ms"]) and run.problem == "network" else ""
        final = f", {run.final_column} {summary['best_final_accuracy']:.4f}" if run.final_column and not math.isnan(summary["best_final_accuracy"]) else ""
        print(f"  best            reward {summary['best_reward']:.4f}: accuracy {summary['best_accuracy']:.4f}{final}, latency {format_ms(summary['best_latency_ms'])}{measured}; trial #{summary['best_number']}, found after {counted(summary['trials_to_best'], 'trial')}")
        print(f"                  {_short(summary['best_architecture'], 120)}")
    feasible = summary["best_feasible_accuracy"]
    final = f" ({run.final_column} {summary['best_feasible_final_accuracy']:.4f})" if run.final_column and not math.isnan(summary["best_feasible_final_accuracy"]) else ""
    where = f", trial #{summary['best_feasible_number']} at {format_ms(summary['best_feasible_latency_ms'])}" if summary.get("best_feasible_number") is not None else ""
    if math.isnan(feasible):  # as nas-search says it ('best accuracy -' read as a missing value)
        nothing = "nothing evaluated is" if summary["best_number"] is not None else "no successful trial, so nothing is"
        print(f"  within target   {nothing} within the {run.target_latency_ms:g} ms target")
    else:
        print(f"  within target   best accuracy {_number(feasible)}{final}{where}")
    print(f"  front           {_hypervolume_line(summary)}")
    print()
    axis = "measured end to end where known" if latency == "measured" else ("the benchmark" if run.problem == "tabular" else "the lookup table")
    print(f"Pareto front (accuracy vs latency by {axis}), fastest first:")
    if front.empty:
        print("  (no successful trial)")
        return
    network = run.problem == "network"
    rows = [["#", "accuracy", "latency", *(["measured"] if network else []), "reward", "architecture"]]
    for row in front.head(args.limit).itertuples():
        measured_cell = [format_ms(row.measured_latency_ms)] if network else []
        rows.append([str(row.number), _number(row.accuracy), format_ms(row.latency_ms), *measured_cell, _number(row.reward), _short(row.architecture)])
    for line in _table(rows, [True] * (len(rows[0]) - 1) + [False]):
        print("  " + line)
    if len(front) > args.limit:
        print(f"  ... {len(front) - args.limit} more (--limit N, or --json)")
    unmeasured = [str(n) for n in front.loc[front["measured_latency_ms"].isna(), "number"]] if network and latency == "measured" else []
    if unmeasured:  # placed by its table latency: a measurement may move it off the front, or others onto it
        print(f"  {'#' + ', #'.join(unmeasured)} on this front {'is' if len(unmeasured) == 1 else 'are'} not measured yet (latency by the table): "
              f"nas-results measure {shlex.quote(str(run.path))} --trials {','.join(unmeasured)}")


def _print_netadapt(run: Any, summary: dict[str, Any], front: Any, args: argparse.Namespace) -> None:
    print(f"run {run.path}")
    if run.finished:
        state = ", finished"
    elif run.extended:
        state = " (extended; refined.json is an earlier iteration's)"
    elif run.refined_unreadable:
        state = " (refined.json unreadable)"
    else:
        state = " (no refined.json yet)"
    print(f"  netadapt        from {run.source}; selection {run.selection}; {counted(summary['iterations'], 'iteration')}{state}")
    begun = summary["unfinished_iteration"]
    left = (f" (iteration {begun}: {summary['unfinished_proposals_done']} of its {counted(summary['unfinished_proposals_planned'], 'proposal')} done, kept)"
            if begun is not None else "")
    if summary.get("unfinished_training"):  # killed during a long training: what of it is kept
        left += (f" ({summary['unfinished_training']}: {summary['unfinished_training_epochs_done']} of its"
                 f" {counted(summary['unfinished_training_epochs'], 'epoch')} done, kept)")
    if run.refined_unreadable and begun is None:
        print(f"  unreadable      refined.json: netadapt refine --resume {shlex.quote(str(run.path))} writes it again (a finished run's from its event log)")
    elif not run.finished:
        print(f"  not finished    {_unfinished(run.path, 'netadapt refine --resume')}{left}")
    elif summary.get("meets_budget") is False:
        limit = run.manifest.get("settings", {}).get("max_iterations")
        time_limit_s = summary["time_limit_s"]
        if time_limit_s is not None:
            why = f"stopped at its time limit ({format_time_limit(time_limit_s)}); netadapt refine --resume {shlex.quote(str(run.path))} goes on{left}"
        elif isinstance(limit, int) and summary["iterations"] >= limit:
            why = (f"stopped by --max-iterations {limit}; netadapt refine --resume {shlex.quote(str(run.path))} --max-iterations N "
                   f"(N above {limit}) goes on")
        else:
            why = "the run ended before reaching the budget"
        print(f"  above budget    ends at {format_ms(summary['best_latency_ms'])} by the table: {why}")
    print(f"  budget          {format_ms(run.target_latency_ms)} by the table (start {format_ms(run.start_latency_ms)})")
    frame = run.iterations
    if len(frame):
        start = frame.iloc[0]
        start_test = (run.refined or {}).get("start", {}).get("test_accuracy")
        test = f", test accuracy {_number(start_test)}" if start_test is not None else ""
        print(f"  start           accuracy {_number(start['accuracy'])}{test}, latency {format_ms(start['latency_ms'])} (measured {format_ms(start['measured_latency_ms'])})")
    if run.refined is not None:
        refined = run.refined
        test = f", test accuracy {_number(refined.get('test_accuracy'))}" if refined.get("test_accuracy") is not None else ""
        print(f"  refined         accuracy {_number(refined.get('accuracy'))}{after_final(refined)}{test}; latency {format_ms(refined.get('latency_ms'))} (measured {format_ms(refined.get('measured_latency_ms'))})")
        print(f"                  {_short(refined.get('notation'), 120)}")
        side = refined.get("side_by_side") or {}
        if side.get("ratio"):
            print(f"  measured        refined / start = {side['ratio']:.2f} ({format_ms(side['refined_ms'])} / {format_ms(side['start_ms'])}, timed side by side at the end)")
    print(f"  front           {_hypervolume_line(summary)}")
    print()
    on_front = set(zip(front["source"], front["number"], strict=True)) if len(front) else set()
    print("iterations (* = on the accuracy/latency front):")
    rows = [["iter", "pruned group", "width", "target", "latency", "measured", "acc pruned", "acc tuned", ""]]
    for row in frame.itertuples():
        group = row.chosen_group if isinstance(row.chosen_group, str) else "(start)"
        width = f"{int(row.previous_width)}->{int(row.width)}" if isinstance(row.chosen_group, str) else ""
        rows.append([
            str(row.iteration), group, width, format_ms(row.target_latency_ms), format_ms(row.latency_ms), format_ms(row.measured_latency_ms),
            _number(row.accuracy_before_finetune), _number(row.accuracy), "*" if ("iteration", row.iteration) in on_front else "",
        ])
    refined = run.refined or {}
    final = final_training(refined.get("final"), refined.get("final_epochs"))
    if final:  # the network the run ends with: usually the front's only point, as its training is far longer
        rows.append([
            "final", final.removeprefix("the "), "", "", format_ms(refined.get("latency_ms")), format_ms(refined.get("measured_latency_ms")),
            "", _number(refined.get("accuracy")), "*" if any(source == "refined" for source, _ in on_front) else "",
        ])
    for line in _table(rows, [True, False, True, True, True, True, True, True, False]):
        print("  " + line)


# --------------------------------------------------------------------------- plot


def _plot(args: argparse.Namespace) -> int:
    from mobilenas.results.load import load_run
    from mobilenas.results.plots import plot_front, save_figure

    run = load_run(args.run)
    _refuse_unreadable(run)
    out = Path(args.out) if args.out else run.path / "front.png"
    _check_png(out, "front.png")
    references = _reference_frame(run, args, default_all=True)
    figure = plot_front(run, latency=_latency(args, [run]), references=references, title=args.title, log_latency=args.log_latency)
    save_figure(figure, out)
    print(f"wrote {out}")
    return 0


def _refuse_unreadable(run: Any) -> None:
    """A run whose results cannot be read is not drawn as an empty search."""
    unread = getattr(run, "results_unread", None)
    if unread:
        raise UsageError(f"run {run.path}: {unread}, so there is no trial to draw; nas-results show {shlex.quote(str(run.path))} says what is left")


def _check_png(path: Path, name: str) -> None:
    """--out ``path`` is a PNG file's name in a folder that can be written (``name``: an example of one)."""
    if path.suffix.lower() != ".png":
        raise UsageError(f"--out {path}: figures are PNG files; give a name ending in .png")
    if path.is_dir():  # found before the work, not when the figure is written
        raise UsageError(f"--out {path} is a folder; give a file name, like {path / name}")
    if not path.parent.is_dir():  # a typo in a folder's name is not a tree of folders to make
        what = "is a file, not a folder" if path.parent.exists() else "does not exist"
        raise UsageError(f"--out {path}: the folder {path.parent} {what}; make it first, or give a file in an existing folder")
    check_writable_folder(path.parent, f"--out {path}")


# --------------------------------------------------------------------------- compare


def _unfinished(path: Path, resume: str, time_limit_s: float | None = None) -> str:
    """Whether a run that is not finished is running now (its process holds it), stopped at its
    ``time_limit_s``, or was interrupted."""
    from mobilenas.runs import RunDir

    holder = RunDir(path).holder()
    if holder is not None:
        by = f" (process {holder})" if holder > 0 else ""
        return f"running now{by}; show it again for the latest"
    refusal = _resume_refusal(path, resume)
    if refusal is not None:  # it would only be sent to a resume that says no
        return f"{resume} refuses it as it is: {refusal}"
    how = "interrupted:" if time_limit_s is None else f"stopped at its time limit ({format_time_limit(time_limit_s)}):"
    return f"{how} {resume} {shlex.quote(str(path))} goes on"


def _resume_refusal(path: Path, resume: str) -> str | None:
    """Why ``resume`` would refuse the run at ``path`` for a journal cut short from outside (or
    gone), or None."""
    from mobilenas.results.fronts import resume_refusal

    return resume_refusal(path, "search" if resume.startswith("nas-search") else "netadapt")


def _journal_unread(run: Any, *, refusal: bool) -> str:
    """What a search run read from trials.csv for want of a journal says (with ``refusal``, and why
    a resume refuses it: its checkpoint reflects more events than the journal holds)."""
    said = f"{run.journal_unread}: the figures come from {run.path / 'trials.csv'}"
    why = _resume_refusal(run.path, "nas-search --resume") if refusal else None
    return said + (f"; nas-search --resume refuses it as it is: {why}" if why else "")


def _compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from mobilenas.results.fronts import (
        compare_runs,
        comparison_notes,
        default_reference_point,
        group_runs,
    )
    from mobilenas.results.load import load_runs
    from mobilenas.results.plots import plot_comparison, save_figure
    from mobilenas.results.search_run import SearchResults

    out = Path(args.out)
    _check_png(out, "fronts.png")
    if args.csv:  # checked, as --out is, before any work
        if Path(args.csv).is_dir():
            raise UsageError(f"--csv {args.csv} is a folder; give a file name, like {Path(args.csv) / 'compare.csv'}")
        check_writable_folder(Path(args.csv).parent, f"--csv {args.csv}")
    if args.references is None and not args.reference_accuracy:  # the table only places the references
        refuse_ineffective([key for key in ("latency_table", "measure_missing") if getattr(args, key)],
                           "without reference networks (the runs' points carry their latencies)", alternative=", or add --references NAMES")
    runs = load_runs(args.runs)
    latency = _latency(args, runs)
    reference = args.reference_point or default_reference_point(runs)
    # runs of other targets, rewards or problems are not pooled by default: their figures are on other scales
    groups = group_runs(runs, compare_runs(runs, reference, latency), None if args.by is None else [c.strip() for c in args.by.split(",") if c.strip()])
    if groups.note:
        print(f"note: {groups.note}", file=sys.stderr)
    table, by = groups.table, list(groups.by)
    grouped = groups.summary()
    for note in comparison_notes(runs, table, by, args.reference_point):
        print(f"note: {note}", file=sys.stderr)
    references = None
    if args.references is not None or args.reference_accuracy:
        network = [r for r in runs if not isinstance(r, SearchResults) or r.problem == "network"]
        if not network:
            raise UsageError("reference networks need a network run (with a latency table); every run given is tabular")
        references = _reference_frame(network[0], args, default_all=False)
    save_figure(plot_comparison(runs, latency=latency, references=references, groups=groups.names()), out)
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)  # as --out's folder is made
        table.to_csv(args.csv, index=False)
    if args.json:
        print_json({"runs": table.to_dict("records"), "groups": grouped.to_dict("records"), "by": by, "reference_point": reference.to_dict(), "figure": str(out)})
        return 0
    print(f"{len(runs)} run{'' if len(runs) == 1 else 's'}; hypervolume against accuracy {reference.accuracy:g}, {format_ms(reference.latency_ms)}; latency by {'measurement where known' if latency == 'measured' else 'the table'}")
    # Tabular runs also have the benchmark's final column (test_acc_200ep) of the best architecture
    # within the target: the figure a comparison of strategies on a benchmark is about.
    finals = sorted({r.final_column for r in runs if isinstance(r, SearchResults) and r.final_column})
    with_final = bool(finals) and bool(pd.to_numeric(table["best_feasible_final_accuracy"], errors="coerce").notna().any())
    final_header = [f"{'/'.join(finals)} in target"] if with_final else []
    # regret: the benchmark's oracle (its best final accuracy within the target) less the run's
    with_regret = "regret_pp" in table.columns and bool(table["regret_pp"].notna().any())
    regret_header = ["regret (pp)"] if with_regret else []
    if with_regret:
        oracles = sorted({(float(t), float(o)) for t, o in zip(table["target_latency_ms"], table["oracle_final_accuracy"], strict=True) if o is not None and o == o})
        print(f"oracle ({'/'.join(finals)}, the benchmark's best within the target): " + ", ".join(f"{o:.4f} within {format_ms(t)}" for t, o in oracles))
    rows = [["run", "strategy", "seed", "target", "best reward", "best acc", "best latency", "acc in target", *final_header, *regret_header, "front", "hypervolume", "HV norm"]]

    def best_latency(row: Any) -> float:  # on the axis the heading names: measured where known, with --measured
        measured = getattr(row, "best_measured_latency_ms", math.nan)
        return float(measured) if latency == "measured" and pd.notna(measured) else float(row.best_latency_ms)

    for row in table.itertuples():
        rows.append([
            _short(row.run, 40), str(row.strategy), "-" if row.seed is None or (isinstance(row.seed, float) and math.isnan(row.seed)) else str(int(row.seed)),
            format_ms(row.target_latency_ms), _number(row.best_reward), _number(row.best_accuracy), format_ms(best_latency(row)),
            _number(row.best_feasible_accuracy), *([_number(row.best_feasible_final_accuracy)] if with_final else []),
            *([_number(getattr(row, "regret_pp", math.nan), 2)] if with_regret else []),
            str(row.front_size), "-" if math.isnan(row.hypervolume) else f"{row.hypervolume:.4g}", _number(row.hypervolume_normalised, 3),
        ])
    for line in _table(rows, [False, False] + [True] * (len(rows[0]) - 2)):
        print("  " + line)
    if (grouped["runs"] > 1).any():
        print()
        legend = f" ({groups.problem_legend()})" if groups.problem_legend() else ""
        shown = ["problem" if c == "problem_number" else c for c in by]
        print(f"mean ± std per {', '.join(shown)}{legend}:")
        metrics = ["best_reward", "best_accuracy", "best_feasible_accuracy", *(["best_feasible_final_accuracy"] if with_final else []),
                   *(["regret_pp"] if with_regret else []), "hypervolume_normalised"]
        rows = [[*shown, "runs", "best reward", "best acc", "acc in target", *final_header, *regret_header, "HV norm"]]
        fewer = False
        for record in grouped.to_dict("records"):
            def pm(metric: str, record: dict[str, Any] = record) -> str:
                nonlocal fewer
                mean, std = record.get(f"{metric}_mean"), record.get(f"{metric}_std")
                digits = 2 if metric == "regret_pp" else 4
                text = f"{_number(mean, digits)} ± {_number(std, digits)}" if std is not None and not math.isnan(std) else _number(mean, digits)
                over = record.get(f"{metric}_runs")
                if over is not None and 0 < over < record["runs"]:  # a mean over fewer runs than the group has: said in its cell
                    fewer = True
                    text += f" ({int(over)} of {record['runs']})"
                return text
            rows.append([*(str(record[c]) for c in by), str(record["runs"]), *(pm(m) for m in metrics)])
        for line in _table(rows, [False] * len(by) + [True] * (1 + len(metrics))):
            print("  " + line)
        if fewer:
            print("  (k of n): a mean over the k runs of the group that have the figure (the others have none: no successful trial, or none within the target)")
    print()
    print(f"wrote {out}" + (f" and {args.csv}" if args.csv else ""))
    return 0


# --------------------------------------------------------------------------- references


def _references(args: argparse.Namespace) -> int:
    from mobilenas.results.load import load_run
    from mobilenas.results.references import (
        parse_accuracies,
        parse_names,
        reference_points,
        train_references,
    )

    if not args.train:  # both are about the training
        refuse_ineffective([key for key in ("retrain", "quiet") if getattr(args, key)], "without --train", alternative=", or add --train")
    run = load_run(args.run)
    accuracies = parse_accuracies(args.reference_accuracy)
    names = tuple(dict.fromkeys([*parse_names(args.references), *accuracies]))
    trained = None
    if args.train:
        trained = train_references(run, names, retrain=args.retrain, progress=not args.quiet and not args.json)
    frame = reference_points(run, names, accuracies=accuracies, table=args.latency_table, measure_missing=args.measure_missing)
    if args.json:
        payload: dict[str, Any] = {"references": frame.to_dict("records")}
        if trained is not None:
            payload["training"] = trained.to_dict("records")
        print_json(payload)
        return 0
    print(f"reference networks on the latency axis of {run.path} ({run.num_classes} classes):")
    rows = [["name", "latency", "accuracy", "source", "params", "MACs", "note"]]
    for row in frame.itertuples():
        note = f"{row.missing_ops} ops not in the table (--measure-missing)" if row.missing_ops else ""
        rows.append([row.name, format_ms(row.latency_ms), _number(row.accuracy), row.accuracy_source or "-", f"{row.params / 1e6:.2f}M", f"{row.macs / 1e6:.1f}M", note])
    for line in _table(rows, [False, True, True, False, True, True, False]):
        print("  " + line)
    if trained is not None:
        fresh = trained[~trained["cached"]]
        print()
        print(f"proxy-trained {counted(len(fresh), 'reference')} now, {len(trained) - len(fresh)} from {run.path / 'references.json'}")
        for row in fresh.itertuples():
            if row.status != "ok":
                print(f"  {row.name}: training failed: {getattr(row, 'error', '')}")
    return 0


# --------------------------------------------------------------------------- measure


def _measure(args: argparse.Namespace) -> int:
    from mobilenas.results.load import load_run
    from mobilenas.results.measured import measure_candidates

    run = load_run(args.run)
    numbers: list[int] | None
    if args.trials == "front":
        numbers = None
    elif args.trials == "all":
        numbers = [int(n) for n in run.candidates()["number"]]
    else:
        try:
            numbers = [int(part) for part in args.trials.split(",") if part.strip()]
        except ValueError:
            raise UsageError(f"--trials takes front, all, or trial numbers like 3,17,40; got {args.trials!r}") from None
        if not numbers:
            raise UsageError(f"--trials names no trial ({args.trials!r}); give front, all, or trial numbers like 3,17,40")
    from mobilenas.latency.measure import INTERLEAVED_GROUP

    set_interrupt_note(f"architectures are kept as each interleaved group of up to {INTERLEAVED_GROUP} is timed, in {run.path / 'measured.jsonl'}; the same command measures the rest")
    rows = measure_candidates(run, numbers, rounds=args.rounds, table=args.latency_table, progress=not args.quiet and not args.json, remeasure=args.remeasure)
    if args.json:
        print_json({"measured": rows.to_dict("records"), "cache": str(run.path / "measured.jsonl")})
        return 0
    if rows.empty:
        if run.candidates().empty:
            print("nothing to measure: the run has no successful trial yet")
        else:
            print("nothing to measure: every chosen architecture was measured before (--remeasure to measure again)")
        return 0
    table = [["#", "predicted", "measured", "error"]]
    for row in rows.itertuples():
        table.append([str(row.number), format_ms(row.predicted_ms), format_ms(row.latency_ms), f"{100 * (row.predicted_ms - row.latency_ms) / row.latency_ms:+.1f}%"])
    for line in _table(table, [True, True, True, True]):
        print("  " + line)
    print(f"cached in {run.path / 'measured.jsonl'}; use --measured in show, plot and compare")
    return 0


# --------------------------------------------------------------------------- calibration


def _calibration(args: argparse.Namespace) -> int:
    from mobilenas.results.calibration import (
        calibration_points,
        calibration_summary,
        describe,
        table_point_counts,
    )
    from mobilenas.results.load import load_run
    from mobilenas.results.plots import plot_calibration, save_figure

    if args.run is None and not args.csv:
        raise UsageError("give a run directory, or --csv calibration.csv (or both)")
    run = load_run(args.run) if args.run else None
    if run is not None and getattr(run, "problem", "") == "tabular" and not args.csv:
        raise UsageError(f"run {run.path} is a tabular search: its latencies are the benchmark's measurements, with no lookup table to "
                         "calibrate; give a network run, or --csv calibration.csv")
    if args.out:
        _check_png(Path(args.out), "calibration.png")
    points = calibration_points(run, csv=args.csv, table=args.latency_table)
    summary = calibration_summary(points) if len(points) else None
    if args.out:
        save_figure(plot_calibration(points), args.out)
    if args.json:
        print_json({"summary": [] if summary is None else summary.to_dict("records"), "points": points.to_dict("records"), "figure": args.out})
        return 0
    if summary is None:
        print("no architecture has both a predicted and a measured latency (run nas-results measure RUN, or nas-latency calibrate and pass --csv)")
        return 0
    for line in describe(summary):
        print(line)
    counts = table_point_counts(run, args.latency_table) if run is not None else None
    if counts is not None and counts[0] != counts[1]:  # nas-latency info counts the measurements
        print(f"(the table's {counts[0]} end-to-end points are measurements of {counts[1]} networks: a network measured more than once counts once here, at its median)")
    if args.out:
        print(f"wrote {args.out}")
    return 0


# --------------------------------------------------------------------------- figures


def _figures(args: argparse.Namespace) -> int:
    from mobilenas.results.calibration import calibration_points
    from mobilenas.results.load import load_run
    from mobilenas.results.netadapt_run import NetAdaptResults
    from mobilenas.results.plots import (
        plot_calibration,
        plot_convergence,
        plot_front,
        plot_netadapt_progress,
        plot_reward_landscape,
        plot_width_history,
        plot_widths,
        save_figure,
    )

    run = load_run(args.run)
    _refuse_unreadable(run)
    out = Path(args.out) if args.out else run.path / "figures"
    check_writable_folder(out, f"--out {out}")
    points = calibration_points(run, csv=args.calibration_csv, table=args.latency_table)  # a bad --calibration-csv: before any figure
    written = [save_figure(plot_front(run, latency=_latency(args, [run]), references=_reference_frame(run, args, default_all=True)), out / "front.png")]
    if isinstance(run, NetAdaptResults):
        written.append(save_figure(plot_netadapt_progress(run), out / "progress.png"))
        written.append(save_figure(plot_widths(run), out / "widths.png"))
        written.append(save_figure(plot_width_history(run), out / "width_history.png"))
    else:
        written.append(save_figure(plot_reward_landscape(run), out / "reward_landscape.png"))
        written.append(save_figure(plot_convergence(run), out / "convergence.png"))
    if len(points):
        written.append(save_figure(plot_calibration(points), out / "calibration.png"))
    for path in written:
        print(f"wrote {path}")
    return 0


def _notebook(args: argparse.Namespace) -> int:
    import importlib.util

    from mobilenas.results import notebook_for_run
    from mobilenas.results.load import load_run
    from mobilenas.results.netadapt_run import NetAdaptResults
    from mobilenas.runs import atomic_write_json

    run = load_run(args.run)
    name = "netadapt" if isinstance(run, NetAdaptResults) else "pareto"
    target = Path(args.out).expanduser() if args.out else run.path / f"{name}.ipynb"
    if target.is_dir():  # before the name's check, which suggested a file beside the folder
        raise UsageError(f"--out {args.out} is a folder; give the notebook's file name (like {target / (name + '.ipynb')})")
    if target.suffix != ".ipynb":
        raise UsageError(f"--out {args.out}: a notebook's name ends in .ipynb (like {target.with_suffix('.ipynb')})")
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists (perhaps with your edits): open it with jupyter notebook {shlex.quote(str(target))}, or add --force to write it again")
    check_writable_folder(target.parent, f"--out {target}")
    inside = target.parent.resolve() == run.path.resolve()
    atomic_write_json(target, notebook_for_run(name, run.path, inside=inside))
    print(f"wrote {target} (reads {'the run folder it is in, ' if inside else ''}{run.path.resolve()})")
    print(f"open it: jupyter notebook {shlex.quote(str(target))}")
    if importlib.util.find_spec("notebook") is None and importlib.util.find_spec("jupyterlab") is None:
        # the jupyter command alone (jupyter_core, which other packages bring) opens no notebook
        missing = "neither notebook nor jupyterlab is installed here" + (
            " (the jupyter command is, from jupyter_core, but it cannot open a notebook without one)" if importlib.util.find_spec("jupyter_core") else "")
        if importlib.util.find_spec("nbconvert") is None:
            missing += ", nor nbconvert (to run it headless)"
        print(f'{missing}: pip install -e ".[notebooks]" (from the mobilenas checkout) installs them', file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
