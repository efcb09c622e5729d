"""Proxy-task training: score an architecture by a short, deterministic training.

:func:`train_proxy` builds an :class:`Architecture` for the data set (classifier resized to its
classes, stem to its channels, early strides removed for small images by
:func:`mobilenas.space.builder.adapt_for_input_size`), trains it for :class:`ProxyConfig`'s
budget on a fixed stratified subset of the training split, and measures accuracy on a fixed
subset of the validation split. :func:`train_model` continues training any module (NetAdapt's
short fine-tunes) and :func:`evaluate` measures accuracy and loss.

Deterministic: for one ``config.seed``, one data set and one thread count, two calls give the
same weights and the same accuracy on the CPU (checked by the tests). Thread counts change
the order of floating-point reductions, so results with 1 and 2 threads differ in the last
digits, as do results on another CPU model (oneDNN picks kernels by instruction set); a short
proxy training amplifies such digits (one network of ``benchmarks/train_default_trial.md`` scored
0.151 on one machine and 0.181 on another, with the same training code, seed and thread count).
On a GPU, cuDNN may be nondeterministic.

Safe in a worker process: nothing global changes. The thread count is set for the duration of
the call and restored; the global torch generator is forked; the working directory is not
touched. A training whose loss becomes NaN or explodes returns ``status="failed"`` with the
reason in ``error``; it never raises into the caller.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mobilenas.space.arch import Architecture
from mobilenas.space.builder import Network, build_model
from mobilenas.space.cost import count_params
from mobilenas.torchutil import torch_threads
from mobilenas.train import engine
from mobilenas.train.choices import (
    PROXY_BATCH_SIZE,
    PROXY_STEPS,
    PROXY_TRAIN_SUBSET,
    PROXY_VAL_SUBSET,
)
from mobilenas.train.data import DataSplits, Split

STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclass(frozen=True)
class ProxyConfig:
    """Everything a proxy training depends on; the defaults are the measured CPU default.

    Budget: exactly one of ``steps`` (optimisation steps of ``batch_size`` images) or ``epochs``
    (passes over the training subset, may be fractional). Subsets: ``train_subset`` and
    ``val_subset`` images (stratified, fixed by the data set's seed, so every candidate of a search
    sees the same images); ``None`` uses the whole split. The learning rate warms up linearly over
    ``warmup_fraction`` of the steps to ``learning_rate``, then follows a cosine to
    ``final_lr_fraction * learning_rate``. Before evaluation the batch-norm statistics are
    recomputed on ``bn_recalibration_images`` training images (0 = keep the running averages):
    the builder's slow batch-norm momentum would otherwise leave them near their initial values
    after a short training.
    """

    optimizer: str = "adamw"
    learning_rate: float = 0.002
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    warmup_fraction: float = 0.1
    final_lr_fraction: float = 0.0
    batch_size: int = PROXY_BATCH_SIZE
    steps: int | None = PROXY_STEPS
    epochs: float | None = None
    train_subset: int | None = PROXY_TRAIN_SUBSET
    val_subset: int | None = PROXY_VAL_SUBSET
    eval_batch_size: int = 250
    bn_recalibration_images: int = 500
    grad_clip_norm: float | None = 5.0
    augment: bool = False
    channels_last: bool = True
    threads: int | None = 1
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        self.optimiser_settings()  # checks optimizer, learning_rate, momentum, weight_decay
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"give exactly one of steps or epochs (got steps={self.steps}, epochs={self.epochs})")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.epochs is not None and not (math.isfinite(self.epochs) and self.epochs > 0):
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        for name in ("label_smoothing", "warmup_fraction", "final_lr_fraction"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.bn_recalibration_images < 0:
            raise ValueError(f"bn_recalibration_images must be >= 0, got {self.bn_recalibration_images}")
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_subset", "val_subset", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ValueError(f"grad_clip_norm must be > 0 or None, got {self.grad_clip_norm}")
        engine.check_device(self.device)

    def total_steps(self, num_train_images: int) -> int:
        """Optimisation steps this config runs on a training subset of that many images."""
        if self.steps is not None:
            return self.steps
        assert self.epochs is not None
        per_epoch = engine.steps_per_epoch(num_train_images, self.batch_size)
        return max(1, round(self.epochs * per_epoch))

    def optimiser_settings(self) -> engine.OptimiserSettings:
        return engine.OptimiserSettings(self.optimizer, self.learning_rate, self.momentum, self.weight_decay, self.nesterov)

    def schedule(self, total_steps: int) -> engine.Schedule:
        return engine.Schedule(self.learning_rate, total_steps, round(self.warmup_fraction * total_steps), self.final_lr_fraction)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProxyConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown proxy config keys {unknown} (allowed: {', '.join(sorted(names))})")
        return cls(**data)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_model` did. ``status`` is ``ok`` or ``failed`` (``error`` says why).
    ``resumed_from_step``: the step a training continued from its checkpoint began at (0: from
    the beginning)."""

    status: str
    steps: int
    images: int
    train_loss: float
    wall_time_s: float
    images_per_s: float
    error: str | None = None
    resumed_from_step: int = 0

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


