"""``nas-train``: outputs beside the architecture, ONNX that matches, resume after a kill, errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenas.space.builder import build_model
from mobilenas.space.export import onnxruntime_session
from mobilenas.space.io import load_architecture
from mobilenas.train import load_dataset
from mobilenas.train.cli import default_weights_path, main

from helpers import tiny_arch

DATA_ARGS = ["--train-size", "192", "--val-size", "64", "--test-size", "64", "--image-size", "16", "--batch-size", "32", "--threads", "1"]


def write_arch(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "net.json"
    path.write_text(tiny_arch().to_json())
    return path


def test_the_files_a_training_names_are_absolute_for_a_relative_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # they were relative to the folder nas-train ran in ('out/net.synthetic.pt'), in --json and in the metrics file
    arch_path = write_arch(tmp_path / "arch")
    monkeypatch.chdir(tmp_path)
    assert main([str(arch_path), "--epochs", "1", "--out", "out", "--json", *DATA_ARGS]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert files == {"weights": f"{tmp_path}/out/net.synthetic.pt", "onnx": f"{tmp_path}/out/net.synthetic.onnx", "metrics": f"{tmp_path}/out/net.synthetic.metrics.json"}
    assert json.loads((tmp_path / "out" / "net.synthetic.metrics.json").read_text())["files"] == {k: files[k] for k in ("weights", "onnx")}


def test_nas_train_writes_weights_metrics_and_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch_path = write_arch(tmp_path / "run")
    code = main([str(arch_path), "--epochs", "2", "--ema", "--json", *DATA_ARGS])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    prefix = tmp_path / "run" / "net.synthetic"
    assert summary["status"] == "ok" and 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["files"]["weights"] == f"{prefix}.pt"
    # where nas-search and netadapt tell users the weights will be
    assert default_weights_path(str(arch_path), "synthetic") == Path(f"{prefix}.pt")
    metrics = json.loads(Path(f"{prefix}.metrics.json").read_text())
    assert metrics["selected"] == "ema" and metrics["epochs_run"] == 2 and len(metrics["history"]) == 2
    assert "ema_val_accuracy" in metrics["history"][0]
    assert metrics["dataset"]["sizes"] == {"train": 192, "val": 64, "test": 64}
    assert metrics["test_accuracy"] == summary["test_accuracy"]
    assert not Path(f"{prefix}.checkpoint.pt").exists()  # finished: nothing left to resume
    # The metrics file is itself an architecture source, and the weights fit it.
    arch = load_architecture(f"{prefix}.metrics.json")
    model = build_model(arch, input_size=metrics["input_size"])
    model.load_state_dict(torch.load(f"{prefix}.pt"))
    model.eval()
    data = load_dataset("synthetic", train_size=192, val_size=64, test_size=64, image_size=16)
    images = torch.cat([x for x, _ in data.test.batches(64)])
    with torch.no_grad():
        expected = model(images).numpy()
    session = onnxruntime_session(f"{prefix}.onnx")
    (actual,) = session.run(None, {"input": images.numpy()})
    assert np.max(np.abs(actual - expected)) < 1e-4
    accuracy = float((torch.from_numpy(actual).argmax(1) == data.test.labels).float().mean())
    assert accuracy == pytest.approx(metrics["test_accuracy"])
    # A deployer feeds raw pixels prepared as the metrics say, and gets the same outputs.
    prepared = metrics["preprocessing"]
    assert prepared["input_shape"] == ["N", 3, 16, 16] and prepared["layout"] == "NCHW" and prepared["scale"] == "pixels / 255"
    mean, std = (np.asarray(prepared[k], dtype=np.float32).reshape(1, -1, 1, 1) for k in ("mean", "std"))
    (from_pixels,) = session.run(None, {"input": (data.test.images.numpy().astype(np.float32) / 255 - mean) / std})
    assert np.max(np.abs(from_pixels - actual)) < 1e-4
    # Training again into the same place refuses instead of overwriting the result.
    assert main([str(arch_path), "--epochs", "2", *DATA_ARGS]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([str(arch_path), "--resume", "--epochs", "2", *DATA_ARGS]) == 2
    assert capsys.readouterr().err.strip().endswith(f"there is nothing to resume; to train it further, fine-tune its weights instead of --resume: --weights {prefix}.pt")


@pytest.mark.slow
def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    common = ["--epochs", "4", "--ema", "0.9", "--quiet", *DATA_ARGS]
    straight = write_arch(tmp_path / "straight")
    assert main([str(straight), *common]) == 0
    reference = json.loads((tmp_path / "straight" / "net.synthetic.metrics.json").read_text())

    killed = write_arch(tmp_path / "killed")
    checkpoint = tmp_path / "killed" / "net.synthetic.checkpoint.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "mobilenas.train.cli", str(killed), *common], env=env)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "the training finished before it could be interrupted"
    saved = torch.load(checkpoint, weights_only=False)
    assert 1 <= saved["epoch"] < 4
    assert main([str(killed), *common]) == 2  # an unfinished training is never silently restarted
    assert main([str(killed), "--resume", *common]) == 0
    resumed = json.loads((tmp_path / "killed" / "net.synthetic.metrics.json").read_text())
    assert resumed["resumed_from_epoch"] == saved["epoch"] and reference["resumed_from_epoch"] is None
    def deterministic(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in h.items() if k not in ("wall_time_s", "images_per_s")} for h in history]

    assert deterministic(resumed["history"]) == deterministic(reference["history"])
    assert resumed["test_accuracy"] == reference["test_accuracy"]
    straight_weights = torch.load(tmp_path / "straight" / "net.synthetic.pt")
    resumed_weights = torch.load(tmp_path / "killed" / "net.synthetic.pt")
    assert all(torch.equal(straight_weights[k], resumed_weights[k]) for k in straight_weights)


def test_resume_refuses_other_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch_path = write_arch(tmp_path / "r")
    from mobilenas.train import FullTrainConfig, TrainOutputs, train_full

    data = load_dataset("synthetic", train_size=64, val_size=32, test_size=32, image_size=16)
    outputs = TrainOutputs.at(tmp_path / "r", "net.synthetic")
    # Leave an unfinished training behind: a finished one with its checkpoint put back.
    train_full(tiny_arch(), data, FullTrainConfig(epochs=1, batch_size=32, threads=1), outputs)
    torch.save({"version": 1, "identity": {"architecture": "0" * 16, "data": {}}, "config": {}}, outputs.checkpoint)
    code = main([str(arch_path), "--resume", "--quiet", "--epochs", "1", "--train-size", "64", "--val-size", "32", "--test-size", "32", "--image-size", "16"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another architecture" in err


def test_resume_refuses_other_data_and_other_settings(tmp_path: Path) -> None:
    from mobilenas.train.full import FullTrainConfig, _check_resumable

    config = FullTrainConfig(epochs=2, batch_size=32, threads=1)
    data = {"name": "synthetic", "sizes": {"train": 64, "val": 32, "test": 32}, "seed": 0, "mean": [0.3], "std": [0.2]}
    identity = {"architecture": "a" * 16, "data": data}
    checkpoint = {"identity": identity, "config": config.to_dict()}
    path = tmp_path / "checkpoint.pt"
    _check_resumable(checkpoint, identity, FullTrainConfig(epochs=2, batch_size=32, threads=2), path)  # threads may differ
    # what differs is named by its option, the checkpoint's value first; mean and std follow from the rest
    other = {**data, "sizes": {"train": 128, "val": 32, "test": 32}, "mean": [0.31], "std": [0.21]}
    with pytest.raises(ValueError, match=r"other data \(--train-size 64, not 128\); resume with the same data set options, or delete it to start over with these$"):
        _check_resumable(checkpoint, {**identity, "data": other}, config, path)
    with pytest.raises(ValueError, match=r"other data \(--mean \[0\.3\], not \[0\.31\]; --std \[0\.2\], not \[0\.21\]\)"):  # other files
        _check_resumable(checkpoint, {**identity, "data": {**data, "mean": [0.31], "std": [0.21]}}, config, path)
    with pytest.raises(ValueError, match=r"other settings \(--lr 0\.1, not 0\.05; --batch-size 32, not 16\)"):
        _check_resumable(checkpoint, identity, FullTrainConfig(epochs=2, batch_size=16, learning_rate=0.05, threads=1), path)
    # as typed: "--augment True, not False" (no such option) and "--ema None, not 0.999"
    with pytest.raises(ValueError, match=r"other settings \(without --no-augment, not with it; --ema left out, not 0\.999\); resume with the same options"):
        _check_resumable(checkpoint, identity, FullTrainConfig(epochs=2, batch_size=32, augment=False, ema_decay=0.999, threads=1), path)
    # a training started on a GPU resumes on this CPU (the device may differ): the checkpoint's device
    # was checked as if it were asked for here, and refused
    on_gpu = {"identity": identity, "config": {**config.to_dict(), "device": "cuda"}}
    _check_resumable(on_gpu, identity, config, path)


def test_a_diverged_training_can_be_run_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # its error says "try a lower learning rate"; the rerun was refused as "a finished training",
    # and --resume pointed at weights that were never written
    arch_path = write_arch(tmp_path / "d")
    argv = [str(arch_path), "--epochs", "1", "--no-onnx", "--quiet", *DATA_ARGS]
    assert main([*argv, "--lr", "1e12"]) == 1
    metrics = tmp_path / "d" / "net.synthetic.metrics.json"
    assert json.loads(metrics.read_text())["status"] != "ok" and not (tmp_path / "d" / "net.synthetic.pt").exists()
    capsys.readouterr()
    assert main([*argv, "--lr", "1e12", "--resume"]) == 1  # nothing to resume: started again (and failed again)
    assert "(the training there failed; its metrics say why): starting from scratch" in capsys.readouterr().err
    assert main([*argv, "--lr", "0.01"]) == 0
    assert json.loads(metrics.read_text())["status"] == "ok" and (tmp_path / "d" / "net.synthetic.pt").exists()


def test_a_second_training_into_the_same_files_is_refused_while_the_first_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two nas-train of one ARCH at once had both finished, the second's result over the first's."""
    from mobilenas.runs import hold_lock
    from mobilenas.train.full import TrainOutputs

    arch_path = write_arch(tmp_path / "d")
    argv = [str(arch_path), "--epochs", "1", "--no-onnx", "--quiet", *DATA_ARGS]
    outputs = TrainOutputs.at(tmp_path / "d", "net.synthetic")
    with hold_lock(outputs.lock, "held by the test"):  # what the first training holds while it runs
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"nas-train: error: {tmp_path / 'd' / 'net.synthetic'}.* are being written by another nas-train (pid {os.getpid()});"
                       " let it finish or stop it, or give this one another --out"), err
        assert not outputs.metrics.exists() and not outputs.checkpoint.exists()
    assert main(argv) == 0 and outputs.finished()


