"""``nas-train ARCH --dataset ...`` (= ``mobilenas train``): full training of one architecture.

Trains to convergence (warm-up + cosine over ``--epochs``, best validation epoch kept, optional
early stopping and EMA), checkpoints every epoch (``--resume`` continues), evaluates once on the
test split, exports ONNX and writes weights plus a metrics JSON beside the architecture file (or
in ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mobilenas.cliutil import (
    ArgumentParser,
    KeepLinesFormatter,
    add_version_flag,
    check_writable_folder,
    count_or_fraction,
    examples,
    fraction_or_zero,
    image_pixels,
    nonnegative_float,
    positive_float,
    positive_int,
    print_json,
    run_main,
    seed_number,
    set_interrupt_note,
    set_resume_hint,
)
from mobilenas.errors import UsageError
from mobilenas.runs import hold_lock
from mobilenas.space.references import REFERENCES
from mobilenas.train.choices import KINDS, OPTIMIZERS, describe_kinds
from mobilenas.units import counted

if TYPE_CHECKING:
    from mobilenas.space.arch import Architecture
    from mobilenas.train.data import DataSplits
    from mobilenas.train.full import TrainOutputs
    from mobilenas.train.provenance import TakenData

DEFAULT_EMA_DECAY = 0.999

EXAMPLES = examples(
    "nas-train mobilenetv3-small --dataset cifar10 --data-dir ~/data --epochs 30 --ema",
    "nas-train results/runs/<run>/best.json --epochs 10   # on the search's data",
    "nas-train results/runs/<run>/best.json --epochs 10 --resume    # continues after Ctrl-C or a crash",
    "nas-train <netadapt-run>/refined.json --weights <netadapt-run>/refined.pt --epochs 30",
    "nas-train results/runs/<run>/best.json --export-size 32   # ONNX at the 32 px trained at",
    "nas-train mobilenetv2@0.5 --dataset path/to/images/ --image-size 96 --patience 5 --out trained/",
)


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        formatter_class=KeepLinesFormatter,
        description="Train an architecture to convergence: checkpoints every epoch (--resume), optional EMA, "
        "test accuracy, ONNX export, weights and a metrics JSON.",
        epilog=EXAMPLES + "\n\n" + textwrap.fill(
            f"ARCH is a reference ({', '.join(REFERENCES)}; @0.75 for a width multiplier), an architecture JSON, "
            "a best.json/refined.json, or a notation string. Data sets: " + describe_kinds() + ". "
            "Outputs: <name>.<dataset>.pt (state_dict), .onnx, .metrics.json and, while training, .checkpoint.pt, "
            "beside the architecture file or in --out; a training that diverges writes no .pt or .onnx, only its metrics and "
            ".failed.pt (its best weights before), and leaves no checkpoint: the same command with a lower --lr starts over.", 79,
        ),
    )
    add_version_flag(parser)
    parser.add_argument("arch", metavar="ARCH", help="the architecture to train")
    data = parser.add_argument_group(
        "data",
        "where ARCH is a search's best.json or a NetAdapt run's refined.json, the data set, --data-dir, --val-size, --test-size, "
        "--image-size, --channels and --seed left out take that run's values",
    )
    data.add_argument("--dataset", default=None, metavar="NAME_OR_PATH",
                      help=f"{', '.join(KINDS)}, or a path (default: the data of the search or NetAdapt run that wrote ARCH, else synthetic)")
    data.add_argument("--data-dir", default=None, metavar="DIR", help="folder or file of a cifar10/imagefolder/npz data set")
    data.add_argument("--train-size", type=count_or_fraction, default=None, help="training images (count or fraction; default: all)")
    data.add_argument("--val-size", type=count_or_fraction, default=None, help="validation images carved from the training set (default: 10%%; 1000 for synthetic)")
    data.add_argument("--test-size", type=count_or_fraction, default=None, help="test images (default: all; 2000 for synthetic)")
    data.add_argument("--image-size", type=image_pixels, default=None, help="resize images to this square size (image folders, npz, synthetic)")
    data.add_argument("--channels", type=int, choices=(1, 3), default=None, help="convert to 1 (gray) or 3 (RGB) channels")
    training = parser.add_argument_group("training")
    training.add_argument("--weights", type=Path, default=None, metavar="FILE",
                          help="start from these weights (a state_dict, or a checkpoint holding one, such as a run's best.<dataset>.pt or "
                               "NetAdapt's refined.pt) instead of random ones: a fine-tune (default: from scratch)")
    training.add_argument("--epochs", type=positive_int, default=30, help="epochs (default: 30)")
    training.add_argument("--batch-size", type=positive_int, default=128, help="default: 128")
    training.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="default: sgd (Nesterov momentum 0.9)")
    training.add_argument("--lr", type=torch_positive_float, default=None,
                          help="peak learning rate (default: 0.1 for sgd, 0.002 for adamw, 0.016 for rmsprop; a tenth of that with --weights)")
    training.add_argument("--weight-decay", type=torch_nonnegative_float, metavar="WD", default=1e-4, help="default: 1e-4 (not on batch norm and biases)")
    training.add_argument("--label-smoothing", type=fraction_or_zero, metavar="EPS", default=0.1, help="default: 0.1")
    training.add_argument("--warmup-epochs", type=nonnegative_float, metavar="EPOCHS", default=1.0, help="linear warm-up before the cosine decay (default: 1)")
    training.add_argument("--no-augment", action="store_true", help="no random crop and flip")
    training.add_argument("--ema", nargs="?", type=fraction_or_zero, const=DEFAULT_EMA_DECAY, default=None, metavar="DECAY",
                          help=f"keep an exponential moving average of the weights and use it (decay per step, default {DEFAULT_EMA_DECAY}; 0: no average). Put it after ARCH: --ema ARCH reads ARCH as its DECAY")
    training.add_argument("--patience", type=positive_int, default=None, help="stop after this many epochs without a better validation accuracy")
    training.add_argument("--seed", type=seed_number, default=None,
                          help="seeds weights, data order, splits and the synthetic images (default: that of the run that wrote ARCH, else 0)")
    training.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: all cores)")
    training.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    output = parser.add_argument_group("output")
    output.add_argument("--out", default=None, metavar="DIR", help="output folder (default: beside ARCH if it is a file, else the current folder)")
    output.add_argument("--resume", action="store_true", help="continue the unfinished training found at the output location")
    output.add_argument("--no-onnx", action="store_true", help="skip the ONNX export")
    output.add_argument("--export-size", type=image_pixels, default=None, metavar="PX",
                        help="input size of the exported ONNX model and of the preprocessing in the metrics (default: the size the latency of "
                             "the search or NetAdapt run that wrote ARCH is of, else the data's)")
    output.add_argument("--quiet", action="store_true", help="no progress bars")
    output.add_argument("--json", action="store_true", help="print one JSON summary instead of text")
    return parser


#: the largest float32: torch trains in float32, and a larger --lr or --weight-decay had ended in
#: "RuntimeError: value cannot be converted to type float without overflow" (a traceback)
FLOAT32_MAX = 3.4028234663852886e38  # = engine.FLOAT32_MAX (not imported here: it imports torch)


def _float32(kind: Callable[[str], float]) -> Callable[[str], float]:
    """argparse type: ``kind`` (a positive or non-negative number) that float32 can hold."""
    def parse(text: str) -> float:
        value = kind(text)
        if value > FLOAT32_MAX:
            raise argparse.ArgumentTypeError(f"expected at most {FLOAT32_MAX:.1e} (torch trains in float32), got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


torch_positive_float = _float32(positive_float)
torch_nonnegative_float = _float32(nonnegative_float)


LEARNING_RATES = {"sgd": 0.1, "adamw": 0.002, "rmsprop": 0.016}
# With --weights and no --lr: a fine-tune starts at this fraction of the optimiser's default peak
# rate, so that its first epochs do not undo what the weights learned.
FINETUNE_LR_FRACTION = 0.1


def output_location(arch_spec: str, dataset_name: str, out: str | None, *, finetune: bool = False) -> tuple[Path, str]:
    """``(folder, prefix)``: beside an architecture file, else ``--out`` or the current folder.

    A ``finetune`` (``--weights``) ends the prefix in ``.finetune``, so that fine-tuning the
    weights of a training does not collide with that training's own files."""
    folder, prefix = _output_location(arch_spec, dataset_name, out)
    return folder, f"{prefix}.finetune" if finetune else prefix


