"""``nas-latency`` (= ``mobilenas latency``): measure, build tables, predict, calibrate."""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mobilenas.cliutil import (
    ArgumentParser,
    add_json_flag,
    add_version_flag,
    check_writable_folder,
    duration_ms,
    latency_threads_note,
    missing_command,
    nonnegative_int,
    positive_int,
    print_json,
    refuse_ineffective,
    run_main,
    seed_number,
    set_command_name,
    set_interrupt_note,
    set_memory_hint,
    set_resume_hint,
)
from mobilenas.errors import UsageError
from mobilenas.latency.method import METHODS, Method
from mobilenas.runs import run_latency_table
from mobilenas.units import counted, format_ms

DEFAULT_INPUT_SIZE = 224
# More timed runs than this add nothing to a median (30 give it within a few percent) and take hours
# at 224 px, with no sign of progress: a slip (1e20), refused at once.
MAX_REPEATS = 10_000


def repeats_count(text: str) -> int:
    """argparse type: timed runs, a whole number from 1 to :data:`MAX_REPEATS`."""
    return _bounded_count(text, 1)


def warmup_count(text: str) -> int:
    """argparse type: untimed runs, a whole number from 0 to :data:`MAX_REPEATS`."""
    return _bounded_count(text, 0)


def _bounded_count(text: str, low: int) -> int:
    try:
        value: int | None = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= MAX_REPEATS:
        raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {MAX_REPEATS}, got {text!r}")
    return value

EXAMPLES = """\
examples:
  nas-latency measure mobilenetv3-large              # end to end: ONNX Runtime, 1 thread, 224x224
  nas-latency measure best.json --threads 4 --json   # {"latency_ms": ..., "spread": {...}, ...}
  nas-latency build --space mobilenetv3              # every op of the space; resumable
  nas-latency predict mobilenetv3-large --space mobilenetv3 --measure-missing --breakdown
  nas-latency predict arch.json --table ~/.cache/mobilenas/tables/mobilenetv3-....jsonl
  nas-latency predict results/runs/RUN/best.json     # with the table that search used
  nas-latency calibrate --space mobilenetv3 --samples 50   # MAPE, ±5%/±10%, Spearman, RMSE
  nas-latency fastest --space mobilenetv3 --target-latency 15ms
  nas-latency info TABLE.jsonl
  nas-latency info                                   # every table kept in $MOBILENAS_HOME/tables

custom device: --command runs your benchmark on the exported model and reads the ms it prints:
  nas-latency measure mobilenetv2 \\
      --command "python -m mobilenas.latency.ort_command {model} --threads {threads}"

Tables live in $MOBILENAS_HOME/tables (default ~/.cache/mobilenas/tables) unless --table is given;
a table measured on another device is refused unless --force-device is given (info describes any).
"""


def _add_backend(parser: argparse.ArgumentParser, *, timing: bool = True) -> None:
    group = parser.add_argument_group("device and runtime")
    group.add_argument("--backend", choices=("onnxruntime", "torch", "command"), default="onnxruntime", help="runtime that times models (default: onnxruntime, CPU execution provider)")
    group.add_argument("--threads", type=positive_int, default=1, help="intra-op threads (default: 1, like MnasNet's single big core)")
    group.add_argument(
        "--command", default=None, metavar="TEMPLATE",
        help="time models with this command instead; {model} is the exported .onnx file (also {threads}, {batch}, {channels}, {height}, {width})."
        " It must print its latency with a unit or key: 'latency_ms: 12.3', a number followed by ms or us ('median 12.3 ms', '12300 us'),"
        " or a last line of JSON with latency_ms; a bare number, or seconds, is refused (no unit, or a total time)",
    )
    group.add_argument("--device-name", default=None, metavar="NAME", help="name of the device a --command measures on (recorded in tables)")
    if isinstance(parser, ArgumentParser):
        parser.unknown_option_hints["--device"] = (
            "latency is measured on this machine's CPU by --backend onnxruntime or torch, or anywhere by --backend command --command TEMPLATE;"
            " --device-name names the device such a command measures on")
    if timing:
        group.add_argument("--repeats", type=repeats_count, default=None, help=f"timed runs per model, 1 to {MAX_REPEATS} (default: 30)")
        group.add_argument("--warmup", type=warmup_count, default=None, help=f"untimed runs first, 0 to {MAX_REPEATS} (default: 5)")
        group.add_argument("--timer", choices=("auto", "thread", "wall"), default="auto", help="clock: thread CPU time with 1 thread, wall clock otherwise (auto, default), or force one")


