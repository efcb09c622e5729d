"""The training loop shared by proxy training, fine-tuning and full training.

Everything here is a pure function of its arguments: the data order of epoch ``e`` and the
augmentation of step ``s`` come from generators seeded by ``(seed, e)`` and ``(seed, s)``, and the
global torch generator (used only by dropout) is re-seeded at the start of every epoch, so a
training resumed from any epoch boundary continues exactly as the uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mobilenas.runs import atomic_write_bytes
from mobilenas.space.builder import fold_batchnorm
from mobilenas.train.choices import OPTIMIZERS
from mobilenas.train.data import Split

DIVERGENCE_FACTOR = 10.0  # running loss above this many times chance level (ln C) = diverged
LOSS_SMOOTHING = 0.9
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


class Diverged(RuntimeError):
    """The training loss became NaN/infinite or exploded; the training is abandoned."""


def check_device(name: str) -> torch.device:
    """``name`` as a torch device that this machine has, or a ``ValueError`` saying what to do.

    Checked when a training config is made, so ``--device cuda`` on a CPU-only PyTorch is one line
    before any data is loaded, not a traceback from the first tensor moved.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: this PyTorch ({torch.__version__}) sees no CUDA GPU; use --device cpu, or install a CUDA build of PyTorch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r}: MPS (Apple GPU) is not available here; use --device cpu")
    return device


@dataclass(frozen=True)
class Schedule:
    """Warm-up then cosine decay of the learning rate, per optimisation step."""

    peak: float
    total_steps: int
    warmup_steps: int
    final_fraction: float = 0.0

    def __call__(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based)."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.peak * self.final_fraction
        return floor + (self.peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class OptimiserSettings:
    """What :func:`make_optimizer` needs (a subset of every training config)."""

    optimizer: str
    learning_rate: float
    momentum: float
    weight_decay: float
    nesterov: bool

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name, value in (("learning_rate", self.learning_rate), ("weight_decay", self.weight_decay)):
            if value > FLOAT32_MAX:  # the optimisers' float32 arithmetic had raised "cannot be converted ... without overflow"
                raise ValueError(f"{name} must be at most {FLOAT32_MAX:.1e} (torch trains in float32), got {value:g}")


def make_optimizer(model: nn.Module, settings: OptimiserSettings) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum), RMSProp (TensorFlow-style, as MnasNet) or AdamW.

    Weight decay applies to convolution and linear weights only, never to batch-norm parameters
    or biases (the usual practice for MobileNets).
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    lr = settings.learning_rate
    if settings.optimizer == "sgd":
        nesterov = settings.nesterov and settings.momentum > 0
        return torch.optim.SGD(groups, lr=lr, momentum=settings.momentum, nesterov=nesterov)
    if settings.optimizer == "rmsprop":
        # TensorFlow's RMSProp as used by MnasNet/EfficientNet: decay 0.9, epsilon 1e-3.
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.9, eps=1e-3, momentum=settings.momentum)
    assert settings.optimizer == "adamw", settings.optimizer  # checked by OptimiserSettings
    return torch.optim.AdamW(groups, lr=lr)


def derived_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed for ``(seed, *parts)`` (for torch generators, which take one integer)."""
    value = int(seed) & 0xFFFFFFFFFFFF
    for part in parts:
        value = (value * 1_000_003 + int(part) + 0x9E3779B9) % (2**63 - 1)
    return value


def epoch_order(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of epoch ``epoch``: a permutation seeded by ``(seed, epoch)``."""
    generator = torch.Generator().manual_seed(derived_seed(seed, 1, epoch))
    return torch.randperm(num_images, generator=generator)


