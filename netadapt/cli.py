"""``netadapt refine INPUT``: prune a network's channels until it meets a latency budget.

Also ``mobilenas netadapt``. ``netadapt describe INPUT`` lists the prunable groups (the network
as NetAdapt sees it) and the smallest network it could reach.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobilenas.cliutil import (
    ArgumentParser,
    KeepLinesFormatter,
    add_json_flag,
    add_version_flag,
    check_writable_folder,
    count_or_fraction,
    duration_ms,
    examples,
    fraction,
    fraction_or_zero,
    image_pixels,
    latency_threads_note,
    missing_command,
    nonnegative_int,
    positive_float,
    positive_int,
    print_json,
    refuse_changed_on_resume,
    refuse_ineffective,
    run_main,
    seed_number,
    set_command_name,
    set_interrupt_note,
    set_resume_hint,
    stdout_kept_for_json,
    time_limit_text,
)
from mobilenas.errors import UsageError
from mobilenas.netadapt.choices import (
    DEFAULT_FINETUNE_LR,
    DEFAULT_OPTIMIZER,
    DEFAULT_TRAIN_LR,
    FINAL_MODES,
    after_final,
)
from mobilenas.netadapt.core import (
    SCHEDULES,
    SELECTION_RULES,
    Schedule,
    minimum_width,
    smallest_reachable,
)
from mobilenas.netadapt.groups import ArchitectureDescription, granularity_problem, prunable_groups
from mobilenas.runs import (
    Journal,
    RunDir,
    absolute_path,
    new_run_id,
    read_json,
    run_latency_table,
    run_of,
)
from mobilenas.search.execution import check_ray_address, joins_cluster, oversubscription_note
from mobilenas.space.arch import Architecture
from mobilenas.space.io import is_path, load_architecture, result_file
from mobilenas.train.choices import OPTIMIZERS
from mobilenas.units import (
    counted,
    format_ms,
    format_time_limit,
    parse_duration_ms,
    parse_time_limit_s,
)

if TYPE_CHECKING:  # torch; the commands import it when they run, so --help answers at once
    from mobilenas.netadapt.run import Refinement, Settings, StateDict
    from mobilenas.train.provenance import TakenData

# Defaults live here rather than in argparse so that ``--resume`` can tell which options a user
# typed (those would contradict the run's own arguments).
DEFAULTS: dict[str, Any] = {
    "dataset": "synthetic",
    "data_dir": None,
    "train_size": None,
    "val_size": None,
    "test_size": None,
    "image_size": None,
    "channels": None,
    "finetune_steps": 100,
    "optimizer": DEFAULT_OPTIMIZER,
    "finetune_lr": DEFAULT_FINETUNE_LR,
    "train_lr": DEFAULT_TRAIN_LR,
    "batch_size": 64,
    "augment": False,
    "final": "finetune",
    "final_epochs": 10,
    "pretrain_epochs": 10,
    "granularity": 8,
    "schedule": "netadapt",
    "initial_reduction": None,
    "reduction_decay": None,
    "min_reduction": None,
    "selection": "accuracy-per-latency",
    "max_iterations": None,
    "time_limit": None,
    "table": None,
    "backend": "onnxruntime",
    "command": None,
    "device_name": None,
    "force_device": False,
    "latency_threads": 1,
    "input_size": None,
    "workers": 1,
    "ray_address": None,
    "threads": None,
    "device": "cpu",
    "seed": 0,
}
# Options that only say where and how fast work runs; they may change when a run is resumed.
EXECUTION_OPTIONS = ("workers", "ray_address", "threads", "device")
# `netadapt refine best.json` with no budget prunes to this fraction of the input's latency (the
# first of the three budgets of benchmarks/netadapt_vs_width.md), and says so.
DEFAULT_BUDGET_RATIO = 0.75


def budget_ratio(text: str) -> float:
    """argparse type of ``--budget-ratio``: a fraction in (0, 1) of INPUT's latency, ``0.5`` or ``50%``.

    A duration (``5ms``) is refused with the option that takes one, ``--target-latency``."""
    stripped = text.strip()
    try:
        value = float(stripped[:-1]) / 100 if stripped.endswith("%") else float(stripped)
    except ValueError:
        try:
            parse_duration_ms(stripped)
        except ValueError:
            pass
        else:
            raise argparse.ArgumentTypeError(
                f"{text!r} is a latency; --budget-ratio is a fraction of INPUT's latency (like 0.5), a budget in time is --target-latency {stripped}"
            ) from None
        value = math.nan
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction of INPUT's latency in (0, 1), like 0.5 or 50%, got {text!r}")
    return value


def _decay(text: str) -> float:
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a decay in (0, 1], got {text!r}")
    return value


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="NetAdapt: shrink a trained network's channels until it meets a latency budget on your device.",
        epilog=examples(f"{prog} refine results/runs/RUN/best.json --target-latency 10ms",
                        f"{prog} refine --resume results/runs/netadapt-20261129-101500-ab12",
                        f"{prog} describe mobilenetv3-small"),
        formatter_class=KeepLinesFormatter,
    )
    add_version_flag(parser)
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=ArgumentParser)
    refine = commands.add_parser(
        "refine",
        help="prune a network under a latency budget (NetAdapt, as MobileNetV3 used it)",
        description=(
            "Prune INPUT's channels, one group per iteration, until its latency by the lookup table meets the budget; "
            "each iteration fine-tunes one proposal per prunable group briefly and keeps the best; then a long fine-tune. "
            "Writes a run directory with refined.json (architecture, accuracy, latency_ms, measured_latency_ms, weights), "
            "refined.onnx and the history of every iteration."
        ),
        epilog=textwrap.fill(
            "INPUT is a best.json written by nas-search (architecture and weights), an architecture JSON or block notation plus "
            "--weights FILE, or a reference name (mobilenetv2, mobilenetv3-small@0.75, ...). Without weights the network is "
            "trained from scratch first (--pretrain-epochs).", 79,
        ) + "\n\n" + examples(
            f"{prog} refine results/runs/RUN/best.json --weights results/runs/RUN/best.synthetic.pt",
            f"{prog} refine results/runs/RUN/best.json --target-latency 10ms",
            f"{prog} refine mobilenetv3-small --budget-ratio 0.5 --dataset cifar10 --data-dir ~/data",
            f"{prog} refine results/runs/RUN/best.json --max-iterations 4 --workers 2",
            f"{prog} refine --resume results/runs/netadapt-20261129-101500-ab12   # after a kill",
            f"{prog} describe results/runs/RUN/best.json   # the groups NetAdapt prunes",
        ),
        formatter_class=KeepLinesFormatter,
    )
    refine.add_argument("input", nargs="?", metavar="INPUT", help="best.json, architecture JSON/notation, or reference name")
    refine.add_argument("--weights", metavar="FILE", help="a torch state_dict for INPUT (overrides best.json's weights)")
    budget = refine.add_argument_group(f"budget (one of; default --budget-ratio {DEFAULT_BUDGET_RATIO:g})")
    budget.add_argument("--target-latency", type=duration_ms, metavar="DURATION", help="latency budget by the table, e.g. 10ms or 0.01s (a bare number is milliseconds)")
    budget.add_argument("--budget-ratio", type=budget_ratio, metavar="R", help="budget as a fraction of INPUT's latency, e.g. 0.5 or 50%%")

    data = refine.add_argument_group(
        "data (as nas-train and nas-search)",
        "where INPUT is a search's best.json or a NetAdapt run's refined.json, each of these options left out, except --train-size, "
        "takes that run's value (and so does --seed), so the validation images that run held out stay held out",
    )
    data.add_argument("--dataset", metavar="NAME_OR_PATH", help="synthetic (built in), cifar10, imagefolder, npz, or a path (default: the data of the run that wrote INPUT, else synthetic)")
    data.add_argument("--data-dir", metavar="DIR", help="where cifar10/imagefolder/npz data lie")
    data.add_argument("--train-size", type=count_or_fraction, metavar="N", help="training images (a count or a fraction; default: all)")
    data.add_argument("--val-size", type=count_or_fraction, metavar="N", help="validation images carved from the training split (default: 10%%)")
    data.add_argument("--test-size", type=count_or_fraction, metavar="N", help="test images, for the final report only")
    data.add_argument("--image-size", type=image_pixels, metavar="PX", help="resize images to this square size (image folders, npz, synthetic)")
    data.add_argument("--channels", type=int, choices=(1, 3), help="convert the images to 1 (gray) or 3 (RGB) channels")

    training = refine.add_argument_group("training")
    training.add_argument("--finetune-steps", type=nonnegative_int, metavar="N", help="short-term fine-tune steps per proposal; 0 evaluates each proposal right after pruning (default: 100)")
    training.add_argument("--optimizer", choices=OPTIMIZERS, help=f"optimiser of every training (default: {DEFAULT_OPTIMIZER})")
    training.add_argument("--finetune-lr", type=positive_float, metavar="LR", help=f"learning rate of the short and long fine-tunes (default: {DEFAULT_FINETUNE_LR})")
    training.add_argument("--train-lr", type=positive_float, metavar="LR", help=f"learning rate of trainings from scratch (default: {DEFAULT_TRAIN_LR})")
    training.add_argument("--batch-size", type=positive_int, metavar="N", help="images per step (default: 64)")
    training.add_argument("--augment", action="store_true", default=None, help="random crops and flips in the long trainings")
    training.add_argument("--final", choices=FINAL_MODES, help="after the budget is met: long fine-tune (default), retrain from scratch (as MobileNetV3), or none")
    training.add_argument("--final-epochs", type=nonnegative_int, metavar="N", help="epochs of the long fine-tune or retraining (default: 10)")
    training.add_argument("--pretrain-epochs", type=nonnegative_int, metavar="N", help="epochs to train INPUT first when it has no weights (default: 10)")

    algorithm = refine.add_argument_group("algorithm")
    algorithm.add_argument("--granularity", type=positive_int, metavar="C", help="channels are removed in multiples of C (default: 8)")
    algorithm.add_argument("--schedule", choices=sorted(SCHEDULES), help="netadapt: 2.5%% of the starting latency, decaying 0.96 per iteration (the official code); mobilenetv3: 1%% per iteration (default: netadapt)")
    algorithm.add_argument("--initial-reduction", type=fraction, metavar="F", help="first iteration's reduction, a fraction of the starting latency (overrides the schedule)")
    algorithm.add_argument("--reduction-decay", type=_decay, metavar="D", help="reduction decay per iteration (overrides the schedule)")
    algorithm.add_argument("--min-reduction", type=fraction_or_zero, metavar="F", help="floor on every iteration's reduction, a fraction of the starting latency")
    algorithm.add_argument("--selection", choices=SELECTION_RULES, help="accuracy-per-latency: largest accuracy change per latency saved (MobileNetV3, default), among the proposals no other beats on both accuracy and latency; accuracy: highest accuracy (NetAdapt paper)")
    algorithm.add_argument("--max-iterations", type=positive_int, metavar="N", help="stop after N iterations even if the budget is not met (with --resume, a higher N takes a stopped run further)")

    latency = refine.add_argument_group("latency")
    latency.add_argument("--table", "--latency-table", dest="table", metavar="PATH", help="latency lookup table (default: the table of the run that wrote INPUT, a search or NetAdapt, when it was measured on this device, else this device's NetAdapt table; created if missing; missing entries are measured and added)")
    latency.add_argument("--backend", choices=("onnxruntime", "torch", "command"), help="runtime that measures new entries and end-to-end checks (default: onnxruntime)")
    latency.add_argument("--command", metavar="TEMPLATE", help="time models with this command instead ({model} is the exported .onnx file); see nas-latency --help")
    latency.add_argument("--device-name", metavar="NAME", help="name of the device a --command measures on")
    latency.add_argument("--force-device", action="store_true", default=None, help="use a table measured on another device anyway")
    latency.add_argument("--latency-threads", type=positive_int, metavar="N", help="threads of the latency measurements (default: 1)")
    latency.add_argument("--input-size", type=positive_int, metavar="PX", help="deployment resolution (default: the table's, else that of the run that wrote INPUT, else 224)")

    execution = refine.add_argument_group("execution and runs")
    execution.add_argument("--workers", type=positive_int, metavar="N", help="proposals fine-tuned at once; above 1 they run on Ray (default: 1)")
    execution.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster instead of starting a local one")
    execution.add_argument("--threads", type=positive_int, metavar="N", help="training threads per worker (default: all cores / workers)")
    execution.add_argument("--device", metavar="DEVICE", help="where networks train: cpu (default), cuda, cuda:1, ...")
    execution.add_argument("--seed", type=seed_number, metavar="N", help="seed of data splits, fine-tunes and initialisation (default: that of the run that wrote INPUT, else 0)")
    execution.add_argument(
        "--time-limit", type=time_limit_text, metavar="DURATION",
        help="start no new iteration or proposal after this long, e.g. 8h or 30min (from the command's start; proposals under way "
        "finish, an iteration left unfinished is kept for --resume): the network of the last finished iteration then gets its final "
        "training and refined.json, as after --max-iterations, and --resume goes on iterating, with the limit afresh "
        "(--time-limit none lifts it; default: no limit)",
    )
    execution.add_argument("--out", metavar="DIR", help="run directory (default: results/runs/netadapt-<time>)")
    execution.add_argument("--resume", metavar="DIR", help="continue a killed run with its own arguments (or, with a higher --max-iterations, one it stopped)")
    execution.add_argument("--quiet", action="store_true", help="no progress bars")
    execution.add_argument("--json", action="store_true", help="print one JSON object (refined.json plus the history) instead of a table")

    describe = commands.add_parser(
        "describe", help="list a network's prunable groups", description=(
            "List the prunable groups of INPUT as NetAdapt sees them: the sets of channels one proposal prunes together. "
            "tied: the output width of the stem or of a block together with every block joined to it by identity skips; "
            "expanded: an inverted residual's expanded width; head: the last 1x1 convolution and the hidden layer. "
            "min is the fewest channels NetAdapt may leave in the group (one --granularity step)."
        ),
        formatter_class=KeepLinesFormatter,
        epilog=examples(f"{prog} describe results/runs/RUN/best.json", f"{prog} describe mobilenetv3-small --granularity 4 --json"),
    )
    describe.add_argument("input", metavar="INPUT", help="best.json, architecture JSON/notation, or reference name")
    describe.add_argument("--granularity", type=positive_int, default=8, metavar="C", help="channel step (default: 8)")
    describe.add_argument("--num-classes", type=positive_int, metavar="N", help="replace the classifier's class count")
    add_json_flag(describe)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "netadapt") -> int:
    return run_main(lambda a: _main(a, prog), argv, prog)


def _main(argv: Sequence[str] | None, prog: str) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.subcommand is None:
        raise missing_command(parser, prog)
    set_command_name(f"{prog} {args.subcommand}")
    if args.subcommand == "describe":
        return _describe(args)
    with contextlib.ExitStack() as held:  # the run's claim (RunDir.claim) lasts until the end
        return _refine(args, prog, held)


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class StartingNetwork:
    arch: Architecture
    weights: StateDict | None
    weights_path: str | None
    source: str


def resolve_input(spec: str, weights: str | None) -> StartingNetwork:
    """INPUT and --weights -> architecture and (optional) weights."""
    from mobilenas.train.weights import load_weights, result_weights

    text = spec.strip()
    path = Path(text).expanduser()
    named_weights: str | None = None
    is_file = is_path(text)
    if is_file:
        path = result_file(path)
        if path.is_file() and path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}){_rewritten_by(path)}") from None
            named = result_weights(str(path))
            named_weights = None if named is None else str(named)
    arch = load_architecture(str(path) if is_file else text)
    if weights is not None:
        weights = str(Path(weights).expanduser())
        if not Path(weights).is_file():
            raise ValueError(f"no weights file at {weights}; {_missing_weights_hint(path if is_file else None, Path(weights), named_weights)}")
    chosen = weights or named_weights
    state = None
    if chosen is not None:
        if weights is None and not Path(chosen).is_file():
            raise ValueError(f"{path} names weights {chosen} that do not exist; give --weights FILE (or none to train from scratch)")
        state = load_weights(chosen)
    return StartingNetwork(arch, state, chosen, text)


def _rewritten_by(path: Path) -> str:
    """Where ``path`` is a NetAdapt run's refined.json: that its --resume writes it again (from the
    run's event log), as nas-results show says; else nothing."""
    found = run_of(path)
    if path.name != "refined.json" or found is None or found[1].get("kind") != "netadapt":
        return ""
    return f"; it is the result of the NetAdapt run {found[0]}: netadapt refine --resume {shlex.quote(str(found[0]))} writes it again"


