"""``nas-train``: what it says and keeps when a training diverges, stops early, is interrupted or
resumed, is exported at another size, or starts from weights trained on a subset; its --help."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mobilenas.train import load_dataset
from mobilenas.train.cli import build_parser, main

from helpers import tiny_arch

DATA_ARGS = ["--train-size", "192", "--val-size", "64", "--test-size", "64", "--image-size", "16", "--batch-size", "32", "--threads", "1"]
# total stride 8: at 16 px the builder sets the stem's stride to 1 (a 4x4 last feature map), at 24 px too, at 64 px nothing
STRIDED = "stem_k3_s2_c8_nre | ir_k3_s2_e3_c16_nre | ir_k3_s2_e3_c16_se0.25_nhs | head_c32_o10_nre_d0.0_gsig"


def write_arch(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "net.json"
    path.write_text(tiny_arch().to_json())
    return path


def test_a_training_that_diverges_after_an_epoch_is_retried_with_a_lower_lr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # It left the checkpoint of epoch 1, which refused the retry with --lr 3 (pass --resume) and
    # with --resume (other settings); and it wrote .pt and .onnx listed as the result.
    arch_path = write_arch(tmp_path / "dv")
    argv = [str(arch_path), "--epochs", "2", "--warmup-epochs", "2", "--weight-decay", "0", "--quiet", *DATA_ARGS]
    assert main([*argv, "--lr", "30"]) == 1
    captured = capsys.readouterr()
    prefix = tmp_path / "dv" / "net.synthetic"
    assert not Path(f"{prefix}.checkpoint.pt").exists()  # resuming would diverge the same way
    assert not Path(f"{prefix}.pt").exists() and not Path(f"{prefix}.onnx").exists()  # no result files
    error = captured.err.strip().splitlines()[-1]
    assert re.fullmatch(r"nas-train: error: diverged in epoch 2: .*; try a lower learning rate: the same command with --lr 3 starts over", error), error
    metrics = json.loads(Path(f"{prefix}.metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["epochs_run"] == 1
    assert metrics["files"] == {"failed_weights": f"{prefix}.failed.pt"} and Path(f"{prefix}.failed.pt").is_file()  # epoch 1's, kept
    assert "  weights " not in captured.out and "  onnx " not in captured.out
    assert "the failed training's best weights (epoch 1, validation " in captured.out
    # the retry, with --resume as a script that always passes it would: a note, then from scratch
    assert main([*argv, "--lr", "3", "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"no checkpoint at {prefix}.checkpoint.pt (the training there failed; its metrics say why): starting from scratch" in err
    assert json.loads(Path(f"{prefix}.metrics.json").read_text())["status"] == "ok" and Path(f"{prefix}.pt").is_file()
    assert not Path(f"{prefix}.failed.pt").exists()  # the failed try's weights, superseded (a review found them left beside the result)


def test_early_stopping_is_said_and_in_the_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a learning rate of ~0: epoch 2 is no better than epoch 1, so --patience 1 stops before epoch 3
    argv = [str(write_arch(tmp_path / "e")), "--epochs", "3", "--patience", "1", "--lr", "1e-12", "--weight-decay", "0", "--quiet", "--no-onnx", *DATA_ARGS]
    assert main([*argv, "--out", str(tmp_path / "text")]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(r"test accuracy \S+ \(validation \S+, epoch 1 of 2; stopped early after epoch 2 of 3: no better validation accuracy"
                        r" for 1 epoch, --patience 1\) in \S+ min", line), line
    assert main([*argv, "--out", str(tmp_path / "json"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stopped_early"] is True and summary["epochs_run"] == 2
    assert main([str(write_arch(tmp_path / "all")), "--epochs", "1", "--quiet", "--no-onnx", "--json", *DATA_ARGS]) == 0
    assert json.loads(capsys.readouterr().out)["stopped_early"] is False


def _interrupt(argv: list[str], when: Path | None) -> subprocess.CompletedProcess[str]:
    """Run ``nas-train ARGV`` and send it Ctrl-C (SIGINT) once the first epoch's bar is drawn
    (``when`` None) or once the file ``when`` exists."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "mobilenas.train.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    if when is None:
        drawn = ""
        while "epoch 1/" not in drawn and process.poll() is None:  # a bar ends in a carriage return, not a new line
            drawn += os.read(process.stderr.fileno(), 4096).decode()
    else:
        deadline = time.monotonic() + 120
        while not when.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    os.kill(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.slow
def test_ctrl_c_says_what_is_saved_and_the_command_that_continues(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # It always said "completed work is saved; continue with: the same nas-train command with --resume",
    # with no checkpoint (or even folder) there. An epoch here takes a second or two (250 steps).
    arch_path = write_arch(tmp_path / "arch")
    out = tmp_path / "out dir"  # quoted in the command
    argv = [str(arch_path), "--epochs", "2", "--train-size", "2000", "--val-size", "64", "--test-size", "64", "--image-size", "16", "--batch-size", "8", "--threads", "1", "--out", str(out)]
    checkpoint = out / "net.synthetic.checkpoint.pt"
    stopped = _interrupt(argv, None)
    assert stopped.returncode == 130 and not checkpoint.exists(), "an epoch finished before the interrupt"
    again = f"nas-train {shlex.join(argv)}"
    assert stopped.stderr.strip().splitlines()[-1] == f"nas-train: interrupted; no epoch had finished, so nothing was saved; the same command starts over: {again}"

    stopped = _interrupt(argv, checkpoint)
    assert stopped.returncode == 130 and checkpoint.exists(), "the training ended before the interrupt"
    last = stopped.stderr.strip().splitlines()[-1]
    assert last == f"nas-train: interrupted; the epochs completed are saved in {checkpoint}; continue with: {again} --resume", last
    # the command it gives continues (run here in-process), and says so first
    words = shlex.split(last.split("continue with: ", 1)[1])
    assert words[0] == "nas-train" and main([*words[1:], "--quiet"]) == 0
    err = capsys.readouterr().err
    assert re.search(rf"nas-train: resuming from {re.escape(str(checkpoint))}: epoch 1 of 2 done\n", err), err


def test_resume_without_a_checkpoint_says_it_starts_from_scratch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch_path = write_arch(tmp_path / "r")
    assert main([str(arch_path), "--resume", "--epochs", "1", "--quiet", "--no-onnx", *DATA_ARGS]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"nas-train: no checkpoint at {tmp_path / 'r' / 'net.synthetic.checkpoint.pt'}: starting from scratch"]


def test_resume_with_json_says_on_stderr_that_it_starts_over_and_names_the_checkpoint_meant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # With --json the note was muted: a --resume whose data set (or --weights, --out) differed from
    # the interrupted run's started from scratch, and nothing said so, nor where the unfinished one was.
    import torch

    from mobilenas.train.full import FullTrainConfig

    arch_path = write_arch(tmp_path / "r")
    data = load_dataset("synthetic", train_size=192, val_size=64, test_size=64, image_size=16)
    # an unfinished training of this architecture on another data set, beside it (its identity as train_full records it)
    meant = tmp_path / "r" / "net.cifar10.checkpoint.pt"
    recorded = {k: v for k, v in data.summary().items() if k not in ("description", "source")} | {"name": "cifar10"}
    torch.save({"version": 1, "identity": {"architecture": tiny_arch().fingerprint(), "data": recorded, "initial": None},
                "config": FullTrainConfig(epochs=30).to_dict(), "epoch": 7}, meant)
    (tmp_path / "r" / "junk.checkpoint.pt").write_text("not a checkpoint")  # skipped
    assert main([str(arch_path), "--resume", "--epochs", "1", "--no-onnx", "--json", *DATA_ARGS]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["resumed_from_epoch"] is None  # stdout: the JSON alone
    assert captured.err.strip().splitlines() == [
        f"nas-train: no checkpoint at {tmp_path / 'r' / 'net.synthetic.checkpoint.pt'}: starting from scratch; {meant} holds an unfinished training"
        " of this architecture (cifar10, from random weights, 7 of 30 epochs done): to continue that one instead, stop this and resume it with"
        " the --dataset, --weights and --out it was started with"
    ]
    assert json.loads((tmp_path / "r" / "net.synthetic.metrics.json").read_text())["resumed_from_epoch"] is None


def test_more_threads_than_cores_get_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --threads 32 on 2 cores trained 15x slower, silently (here the data set is refused after the note: nothing trains)
    cores = os.cpu_count() or 1
    assert main(["mobilenetv3-small", "--threads", str(cores + 1), "--dataset", "cifar10", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (f"nas-train: note: --threads {cores + 1} on {cores} cores: the threads share the cores and the training runs slower than"
                      f" with --threads {cores} (or leave --threads out for all cores)") and "needs a data directory" in err[1]
    assert main(["mobilenetv3-small", "--threads", str(cores), "--dataset", "cifar10", "--out", str(tmp_path)]) == 2
    assert "note:" not in capsys.readouterr().err


def test_the_bar_rate_is_of_the_steps_and_testing_and_export_show_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The epoch's bar stayed open while the batch norms were re-estimated and the validation images
    # scored, so its rate counted them (CIFAR-10: "3.87s/step"); testing and the export then showed nothing.
    argv = [str(write_arch(tmp_path / "p")), "--epochs", "1", "--train-size", "64", "--val-size", "2000", "--test-size", "64",
            "--image-size", "16", "--batch-size", "32", "--threads", "1"]
    assert main(argv) == 0
    err = capsys.readouterr().err.replace("\r", "\n").splitlines()
    (final,) = [line for line in err if line.startswith("epoch 1/1: 100%")]
    found = re.search(r"\b(\d+\.\d+)(step/s|s/step)", final)
    assert found, final
    rate = float(found.group(1)) if found.group(2) == "step/s" else 1 / float(found.group(1))
    record = json.loads((tmp_path / "p" / "net.synthetic.metrics.json").read_text())["history"][0]
    steps_rate = 2 / record["wall_time_s"]  # 2 steps of 32 images
    assert rate > 0.5 * steps_rate, (final, steps_rate)  # with 2,000 validation images counted in, several times lower
    assert re.search(r"loss=\d\.\d{3}, val=\d\.\d{3}", final), final
    finishing = [line for line in err if line.startswith("test and export: 100%|")]
    assert len(finishing) == 1 and " 2/2 " in finishing[0] and re.search(r", test \d\.\d{3}\]$", finishing[0]), finishing


def test_the_export_size_note_of_a_plain_architecture_states_only_what_is_true(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # It said "at 64x64, the size the latency is of" (nothing was timed), named strides set to 1
    # where none differ, and advised searching and pruning with --input-size.
    def note(export_size: int) -> tuple[str, str]:
        out = tmp_path / str(export_size)
        assert main([STRIDED, "--epochs", "1", "--no-onnx", "--quiet", "--export-size", str(export_size), "--out", str(out), *DATA_ARGS]) == 0
        lines = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
        assert len(lines) == 1, lines
        (metrics,) = out.glob("*.metrics.json")
        return lines[0], json.loads(metrics.read_text())["preprocessing"]["trained_at"]["note"]

    said, recorded = note(24)  # the stem's stride is 1 at 16 px and at 24 px: nothing differs
    assert said == ("nas-train: note: the ONNX model and preprocessing are for 24 px (--export-size); "
                    "the weights were trained and validated at 16x16; their accuracy at 24x24 was not measured")
    assert recorded == said.split("; ", 1)[1]
    said, recorded = note(64)
    assert said.endswith("the weights were trained and validated at 16x16, with stem.stride set to 1 for that size (2 at 64x64); "
                         "their accuracy at 64x64 was not measured")
    for text in (said, recorded):
        assert "latency" not in text and "search" not in text and "--input-size" not in text


def test_each_epochs_last_line_is_written_once_to_a_log_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # stderr captured, as a file: no terminal. The bar was drawn again by set_postfix, then by close.
    assert main([str(write_arch(tmp_path / "p")), "--epochs", "2", "--no-onnx", *DATA_ARGS]) == 0
    err = capsys.readouterr().err
    for epoch in (1, 2):
        finals = [line for line in err.replace("\r", "\n").splitlines() if line.startswith(f"epoch {epoch}/2: 100%")]
        assert len(finals) == 1, finals
        assert re.search(r"loss=\d\.\d{3}, val=\d\.\d{3}", finals[0])


def _digests(images: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images]


def test_the_overlap_note_counts_the_images_the_weights_were_trained_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Weights trained on 50 of the images left after a validation split: the note counted this
    # run's validation images among all those left (the pool), not among the 50.
    rng = np.random.default_rng(0)
    npz = tmp_path / "small.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (300, 16, 16, 3), dtype=np.uint8), y_train=np.arange(300) % 10,
             x_test=rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8), y_test=np.arange(40) % 10)
    quick = ["--dataset", str(npz), "--val-size", "40", "--epochs", "1", "--batch-size", "25", "--threads", "1", "--quiet", "--no-onnx"]
    arch_path = str(write_arch(tmp_path / "a"))
    assert main([arch_path, *quick, "--train-size", "50", "--out", str(tmp_path / "w")]) == 0
    weights = tmp_path / "w" / "net.small.pt"
    # what the weights were trained on, and this run's validation images, counted here by content
    trained = set(_digests(load_dataset(npz, seed=0, train_size=50, val_size=40).train.images.numpy()))
    pool = set(_digests(load_dataset(npz, seed=0, val_size=40).train.images.numpy()))
    validation = _digests(load_dataset(npz, seed=1, val_size=40).val.images.numpy())
    overlap, in_pool = sum(d in trained for d in validation), sum(d in pool for d in validation)
    assert 0 < overlap < in_pool  # else this test could not tell the two apart
    capsys.readouterr()
    assert main([arch_path, *quick, "--seed", "1", "--weights", str(weights), "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert f"were trained by nas-train with --seed 0 and 40 validation images: {overlap} of this run's 40 validation images were among their training images" in err, err


def test_help_has_examples_that_parse(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser("nas-train")
    text = parser.format_help()
    assert "\nexamples:\n" in text
    examples = [line.strip() for line in text.split("\nexamples:\n", 1)[1].splitlines() if line.startswith("  nas-train ")]
    assert 4 <= len(examples) <= 6
    for example in examples:
        command = example.split("  #")[0]
        parsed = parser.parse_args(shlex.split(re.sub(r"<[^>]*>", "X", command))[1:])
        assert parsed.arch
    joined = "\n".join(examples)
    for wanted in ("nas-train mobilenetv3-small ", "best.json", "--resume", "--weights ", "--export-size "):
        assert wanted in joined, wanted


def test_a_data_set_too_large_for_memory_is_refused_before_it_is_allocated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # --image-size 5000 had ended, after a while, in "out of memory (Unable to allocate 349. GiB ...)", exit 1
    from mobilenas.train.data import check_fits_in_memory

    check_fits_in_memory(100, 3, 32, "ten", memory_bytes=10**6)  # 307 kB of 1 MB: fits
    with pytest.raises(ValueError, match=r"^the set at 64x64 would take 0\.0 GiB of memory \(100 images\), more than the 0\.0 GiB here allow"):
        check_fits_in_memory(100, 3, 64, "the set", memory_bytes=10**6)  # 1.2 MB
    started = time.monotonic()
    assert main([str(write_arch(tmp_path)), "--image-size", "60000", "--epochs", "1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nas-train: error: the synthetic set at 60000x60000 would take" in err and "give a smaller --image-size" in err
    assert time.monotonic() - started < 30 and not (tmp_path / "out").exists()