def test_weights_start_a_fine_tune(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    arch_path = write_arch(tmp_path / "f")
    assert main([str(arch_path), "--epochs", "1", "--quiet", "--no-onnx", *DATA_ARGS]) == 0
    trained = tmp_path / "f" / "net.synthetic.pt"
    start = torch.load(trained)
    # A learning rate of ~0 and no decay: the fine-tune ends where its weights began (random ones would not).
    argv = [str(arch_path), "--weights", str(trained), "--epochs", "1", "--lr", "1e-12", "--weight-decay", "0", "--no-onnx", *DATA_ARGS]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"starting from the weights {trained.resolve()} (peak learning rate 1e-12, --lr)" in err
    tuned = torch.load(tmp_path / "f" / "net.synthetic.finetune.pt")  # beside, not over, the training it started from
    convs = [k for k, v in start.items() if k.endswith("weight") and v.dim() == 4]
    assert convs and all(torch.allclose(start[k], tuned[k], atol=1e-6) for k in convs)
    metrics = json.loads((tmp_path / "f" / "net.synthetic.finetune.metrics.json").read_text())
    assert metrics["initial_weights"] == str(trained.resolve())
    assert json.loads((tmp_path / "f" / "net.synthetic.metrics.json").read_text())["initial_weights"] is None
    # A result file that names weights: nas-train says how to start from them (it trains from scratch).
    result = tmp_path / "f" / "refined.json"
    result.write_text(json.dumps({"architecture": tiny_arch().to_dict(), "weights": "net.synthetic.pt"}))  # relative to its folder
    assert main([str(result), "--epochs", "1", "--no-onnx", *DATA_ARGS]) == 0
    assert f"from random weights; to fine-tune the weights {result} names instead, add --weights {trained}" in capsys.readouterr().err
    # No --lr: a tenth of the optimiser's default peak rate. A relative --weights is kept absolute (resume compares it).
    monkeypatch.chdir(tmp_path / "f")
    assert main([str(arch_path), "--weights", "net.synthetic.pt", "--epochs", "1", "--quiet", "--no-onnx", "--out", str(tmp_path / "g"), *DATA_ARGS]) == 0
    metrics = json.loads((tmp_path / "g" / "net.synthetic.finetune.metrics.json").read_text())
    assert metrics["config"]["learning_rate"] == pytest.approx(0.01) and metrics["initial_weights"] == str(trained.resolve())


def test_the_weights_a_result_names(tmp_path: Path) -> None:
    from mobilenas.train.weights import result_weights

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "w.pt").write_bytes(b"")
    (tmp_path / "run" / "best.json").write_text(json.dumps({"architecture": {}, "weights": "w.pt"}))
    assert result_weights(str(tmp_path / "run")) == tmp_path / "run" / "w.pt"  # the folder, or its best.json
    assert result_weights(str(tmp_path / "run" / "best.json")) == tmp_path / "run" / "w.pt"
    (tmp_path / "arch.json").write_text(tiny_arch().to_json())
    assert result_weights(str(tmp_path / "arch.json")) is None  # an architecture, not a result
    assert result_weights("mobilenetv3-small") is None
    assert result_weights("x" * 300) is None  # longer than a file name: no OSError
    # a run folder moved or copied: its own weights, not those where it was (gone, or another run's)
    was = tmp_path / "was"
    (tmp_path / "run" / "weights").mkdir()
    (tmp_path / "run" / "weights" / "trial-3.pt").write_bytes(b"")
    (tmp_path / "run" / "best.json").write_text(json.dumps({"architecture": {}, "weights": str(was / "weights" / "trial-3.pt"), "run": str(was)}))
    assert result_weights(str(tmp_path / "run")) == tmp_path / "run" / "weights" / "trial-3.pt"
    (was / "weights").mkdir(parents=True)
    (was / "weights" / "trial-3.pt").write_bytes(b"")
    assert result_weights(str(tmp_path / "run")) == tmp_path / "run" / "weights" / "trial-3.pt"
    (tmp_path / "run" / "weights" / "trial-3.pt").unlink()
    assert result_weights(str(tmp_path / "run")) == was / "weights" / "trial-3.pt"  # where they still are


