"""Fast checks of what a user meets around a ``netadapt`` run: output folders, notes kept with
--json, the granularity, a damaged refined.json, the planning progress (nothing is trained)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenas.netadapt.cli import main
from mobilenas.netadapt.core import plan_iteration
from mobilenas.netadapt.groups import ArchitectureDescription, prunable_groups
from mobilenas.netadapt.run import Settings, check_budget
from mobilenas.runs import RunDir
from mobilenas.space import reference

from helpers import tiny_arch

#: data that are not there: a check that failed to stop a run before any work stops it here, at once
NO_DATA = ["--dataset", "/nonexistent/data.npz"]


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a default run folder (results/runs/...) is made here, if any


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("option", ["--out", "--resume", "--table", "--weights", "--data-dir"])
def test_an_empty_folder_or_file_name_is_refused_not_taken_for_the_default(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["refine", "mobilenetv2", option, "", *NO_DATA]) == 2
    assert f"argument {option}" in (err := _one_line_error(capsys)) and ": expected a " in err and "got an empty name" in err


def test_the_other_commands_refuse_an_empty_out_too(capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.search.cli import main as nas_search
    from mobilenas.train.cli import main as nas_train

    for command, rest in ((nas_search, ["--target-latency", "nonsense"]), (nas_train, ["/nonexistent/arch.json"])):
        assert command(["--out", "", *rest]) == 2
        assert "argument --out: expected a folder, got an empty name (leave the option out for the default)" in _one_line_error(capsys)


def test_an_out_that_holds_a_search_run_is_not_sent_to_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    RunDir.create(tmp_path / "s1", {"kind": "search"})
    assert main(["refine", "mobilenetv2", "--out", str(tmp_path / "s1"), *NO_DATA]) == 2
    err = _one_line_error(capsys)
    assert err.endswith(f"{tmp_path / 's1'} already holds a nas-search run; choose another --out") and "--resume" not in err


def test_an_out_in_use_by_another_process_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = RunDir.create(tmp_path / "n1", {"kind": "netadapt"})
    code = "import sys\nfrom mobilenas.runs import RunDir\nwith RunDir(sys.argv[1]).claim():\n    print('held', flush=True)\n    sys.stdin.read()\n"
    holder = subprocess.Popen([sys.executable, "-c", code, str(run.root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(["refine", "mobilenetv2", "--out", str(run.root), *NO_DATA]) == 2
        err = _one_line_error(capsys)
        assert err.endswith(f"{run.root} already holds a run that another process (pid {holder.pid}) is working on now; choose another --out")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_folder_that_is_not_empty_or_lies_in_a_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hi\n")
    assert main(["refine", "mobilenetv2", "--out", str(tmp_path / "junk"), *NO_DATA]) == 2
    assert f"{tmp_path / 'junk'} is not empty (1 entry: notes.txt) and holds no run; a run's files would mix with them: choose a new or empty folder with --out" in _one_line_error(capsys)
    RunDir.create(tmp_path / "n1", {"kind": "netadapt"})
    for inside in (tmp_path / "n1" / "sub", tmp_path / "n1" / "sub" / "deeper"):
        assert main(["refine", "mobilenetv2", "--out", str(inside), *NO_DATA]) == 2
        assert f"{inside} is inside the run folder {tmp_path / 'n1'}, and its files would mix with that run's; choose a folder outside it with --out" in _one_line_error(capsys)
    assert not (tmp_path / "n1" / "sub").exists()


def test_what_a_run_killed_before_its_manifest_leaves_does_not_block_a_new_one(tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / ".lock").write_text("12345\n")  # its process is gone: the lock is held by none
    (stale / ".manifest.json.12345.tmp").write_text("{")
    assert RunDir.create(stale, {"kind": "netadapt"}).manifest()["kind"] == "netadapt"
    (tmp_path / "empty").mkdir()
    RunDir(tmp_path / "empty").refuse_existing("netadapt")
    RunDir(tmp_path / "new" / "deeper").refuse_existing("netadapt")
    # another tool's manifest.json above (a web app's, say) is no run
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "manifest.json").write_text(json.dumps({"name": "my app", "icons": []}))
    RunDir(tmp_path / "app" / "runs" / "r1").refuse_existing("search")


def test_refuse_existing_names_the_kind_of_run_and_its_command(tmp_path: Path) -> None:
    RunDir.create(tmp_path / "n", {"kind": "netadapt"})
    with pytest.raises(ValueError, match=r"already holds a NetAdapt run; netadapt refine --resume \S+ continues it, or choose another --out$"):
        RunDir(tmp_path / "n").refuse_existing()  # a caller that names no kind
    with pytest.raises(ValueError, match=r"already holds a NetAdapt run; choose another --out$"):
        RunDir(tmp_path / "n").refuse_existing("search")
    with pytest.raises(ValueError, match=r"already holds a run; use --resume \S+ to continue it, or choose another --out$"):
        RunDir(tmp_path / "n").refuse_existing("netadapt")


def _result(tmp_path: Path, *, latency_ms: float, accuracy: float, before: float) -> dict[str, object]:
    start = {"latency_ms": 2.66, "measured_latency_ms": 2.2, "accuracy": 0.3}
    return {"start": start, "latency_ms": latency_ms, "target_latency_ms": 1.6, "measured_latency_ms": 2.0 * 0.61, "accuracy": accuracy, "accuracy_before_final": before,
            "final": "finetune", "final_epochs": 1, "iterations": 4, "notation": "x", "run": str(tmp_path), "side_by_side": {"start_ms": 2.0, "refined_ms": 1.22, "ratio": 0.61}}


def test_the_notes_on_a_result_go_to_stderr_with_json_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.netadapt.cli import _report

    line = {"iteration": 0, "chosen": None, "target_latency_ms": None, "latency_ms": 2.66, "measured_latency_ms": 2.2, "accuracy_before_finetune": 0.3, "accuracy": 0.3, "proposals": []}
    settings = Settings(budget_ms=1.6, start_latency_ms=2.66, max_iterations=4)
    _report([line], _result(tmp_path, latency_ms=1.97, accuracy=0.25, before=0.28), argparse.Namespace(json=True), time_limit_reached=False, settings=settings)
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["budget_met"] is False and payload["latency_ms"] == 1.97
    assert "note: measured side by side, the refined network takes 0.61 of the start's time where the table said 0.74" in captured.err
    assert "note: the final fine-tune lowered validation accuracy from 0.2800 to 0.2500" in captured.err


@pytest.mark.parametrize(("limit", "time_limit_reached", "said"), [(4, False, "--max-iterations 4"), (None, True, "the time limit"), (9, True, "the time limit")])
def test_the_summary_says_when_the_budget_was_not_met_and_why(limit: int | None, time_limit_reached: bool, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.netadapt.cli import _report

    line = {"iteration": 0, "chosen": None, "target_latency_ms": None, "latency_ms": 2.66, "measured_latency_ms": 2.2, "accuracy_before_finetune": 0.3, "accuracy": 0.3}
    settings = Settings(budget_ms=1.6, start_latency_ms=2.66, max_iterations=limit)
    _report([line], _result(tmp_path, latency_ms=2.46, accuracy=0.3, before=0.3), argparse.Namespace(json=False), time_limit_reached=time_limit_reached, settings=settings)
    assert f"refined: 2.66 ms -> 2.46 ms by the table (budget 1.60 ms not met: stopped by {said}); measured" in capsys.readouterr().out
    _report([line], _result(tmp_path, latency_ms=1.5, accuracy=0.3, before=0.3), argparse.Namespace(json=False), time_limit_reached=time_limit_reached, settings=settings)
    assert "refined: 2.66 ms -> 1.50 ms by the table (budget 1.60 ms); measured" in capsys.readouterr().out


def test_a_granularity_wider_than_every_group_is_said_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "mobilenetv3-small", "--granularity", "2000"]) == 0
    captured = capsys.readouterr()
    assert "note: --granularity 2000 is not smaller than any group's width (the widest has 1024 channels), so no group can be pruned" in captured.err
    assert main(["describe", "mobilenetv3-small", "--granularity", "100", "--json"]) == 0
    captured = capsys.readouterr()
    assert "note: 9 of the 18 groups cannot shrink at --granularity 100: they are 100 channels wide or less (stem, " in captured.err
    json.loads(captured.out)
    assert main(["describe", "mobilenetv3-small"]) == 0
    assert "note:" not in capsys.readouterr().err
    # refine refuses it before any data or table work
    assert main(["refine", "mobilenetv3-small", "--granularity", "2000", *NO_DATA]) == 2
    assert "error: --granularity 2000 is not smaller than any group's width (the widest has 1024 channels)" in _one_line_error(capsys)


def test_the_narrowest_widths_of_an_unreachable_budget_are_in_numeric_order() -> None:
    arch = reference("mobilenetv3-small")
    with pytest.raises(ValueError) as raised:
        check_budget(arch, 1.0, 100, lambda a: 10.0 + sum(g.width for g in prunable_groups(a)) / 1000)
    message = str(raised.value)
    listed = message.split("every group at its narrowest width, ")[1].split(" channels")[0]
    widths = [int(width) for width in listed.split(", ")]
    assert widths == sorted(widths) and "9 of the 18 groups cannot shrink at --granularity 100" in message


def test_a_damaged_refined_json_names_the_resume_that_writes_it_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = RunDir.create(tmp_path / "fin1", {"kind": "netadapt"})
    (run.root / "refined.json").write_text('{"architecture": {"ver')
    assert main(["describe", str(run.root / "refined.json")]) == 2
    err = _one_line_error(capsys)
    assert "refined.json: not valid JSON (" in err and err.endswith(f"; it is the result of the NetAdapt run {run.root}: netadapt refine --resume {run.root} writes it again")
    (tmp_path / "loose.json").write_text("{")  # no run's: no such advice
    assert main(["describe", str(tmp_path / "loose.json")]) == 2
    assert "--resume" not in _one_line_error(capsys)


def test_planning_shows_progress_from_the_first_entry_measured(capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.netadapt.run import _PlanningProgress

    arch = tiny_arch()
    groups = prunable_groups(arch)
    measured = [0]

    def resource(a: object) -> float:
        measured[0] += 1  # every width a new table entry
        return float(sum(g.width for g in prunable_groups(a)))  # type: ignore[arg-type]

    planning = _PlanningProgress("iteration 1: measuring table entries to plan its proposals", len(groups), True, lambda: measured[0])
    calls: list[tuple[int, int]] = []

    def on_group(done: int, total: int) -> None:
        calls.append((done, total))
        planning.group_planned(done, total)

    current = resource(arch)
    measured[0] = 0
    plan_iteration(arch, current * 0.9, current, 4, ArchitectureDescription(), planning.wrap(resource), on_group)
    planning.close()
    assert calls == [(i, len(groups)) for i in range(1, len(groups) + 1)]
    assert "iteration 1: measuring table entries to plan its proposals" in capsys.readouterr().err
    # nothing measured (the table had every entry): no bar
    quiet = _PlanningProgress("planning", len(groups), True, lambda: 0)
    plan_iteration(arch, current * 0.9, current, 4, ArchitectureDescription(), quiet.wrap(resource), quiet.group_planned)
    quiet.close()
    assert "planning" not in capsys.readouterr().err


def test_the_summary_gives_the_starts_test_accuracy_beside_the_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The validation figures chose every pruning step; the test ones never did, so the summary
    sets the start's test accuracy beside the result's (runs finished before it was recorded: the result's alone)."""
    from mobilenas.netadapt.cli import _report

    line = {"iteration": 0, "chosen": None, "target_latency_ms": None, "latency_ms": 2.66, "measured_latency_ms": 2.2, "accuracy_before_finetune": 0.3, "accuracy": 0.3}
    settings = Settings(budget_ms=1.6, start_latency_ms=2.66)
    result = _result(tmp_path, latency_ms=1.5, accuracy=0.29, before=0.29)
    result["test_accuracy"] = 0.275
    _report([line], result, argparse.Namespace(json=False), time_limit_reached=False, settings=settings)
    assert "; test 0.2750\n" in capsys.readouterr().out
    result["start"]["test_accuracy"] = 0.3125  # type: ignore[index]
    _report([line], result, argparse.Namespace(json=False), time_limit_reached=False, settings=settings)
    assert "; test 0.3125 -> 0.2750\n" in capsys.readouterr().out