@dataclass(frozen=True)
class ProxyResult:
    """The outcome of :func:`train_proxy`.

    ``accuracy`` is the validation accuracy as a fraction (0..1; 0.0 when ``status == "failed"``)
    and ``loss`` the validation cross-entropy (NaN when failed). ``images_per_s`` is the training
    throughput; ``wall_time_s`` covers building, training and evaluating. ``adaptation`` lists what
    was changed to fit the data (``head.num_classes=10``, ``stem.in_channels=1``, the strides
    removed for small inputs). ``state_dict`` holds the trained weights when asked for with
    ``keep_weights=True`` (for ``build_for_data(arch, data).load_state_dict(...)``).
    """

    status: str
    accuracy: float
    loss: float
    train_loss: float
    wall_time_s: float
    train_time_s: float
    eval_time_s: float
    images_per_s: float
    steps: int
    images_seen: int
    epochs: float
    params: int
    adaptation: tuple[str, ...]
    seed: int
    error: str | None = None
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (the weights left out)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "state_dict"}
        data["adaptation"] = list(self.adaptation)
        return data


# --------------------------------------------------------------------------- building


def prepare_architecture(arch: Architecture, data: DataSplits) -> tuple[Architecture, tuple[str, ...]]:
    """Fit ``arch`` to the data set's classes and channels; returns it and what changed.

    The input-size adaptation is the builder's (:func:`build_model` with ``input_size``); this only
    resizes the classifier to ``data.num_classes`` and the stem to ``data.in_channels``.
    """
    changes: list[str] = []
    if arch.head.num_classes != data.num_classes:
        arch = arch.with_num_classes(data.num_classes)
        changes.append(f"head.num_classes={data.num_classes}")
    if arch.stem.in_channels != data.in_channels:
        arch = arch.with_in_channels(data.in_channels)
        changes.append(f"stem.in_channels={data.in_channels}")
    return arch, tuple(changes)


def build_for_data(arch: Architecture, data: DataSplits) -> Network:
    """The network as the trainers build it for ``data``: :func:`prepare_architecture`, then
    ``build_model(arch, input_size=data.input_size)``. ``model.adaptation`` records every change.

    Uses the global torch generator for the initial weights; seed it (or use :func:`train_proxy`,
    which does) for reproducible weights.
    """
    prepared, changes = prepare_architecture(arch, data)
    model = build_model(prepared, input_size=data.input_size)
    model.adaptation = changes + model.adaptation
    return model


# --------------------------------------------------------------------------- training


def _training_split(data: DataSplits | Split, subset: int | None) -> Split:
    split = data.train if isinstance(data, DataSplits) else data
    seed = data.seed if isinstance(data, DataSplits) else 0
    return split.subset(subset, seed=seed)


def _num_classes(data: DataSplits | Split) -> int:
    if isinstance(data, DataSplits):
        return data.num_classes
    return int(data.labels.max()) + 1 if len(data) else 2


