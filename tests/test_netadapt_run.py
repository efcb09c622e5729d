"""``netadapt refine`` end to end: run directory, refusal of unreachable budgets, resume after SIGKILL.

Everything is real: the built-in synthetic data set, proxy training from mobilenas.train, a
lookup table measured with ONNX Runtime (entries timed cheaply here: isolated ops, 3 runs, so the
tests stay fast, at a 128x128 deployment resolution where ops outweigh the per-model overhead; the table's correction is fixed to the identity so every run predicts the same).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mobilenas.latency.measure import make_backend
from mobilenas.latency.table import Correction, LookupTable, Method
from mobilenas.netadapt.cli import main
from mobilenas.netadapt.core import Schedule
from mobilenas.netadapt.groups import group_widths
from mobilenas.results.cli import main as nas_results
from mobilenas.runs import Journal
from mobilenas.space import Architecture, load_architecture
from mobilenas.space.builder import build_model
from mobilenas.units import format_ms

pytestmark = pytest.mark.slow

ARCH = "stem_k3_s2_c16_nre | ds_k3_s1_c16_nre | ir_r2_k3_s2_e3_c24_nre | ir_k3_s2_e3_c32_se0.25_nhs | head_c64_o10_nre_d0.0_gsig"


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("table") / "table.jsonl"
    backend = make_backend("onnxruntime", threads=1)
    lookup = LookupTable.create(path, backend=backend, input_size=128, method=Method(name="isolated", cold_cache=False, warmup=1, repeats=3))
    lookup.set_correction(Correction(a=1.0, b=0.0, points=0, fitted=True))
    return path


def common(table: Path, out: Path) -> list[str]:
    return [
        "--train-size", "1000", "--val-size", "300", "--test-size", "200", "--pretrain-epochs", "10",
        "--finetune-steps", "12", "--final-epochs", "1", "--table", str(table), "--threads", "1",
        "--initial-reduction", "0.06", "--reduction-decay", "1", "--out", str(out), "--quiet",
        # narrowest width 4: the smallest reachable network is about 0.35 of ARCH's latency by a
        # freshly measured table (0.45-0.64 at granularity 8, too near the 0.6 budget: it flaked)
        "--granularity", "4",
    ]


#: A run that ends quickly (one iteration), where a test checks how it began.
ONE_CHEAP_STEP = ["--budget-ratio", "0.99", "--max-iterations", "1"]


def history(out: Path) -> list[dict[str, Any]]:
    return Journal(out / "history.jsonl").read()


def trajectory(out: Path) -> list[tuple[Any, ...]]:
    return [(line["iteration"], line["chosen"] and line["chosen"]["group"], line["chosen"] and line["chosen"]["width"], line["latency_ms"], line["accuracy"]) for line in history(out)]


@pytest.fixture(scope="module")
def reference_run(table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["refine", ARCH, "--budget-ratio", "0.6", *common(table, out)]) == 0
    return out


def test_refine_writes_a_complete_run(reference_run: Path) -> None:
    out = reference_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "netadapt"
    assert manifest["arguments"]["budget_ratio"] == 0.6 and manifest["seed"] == 0
    assert manifest["latency"]["device_fingerprint"] and manifest["latency"]["correction"]["a"] == 1.0
    lines = history(out)
    assert [line["iteration"] for line in lines] == list(range(len(lines))) and len(lines) >= 3
    assert lines[0]["trained_from_scratch"] and lines[0]["chosen"] is None
    budget = manifest["budget_ms"]
    assert budget == pytest.approx(0.6 * manifest["start_latency_ms"])
    # the bound said at the start holds: no step removes less than the schedule asks
    bound = Schedule(0.06, 1.0).iterations_to(manifest["start_latency_ms"], budget)
    assert bound == 7 and len(lines) - 1 <= bound
    for before, line in itertools.pairwise(lines):
        assert line["latency_ms"] < before["latency_ms"]
        assert line["target_latency_ms"] == pytest.approx(max(before["latency_ms"] - 0.06 * manifest["start_latency_ms"], budget))
        arch = Architecture.from_dict(line["architecture"])
        assert line["widths"] == group_widths(arch)
        chosen = line["chosen"]
        assert line["widths"][chosen["group"]] == chosen["width"] < before["widths"][chosen["group"]] == chosen["previous_width"]
        assert all(v == before["widths"][k] for k, v in line["widths"].items() if k != chosen["group"])
        assert line["measured_latency_ms"] > 0
        assert 0 <= line["accuracy_before_finetune"] <= 1 and 0 <= line["accuracy"] <= 1
        proposals = line["proposals"]
        assert len({p["group"] for p in proposals}) == len(proposals) >= 1
        assert proposals[chosen["index"]]["group"] == chosen["group"]
        # the winner has the best score under the default rule (accuracy change per latency saved)
        # among the proposals no other beats on both accuracy and latency
        assert not proposals[chosen["index"]]["dominated"]
        assert proposals[chosen["index"]]["score"] == max(p["score"] for p in proposals if not p["dominated"])
        assert (out / line["checkpoint"]).is_file()
    assert lines[-2]["latency_ms"] > budget >= lines[-1]["latency_ms"]
    assert not (out / "proposals").exists() or not any((out / "proposals").iterdir())

    refined = json.loads((out / "refined.json").read_text())
    assert {"architecture", "accuracy", "latency_ms", "measured_latency_ms", "weights"} <= set(refined)
    assert refined["latency_ms"] == pytest.approx(lines[-1]["latency_ms"]) and refined["latency_ms"] <= refined["target_latency_ms"]
    # the speed-up is measured with the start timed again beside the result, not hours earlier
    side = refined["side_by_side"]
    assert side["refined_ms"] == refined["measured_latency_ms"] and side["ratio"] == pytest.approx(side["refined_ms"] / side["start_ms"])
    assert side["ratio"] < 0.9  # pruned to 0.6 of the start by the table: really faster
    arch = Architecture.from_dict(refined["architecture"])
    model = build_model(arch)
    model.load_state_dict(torch.load(refined["weights"], weights_only=True))
    from mobilenas.space.export import check_onnx

    difference = check_onnx(model, (out / "refined.onnx").read_bytes(), torch.randn(1, 3, 128, 128))
    assert difference < 1e-4
    assert (out / "trajectory.png").stat().st_size > 1000
    # what refined.onnx expects of its input: the training data's statistics, at its exported size
    prepared = dict(refined["preprocessing"])
    trained_at = prepared.pop("trained_at")
    assert prepared == {
        "scale": "pixels / 255", "mean": manifest["data"]["mean"], "std": manifest["data"]["std"], "layout": "NCHW", "input_shape": [1, 3, 128, 128],
    }
    # ... and where the accuracies were measured instead: the data's 32 px (with the strides the
    # builder set to 1 for it, none for this network), not refined.onnx's 128 px (the latency's size)
    from mobilenas.space.builder import adapt_for_input_size

    assert trained_at["input_size"] == 32 and trained_at["adaptation"] == list(adapt_for_input_size(arch, 32)[1])
    assert "at 128x128, the size the latency is of, the weights were never trained" in trained_at["note"]
    events = Journal(out / "events.jsonl").read()
    assert [e["type"] for e in events].count("final") == 1
    # the start's test accuracy beside the result's: its iteration-0 weights on the same test images
    from mobilenas.netadapt.cli import _load_data
    from mobilenas.netadapt.run import load_into
    from mobilenas.netadapt.training import DataTrainer, TrainingSettings

    trainer = DataTrainer(_load_data(manifest["arguments"]), TrainingSettings(**manifest["training"]))
    start = load_into(Architecture.from_dict(lines[0]["architecture"]), torch.load(out / lines[0]["checkpoint"], weights_only=True), trainer.input_size)
    assert refined["start"]["test_accuracy"] == pytest.approx(trainer.test(start))
    assert refined["test_accuracy"] == pytest.approx(trainer.test(load_into(arch, torch.load(refined["weights"], weights_only=True), trainer.input_size)))


def test_the_table_entries_measured_before_the_first_proposals_show_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A table that lacks the network's entries (a new device, another input size) is filled
    before iteration 1 (minutes at 224 px): on progress bars, not in silence."""
    fresh = tmp_path / "fresh.jsonl"
    lookup = LookupTable.create(fresh, backend=make_backend("onnxruntime", threads=1), input_size=128, method=Method(name="isolated", cold_cache=False, warmup=1, repeats=3))
    lookup.set_correction(Correction(a=1.0, b=0.0, points=0, fitted=True))
    shown = [a for a in common(fresh, tmp_path / "run") if a != "--quiet"]
    assert main(["refine", ARCH, *ONE_CHEAP_STEP, *shown, "--pretrain-epochs", "1"]) == 0
    err = capsys.readouterr().err
    assert "measuring table entries of the start and the smallest network" in err
    assert "iteration 1: measuring table entries to plan its proposals" in err
    # --quiet: none
    assert main(["refine", ARCH, *ONE_CHEAP_STEP, *common(tmp_path / "other.jsonl", tmp_path / "quiet"), "--pretrain-epochs", "1", "--input-size", "128"]) == 0
    assert "measuring table entries" not in capsys.readouterr().err


