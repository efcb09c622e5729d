"""NetAdapt's long trainings keep their finished epochs: a kill during the training from scratch or
the final fine-tune loses at most the epoch under way, and the resumed run ends with the weights of
one never killed; a checkpoint of another training (an extended run's earlier network) is not used.

In process, on a tiny network and tiny data, with a latency model that counts channels (nothing
is timed); a kill is a KeyboardInterrupt (Ctrl-C) raised just after an epoch's checkpoint is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mobilenas.netadapt.core import Schedule
from mobilenas.netadapt.groups import prunable_groups
from mobilenas.netadapt.run import (
    FINAL_TRAINING,
    PRETRAIN_TRAINING,
    Refinement,
    Settings,
    derive_seed,
    load_into,
)
from mobilenas.netadapt.training import DataTrainer, TrainingSettings
from mobilenas.results import load_run
from mobilenas.results.cli import main as nas_results
from mobilenas.runs import RunDir
from mobilenas.space import Architecture
from mobilenas.train import engine, load_dataset
from mobilenas.train.weights import load_weights

from helpers import tiny_arch

EPOCHS = 3


class ChannelLatency:
    """Latency = the sum of the prunable groups' widths, in ms: deterministic, instant."""

    input_size = 16
    measured_entries = 0

    def predict(self, arch: Architecture) -> float:
        return float(sum(group.width for group in prunable_groups(arch)))

    def measure(self, arch: Architecture, predicted: float | None = None) -> float | None:
        return self.predict(arch)

    def measure_side_by_side(self, archs: list[Architecture]) -> list[float | None]:
        return [self.predict(arch) for arch in archs]

    def describe(self) -> dict[str, Any]:
        return {"table": None, "device_fingerprint": "test"}


@pytest.fixture(scope="module")
def trainer() -> DataTrainer:
    data = load_dataset("synthetic", train_size=64, val_size=32, test_size=32, image_size=16)  # 4 steps an epoch
    return DataTrainer(data, TrainingSettings(batch_size=16, threads=1, bn_recalibration_images=32, eval_batch_size=32))


def _settings() -> Settings:
    start = ChannelLatency().predict(tiny_arch())
    return Settings(
        budget_ms=0.5 * start, start_latency_ms=start, schedule=Schedule(0.05, 1.0), granularity=4, finetune_steps=2,
        final_epochs=EPOCHS, pretrain_epochs=EPOCHS, max_iterations=1, threads=1,
    )


def _refinement(out: Path, trainer: DataTrainer, log: list[str], notes: list[str] | None = None) -> Refinement:
    """A new run in ``out`` (one iteration at most), or the run there, as ``netadapt refine --resume`` opens it."""
    latency = ChannelLatency()
    if (out / "manifest.json").exists():
        refinement = Refinement(RunDir.open(out), Settings.from_dict(RunDir.open(out).manifest()["settings"]), trainer, latency, log=log.append)
    else:
        refinement = Refinement.create(out, {"seed": 0}, _settings(), trainer, latency, log=log.append)
    if notes is not None:
        refinement.interrupt_note = notes.append
    return refinement


def _run(refinement: Refinement) -> Path:
    if not refinement.lines():
        refinement.record_start(tiny_arch(), None)  # trained from scratch first
    refinement.finish(refinement.iterate_until_budget())
    return refinement.run.root