def _output_location(arch_spec: str, dataset_name: str, out: str | None) -> tuple[Path, str]:
    path = Path(arch_spec)
    dataset = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset_name)
    if "|" not in arch_spec and path.is_file():
        return (Path(out) if out else path.parent), f"{path.stem}.{dataset}"
    if "|" not in arch_spec and path.is_dir():
        return (Path(out) if out else path), f"{'best' if (path / 'best.json').is_file() else 'refined'}.{dataset}"
    if "|" in arch_spec:
        from mobilenas.space.arch import Architecture

        name = f"arch-{Architecture.from_notation(arch_spec).fingerprint()}"
    else:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", arch_spec.replace("@", "_x"))
    return (Path(out) if out else Path.cwd()), f"{name}.{dataset}"


def default_weights_path(arch_spec: str, dataset_name: str) -> Path:
    """Where ``nas-train ARCH`` (no ``--out``) writes the trained weights: what other commands tell
    their users to pass on as ``--weights``."""
    folder, prefix = output_location(arch_spec, dataset_name, None)
    return folder / f"{prefix}.pt"


def trained_start_commands(spec: str, dataset_name: str, aside: str, data_flags: str = "") -> str:
    """``nas-train SPEC --epochs 10 (ASIDE), then netadapt refine SPEC --weights W``: the way to
    prune a search's winner from trained weights rather than its proxy training (nas-search says
    it after a search, netadapt when it starts from proxy weights); ``data_flags`` go to both."""
    quoted = shlex.quote(spec)  # copied into a shell as it is: a path with a space stays one word
    return (
        f"nas-train {quoted}{data_flags} --epochs 10 ({aside}), "
        f"then netadapt refine {quoted}{data_flags} --weights {shlex.quote(str(default_weights_path(spec, dataset_name)))}"
    )