def _backend(args: argparse.Namespace) -> Any:
    from mobilenas.latency.measure import make_backend

    if args.backend == "command" and not args.command:
        raise ValueError("--backend command needs --command 'TEMPLATE' with a {model} placeholder")
    if args.command:  # the command warms up and times as it does
        refuse_ineffective([key for key, unset in (("warmup", None), ("timer", "auto")) if getattr(args, key, unset) != unset],
                           "with --command (the benchmark command warms up and times the model itself)")
    note = latency_threads_note(args.threads, "--threads", command=args.command)
    if note:
        print(note, file=sys.stderr)
    return make_backend(
        args.backend,  # with --command: the command times (make_backend refuses --backend torch with it)
        threads=args.threads,
        command=args.command,
        device_name=args.device_name,
        repeats=getattr(args, "repeats", None),
        warmup=getattr(args, "warmup", None),
        timer=getattr(args, "timer", "auto"),
    )


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description=textwrap.fill("Measure on-device latency, build latency lookup tables, predict with them, and prove they predict well.", 79),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version_flag(parser)
    commands = parser.add_subparsers(dest="command_name", metavar="COMMAND")

    def sub(name: str, help_text: str, description: str) -> ArgumentParser:
        # the raw formatter keeps the examples' layout; the description is wrapped here instead
        return commands.add_parser(name, help=help_text, description=textwrap.fill(description, 79), epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)

    measure = sub("measure", "time an architecture end to end", "Time an architecture end to end: fixed input, warm-up, median of repeated runs, spread reported.")
    measure.add_argument("arch", metavar="ARCH", help="reference name (mobilenetv3-large, mobilenetv2@0.75), architecture/best.json file, or block notation")
    measure.add_argument("--input-size", type=positive_int, default=None, help="square input resolution (default: that of the run that wrote ARCH, a best.json or refined.json, else 224)")
    measure.add_argument("--num-classes", type=positive_int, default=None, help="replace the classifier's class count")
    _add_backend(measure)
    add_json_flag(measure)

    build = sub("build", "measure every op a search space can produce into a table", "Measure every operation signature a search space can produce at the input size, once each, then fit the correction. An interrupted build resumes where it stopped.")
    _add_space(build)
    build.add_argument("--table", type=Path, default=None, metavar="PATH", help="table file (default: $MOBILENAS_HOME/tables/<space>-<hash>-<size>px-[<device name>-]<runtime>-<threads>t-<device hash>.jsonl)")
    build.add_argument("--correction-samples", type=nonnegative_int, default=None, help="architectures measured end to end to fit the correction (default: 20; below 8 it has no SE term, and commands that open the space's default table measure up to 8 first)")
    build.add_argument("--seed", type=seed_number, default=0, help="seed of the measuring order and of the correction's architectures (default: 0)")
    build.add_argument("--method", choices=METHODS, default=None, help="how entries are timed: behind a feeder layer, minus the feeder (in-context, default for runtimes in this process) or the op alone (isolated, default with --command)")
    build.add_argument("--repeats", type=repeats_count, default=None, help=f"timed runs per entry, 1 to {MAX_REPEATS} (default: {Method().repeats}; 1 with --command, whose tool repeats inside)")
    build.add_argument("--refit-correction", action="store_true", help="fit the correction on new end-to-end measurements, which replace the table's points once all are measured (until then its correction stands)")
    build.add_argument("--force-device", action="store_true", help="resume a table measured on another device anyway")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_backend(build, timing=False)
    add_json_flag(build)

    predict = sub("predict", "predict an architecture's latency from a table", "Predict latency from a lookup table: the sum of the architecture's entries, then the table's correction a*sum + b (+ se_ms per block with squeeze-and-excitation).")
    predict.add_argument("arch", metavar="ARCH", help="reference name, architecture/best.json file, or block notation")
    predict.add_argument("--table", type=Path, default=None, metavar="PATH", help="table file (or give --space for the default table of a space; for a run's best.json or refined.json: the run's table and correction)")
    predict.add_argument("--space", default=None, help=f"use the default table of this space ({_space_names()} or a space .json)")
    predict.add_argument("--input-size", type=positive_int, default=None, help="input size of the default table (with --space; default: 224)")
    predict.add_argument("--num-classes", type=positive_int, default=None, help="replace the classifier's class count")
    predict.add_argument("--measure-missing", action="store_true", help="measure ops missing from the table now (and add them to it) instead of failing")
    predict.add_argument("--breakdown", action="store_true", help="also list every op's entry")
    predict.add_argument("--force-device", action="store_true", help="use a table measured on another device anyway")
    _add_backend(predict, timing=False)
    add_json_flag(predict)

    calibrate = sub("calibrate", "check a table against end-to-end measurements", "Sample architectures from a space, measure each end to end (interleaved), compare with the table's predictions: MAPE, share within ±5% and ±10%, Spearman, RMSE. Writes calibration.csv, calibration.png and calibration.json. Architectures the correction was fitted on are never sampled.")
    _add_space(calibrate, required=False)
    calibrate.add_argument("--samples", type=positive_int, default=50, help="architectures to sample (default: 50)")
    calibrate.add_argument("--table", type=Path, default=None, metavar="PATH", help="table file (default: the space's default table, created and filled on demand)")
    calibrate.add_argument("--out", type=Path, default=None, metavar="DIR", help="output directory, new or without a calibration (default: ./calibration-<space>-<size>px, or -2, -3, ... beside an earlier one)")
    calibrate.add_argument("--seed", type=seed_number, default=1, help="seed of the sampled architectures (default: 1, not build's 0, so that they are not the networks the table's correction was fitted on)")
    calibrate.add_argument("--rounds", type=positive_int, default=10, help="interleaved rounds of end-to-end runs (default: 10)")
    calibrate.add_argument(
        "--anchors", action=argparse.BooleanOptionalAction, default=True,
        help="also measure the correction's own architectures again, interleaved, to report the machine's drift since the table was fitted "
        "and the figures with a correction refitted on them (default: on)",
    )
    calibrate.add_argument("--update-correction", action="store_true", help="afterwards, add the measurements to the table's end-to-end points and refit its correction")
    calibrate.add_argument("--force-device", action="store_true", help="use a table measured on another device anyway")
    calibrate.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_backend(calibrate, timing=False)
    add_json_flag(calibrate)

    fastest = sub("fastest", "the fastest and slowest architectures of a space by the table", "Find the fastest and the slowest architectures of a space by the table (dynamic programming over stages) and, with --target-latency, say whether the target is reachable (exit status 1 when it is not, so that a script can test it before a search) and whether it constrains anything.")
    _add_space(fastest, required=False)
    fastest.add_argument("--table", type=Path, default=None, metavar="PATH", help="table file (default: the space's default table)")
    fastest.add_argument("--target-latency", type=duration_ms, default=None, metavar="DURATION", help="a latency target such as 15ms or 0.015s (a bare number is milliseconds)")
    fastest.add_argument("--exhaustive", action="store_true", help="consider every option (measures every op the space has if the table lacks them)")
    fastest.add_argument("--force-device", action="store_true", help="use a table measured on another device anyway")
    _add_backend(fastest, timing=False)
    add_json_flag(fastest)

    info = sub(
        "info", "describe a table file, or list the tables mobilenas keeps",
        "Show a table's device, method, entry counts and correction; without TABLE, list the tables in "
        "$MOBILENAS_HOME/tables (default ~/.cache/mobilenas/tables), the newest first.",
    )
    info.add_argument("table", type=Path, nargs="?", metavar="TABLE", help="table file (.jsonl); none: list the tables mobilenas keeps")
    info.add_argument("--force-device", action="store_true", help="no effect: info describes a table of any device (and says when it is another's)")
    add_json_flag(info)
    return parser


