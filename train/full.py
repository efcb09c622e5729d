"""Full training: train an architecture to convergence, with checkpoints, resume, EMA and export.

:func:`train_full` is what ``nas-train`` runs. It trains for ``epochs`` (warm-up + cosine),
evaluates on the validation split after every epoch, keeps the weights of the best validation
epoch (optionally the EMA of the weights), stops early after ``patience`` epochs without
improvement, and at the end evaluates those weights once on the test split, exports ONNX and
writes the weights and a metrics JSON. After every epoch a checkpoint (model, optimiser, EMA,
best weights, history) is written atomically, so an interrupted training continues with
``resume=True`` exactly as it would have gone on (data order, augmentation and dropout are
functions of the seed and the epoch).

Files, for ``outputs = TrainOutputs.at(out_dir, prefix)``: ``<prefix>.pt`` (a ``state_dict``
for ``build_model(arch, input_size=...)`` of the architecture in the metrics), ``<prefix>.onnx``,
``<prefix>.metrics.json`` and, while training, ``<prefix>.checkpoint.pt``. A training that
fails (diverges) writes no result weights and no ONNX: its metrics say why, the best weights it
had before (if an epoch finished) are kept as ``<prefix>.failed.pt``, and its checkpoint is
removed, since resuming it would fail the same way (the training is a function of its settings)
and a retry with other settings must start over.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mobilenas.runs import atomic_write_json, environment, now_iso, read_json
from mobilenas.space.arch import Architecture
from mobilenas.space.builder import adapt_for_input_size, build_model
from mobilenas.space.cost import architecture_cost
from mobilenas.torchutil import torch_threads
from mobilenas.train import engine
from mobilenas.train.data import DataSplits, preprocessing
from mobilenas.train.proxy import STATUS_FAILED, STATUS_OK, evaluate, prepare_architecture
from mobilenas.train.weights import load_strict
from mobilenas.units import format_duration

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class FullTrainConfig:
    """Hyper-parameters of a full training (defaults: a CIFAR-style recipe that fits a CPU).

    ``ema_decay``: keep an exponential moving average of the weights with this decay per step and
    select, test and export it (``None``: no EMA). ``patience``: stop after that many epochs
    without a better validation accuracy (``None``: run all epochs). ``threads``: ``None`` keeps
    torch's default (all cores).
    """

    epochs: int = 30
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    final_lr_fraction: float = 0.0
    batch_size: int = 128
    augment: bool = True
    ema_decay: float | None = None
    patience: int | None = None
    grad_clip_norm: float | None = 5.0
    eval_batch_size: int = 250
    bn_recalibration_images: int = 500
    channels_last: bool = True
    threads: int | None = None
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        self.optimiser_settings()  # checks optimizer, learning_rate, momentum, weight_decay
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        engine.check_device(self.device)

    def optimiser_settings(self) -> engine.OptimiserSettings:
        return engine.OptimiserSettings(self.optimizer, self.learning_rate, self.momentum, self.weight_decay, self.nesterov)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resumable_with(self, other: FullTrainConfig) -> list[str]:
        """Fields that differ from ``other`` and would change the training (threads may differ)."""
        ignored = {"threads", "device", "eval_batch_size"}
        return [f.name for f in dataclasses.fields(self) if f.name not in ignored and getattr(self, f.name) != getattr(other, f.name)]


@dataclass(frozen=True)
class TrainOutputs:
    """Where a full training writes its files."""

    weights: Path
    onnx: Path
    metrics: Path
    checkpoint: Path

    @classmethod
    def at(cls, out_dir: str | Path, prefix: str) -> TrainOutputs:
        root = Path(out_dir)
        return cls(root / f"{prefix}.pt", root / f"{prefix}.onnx", root / f"{prefix}.metrics.json", root / f"{prefix}.checkpoint.pt")

    def finished(self) -> bool:
        """Whether the metrics file records a training that ended well (a diverged one does not
        block a rerun; an unreadable one counts as finished: it is not overwritten unasked)."""
        if not self.metrics.exists():
            return False
        try:
            status = read_json(self.metrics).get("status", STATUS_OK)
        except (OSError, ValueError, AttributeError):
            return True
        return bool(status == STATUS_OK)

    @property
    def lock(self) -> Path:
        """Held by the process training into these files (:func:`mobilenas.runs.hold_lock`)."""
        return self.weights.with_name("." + self.weights.name.removesuffix(".pt") + ".lock")

    @property
    def failed_weights(self) -> Path:
        """Where a failed training keeps the best weights it had before it failed (not a result)."""
        return self.weights.with_name(self.weights.name.removesuffix(".pt") + ".failed.pt")


@dataclass(frozen=True)
class FullTrainResult:
    """The outcome of :func:`train_full` (also written to the metrics JSON)."""

    status: str
    val_accuracy: float
    test_accuracy: float
    test_loss: float
    best_epoch: int
    epochs_run: int
    wall_time_s: float
    metrics: dict[str, Any]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


def train_full(
    arch: Architecture,
    data: DataSplits,
    config: FullTrainConfig,
    outputs: TrainOutputs,
    *,
    resume: bool = False,
    export_onnx: bool = True,
    progress: bool = False,
    source: str | None = None,
    initial: Mapping[str, torch.Tensor] | None = None,
    initial_source: str | None = None,
    export_size: int | None = None,
    export_timed: bool = False,
    log: Callable[[str], None] | None = None,
    search_folders: Sequence[Path] = (),
) -> FullTrainResult:
    """Train, checkpoint every epoch, test, export (see the module docstring).

    With ``resume`` an existing checkpoint is continued (it must be for the same architecture,
    data set and configuration; with no checkpoint, or only a failed training's metrics, the
    training starts from the beginning, and ``log`` says so); without it an existing checkpoint is
    an error, so nothing computed is overwritten by accident. Finished results (the metrics file
    of a training that ended well) are never overwritten. ``source`` names the architecture in
    the metrics. ``log`` receives one-line notes (resumed from where; started from scratch, naming
    an unfinished training of the same architecture in the output folder or in ``search_folders``:
    the one a ``--resume`` with other options probably meant). The metrics' ``resumed_from_epoch``
    is the checkpoint's epoch, ``None`` for a training that began here.

    ``initial``: a state dict to start from instead of random weights (a fine-tune), loaded
    strictly; ``initial_source`` (its file) is kept in the metrics and checked on resume.

    ``export_size``: the input size the ONNX model is exported at and the ``preprocessing`` is for
    (default: the data's): the deployment size of the search or NetAdapt run that wrote the
    architecture, whose latency is of the network at that size (the strides the builder set to 1 for
    smaller training images are stride 2 again there; the weights are the same). ``export_timed``:
    ``export_size`` is the size a search or NetAdapt run timed the architecture at (its latency is
    of that network), so the metrics' note about the other training size advises as for such a
    result; otherwise it states only the sizes and the strides that differ.
    """
    prepared, changes = prepare_architecture(arch, data)
    identity = {
        "architecture": prepared.fingerprint(),
        "data": {k: v for k, v in data.summary().items() if k not in ("description", "source")},
        "initial": None if initial is None else (initial_source or "given weights"),
    }
    checkpoint: dict[str, Any] | None = None
    if outputs.checkpoint.exists():
        if not resume:
            raise ValueError(
                f"{outputs.checkpoint} holds an unfinished training; pass --resume to continue it, or delete it to start again"
            )
        checkpoint = _load_checkpoint(outputs.checkpoint)
        _check_resumable(checkpoint, identity, config, outputs.checkpoint)
        if log is not None:
            log(f"resuming from {outputs.checkpoint}: epoch {int(checkpoint['epoch'])} of {config.epochs} done")
    elif outputs.finished():
        if resume:
            if outputs.weights.exists():
                further = f"to train it further, fine-tune its weights instead of --resume: --weights {shlex.quote(str(outputs.weights))}"
            else:
                further = "its weights are not there; delete it to train again"
            raise ValueError(f"{outputs.metrics} already exists: that training finished, there is nothing to resume; {further}")
        raise ValueError(f"{outputs.metrics} already exists (a finished training); choose another --out, or delete it to train again")
    elif resume and log is not None:  # nothing to continue: started as without --resume
        failed = " (the training there failed; its metrics say why)" if outputs.metrics.exists() else ""
        log(f"no checkpoint at {outputs.checkpoint}{failed}: starting from scratch{_unfinished_elsewhere(arch, outputs, search_folders)}")

    start = time.perf_counter()
    elapsed_before = float(checkpoint["elapsed_s"]) if checkpoint else 0.0
    device = torch.device(config.device)
    train_split, val_split = data.train, data.val
    per_epoch = engine.steps_per_epoch(len(train_split), config.batch_size)
    total_steps = per_epoch * config.epochs
    schedule = engine.Schedule(config.learning_rate, total_steps, round(config.warmup_epochs * per_epoch), config.final_lr_fraction)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format

    with torch_threads(config.threads), engine.seeded(engine.derived_seed(config.seed, 0)):
        model = build_model(prepared, input_size=data.input_size)
        if initial is not None and checkpoint is None:
            load_strict(model, initial, f"the weights {initial_source}" if initial_source else "the initial weights",
                        weights_file=Path(initial_source) if initial_source else None)
        adaptation = changes + model.adaptation
        strides_changed = tuple(model.adaptation)
        model = model.to(device).to(memory_format=fmt)  # type: ignore[call-overload]
        optimizer = engine.make_optimizer(model, config.optimiser_settings())
        ema = engine.ModelEma(model, config.ema_decay) if config.ema_decay is not None else None
        history: list[dict[str, Any]] = []
        best_accuracy, best_epoch, best_state = -1.0, 0, None
        first_epoch = 0
        if checkpoint is not None:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            if ema is not None:
                ema.load_state_dict(checkpoint["ema"])
            history = list(checkpoint["history"])
            best_accuracy, best_epoch, best_state = checkpoint["best_accuracy"], checkpoint["best_epoch"], checkpoint["best_state"]
            first_epoch = int(checkpoint["epoch"])
        status, error = STATUS_OK, None
        stopped_early = False
        epoch_times: list[float] = []  # wall time of each epoch run now (training and validation): the ETA of the rest
        for epoch in range(first_epoch, config.epochs):
            if config.patience is not None and best_epoch and epoch - best_epoch >= config.patience:
                stopped_early = True
                break
            bar = None
            on_step = None
            epoch_start = time.perf_counter()
            if progress:
                from mobilenas.cliutil import progress as progress_bar

                bar = progress_bar(total=per_epoch, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step")
                mean = engine.MeanLoss()

                def on_step(step: int, loss: float, bar: Any = bar, mean: engine.MeanLoss = mean, epoch: int = epoch, epoch_start: float = epoch_start) -> None:
                    bar.update(1)
                    done = step + 1 - epoch * per_epoch
                    spent = time.perf_counter() - epoch_start
                    # an epoch as long as those before (the first: as its steps so far), less what this one has taken
                    per = sum(epoch_times) / len(epoch_times) if epoch_times else spent / done * per_epoch
                    bar.set_postfix({"loss": f"{mean.add(loss):.3f}", **_eta(per * (config.epochs - epoch) - spent)}, refresh=False)

            try:
                outcome = engine.run_steps(
                    model, optimizer, train_split, schedule=schedule, batch_size=config.batch_size,
                    first_step=epoch * per_epoch, last_step=(epoch + 1) * per_epoch, seed=config.seed,
                    augment_images=config.augment, label_smoothing=config.label_smoothing,
                    grad_clip_norm=config.grad_clip_norm, channels_last=config.channels_last, device=device,
                    num_classes=data.num_classes, on_step=on_step, ema=ema,
                )
            except engine.Diverged as diverged:
                status, error = STATUS_FAILED, (f"diverged in epoch {epoch + 1}: {diverged}; try a lower learning rate: the same command with"
                                                f" --lr {config.learning_rate / 10:g} starts over")
                if bar is not None:
                    bar.close()
                break
            evaluation_start = time.perf_counter()
            if bar is not None:  # the steps are done; what follows can take as long as they did (CIFAR-10: 5,000 images)
                bar.set_postfix_str(f"loss={outcome.mean_loss:.3f}, validating on {len(val_split):,} images", refresh=_interactive())
            # The averaged weights need their own statistics: the running ones the EMA averages
            # are the slow-momentum ones of weights an epoch old (it scored at chance with them).
            for evaluated in (model, *([ema.model] if ema is not None else [])):
                engine.recalibrate_batchnorm(
                    evaluated, train_split, num_images=config.bn_recalibration_images, batch_size=config.eval_batch_size,
                    seed=config.seed, channels_last=config.channels_last, device=device,
                )
            val_accuracy, val_loss = evaluate(model, val_split, config.eval_batch_size, channels_last=config.channels_last, device=device)
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": outcome.mean_loss,
                "val_accuracy": val_accuracy,
                "val_loss": val_loss,
                "learning_rate": schedule((epoch + 1) * per_epoch - 1),
                "images_per_s": outcome.images / outcome.wall_time_s if outcome.wall_time_s > 0 else 0.0,
                "wall_time_s": outcome.wall_time_s,
            }
            selected_accuracy, selected = val_accuracy, model
            if ema is not None:
                ema_accuracy, ema_loss = evaluate(ema.model, val_split, config.eval_batch_size, channels_last=config.channels_last, device=device)
                record["ema_val_accuracy"], record["ema_val_loss"] = ema_accuracy, ema_loss
                selected_accuracy, selected = ema_accuracy, ema.model
            history.append(record)
            epoch_times.append(time.perf_counter() - epoch_start)
            if bar is not None:
                # not redrawn here: close() draws the final line (redrawn, it was in a log file twice)
                left = sum(epoch_times) / len(epoch_times) * (config.epochs - epoch - 1)
                evaluation_s = time.perf_counter() - evaluation_start
                validated = f"{selected_accuracy:.3f}" + (f" ({format_duration(evaluation_s)})" if evaluation_s >= 1 else "")
                bar.set_postfix({"loss": f"{outcome.mean_loss:.3f}", "val": validated, **_eta(left)}, refresh=False)
                # the bar's time and rate (at close: steps / elapsed) are of the steps; the validation's time
                # is shown beside "val" (its last draw moves too: close() draws nothing for a bar never drawn since it began)
                bar.start_t += evaluation_s
                bar.last_print_t += evaluation_s
                bar.close()
            if selected_accuracy > best_accuracy:
                best_accuracy, best_epoch, best_state = selected_accuracy, epoch + 1, engine.cpu_state_dict(selected)
            engine.save_torch(outputs.checkpoint, {
                "version": CHECKPOINT_VERSION,
                "identity": identity,
                "config": config.to_dict(),
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "history": history,
                "best_accuracy": best_accuracy,
                "best_epoch": best_epoch,
                "best_state": best_state,
                "elapsed_s": elapsed_before + time.perf_counter() - start,
            })

        final = copy.deepcopy(model)
        test_accuracy, test_loss = math.nan, math.nan
        finishing = None
        if best_state is not None and status == STATUS_OK and progress:
            from mobilenas.cliutil import progress as progress_bar

            # testing (CIFAR-10: 10,000 images) and exporting had taken half a minute with nothing on the screen
            finishing = progress_bar(total=2 if export_onnx else 1, desc="test" + (" and export" if export_onnx else ""), unit="phase")
            finishing.set_postfix_str(f"testing on {len(data.test):,} images", refresh=_interactive())
        if best_state is not None and status == STATUS_OK:
            final.load_state_dict(best_state)
            test_accuracy, test_loss = evaluate(final, data.test, config.eval_batch_size, channels_last=config.channels_last, device=device)
            if finishing is not None:
                finishing.update(1)
        final = final.to("cpu").to(memory_format=torch.contiguous_format)
        final.eval()

    files: dict[str, str] = {}
    deployed_at = int(export_size or data.input_size)
    if best_state is not None and status != STATUS_OK:  # kept, but not as the result: no .pt, no .onnx
        engine.save_torch(outputs.failed_weights, best_state)
        files["failed_weights"] = str(outputs.failed_weights.resolve())
    elif best_state is not None:
        engine.save_torch(outputs.weights, engine.cpu_state_dict(final))
        files["weights"] = str(outputs.weights.resolve())  # absolute: read from anywhere
        if export_onnx:
            from mobilenas.space.export import export_onnx as export

            deployable = final
            if deployed_at != data.input_size:  # the network whose latency was asked for, with the trained weights
                deployable = build_model(prepared, input_size=deployed_at)
                load_strict(deployable, final.state_dict(), "the trained weights")
                deployable.eval()
            if finishing is not None:
                finishing.set_postfix_str(f"test {test_accuracy:.3f}; exporting the ONNX model at {deployed_at} px", refresh=_interactive())
            try:
                export(deployable, outputs.onnx, input_size=deployed_at, in_channels=data.in_channels, dynamic_batch=True)
            except (MemoryError, RuntimeError) as failure:
                from mobilenas.cliutil import out_of_memory

                if not out_of_memory(failure):
                    raise
                # the checkpoint stays: --resume tests and exports again, at another size or not at all
                raise ExportFailed(
                    f"the ONNX export at {deployed_at}x{deployed_at} px ran out of memory ({_first_line(failure)}); the trained weights are"
                    f" saved in {outputs.weights}, and {outputs.checkpoint} lets --resume export again without training",
                    deployed_at,
                ) from None
            files["onnx"] = str(outputs.onnx.resolve())
            if finishing is not None:
                finishing.update(1)
    if finishing is not None:
        finishing.set_postfix_str(f"test {test_accuracy:.3f}", refresh=False)
        finishing.close()
    wall_time_s = elapsed_before + time.perf_counter() - start
    cost = architecture_cost(final.arch, data.input_size)
    metrics: dict[str, Any] = {
        "kind": "mobilenas-train",
        "status": status,
        "error": error,
        "source": source,
        "initial_weights": identity["initial"],
        "resumed_from_epoch": int(checkpoint["epoch"]) if checkpoint is not None else None,
        "architecture": prepared.to_dict(),
        "notation": prepared.to_notation(),
        "fingerprint": prepared.fingerprint(),
        "input_size": data.input_size,
        "adaptation": list(adaptation),
        "params": cost.params,
        "macs": cost.macs,
        "dataset": data.summary(),
        "preprocessing": preprocessing(data.summary(), deployed_at, batch="N", adaptation=strides_changed, timed=export_timed,
                                       deployed_adaptation=adapt_for_input_size(prepared, deployed_at)[1]),
        "config": config.to_dict(),
        "selected": "ema" if ema is not None else "weights",
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "val_accuracy": best_accuracy if best_state is not None else None,
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "wall_time_s": wall_time_s,
        "history": history,
        "files": files,
        "finished": now_iso(),
        "environment": environment(),
    }
    atomic_write_json(outputs.metrics, metrics)
    # Finished: the weights and metrics are the result. Failed: resuming would fail again the same
    # way, and the checkpoint would refuse a retry with other settings; the metrics say what happened.
    outputs.checkpoint.unlink(missing_ok=True)
    if status == STATUS_OK:  # an earlier failed try's weights: superseded by this result
        outputs.failed_weights.unlink(missing_ok=True)
    return FullTrainResult(
        status=status,
        val_accuracy=best_accuracy if best_state is not None else math.nan,
        test_accuracy=test_accuracy,
        test_loss=test_loss,
        best_epoch=best_epoch,
        epochs_run=len(history),
        wall_time_s=wall_time_s,
        metrics=metrics,
        error=error,
    )


def _interactive() -> bool:
    """Whether stderr is a terminal: a bar redrawn there replaces its line; in a log file every redraw
    is a line of its own (the epoch's final line is drawn once, by close())."""
    import sys

    return sys.stderr.isatty()


class ExportFailed(ValueError):
    """The ONNX export after a finished training ran out of memory (``export_size``: at that size);
    the weights and the checkpoint are kept."""

    def __init__(self, message: str, export_size: int) -> None:
        super().__init__(message)
        self.export_size = export_size


def _first_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def export_memory_bytes(arch: Architecture, input_size: int) -> int | None:
    """About how much memory exporting ``arch`` at ``input_size`` px takes: the largest layer's
    input and output (float32, batch 1), measured by a forward pass on the meta device (shapes
    only, nothing allocated). ``None`` where that pass is not possible."""
    try:
        with torch.device("meta"):
            model = build_model(arch, input_size=input_size)
        model.eval()
        peak = 0

        def measure(module: torch.nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            nonlocal peak
            tensors = [t for t in (*inputs, output) if isinstance(t, torch.Tensor)]
            peak = max(peak, sum(t.numel() * t.element_size() for t in tensors))

        hooks = [m.register_forward_hook(measure) for m in model.modules() if not list(m.children())]
        with torch.no_grad():
            model(torch.zeros(1, arch.stem.in_channels, input_size, input_size, device="meta"))
        for hook in hooks:
            hook.remove()
    except Exception:  # an estimate: without it the export is simply tried)
        return None
    return peak


def _unfinished_elsewhere(arch: Architecture, outputs: TrainOutputs, search_folders: Sequence[Path]) -> str:
    """``; X holds an unfinished training of this architecture (...)``: a checkpoint of ``arch`` (on
    any data set, from any weights) in the output folder or ``search_folders``, the one a
    ``--resume`` whose data set, ``--weights`` or ``--out`` differ from the interrupted run's probably
    meant; ``""`` where there is none."""
    found: list[str] = []
    folders = list(dict.fromkeys(Path(f).resolve() for f in (outputs.checkpoint.parent, *search_folders) if Path(f).is_dir()))
    for folder in folders:
        for path in sorted(folder.glob("*.checkpoint.pt"))[:20]:
            if path.resolve() == outputs.checkpoint.resolve():
                continue
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values only: nothing runs
                identity, data = state["identity"], state["identity"]["data"]
                fitted = arch.with_num_classes(int(data["num_classes"])).with_in_channels(int(data["in_channels"]))
                if identity["architecture"] != fitted.fingerprint():
                    continue
                epochs = int(state["config"]["epochs"])
                started = identity.get("initial") or "random weights"
                found.append(f"{path} holds an unfinished training of this architecture ({data['name']}, from {started},"
                             f" {int(state['epoch'])} of {epochs} epochs done)")
            except Exception:  # (another file, or not a checkpoint of ours: not the one meant)
                continue
    if not found:
        return ""
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return (f"; {found[0]}{more}: to continue that one instead, stop this and resume it with the --dataset, --weights and --out"
            " it was started with")


def _eta(seconds: float) -> dict[str, str]:
    """The progress bar's ETA of the whole training, last in its postfix (``{}`` once nothing is left)."""
    return {"total ETA": format_duration(max(0.0, seconds))} if seconds > 0.5 else {}


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(f"{path}: not a readable checkpoint ({type(error).__name__}); delete it to start again") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: not a mobilenas training checkpoint (version {CHECKPOINT_VERSION}); delete it to start again")
    return state


# how nas-train's options name what a checkpoint records (the rest: --name-with-dashes)
_OPTION_NAMES = {
    "sizes.train": "--train-size", "sizes.val": "--val-size", "sizes.test": "--test-size", "name": "--dataset", "input_size": "--image-size",
    "in_channels": "--channels", "learning_rate": "--lr", "ema_decay": "--ema",
}


def _differences(saved: dict[str, Any], given: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    """'--train-size 512, not 256; --seed 0, not 1': what a checkpoint records that this command
    changes (``keys``: which to compare, default all; a data set's mean and std follow from the
    rest, so they are named only when nothing else differs)."""
    def flat(record: dict[str, Any]) -> dict[str, Any]:
        return {f"{k}.{i}": w for k, v in record.items() if isinstance(v, dict) for i, w in v.items()} | {k: v for k, v in record.items() if not isinstance(v, dict)}

    theirs, ours = flat(saved), flat(given)
    names = [k for k in dict.fromkeys([*theirs, *ours]) if (keys is None or k in keys) and theirs.get(k) != ours.get(k)]
    derived = ("mean", "std")
    names = [k for k in names if k not in derived] or names
    return "; ".join(_difference(k, theirs.get(k), ours.get(k)) for k in names)


# the settings nas-train turns on or off with a flag: (the flag, the setting's value with it)
_FLAGS = {"augment": ("--no-augment", False)}


def _difference(key: str, theirs: Any, ours: Any) -> str:
    """``--lr 0.1, not 0.05``; ``without --no-augment, not with it``; ``--ema left out, not 0.999``:
    the checkpoint's value first, as the user types the option."""
    if key in _FLAGS:
        flag, given = _FLAGS[key]
        return f"{'with' if theirs == given else 'without'} {flag}, not {'with' if ours == given else 'without'} it"

    def shown(value: Any) -> str:
        return "left out" if value is None else str(value)

    return f"{_OPTION_NAMES.get(key, '--' + key.replace('_', '-'))} {shown(theirs)}, not {shown(ours)}"


def _check_resumable(checkpoint: dict[str, Any], identity: dict[str, Any], config: FullTrainConfig, path: Path) -> None:
    if checkpoint["identity"]["architecture"] != identity["architecture"]:
        raise ValueError(f"{path} is a training of another architecture (fingerprint {checkpoint['identity']['architecture']}); choose another --out")
    if checkpoint["identity"]["data"] != identity["data"]:
        raise ValueError(f"{path} was trained on other data ({_differences(checkpoint['identity']['data'], identity['data'])}); resume with the same data set options, or delete it to start over with these")
    started_from = checkpoint["identity"].get("initial")  # absent in checkpoints of before nas-train --weights
    if started_from != identity.get("initial"):
        given = identity.get("initial") or "random weights"
        raise ValueError(f"{path} was started from {'random weights' if started_from is None else started_from}, this training from {given}; resume with the same --weights, or delete it to start over from these")
    saved = FullTrainConfig(**{**checkpoint["config"], "device": config.device})  # the device may differ (resumable_with), and need not exist here
    differing = config.resumable_with(saved)
    if differing:
        different = _differences(dataclasses.asdict(saved), dataclasses.asdict(config), differing)
        raise ValueError(f"{path} was started with other settings ({different}); resume with the same options, or delete it to start over with these")
