"""The :class:`~mobilenas.netadapt.run.Trainer` NetAdapt uses, on top of :mod:`mobilenas.train`.

Short-term fine-tunes, long fine-tunes and trainings from scratch all go through
:func:`mobilenas.train.proxy.train_model` (deterministic for a seed, divergence reported as a
failed status rather than raised), followed by a re-estimation of the batch-norm statistics on
training images (as the proxy trainer does before it evaluates); accuracy is :func:`mobilenas.train.proxy.evaluate` on the
held-out validation split (every decision) or the test split (final reporting only).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from mobilenas.netadapt.choices import DEFAULT_FINETUNE_LR, DEFAULT_OPTIMIZER, DEFAULT_TRAIN_LR
from mobilenas.netadapt.run import STATUS_OK, TrainResult
from mobilenas.space.builder import Network
from mobilenas.torchutil import torch_threads
from mobilenas.train import engine
from mobilenas.train.data import DataSplits
from mobilenas.train.proxy import ProxyConfig, TrainingCheckpoint, evaluate, train_model


@dataclass(frozen=True)
class TrainingSettings:
    """How NetAdapt trains (recorded in the manifest)."""

    optimizer: str = DEFAULT_OPTIMIZER
    finetune_lr: float = DEFAULT_FINETUNE_LR
    train_lr: float = DEFAULT_TRAIN_LR
    batch_size: int = 64
    augment: bool = False
    threads: int | None = None
    device: str = "cpu"
    eval_batch_size: int = 250
    bn_recalibration_images: int = 500

    def __post_init__(self) -> None:
        for name in ("finetune_lr", "train_lr"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.optimizer not in engine.OPTIMIZERS:
            raise ValueError(f"optimizer {self.optimizer!r} is not one of {', '.join(engine.OPTIMIZERS)}")
        engine.check_device(self.device)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


class DataTrainer:
    """Trains and evaluates networks on one loaded data set (picklable: Ray ships it to workers)."""

    def __init__(self, data: DataSplits, settings: TrainingSettings | None = None) -> None:
        self.data = data
        self.settings = settings or TrainingSettings()

    @property
    def input_size(self) -> int:
        return self.data.input_size

    def _config(self, learning_rate: float, seed: int, augment: bool) -> ProxyConfig:
        return ProxyConfig(
            optimizer=self.settings.optimizer,
            learning_rate=learning_rate,
            batch_size=self.settings.batch_size,
            train_subset=None,  # the data set was already cut to the sizes the user asked for
            val_subset=None,
            augment=augment,
            threads=self.settings.threads,
            device=self.settings.device,
            seed=seed,
            eval_batch_size=self.settings.eval_batch_size,
        )

    def fine_tune(self, model: Network, steps: int, seed: int) -> TrainResult:
        return self._train(model, self.settings.finetune_lr, seed, augment=False, steps=steps)

    def train(
        self, model: Network, epochs: int, seed: int, progress: bool = False, *, from_scratch: bool = False, checkpoint: TrainingCheckpoint | None = None
    ) -> TrainResult:
        """``epochs`` passes over the training split; with ``checkpoint``, every finished epoch is
        kept there and a training found there continues (:func:`mobilenas.train.proxy.train_model`)."""
        if epochs < 1:
            return TrainResult(STATUS_OK)
        return self._train(model, self._rate(from_scratch), seed, augment=self.settings.augment, epochs=float(epochs), progress=progress, checkpoint=checkpoint)

    def train_for_steps(self, model: Network, steps: int, seed: int, progress: bool = False, *, from_scratch: bool = False) -> TrainResult:
        """As :meth:`train`, for exactly ``steps`` optimisation steps (one learning-rate schedule)."""
        return self._train(model, self._rate(from_scratch), seed, augment=self.settings.augment, steps=steps, progress=progress)

    def _rate(self, from_scratch: bool) -> float:
        return self.settings.train_lr if from_scratch else self.settings.finetune_lr

    def _train(
        self, model: Network, learning_rate: float, seed: int, *, augment: bool, steps: int | None = None, epochs: float | None = None, progress: bool = False,
        checkpoint: TrainingCheckpoint | None = None,
    ) -> TrainResult:
        """Train in place, then recompute the batch-norm statistics (the builder's momentum of
        0.01 lags far behind a short training; :func:`mobilenas.train.engine.recalibrate_batchnorm`)."""
        config = self._config(learning_rate, seed, augment)
        model.to(self.settings.device, memory_format=torch.channels_last)  # type: ignore[call-overload]  # 1.4-1.9x faster on CPU
        result = train_model(model, self.data, config, steps=steps, epochs=epochs, progress=progress, checkpoint=checkpoint)
        if result.ok:
            with torch_threads(self.settings.threads):
                engine.recalibrate_batchnorm(
                    model, self.data.train, num_images=self.settings.bn_recalibration_images, batch_size=self.settings.eval_batch_size,
                    seed=seed, channels_last=True, device=torch.device(self.settings.device),
                )
        return TrainResult(result.status, result.error, result.wall_time_s, result.steps)

    def evaluate(self, model: Network) -> float:
        accuracy, _ = evaluate(model, self.data.val, self.settings.eval_batch_size)
        return accuracy

    def test(self, model: Network) -> float:
        accuracy, _ = evaluate(model, self.data.test, self.settings.eval_batch_size)
        return accuracy