def augment(images: torch.Tensor, seed: int, step: int, padding: int = 4) -> torch.Tensor:
    """Random crop (zero padding of ``padding`` px) and horizontal flip of ``uint8`` (B, C, S, S)."""
    generator = torch.Generator().manual_seed(derived_seed(seed, 2, step))
    batch, _, size, _ = images.shape
    padded = nn.functional.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (batch, 2), generator=generator)
    flips = torch.rand(batch, generator=generator) < 0.5
    out = torch.empty_like(images)
    for i in range(batch):
        top, left = int(offsets[i, 0]), int(offsets[i, 1])
        crop = padded[i, :, top : top + size, left : left + size]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator inside the block and restore its state afterwards.

    The global generator is used by weight initialisation and dropout; forking it keeps the
    caller's random state untouched (no global side effects, as a Ray worker needs).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class ModelEma:
    """Exponential moving average of a model's weights (batch-norm statistics included).

    The effective decay warms up as ``min(decay, (1 + n) / (10 + n))`` over the first updates, as
    TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``, so a short training is not
    dominated by its random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        source = model.state_dict()
        for name, value in self.model.state_dict().items():
            new = source[name].detach()
            if value.dtype.is_floating_point:
                value.mul_(decay).add_(new, alpha=1.0 - decay)
            else:
                value.copy_(new)

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "updates": self.updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.updates = int(state["updates"])  # type: ignore[call-overload]
        self.model.load_state_dict(state["model"])  # type: ignore[arg-type]


class MeanLoss:
    """The mean of the step losses so far, as a progress bar's ``loss``: one step's loss jumps
    from batch to batch, and the mean at the end is what the run records as its ``train_loss``
    (an epoch's, for a full training), so the bar's last figure and the record agree."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, loss: float) -> float:
        """Count ``loss`` and return the mean so far."""
        self.total += loss
        self.count += 1
        return self.total / self.count


@dataclass(frozen=True)
class StepsOutcome:
    """What :func:`run_steps` did: the last step done, images, mean loss, time, and the running
    (smoothed) loss the divergence check ended with (``None`` when no step ran), for the next call
    of a training run in parts."""

    steps: int
    images: int
    mean_loss: float
    last_loss: float
    wall_time_s: float
    running_loss: float | None = None


def run_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    split: Split,
    *,
    schedule: Schedule,
    batch_size: int,
    first_step: int,
    last_step: int,
    seed: int,
    augment_images: bool,
    label_smoothing: float,
    grad_clip_norm: float | None,
    channels_last: bool,
    device: torch.device,
    num_classes: int,
    on_step: Callable[[int, float], None] | None = None,
    ema: ModelEma | None = None,
    running_loss: float | None = None,
) -> StepsOutcome:
    """Optimisation steps ``first_step .. last_step - 1`` over ``split`` (epochs of shuffled batches).

    Step ``s`` reads batch ``s % steps_per_epoch`` of epoch ``s // steps_per_epoch``; the last
    partial batch of an epoch is dropped so every step sees ``batch_size`` images (batch norm
    dislikes tiny batches). Raises :class:`Diverged` when the loss is not finite or the running
    loss exceeds ``DIVERGENCE_FACTOR * ln(num_classes)``; ``running_loss`` continues the running
    loss of an earlier call (the outcome's), so a training run in parts checks as one run whole.
    The global torch generator is forked, so the caller's random state is left as it was.
    """
    n = len(split)
    batch_size = min(batch_size, n)
    per_epoch = steps_per_epoch(n, batch_size)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    limit = DIVERGENCE_FACTOR * math.log(max(2, num_classes))
    model.train()
    start = time.perf_counter()
    total_loss = 0.0
    running = running_loss
    last = math.nan
    images_done = 0
    order: torch.Tensor | None = None
    order_epoch = -1
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        for step in range(first_step, last_step):
            epoch, position = divmod(step, per_epoch)
            if epoch != order_epoch:
                order = epoch_order(n, seed, epoch)
                order_epoch = epoch
                # Dropout draws from the global generator (forked above): re-seed per epoch so a
                # training resumed at an epoch boundary repeats it.
                torch.manual_seed(derived_seed(seed, 3, epoch, position))
            assert order is not None
            index = order[position * batch_size : (position + 1) * batch_size]
            raw = split.images[index]
            if augment_images:
                raw = augment(raw, seed, step)
            inputs = split.normalise(raw).to(device).contiguous(memory_format=fmt)
            targets = split.labels[index].to(device)
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(inputs), targets)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise Diverged(f"training loss became {value} at step {step + 1}")
            loss.backward()
            if grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
            optimizer.step()
            if ema is not None:
                ema.update(model)
            running = value if running is None else LOSS_SMOOTHING * running + (1 - LOSS_SMOOTHING) * value
            if running > limit:
                raise Diverged(f"training loss exploded to {running:.3g} (> {limit:.3g}) at step {step + 1}")
            total_loss += value
            last = value
            images_done += len(index)
            if on_step is not None:
                on_step(step, value)
    done = last_step - first_step
    return StepsOutcome(
        steps=done,
        images=images_done,
        mean_loss=total_loss / done if done else math.nan,
        last_loss=last,
        wall_time_s=time.perf_counter() - start,
        running_loss=running,
    )


def steps_per_epoch(num_images: int, batch_size: int) -> int:
    return max(1, num_images // min(batch_size, max(1, num_images)))


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    split: Split,
    *,
    num_images: int,
    batch_size: int,
    seed: int,
    channels_last: bool,
    device: torch.device,
) -> int:
    """Re-estimate every batch norm's running statistics on ``num_images`` training images.

    The builder's batch norms use TensorFlow's slow momentum (0.01 per step), so after a proxy's
    few hundred steps their running statistics still mostly reflect the initialisation and
    eval-mode accuracy is near chance. Recomputing them as an exact average over a few batches
    (with the weights fixed) is what one-shot NAS does before evaluating a sub-network. Returns
    the number of images used.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or num_images <= 0:
        return 0
    momenta = [m.momentum for m in norms]
    was_training = model.training
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    order = epoch_order(len(split), seed, -1)[: min(num_images, len(split))]
    used = 0
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average = the exact mean over the batches seen
        model.train()
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            if len(index) < 2:
                break
            model(split.normalise(split.images[index]).to(device).contiguous(memory_format=fmt))
            used += len(index)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return used


def save_torch(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` written atomically (readers see the old file or the whole new one)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s weights on the CPU in the default memory format."""
    return {name: value.detach().to("cpu", memory_format=torch.contiguous_format).clone() for name, value in model.state_dict().items()}


@torch.no_grad()
def evaluate_batches(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    channels_last: bool,
    device: torch.device,
) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy loss)`` of ``model`` (eval mode) over ``batches``.

    Runs a copy with the batch norms folded into the convolutions (:func:`fold_batchnorm`: the
    same outputs to float rounding, 1.3-1.7x faster on a CPU); ``model`` itself is not touched.
    """
    inference = fold_batchnorm(model)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    correct = 0
    total = 0
    loss_sum = 0.0
    for inputs, targets in batches:
        inputs = inputs.to(device).contiguous(memory_format=fmt)
        targets = targets.to(device)
        logits = inference(inputs)
        loss_sum += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(dim=1) == targets).sum())
        total += int(targets.numel())
    if total == 0:
        raise ValueError("cannot evaluate on an empty split")
    return correct / total, loss_sum / total