def test_budget_below_the_smallest_reachable_network_is_refused(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(["refine", ARCH, "--target-latency", "0.0001ms", *common(table, out)])
    assert code == 2
    message = capsys.readouterr().err.strip()
    assert "is below the smallest network NetAdapt can reach" in message
    assert "by the table" in message and "4 channels, at granularity 4" in message
    assert len(message.splitlines()) == 1
    assert not out.exists()  # refused before anything was computed or written


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["refine", ARCH, "--target-latency", "fast"]) == 2
    assert "duration" in capsys.readouterr().err
    assert main(["refine", str(tmp_path / "missing.json"), "--budget-ratio", "0.5"]) == 2
    assert "neither a reference" in capsys.readouterr().err


def test_resume_after_sigkill_loses_and_repeats_nothing(table: Path, reference_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-c", "import sys; from mobilenas.netadapt.cli import main; sys.exit(main(sys.argv[1:]))"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([*command, "refine", ARCH, "--budget-ratio", "0.6", *common(table, out)], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    killed = False
    while process.poll() is None and time.monotonic() < deadline:
        events = Journal(out / "events.jsonl").read() if (out / "events.jsonl").exists() else []
        if any(e.get("type") == "proposal" and e.get("iteration") == 2 for e in events):
            process.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert killed, f"the run ended before it could be killed: {process.stderr.read().decode() if process.stderr else ''}"
    assert process.returncode == -signal.SIGKILL
    before = (out / "history.jsonl").read_text()
    done_before = [line["iteration"] for line in history(out)]
    assert done_before[:2] == [0, 1]
    assert not (out / "refined.json").exists()
    assert nas_results(["show", str(out)]) == 0  # says how far the iteration under way had got
    assert re.search(
        rf"\n  not finished    interrupted: netadapt refine --resume {re.escape(str(out))} goes on \(iteration 2: [1-9]\d* of its \d+ proposals? done, kept\)\n",
        capsys.readouterr().out,
    )
    cut = tmp_path / "cut"  # its history cut from outside: show does not send it to a resume that refuses
    shutil.copytree(out, cut)
    (cut / "history.jsonl").write_text("")
    assert nas_results(["show", str(cut)]) == 0
    assert f"\n  not finished    netadapt refine --resume refuses it as it is: {cut / 'history.jsonl'} records 0 iterations but checkpoints/ holds iteration-00" in capsys.readouterr().out

    assert main(["refine", "--resume", str(out), "--quiet"]) == 0

    after = (out / "history.jsonl").read_text()
    assert after.startswith(before.rstrip("\n").rsplit("\n", 1)[0])  # committed lines untouched
    iterations = [line["iteration"] for line in history(out)]
    assert iterations == list(range(len(iterations)))  # none lost, none repeated
    assert trajectory(out) == trajectory(reference_run)  # the same run as one never killed
    events = Journal(out / "events.jsonl").read()
    proposals = [(e["iteration"], e["index"]) for e in events if e.get("type") == "proposal"]
    assert len(proposals) == len(set(proposals))  # finished proposals were reused, not fine-tuned again
    assert sum(1 for e in events if e.get("type") == "resumed") == 1
    refined = json.loads((out / "refined.json").read_text())
    assert refined["architecture"] == json.loads((reference_run / "refined.json").read_text())["architecture"]


def test_resume_reloads_the_runs_own_arguments(reference_run: Path, table: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["refine", "--resume", str(reference_run), "--target-latency", "1ms", "--granularity", "8"]) == 2
    assert "(it has --granularity 4; --target-latency unset); drop --granularity, --target-latency (only" in capsys.readouterr().err
    # the run's own command with --resume added (up-arrow, --resume RUN) goes on with it
    assert main(["refine", ARCH, "--budget-ratio", "0.6", *common(table, reference_run), "--resume", str(reference_run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["latency_ms"] == json.loads((reference_run / "refined.json").read_text())["latency_ms"]
    assert main(["refine", "mobilenetv2", "--resume", str(reference_run)]) == 2
    assert f"(it has INPUT {ARCH}); drop INPUT (only" in capsys.readouterr().err
    # a finished run resumes to its result without new work, says so, and journals nothing
    lines, events = len(history(reference_run)), (reference_run / "events.jsonl").read_bytes()
    assert main(["refine", "--resume", str(reference_run), "--json"]) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["latency_ms"] == json.loads((reference_run / "refined.json").read_text())["latency_ms"] and payload["budget_met"]
    assert f"{reference_run} is already finished: it met its budget ({format_ms(payload['target_latency_ms'])}) after {payload['iterations']} iterations;" in captured.err
    assert "resuming" not in captured.err
    assert len(history(reference_run)) == lines and (reference_run / "events.jsonl").read_bytes() == events
    assert main(["refine", "--resume", str(reference_run)]) == 0
    assert "-> " in (summary := capsys.readouterr().out) and " after the final fine-tune (1 epoch); test " in summary
    assert "; measured side by side at the end " in summary and " (ratio 0." in summary


def test_a_run_stopped_by_max_iterations_goes_on_when_resumed_with_more(table: Path, reference_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Stopped early on purpose (NetAdapt takes hours), then continued: the same run as one never
    stopped, its final training redone for the network it now ends with."""
    out = tmp_path / "run"
    assert main(["refine", ARCH, "--budget-ratio", "0.6", *common(table, out), "--max-iterations", "1"]) == 0
    captured = capsys.readouterr()
    assert f"netadapt refine --resume {out} --max-iterations N (N above 1) takes it further later" in captured.err
    budget = format_ms(json.loads((out / "refined.json").read_text())["target_latency_ms"])
    assert f" by the table (budget {budget} not met: stopped by --max-iterations 1); measured" in captured.out
    assert [line["iteration"] for line in history(out)] == [0, 1]
    assert json.loads((out / "refined.json").read_text())["iterations"] == 1
    # resumed as it is: finished, with what takes it further; nothing journaled
    events = (out / "events.jsonl").read_bytes()
    assert main(["refine", "--resume", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{out} is already finished: it stopped after 1 iteration (--max-iterations), above its budget {budget}; netadapt refine --resume {out} --max-iterations N (N above 1) takes it further" in captured.err
    assert "not met: stopped by --max-iterations 1" in captured.out and (out / "events.jsonl").read_bytes() == events
    # the checkpoints of earlier iterations are not needed to go on (the README says they can be deleted)
    (out / "checkpoints" / "iteration-000.pt").unlink()
    assert main(["refine", "--resume", str(out), "--max-iterations", "1"]) == 2
    assert "--max-iterations 1 is not more than the 1 iteration " in capsys.readouterr().err
    assert main(["refine", "--resume", str(out), "--max-iterations", "50", "--quiet"]) == 0
    assert "--max-iterations 50: the run now stops after at most 50 iterations (it was 1)" in capsys.readouterr().err
    assert trajectory(out) == trajectory(reference_run)
    refined = json.loads((out / "refined.json").read_text())
    assert refined["iterations"] == len(history(out)) - 1 > 1
    assert refined["architecture"] == json.loads((reference_run / "refined.json").read_text())["architecture"]
    assert sum(1 for e in Journal(out / "events.jsonl").read() if e.get("type") == "final") == 2
    assert json.loads((out / "manifest.json").read_text())["settings"]["max_iterations"] == 50
    # a later resume keeps the limit (and has nothing left to do); a run that met its budget goes no further
    assert main(["refine", "--resume", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["iterations"] == refined["iterations"]
    assert main(["refine", "--resume", str(out), "--max-iterations", "60"]) == 2
    assert "met its budget" in capsys.readouterr().err
    assert main(["refine", "--resume", str(out), "--finetune-steps", "3"]) == 2
    assert "and --max-iterations may extend the run" in capsys.readouterr().err


def test_a_run_stopped_by_its_time_limit_is_finished_and_goes_on_when_resumed(
    table: Path, reference_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As --max-iterations, but by the clock: no iteration starts after the limit; the network
    reached is trained and written; a resume iterates on to where an unlimited run ends."""
    from mobilenas.netadapt import cli as netadapt_cli

    out = tmp_path / "run"
    # A clock that reads one second per history line (the start, then each iteration): a 2 s limit
    # falls after the first iteration, whatever this machine's speed.
    monkeypatch.setattr(netadapt_cli, "_clock", lambda: float(len(history(out))) if (out / "history.jsonl").exists() else 0.0)
    assert main(["refine", ARCH, "--budget-ratio", "0.6", *common(table, out), "--time-limit", "2s"]) == 0
    err = capsys.readouterr().err
    assert "time limit 2 s: no iteration or proposal starts after " in err
    assert "stopped at the time limit (2 s) after 1 iteration at " in err and f"netadapt refine --resume {out} goes on later" in err
    assert [line["iteration"] for line in history(out)] == [0, 1]
    assert json.loads((out / "refined.json").read_text())["iterations"] == 1  # trained and written, as asked
    assert [e["iteration"] for e in Journal(out / "events.jsonl").read() if e.get("type") == "time_limit"] == [1]
    assert nas_results(["show", str(out)]) == 0
    assert f"above budget    ends at {format_ms(history(out)[-1]['latency_ms'])} by the table: stopped at its time limit (2 s); netadapt refine --resume {out} goes on" in capsys.readouterr().out
    assert main(["refine", "--resume", str(out), "--time-limit", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["time_limit_reached"] is False
    assert trajectory(out) == trajectory(reference_run)
    assert json.loads((out / "refined.json").read_text())["architecture"] == json.loads((reference_run / "refined.json").read_text())["architecture"]
    assert nas_results(["show", str(out)]) == 0
    assert "time limit" not in capsys.readouterr().out  # the limit that stopped an earlier session is not the reason now
    assert main(["refine", "--resume", str(out), "--time-limit", "90"]) == 2
    assert "argument --time-limit: cannot tell seconds from minutes in '90'" in capsys.readouterr().err


def test_the_time_limit_stops_an_iteration_between_proposals_and_a_resume_completes_it(
    table: Path, reference_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An iteration takes minutes: the limit also stops it between proposals. Its finished
    proposals are kept, the last finished iteration is trained and written, and a resume evaluates
    only the proposals left, ending where an unlimited run ends."""
    from mobilenas.netadapt import cli as netadapt_cli

    out = tmp_path / "run"
    first, second = (len(line["proposals"]) for line in history(reference_run)[1:3])
    assert second > 2

    def proposals_landed() -> list[dict[str, Any]]:
        return [e for e in Journal(out / "events.jsonl").read() if e.get("type") == "proposal"]

    # A clock that reads one second per proposal landed: the limit falls after the second
    # proposal of the second iteration, whatever this machine's speed.
    monkeypatch.setattr(netadapt_cli, "_clock", lambda: float(len(proposals_landed())) if (out / "events.jsonl").exists() else 0.0)
    assert main(["refine", ARCH, "--budget-ratio", "0.6", *common(table, out), "--time-limit", f"{first + 2}s"]) == 0
    err = capsys.readouterr().err
    assert f"iteration 2: the time limit passed after 2 of its {second} proposals; the iteration is left unfinished" in err
    assert f"stopped at the time limit ({first + 2} s) after 1 iteration at " in err
    assert [line["iteration"] for line in history(out)] == [0, 1]
    assert json.loads((out / "refined.json").read_text())["iterations"] == 1
    assert [e["iteration"] for e in proposals_landed()] == [1] * first + [2] * 2
    assert nas_results(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"stopped at its time limit ({first + 2} s); netadapt refine --resume {out} goes on (iteration 2: 2 of its {second} proposals done, kept)" in shown
    assert nas_results(["show", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert (summary["unfinished_iteration"], summary["unfinished_proposals_done"], summary["unfinished_proposals_planned"]) == (2, 2, second)
    assert summary["time_limit_s"] == first + 2
    assert main(["refine", "--resume", str(out), "--time-limit", "none"]) == 0
    assert f"iteration 2: resuming its {second} proposals (2 already fine-tuned)" in capsys.readouterr().err
    assert [e["iteration"] for e in proposals_landed()][: first + second] == [1] * first + [2] * second  # none of the 2 again
    assert trajectory(out) == trajectory(reference_run)
    assert json.loads((out / "refined.json").read_text())["architecture"] == json.loads((reference_run / "refined.json").read_text())["architecture"]
    assert nas_results(["show", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["unfinished_iteration"] is None and summary["time_limit_s"] is None and summary["meets_budget"] is True


def test_a_time_limit_reached_before_any_iteration_finished_leaves_the_start_as_the_result(
    table: Path, reference_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mobilenas.netadapt import cli as netadapt_cli

    out = tmp_path / "run"
    landed = lambda: sum(1 for e in Journal(out / "events.jsonl").read() if e.get("type") == "proposal")  # noqa: E731
    monkeypatch.setattr(netadapt_cli, "_clock", lambda: float(landed()) if (out / "events.jsonl").exists() else 0.0)
    assert main(["refine", ARCH, "--budget-ratio", "0.6", *common(table, out), "--time-limit", "1s"]) == 0
    err = capsys.readouterr().err
    assert "iteration 1: the time limit passed after 1 of its " in err
    assert "no iteration finished within the time limit: the starting network is the result (no final training)" in err
    refined = json.loads((out / "refined.json").read_text())
    assert refined["iterations"] == 0 and refined["architecture"] == history(out)[0]["architecture"]


def test_a_run_whose_history_was_cut_is_refused_and_left_as_it_is(reference_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A kill leaves a checkpoint at most one iteration ahead of history.jsonl; more means the
    history was cut from outside, and resuming would prune again from an earlier network."""
    lines = (reference_run / "history.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) >= 3
    for kept in (0, 1):
        run = tmp_path / f"kept-{kept}"
        shutil.copytree(reference_run, run)
        (run / "history.jsonl").write_text("".join(lines[:kept]))
        before = {path: path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()}
        assert main(["refine", "--resume", str(run), "--quiet"]) == 2
        err = capsys.readouterr().err
        newest = f"iteration-{len(lines) - 1:03d}.pt"
        assert err.strip() == (
            f"netadapt refine: error: {run / 'history.jsonl'} records {kept} iteration{'s' if kept != 1 else ''} but checkpoints/ holds {newest}: "
            "the history was cut short or replaced; put the whole history.jsonl back to resume"
        )
        assert {path: path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file()} == before
    # the one checkpoint a kill can leave ahead of its history line is not taken for damage
    run = tmp_path / "killed"
    shutil.copytree(reference_run, run)
    (run / "history.jsonl").write_text("".join(lines[:-1]))
    assert main(["refine", "--resume", str(run), "--quiet", "--json"]) == 0
    capsys.readouterr()


def test_resume_says_which_weights_are_missing_and_what_to_do(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With its last checkpoint deleted, the resume had said only "no weights file at ..."."""
    out = tmp_path / "run"
    assert main(["refine", ARCH, "--budget-ratio", "0.6", *common(table, out), "--max-iterations", "1"]) == 0
    (out / "checkpoints" / "iteration-001.pt").unlink()
    capsys.readouterr()
    assert main(["refine", "--resume", str(out), "--max-iterations", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"error: {out / 'checkpoints' / 'iteration-001.pt'}, the weights of the run's network after iteration 1, is missing, so the run cannot go on"
                        " from it; put the file back, or start a new run (netadapt refine INPUT --out ANOTHER)"), err


def test_resume_says_when_the_runs_table_is_gone(reference_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["latency"]["table"] = str(tmp_path / "cleaned-cache" / "table.jsonl")
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "refined.pt").unlink()  # killed in its final training: the resume has work to do (a finished run has none, and needs no table)
    assert main(["refine", "--resume", str(run), "--json"]) == 0
    assert f"note: the run's latency table {tmp_path / 'cleaned-cache' / 'table.jsonl'} no longer exists" in capsys.readouterr().err


def test_best_json_with_weights(table: Path, reference_run: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """A nas-search best.json (architecture + relative weights path) is refined without training first."""
    first = history(reference_run)[1]  # the network after one iteration, far from the smallest reachable
    (tmp_path / "w.pt").write_bytes((reference_run / first["checkpoint"]).read_bytes())
    best = {"architecture": first["architecture"], "accuracy": first["accuracy"], "latency_ms": first["latency_ms"], "measured_latency_ms": None, "target_latency_ms": 1.0, "reward": 0.5, "weights": "w.pt"}
    (tmp_path / "best.json").write_text(json.dumps(best))
    out = tmp_path / "run"
    assert main(["refine", str(tmp_path / "best.json"), "--budget-ratio", "0.9", "--max-iterations", "1", *common(table, out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    lines = history(out)
    assert not lines[0]["trained_from_scratch"]
    assert lines[0]["accuracy"] == pytest.approx(first["accuracy"])  # the given weights, evaluated as they are
    assert payload["history"][0]["accuracy"] == lines[0]["accuracy"] and len(payload["history"]) == 2
    state = torch.load(out / "checkpoints" / "iteration-000.pt", weights_only=True)
    given = torch.load(tmp_path / "w.pt", weights_only=True)
    assert all(torch.equal(state[k], given[k]) for k in given)
    # a budget the network already meets (a typo, or the wrong network): refused before any run
    # folder is made, as --budget-ratio 1.5 is
    out = tmp_path / "met"
    assert main(["refine", str(tmp_path / "best.json"), "--target-latency", "10s", *common(table, out), "--json"]) == 2
    err = capsys.readouterr().err
    assert f"the network already meets the budget: {format_ms(first['latency_ms'])} by the table <= 10000.00 ms, so there is nothing to prune" in err
    assert "Traceback" not in err and not out.exists()
    # no budget: the default ratio of the input's latency, said on stderr and kept in the manifest
    out = tmp_path / "default"
    assert main(["refine", str(tmp_path / "best.json"), "--max-iterations", "1", *common(table, out), "--json"]) == 0
    captured = capsys.readouterr()
    assert "no budget given: pruning to 0.75 of the input's latency" in captured.err
    assert "at most 1 iteration (--max-iterations)" in captured.err
    assert json.loads(captured.out)["iterations"] == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["arguments"]["budget_ratio"] == 0.75 and manifest["arguments"]["target_latency_ms"] is None
    assert manifest["budget_ms"] == pytest.approx(0.75 * manifest["start_latency_ms"])
    # best.json inside a search's run directory: that search's table is the default, so NetAdapt
    # starts from the latency the search reported, not from another table's
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "search", "latency_table": {"path": str(table)}}))
    outside = tmp_path_factory.mktemp("outside")  # a new run's folder is never inside another run's
    out = outside / "search-table"
    untabled = [a for a in common(table, out) if a not in ("--table", str(table))]
    assert main(["refine", str(tmp_path / "best.json"), *ONE_CHEAP_STEP, *untabled]) == 0
    err = capsys.readouterr().err
    assert f"using the latency table of the run that produced the input: {table}" in err and "proxy training" not in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["latency"]["table"] == str(table)
    assert manifest["start_latency_ms"] == pytest.approx(LookupTable.load(table).predict(Architecture.from_dict(first["architecture"])))
    # ... with the correction the search predicted with, which its manifest records: the shared
    # table's own may have been refitted since (by other searches' end-to-end points)
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "search", "latency_table": {"path": str(table), "correction": {"a": 2.0, "b": 0.0, "se_ms": 0.0, "points": 3, "fitted": True}}}))
    out = outside / "search-correction"
    assert main(["refine", str(tmp_path / "best.json"), *ONE_CHEAP_STEP, *[a for a in common(table, out) if a not in ("--table", str(table))]]) == 0
    capsys.readouterr()
    assert json.loads((out / "manifest.json").read_text())["start_latency_ms"] == pytest.approx(2.0 * LookupTable.load(table).predict_sum(Architecture.from_dict(first["architecture"])))
    # weights from a short proxy training (what a search's best.json has): said, with the way to a trained start
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "search", "latency_table": {"path": str(table)}, "proxy": {"batch_size": 32}}))
    for steps, given, said in ((20, None, True), (20, tmp_path / "w.pt", False), (1000, None, False)):
        (tmp_path / "best.json").write_text(json.dumps({**best, "info": {"steps": steps}}))
        out = outside / f"proxy-{steps}-{given is not None}"
        weights = ["--weights", str(given)] if given else []
        assert main(["refine", str(tmp_path / "best.json"), *weights, *ONE_CHEAP_STEP, *common(table, out)]) == 0
        err = capsys.readouterr().err
        note = (
            f"note: INPUT's weights are the search's proxy training ({steps} steps of 32 images); NetAdapt prunes a trained network, "
            f"and each proposal's fine-tune (12 steps of 64 images) will mostly go on training this one, which hides what pruning costs. For a trained start: "
            f"nas-train {tmp_path / 'best.json'} --epochs 10 (with this run's data options), then netadapt refine {tmp_path / 'best.json'} "
            f"--weights {tmp_path / 'best.synthetic.pt'}"
        )
        assert (note in err) == said, err
    # a budget the network already meets is refused in its one line, without the notes of a run
    assert main(["refine", str(tmp_path / "best.json"), "--target-latency", "10s", *common(table, outside / "met")]) == 2
    err = capsys.readouterr().err
    assert "the network already meets the budget" in err and "proxy training" not in err
    # a NetAdapt run's refined.json, refined further: that run's table and the correction it froze
    earlier = tmp_path / "earlier"
    shutil.copytree(reference_run, earlier)
    recorded = json.loads((earlier / "manifest.json").read_text())
    recorded["latency"]["correction"] = {**recorded["latency"]["correction"], "a": 2.0, "b": 0.0, "se_ms": 0.0}
    (earlier / "manifest.json").write_text(json.dumps(recorded))
    out = outside / "further"
    assert main(["refine", str(earlier / "refined.json"), *ONE_CHEAP_STEP, *[a for a in common(table, out) if a not in ("--table", str(table), "--pretrain-epochs", "10")]]) == 0
    assert f"using the latency table of the run that produced the input: {table}" in capsys.readouterr().err
    refined = Architecture.from_dict(json.loads((earlier / "refined.json").read_text())["architecture"])
    assert json.loads((out / "manifest.json").read_text())["start_latency_ms"] == pytest.approx(2.0 * LookupTable.load(table).predict_sum(refined))
    assert main(["describe", str(tmp_path / "best.json"), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    assert [g["width"] for g in groups] == list(group_widths(load_architecture(str(tmp_path / "best.json"))).values())


def test_parallel_proposals_on_ray_match_in_process(table: Path, reference_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    arguments = ["refine", ARCH, "--budget-ratio", "0.6", *common(table, out), "--workers", "2", "--max-iterations", "2"]
    assert main(arguments) == 0
    # each iteration says how much is left, by the bound that binds, at its own pace (hours on a CPU)
    printed = capsys.readouterr()
    assert f"\nrefined.onnx: {(out / 'refined.onnx').resolve()} (" in printed.out  # what a user ships, named at the end
    assert f"\ntrajectory.png: {(out / 'trajectory.png').resolve()} (accuracy and latency per iteration)" in printed.out
    said = [line for line in printed.err.splitlines() if line.startswith("iteration ") and re.search(r" proposals? in ", line)]
    assert len(said) == 2
    assert re.search(r"; at most 1 more iteration by --max-iterations, about \d+ s at this one's pace, then the final training$", said[0]), said[0]
    assert " more iteration" not in said[1]
    assert trajectory(out)[:3] == trajectory(reference_run)[:3]
    lines = history(out)
    assert np.isfinite([p["accuracy"] for p in lines[1]["proposals"]]).all()


def test_correction_is_fitted_stored_in_the_table_and_frozen(tmp_path: Path) -> None:
    """A table without a correction gets one fitted at the start of the first run and kept in it: a
    review had each run fit its own on two fresh timings, and one network's start latency came out
    0.307, 0.318, 0.305, 0.320 and 0.342 ms in five runs on one table (a budget not repeatable)."""
    from mobilenas.netadapt.latency_model import open_latency_model
    from mobilenas.netadapt.run import smallest_reachable_latency

    path = tmp_path / "table.jsonl"
    LookupTable.create(path, backend=make_backend("onnxruntime", threads=1), input_size=128, method=Method(name="isolated", cold_cache=False, warmup=1, repeats=3))
    model = open_latency_model(table=str(path), backend="onnxruntime", threads=1, input_size=None)
    assert not model.correction.fitted and model.input_size == 128
    arch = load_architecture(ARCH)
    smallest, _ = smallest_reachable_latency(arch, 8, model.predict_sum)
    model.fit_if_needed([arch, smallest])
    fitted = model.correction
    assert fitted.fitted and fitted.points == 2 and fitted.a > 0
    reloaded = LookupTable.load(path)
    assert len(reloaded.end_to_end_points()) == 2  # recorded ...
    assert reloaded.correction == fitted  # ... and the correction fitted on them kept in the table
    assert model.predict(arch) == pytest.approx(fitted.a * model.predict_sum(arch) + fitted.b)
    # the next run predicts alike, without timing anything again
    following = open_latency_model(table=str(path), backend="onnxruntime", threads=1, input_size=None)
    following.fit_if_needed([arch, smallest])
    assert following.correction == fitted and following.predict(arch) == model.predict(arch)
    assert len(LookupTable.load(path).end_to_end_points()) == 2
    # a resumed run gets the frozen correction back from its manifest
    again = open_latency_model(table=str(path), backend="onnxruntime", threads=1, input_size=128, correction=fitted.to_dict())
    assert again.predict(arch) == pytest.approx(model.predict(arch))
    with pytest.raises(ValueError, match="is for 128x128 inputs"):
        open_latency_model(table=str(path), backend="onnxruntime", threads=1, input_size=224)


def test_a_timing_far_from_the_table_is_timed_twice_more_and_the_median_kept(tmp_path: Path) -> None:
    """Each iteration's end-to-end latency: one timing on a machine busy for a moment can be far off
    (a review saw 2.13, 1.93, 1.94, 1.71, 2.11, 1.88, 2.36 ms along a steadily falling table)."""
    from mobilenas.latency.measure import OnnxRuntimeBackend
    from mobilenas.netadapt.latency_model import TableLatency

    class Counting(OnnxRuntimeBackend):  # the real backend, its timings counted
        calls = 0

        def measure_module(self, *args: Any, **kwargs: Any) -> Any:
            Counting.calls += 1
            return super().measure_module(*args, **kwargs)

    backend = Counting(threads=1, repeats=3)
    lookup = LookupTable.create(tmp_path / "table.jsonl", backend=backend, input_size=32, method=Method(name="isolated", cold_cache=False, warmup=1, repeats=3))
    model = TableLatency(lookup, backend)
    arch = load_architecture(ARCH)
    first = model.measure(arch)
    assert first is not None and Counting.calls == 1  # nothing to compare with: one timing
    assert model.measure(arch, predicted=first * 10) is not None and Counting.calls == 4  # 90% off: timed twice more
    assert len(LookupTable.load(lookup.path).end_to_end_points()) == 2  # one point (the median) a call


def test_a_search_table_that_does_not_fit_is_passed_over_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mobilenas.latency.measure import CommandBackend
    from mobilenas.netadapt.latency_model import open_latency_model

    monkeypatch.setenv("MOBILENAS_HOME", str(tmp_path / "home"))
    method = Method(name="isolated", cold_cache=False, warmup=1, repeats=3)
    here = tmp_path / "here.jsonl"
    LookupTable.create(here, backend=make_backend("onnxruntime", threads=1), input_size=128, method=method)
    elsewhere = tmp_path / "phone.jsonl"
    LookupTable.create(elsewhere, backend=CommandBackend("bench {model}", device_name="phone"), input_size=128, method=method)
    said: list[str] = []
    used = open_latency_model(table=None, backend="onnxruntime", threads=1, input_size=None, input_table=(here, None), log=said.append)
    assert used.table.path == here and said == [f"using the latency table of the run that produced the input: {here}"]
    for search_table, reason in ((elsewhere, "was measured on another device"), (here, "it is for 128px inputs, not --input-size 96")):
        said.clear()
        used = open_latency_model(table=None, backend="onnxruntime", threads=1, input_size=96 if search_table == here else None, input_table=(search_table, None), log=said.append)
        assert used.table.path not in (here, elsewhere) and used.table.path.parent == tmp_path / "home" / "tables"
        assert said[0].startswith("not using the latency table of the run that produced the input") and reason in said[0]
        # measured at the size that run's network was built for, or at the one typed (it was 224 px, whatever the run's)
        assert used.input_size == (96 if search_table == here else 128)
        assert search_table == here or said[0].endswith("NetAdapt uses this device's own table at that run's 128px")


def test_a_table_given_with_table_is_made_at_the_input_runs_size_and_differences_are_noted(tmp_path: Path) -> None:
    """--table NEW had made a 224 px table for a network its search measured at 32 px; a table of
    another size or space was used without a word (nas-search notes another space)."""
    from mobilenas.netadapt.latency_model import open_latency_model
    from mobilenas.space.search_space import get_space

    method = Method(name="isolated", cold_cache=False, warmup=1, repeats=3)
    backend = make_backend("onnxruntime", threads=1)
    searched = tmp_path / "search.jsonl"
    mobilenetv3, mnasnet = get_space("mobilenetv3"), get_space("mnasnet")
    LookupTable.create(searched, backend=backend, input_size=32, method=method, space_name=mobilenetv3.name, space_fingerprint=mobilenetv3.layout_fingerprint())
    said: list[str] = []
    new = tmp_path / "new.jsonl"
    used = open_latency_model(table=str(new), backend="onnxruntime", threads=1, input_size=None, input_table=(searched, None), log=said.append)
    assert used.input_size == 32 and LookupTable.load(new, backend=backend).input_size == 32
    assert said == [f"created latency table {new} for this device ({backend.describe()}, 32x32 inputs); entries are measured as NetAdapt needs them"]
    other = tmp_path / "other.jsonl"
    LookupTable.create(other, backend=backend, input_size=64, method=method, space_name=mnasnet.name, space_fingerprint=mnasnet.layout_fingerprint())
    said.clear()
    used = open_latency_model(table=str(other), backend="onnxruntime", threads=1, input_size=None, input_table=(searched, None), log=said.append)
    assert used.input_size == 64 and len(said) == 2
    assert said[0].startswith(f"note: latency table {other} is for 64x64 inputs, and the run that wrote INPUT measured at 32x32: NetAdapt prunes for 64x64 inputs")
    assert said[1].startswith(f"note: latency table {other} was built for space mnasnet, not the run's space mobilenetv3: ")
    said.clear()  # the run's own table, given again: nothing to say
    open_latency_model(table=str(searched), backend="onnxruntime", threads=1, input_size=None, input_table=(searched, None), log=said.append)
    assert said == []


def test_resume_from_another_folder_finds_the_files_given_by_relative_paths(table: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(table, work / "table.jsonl")
    rng = np.random.default_rng(0)
    np.savez(work / "data.npz", x_train=rng.integers(0, 255, (300, 32, 32, 3), dtype=np.uint8), y_train=rng.integers(0, 10, 300),
             x_test=rng.integers(0, 255, (60, 32, 32, 3), dtype=np.uint8), y_test=rng.integers(0, 10, 60))
    monkeypatch.chdir(work)
    args = ["refine", ARCH, "--budget-ratio", "0.9", "--max-iterations", "1", "--dataset", "data.npz", "--val-size", "60",
            "--pretrain-epochs", "1", "--finetune-steps", "3", "--final-epochs", "1", "--table", "table.jsonl", "--out", "run", "--quiet"]
    assert main(args) == 0
    arguments = json.loads((work / "run" / "manifest.json").read_text())["arguments"]
    assert arguments["dataset"] == str(work / "data.npz") and arguments["table"] == str(work / "table.jsonl")
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative paths would not be found
    capsys.readouterr()
    assert main(["refine", "--resume", str(work / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["latency_ms"] == json.loads((work / "run" / "refined.json").read_text())["latency_ms"]


def test_weights_are_validated_and_fine_tuned_as_they_were_normalised(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """nas-train on 300 training images, then NetAdapt on 100 of them: the same weights score the
    same on the same validation images (the training split's mean and std follow --train-size; the
    weights' own travel with them), and a resume normalises as the run began."""
    from mobilenas.train.cli import main as nas_train
    from mobilenas.train.data import load_dataset
    from mobilenas.train.provenance import normalised_as_recorded

    data = ["--val-size", "100", "--test-size", "50", "--image-size", "16"]
    assert nas_train([ARCH, "--epochs", "2", "--train-size", "300", *data, "--no-onnx", "--out", str(tmp_path / "trained"), "--quiet"]) == 0
    metrics = json.loads(next((tmp_path / "trained").glob("*.metrics.json")).read_text())
    weights = metrics["files"]["weights"]
    out = tmp_path / "refined"
    capsys.readouterr()
    assert main(["refine", ARCH, "--weights", weights, "--train-size", "100", *data, "--budget-ratio", "0.9", "--max-iterations", "1",
                 "--finetune-steps", "1", "--final", "none", "--table", str(table), "--threads", "1", "--out", str(out), "--quiet"]) == 0
    assert "note: images normalised as the weights were trained" in capsys.readouterr().err
    own = load_dataset("synthetic", train_size=100, val_size=100, test_size=50, image_size=16)
    assert own.train.mean != tuple(metrics["dataset"]["mean"])  # else this test tests nothing
    assert history(out)[0]["accuracy"] == pytest.approx(metrics["val_accuracy"], abs=1e-9)
    recorded = json.loads((out / "manifest.json").read_text())["data"]
    assert recorded["mean"] == metrics["dataset"]["mean"] and recorded["std"] == metrics["dataset"]["std"]
    again = normalised_as_recorded(own, recorded)  # what a resume loads
    assert again.val.mean == tuple(metrics["dataset"]["mean"]) and torch.equal(again.val.images, own.val.images)
    assert json.loads((out / "refined.json").read_text())["preprocessing"]["mean"] == metrics["dataset"]["mean"]
    # nas-train fine-tuning the weights on fewer images normalises as they were trained too
    assert nas_train([ARCH, "--weights", weights, "--epochs", "1", "--train-size", "100", *data, "--no-onnx", "--out", str(tmp_path / "tuned")]) == 0
    assert "note: images normalised as the weights were trained" in capsys.readouterr().err
    tuned = json.loads(next((tmp_path / "tuned").glob("*.metrics.json")).read_text())
    assert tuned["dataset"]["mean"] == metrics["dataset"]["mean"] and tuned["preprocessing"]["std"] == metrics["dataset"]["std"]