@pytest.fixture(scope="module")
def reference(trainer: DataTrainer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(_refinement(tmp_path_factory.mktemp("reference") / "run", trainer, []))


class Killed(KeyboardInterrupt):
    pass


def _killed_after_epoch(monkeypatch: pytest.MonkeyPatch, name: str, step: int) -> None:
    """Ctrl-C as soon as the checkpoint ``name`` is written at ``step`` (the training it keeps goes no further)."""
    save = engine.save_torch

    def saved_then_killed(path: str | Path, state: dict[str, Any]) -> None:
        save(path, state)
        if Path(path).name == name and state.get("step") == step:
            raise Killed

    monkeypatch.setattr(engine, "save_torch", saved_then_killed)


def _same_weights(first: Path, second: Path) -> bool:
    one, other = load_weights(first), load_weights(second)
    return one.keys() == other.keys() and all(torch.equal(one[k], other[k]) for k in one)


def test_a_kill_in_a_long_training_loses_only_the_epoch_under_way(
    reference: Path, trainer: DataTrainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out, log, notes = tmp_path / "run", [], []
    pretrain, final = out / "checkpoints" / PRETRAIN_TRAINING, out / "checkpoints" / FINAL_TRAINING

    # killed in the second epoch of the training from scratch
    refinement = _refinement(out, trainer, log, notes)
    with monkeypatch.context() as patch, pytest.raises(Killed):
        _killed_after_epoch(patch, PRETRAIN_TRAINING, 4)
        refinement.record_start(tiny_arch(), None)
    assert torch.load(pretrain, weights_only=True)["step"] == 4 and not refinement.lines()
    assert notes == [f"completed work is saved, the finished epochs of the training of the starting network included ({pretrain})"]
    assert load_run(out).long_training_in_progress == ("the training of the starting network", 1, EPOCHS)  # what nas-results show tells
    # resumed (as netadapt refine --resume does with a run that has no iteration 0 yet): from epoch 1,
    # to the starting weights of a run never killed; the checkpoint goes once iteration 0 is recorded
    refinement = _refinement(out, trainer, log, notes)
    refinement.record_start(tiny_arch(), None)
    assert "resuming the training of the starting network from its checkpoint: epoch 1 of 3 done" in log
    assert _same_weights(out / "checkpoints" / "iteration-000.pt", reference / "checkpoints" / "iteration-000.pt")
    assert not pretrain.exists() and notes[-1] == "completed work is saved"

    # killed in the second epoch of the final fine-tune, after the iteration
    with monkeypatch.context() as patch, pytest.raises(Killed):
        _killed_after_epoch(patch, FINAL_TRAINING, 4)
        _run(refinement)
    assert torch.load(final, weights_only=True)["step"] == 4 and not (out / "refined.pt").exists()
    assert notes[-1] == f"completed work is saved, the finished epochs of the final fine-tune included ({final})"
    assert load_run(out).long_training_in_progress == ("the final fine-tune", 1, EPOCHS)
    assert nas_results(["show", str(out)]) == 0
    assert f"goes on (the final fine-tune: 1 of its {EPOCHS} epochs done, kept)" in capsys.readouterr().out
    log.clear()
    _run(_refinement(out, trainer, log, notes))
    assert "resuming the final fine-tune from its checkpoint: epoch 1 of 3 done" in log
    assert _same_weights(out / "refined.pt", reference / "refined.pt")  # as if never killed
    assert not final.exists() and notes[-1] == "completed work is saved"
    assert load_run(out).long_training_in_progress is None


def test_a_kill_after_the_final_training_ended_does_not_train_it_again(reference: Path, trainer: DataTrainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, log = tmp_path / "run", []
    refinement = _refinement(out, trainer, log)
    with monkeypatch.context() as patch, pytest.raises(Killed):
        _killed_after_epoch(patch, FINAL_TRAINING, 4 * EPOCHS)  # before its evaluation and refined.*
        _run(refinement)
    assert not (out / "refined.pt").exists()
    _run(_refinement(out, trainer, log))
    assert "resuming the final fine-tune from its checkpoint: all 3 epochs done" in log
    assert _same_weights(out / "refined.pt", reference / "refined.pt")


def test_an_extended_runs_final_training_does_not_continue_the_earlier_networks(trainer: DataTrainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, log = tmp_path / "run", []
    final = out / "checkpoints" / FINAL_TRAINING
    with monkeypatch.context() as patch, pytest.raises(Killed):  # killed in the final fine-tune of iteration 1's network
        _killed_after_epoch(patch, FINAL_TRAINING, 8)
        _run(_refinement(out, trainer, log))
    assert torch.load(final, weights_only=True)["step"] == 8
    # resumed with --max-iterations 2: the final training is iteration 2's network's, and starts over
    refinement = _refinement(out, trainer, log)
    refinement.extend(2)
    log.clear()
    _run(refinement)
    last = refinement.current_point()
    assert last.iteration == 2
    assert not any(line.startswith("resuming the final fine-tune") for line in log)
    assert f"{final} holds another training (its architecture, iteration differ): the final fine-tune starts over" in log
    # its weights: iteration 2's network fine-tuned for all the epochs from its own weights
    expected = load_into(last.definition, last.state, trainer.input_size)
    assert trainer.train(expected, EPOCHS, derive_seed(0, "final")).status == "ok"
    refined = load_weights(out / "refined.pt")
    assert refined.keys() == expected.state_dict().keys()
    assert all(torch.equal(refined[k], v.contiguous()) for k, v in expected.state_dict().items())
    assert not final.exists()


def test_ctrl_c_in_a_long_training_says_its_finished_epochs_are_kept(trainer: DataTrainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """netadapt refine's Ctrl-C message, during the training from scratch of a new run (before
    iteration 0: it named no resume then, though a resume goes on from the finished epochs)."""
    from mobilenas.cliutil import run_main
    from mobilenas.netadapt.cli import _on_interrupt

    out = tmp_path / "run"

    def refine(argv: object) -> int:
        refinement = _refinement(out, trainer, [])
        _on_interrupt(refinement)  # as netadapt refine does once the run folder is made
        _killed_after_epoch(monkeypatch, PRETRAIN_TRAINING, 4)
        refinement.record_start(tiny_arch(), None)
        return 0

    assert run_main(refine, [], "netadapt refine") == 130
    assert capsys.readouterr().err.strip() == (
        f"netadapt refine: interrupted; completed work is saved, the finished epochs of the training of the starting network included"
        f" ({out / 'checkpoints' / PRETRAIN_TRAINING}); continue with: netadapt refine --resume {out}"
    )
