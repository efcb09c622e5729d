"""Fast checks of the ``netadapt`` command line: inputs, options and errors (nothing is trained)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenas.cli import main as umbrella
from mobilenas.netadapt.cli import main, resolve_input
from mobilenas.netadapt.core import Schedule
from mobilenas.netadapt.groups import prunable_groups
from mobilenas.netadapt.run import Settings
from mobilenas.space import reference
from mobilenas.space.builder import build_model
from mobilenas.train.weights import load_weights, save_weights

from helpers import tiny_arch


def test_describe_lists_groups(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "mobilenetv3-large", "--granularity", "16"]) == 0
    text = capsys.readouterr().out
    assert "prunable groups at granularity 16" in text and "stages[0].blocks[0].out" not in text  # tied to the stem
    header, stem = text.splitlines()[1:3]
    assert header.split() == ["group", "kind", "width", "->", "min"] and stem.split() == ["stem", "tied", "16", "->", "16"]
    assert umbrella(["netadapt", "describe", "mobilenetv2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["groups"][0] == {"group": "stem", "kind": "tied", "width": 32, "narrowest": 8}
    assert len(payload["groups"]) == len(prunable_groups(reference("mobilenetv2")))


def test_resolve_input_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arch = tiny_arch()
    weights = build_model(arch).state_dict()
    save_weights(tmp_path / "sub" / "w.pt", weights)
    (tmp_path / "sub" / "best.json").write_text(json.dumps({"architecture": arch.to_dict(), "accuracy": 0.5, "weights": "w.pt"}))
    start = resolve_input(str(tmp_path / "sub" / "best.json"), None)  # relative to the JSON's folder
    assert start.arch == arch and start.weights is not None and set(start.weights) == set(weights)
    # nas-search writes weights relative to where it ran; the run records them absolute, so a
    # resume from another folder finds them
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub" / "best.json").write_text(json.dumps({"architecture": arch.to_dict(), "weights": "sub/w.pt"}))
    assert resolve_input("sub/best.json", None).weights_path == str(tmp_path / "sub" / "w.pt")
    assert resolve_input(str(tmp_path / "sub"), None).arch == arch  # a run directory holding best.json
    no_weights = tmp_path / "arch.json"
    no_weights.write_text(arch.to_json())
    assert resolve_input(str(no_weights), None).weights is None
    assert resolve_input(arch.to_notation(), str(tmp_path / "sub" / "w.pt")).weights is not None
    monkeypatch.setenv("HOME", str(tmp_path / "sub"))  # --weights ~/w.pt, quoted so that no shell expanded it
    assert resolve_input(arch.to_notation(), "~/w.pt").weights_path == str(tmp_path / "sub" / "w.pt")
    assert resolve_input("mobilenetv2@0.5", None).arch.stem.out_channels == 16
    (tmp_path / "sub" / "gone.json").write_text(json.dumps({"architecture": arch.to_dict(), "weights": "missing.pt"}))
    with pytest.raises(ValueError, match=r"names weights .* that do not exist"):
        resolve_input(str(tmp_path / "sub" / "gone.json"), None)
    # --weights naming what nas-train would write beside the JSON (as nas-search's "next:" line
    # does) says to train first, with the data set the name carries
    best = tmp_path / "sub" / "best.json"
    with pytest.raises(ValueError, match=r"no weights file at .*best\.cifar10\.pt; nas-train \S*best\.json --dataset cifar10 writes it \(train first\), or leave --weights out to start from the weights the input names"):
        resolve_input(str(best), str(tmp_path / "sub" / "best.cifar10.pt"))
    with pytest.raises(ValueError, match=r"best\.synthetic\.pt; nas-train \S*best\.json writes it"):
        resolve_input(str(best), str(tmp_path / "sub" / "best.synthetic.pt"))
    with pytest.raises(ValueError, match=r"no weights file at \S*other\.pt; give an existing file, or leave --weights out to train the input from scratch first"):
        resolve_input("mobilenetv2@0.5", str(tmp_path / "other.pt"))


def test_weights_files(tmp_path: Path) -> None:
    weights = build_model(tiny_arch()).state_dict()
    torch.save({"epoch": 3, "model": weights}, tmp_path / "checkpoint.pt")
    assert set(load_weights(tmp_path / "checkpoint.pt")) == set(weights)
    (tmp_path / "junk.pt").write_text("not torch")
    with pytest.raises(ValueError, match="not a torch weights file"):
        load_weights(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "none.pt")
    # A whole model pickled (a common mistake): named, with what to save instead, in one line
    # (torch's own message is paragraphs long and advises unpickling).
    torch.save(build_model(tiny_arch()), tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"holds a pickled mobilenas\.\S+ object, .*save model\.state_dict\(\) instead") as raised:
        load_weights(tmp_path / "model.pt")
    assert "\n" not in str(raised.value) and "weights_only" not in str(raised.value)
    (tmp_path / "cut.pt").write_bytes((tmp_path / "checkpoint.pt").read_bytes()[:300])
    with pytest.raises(ValueError, match="damaged or truncated"):
        load_weights(tmp_path / "cut.pt")
    torch.save({"net": weights, "optimizer": {"lr": 0.1}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"under 'state_dict', 'model'.*; it holds a dict with keys 'net', 'optimizer'"):
        load_weights(tmp_path / "other.pt")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["refine", "mobilenetv2", "--budget-ratio", "1.5"], "fraction of INPUT's latency in (0, 1), like 0.5 or 50%, got '1.5'"),
        (["refine", "mobilenetv2", "--budget-ratio", "0"], "fraction of INPUT's latency in (0, 1), like 0.5 or 50%, got '0'"),
        (["refine", "mobilenetv2", "--budget-ratio", "5ms"], "'5ms' is a latency; --budget-ratio is a fraction of INPUT's latency (like 0.5), a budget in time is --target-latency 5ms"),
        (["refine", "mobilenetv2", "--budget-ratio", "0.5", "--target-latency", "3ms"], "exactly one budget"),
        (["refine", "mobilenetv2", "--target-latency", "3 minutes"], "duration"),
        (["refine", "mobilenetv2", "--budget-ratio", "0.5", "--granularity", "0"], "whole number >= 1"),
        (["refine", "mobilenetv2", "--budget-ratio", "0.5", "--selection", "best"], "invalid choice"),
        (["refine", "mobilenetv2", "--budget-ratio", "0.5", "--reduction-decay", "1.5"], "decay in (0, 1]"),
        (["refine"], "give INPUT"),
        # it retrained from scratch for no epoch: the refined network had random weights
        (["refine", "mobilenetv2", "--final", "retrain", "--final-epochs", "0"], "--final retrain with --final-epochs 0 would leave the refined network untrained"),
        (["refine", "--resume", "/nonexistent/run"], "is not a directory"),
        (["refine", "mobilenetv2", "--seed", "-1"], "argument --seed: expected a whole number from 0 to 4294967295"),
        (["refine", "mobilenetv2", "--resume", "/nonexistent/run", "--granularity", "4"], "/nonexistent/run is not a directory"),
        (["refine", "nonsense-net", "--budget-ratio", "0.5"], "neither a reference"),
        (["refine", "/nonexistent/best.json"], "neither a reference"),  # default budget: no notice before the error
        (["refine", "mobilenetv2", "--device", "cuda:99"], "device 'cuda:99': "),  # no such GPU here: before any work
        (["refine", "mobilenetv2", "--device", "tpu"], "device 'tpu' is not a torch device"),
        (["refine", "mobilenetv2", "--ray-address", "127.0.0.1:1"], "--ray-address 127.0.0.1:1: cannot connect (Connection refused)"),  # at once
    ],
)
def test_usage_errors_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_an_existing_run_is_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "netadapt"}))
    assert main(["refine", "mobilenetv2", "--budget-ratio", "0.5", "--out", str(tmp_path)]) == 2
    assert f"already holds a run; use --resume {tmp_path}" in capsys.readouterr().err


def test_resume_refuses_a_directory_that_is_not_a_netadapt_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "search"}))
    assert main(["refine", "--resume", str(tmp_path)]) == 2
    assert "is a 'search' run, not a 'netadapt' run" in capsys.readouterr().err


def test_settings_round_trip() -> None:
    settings = Settings(budget_ms=3.0, start_latency_ms=6.0, schedule=Schedule(0.01, 1.0, 0.01), selection="accuracy", granularity=4, max_iterations=7, seed=3)
    assert Settings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    with pytest.raises(ValueError, match="unknown keys"):
        Settings.from_dict({**settings.to_dict(), "turbo": True})
    with pytest.raises(ValueError, match="final"):
        Settings(budget_ms=1.0, start_latency_ms=2.0, final="sometimes")


def test_weights_named_by_a_search_run_are_found_wherever_the_run_moved(tmp_path: Path) -> None:
    arch = tiny_arch()
    run = tmp_path / "moved" / "search-1"
    save_weights(run / "weights" / "trial-7.pt", build_model(arch).state_dict())
    # nas-search writes the path relative to where it ran: results/runs/search-1/weights/trial-7.pt
    (run / "best.json").write_text(json.dumps({"architecture": arch.to_dict(), "weights": "results/runs/search-1/weights/trial-7.pt"}))
    start = resolve_input(str(run / "best.json"), None)
    assert start.weights_path == str(run / "weights" / "trial-7.pt") and start.weights is not None


def test_weights_that_do_not_fit_are_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tiny_arch(num_classes=7)
    save_weights(tmp_path / "w.pt", build_model(other).state_dict())
    code = main(["refine", tiny_arch().to_notation(), "--weights", str(tmp_path / "w.pt"), "--budget-ratio", "0.5", "--train-size", "200", "--val-size", "50", "--test-size", "50", "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "do not fit the architecture" in err and "head.classifier.weight has shape (7, 24)" in err
    assert not (tmp_path / "run").exists()


def test_more_workers_than_cores_get_a_note(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.search.execution import oversubscription_note

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert oversubscription_note(2, 1, "trainings") is None and oversubscription_note(1, 2, "trainings") is None
    assert oversubscription_note(1, 64, "proxy trainings") == (  # one at a time, more threads than cores
        "note: --cpus-per-trial 64 on 2 cores: the proxy trainings run 64 threads on 2 cores, which is slower than 2; --cpus-per-trial 2 matches this machine"
    )
    assert oversubscription_note(2, 2, "trainings") == (
        "note: 2 trainings at once x 2 CPUs each on 2 cores: they share the cores and each runs slower; --workers 1 matches this machine"
    )
    # netadapt says it before any work (here the input is missing, so that is all it does)
    assert main(["refine", "/nonexistent/best.json", "--workers", "4"]) == 2
    err = capsys.readouterr().err
    assert "note: 4 proposals at once x 1 CPU each on 2 cores" in err and "--workers 2 matches this machine" in err
    assert main(["refine", "/nonexistent/best.json", "--threads", "8"]) == 2
    assert "note: --threads 8 on 2 cores: the proposals run 8 threads on 2 cores, which is slower than 2; --threads 2 matches" in capsys.readouterr().err
    assert main(["refine", "/nonexistent/best.json", "--latency-threads", "3"]) == 2
    assert "note: --latency-threads 3 on 2 cores: the threads share the cores" in capsys.readouterr().err


def test_options_that_would_have_no_effect_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch = tiny_arch()
    save_weights(tmp_path / "w.pt", build_model(arch).state_dict())
    given = [arch.to_notation(), "--weights", str(tmp_path / "w.pt"), "--budget-ratio", "0.5", "--out", str(tmp_path / "run")]
    for extra, message in (
        (["--final", "none", "--final-epochs", "5"], "--final-epochs would have no effect with --final none"),
        (["--backend", "torch", "--command", "bench {model}"], "--command cannot be combined with --backend torch"),
        # the mobilenetv3 schedule removes at least 1% a step: a smaller first step changed nothing
        (["--schedule", "mobilenetv3", "--initial-reduction", "0.005"],
         "--initial-reduction 0.005 would have no effect: every step removes at least 0.01, --schedule mobilenetv3's floor; lower the floor too (--min-reduction 0)"),
        (["--initial-reduction", "0.02", "--min-reduction", "0.03"], "--initial-reduction 0.02 would have no effect: every step removes at least --min-reduction 0.03;"),
    ):
        assert main(["refine", *given, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
    # Options of a training from scratch apply only when INPUT has no weights (as their help says):
    # with weights they are noted, not refused, so one script can serve inputs with and without.
    missing = ["--dataset", "cifar10", "--data-dir", str(tmp_path / "none")]  # stops the run once past the note
    assert main(["refine", *given, "--pretrain-epochs", "5", "--train-lr", "0.01", *missing]) == 2
    err = capsys.readouterr().err
    assert f"note: --pretrain-epochs and --train-lr not used: INPUT comes with weights ({tmp_path / 'w.pt'})" in err
    assert "none does not exist" in err
    assert main(["refine", *given, "--train-lr", "0.01", "--final", "retrain", *missing]) == 2  # the rate of the retraining
    assert "note:" not in capsys.readouterr().err
    # --augment is for the long trainings: with weights and --final none (or 0 final epochs) there is none
    for final in (["--final", "none"], ["--final-epochs", "0"]):
        assert main(["refine", *given, "--augment", *final, *missing]) == 2
        assert "note: --augment not used: nothing is trained long" in capsys.readouterr().err, final
    assert main(["refine", *given, "--augment", *missing]) == 2  # the long fine-tune augments
    assert main(["refine", arch.to_notation(), "--augment", "--final", "none", *missing]) == 2  # the training from scratch does
    assert "note:" not in capsys.readouterr().err


@pytest.mark.slow
def test_a_search_best_over_its_target_is_noted_with_the_budget_that_reaches_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the soft reward may hand over a best slower than the target; the default budget (0.75 of its
    # latency) need not reach that target, and refine says how to prune to it
    from mobilenas.space import load_architecture

    # room to prune by a quarter (tiny_arch's latency is mostly fixed costs)
    arch = load_architecture("stem_k3_s2_c16_nre | ds_k3_s1_c16_nre | ir_r2_k3_s2_e3_c24_nre | ir_k3_s2_e3_c32_se0.25_nhs | head_c64_o10_nre_d0.0_gsig")
    save_weights(tmp_path / "best.pt", build_model(arch).state_dict())
    # a real run, as short as one can be: the notes about the default budget come once nothing can be refused any more
    short = ["--train-size", "64", "--val-size", "32", "--test-size", "32", "--image-size", "8", "--input-size", "128", "--table", str(tmp_path / "table.jsonl"),
             "--max-iterations", "1", "--finetune-steps", "1", "--final", "none", "--threads", "1", "--granularity", "4", "--quiet"]
    for name, latency, target, noted in (("over", 5.14, 2.0, True), ("within", 1.5, 2.0, False)):
        best = tmp_path / name / "best.json"
        best.parent.mkdir()
        best.write_text(json.dumps({"architecture": arch.to_dict(), "latency_ms": latency, "target_latency_ms": target, "weights": str(tmp_path / "best.pt")}))
        assert main(["refine", str(best), "--out", str(tmp_path / f"run-{name}"), *short]) == 0
        err = capsys.readouterr().err
        assert re.search(r"no budget given: pruning to 0.75 of the input's latency, \S+ ms -> \S+ ms \(--budget-ratio 0.75\)", err), err
        note = "note: INPUT takes 5.14 ms by the table of the run that wrote it, over that run's 2 ms target; --target-latency 2ms prunes it to that target"
        assert (note in err) == noted, err
    # a budget given: nothing to say of it; a run refused: its one line alone
    assert main(["refine", str(tmp_path / "over"), "--budget-ratio", "0.5", "--out", str(tmp_path / "ratio"), *short]) == 0
    assert "over that run's" not in capsys.readouterr().err
    assert main(["refine", str(tmp_path / "over"), "--out", str(tmp_path / "refused"), *short, "--dataset", "cifar10", "--data-dir", str(tmp_path / "none")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_block_notation_longer_than_a_file_name_is_read_as_notation(capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.space.io import is_path
    from mobilenas.space.references import mobilenetv3_large

    long = mobilenetv3_large().to_notation()
    assert len(long) > 255 and not is_path(long) and not is_path("x" * 300)  # OSError: File name too long, before
    assert resolve_input(long, None).arch == mobilenetv3_large()
    assert main(["describe", long, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"]
    # refine gets as far as its device check (one line), past the input and its absolute-path recording
    assert main(["refine", long, "--device", "tpu"]) == 2
    assert "device 'tpu' is not a torch device" in capsys.readouterr().err


def test_a_budget_ratio_may_be_a_percentage() -> None:
    from mobilenas.netadapt.cli import budget_ratio

    assert budget_ratio("50%") == 0.5
    assert budget_ratio(" 0.25 ") == 0.25
    assert budget_ratio("1e-3") == 0.001


def _search_run(tmp_path: Path, config: dict[str, object], *, classes: int = 10) -> Path:
    """A search's run folder as netadapt reads it: best.json (tiny_arch, its weights in the folder,
    made for ``classes`` classes) and a manifest with ``config``."""
    run = tmp_path / "run"
    save_weights(run / "w.pt", build_model(tiny_arch(num_classes=classes)).state_dict())
    (run / "best.json").write_text(json.dumps({"architecture": tiny_arch().to_dict(), "weights": str(run / "w.pt")}))
    (run / "manifest.json").write_text(json.dumps({"kind": "search", "config": config}))
    return run / "best.json"


def _npz(path: Path, count: int = 300, seed: int = 0) -> Path:
    images = np.random.default_rng(seed).integers(0, 256, size=(count, 8, 8, 3), dtype=np.uint8)
    np.savez(path, x_train=images, y_train=np.arange(count) % 10)
    return path


def test_a_search_result_is_refined_on_the_searchs_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`netadapt refine results/RUN/best.json` prunes on the search's data and validates on the
    split it held out (its --seed and --val-size); typed options win, with a note where they put
    images the search's own weights were trained on into this run's validation split."""
    nowhere = tmp_path / "no-cifar"
    best = _search_run(tmp_path, {"dataset": "cifar10", "data_dir": str(nowhere), "seed": 3, "val_size": 500})
    assert main(["refine", str(best), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert f"data as the search that wrote INPUT loaded them: --dataset cifar10 --data-dir {nowhere} --val-size 500 --seed 3" in err
    assert str(nowhere) in err.strip().splitlines()[-1]  # the one-line error: the search's data are not there
    # data that are there; the weights (7 classes) stop the run after the notes
    data = _npz(tmp_path / "d.npz")
    best = _search_run(tmp_path, {"dataset": str(data), "data_dir": None, "seed": 3, "val_size": 50}, classes=7)
    for typed, note in (
        ([], None),
        (["--seed", "3", "--image-size", "8", "--val-size", "50"], None),  # the run's split, typed
        (["--image-size", "16"], None),  # another size: the same images in each split
        (["--seed", "0"], r"note: --seed 0 where the search had --seed 3: (\d+) of this run's 50 validation images were in the training split of the run that wrote INPUT"),
        (["--val-size", "0.5"], r"note: --val-size 0.5 where the search had --val-size 50: (\d+) of this run's 120 validation images"),
        (["--dataset", str(_npz(tmp_path / "other.npz", seed=1))], "note: --dataset .*other.npz where the search had --dataset .*d.npz: INPUT's weights were trained on other data"),
    ):
        assert main(["refine", str(best), *typed, "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err
        assert "do not fit the architecture" in err, err
        found = re.search(note, err) if note else None
        assert (found is not None) if note else "note: --" not in err, (typed, err)
        if found is not None and found.groups():
            assert int(found.group(1)) > 0
    # weights from elsewhere: nothing is known of their data, so no note
    save_weights(tmp_path / "other.pt", build_model(tiny_arch(num_classes=7)).state_dict())
    assert main(["refine", str(best), "--weights", str(tmp_path / "other.pt"), "--seed", "0", "--out", str(tmp_path / "c")]) == 2
    assert "note: --seed" not in capsys.readouterr().err
    # a tabular search trained nothing: no data of its own
    best = _search_run(tmp_path, {"dataset": "synthetic", "seed": 3, "benchmark": "nb201.csv"})
    assert main(["refine", str(best), "--dataset", "cifar10", "--data-dir", str(nowhere), "--out", str(tmp_path / "e")]) == 2
    assert "data as the search" not in capsys.readouterr().err
    # an older or hand-edited manifest without a seed: the default, not a crash
    best = _search_run(tmp_path, {"dataset": str(data), "data_dir": None}, classes=7)
    assert main(["refine", str(best), "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err
    assert "--seed" not in err.split("do not fit")[0] and "do not fit the architecture" in err


def test_weights_trained_on_another_split_get_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--weights that nas-train made (its metrics file beside them) on a split whose training
    images are in this run's validation split, or on other data, are said to be; on the same
    split, nothing is said."""
    from mobilenas.train.data import load_dataset

    save_weights(tmp_path / "net.synthetic.pt", build_model(tiny_arch(num_classes=7)).state_dict())  # refused after the notes
    sizes = {"train_size": 200, "val_size": 50, "test_size": 50, "image_size": 8}
    argv = ["refine", tiny_arch().to_notation(), "--weights", str(tmp_path / "net.synthetic.pt"), "--budget-ratio", "0.5",
            "--train-size", "200", "--val-size", "50", "--test-size", "50", "--image-size", "8"]
    metrics = tmp_path / "net.synthetic.metrics.json"
    for seed, val_size, said in ((0, 60, r"were trained by nas-train with --seed 0 and 60 validation images: (\d+) of this run's 50 validation images were among"),
                                 (0, 50, None),
                                 (1, 50, None)):  # the synthetic images of another seed are other images altogether
        metrics.write_text(json.dumps({"dataset": load_dataset("synthetic", seed=seed, **{**sizes, "val_size": val_size}).summary()}))
        assert main([*argv, "--out", str(tmp_path / f"run-{seed}-{val_size}")]) == 2
        err = capsys.readouterr().err
        assert "do not fit the architecture" in err
        found = re.search(said, err) if said else None
        assert (found is not None and int(found.group(1)) > 0) if said else "note: the weights" not in err, err
    summary = load_dataset("synthetic", **sizes).summary()
    metrics.write_text(json.dumps({"dataset": {**summary, "name": "cifar10", "source": {"dataset": "cifar10", "data_dir": str(tmp_path)}}}))
    assert main([*argv, "--out", str(tmp_path / "run-cifar")]) == 2
    assert "were trained on other data (cifar10, by nas-train) than this run fine-tunes and validates on (synthetic)" in capsys.readouterr().err
    # metrics written before they said how the data were loaded: the split is compared by seed and size
    metrics.write_text(json.dumps({"dataset": {k: v for k, v in {**summary, "seed": 4}.items() if k != "source"}}))
    assert main([*argv, "--out", str(tmp_path / "run-old")]) == 2
    assert "this run's validation images may have been among their training images" in capsys.readouterr().err


def test_a_typed_data_set_takes_none_of_the_runs_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dataset typed: the run's --data-dir is not taken (it was, and the error blamed a --data-dir
    nobody typed); --data-dir typed where the run named its data by a path: said how to go on."""
    from mobilenas.train.provenance import same_files

    outer = tmp_path / "data"
    best = _search_run(tmp_path, {"dataset": "cifar10", "data_dir": str(outer), "seed": 3, "val_size": None})
    assert main(["refine", str(best), "--dataset", str(tmp_path / "none.npz"), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "data as the search that wrote INPUT loaded them: --seed 3 (type" in err and str(outer) not in err
    assert main(["refine", str(best), "--data-dir", str(tmp_path / "elsewhere"), "--out", str(tmp_path / "b")]) == 2
    assert "--dataset cifar10 --seed 3 (type" in capsys.readouterr().err  # a moved CIFAR-10: the kind is the run's
    best = _search_run(tmp_path, {"dataset": str(tmp_path / "d.npz"), "data_dir": None, "seed": 3})
    assert main(["refine", str(best), "--data-dir", str(outer), "--out", str(tmp_path / "c")]) == 2
    assert "--data-dir goes with --dataset cifar10, imagefolder or npz, and the search run that wrote" in capsys.readouterr().err
    # the same files named two ways are the same data
    (outer / "cifar-10-batches-py").mkdir(parents=True)
    assert same_files({"dataset": "cifar10", "data_dir": str(outer)}, {"dataset": "cifar10", "data_dir": str(outer / "cifar-10-batches-py")})
    assert not same_files({"dataset": "cifar10", "data_dir": str(outer)}, {"dataset": "cifar10", "data_dir": str(tmp_path)})


def test_a_runs_own_weights_are_those_in_its_folder_that_nas_train_did_not_make(tmp_path: Path) -> None:
    """nas-train writes its weights into the run's folder: those are its own (its metrics file says
    which split), not the run's, or the two notes gave opposite advice."""
    from mobilenas.train.provenance import in_run

    best = _search_run(tmp_path, {"dataset": "synthetic", "data_dir": None, "seed": 3})
    run = best.parent
    assert in_run(str(run / "w.pt"), str(best)) and in_run(str(run / "w.pt"), str(run))
    (run / "best.synthetic.pt").write_bytes(b"")
    assert in_run(str(run / "best.synthetic.pt"), str(best))
    (run / "best.synthetic.metrics.json").write_text("{}")
    assert not in_run(str(run / "best.synthetic.pt"), str(best))
    assert not in_run(str(tmp_path / "w.pt"), str(best)) and not in_run(None, str(best)) and not in_run(str(run / "w.pt"), tiny_arch().to_notation())


@pytest.mark.parametrize(("measured_ratio", "said"), [(0.61, "pruned further than the budget needed"), (0.90, "may be slower than the budget"), (0.76, None)])
def test_the_summary_says_where_the_measured_speed_up_is_not_the_tables(measured_ratio: float, said: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.netadapt.cli import _print_summary

    start = {"latency_ms": 2.66, "measured_latency_ms": 2.2, "accuracy": 0.3}
    line = {"iteration": 0, "chosen": None, "target_latency_ms": None, "latency_ms": 2.66, "measured_latency_ms": 2.2, "accuracy_before_finetune": 0.3, "accuracy": 0.3}
    refined = {"start": start, "latency_ms": 1.97, "target_latency_ms": 2.0, "measured_latency_ms": 2.0 * measured_ratio, "accuracy": 0.28, "final": "none",
               "final_epochs": 0, "notation": "x", "run": str(tmp_path), "side_by_side": {"start_ms": 2.0, "refined_ms": 2.0 * measured_ratio, "ratio": measured_ratio}}
    _print_summary([line], refined)
    err = capsys.readouterr().err
    if said is None:  # within 15% of the table's 0.74
        assert "note: measured side by side" not in err
    else:
        assert f"the refined network takes {measured_ratio:.2f} of the start's time where the table said 0.74" in err and said in err


def test_weights_of_another_architecture_name_the_one_beside_them_that_they_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A review gave an earlier run's refined.pt with the architecture it started from: the error
    named the mismatched shape but not the fix, the refined.json lying beside the weights."""
    import dataclasses

    arch = tiny_arch()
    pruned = dataclasses.replace(arch, stages=(arch.stages[0], (dataclasses.replace(arch.stages[1][0], expanded_channels=16), arch.stages[1][1])))
    run = tmp_path / "earlier"
    run.mkdir()
    save_weights(run / "refined.pt", build_model(pruned).state_dict())
    argv = ["refine", arch.to_notation(), "--weights", str(run / "refined.pt"), "--budget-ratio", "0.5", "--train-size", "100", "--val-size", "50",
            "--test-size", "50", "--image-size", "8"]
    for beside, said in ((None, False), ({"architecture": arch.to_dict()}, False), ({"architecture": pruned.to_dict()}, True)):
        if beside is not None:  # the architecture beside them: named only where the weights fit it
            (run / "refined.json").write_text(json.dumps(beside))
        assert main([*argv, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "do not fit the architecture: stages.1.0.expand" in err
        assert (f"they fit the architecture in {run / 'refined.json'}, beside them: give that file as the architecture" in err) == said, err
