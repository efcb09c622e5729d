"""Proxy training: determinism, no global side effects, divergence, learning, the model-level API."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenas.space import reference
from mobilenas.space.builder import build_model
from mobilenas.train import (
    ProxyConfig,
    build_for_data,
    evaluate,
    load_dataset,
    prepare_architecture,
    train_model,
    train_proxy,
)
from mobilenas.train.engine import Schedule

from helpers import tiny_arch

SMALL = ProxyConfig(steps=12, batch_size=16, learning_rate=0.01, train_subset=None, val_subset=None, eval_batch_size=64, bn_recalibration_images=64)


@pytest.fixture(scope="module")
def small_data():
    return load_dataset("synthetic", train_size=160, val_size=60, test_size=40, image_size=16)


def test_same_seed_same_result_other_seed_other_weights(small_data) -> None:
    first = train_proxy(tiny_arch(), small_data, SMALL, keep_weights=True)
    second = train_proxy(tiny_arch(), small_data, SMALL, keep_weights=True)
    assert first.ok and second.ok
    assert (first.accuracy, first.loss, first.train_loss) == (second.accuracy, second.loss, second.train_loss)
    assert first.state_dict is not None and second.state_dict is not None
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    other = train_proxy(tiny_arch(), small_data, dataclasses.replace(SMALL, seed=1), keep_weights=True)
    assert other.state_dict is not None
    assert not torch.equal(first.state_dict["stem.conv.weight"], other.state_dict["stem.conv.weight"])


def test_result_fields_and_weights_reload(small_data) -> None:
    result = train_proxy(reference("mobilenetv3-small"), small_data, dataclasses.replace(SMALL, steps=3), keep_weights=True)
    assert result.ok and result.error is None
    assert 0.0 <= result.accuracy <= 1.0 and np.isfinite(result.loss)
    assert result.steps == 3 and result.images_seen == 48 and result.epochs == pytest.approx(48 / 160)
    assert result.images_per_s > 0 and result.wall_time_s >= result.train_time_s + result.eval_time_s - 1e-6
    # 1000 classes -> 10; at 16x16 the stem and the first stride-2 block lose their stride.
    assert result.adaptation[0] == "head.num_classes=10"
    assert "stem.stride" in result.adaptation
    data_dict = result.to_dict()
    assert "state_dict" not in data_dict and isinstance(data_dict["adaptation"], list)
    with torch.random.fork_rng():
        model = build_for_data(reference("mobilenetv3-small"), small_data)
    assert model.adaptation == result.adaptation
    assert result.state_dict is not None
    model.load_state_dict(result.state_dict)
    accuracy, loss = evaluate(model, small_data.val.subset(None), 64)
    assert accuracy == pytest.approx(result.accuracy) and loss == pytest.approx(result.loss, rel=1e-4)


def test_no_global_side_effects(small_data, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    cwd = os.getcwd()
    train_proxy(tiny_arch(), small_data, dataclasses.replace(SMALL, steps=2, threads=2))
    assert torch.get_num_threads() == 1
    assert torch.equal(torch.get_rng_state(), state)
    assert os.getcwd() == cwd


def test_divergence_is_reported_not_raised(small_data) -> None:
    exploding = dataclasses.replace(SMALL, optimizer="sgd", learning_rate=1e9, grad_clip_norm=None, steps=20)
    result = train_proxy(tiny_arch(), small_data, exploding)
    assert result.status == "failed" and not result.ok
    assert result.accuracy == 0.0 and "loss" in (result.error or "")
    model = build_model(tiny_arch(), input_size=16)
    trained = train_model(model, small_data, exploding)
    assert trained.status == "failed" and "loss" in (trained.error or "")


@pytest.mark.slow
def test_learning_happens_on_the_synthetic_set() -> None:
    data = load_dataset("synthetic", train_size=2000, val_size=500, test_size=100)
    config = ProxyConfig(steps=300, learning_rate=0.01, train_subset=None, val_subset=None)
    result = train_proxy(tiny_arch(), data, config)
    assert result.ok
    assert result.accuracy > 0.25, result  # chance is 0.10
    assert result.accuracy < 0.9  # and the task is not trivial for a small network


def test_train_model_continues_and_evaluate_accepts_tensors_and_batches(small_data) -> None:
    torch.manual_seed(0)
    arch, changes = prepare_architecture(tiny_arch(num_classes=3), small_data)
    assert changes == ("head.num_classes=10",) and arch.head.num_classes == 10
    model = build_model(arch, input_size=small_data.input_size)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_model(model, small_data, SMALL, steps=5)
    assert result.ok and result.steps == 5 and result.images == 80
    assert not torch.equal(before["stem.conv.weight"], model.state_dict()["stem.conv.weight"])
    epochs = train_model(model, small_data.train, SMALL, epochs=1.0)
    assert epochs.steps == 160 // 16
    model.train()
    from_split = evaluate(model, small_data.val, 25)
    assert model.training  # the mode is restored
    images = torch.cat([x for x, _ in small_data.val.batches(60)])
    from_tensors = evaluate(model, (images, small_data.val.labels), 7)
    from_batches = evaluate(model, small_data.val.batches(13))
    assert from_split[0] == from_tensors[0] == from_batches[0]
    assert from_split[1] == pytest.approx(from_tensors[1], rel=1e-5)
    with pytest.raises(ValueError, match="normalised float"):
        evaluate(model, (small_data.val.images, small_data.val.labels))


def test_grayscale_data_gets_a_one_channel_stem(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "g.npz", x_train=rng.integers(0, 256, (80, 16, 16), dtype=np.uint8), y_train=np.arange(80) % 4)
    data = load_dataset(tmp_path / "g.npz", val_size=16, test_size=16)
    result = train_proxy(tiny_arch(), data, dataclasses.replace(SMALL, steps=2))
    assert result.ok and "stem.in_channels=1" in result.adaptation and "head.num_classes=4" in result.adaptation


def test_config_validation_and_schedule() -> None:
    with pytest.raises(ValueError, match="exactly one of steps or epochs"):
        ProxyConfig(steps=None, epochs=None)
    with pytest.raises(ValueError, match="optimizer"):
        ProxyConfig(optimizer="lion")
    with pytest.raises(ValueError, match="label_smoothing"):
        ProxyConfig(label_smoothing=1.5)
    with pytest.raises(ValueError, match="device"):
        ProxyConfig(device="toaster")
    assert ProxyConfig(steps=None, epochs=2.5, batch_size=10).total_steps(100) == 25
    assert ProxyConfig.from_dict(ProxyConfig().to_dict()) == ProxyConfig()
    with pytest.raises(ValueError, match="unknown proxy config keys"):
        ProxyConfig.from_dict({"stepz": 3})
    schedule = Schedule(peak=1.0, total_steps=100, warmup_steps=10)
    rates = [schedule(s) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(rates[9:]))  # cosine decays monotonically
    assert rates[-1] < 0.01


def test_progress_bar_shows_the_mean_loss(small_data, capsys: pytest.CaptureFixture[str]) -> None:
    # The bar's `loss` is the mean of the steps so far, so its last figure is the train_loss the
    # result records (one step's loss, shown before, jumps from batch to batch)
    torch.manual_seed(0)
    model = build_model(prepare_architecture(tiny_arch(), small_data)[0], input_size=small_data.input_size)
    steps: list[float] = []
    result = train_model(model, small_data, SMALL, steps=6, progress=True, on_step=lambda step, loss: steps.append(loss))
    shown = re.findall(r"loss=([0-9.]+)", capsys.readouterr().err)
    assert result.ok and len(steps) == 6 and shown
    assert shown[-1] == f"{result.train_loss:.3f}" == f"{sum(steps) / 6:.3f}" != f"{steps[-1]:.3f}"


# --------------------------------------------------------------------------- epoch checkpoints

#: 64 images in batches of 16: 4 steps an epoch, 3 epochs; dropout and augmentation on, so that
#: their seeding by epoch and step is part of what must repeat
EPOCHS = ProxyConfig(steps=None, epochs=3, batch_size=16, learning_rate=0.01, train_subset=None, val_subset=None, augment=True)


@pytest.fixture(scope="module")
def epoch_data():
    return load_dataset("synthetic", train_size=64, val_size=20, test_size=20, image_size=16)


def _dropout_arch():
    arch = tiny_arch()
    return dataclasses.replace(arch, head=dataclasses.replace(arch.head, dropout=0.3))


def _fresh(data, seed: int = 0) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_for_data(_dropout_arch(), data)


def _same(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    one, other = first.state_dict(), second.state_dict()
    return one.keys() == other.keys() and all(torch.equal(one[k], other[k]) for k in one)


class _Killed(KeyboardInterrupt):
    """Ctrl-C at a chosen step (after that step's epoch checkpoint, if any, was written)."""


def _kill_at(step: int):
    def on_step(at: int, loss: float) -> None:
        if at == step:
            raise _Killed
    return on_step


def test_a_checkpointed_training_is_the_same_in_epochs_and_when_resumed(epoch_data, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.train.proxy import TrainingCheckpoint

    whole = _fresh(epoch_data)
    expected = train_model(whole, epoch_data, EPOCHS)
    assert expected.ok and expected.steps == 12

    # run epoch by epoch, keeping each: the same weights and figures as in one go
    lines: list[str] = []
    path = tmp_path / "training.pt"
    chunked = _fresh(epoch_data)
    result = train_model(chunked, epoch_data, EPOCHS, checkpoint=TrainingCheckpoint(path, {"purpose": "test"}, log=lines.append))
    assert result.ok and _same(chunked, whole)
    assert (result.steps, result.images, result.train_loss, result.resumed_from_step) == (12, 192, expected.train_loss, 0)
    saved = torch.load(path, weights_only=True)
    assert saved["step"] == 12 and saved["identity"]["purpose"] == "test" and lines == []

    # killed in epoch 2: the next call goes on from the end of epoch 1 (from other initial weights:
    # the checkpoint's are used) with the optimiser's state, to the weights of a training never stopped
    path.unlink()
    with pytest.raises(_Killed):
        train_model(_fresh(epoch_data), epoch_data, EPOCHS, on_step=_kill_at(6), checkpoint=TrainingCheckpoint(path, {"purpose": "test"}))
    assert torch.load(path, weights_only=True)["step"] == 4
    capsys.readouterr()
    resumed = _fresh(epoch_data, seed=1)
    steps: list[int] = []
    result = train_model(resumed, epoch_data, EPOCHS, progress=True, on_step=lambda step, loss: steps.append(step),
                         checkpoint=TrainingCheckpoint(path, {"purpose": "test"}, name="the long one", log=lines.append))
    assert result.ok and _same(resumed, whole)
    assert lines == ["resuming the long one from its checkpoint: epoch 1 of 3 done"]
    assert steps == list(range(4, 12)) and result.resumed_from_step == 4
    assert (result.steps, result.images, result.train_loss) == (12, 192, expected.train_loss)  # the whole training's
    assert re.search(r"training:\s+33%\|[^\n\r]*\| 4/12 ", capsys.readouterr().err)  # the bar starts where the training goes on

    # a checkpoint of the finished training: nothing is trained again
    again = _fresh(epoch_data, seed=2)
    result = train_model(again, epoch_data, EPOCHS, on_step=_kill_at(0), checkpoint=TrainingCheckpoint(path, {"purpose": "test"}, log=lines.append))
    assert result.ok and result.resumed_from_step == 12 and _same(again, whole)
    assert lines[-1] == "resuming the training from its checkpoint: all 3 epochs done"


def test_a_checkpoint_of_another_training_is_not_used(epoch_data, tmp_path: Path) -> None:
    from mobilenas.train.proxy import TrainingCheckpoint

    whole = _fresh(epoch_data)
    train_model(whole, epoch_data, EPOCHS)
    path = tmp_path / "training.pt"
    train_model(_fresh(epoch_data, seed=5), epoch_data, EPOCHS, checkpoint=TrainingCheckpoint(path, {"purpose": "other", "iteration": 1}))
    assert path.is_file()
    lines: list[str] = []
    model = _fresh(epoch_data)
    result = train_model(model, epoch_data, EPOCHS, checkpoint=TrainingCheckpoint(path, {"purpose": "this", "iteration": 1}, name="the final fine-tune", log=lines.append))
    assert result.ok and result.resumed_from_step == 0 and _same(model, whole)
    assert lines == [f"{path} holds another training (its purpose differs): the final fine-tune starts over"]
    # the training's own settings are part of its identity: another learning rate starts over too
    lines.clear()
    other_rate = dataclasses.replace(EPOCHS, learning_rate=0.02)
    result = train_model(_fresh(epoch_data), epoch_data, other_rate, checkpoint=TrainingCheckpoint(path, {"purpose": "this", "iteration": 1}, log=lines.append))
    assert result.resumed_from_step == 0 and lines == [f"{path} holds another training (its training differs): the training starts over"]
    # so does a file that is not a checkpoint (a torn copy, say)
    path.write_bytes(b"not a checkpoint")
    lines.clear()
    model = _fresh(epoch_data)
    result = train_model(model, epoch_data, EPOCHS, checkpoint=TrainingCheckpoint(path, {"purpose": "this", "iteration": 1}, log=lines.append))
    assert result.resumed_from_step == 0 and _same(model, whole)
    assert len(lines) == 1 and lines[0].startswith(f"{path} is not a readable checkpoint (") and lines[0].endswith("): the training starts over")


def test_divergence_is_checked_across_epochs_as_in_one_training(epoch_data, tmp_path: Path) -> None:
    """The running loss the check smooths goes on from epoch to epoch (and is kept in the file),
    not started afresh at each: a training in epochs fails where the whole one does."""
    from mobilenas.train.engine import DIVERGENCE_FACTOR, Diverged, make_optimizer, run_steps
    from mobilenas.train.proxy import TrainingCheckpoint

    exploding = dataclasses.replace(EPOCHS, optimizer="sgd", learning_rate=1e4, grad_clip_norm=None)
    expected = train_model(_fresh(epoch_data), epoch_data, exploding)
    path = tmp_path / "training.pt"
    result = train_model(_fresh(epoch_data), epoch_data, exploding, checkpoint=TrainingCheckpoint(path, {"purpose": "test"}))
    assert not expected.ok and (result.status, result.error) == (expected.status, expected.error)
    assert not path.exists()  # resumed, it would only diverge again
    model = _fresh(epoch_data)
    arguments = dict(
        schedule=Schedule(0.01, 8, 0), batch_size=16, seed=0, augment_images=False, label_smoothing=0.0, grad_clip_norm=None,
        channels_last=False, device=torch.device("cpu"), num_classes=10,
    )
    outcome = run_steps(model, make_optimizer(model, EPOCHS.optimiser_settings()), epoch_data.train, first_step=0, last_step=4, **arguments)
    assert outcome.running_loss is not None and 0 < outcome.running_loss < DIVERGENCE_FACTOR * np.log(10)
    with pytest.raises(Diverged, match=r"exploded .* at step 5"):  # a running loss handed over high enough is one already diverged
        run_steps(model, make_optimizer(model, EPOCHS.optimiser_settings()), epoch_data.train, first_step=4, last_step=8, running_loss=1e6, **arguments)