@dataclass(frozen=True)
class TrainingCheckpoint:
    """Where :func:`train_model` keeps a long training's finished epochs, so that a kill loses at
    most the epoch under way.

    ``path``: the file, written atomically after every epoch and at the end (the model and
    optimiser state, the step reached, the running loss and totals). ``identity``: what the
    training is of (its purpose, the architecture's fingerprint, the seed...); the training's own
    settings (learning rate, batch size, optimiser, total steps, number of images...) are added to
    it. A call whose identity equals the file's continues from its step (the file at the last step:
    the training had finished, nothing is run again); a file of another identity, or one that
    cannot be read, is deleted and the training starts over. ``name`` names the training in the
    lines given to ``log`` ("the final fine-tune"). The caller deletes the file once what the
    training was for is saved.
    """

    path: Path
    identity: dict[str, Any]
    name: str = "the training"
    log: Callable[[str], None] | None = field(default=None, compare=False)


CHECKPOINT_VERSION = 1


def train_model(
    model: nn.Module,
    data: DataSplits | Split,
    config: ProxyConfig,
    *,
    steps: int | None = None,
    epochs: float | None = None,
    progress: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    checkpoint: TrainingCheckpoint | None = None,
) -> TrainResult:
    """Continue training ``model`` in place (e.g. NetAdapt's short fine-tune) with a fresh optimiser.

    Reads the training split of ``data`` (its ``config.train_subset`` subset). The budget is
    ``steps`` or ``epochs`` when given, else the config's. Optimiser, schedule (warm-up + cosine
    over this call's steps), label smoothing, threads, seed and data order come from ``config``.
    Divergence returns ``status="failed"`` and leaves the model in whatever state it reached.
    ``on_step(step, loss)`` is called after every optimisation step (a scheduler's hook: the
    search reports the running loss to Ray Tune's early stopping through it).

    ``checkpoint``: keep every finished epoch there and continue from it (see
    :class:`TrainingCheckpoint`). The weights are the same, bit for bit, as without it and as
    without an interruption: the data order and dropout of an epoch, the augmentation and learning
    rate of a step are functions of the seed and the epoch or step (:func:`engine.run_steps`), and
    the running loss the divergence check smooths is carried from epoch to epoch and kept in the
    file. The result's figures are then of the whole training, the part done before a resume
    included (``resumed_from_step`` says where this call began). A diverged training deletes its
    file: resumed, it would diverge the same way.
    """
    if steps is not None and epochs is not None:
        raise ValueError("give steps or epochs, not both")
    if steps is not None or epochs is not None:
        config = dataclasses.replace(config, steps=steps, epochs=epochs)
    split = _training_split(data, config.train_subset)
    total = config.total_steps(len(split))
    per_epoch = engine.steps_per_epoch(len(split), config.batch_size)
    num_classes = _num_classes(data)
    device = torch.device(config.device)
    identity: dict[str, Any] = {}
    saved: dict[str, Any] | None = None
    if checkpoint is not None:
        settings = {k: v for k, v in config.to_dict().items() if k not in ("threads", "device")}  # may change on a resume
        identity = {**checkpoint.identity, "training": {**settings, "total_steps": total, "train_images": len(split), "num_classes": num_classes}}
        saved = _saved_training(checkpoint, identity, total)
    bar = None
    with torch_threads(config.threads):
        optimizer = engine.make_optimizer(model, config.optimiser_settings())
        first = 0
        loss_sum, images, wall_time_s, running = 0.0, 0, 0.0, None
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            first = int(saved["step"])
            loss_sum, images, wall_time_s, running = float(saved["loss_sum"]), int(saved["images"]), float(saved["wall_time_s"]), saved["running_loss"]
            assert checkpoint is not None
            if checkpoint.log is not None:
                count = _epochs(total, per_epoch)
                done = f"all {count} epochs done" if first == total and count > 1 else f"epoch {_epochs(first, per_epoch)} of {count} done"
                checkpoint.log(f"resuming {checkpoint.name} from its checkpoint: {done}")

        def counted(step: int, loss: float) -> None:  # the sum in step order, as run_steps adds it up
            nonlocal loss_sum
            loss_sum += loss
            if on_step is not None:
                on_step(step, loss)

        hook = counted if checkpoint is not None else on_step
        if progress:
            from mobilenas.cliutil import progress as progress_bar

            bar = progress_bar(total=total, initial=first, desc="training", unit="step")
            mean = engine.MeanLoss()
            inner = hook

            def hook(step: int, loss: float) -> None:
                assert bar is not None
                bar.update(1)
                bar.set_postfix(loss=f"{mean.add(loss):.3f}", refresh=False)
                if inner is not None:
                    inner(step, loss)

        # one call for the whole training, or (keeping a checkpoint) one per epoch
        stops = [*range(per_epoch * (first // per_epoch + 1), total, per_epoch), total] if checkpoint is not None else [total]
        start = time.perf_counter()
        step = first
        try:
            for stop in stops if first < total else []:
                outcome = engine.run_steps(
                    model, optimizer, split, schedule=config.schedule(total), batch_size=config.batch_size,
                    first_step=step, last_step=stop, seed=config.seed, augment_images=config.augment,
                    label_smoothing=config.label_smoothing, grad_clip_norm=config.grad_clip_norm,
                    channels_last=config.channels_last, device=device,
                    num_classes=num_classes, on_step=hook, running_loss=running,
                )
                step, running = stop, outcome.running_loss
                images += outcome.images
                if checkpoint is not None:
                    engine.save_torch(checkpoint.path, {
                        "version": CHECKPOINT_VERSION, "identity": identity, "step": step, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(), "running_loss": running, "loss_sum": loss_sum, "images": images,
                        "wall_time_s": wall_time_s + time.perf_counter() - start,
                    })
        except engine.Diverged as error:
            elapsed = time.perf_counter() - start
            if checkpoint is not None:
                with contextlib.suppress(OSError):
                    Path(checkpoint.path).unlink(missing_ok=True)
            return TrainResult(STATUS_FAILED, 0, 0, math.nan, elapsed, 0.0, error=str(error))
        finally:
            if bar is not None:
                bar.close()
    if checkpoint is None:
        return TrainResult(
            STATUS_OK,
            steps=outcome.steps,
            images=outcome.images,
            train_loss=outcome.mean_loss,
            wall_time_s=outcome.wall_time_s,
            images_per_s=outcome.images / outcome.wall_time_s if outcome.wall_time_s > 0 else 0.0,
        )
    wall_time_s += time.perf_counter() - start
    return TrainResult(
        STATUS_OK,
        steps=total,
        images=images,
        train_loss=loss_sum / total,
        wall_time_s=wall_time_s,
        images_per_s=images / wall_time_s if wall_time_s > 0 else 0.0,
        resumed_from_step=first,
    )


def _epochs(steps: int, per_epoch: int) -> int:
    """Epochs begun in ``steps`` steps (a last, partial one counted)."""
    return -(-steps // per_epoch)


def _saved_training(checkpoint: TrainingCheckpoint, identity: dict[str, Any], total: int) -> dict[str, Any] | None:
    """The checkpoint file's contents if it holds this training, else ``None``; a file that does
    not (another training's, or unreadable) is deleted, with a line to ``checkpoint.log``."""
    path = Path(checkpoint.path)
    if not path.exists():
        return None
    why = None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values only: nothing runs
    except Exception as error:
        why = f"is not a readable checkpoint ({type(error).__name__})"
    else:
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            why = f"is not a training checkpoint (version {CHECKPOINT_VERSION})"
        elif state.get("identity") != identity:
            saved = state.get("identity")
            differing = sorted(k for k in {*identity, *(saved if isinstance(saved, dict) else {})} if not isinstance(saved, dict) or saved.get(k) != identity.get(k))
            why = f"holds another training (its {', '.join(differing)} differ{'s' if len(differing) == 1 else ''})"
        elif not (isinstance(state.get("step"), int) and 0 < state["step"] <= total):
            why = f"holds step {state.get('step')!r} of a {total}-step training"
    if why is None:
        return state
    if checkpoint.log is not None:
        checkpoint.log(f"{path} {why}: {checkpoint.name} starts over")
    with contextlib.suppress(OSError):
        path.unlink()
    return None


def evaluate(
    model: nn.Module,
    data: Split | tuple[torch.Tensor, torch.Tensor] | Iterable[tuple[torch.Tensor, torch.Tensor]],
    batch_size: int = 250,
    *,
    channels_last: bool = True,
    device: str | torch.device | None = None,
) -> tuple[float, float]:
    """``(accuracy, loss)`` of ``model`` in eval mode: accuracy a fraction 0..1, mean cross-entropy.

    ``data``: a :class:`Split` (normalised batch by batch), a pair of tensors (images already
    normalised ``float`` (N, C, S, S), labels (N,)), or any iterable of such batches (a
    ``DataLoader``). Runs on ``device`` (default: where the model's parameters are). The model's
    train/eval mode is restored afterwards.
    """
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
    if isinstance(data, Split):
        batches = data.batches(batch_size)
    elif isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor) and isinstance(data[1], torch.Tensor):
        images: torch.Tensor = data[0]
        labels: torch.Tensor = data[1]
        if not images.dtype.is_floating_point:
            raise ValueError("evaluate: pass normalised float images, or a Split (which normalises uint8 pixels)")
        batches = ((images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(images), batch_size))
    else:
        batches = data
    return engine.evaluate_batches(model, batches, channels_last=channels_last, device=device)


def train_proxy(
    arch: Architecture,
    data: DataSplits,
    config: ProxyConfig | None = None,
    *,
    progress: bool = False,
    keep_weights: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> ProxyResult:
    """Train ``arch`` briefly on ``data`` and measure its validation accuracy (see the module docstring).

    Never touches the test split. With ``keep_weights`` the result carries the trained
    ``state_dict`` (CPU tensors) for ``build_for_data(arch, data)``.
    """
    config = config or ProxyConfig()
    start = time.perf_counter()
    prepared, changes = prepare_architecture(arch, data)
    params = count_params(prepared)
    train_split = _training_split(data, config.train_subset)
    val_split = data.val.subset(config.val_subset, seed=data.seed)
    device = torch.device(config.device)
    with torch_threads(config.threads), engine.seeded(engine.derived_seed(config.seed, 0)):
        model = build_model(prepared, input_size=data.input_size)
        model.adaptation = changes + model.adaptation
        model = model.to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        trained = train_model(model, train_split, dataclasses.replace(config, train_subset=None), progress=progress, on_step=on_step)
        if not trained.ok:
            accuracy, loss, eval_time_s = 0.0, math.nan, 0.0
        else:
            eval_start = time.perf_counter()
            engine.recalibrate_batchnorm(
                model, train_split, num_images=config.bn_recalibration_images, batch_size=config.eval_batch_size,
                seed=config.seed, channels_last=config.channels_last, device=device,
            )
            accuracy, loss = evaluate(model, val_split, config.eval_batch_size, channels_last=config.channels_last, device=device)
            eval_time_s = time.perf_counter() - eval_start
    status, error = trained.status, trained.error
    if trained.ok and not math.isfinite(loss):
        status, error, accuracy = STATUS_FAILED, f"validation loss is {loss} (batch-norm statistics blew up)", 0.0
    weights = None
    if keep_weights and status == STATUS_OK:
        weights = engine.cpu_state_dict(model)
    return ProxyResult(
        status=status,
        accuracy=accuracy,
        loss=loss,
        train_loss=trained.train_loss,
        wall_time_s=time.perf_counter() - start,
        train_time_s=trained.wall_time_s,
        eval_time_s=eval_time_s,
        images_per_s=trained.images_per_s,
        steps=trained.steps,
        images_seen=trained.images,
        epochs=trained.images / len(train_split),
        params=params,
        adaptation=model.adaptation,
        seed=config.seed,
        error=error,
        state_dict=weights,
    )