def _missed_target(spec: str) -> tuple[float, float] | None:
    """``(latency_ms, target_latency_ms)`` of INPUT when it is a search's ``best.json`` (or a
    NetAdapt ``refined.json``) whose latency, by that run's table, is over that run's target."""
    text = spec.strip()
    if not is_path(text):
        return None
    path = result_file(Path(text).expanduser())
    try:
        data = read_json(path) if path.suffix == ".json" and path.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    latency, target = data.get("latency_ms"), data.get("target_latency_ms")
    if not (isinstance(latency, int | float) and isinstance(target, int | float)) or isinstance(latency, bool) or isinstance(target, bool):
        return None
    return (float(latency), float(target)) if math.isfinite(latency) and math.isfinite(target) and latency > target > 0 else None


def _missing_weights_hint(input_file: Path | None, weights: Path, named: str | None) -> str:
    """How to get the --weights that are missing: nas-train writes ``STEM.DATASET.pt`` beside a
    ``STEM.json`` (the file nas-search's "next:" line names), so that one is made by training first."""
    instead = f"leave --weights out to start from the weights the input names ({named})" if named else "leave --weights out to train the input from scratch first"
    if input_file is not None and input_file.suffix == ".json" and weights.name.startswith(f"{input_file.stem}.") and weights.suffix == ".pt":
        dataset = weights.name[len(input_file.stem) + 1 : -len(".pt")]
        option = f" --dataset {dataset}" if dataset not in ("", "synthetic") and "." not in dataset else ""
        return f"nas-train {shlex.quote(str(input_file))}{option} writes it (train first), or {instead}"
    return f"give an existing file, or {instead}"