def test_weights_that_do_not_fit_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "wrong.pt"
    torch.save(build_model(tiny_arch(), input_size=16).state_dict(), wrong)
    assert main(["mobilenetv3-small@0.25", "--weights", str(wrong), "--quiet", "--out", str(tmp_path), *DATA_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"the weights {wrong} do not fit the architecture: " in err
    assert "beside them" not in err
    assert not list(tmp_path.glob("*.checkpoint.pt"))  # refused before any training
    # nas-train's metrics beside them name the architecture they fit: said, as the fix
    (tmp_path / "wrong.metrics.json").write_text(json.dumps({"architecture": tiny_arch().to_dict()}))
    assert main(["mobilenetv3-small@0.25", "--weights", str(wrong), "--quiet", "--out", str(tmp_path), *DATA_ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.endswith(f"; they fit the architecture in {tmp_path / 'wrong.metrics.json'}, beside them: give that file as the architecture")
    # an --out made for the refused training is not left behind holding its lock file alone
    out = tmp_path / "new" / "folder"
    assert main(["mobilenetv3-small@0.25", "--weights", str(wrong), "--quiet", "--out", str(out), *DATA_ARGS]) == 2
    assert "do not fit the architecture" in capsys.readouterr().err and not out.exists()
    assert main(["mobilenetv3-small", "--weights", str(tmp_path / "none.pt")]) == 2
    assert f"no weights file at {tmp_path / 'none.pt'}" in capsys.readouterr().err
    # a search's strategy checkpoint (plain pickle) given as weights: one line (torch's warning about its pickle protocol came first)
    import pickle
    import warnings

    (tmp_path / "strategy.pt").write_bytes(pickle.dumps({"state": {"step": 3}}, protocol=5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["mobilenetv3-small", "--weights", str(tmp_path / "strategy.pt")]) == 2
    assert "not a torch weights file" in capsys.readouterr().err
    # a text file: "not a readable torch weights file (IndexError: pop from empty list)"
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    assert main(["mobilenetv3-small", "--weights", str(tmp_path / "x.csv")]) == 2
    assert capsys.readouterr().err.strip() == f"nas-train: error: {tmp_path / 'x.csv'}: not a torch weights file (written by torch.save), or a damaged or truncated one"
    # a folder: "no weights file at ..."
    assert main(["mobilenetv3-small", "--weights", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"nas-train: error: {tmp_path} is a folder, not a weights file; give the .pt file inside it (it holds strategy.pt, wrong.pt)"


def test_resume_refuses_other_initial_weights(tmp_path: Path) -> None:
    from mobilenas.train.full import FullTrainConfig, _check_resumable

    config = FullTrainConfig(epochs=2, batch_size=32, threads=1)
    identity = {"architecture": "a" * 16, "data": {"name": "synthetic"}, "initial": "a.pt"}
    path = tmp_path / "checkpoint.pt"
    _check_resumable({"identity": identity, "config": config.to_dict()}, identity, config, path)
    with pytest.raises(ValueError, match=r"was started from a\.pt, this training from b\.pt; resume with the same --weights"):
        _check_resumable({"identity": identity, "config": config.to_dict()}, {**identity, "initial": "b.pt"}, config, path)
    old = {"identity": {"architecture": "a" * 16, "data": {"name": "synthetic"}}, "config": config.to_dict()}  # before --weights existed
    _check_resumable(old, {**identity, "initial": None}, config, path)
    with pytest.raises(ValueError, match=r"was started from random weights, this training from a\.pt"):
        _check_resumable(old, identity, config, path)


def exit_code(argv: list[str]) -> int:
    """``main``'s exit code; argparse's own errors arrive as ``SystemExit``."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["mobilenetv3-small", "--dataset", "cifar10"], "needs a data directory"),
        (["mobilenetv3-small", "--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "cifar-10-batches-py"),
        (["mobilenetv3-small", "--dataset", "/nonexistent/data.npz"], "unknown data set"),
        (["no-such-net"], "neither a reference"),
        (["mobilenetv3-small", "--val-size", "0"], "--val-size"),
        (["mobilenetv3-small", "--optimizer", "lion"], "--optimizer"),
        (["mobilenetv3-small", "--epochs", "0"], "--epochs"),
        (["mobilenetv3-small", "--seed", "-1"], "argument --seed: expected a whole number from 0 to 4294967295"),  # numpy's 'expected non-negative integer' before
        (["mobilenetv3-small", "--image-size", "3"], "argument --image-size: expected a whole number of pixels >= 8, got '3'"),  # was 'image_size must be ...'
        (["mobilenetv3-small", "--epochs", "2", "--warmup-epochs", "5"], "--warmup-epochs 5 is longer than the whole training (--epochs 2)"),
        (["mobilenetv3-small", "--device", "cuda:99"], "device 'cuda:99': "),  # used to be a traceback on CPU torch
        # beyond float32: "RuntimeError: value cannot be converted to type float without overflow", a traceback
        (["mobilenetv3-small", "--lr", "1e308"], "argument --lr: expected at most 3.4e+38 (torch trains in float32), got '1e308'"),
        (["mobilenetv3-small", "--optimizer", "adamw", "--lr", "1e300"], "argument --lr: expected at most 3.4e+38"),
        (["mobilenetv3-small", "--weight-decay", "1e300"], "argument --weight-decay: expected at most 3.4e+38"),
        # it blamed --val-size and --test-size, and said the training images were 4,000 whatever --train-size
        (["mobilenetv3-small", "--train-size", "100000000"], "; give a smaller --image-size, or a smaller --train-size, --val-size or --test-size"),
        # "train_size: the synthetic set has no fixed size ...", though --help says "count or fraction"
        (["mobilenetv3-small", "--train-size", "0.0001"], "--train-size 0.0001: a fraction is of a data set's images, and the synthetic set has no fixed number"),
        # it said only that the synthetic set takes no --data-dir
        (["mobilenetv3-small", "--data-dir", "/nonexistent/x"], "give its kind too (--dataset cifar10, imagefolder or npz), or the path alone (--dataset /nonexistent/x)"),
        # it trained, then the export ran out of memory, and so did the --resume it advised
        (["mobilenetv3-small", "--export-size", "60000"], "--export-size 60000: exporting the ONNX model at 60000x60000 would take about"),
    ],
)
def test_errors_are_one_line_with_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert exit_code([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_umbrella_command_dispatches(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "mobilenas.cli", "train", "--help"], capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0 and "mobilenas train" in completed.stdout and "--resume" in completed.stdout


def test_epoch_bars_show_the_mean_loss_of_the_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Mid-epoch the bar showed the last step's loss and at the epoch's end the epoch's mean, so
    # the figure jumped; now every figure is the mean so far and the last one mid-epoch is what
    # the epoch records as its train_loss. The bars are recorded, not drawn.
    import mobilenas.cliutil
    from mobilenas.train import FullTrainConfig, TrainOutputs, train_full

    shown: list[list[str]] = []

    class Bar:
        start_t = last_print_t = 0.0  # moved past the validation by the training (tqdm's own)

        def __init__(self, **kwargs: object) -> None:
            shown.append([])

        def set_postfix_str(self, text: str, refresh: bool = True) -> None:  # "validating on N images": no loss figure
            pass

        def update(self, n: int) -> None:
            pass

        def set_postfix(self, ordered_dict: dict[str, str] | None = None, refresh: bool = True, **values: str) -> None:
            shown[-1].append({**(ordered_dict or {}), **values}["loss"])

        def close(self) -> None:
            pass

    monkeypatch.setattr(mobilenas.cliutil, "progress", Bar)
    data = load_dataset("synthetic", train_size=160, val_size=32, test_size=32, image_size=16)
    result = train_full(tiny_arch(), data, FullTrainConfig(epochs=2, batch_size=32, threads=1), TrainOutputs.at(tmp_path, "net.synthetic"), progress=True)
    assert len(shown) == 2 + 1  # the epochs' bars, then testing's
    shown.pop()
    for figures, record in zip(shown, result.metrics["history"], strict=True):
        assert len(figures) == 5 + 1  # a figure per step (5 of 32 images), then the epoch's summary
        assert figures[-2] == figures[-1] == f"{record['train_loss']:.3f}"


def test_a_search_result_is_trained_on_the_searchs_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`nas-train results/RUN/best.json` trains on the data the search ran on, with its seed and
    validation split (a CIFAR-10 search's winner was trained on the synthetic set)."""
    run = tmp_path / "run"
    arch_path = write_arch(run)
    best = run / "best.json"
    best.write_text(json.dumps({"architecture": json.loads(arch_path.read_text())}))
    nowhere = tmp_path / "no-cifar"
    (run / "manifest.json").write_text(json.dumps({"kind": "search", "config": {"dataset": "cifar10", "data_dir": str(nowhere), "seed": 3, "val_size": None}}))
    assert main([str(best), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert f"data as the search that wrote ARCH loaded them: --dataset cifar10 --data-dir {nowhere} --seed 3" in err
    assert str(nowhere) in err.strip().splitlines()[-1]  # the one-line error: the search's data are not there
    elsewhere = tmp_path / "other-cifar"
    assert main([str(best), "--data-dir", str(elsewhere), "--epochs", "1"]) == 2  # a typed option wins
    err = capsys.readouterr().err
    assert "--dataset cifar10 --seed 3 (type" in err and str(elsewhere) in err.strip().splitlines()[-1]
    # a data set that is there: trained on it, at the search's seed
    images = np.random.default_rng(0).integers(0, 256, size=(120, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "small.npz", x_train=images, y_train=np.arange(120) % 10)
    (run / "manifest.json").write_text(json.dumps({"kind": "search", "config": {"dataset": str(tmp_path / "small.npz"), "data_dir": None, "seed": 3, "val_size": 20}}))
    assert main([str(best), "--epochs", "1", "--batch-size", "32", "--threads", "1", "--no-onnx", "--json"]) == 0
    metrics = json.loads((run / "best.small.metrics.json").read_text())
    assert metrics["dataset"]["seed"] == 3 and metrics["dataset"]["sizes"]["val"] == 20
    # ARCH that no run wrote: the defaults
    alone = write_arch(tmp_path / "alone")
    assert main([str(alone), "--epochs", "1", "--no-onnx", "--json", *DATA_ARGS]) == 0
    assert json.loads((alone.parent / "net.synthetic.metrics.json").read_text())["dataset"]["seed"] == 0


def test_a_search_result_is_exported_at_the_size_its_latency_is_of(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Trained on 16 px images (strides set to 1 for them), the winner of a 64 px search is exported
    at 64 px with its strides back, as the network the search timed; --export-size chooses."""
    run = tmp_path / "run"
    run.mkdir()
    strided = load_architecture("stem_k3_s2_c8_nre | ir_k3_s2_e3_c16_nre | ir_k3_s2_e3_c16_se0.25_nhs | head_c32_o10_nre_d0.0_gsig")
    best = run / "best.json"
    best.write_text(json.dumps({"architecture": strided.to_dict(), "preprocessing": {"input_shape": [1, 3, 64, 64]}}))
    assert main([str(best), "--epochs", "1", *DATA_ARGS]) == 0
    err = capsys.readouterr().err
    assert "note: the ONNX model and preprocessing are for 64 px (the size the latency of the run that wrote ARCH is of" in err
    metrics = json.loads((run / "best.synthetic.metrics.json").read_text())
    assert metrics["input_size"] == 16 and metrics["adaptation"]  # trained with strides set to 1
    assert metrics["preprocessing"]["input_shape"] == ["N", 3, 64, 64] and metrics["preprocessing"]["trained_at"]["adaptation"] == metrics["adaptation"]
    deployed = build_model(load_architecture(str(best)), input_size=64)
    assert not deployed.adaptation  # at 64 px the network is the one searched
    deployed.load_state_dict(torch.load(run / "best.synthetic.pt"))
    deployed.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = deployed(images).numpy()
    (actual,) = onnxruntime_session(str(run / "best.synthetic.onnx")).run(None, {"input": images.numpy()})
    assert np.max(np.abs(actual - expected)) < 1e-4
    assert main([str(best), "--epochs", "1", "--export-size", "16", "--out", str(tmp_path / "at16"), *DATA_ARGS]) == 0
    assert "note: the ONNX model" not in capsys.readouterr().err
    at16 = json.loads((tmp_path / "at16" / "best.synthetic.metrics.json").read_text())["preprocessing"]
    assert at16["input_shape"] == ["N", 3, 16, 16] and "trained_at" not in at16


def test_weights_trained_on_another_split_get_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As netadapt refine does: the run's own --weights with a typed --val-size that puts images of
    the run's training split into this one's validation split, and --weights nas-train made on such
    a split (its metrics file says which), are said to be; the synthetic images of another --seed
    are other images, so nothing is said of those."""
    from mobilenas.train.weights import save_weights

    run = tmp_path / "run"
    arch_path = write_arch(run)
    best = run / "best.json"
    best.write_text(json.dumps({"architecture": json.loads(arch_path.read_text())}))
    (run / "manifest.json").write_text(json.dumps({"kind": "search", "config": {"dataset": "synthetic", "data_dir": None, "seed": 3, "val_size": 64, "image_size": 16}}))
    save_weights(run / "w.pt", build_model(tiny_arch()).state_dict())
    quick = ["--epochs", "1", "--no-onnx", "--train-size", "64", "--test-size", "32", "--batch-size", "32", "--threads", "1"]
    assert main([str(best), "--weights", str(run / "w.pt"), "--val-size", "80", "--out", str(tmp_path / "a"), *quick]) == 0
    err = capsys.readouterr().err
    assert "data as the search that wrote ARCH loaded them: --seed 3 --image-size 16 (type" in err
    # not "--test-size 32 where the search had the default" too: the synthetic set's test images are drawn apart, so --test-size changes no validation image
    assert "note: --val-size 80 where the search had --val-size 64: " in err
    assert re.search(r"had --val-size 64: [1-9]\d* of this run's 80 validation images were in the training split", err), err
    for typed in (["--seed", "5"], []):
        assert main([str(best), "--weights", str(run / "w.pt"), *typed, "--out", str(tmp_path / f"b{len(typed)}"), *quick]) == 0
        assert "note:" not in capsys.readouterr().err
    trained = tmp_path / "b0" / "best.synthetic.finetune.pt"  # the training just made: seed 3, 64 validation images
    assert trained.is_file()
    alone = str(write_arch(tmp_path / "alone"))
    # they were trained on 64 images (--train-size): an 80-image validation split holds none of them
    # (70 of the 4,000 left after their validation split: what was counted before)
    assert main([alone, "--weights", str(trained), "--out", str(tmp_path / "c"), *quick, "--seed", "3", "--val-size", "80", "--image-size", "16"]) == 0
    assert "validation images" not in capsys.readouterr().err
    # ... and a 1,000-image one some, counted by content here
    import hashlib

    def digests(images: torch.Tensor) -> list[bytes]:
        return [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images.numpy()]

    theirs = set(digests(load_dataset("synthetic", seed=3, train_size=64, val_size=64, test_size=32, image_size=16).train.images))
    among = sum(d in theirs for d in digests(load_dataset("synthetic", seed=3, val_size=1000, test_size=32, image_size=16).val.images))
    assert among > 0
    assert main([alone, "--weights", str(trained), "--out", str(tmp_path / "c2"), *quick, "--seed", "3", "--val-size", "1000", "--image-size", "16"]) == 0
    assert (f"were trained by nas-train with --seed 3 and 64 validation images: {among} of this run's 1,000 validation images were among"
            in capsys.readouterr().err)
    assert main([alone, "--weights", str(trained), "--out", str(tmp_path / "d"), *quick, "--seed", "3", "--val-size", "64", "--image-size", "16"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_ema_weights_are_evaluated_and_kept_with_batch_norm_statistics_of_their_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The averaged weights had been scored (to pick the epoch, and on the test set) with running
    # statistics averaged from the slow-momentum ones of earlier weights: at chance on a real run.
    from mobilenas.train import engine
    from mobilenas.train.full import FullTrainConfig

    arch_path = write_arch(tmp_path / "run")
    assert main([str(arch_path), "--epochs", "2", "--ema", "0.9", "--no-onnx", "--quiet", *DATA_ARGS]) == 0
    prefix = tmp_path / "run" / "net.synthetic"
    metrics = json.loads(Path(f"{prefix}.metrics.json").read_text())
    assert metrics["selected"] == "ema"
    saved = build_model(load_architecture(f"{prefix}.metrics.json"), input_size=metrics["input_size"])
    saved.load_state_dict(torch.load(f"{prefix}.pt"))
    again = build_model(load_architecture(f"{prefix}.metrics.json"), input_size=metrics["input_size"])
    again.load_state_dict(torch.load(f"{prefix}.pt"))
    data = load_dataset("synthetic", train_size=192, val_size=64, test_size=64, image_size=16)
    config = FullTrainConfig()
    engine.recalibrate_batchnorm(again, data.train, num_images=config.bn_recalibration_images, batch_size=config.eval_batch_size, seed=0, channels_last=True, device=torch.device("cpu"))
    norms = [name for name, _ in saved.named_buffers() if name.endswith(("running_mean", "running_var"))]
    assert norms
    kept, recalibrated = dict(saved.named_buffers()), dict(again.named_buffers())
    for name in norms:  # the statistics kept are the ones the weights' own recalibration gives
        torch.testing.assert_close(kept[name], recalibrated[name], rtol=1e-4, atol=1e-5)