def _add_space(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    if required:
        parser.add_argument("--space", required=True, help=f"search space: {_space_names()}, a space .json file or a search run's folder")
    else:
        parser.add_argument("--space", default=None, help=f"search space: {_space_names()}, or a space .json file (default: the one the --table was built for, if built in)")
    parser.add_argument("--input-size", type=positive_int, default=None, help="deployment input size, square (default: 224, or the --table's)")
    more = "" if required else ", or the --table's when --space is not given"
    parser.add_argument("--num-classes", type=positive_int, default=None, help=f"classes of the space's classifier (default: 1000{more})")


def main(argv: Sequence[str] | None = None, prog: str = "nas-latency") -> int:
    return run_main(lambda a: _main(a, prog), argv, prog)


def _main(argv: Sequence[str] | None, prog: str) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.command_name is None:
        raise missing_command(parser, prog)
    name = f"{prog} {args.command_name}"
    set_command_name(name)
    import torch

    # Exports and the PyTorch backend must not spread over cores another measurement is timing.
    torch.set_num_threads(getattr(args, "threads", 1))
    handler = {"measure": _measure, "build": lambda a: _build(a, prog, argv), "predict": _predict, "calibrate": _calibrate, "fastest": _fastest, "info": _info}[args.command_name]
    with warnings.catch_warnings():
        # Library warnings (a forced foreign table, an uncorrected table) as one plain line each.
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: print(f"{name}: warning: {message}", file=sys.stderr)
        return handler(args)


def _measure(args: argparse.Namespace) -> int:
    from mobilenas.latency.measure import check_fits_in_memory, measure
    from mobilenas.space.io import load_architecture, result_input_size

    arch = load_architecture(args.arch, num_classes=args.num_classes)
    backend = _backend(args)
    if args.input_size is None:  # a run's result: the size its latency is of (as predict takes the run's table)
        args.input_size = result_input_size(args.arch) or DEFAULT_INPUT_SIZE
    check_fits_in_memory(arch, args.input_size)  # before anything is allocated
    set_interrupt_note("nothing is saved (measure prints its timing once all runs are done); run it again")
    set_memory_hint("a smaller --input-size needs less")
    result = measure(arch, backend, args.input_size)
    payload = {
        "architecture": arch.to_notation(),
        "fingerprint": arch.fingerprint(),
        "input_size": args.input_size,
        "latency_ms": result.latency_ms,
        "spread": result.spread.to_dict(),
        "runs": result.runs,
        "device": result.device.to_dict(),
    }
    if args.json:
        print_json(payload)
        return 0
    spread = result.spread
    if result.runs == 1:  # --backend command: one reading, the command's own summary of its runs
        how = "as the benchmark command printed it" if result.device.timer == "command" else "a single run"
        print(f"{args.arch}: {format_ms(result.latency_ms)} ({how})")
    else:
        print(f"{args.arch}: {format_ms(result.latency_ms)} (median of {result.runs} runs; IQR {spread.iqr_ms:.3f} ms, std {spread.std_ms:.3f} ms, min {spread.min_ms:.3f} ms)")
    print(f"  {result.device.describe()}, input {'x'.join(map(str, result.device.input_shape))}, timer {result.device.timer}, {result.device.date}")
    return 0


def _space_names() -> str:
    """The built-in spaces, as help texts and errors name them."""
    from mobilenas.space.search_space import SPACES

    return ", ".join(SPACES)


def _get_space(name: str, num_classes: int = 1000) -> Any:
    """``--space NAME``: a built-in space or a space .json file (one that is not there, or a folder,
    is said to be by get_space)."""
    from mobilenas.space.search_space import get_space

    return get_space(name, num_classes=num_classes)


def _space(args: argparse.Namespace) -> Any:
    return _get_space(args.space, num_classes=args.num_classes or 1000)


def _space_and_table(args: argparse.Namespace) -> tuple[Any, Any]:
    """``--space`` and its table; without ``--space``, the built-in space the ``--table`` was built for."""
    if args.space is not None:
        space = _space(args)
        table = _open_table(args, space)
        other = table.built_for_another(space)
        if other:  # as nas-search notes it
            print(
                f"note: latency table {table.path} was built for {other}: the ops of {space.name} it lacks are measured into it,"
                " and its correction was fitted on that space's networks",
                file=sys.stderr,
            )
        return space, table
    if args.table is None:
        raise UsageError(f"give --space NAME ({_space_names()} or a space .json file), or --table PATH of a table built for one of them")
    table = _open_table(args, None)
    return _space_of_table(table, args.num_classes), table


def _space_of_table(table: Any, num_classes: int | None) -> Any:
    """The built-in space ``table`` was built for, with the class count of its head entries."""
    from mobilenas.space.search_space import SPACES, get_space

    name = table.header.space_name
    if name not in SPACES:
        what = f"space {name!r}, not a built-in one" if name else "no space it records"
        raise UsageError(f"{table.path} was built for {what}: give the space with --space (a built-in name or its .json file)")
    heads = sorted({entry.signature.num_classes for entry in table.entries() if entry.signature.op == "head"})
    preferred = num_classes or (heads[0] if len(heads) == 1 else 1000)
    # a layout fingerprint matches at the preferred count; a table made before recorded the
    # space's whole fingerprint, with the class count of one of its head entries
    for count in dict.fromkeys([preferred, *([] if num_classes else heads)]):
        space = get_space(name, num_classes=count)
        if table.built_for_another(space) is None:
            return space
    raise UsageError(f"{table.path} was built for another definition of space {name} (a .json file of that name?): give it with --space FILE")


def _space_default(name: str) -> Any:
    return _get_space(name)


def _this_command(prog: str, argv: Sequence[str] | None) -> str:
    """This command line as a shell takes it (what Ctrl-C's message says to run again)."""
    words = list(sys.argv[1:] if argv is None else argv)
    return " ".join([prog, shlex.join(words)]) if words else prog


def _build(args: argparse.Namespace, prog: str = "nas-latency", argv: Sequence[str] | None = None) -> int:
    from mobilenas.latency.build import DEFAULT_BUILD_CORRECTION_SAMPLES, build_table

    space = _space(args)
    backend = _backend(args)
    samples = DEFAULT_BUILD_CORRECTION_SAMPLES if args.correction_samples is None else args.correction_samples
    method = None
    if args.method is not None or args.repeats is not None:
        name = args.method or ("isolated" if args.command else "in-context")
        # a command's own default is one call per entry (its tool repeats inside), as a table made without --method has
        method = Method(name=name, warmup=0 if args.command else Method().warmup, repeats=args.repeats or (backend.repeats if args.command else Method().repeats))
    from mobilenas.latency.table import LookupTable, table_input_size

    if args.table is not None and args.table.is_file() and samples > 0:
        with warnings.catch_warnings():  # of another device: the build says so itself
            warnings.simplefilter("ignore", UserWarning)
            other = LookupTable.load(args.table, force=True).built_for_another(space)
        if other:  # its ops can be shared; its correction would be refitted on this space's networks
            raise UsageError(f"{args.table} was built for {other}: building space {space.name} into it would refit its correction on {space.name}'s"
                             f" networks; give another --table, or --correction-samples 0 to add {space.name}'s ops alone")
    size = args.input_size or (table_input_size(args.table) if args.table is not None else None) or DEFAULT_INPUT_SIZE
    if args.table is not None and not args.table.parent.exists():
        print(f"note: the folder {args.table.parent} does not exist; it is made for the table", file=sys.stderr)
    set_resume_hint(_this_command(prog, argv))  # the same command: a build resumes where it stopped
    kept = "the ops measured so far are kept in the table; end-to-end timings for the correction count only all together and are taken again"
    if args.refit_correction:  # the new points replace the old ones only once all are measured
        kept += ", and until then the table keeps its end-to-end points and correction"
    set_interrupt_note(kept)
    result = build_table(space, path=args.table, input_size=size, backend=backend, progress=not args.quiet, correction_samples=samples, seed=args.seed, force_device=args.force_device, method=method, refit_correction=args.refit_correction)
    correction = result.correction
    outside = result.entries - result.measured - result.shared - result.reused  # measured for networks outside this space (another space's, another class count's)
    payload = {
        "table": str(result.path),
        "entries": result.entries,
        "measured": result.measured,
        "reused": result.reused,
        "measured_by_others": result.shared,
        "outside_space": outside,
        "wall_time_s": result.wall_time_s,
        "correction": correction.to_dict(),
        "device": result.table.device.to_dict(),
    }
    if args.json:
        print_json(payload)
        return 0
    print(f"table {result.path}")
    meanwhile = f", {result.shared} by another process meanwhile" if result.shared else ""
    elsewhere = f", {outside} of networks outside this space" if outside > 0 else ""
    print(f"  {result.entries} entries ({result.measured} measured now{meanwhile}, {result.reused} already there{elsewhere}) in {result.wall_time_s:.0f} s")
    print(f"  device: {result.table.device.describe()}")
    if correction.fitted:
        print(f"  correction: latency = {correction.describe()} (fitted on {correction.points} architectures, in-sample MAPE {100 * (correction.mape or 0):.1f}%)")
    else:
        print("  correction: none fitted yet (identity)")
    return 0


def _open_table(args: argparse.Namespace, space: Any | None, *, create: bool = True) -> Any:
    """``--table`` if it exists, else the (default or given) table of ``space``, created lazily;
    without ``create``, a table that does not exist yet is a usage error (before any measuring)."""
    from mobilenas.latency.build import DEFAULT_LAZY_CORRECTION_SAMPLES, open_or_create_table
    from mobilenas.latency.table import LookupTable

    # Only a backend the user asked for is checked against the table; otherwise the table's own
    # runtime and thread count are used (a 4-thread table needs no --threads 4 to be read).
    asked = args.command or args.backend != "onnxruntime" or args.threads != 1 or args.device_name
    backend = _backend(args) if asked else None
    if args.table is not None and args.table.exists():
        table = LookupTable.load(args.table, backend=backend, force=args.force_device)
        if args.input_size is not None and args.input_size != table.input_size:  # it would be ignored
            size = table.input_size
            raise ValueError(
                f"{args.table} is a table for {size}x{size} inputs, not --input-size {args.input_size};"
                f" drop --input-size, or give a table of that size (--space NAME --input-size {args.input_size} for the default one)"
            )
        _note_skipped_lines(table)
        return table
    if space is None:
        raise FileNotFoundError(f"no latency table at {args.table}; build one with nas-latency build --space SPACE --table {shlex.quote(str(args.table))}")
    if not create:
        from mobilenas.latency.build import default_table_path
        from mobilenas.latency.measure import OnnxRuntimeBackend

        size = args.input_size or DEFAULT_INPUT_SIZE
        target = args.table or default_table_path(space, backend or OnnxRuntimeBackend(), size)
        if not Path(target).exists():
            options = f"--space {shlex.quote(str(args.space))}" + (f" --input-size {size}" if size != DEFAULT_INPUT_SIZE else "") + (f" --threads {args.threads}" if args.threads != 1 else "")
            raise UsageError(f"no latency table for these settings yet ({target}): an empty one would have no entries for ARCH; add --measure-missing to measure"
                             f" what ARCH needs now, or build the table first (nas-latency build {options})")
    table = open_or_create_table(
        space,
        args.table,
        input_size=args.input_size or DEFAULT_INPUT_SIZE,
        backend=backend,
        force_device=args.force_device,
        correction_samples=DEFAULT_LAZY_CORRECTION_SAMPLES,
        progress=not getattr(args, "quiet", False),
    )
    _note_skipped_lines(table)
    return table


def _note_skipped_lines(table: Any) -> None:
    """A note on stderr where the table's file has damaged lines, which were skipped (as info says)."""
    if table.skipped_lines:
        print(
            f"note: skipped {counted(table.skipped_lines, 'damaged line')} of latency table {table.path} (torn by a killed writer, or edited);"
            f" nas-latency info {shlex.quote(str(table.path))} describes it",
            file=sys.stderr,
        )


def _predict(args: argparse.Namespace) -> int:
    import time

    from mobilenas.latency.table import Correction
    from mobilenas.space.io import load_architecture

    arch = load_architecture(args.arch, num_classes=args.num_classes)
    frozen = None  # the correction a NetAdapt run predicted with (its table's own may have moved since)
    if args.table is None and args.space is None:
        found = run_latency_table(args.arch)
        if found is None:
            lost = run_latency_table(args.arch, gone=True)
            if lost is not None:  # a run's result whose table was moved or removed
                raise UsageError(f"the latency table of the run that wrote {args.arch}, {lost[1]}, no longer exists; give --table PATH where it is now,"
                                 " or --space NAME to use that space's default table")
            raise ValueError("give --table PATH, or --space NAME to use that space's default table")
        _, args.table, recorded = found
        try:
            frozen = Correction.from_dict(recorded) if recorded else None
        except ValueError as error:  # a run's record edited or damaged: say whose
            raise ValueError(f"the latency correction recorded by the run that wrote {args.arch} is damaged ({error}); give --table PATH to predict with that table's own") from None
        print(f"using the latency table of the run that wrote {args.arch}: {args.table}" + (" (with the correction that run froze)" if frozen else ""), file=sys.stderr)
    if args.measure_missing:
        set_interrupt_note("the ops measured so far are kept in the table; the same command measures the rest and predicts")
    table = _open_table(args, _space_default(args.space) if args.space else None, create=args.measure_missing)
    correction = frozen or table.correction
    start = time.perf_counter()
    rows = table.predict_breakdown(arch, measure_missing=args.measure_missing)
    latency = table.predict(arch, correction=correction)
    elapsed_ms = (time.perf_counter() - start) * 1e3
    total = sum(r.latency_ms for r in rows)
    payload: dict[str, Any] = {
        "architecture": arch.to_notation(),
        "latency_ms": latency,
        "sum_ms": total,
        "se_blocks": table.se_blocks(arch),
        "correction": correction.to_dict(),
        "table": str(table.path),
        "input_size": table.input_size,
        "device": table.device.describe(),
    }
    span = table.fitted_range_ms() if frozen is None else None
    payload["correction_range_ms"] = list(span) if span else None
    if args.breakdown:
        payload["breakdown"] = [{"path": r.path, "key": r.signature.key, "latency_ms": r.latency_ms} for r in rows]
    if args.json:
        print_json(payload)
        return 0
    print(f"{args.arch}: {format_ms(latency)} predicted ({table.device.describe()}, {table.input_size}x{table.input_size})")
    se_text = f" {correction.se_ms:+.4f} ms x {payload['se_blocks']} SE blocks" if correction.se_ms else ""
    print(f"  = {correction.a:.4f} * {total:.3f} ms (sum of {len(rows)} entries) {correction.b:+.4f} ms{se_text}" + ("" if correction.fitted else "  [correction not fitted yet]"))
    if args.breakdown:
        width = max(len(r.path) for r in rows)
        for r in rows:
            print(f"  {r.path:<{width}}  {r.latency_ms:8.3f} ms  {r.signature.key}")
    if frozen is None:
        sys.stdout.flush()  # the note comes after what it is about
        _note_outside_the_fit(table, latency, "", args.arch, args.num_classes)
    if elapsed_ms > 1000:
        print(f"  (measured missing ops in {elapsed_ms / 1e3:.1f} s)", file=sys.stderr)
    return 0


CALIBRATION_FILES = ("calibration.json", "calibration.csv", "calibration.png")  # what calibrate writes in its folder


def _holds_calibration(folder: Path) -> bool:
    return any((folder / name).exists() for name in CALIBRATION_FILES)


def _free_calibration_folder(folder: Path) -> Path:
    """``folder``, or where it holds a calibration already, the first of ``folder-2``, ``folder-3``,
    ... that does not (a calibration run again keeps the earlier one's measurements)."""
    number = 1
    candidate = folder
    while _holds_calibration(candidate):
        number += 1
        candidate = folder.with_name(f"{folder.name}-{number}")
    return candidate


def _calibrate(args: argparse.Namespace) -> int:
    from mobilenas.latency.calibrate import calibrate, report_lines

    space, table = _space_and_table(args)
    out = args.out or _free_calibration_folder(Path(f"calibration-{space.name}-{table.input_size}px"))
    if args.out and _holds_calibration(out):  # another calibration's measurements: never overwritten
        raise UsageError(f"--out {out} holds a calibration already ({CALIBRATION_FILES[0]}); give another --out, or delete that folder to measure again")
    check_writable_folder(out, f"--out {out}" if args.out else f"the output folder {out} (choose another with --out)")  # before measuring
    set_interrupt_note("ops measured into the latency table so far are kept; this calibration's end-to-end timings are not (interleaved rounds count only all together): run it again")
    report = calibrate(space, table, args.samples, seed=args.seed, rounds=args.rounds, out_dir=out, progress=not args.quiet, update_correction=args.update_correction, anchors=args.anchors)
    if args.json:
        print_json(report.to_dict())
        return 0
    for line in report_lines(report):
        print(line)
    return 0


def _fastest(args: argparse.Namespace) -> int:
    from mobilenas.latency.build import fastest_latency, slowest_latency

    space, table = _space_and_table(args)
    exhaustive = True if args.exhaustive else None
    latency, arch = fastest_latency(space, table, measure_missing=True, exhaustive=exhaustive, progress=True)
    slowest, slowest_arch = slowest_latency(space, table, measure_missing=True, exhaustive=exhaustive, progress=True)
    span = table.fitted_range_ms()
    payload: dict[str, Any] = {"latency_ms": latency, "architecture": arch.to_notation(), "fingerprint": arch.fingerprint(), "table": str(table.path), "input_size": table.input_size,
                               "slowest_latency_ms": slowest, "slowest_architecture": slowest_arch.to_notation(), "correction_range_ms": list(span) if span else None}
    feasible = args.target_latency is None or latency <= args.target_latency
    if args.target_latency is not None:
        payload["target_latency_ms"] = args.target_latency
        payload["feasible"] = feasible
        payload["binding"] = args.target_latency < slowest
    if args.json:
        print_json(payload)
        return 0 if feasible else 1
    print(f"fastest architecture of {space.name} at {table.input_size}x{table.input_size}: {format_ms(latency)} predicted ({table.device.describe()})")
    print(f"  {arch.to_notation()}")
    print(f"slowest: {format_ms(slowest)} predicted (targets from {format_ms(latency)} to {format_ms(slowest)} trade accuracy for latency)")
    print(f"  {slowest_arch.to_notation()}")
    if args.target_latency is not None:
        if not feasible:
            verdict = "NOT reachable: even the fastest architecture is slower"
        elif args.target_latency >= slowest:
            verdict = "reachable by every architecture of the space: it constrains nothing"
        else:
            verdict = "reachable"
        print(f"target {format_ms(args.target_latency)}: {verdict}")
    sys.stdout.flush()  # the notes below come after what they are about
    if args.target_latency is not None and args.target_latency >= 100 * slowest:  # 15s typed for 15ms, say
        print(
            f"note: the target, {format_ms(args.target_latency)}, is over 100 times the slowest architecture's {format_ms(slowest)};"
            " if it was meant in milliseconds, give the unit ms (15ms; 15s is 15000 ms)",
            file=sys.stderr,
        )
    _note_outside_the_fit(table, latency, "the fastest's ", arch.to_notation(), None)
    _note_outside_the_fit(table, slowest, "the slowest's ", slowest_arch.to_notation(), None)
    return 0 if feasible else 1


def _measure_command(arch: str, table: Any, num_classes: int | None) -> str:
    """The ``nas-latency measure`` command that times ``arch`` end to end as ``table``'s device does."""
    from mobilenas.latency.table import device_options

    parts = ["nas-latency measure", shlex.quote(arch), f"--input-size {table.input_size}"]
    if num_classes:
        parts.append(f"--num-classes {num_classes}")
    return " ".join(parts + device_options(table.device))


def _note_outside_the_fit(table: Any, latency_ms: float, what: str, arch: str, num_classes: int | None) -> None:
    """A note on stderr where a prediction lies outside the latencies the correction was fitted on
    (the correction is a line through those points; beyond them it is extrapolated)."""
    span = table.fitted_range_ms()
    # within 2% of the ends is not extrapolation worth a word (it had flagged 0.371 ms against 0.371-3.08 ms)
    if span is None or 0.98 * span[0] <= latency_ms <= 1.02 * span[1]:
        return
    low, high = (format_ms(v).removesuffix(" ms") for v in span)
    print(
        f"note: {what}{format_ms(latency_ms)} lies outside the {low}-{high} ms of the {len(table.end_to_end_points())} end-to-end measurements the correction was fitted on,"
        f" so it is extrapolated there; {_measure_command(arch, table, num_classes)} times it",
        file=sys.stderr,
    )


def _info(args: argparse.Namespace) -> int:
    from mobilenas.latency.table import LookupTable

    if args.table is None:
        return _list_tables(args)
    with warnings.catch_warnings():  # another device's table is described (and said to be), not used
        warnings.simplefilter("ignore", UserWarning)
        table = LookupTable.load(args.table, force=True)
    here = table.expected_device()
    this_device = None if here is None else here.fingerprint() == table.header.device_fingerprint
    summary = {**table.summary(), "this_device": this_device, "space_ops": _space_coverage(table)}
    if args.json:
        print_json(summary)
        return 0
    correction = table.correction
    print(f"table {summary['path']}")
    print(f"  device       {summary['device']} (fingerprint {summary['device_fingerprint']})")
    if this_device is False and here is not None:
        print(f"  note         measured on another device, not on this one ({here.describe()}): its latencies are that device's (--force-device uses it anyway)")
    print(f"  input        {summary['input_size']}x{summary['input_size']}, batch {summary['batch_size']}, space {summary['space'] or '-'}, created {summary['created']}")
    print(f"  method       {table.method.name}, cold cache {table.method.cold_cache}, {table.method.repeats} runs per entry")
    by_op = ", ".join(f"{op} {n}" for op, n in sorted(summary["entries_by_op"].items()))
    print(f"  entries      {summary['entries']} ({by_op or 'none'}); {summary['end_to_end_points']} end-to-end points")
    coverage = summary["space_ops"]
    if coverage is not None:
        have, total = coverage["in_table"], coverage["total"]
        if have == total:
            print(f"  space ops    all {total} of space {summary['space']}'s ops at {table.input_size}x{table.input_size}")
        else:
            from mobilenas.latency.table import build_command

            classes = f"--num-classes {coverage['num_classes']}" if coverage["num_classes"] != 1000 else ""
            print(f"  space ops    {have} of space {summary['space']}'s {total} ops at {table.input_size}x{table.input_size}, the rest measured as predictions"
                  f" need them ({build_command(table, summary['space'], classes)} measures them all)")
    if correction.fitted:
        print(f"  correction   latency = {correction.describe()} (fitted on {correction.points} architectures, in-sample MAPE {100 * (correction.mape or 0):.1f}%)")
    else:
        print("  correction   none fitted yet (identity)")
    if summary["skipped_lines"]:
        print(f"  skipped      {counted(summary['skipped_lines'], 'damaged line')}")
    return 0


def _space_coverage(table: Any) -> dict[str, int] | None:
    """How many of the ops of the built-in space ``table`` was built for it holds (``in_table``,
    ``total``, and the space's ``num_classes``), or None where the table names no built-in space."""
    from mobilenas.latency.build import space_signatures

    try:
        space = _space_of_table(table, None)
    except UsageError:  # a custom space, or another definition of a built-in one
        return None
    wanted = space_signatures(space, table.input_size)
    return {"in_table": sum(1 for signature in wanted if signature in table), "total": len(wanted), "num_classes": space.head.num_classes}


def _list_tables(args: argparse.Namespace) -> int:
    """``nas-latency info`` without TABLE: one line per table in the home folder, the newest first."""
    import datetime

    from mobilenas.latency.table import LookupTable
    from mobilenas.runs import mobilenas_home

    folder = mobilenas_home() / "tables"
    paths = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    rows: list[dict[str, Any]] = []
    for path in paths:
        modified = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.UTC).isoformat(timespec="seconds")
        try:
            with warnings.catch_warnings():  # another device's table is listed, not used
                warnings.simplefilter("ignore")
                table = LookupTable.load(path, force=True)
            here = table.expected_device()
        except (ValueError, OSError) as error:
            rows.append({"path": str(path), "modified": modified, "error": str(error).splitlines()[0]})
            continue
        this_device = None if here is None else here.fingerprint() == table.header.device_fingerprint
        rows.append({**table.summary(), "modified": modified, "this_device": this_device})
    if args.json:
        print_json({"folder": str(folder), "tables": rows})
        return 0
    if not rows:
        print(f"no latency tables in {folder} yet; nas-search and nas-latency build make them (set MOBILENAS_HOME to keep them elsewhere)")
        return 0
    print(f"{counted(len(rows), 'latency table')} in {folder}, the newest first:")
    print(f"  {'space':<12} {'input':>5} {'entries':>7} {'e2e':>4}  {'correction (+ ms per SE block)':<36} {'device':<14} {'modified':<10}  file")
    for row in rows:
        name = Path(row["path"]).name
        if "error" in row:
            print(f"  {'?':<12} {'':>5} {'':>7} {'':>4}  {'':<36} {'':<14} {row['modified'][:10]:<10}  {name}: {row['error']}")
            continue
        correction = row["correction"]
        fitted = f"{correction['a']:.3f} * sum {correction['b']:+.3f} ms" if correction.get("fitted") else "none yet"
        if correction.get("fitted") and correction.get("se_ms"):
            fitted += f" {correction['se_ms']:+.3f}/SE"
        device = {True: "this machine", False: "another device", None: row["device"].split(",")[0]}[row["this_device"]]
        print(
            f"  {row['space'] or '-':<12} {str(row['input_size']) + 'px':>5} {row['entries']:>7} {row['end_to_end_points']:>4}  "
            f"{fitted:<36} {device:<14} {row['modified'][:10]:<10}  {name}"
        )
    print("nas-latency info TABLE describes one; --table TABLE gives one to nas-search, netadapt refine and nas-latency")
    return 0