def proxy_training(spec: str) -> tuple[int, int] | None:
    """``(steps, batch size)`` of the proxy training that made a search's ``best.json`` weights
    (INPUT, or the run folder holding it); ``None`` for any other input."""
    found = run_of(spec)  # None for block notation or a reference name, too
    if found is None or found[1].get("kind") != "search":
        return None
    run, manifest = found
    path = Path(spec).expanduser()
    try:
        data = read_json(run / "best.json" if path.is_dir() else path)
    except (OSError, ValueError):
        return None
    info = data.get("info") if isinstance(data, dict) else None
    if not (isinstance(info, dict) and isinstance(info.get("steps"), int) and data.get("weights")):
        return None
    proxy = manifest.get("proxy")
    batch = proxy.get("batch_size") if isinstance(proxy, dict) else None
    return info["steps"], batch if isinstance(batch, int) and batch > 0 else 32


def _take_input_data_options(spec: str, values: dict[str, Any], typed: dict[str, Any]) -> TakenData | None:
    """Load the data as the run that wrote INPUT did, where no data option was typed: a search on
    CIFAR-10 is refined on CIFAR-10 (not on the synthetic default), and on the validation split
    it held out (its --seed and --val-size), which its weights were never trained on. Typed options
    that differ from the run's are kept (see :meth:`TakenData.split_note`)."""
    from mobilenas.train.provenance import take_data_options

    found = take_data_options(spec, values, list(typed), DEFAULTS)
    line = found.taken_line("INPUT") if found is not None else None
    if line:
        _log(line)
    return found


