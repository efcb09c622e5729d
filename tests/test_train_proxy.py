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