def main(argv: Sequence[str] | None = None, prog: str = "nas-train") -> int:
    return run_main(lambda a: _main(a, prog), argv, prog)


#: The data options' values when neither the user nor the run that wrote ARCH gives one.
DATA_DEFAULTS: dict[str, Any] = {"dataset": "synthetic", "data_dir": None, "val_size": None, "test_size": None, "seed": 0, "image_size": None, "channels": None}


def _take_arch_data_options(args: argparse.Namespace, prog: str) -> TakenData | None:
    """Train on the data of the search or NetAdapt run that wrote ARCH (a best.json or
    refined.json) where no data option was typed: its data set, and its --seed and --val-size, so
    that a NetAdapt run on the trained weights (which takes the same) validates on images they
    were never trained on. Elsewhere the defaults."""
    from mobilenas.train.provenance import take_data_options

    values = {key: getattr(args, key) for key in DATA_DEFAULTS}
    typed = [key for key, value in values.items() if value is not None]
    found = take_data_options(args.arch, values, typed, DATA_DEFAULTS)
    for key, value in values.items():
        setattr(args, key, DATA_DEFAULTS[key] if value is None else value)
    line = found.taken_line("ARCH") if found is not None else None
    if line:  # on stderr, with --json too
        print(f"{prog}: {line}", file=sys.stderr)
    return found


def _command_lines(prog: str, argv: Sequence[str] | None) -> tuple[str, str]:
    """``(this command, this command with --resume)`` as a shell takes them: what Ctrl-C's message
    tells the user to run."""
    words = list(sys.argv[1:] if argv is None else argv)
    again = " ".join([prog, shlex.join(words)]) if words else prog
    return again, again if "--resume" in words else f"{again} --resume"


@contextlib.contextmanager
def _no_empty_folder_left(made: Path | None, lock: Path) -> Iterator[None]:
    """The folder made for this training (``made``, the one ``--out`` names; None where it was
    there before) is removed again when the training fails before writing anything into it but
    ``lock`` (weights refused, say): it had been left behind holding the lock file alone."""
    try:
        yield
    except BaseException:
        if made is not None:
            with contextlib.suppress(OSError):
                if [p.name for p in made.iterdir()] == [lock.name]:
                    lock.unlink()
                    made.rmdir()
        raise


def _say_what_is_kept(outputs: TrainOutputs, again: str, resume: str) -> None:
    """Set what an interrupt (or a crash) of the training says it leaves: the checkpoint and the
    command that continues from it where there is one, else that the same command starts over."""
    if outputs.checkpoint.exists():
        set_interrupt_note(f"the epochs completed are saved in {outputs.checkpoint}")
        set_resume_hint(resume)
    elif outputs.finished():
        set_interrupt_note(f"the training had finished: its results are in {outputs.metrics}")
    else:
        set_interrupt_note(f"no epoch had finished, so nothing was saved; the same command starts over: {again}")