#: A start whose proxy training saw fewer images than this many proposal fine-tunes is far from trained.
PROXY_NOTE_FINETUNES = 10


def _note_proxy_trained(spec: str, dataset_name: str, values: dict[str, Any]) -> None:
    """Say so when INPUT's weights are a search's short proxy training: NetAdapt prunes a trained
    network, and on a barely trained one the proposals' fine-tunes mostly train it further."""
    from mobilenas.train.cli import trained_start_commands

    found = proxy_training(spec)
    if found is None or values["finetune_steps"] == 0:
        return
    steps, batch = found
    if steps * batch >= PROXY_NOTE_FINETUNES * values["finetune_steps"] * values["batch_size"]:
        return
    commands = trained_start_commands(spec, dataset_name, "with this run's data options")
    _log(
        f"note: INPUT's weights are the search's proxy training ({counted(steps, 'step')} of {counted(batch, 'image')}); NetAdapt prunes a trained network, "
        f"and each proposal's fine-tune ({counted(values['finetune_steps'], 'step')} of {counted(values['batch_size'], 'image')}) will mostly go on training this one, "
        f"which hides what pruning costs. For a trained start: {commands}"
    )


# --------------------------------------------------------------------------- describe


def _describe(args: argparse.Namespace) -> int:
    start = resolve_input(args.input, None)
    arch = start.arch if args.num_classes is None else start.arch.with_num_classes(args.num_classes)
    groups = prunable_groups(arch)
    rows: list[dict[str, Any]] = [{"group": g.name, "kind": g.kind, "width": g.width, "narrowest": minimum_width(g.width, args.granularity)} for g in groups]
    _note_granularity(arch, args.granularity)  # on stderr, before the table (with --json too)
    if args.json:
        print_json({"groups": rows, "granularity": args.granularity, "notation": arch.to_notation()})
        return 0
    print(f"{counted(len(groups), 'prunable group')} at granularity {args.granularity} (channels now -> the fewest NetAdapt may leave):")
    width = max(len("group"), *(len(r["group"]) for r in rows))
    print(f"  {'group':<{width}}  {'kind':<8}  {'width':>5} -> {'min':>4}")
    for r in rows:
        print(f"  {r['group']:<{width}}  {r['kind']:<8}  {r['width']:>5} -> {r['narrowest']:>4}")
    return 0


def _note_granularity(arch: Architecture, granularity: int) -> None:
    problem = granularity_problem(arch, granularity)
    if problem is not None:
        _log(f"note: {problem}")


# --------------------------------------------------------------------------- refine


def _given(args: argparse.Namespace) -> dict[str, Any]:
    """Options the user typed (not left at their default)."""
    return {name: getattr(args, name) for name in DEFAULTS if getattr(args, name, None) is not None}


def _resolved(args: argparse.Namespace) -> dict[str, Any]:
    values = dict(DEFAULTS)
    values.update(_given(args))
    return values


def _absolute_paths(args: argparse.Namespace, values: dict[str, Any]) -> None:
    """The files a new run reads, by absolute path in its manifest: --resume works from any folder."""
    from mobilenas.train.data import absolute_dataset

    for key in ("data_dir", "table"):
        if values[key]:
            values[key] = absolute_path(values[key])
    values["dataset"] = absolute_dataset(values["dataset"])
    if args.input is not None and is_path(args.input):  # a file, not a name or notation
        args.input = absolute_path(args.input)
    if args.weights:
        args.weights = absolute_path(args.weights)


def _schedule(values: dict[str, Any]) -> Schedule:
    base = SCHEDULES[values["schedule"]]
    schedule = Schedule(
        initial_reduction=values["initial_reduction"] if values["initial_reduction"] is not None else base.initial_reduction,
        decay=values["reduction_decay"] if values["reduction_decay"] is not None else base.decay,
        min_reduction=values["min_reduction"] if values["min_reduction"] is not None else base.min_reduction,
    )
    if values["initial_reduction"] is not None and schedule.initial_reduction < schedule.min_reduction:
        whence = f"--min-reduction {schedule.min_reduction:g}" if values["min_reduction"] is not None else f"{schedule.min_reduction:g}, --schedule {values['schedule']}'s floor"
        raise UsageError(
            f"--initial-reduction {schedule.initial_reduction:g} would have no effect: every step removes at least {whence}; "
            f"lower the floor too (--min-reduction 0), or leave --initial-reduction out"
        )
    return schedule


def _load_data(values: dict[str, Any]) -> Any:
    from mobilenas.train.data import load_dataset

    return load_dataset(
        values["dataset"], data_dir=values["data_dir"], seed=values["seed"], train_size=values["train_size"], val_size=values["val_size"],
        test_size=values["test_size"], image_size=values.get("image_size"), channels=values.get("channels"),
    )