def _main(argv: Sequence[str] | None, prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    again, resume_command = _command_lines(prog, argv)
    set_interrupt_note(f"the training had not begun; run the same command again: {again}")

    def say(line: str) -> None:  # on stderr, with --json too: its stdout stays one JSON object
        print(f"{prog}: {line}", file=sys.stderr)

    if args.warmup_epochs > args.epochs:  # the default (1) never is: --epochs is at least 1
        raise UsageError(f"--warmup-epochs {args.warmup_epochs:g} is longer than the whole training (--epochs {args.epochs}); give at most {args.epochs}")
    cores = os.cpu_count() or 1
    if args.threads is not None and args.threads > cores:
        say(f"note: --threads {args.threads} on {cores} cores: the threads share the cores and the training runs slower than with"
            f" --threads {cores} (or leave --threads out for all cores)")
    from mobilenas.space.io import load_architecture
    from mobilenas.train.data import load_dataset
    from mobilenas.train.full import ExportFailed, FullTrainConfig, TrainOutputs, train_full

    arch = load_architecture(args.arch)
    initial = None
    if args.weights is not None:
        from mobilenas.train.weights import load_weights

        args.weights = args.weights.expanduser().resolve()  # one name for the file, whichever way it was written: resume compares it
        initial = load_weights(args.weights)  # a missing or unreadable file: one line, before the data is read
    taken = _take_arch_data_options(args, prog)
    data = load_dataset(
        args.dataset, data_dir=args.data_dir, seed=args.seed, train_size=args.train_size, val_size=args.val_size,
        test_size=args.test_size, image_size=args.image_size, channels=args.channels,
    )
    if args.weights is not None:
        from mobilenas.train.provenance import in_run, normalise_like_weights, weights_data_note

        use = "trains and validates on"
        own = in_run(args.weights, args.arch)
        note = taken.split_note("ARCH", use, data) if taken is not None and own else None if own else weights_data_note(args.weights, data, use)
        if note:
            say(note)
        data = normalise_like_weights(data, args.weights, args.arch, say)
    config = FullTrainConfig(
        epochs=args.epochs,
        optimizer=args.optimizer,
        learning_rate=args.lr if args.lr is not None else LEARNING_RATES[args.optimizer] * (FINETUNE_LR_FRACTION if initial is not None else 1.0),
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        warmup_epochs=args.warmup_epochs,
        batch_size=args.batch_size,
        augment=not args.no_augment,
        ema_decay=args.ema if args.ema else None,
        patience=args.patience,
        threads=args.threads,
        device=args.device,
        seed=args.seed,
    )
    folder, prefix = output_location(args.arch, data.name, args.out, finetune=initial is not None)
    check_writable_folder(folder, f"--out {folder}" if args.out else f"the output folder {folder} (choose another with --out)")  # before any training
    from mobilenas.space.io import result_input_size

    timed_at = result_input_size(args.arch)  # the size a search or NetAdapt run timed ARCH at; None for other inputs
    export_size = args.export_size or timed_at or data.input_size
    timed = export_size == timed_at  # the network whose latency that run measured
    if not args.no_onnx and export_size > data.input_size:  # at the training's size or below, the training needed more
        _check_export_memory(arch, data, export_size, typed=args.export_size is not None)
    outputs = TrainOutputs.at(folder, prefix)
    progress = not args.quiet and not args.json
    if progress:
        print(f"{prog}: training {args.arch} on {data.name} ({data.sizes()['train']} train / {data.sizes()['val']} val / "
              f"{data.sizes()['test']} test, {data.input_size}x{data.input_size}x{data.in_channels}) -> {folder}/{prefix}.*", file=sys.stderr)
        if initial is not None:
            how = "--lr" if args.lr is not None else f"a tenth of {args.optimizer}'s default; --lr to choose"
            print(f"{prog}: starting from the weights {args.weights} (peak learning rate {config.learning_rate:g}, {how})", file=sys.stderr)
        elif not args.resume:
            from mobilenas.train.weights import result_weights

            named = result_weights(args.arch)
            if named is not None and named.is_file():
                print(f"{prog}: from random weights; to fine-tune the weights {args.arch} names instead, add --weights {shlex.quote(str(named))}", file=sys.stderr)
    if export_size != data.input_size:
        say(f"note: the ONNX model and preprocessing are for {export_size} px ({_export_why(args.export_size is not None, timed)}); "
            f"{_export_note(arch, data, export_size, timed)}")
    # one training at a time into these files: a second one started meanwhile (the same ARCH twice,
    # or --resume of one still going) had written over the first's result
    busy = f"{folder / prefix}.* are being written by another nas-train{{by}}; let it finish or stop it" + ("" if args.resume else ", or give this one another --out")
    made = None if outputs.lock.parent.exists() else outputs.lock.parent  # the folder --out names, made here
    outputs.lock.parent.mkdir(parents=True, exist_ok=True)
    with _no_empty_folder_left(made, outputs.lock), hold_lock(outputs.lock, busy):
        try:
            result = train_full(
                arch, data, config, outputs, resume=args.resume, export_onnx=not args.no_onnx, progress=progress, source=args.arch,
                initial=initial, initial_source=None if args.weights is None else str(args.weights), export_size=export_size,
                export_timed=timed, log=say, search_folders=[output_location(args.arch, data.name, None, finetune=initial is not None)[0]],
            )
        except ExportFailed as failed:  # the same command with --resume fails the same way: say what to change
            words = _without_option(list(sys.argv[1:] if argv is None else argv), "--export-size")
            words += [] if "--resume" in words else ["--resume"]
            smaller = max(data.input_size, failed.export_size // 4)
            raise UsageError(f"{failed}; continue with a smaller --export-size, or with --no-onnx: "
                             f"{prog} {shlex.join([*words, '--export-size', str(smaller)])}") from None
        except BaseException:  # Ctrl-C, out of memory: say what is kept, and the command that continues
            _say_what_is_kept(outputs, again, resume_command)
            raise
    summary: dict[str, Any] = {
        "status": result.status,
        "error": result.error,
        "val_accuracy": result.metrics["val_accuracy"],
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "resumed_from_epoch": result.metrics["resumed_from_epoch"],
        "stopped_early": result.metrics["stopped_early"],
        "wall_time_s": result.wall_time_s,
        "adaptation": result.metrics["adaptation"],
        "files": {**result.metrics["files"], "metrics": str(outputs.metrics.resolve())},
    }
    if args.json:
        print_json(summary)
    else:
        if result.ok:
            stopped = ""
            if summary["stopped_early"]:
                stopped = (f"; stopped early after epoch {result.epochs_run} of {args.epochs}: no better validation accuracy for"
                           f" {counted(result.epochs_run - result.best_epoch, 'epoch')}, --patience {args.patience}")
            print(f"test accuracy {result.test_accuracy:.4f} (validation {summary['val_accuracy']:.4f}, epoch {result.best_epoch} of {result.epochs_run}{stopped}) "
                  f"in {result.wall_time_s / 60:.1f} min")
        for name, path in summary["files"].items():
            if name == "failed_weights":  # kept, not a result
                print(f"  the failed training's best weights (epoch {result.best_epoch}, validation {summary['val_accuracy']:.4f}): {path}")
            else:
                print(f"  {name:<8} {path}")
    if not result.ok:
        print(f"{prog}: error: {result.error}", file=sys.stderr)
        return 1
    return 0


def _without_option(words: list[str], option: str) -> list[str]:
    """``words`` without ``option`` and its value (``--option V`` or ``--option=V``)."""
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == option:
            skip = True
        elif not word.startswith(option + "="):
            kept.append(word)
    return kept


def _check_export_memory(arch: Architecture, data: DataSplits, export_size: int, *, typed: bool) -> None:
    """Refuse, before training, an ONNX export that would not fit in memory (``--export-size 60000``
    had trained, then failed "out of memory", and the resume it advised failed the same way)."""
    from mobilenas.train.data import usable_memory
    from mobilenas.train.full import export_memory_bytes
    from mobilenas.train.proxy import prepare_architecture

    memory = usable_memory()
    if memory is None:
        return
    need = export_memory_bytes(prepare_architecture(arch, data)[0], export_size)  # the builder adapts it to that size
    if need is not None and need > 0.8 * memory:
        what = f"--export-size {export_size}" if typed else f"{export_size} px, the size the latency of the run that wrote ARCH is of,"
        raise UsageError(f"{what}: exporting the ONNX model at {export_size}x{export_size} would take about {need / 2**30:,.1f} GiB of memory,"
                         f" more than the {memory / 2**30:,.1f} GiB here allow; give a smaller --export-size, or --no-onnx")


def _export_why(typed: bool, timed: bool) -> str:
    if typed:
        return "--export-size" + (", the size the latency of the run that wrote ARCH is of" if timed else "")
    return "the size the latency of the run that wrote ARCH is of; --export-size to choose"


def _export_note(arch: Architecture, data: DataSplits, export_size: int, timed: bool) -> str:
    """What the exported network is, beside the one trained: the strides the builder set to 1 at
    each size, and, for the size a search or NetAdapt run timed, what to do before shipping it."""
    from mobilenas.space.builder import adapt_for_input_size
    from mobilenas.train.data import trained_elsewhere
    from mobilenas.train.proxy import prepare_architecture

    prepared, _ = prepare_architecture(arch, data)
    trained = adapt_for_input_size(prepared, data.input_size)[1]
    deployed = adapt_for_input_size(prepared, export_size)[1]
    return str(trained_elsewhere(data.input_size, export_size, trained, timed=timed, deployed_adaptation=deployed)["note"])


if __name__ == "__main__":
    sys.exit(main())