def _log(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


def _refine(args: argparse.Namespace, prog: str, held: contextlib.ExitStack) -> int:
    from mobilenas.netadapt.latency_model import open_latency_model
    from mobilenas.netadapt.run import (
        Refinement,
        Settings,
        check_budget,
    )
    from mobilenas.netadapt.training import DataTrainer, TrainingSettings
    from mobilenas.space.builder import adapt_for_input_size, build_model
    from mobilenas.train.provenance import in_run, normalise_like_weights, weights_data_note
    from mobilenas.train.proxy import prepare_architecture
    from mobilenas.train.weights import load_strict

    began = _clock()  # a --time-limit counts from here (a training from scratch first included)
    progress = not args.quiet and not args.json
    if args.resume:
        return _resume(args, prog, progress, held, began)
    if args.input is None:
        raise UsageError("give INPUT (a best.json, an architecture, or a reference name), or --resume DIR")
    if args.target_latency is not None and args.budget_ratio is not None:
        raise UsageError("give exactly one budget: --target-latency (like 10ms) or --budget-ratio (like 0.5), not both")
    default_budget = args.target_latency is None and args.budget_ratio is None
    if default_budget:
        args.budget_ratio = DEFAULT_BUDGET_RATIO
    values = _resolved(args)
    typed = _given(args)
    if values["final"] == "none":
        refuse_ineffective([key for key in ("final_epochs",) if key in typed], "with --final none")
    if values["final"] == "retrain" and values["final_epochs"] == 0:
        raise UsageError(
            "--final retrain with --final-epochs 0 would leave the refined network untrained (retrained from scratch for no epoch); "
            "give --final-epochs N (N >= 1), or --final finetune or --final none to keep the pruned network's weights"
        )
    schedule = _schedule(values)  # checked before any work
    _absolute_paths(args, values)
    if values["threads"] is None:
        values["threads"] = max(1, (os.cpu_count() or 1) // values["workers"])
    # Made (and so checked: optimizer, rates, the device on this machine) before any data, table or training work.
    training = TrainingSettings(optimizer=values["optimizer"], finetune_lr=values["finetune_lr"], train_lr=values["train_lr"], batch_size=values["batch_size"], augment=bool(values["augment"]), threads=values["threads"], device=values["device"])
    out = Path(args.out) if args.out else Path("results") / "runs" / new_run_id("netadapt")
    RunDir(out).refuse_existing("netadapt")  # before any data is loaded or latency measured
    check_writable_folder(out, f"--out {out}" if args.out else f"the default run folder {out.parent} (choose another with --out)")
    check_ray_address(values["ray_address"])
    _note_execution(values)
    start = resolve_input(args.input, args.weights)
    if not any(group.width > values["granularity"] for group in prunable_groups(start.arch)):  # before any data or table work
        raise UsageError(granularity_problem(start.arch, values["granularity"]) or "no group can be pruned")
    if start.weights is not None:  # options of a training from scratch that will not happen (their help says when)
        unused = [key for key in ("pretrain_epochs", *(("train_lr",) if values["final"] != "retrain" else ())) if key in typed]
        if unused:
            names = " and ".join("--" + key.replace("_", "-") for key in unused)
            _log(f"note: {names} not used: INPUT comes with weights ({start.weights_path}), so nothing is trained from scratch")
    trains_long = (start.weights is None and values["pretrain_epochs"] > 0) or (values["final"] != "none" and values["final_epochs"] > 0)
    if "augment" in typed and not trains_long:  # crops and flips are for the long trainings only
        _log("note: --augment not used: nothing is trained long (no training from scratch, and --final none or --final-epochs 0); the short fine-tunes never augment")
    taken = _take_input_data_options(args.input, values, typed)
    # The data come before the budget check: their classes and channels shape the classifier and
    # the stem, and so the latency compared with the budget.
    data = _load_data(values)
    if start.weights_path is not None:
        use = "fine-tunes and validates on"
        own = in_run(start.weights_path, args.input)
        note = taken.split_note("INPUT", use, data) if taken is not None and own else None if own else weights_data_note(Path(start.weights_path), data, use)
        if note:
            _log(note)
        data = normalise_like_weights(data, start.weights_path, args.input, _log)
    # The classifier and stem follow the data set (as the trainers build networks); weights that
    # were trained for other classes or channels are then refused by their shapes, naming them.
    arch, _ = prepare_architecture(start.arch, data)
    if start.weights is not None:
        load_strict(build_model(arch, input_size=data.input_size), start.weights, f"the weights {start.weights_path}", weights_file=Path(start.weights_path) if start.weights_path else None)
    produced_by = run_latency_table(args.input)  # (kind, table, correction) of the run that wrote INPUT
    latency = open_latency_model(
        table=values["table"], backend=values["backend"], threads=values["latency_threads"], input_size=values["input_size"],
        command=values["command"], device_name=values["device_name"], force_device=bool(values["force_device"]),
        input_table=produced_by[1:] if produced_by else None, log=_log,
    )
    arch, _ = adapt_for_input_size(arch, latency.input_size)
    smallest = smallest_reachable(arch, values["granularity"], ArchitectureDescription())
    latency.measure_missing([arch, smallest], progress=progress, desc="measuring table entries of the start and the smallest network")
    latency.fit_if_needed([arch, smallest])
    start_latency = latency.predict(arch)
    budget = args.target_latency if args.target_latency is not None else args.budget_ratio * start_latency
    if start_latency <= budget:  # before the run folder: there is nothing to make
        raise UsageError(
            f"the network already meets the budget: {format_ms(start_latency)} by the table <= {format_ms(budget)}, so there is nothing to prune;"
            f" give a budget below {format_ms(start_latency)} (--target-latency) or a --budget-ratio below 1"
        )
    floor = check_budget(arch, budget, values["granularity"], latency.predict)
    if default_budget:  # said once nothing can be refused any more (a usage error gets its one line alone)
        _log(f"no budget given: pruning to {DEFAULT_BUDGET_RATIO:g} of the input's latency, {format_ms(start_latency)} -> {format_ms(budget)}"
             f" (--budget-ratio {DEFAULT_BUDGET_RATIO:g}); choose one with --target-latency or --budget-ratio")
        missed = _missed_target(args.input)
        if missed is not None:  # a soft-reward search may hand over a best slower than its target
            _log(f"note: INPUT takes {format_ms(missed[0])} by the table of the run that wrote it, over that run's {missed[1]:g} ms target;"
                 f" --target-latency {missed[1]:g}ms prunes it to that target")
    if args.weights is None:  # said once the budget is known to be reachable (a refusal gets its one line alone)
        _note_proxy_trained(args.input, data.name, values)
    settings = Settings(
        budget_ms=budget, start_latency_ms=start_latency, schedule=schedule, selection=values["selection"],
        granularity=values["granularity"], finetune_steps=values["finetune_steps"], final=values["final"],
        final_epochs=values["final_epochs"], pretrain_epochs=values["pretrain_epochs"], max_iterations=values["max_iterations"],
        workers=values["workers"], ray_address=values["ray_address"], threads=values["threads"], seed=values["seed"],
    )
    arguments = {**values, "input": args.input, "weights": start.weights_path, "target_latency_ms": args.target_latency, "budget_ratio": args.budget_ratio, "out": str(out)}
    manifest = {
        "arguments": arguments,
        "seed": values["seed"],
        "input": {"source": start.source, "weights": start.weights_path, "architecture": arch.to_dict(), "fingerprint": arch.fingerprint()},
        "data": data.summary(),
        "training": training.to_dict(),
        "budget_ms": budget,
        "start_latency_ms": start_latency,
        "smallest_reachable_latency_ms": floor,
    }
    refinement = Refinement.create(out, manifest, settings, DataTrainer(data, training), latency, log=_log, progress=progress)
    held.enter_context(refinement.run.claim())
    _set_time_limit(refinement, values["time_limit"], began)
    _log(f"run directory: {out}")
    _on_interrupt(refinement)
    refinement.record_start(arch, start.weights)
    return _continue(refinement, args)


def _resume(args: argparse.Namespace, prog: str, progress: bool, held: contextlib.ExitStack, began: float) -> int:
    from mobilenas.netadapt.latency_model import open_latency_model
    from mobilenas.netadapt.run import (
        HISTORY,
        RUN_KIND,
        Refinement,
        Settings,
        check_history,
        finished_result,
        history_lines,
        refined_as_recorded,
    )
    from mobilenas.netadapt.training import DataTrainer, TrainingSettings
    from mobilenas.train.provenance import normalised_as_recorded

    run = held.enter_context(RunDir.open(args.resume, kind=RUN_KIND).claim())
    manifest = run.manifest()
    # the run's own command typed again with --resume is fine; a changed option is not
    as_recorded = {**DEFAULTS, **_given(args)}
    typed_paths = argparse.Namespace(input=args.input, weights=args.weights)
    _absolute_paths(typed_paths, as_recorded)  # paths compare as the run recorded them
    typed = {k: as_recorded[k] for k in _given(args) if k not in (*EXECUTION_OPTIONS, "max_iterations", "time_limit")}
    typed.update({k: v for k, v in (("input", typed_paths.input), ("weights", typed_paths.weights), ("target_latency_ms", args.target_latency),
                                    ("budget_ratio", args.budget_ratio), ("out", args.out)) if v is not None})
    refuse_changed_on_resume(typed, {**manifest["arguments"], "out": str(run.root)},
                             "only --workers, --ray-address, --threads, --device, --time-limit, --json and --quiet may change, and --max-iterations may extend the run")
    check_history(run)
    values = dict(manifest["arguments"])
    settings = Settings.from_dict(manifest["settings"])
    finished = finished_result(run, settings) if args.max_iterations is None else None
    if finished is not None:  # nothing to do: said so, and its result shown; no event appended
        refined = refined_as_recorded(run, finished[0], _log)
        quoted = shlex.quote(str(run.root))
        if finished[1] == "budget":
            further = (f"it met its budget ({format_ms(settings.budget_ms)}) after {counted(int(refined['iterations']), 'iteration')}; to prune further, "
                       f"refine its result with a smaller budget: netadapt refine {shlex.quote(str(run.root / 'refined.json'))} --target-latency DURATION")
        else:
            further = (f"it stopped after {counted(int(refined['iterations']), 'iteration')} (--max-iterations), above its budget {format_ms(settings.budget_ms)}; "
                       f"netadapt refine --resume {quoted} --max-iterations N (N above {refined['iterations']}) takes it further")
        _log(f"{run.root} is already finished: {further}")
        _report(history_lines(Journal(run.path(HISTORY))), refined, args, time_limit_reached=False, settings=settings)
        return 0
    overrides = {k: getattr(args, k) for k in EXECUTION_OPTIONS if getattr(args, k) is not None}
    if overrides:
        settings = replace(settings, **{k: v for k, v in overrides.items() if k != "device"})
        values.update(overrides)
    check_ray_address(values.get("ray_address"))
    _note_execution(values)
    data = normalised_as_recorded(_load_data(values), manifest.get("data") or {})  # as it began (maybe as its weights were trained)
    recorded = manifest["latency"]
    if recorded.get("table") and not Path(recorded["table"]).exists():
        _log(f"note: the run's latency table {recorded['table']} no longer exists; a new one is measured as the run needs entries (with the run's correction)")
    latency = open_latency_model(
        table=recorded.get("table"), backend=values["backend"], threads=values["latency_threads"], input_size=recorded.get("input_size"),
        command=values.get("command"), device_name=values.get("device_name"), force_device=bool(values.get("force_device")),
        correction=recorded.get("correction"), log=_log,
    )
    training = TrainingSettings(**{**manifest["training"], **{k: overrides[k] for k in ("threads", "device") if k in overrides}})
    refinement = Refinement(run, settings, DataTrainer(data, training), latency, log=_log, progress=progress)
    _on_interrupt(refinement)
    _set_time_limit(refinement, args.time_limit or values.get("time_limit"), began)
    if args.max_iterations is not None:
        refinement.extend(args.max_iterations)
    run.events.append({"type": "resumed", "overrides": overrides, **({"max_iterations": args.max_iterations} if args.max_iterations is not None else {})})
    lines = refinement.lines()
    _log(f"resuming {run.root}: {counted(max(0, len(lines) - 1), 'iteration')} done")
    if not lines:
        start = resolve_input(values["input"], values["weights"])
        arch = Architecture.from_dict(manifest["input"]["architecture"])
        refinement.record_start(arch, start.weights)
    return _continue(refinement, args)


#: What --time-limit is measured with (the tests give a clock of their own).
_clock = time.monotonic


def _set_time_limit(refinement: Refinement, text: str | None, began: float) -> None:
    seconds = parse_time_limit_s(text) if text else None
    refinement.set_time_limit(seconds, since=began, clock=_clock)
    if seconds is not None:
        _log(f"time limit {format_time_limit(seconds)}: no iteration or proposal starts after {refinement.time_limit.ends_at()}")


def _note_execution(values: dict[str, Any]) -> None:
    note = None if joins_cluster(values.get("ray_address")) else oversubscription_note(values["workers"], values.get("threads") or 1, "proposals", "--threads")
    for line in (note, latency_threads_note(values["latency_threads"], "--latency-threads", command=values.get("command"))):
        if line:
            _log(line)


def _on_interrupt(refinement: Refinement) -> None:
    """Ctrl-C (or SIGTERM) from here on names the resume, and says what is kept: a long training
    (from scratch, the final one) tells it that its finished epochs are (see Refinement.interrupt_note)."""
    set_resume_hint(f"netadapt refine --resume {shlex.quote(str(refinement.run.root))}")
    refinement.interrupt_note = set_interrupt_note


def _continue(refinement: Refinement, args: argparse.Namespace) -> int:
    with stdout_kept_for_json(args.json):  # Ray writes to stdout, which --json keeps for its object
        point = refinement.iterate_until_budget()
        if point.resource > refinement.settings.budget_ms and refinement.time_limit_reached:
            _log(
                f"stopped at the time limit ({format_time_limit(refinement.time_limit.seconds or math.nan)}) after {counted(point.iteration, 'iteration')} "
                f"at {format_ms(point.resource)}, above the budget {format_ms(refinement.settings.budget_ms)}; "
                f"netadapt refine --resume {shlex.quote(str(refinement.run.root))} goes on later"
            )
        elif point.resource > refinement.settings.budget_ms:
            _log(
                f"stopped after {counted(point.iteration, 'iteration')} (--max-iterations) at {format_ms(point.resource)}, above the budget "
                f"{format_ms(refinement.settings.budget_ms)}; netadapt refine --resume {shlex.quote(str(refinement.run.root))} --max-iterations N "
                f"(N above {point.iteration}) takes it further later"
            )
        refined = refinement.finish(point)
    _report(refinement.lines(), refined, args, time_limit_reached=refinement.time_limit_reached, settings=refinement.settings)
    return 0


def _report(lines: list[dict[str, Any]], refined: dict[str, Any], args: argparse.Namespace, *, time_limit_reached: bool, settings: Settings) -> None:
    """The result: the summary table, or with --json one object (its notes on stderr either way)."""
    stopped = _stopped_by(refined, settings, time_limit_reached)
    if args.json:
        for note in (_table_note(refined), _final_note(lines, refined)):
            if note:
                _log(note)
        history = [{k: line[k] for k in ("iteration", "target_latency_ms", "chosen", "latency_ms", "measured_latency_ms", "accuracy_before_finetune", "accuracy")} for line in lines]
        print_json({**refined, "budget_met": stopped is None, "time_limit_reached": time_limit_reached, "history": history})
        return
    _print_summary(lines, refined, stopped)


def _stopped_by(refined: dict[str, Any], settings: Settings, time_limit_reached: bool) -> str | None:
    """What stopped a run whose result misses its budget (``--max-iterations 4``, ``the time
    limit``); ``None`` where the result meets it."""
    latency, budget = refined.get("latency_ms"), refined.get("target_latency_ms")
    if not isinstance(latency, int | float) or not isinstance(budget, int | float) or latency <= budget:
        return None
    limit = settings.max_iterations
    if not time_limit_reached and limit is not None and int(refined.get("iterations") or 0) >= limit:
        return f"--max-iterations {limit}"
    return "the time limit"


#: Where the measured speed-up and the table's differ by more than this (relative), the summary says so.
TABLE_RATIO_TOLERANCE = 0.15


def _table_note(refined: dict[str, Any]) -> str | None:
    """A note where the measured speed-up is far from the table's (on stderr, with --json too)."""
    start, side = refined["start"], refined.get("side_by_side") or {}  # runs finished by earlier versions have no side_by_side
    by_table = refined["latency_ms"] / start["latency_ms"] if start.get("latency_ms") else None
    if not (side.get("ratio") and by_table and abs(side["ratio"] / by_table - 1) > TABLE_RATIO_TOLERANCE):
        return None
    effect = ("so it was pruned further than the budget needed (a larger --budget-ratio gives back accuracy)" if side["ratio"] < by_table
              else "so it may be slower than the budget when measured (a smaller --budget-ratio makes up for it)")
    return (f"note: measured side by side, the refined network takes {side['ratio']:.2f} of the start's time where the table said {by_table:.2f}:"
            f" the table's correction, fitted on whole networks, fits the pruned ones less well here, {effect}")


def _final_note(lines: list[dict[str, Any]], refined: dict[str, Any]) -> str | None:
    """A note where the final training lowered validation accuracy (on stderr, with --json too)."""
    before = refined.get("accuracy_before_final")
    if not (refined.get("final") in ("finetune", "retrain") and isinstance(before, (int, float)) and refined["accuracy"] < before):
        return None
    chosen = len(lines[-1].get("proposals") or []) if lines else 0
    return (f"note: the final {'fine-tune' if refined['final'] == 'finetune' else 'retraining'} lowered validation accuracy from {before:.4f} to {refined['accuracy']:.4f}:"
            f" the last iteration's figure was the best of {counted(chosen, 'proposal')} scored on the same validation images, so it is optimistic"
            " (more so with few of them); the test accuracy was never used to choose")


def _test_change(refined: dict[str, Any]) -> str:
    """'; test 0.6120 -> 0.5980' (the start's figure where the run recorded it), else '; test 0.5980'."""
    test, before = refined.get("test_accuracy"), (refined.get("start") or {}).get("test_accuracy")
    if test is None:
        return ""
    return f"; test {before:.4f} -> {test:.4f}" if before is not None else f"; test {test:.4f}"


def _print_summary(lines: list[dict[str, Any]], refined: dict[str, Any], stopped: str | None = None) -> None:
    """The summary table; ``stopped``: what stopped a run short of its budget (see :func:`_stopped_by`)."""
    print(f"{'iter':>4}  {'pruned group':<34} {'width':>11}  {'target':>10}  {'latency':>10}  {'measured':>10}  {'acc pruned':>10}  {'acc tuned':>9}")
    for line in lines:
        chosen = line.get("chosen")
        group = chosen["group"] if chosen else "(start)"
        widths = f"{chosen['previous_width']}->{chosen['width']}" if chosen else ""
        target = format_ms(line["target_latency_ms"]) if line.get("target_latency_ms") else ""
        print(
            f"{line['iteration']:>4}  {group:<34} {widths:>11}  {target:>10}  {format_ms(line['latency_ms']):>10}  "
            f"{format_ms(line.get('measured_latency_ms')):>10}  {line['accuracy_before_finetune']:>10.4f}  {line['accuracy']:>9.4f}"
        )
    start = refined["start"]
    print()
    side = refined.get("side_by_side") or {}  # runs finished by earlier versions have none
    if side.get("ratio"):
        measured = f"measured side by side at the end {format_ms(side['start_ms'])} -> {format_ms(side['refined_ms'])} (ratio {side['ratio']:.2f})"
    else:
        measured = f"measured {format_ms(start['measured_latency_ms'])} -> {format_ms(refined['measured_latency_ms'])}"
    budget = f"budget {format_ms(refined['target_latency_ms'])}" + (f" not met: stopped by {stopped}" if stopped else "")
    print(f"refined: {format_ms(start['latency_ms'])} -> {format_ms(refined['latency_ms'])} by the table ({budget}); {measured}")
    note = _table_note(refined)
    if note:
        _log(note)
    print(f"accuracy: validation {start['accuracy']:.4f} -> {refined['accuracy']:.4f}{after_final(refined)}{_test_change(refined)}")
    note = _final_note(lines, refined)
    if note:
        _log(note)
    print(f"architecture: {refined['notation']}")
    print(f"refined.json: {Path(refined['run']) / 'refined.json'}")
    if refined.get("onnx"):  # what a user ships
        pre = refined.get("preprocessing")
        shape = pre.get("input_shape") if isinstance(pre, dict) else None
        if isinstance(pre, dict) and shape:
            described = f"input {'x'.join(str(n) for n in shape)} {pre.get('layout', '')}".rstrip() + ", preprocessing in refined.json"
        else:
            described = "what it expects of its input: refined.json"
        print(f"refined.onnx: {refined['onnx']} ({described})")
    from mobilenas.netadapt.run import TRAJECTORY_PNG

    trajectory = Path(refined["run"]) / TRAJECTORY_PNG
    if trajectory.is_file():
        print(f"trajectory.png: {trajectory} (accuracy and latency per iteration)")
