"""nas-search end to end on a tabular benchmark: outputs, errors, and a real kill/resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mobilenas.results.cli import main as nas_results
from mobilenas.search.cli import main as nas_search
from mobilenas.search.cli import reachable_target_ms

from helpers import cell_search_args as _args


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]


def test_a_one_architecture_search_says_so_in_the_singular(cells: Path, tmp_path: Path, capsys) -> None:
    assert nas_search(_args(cells, tmp_path / "one", "--samples", "1", "--strategy", "random")) == 0
    assert "\n1 architecture evaluated (0 failed, 0 duplicates reused, " in capsys.readouterr().out


def test_tabular_search_writes_the_run_directory(cells: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert nas_search(_args(cells, out, "--samples", "25", "--strategy", "evolution", "--seed", "3")) == 0
    printed = capsys.readouterr().out
    assert "Pareto front" in printed and "best.json" in printed
    hint = f"the front as a figure: nas-results plot {out} (writes {out / 'front.png'}); in Jupyter: nas-results notebook {out}"
    assert hint in printed
    from mobilenas.results.cli import main as nas_results

    assert nas_results(hint.split("nas-results ")[1].split(" (")[0].split()) == 0 and (out / "front.png").is_file()  # as it says
    best = json.loads((out / "best.json").read_text())
    for key in ("architecture", "accuracy", "latency_ms", "measured_latency_ms", "target_latency_ms", "reward", "weights"):
        assert key in best
    assert best["target_latency_ms"] == 9.0 and best["measured_latency_ms"] is None and best["weights"] is None
    rows = list(csv.DictReader((out / "trials.csv").open()))
    trained = [r for r in rows if r["source"] == "trained"]
    assert len(trained) == 25
    assert max(float(r["reward"]) for r in trained) == pytest.approx(best["reward"])
    events = _events(out)
    numbers = [e["number"] for e in events if e["type"] == "result" and e["source"] == "trained"]
    assert sorted(numbers) == sorted(set(numbers))
    assert {e["number"] for e in events if e["type"] == "proposal" and e["source"] == "trained"} == set(numbers)
    pareto = list(csv.DictReader((out / "pareto.csv").open()))
    assert pareto and all(r["number"] in {t["number"] for t in trained} for r in pareto)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "search" and manifest["seed"] == 3 and manifest["strategy"]["name"] == "evolution"
    assert manifest["benchmark"]["latency_column"] == "latency_ms_toy"


def test_same_seed_same_search(cells: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert nas_search(_args(cells, tmp_path / name, "--samples", "12", "--strategy", "ppo", "--seed", "5")) == 0
    keys = [[e["key"] for e in _events(tmp_path / n) if e["type"] == "proposal"] for n in ("a", "b")]
    assert keys[0] == keys[1]


def test_a_benchmark_written_in_fractions_needs_accuracy_unit_and_then_searches_the_same(cells: Path, tmp_path: Path, capsys) -> None:
    import pandas as pd

    frame = pd.read_csv(cells)
    frame[["val_acc_12ep", "test_acc_200ep"]] /= 100
    fractions = tmp_path / "fractions.csv"
    frame.to_csv(fractions, index=False)
    assert nas_search(_args(fractions, tmp_path / "refused", "--samples", "5")) == 2
    assert "holds fractions (all values <= 1), not percent: use accuracy_unit='fraction' (nas-search --accuracy-unit fraction)" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    for name, table, extra in (("percent", cells, ()), ("fraction", fractions, ("--accuracy-unit", "fraction"))):
        assert nas_search(_args(table, tmp_path / name, "--samples", "12", "--seed", "2", *extra)) == 0
    best = {name: json.loads((tmp_path / name / "best.json").read_text()) for name in ("percent", "fraction")}
    assert best["fraction"]["architecture"] == best["percent"]["architecture"]
    assert best["fraction"]["accuracy"] == pytest.approx(best["percent"]["accuracy"]) and 0.5 < best["fraction"]["accuracy"] < 1


def test_a_table_missing_cells_of_the_space_is_refused_before_the_run_starts(cells: Path, tmp_path: Path, capsys) -> None:
    import pandas as pd

    partial = tmp_path / "partial.csv"
    pd.read_csv(cells).iloc[:49].to_csv(partial, index=False)
    assert nas_search(_args(partial, tmp_path / "run", "--samples", "500")) == 2
    assert "partial.csv lacks 15,576 of the 15,625 cells of the nb201 space (e.g. '|" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_target_only_rows_without_a_reward_meet_is_refused(cells: Path, tmp_path: Path, capsys) -> None:
    import pandas as pd

    frame = pd.read_csv(cells)
    reward = "val_acc_12ep"
    assert reward in frame.columns and (frame["latency_ms_toy"] <= 9).any()
    frame.loc[frame["latency_ms_toy"] <= 9, reward] = float("nan")  # every row within the 9 ms target: no accuracy
    broken = tmp_path / "broken.csv"
    frame.to_csv(broken, index=False)
    scored = frame.loc[frame[reward].notna(), "latency_ms_toy"].min()
    assert nas_search(_args(broken, tmp_path / "run", "--samples", "5")) == 2  # it had searched, recording only failures
    err = capsys.readouterr().err.strip()
    assert "every architecture of the table within the 9 ms target lacks a 'val_acc_12ep' value (a search would only record failures); the fastest with one takes " in err
    assert f"choose --target-latency {reachable_target_ms(scored):g}ms or more" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
    frame[reward] = float("nan")
    frame.to_csv(broken, index=False)
    assert nas_search(_args(broken, tmp_path / "run", "--samples", "5")) == 2
    assert "no row has both a 'val_acc_12ep' value and a latency: choose another --reward-column" in capsys.readouterr().err


def test_an_out_holding_a_netadapt_run_is_not_sent_to_a_resume(cells: Path, tmp_path: Path, capsys) -> None:
    from mobilenas.runs import RunDir

    RunDir.create(tmp_path / "pruned", {"kind": "netadapt"})
    assert nas_search(_args(cells, tmp_path / "pruned", "--samples", "3")) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{tmp_path / 'pruned'} already holds a NetAdapt run; choose another --out"), err  # it had offered netadapt's --resume


def test_a_target_only_cells_that_barely_learn_meet_gets_a_note(cells: Path, tmp_path: Path, capsys) -> None:
    import pandas as pd

    assert nas_search(_args(cells, tmp_path / "plain", "--samples", "3")) == 0
    assert "under half the table's best" not in capsys.readouterr().err
    frame = pd.read_csv(cells)
    frame.loc[frame["latency_ms_toy"] <= 9, "val_acc_12ep"] = 10.0  # chance on ten classes, as NB201's cells without a path
    poor = tmp_path / "poor.csv"
    frame.to_csv(poor, index=False)
    reaching = frame.loc[frame["val_acc_12ep"] >= 0.5 * frame["val_acc_12ep"].max(), "latency_ms_toy"].min()
    assert nas_search(_args(poor, tmp_path / "run", "--samples", "3")) == 0  # a note, not a refusal: the user may mean it
    err = capsys.readouterr().err
    assert (f"note: every architecture of the table within the 9 ms target scores at most 0.100 in 'val_acc_12ep', under half the table's best "
            f"({frame['val_acc_12ep'].max() / 100:.3f}); from --target-latency {reachable_target_ms(reaching):g}ms architectures reach half of it") in err, err


def test_a_run_damaged_from_outside_is_refused_by_name_and_left_as_it_is(cells: Path, tmp_path: Path, capsys) -> None:
    import shutil

    original = tmp_path / "run"
    assert nas_search(_args(cells, original, "--samples", "6")) == 0
    capsys.readouterr()
    damages = {
        "empty checkpoint": (lambda run: (run / "strategy.pt").write_bytes(b""), "strategy.pt cannot be read (EOFError: "),
        "no checkpoint": (lambda run: (run / "strategy.pt").unlink(), "strategy.pt is missing; the strategy cannot continue, but every finished trial is in events.jsonl"),
        "manifest": (lambda run: (run / "manifest.json").write_text("{not json"), "manifest.json is not valid JSON (Expecting property name"),
        # the checkpoint reflects more events than the journal holds: resuming would rewrite trials.csv from what is left
        "journal cut": (lambda run: (run / "events.jsonl").write_text(""), "events.jsonl holds 0 events but strategy.pt reflects "),
        "journal lines lost": (_drop_half_the_journal, "events.jsonl holds 7 events but strategy.pt reflects "),
        # a line mid-file garbled: it had been skipped without a word, and the resume told the strategy a result twice
        "journal line garbled": (_garble_a_result_line, "events.jsonl does not match strategy.pt: event 16 is not the one it reflects, so a line before it was lost or changed; line 8 is not a whole event"),
        # ... or lost, with as many lines as before: every later line stood one place off the checkpoint
        "journal line moved": (_move_a_line_to_the_end, "events.jsonl does not match strategy.pt: event 16 is not the one it reflects, so a line before it was lost or changed; put"),
    }
    for name, (damage, message) in damages.items():
        run = tmp_path / name.replace(" ", "-")
        shutil.copytree(original, run)
        damage(run)
        before = {file: (run / file).read_bytes() for file in ("events.jsonl", "trials.csv", "best.json")}
        assert nas_search(["--resume", str(run), "--samples", "9", "--quiet"]) == 2, name
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (name, err)
        assert {file: (run / file).read_bytes() for file in before} == before, name
        if name in ("journal lines lost", "journal line garbled"):  # nas-results show had sent it to that --resume ("interrupted: ... goes on")
            assert nas_results(["show", str(run)]) == 0
            shown = capsys.readouterr().out
            assert f"not finished    nas-search --resume refuses it as it is: {run / message}" in shown and "goes on" not in shown, shown


def _garble_a_result_line(run: Path) -> None:
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) == 18 and '"type": "result"' in lines[7]  # (line 8)
    lines[7] = "#!garbage\n"
    (run / "events.jsonl").write_text("".join(lines))


def _move_a_line_to_the_end(run: Path) -> None:
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    (run / "events.jsonl").write_text("".join(lines[:7] + lines[8:] + lines[7:8]))


def _drop_half_the_journal(run: Path) -> None:
    lines = (run / "events.jsonl").read_text().splitlines(keepends=True)
    (run / "events.jsonl").write_text("".join(lines[:7]))


def test_a_run_in_use_by_another_process_is_not_resumed_alongside(cells: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert nas_search(_args(cells, out, "--samples", "4")) == 0
    capsys.readouterr()
    holder_code = "import sys\nfrom mobilenas.runs import RunDir\nwith RunDir(sys.argv[1]).claim():\n    print('held', flush=True)\n    sys.stdin.read()\n"
    holder = subprocess.Popen([sys.executable, "-c", holder_code, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = (out / "events.jsonl").read_bytes()
        assert nas_search(["--resume", str(out), "--samples", "8", "--quiet"]) == 2
        assert f"{out} is in use by another process (pid {holder.pid}); let it finish or stop it, then --resume {out}" in capsys.readouterr().err
        assert (out / "events.jsonl").read_bytes() == before
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert nas_search(["--resume", str(out), "--samples", "8", "--quiet"]) == 0  # free again
    assert len([e for e in _events(out) if e["type"] == "result" and e["source"] == "trained"]) == 8


def test_resume_works_from_another_folder_and_refuses_a_changed_benchmark(cells: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(cells, work / "cells.csv")
    monkeypatch.chdir(work)
    args = ["--space", "nb201", "--benchmark", "cells.csv", "--latency-column", "latency_ms_toy", "--target-latency", "9ms", "--quiet"]
    assert nas_search([*args, "--out", "run", "--samples", "5"]) == 0
    recorded = json.loads((work / "run" / "manifest.json").read_text())["config"]["benchmark"]
    assert recorded == str(work / "cells.csv")  # by absolute path
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative path would not be found
    assert nas_search(["--resume", str(work / "run"), "--samples", "8", "--quiet"]) == 0
    assert len([e for e in _events(work / "run") if e["type"] == "result" and e["source"] == "trained"]) == 8
    capsys.readouterr()
    with (work / "cells.csv").open("a") as table:  # the table changes under the run
        table.write("99999,|nor_conv_3x3~0|+|x~0|x~1|+|x~0|x~1|x~2|,50,50,1\n")
    before = (work / "run" / "events.jsonl").read_bytes()
    assert nas_search(["--resume", str(work / "run"), "--samples", "10", "--quiet"]) == 2
    assert "cells.csv has changed since the run started (fingerprint " in capsys.readouterr().err
    assert (work / "run" / "events.jsonl").read_bytes() == before


def test_unreachable_target_stops_before_any_evaluation(cells: Path, tmp_path: Path, capsys) -> None:
    code = nas_search(["--space", "nb201", "--benchmark", str(cells), "--latency-column", "latency_ms_toy", "--target-latency", "0.5ms", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert "even the fastest architecture of the table takes 1.0" in err and "over the 0.5 ms target" in err
    assert err.strip().endswith("ms or more")  # a table has no smaller space to offer
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("fastest", "suggested"), [(7.23, 7.3), (12.34, 13.0), (0.011284, 0.012), (7.0, 7.0), (1.0, 1.0), (99.5, 100.0), (0.9591, 0.96)])
def test_the_suggested_target_is_the_fastest_rounded_up(fastest: float, suggested: float) -> None:
    # before: one decimal always, so 0.011 ms suggested 0.1 ms, nine times what is needed
    from mobilenas.search.cli import reachable_target_ms

    assert reachable_target_ms(fastest) == pytest.approx(suggested) and reachable_target_ms(fastest) >= fastest


def test_the_suggested_target_is_never_below_the_fastest() -> None:
    from mobilenas.search.cli import reachable_target_ms

    rng = np.random.default_rng(0)
    for fastest in [*(10.0 ** rng.uniform(-3, 3, 2000)), 7.2 + 1e-12, 0.30000000000000004, 1.1, 2.3]:
        suggested = reachable_target_ms(fastest)
        assert fastest <= suggested < fastest * 1.1 + 1e-12, (fastest, suggested)
        assert float(f"{suggested:g}") == suggested  # what the message prints is the value itself


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--space", "nb201"], "--target-latency is required"),
        (["--target-latency", "5ms", "--space", "nb201"], "--space nb201 needs --benchmark"),
        (["--target-latency", "5ms", "--space", "mnasnet", "--benchmark", "x.csv"],
         "--benchmark is for the tabular space nb201, not --space mnasnet; drop --space or give --space nb201"),
        (["--target-latency", "fast"], "cannot read 'fast' as a duration"),
        (["--target-latency", "5ms", "--seed", "-1"], "argument --seed: expected a whole number from 0 to 4294967295"),
        # torch's 'Overflow when unpacking long long' once a strategy seeded its generator
        (["--target-latency", "5ms", "--seed", "99999999999999999999"], "argument --seed: expected a whole number from 0 to 4294967295"),
        (["--target-latency", "5ms", "--reward", "custom"], "--reward custom needs --w"),
        (["--target-latency", "5ms", "--strategy", "bayes"], "argument --strategy: unknown strategy 'bayes': choose one of ppo, reinforce"),
        (["--resume", "/nonexistent/run"], "is not a directory"),
        (["--target-latency", "5ms", "--space", "nb201", "--benchmark", "x.csv", "--dataset", "cifar10", "--proxy-steps", "50"],
         "--dataset, --proxy-steps would have no effect on a tabular search (accuracy and latency come from --benchmark); drop them"),
        (["--target-latency", "5ms", "--latency-column", "latency_ms_pixel3"],
         "--latency-column would have no effect without --space nb201 --benchmark CSV; drop it"),
        (["--target-latency", "5ms", "--space", "nb201", "--benchmark", "x.csv", "--workers", "4", "--ray-address", "10.0.0.1:6379"],
         "--workers, --ray-address would have no effect on a tabular search (its table lookups run in this process, one at a time)"),
        (["--target-latency", "5ms", "--time-limit", "90"], "argument --time-limit: cannot tell seconds from minutes in '90': give it a unit, like 90s, 30min or 2h"),
        (["--target-latency", "5ms", "--executor", "inline", "--workers", "2"],
         "--workers would have no effect with --executor inline (trainings run in this process, one at a time); drop it, or drop --executor inline"),
        (["--target-latency", "5ms", "--early-stopping", "--proxy-steps", "1"],  # it ran, stopping nothing
         "--early-stopping would have no effect with --proxy-steps 1 (it stops a training part-way, by its loss against the others'); drop it, or give more --proxy-steps"),
        (["--target-latency", "5ms", "--executor", "inline", "--early-stopping"],  # a Ray Tune scheduler's: it was silently ignored
         "--early-stopping would have no effect with --executor inline (trainings run in this process, one at a time); drop it, or drop --executor inline"),
    ],
)
def test_usage_errors_are_one_line(argv: list[str], fragment: str, capsys) -> None:
    assert nas_search(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_bad_strategy_option_fails_before_any_table_work(tmp_path: Path, capsys) -> None:
    # A mobilenetv3 search would open (here: create) its latency table first; the typo must
    # be reported before that, not after minutes of measuring.
    table = tmp_path / "table.jsonl"
    argv = ["--target-latency", "15ms", "--strategy", "ppo", "--strategy-option", "risk_seeking=2", "--latency-table", str(table), "--out", str(tmp_path / "run")]
    assert nas_search(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "ppo.risk_seeking: must be a number in (0, 1], got 2.0" in err and len(err.splitlines()) == 1
    assert not table.exists() and not (tmp_path / "run").exists()


def test_a_benchmark_implies_the_cell_space(cells: Path, tmp_path: Path) -> None:
    # --benchmark names a tabular search; --space nb201 need not be typed as well.
    out = tmp_path / "run"
    args = _args(cells, out, "--samples", "4", "--strategy", "random")
    assert args[:2] == ["--space", "nb201"]
    assert nas_search(args[2:]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["space"] == "nb201" and len(list(csv.DictReader((out / "trials.csv").open()))) == 4
    assert nas_search(["--resume", str(out), "--samples", "6"]) == 0
    assert len(list(csv.DictReader((out / "trials.csv").open()))) == 6


def test_resume_refuses_changed_arguments(cells: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    assert nas_search(_args(cells, out, "--samples", "5", "--strategy", "random")) == 0
    assert nas_search(["--resume", str(out), "--strategy", "tpe", "--early-stopping"]) == 2
    assert "(it has --early-stopping off; --strategy random); drop --early-stopping, --strategy (only" in capsys.readouterr().err
    # the run's own command with --resume added (up-arrow, --resume RUN) continues it, from any folder
    again = _args(cells, out, "--samples", "7", "--strategy", "random")
    monkeypatch.chdir(cells.parent)
    relative = [cells.name if a == str(cells) else a for a in again]
    assert relative != again and nas_search([*relative, "--resume", str(out)]) == 0
    assert len(list(csv.DictReader((out / "trials.csv").open()))) == 7
    assert nas_search(["--resume", str(out), "--workers", "2"]) == 2  # may change on a network search only
    assert "--workers would have no effect on a tabular search" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["config"]["workers"], manifest["config"]["executor"]) == (1, "inline")  # what happened
    # Runs of earlier versions recorded the unused network defaults; they resume all the same.
    manifest["config"].update(workers=2, executor="ray")
    (out / "manifest.json").write_text(json.dumps(manifest))
    # More samples may be asked for: the run continues where it ended.
    assert nas_search(["--resume", str(out), "--samples", "8", "--quiet"]) == 0
    trained = [e for e in _events(out) if e["type"] == "result" and e["source"] == "trained"]
    assert len(trained) == 8 and len({e["number"] for e in trained}) == 8
    capsys.readouterr()
    # Fewer samples than the run has asked for: a one-line usage error, the journal untouched.
    before = (out / "events.jsonl").read_text()
    assert nas_search(["--resume", str(out), "--samples", "3", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--samples 3 is below the 8 architectures" in err and len(err.splitlines()) == 1
    assert (out / "events.jsonl").read_text() == before
    assert nas_search(["--resume", str(out), "--samples", "3"]) == 2  # not quiet: no progress bar before the error
    err = capsys.readouterr().err
    assert "--samples 3 is below the 8 architectures" in err and "%|" not in err and "0/3" not in err
    # A finished run resumed: said so, nothing evaluated or journaled, the same best.json.
    best = json.loads((out / "best.json").read_text())
    assert nas_search(["--resume", str(out)]) == 0
    assert "the run is complete (8 architectures evaluated)" in capsys.readouterr().err
    assert (out / "events.jsonl").read_text() == before
    assert json.loads((out / "best.json").read_text()) == best


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ppo", "tpe"])
def test_killed_run_resumes_without_losing_or_repeating_trials(cells: Path, tmp_path: Path, strategy: str) -> None:
    out = tmp_path / "run"
    samples = 60
    command = [sys.executable, "-m", "mobilenas.search.cli", *_args(cells, out, "--samples", str(samples), "--strategy", strategy)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        events = out / "events.jsonl"
        if events.exists() and sum(1 for line in events.read_text().splitlines() if '"result"' in line) >= 15:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # no chance to clean up
    process.wait()
    before = [e for e in _events(out) if e["type"] == "result" and e["source"] == "trained"]
    assert 15 <= len(before) < samples
    assert nas_search(["--resume", str(out), "--quiet"]) == 0
    after = [e for e in _events(out) if e["type"] == "result" and e["source"] == "trained"]
    numbers = [e["number"] for e in after]
    assert len(numbers) == len(set(numbers)) == samples  # nothing repeated, the budget completed
    assert {e["number"]: e["key"] for e in before}.items() <= {e["number"]: e["key"] for e in after}.items()
    rows = [r for r in csv.DictReader((out / "trials.csv").open()) if r["source"] == "trained"]
    assert len(rows) == samples


def test_a_search_too_short_for_its_strategy_to_learn_is_noted(cells: Path, tmp_path: Path, capsys) -> None:
    assert nas_search(_args(cells, tmp_path / "a", "--strategy", "nsga2", "--samples", "20")) == 0
    err = capsys.readouterr().err
    assert "note: --samples 20 ends within nsga2's first 50 proposals (population_size)" in err
    assert "this search is a random search" in err and "--strategy-option population_size=N" in err
    assert nas_search(_args(cells, tmp_path / "b", "--strategy", "nsga2", "--samples", "20", "--strategy-option", "population_size=8")) == 0
    assert nas_search(_args(cells, tmp_path / "c", "--strategy", "ppo", "--samples", "20")) == 0  # batch_size 10: two updates
    assert "ends within" not in capsys.readouterr().err
    # a resumed run says it too, once the run has been read
    assert nas_search(["--resume", str(tmp_path / "c"), "--samples", "25"]) == 0
    assert "note:" not in capsys.readouterr().err
    assert nas_search(_args(cells, tmp_path / "d", "--strategy", "ppo", "--samples", "5", "--strategy-option", "batch_size=12")) == 0
    capsys.readouterr()
    assert nas_search(["--resume", str(tmp_path / "d"), "--samples", "8"]) == 0
    assert "note: --samples 8 ends within ppo's first 12 proposals (batch_size)" in capsys.readouterr().err
    # a bad option gets its error alone (the note had come first)
    args = _args(cells, tmp_path / "e", "--samples", "5")
    args[args.index("--latency-column") + 1] = "latency_ms_tyo"
    assert nas_search(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("nas-search: error: latency column 'latency_ms_tyo' is not in"), err


class _Killed(BaseException):
    """Stands for a kill: nothing below the point where it is raised runs."""


def test_a_proposal_lost_twice_to_kills_is_asked_again_and_kept(cells: Path, tmp_path: Path, monkeypatch) -> None:
    # A kill between journaling a proposal and checkpointing the strategy abandons the proposal;
    # the strategy, restarted from the checkpoint before it, asks it again under the same number.
    # That second proposal and its result were not journaled (taken for lines already written),
    # and after a second kill and resume the trial was dropped from trials.csv: 29 of 30 rows.
    from mobilenas.search import orchestrator

    out = tmp_path / "run"
    real = orchestrator.SearchRun._checkpoint

    def run(argv: list[str], dies_at: int | None) -> None:
        calls = 0

        def checkpoint(self: orchestrator.SearchRun) -> None:
            nonlocal calls
            calls += 1
            if calls == dies_at:
                raise _Killed
            real(self)

        monkeypatch.setattr(orchestrator.SearchRun, "_checkpoint", checkpoint)
        if dies_at is None:
            assert nas_search(argv) == 0
        else:
            with pytest.raises(_Killed):
                nas_search(argv)

    run(_args(cells, out, "--samples", "30", "--strategy", "random"), 21)  # the checkpoint after asking proposal 10
    run(["--resume", str(out), "--quiet"], 8)
    run(["--resume", str(out), "--quiet"], None)
    events = _events(out)
    abandoned = [e["number"] for e in events if e["type"] == "abandoned"]
    assert len(abandoned) == 2
    results = {e["number"]: e for e in events if e["type"] == "result" and e["source"] == "trained"}
    assert sorted(results) == list(range(30))
    for number in abandoned:  # asked again, journaled again, after its abandoned line
        last = max(i for i, e in enumerate(events) if e["type"] == "abandoned" and e["number"] == number)
        again = [e for e in events[last:] if e["type"] == "proposal" and e["number"] == number]
        assert len(again) == 1 and again[0]["key"] == results[number]["key"]
    rows = [r for r in csv.DictReader((out / "trials.csv").open()) if r["source"] == "trained"]
    assert sorted(int(r["number"]) for r in rows) == list(range(30))
    from mobilenas.results import load_run  # nas-results reads the journal by the same rule

    trials = load_run(out).trials
    assert sorted(trials[trials["source"] == "trained"]["number"]) == list(range(30))


def test_best_json_names_what_a_proposal_asked_again_after_a_kill_evaluated(cells: Path, tmp_path: Path, monkeypatch) -> None:
    # A proposal lost to a kill is asked again under its number; a strategy changed meanwhile (a
    # strategy of one's own, edited: the run goes on with the code as it is now) proposes another
    # architecture. best.json took its architecture from the number's first, abandoned, proposal.
    import pandas as pd

    from mobilenas.search import orchestrator
    from mobilenas.search.rewards import RewardSpec
    from mobilenas.search.strategies.random_search import RandomSearch
    from mobilenas.space.nb201 import CellSpace

    frame = pd.read_csv(cells)
    rewards = [RewardSpec.soft()(a / 100, lat, 9.0).reward for a, lat in zip(frame["val_acc_12ep"], frame["latency_ms_toy"], strict=True)]
    top = frame["arch_str"][int(np.argmax(rewards))]  # the table's best cell: the best of any run that evaluates it
    out = tmp_path / "run"
    real = orchestrator.SearchRun._checkpoint
    calls = 0

    def checkpoint(self: orchestrator.SearchRun) -> None:
        nonlocal calls
        calls += 1
        if calls == 21:  # after a proposal was journaled, before the strategy that asked it was saved
            raise _Killed
        real(self)

    monkeypatch.setattr(orchestrator.SearchRun, "_checkpoint", checkpoint)
    with pytest.raises(_Killed):
        nas_search(_args(cells, out, "--samples", "30", "--strategy", "random"))
    monkeypatch.setattr(orchestrator.SearchRun, "_checkpoint", real)
    events = _events(out)
    lost = {e["number"] for e in events if e["type"] == "proposal"} - {e["number"] for e in events if e["type"] == "result"}
    assert len(lost) == 1
    number = lost.pop()
    propose = RandomSearch._propose
    monkeypatch.setattr(RandomSearch, "_propose", lambda self, n: (tuple(CellSpace().encode(top)), None) if n == number else propose(self, n))
    assert nas_search(["--resume", str(out), "--quiet"]) == 0
    events = _events(out)
    assert [e["number"] for e in events if e["type"] == "abandoned"] == [number]
    first, again = [e for e in events if e["type"] == "proposal" and e["number"] == number]
    assert first["key"] != top and again["key"] == top  # what the case is about
    best = json.loads((out / "best.json").read_text())
    assert best["number"] == number and best["fingerprint"] == best["notation"] == top
    assert best["architecture"] == top  # was first["key"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ppo", "random", "tpe", "evolution", "reinforce", "nsga2"])
def test_kills_at_any_write_then_resume_give_the_uninterrupted_run(cells: Path, tmp_path: Path, monkeypatch, capsys, strategy: str) -> None:
    # Every journal line and every file the run writes is a point where a kill can land. Killed at
    # one of them, then twice more while resuming, the run must end as the one never killed did:
    # the same trained trials (number, architecture, reward), the same best and the same front.
    import mobilenas.runs as runs
    from mobilenas.search import orchestrator

    written = 0
    dies_at: set[int] = set()

    def write_point() -> None:
        nonlocal written
        written += 1
        if written in dies_at:
            raise _Killed

    extend = runs.Journal.extend  # append calls it too

    def extend_or_die(self, events) -> None:
        try:
            write_point()
        except _Killed:
            extend(self, events[: len(events) // 2])  # a kill inside one write of several lines leaves a prefix
            raise
        extend(self, events)

    monkeypatch.setattr(runs.Journal, "extend", extend_or_die)
    for module in (runs, orchestrator):  # the run's files (manifest, best.json) and the search's
        for name in ("atomic_write_bytes", "atomic_write_text"):
            real = getattr(module, name)
            monkeypatch.setattr(module, name, lambda *a, _real=real, **k: (write_point(), _real(*a, **k))[1])

    def run(argv: list[str], at: int | None) -> bool:
        nonlocal written
        written = 0
        dies_at.clear()
        dies_at.update({at} if at else set())
        try:
            assert nas_search(argv) == 0
        except _Killed:
            return True
        return False

    def outcome(out: Path) -> tuple[Any, ...]:
        from mobilenas.results import load_run

        trained = sorted((r["number"], r["key"], r["reward"]) for r in csv.DictReader((out / "trials.csv").open()) if r["source"] == "trained")
        trials = load_run(out).trials  # what nas-results reads from the journal
        read = sorted(trials[trials["source"] == "trained"]["key"])
        return trained, read, json.loads((out / "best.json").read_text())["fingerprint"], (out / "pareto.csv").read_text()

    def given(out: Path) -> list[str]:
        return _args(cells, out, "--samples", "12", "--strategy", strategy, "--seed", "1")

    assert not run(given(tmp_path / "reference"), None)
    reference, points = outcome(tmp_path / "reference"), written
    assert len(reference[0]) == 12 and points > 60
    for at in range(3, points, 9):
        out = tmp_path / f"killed-at-{at}"
        assert run(given(out), at)
        for again in (7, 23):
            run(["--resume", str(out), "--quiet"], again)
        assert not run(["--resume", str(out), "--quiet"], None)
        assert outcome(out) == reference, f"killed at write {at}"
    capsys.readouterr()


def test_strategy_option_help_lists_every_option_with_its_default(cells: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import dataclasses

    from mobilenas.search.strategies import STRATEGIES, default_config, describe_options

    monkeypatch.chdir(tmp_path)
    defaults = {name: dataclasses.asdict(default_config(name)) for name in STRATEGIES}
    for name in STRATEGIES:
        rows = describe_options(name)
        assert [r["name"] for r in rows] == list(defaults[name]) and all(r["default"] == defaults[name][r["name"]] for r in rows)
        assert all(r["name"] in r["description"] for r in rows), name  # every option is explained in its config's docstring
    assert nas_search(["--strategy-option", "help"]) == 0  # no --target-latency needed, as for --help
    printed = capsys.readouterr().out
    assert printed.startswith("ppo options") and "  learning_rate=0.01\n      Adam's step size." in printed
    assert all(f"  {option}=" in printed for option in defaults["ppo"])
    assert nas_search(["--strategy", "nsga2", "--strategy-option", "help", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["strategy"] == "nsga2" and listed["options"][0]["name"] == "population_size" and listed["options"][0]["default"] == 50
    assert nas_search(["--strategy", "random", "--strategy-option", "help"]) == 0
    assert capsys.readouterr().out.strip() == "random has no options"
    assert not (tmp_path / "results").exists()  # nothing was started
    # beside --resume: the options of the strategy that run uses
    assert nas_search(_args(cells, tmp_path / "run", "--strategy", "evolution", "--samples", "3")) == 0
    capsys.readouterr()
    assert nas_search(["--resume", str(tmp_path / "run"), "--strategy-option", "help"]) == 0
    assert capsys.readouterr().out.startswith("evolution options")


def test_a_best_on_the_other_side_of_the_target_by_measurement_is_noted() -> None:
    from mobilenas.search.cli import measurement_note

    # within 15% and on the same side of the target: nothing to say
    assert measurement_note([13.0], 13.0, 14.0, 15.0) is None
    # 14% below the table, which put it over the 15 ms target the measurement meets (a user's
    # fresh run: 15.39 ms by a table built beside other jobs, 13.16 ms measured; nothing was said)
    note = measurement_note([13.16], 13.16, 15.39, 15.0)
    assert note == (
        "note: the best measures 13.16 ms end to end (13.16 ms), 14% below its 15.39 ms by the latency table;"
        " by the table it misses the 15 ms target, measured it meets it"
    )
    assert "by the table it meets the 15 ms target, measured it misses it" in (measurement_note([15.5], 15.5, 14.5, 15.0) or "")
    # far off on the same side: the gap alone
    note = measurement_note([5.0, 5.2, 5.1], 5.1, 9.0, 15.0) or ""
    assert note.startswith("note: the best measures 5.10 ms end to end (5.00 ms, 5.20 ms, 5.10 ms), 43% below its 9.00 ms") and "target" not in note


@pytest.mark.parametrize(("reward", "differs"), [(["--reward", "custom", "--w", "-0.5"], True), (["--reward", "hard"], False)])
def test_the_most_accurate_architecture_within_the_target_is_named_where_it_is_not_the_best(cells: Path, tmp_path: Path, capsys, reward: list[str], differs: bool) -> None:
    # a reward that pays for speed under the target (soft's -0.07, or here -0.5): asked for 9 ms, its
    # best may be a far faster, less accurate cell than one found within the target, which the end
    # of the search then names; the hard reward is accuracy itself within the target
    out = tmp_path / reward[1]
    args = _args(cells, out, "--samples", "40", "--strategy", "random", "--seed", "1", *reward)
    assert nas_search([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = [r for r in csv.DictReader((out / "trials.csv").open()) if r["source"] == "trained" and r["status"] == "ok"]
    within = [r for r in rows if float(r["latency_ms"]) <= 9.0]
    expected = max(within, key=lambda r: (float(r["accuracy"]), -float(r["latency_ms"])))
    accurate = summary["most_accurate_within_target"]
    assert accurate["number"] == int(expected["number"]) and accurate["accuracy"] == pytest.approx(float(expected["accuracy"]))
    assert (accurate["accuracy"] > summary["best"]["accuracy"]) == differs
    assert nas_search(["--resume", str(out)]) == 0  # the finished run's summary, as text
    printed = capsys.readouterr().out
    named = differs or summary["best"]["latency_ms"] > 9.0  # and where the best is over the target (the hard reward allows it)
    assert ("most accurate within the target: #" + str(accurate["number"]) in printed) == named
    if differs:
        assert f"ranked below the best by the custom reward ({accurate['reward']:.4f} < {summary['best']['reward']:.4f}); --reward hard" in printed
    from mobilenas.results.cli import main as nas_results

    assert nas_results(["show", str(out)]) == 0
    assert f"trial #{accurate['number']} at {float(expected['latency_ms']):.2f} ms" in capsys.readouterr().out
    from mobilenas.results import load_run
    from mobilenas.results.plots import plot_front

    labels = [t.get_text() for t in plot_front(load_run(out)).axes[0].get_legend().get_texts()]
    assert (f"{out.name}: most accurate within the target (#{accurate['number']})" in labels) == named  # a diamond, where the summary names it


def test_a_target_that_cannot_change_the_ranking_is_said_to_be_no_limit(cells: Path, tmp_path: Path, capsys) -> None:
    # the soft reward scales every reward by T^0.07: at 9 ms and at 18 ms the same search (evolution
    # compares rewards only) and the same best; the note says so before the search
    runs = {}
    for target in ("9", "18"):
        out = tmp_path / f"soft-{target}"
        assert nas_search(_args(cells, out, "--samples", "30", "--strategy", "evolution", "--seed", "4", "--target-latency", f"{target}ms")) == 0
        assert (f"note: the soft reward ACC x (LAT/T)^-0.07 scales every architecture's reward by the same T^0.07, so the {target} ms target is no"
                " limit and does not change which one scores best (each 2x in latency costs 4.7% relative accuracy, whatever the target);"
                " for a limit use --reward hard, or --max-latency-ratio 1") in capsys.readouterr().err
        runs[target] = ([e["indices"] for e in _events(out) if e["type"] == "proposal"], json.loads((out / "best.json").read_text())["architecture"])
    assert runs["9"] == runs["18"]
    assert nas_search(_args(cells, tmp_path / "w0", "--samples", "5", "--reward", "custom", "--w", "0")) == 0
    assert "note: the custom reward with w = 0 is the accuracy alone, so the 9 ms target is no limit" in capsys.readouterr().err
    for name, extra in (("hard", ["--reward", "hard"]), ("filter", ["--max-latency-ratio", "1"]), ("absolute", ["--reward", "absolute"]),
                        ("absolute-40", ["--reward", "absolute", "--target-latency", "40ms"])):
        assert nas_search(_args(cells, tmp_path / name, "--samples", "5", *extra)) == 0
        err = capsys.readouterr().err
        assert "no limit" not in err and "constrains nothing" not in err, name  # a limit: nothing to say
    assert nas_search(["--resume", str(tmp_path / "soft-9"), "--samples", "32"]) == 0
    assert "no limit" not in capsys.readouterr().err  # said when the run started, not again
    # the hard reward, with a target that even the slowest cell of the table meets: no limit either
    import pandas as pd

    slowest = pd.read_csv(cells)["latency_ms_toy"].max()
    assert nas_search(_args(cells, tmp_path / "hard-40", "--samples", "5", "--reward", "hard", "--target-latency", "40ms")) == 0
    assert (f"note: even the slowest architecture of the table takes only {slowest:.2f} ms by the latency table, within the 40 ms target,"
            f" so the target constrains nothing: the hard reward is then the accuracy alone; a target below {slowest:.2f} ms") in capsys.readouterr().err
    # seconds typed for milliseconds, whatever the reward: said (only the hard reward's note had hinted at it)
    for name, extra in (("soft-15s", []), ("hard-15s", ["--reward", "hard"])):
        assert nas_search(_args(cells, tmp_path / name, "--samples", "2", "--target-latency", "15s", *extra)) == 0
        err = capsys.readouterr().err
        assert (f"note: the target, 15000 ms, is over 100 times the slowest architecture of the table's {slowest:.2f} ms;"
                " if it was meant in milliseconds, give the unit ms (15ms; 15s is 15000 ms)") in err, name
    assert nas_search(_args(cells, tmp_path / "soft-40", "--samples", "2", "--target-latency", "40ms")) == 0
    assert "is over 100 times" not in capsys.readouterr().err


def test_a_best_over_the_target_is_said_to_be_and_what_meets_it_is_named(cells: Path, tmp_path: Path, capsys) -> None:
    # the soft reward hands a user asking for 1.5 ms a slower best; the end of the search says it is
    # over, and names the most accurate architecture within the target even though it is less accurate
    import pandas as pd

    def trained(out: Path) -> list[dict[str, str]]:
        return [r for r in csv.DictReader((out / "trials.csv").open()) if r["source"] == "trained" and r["status"] == "ok"]

    out = tmp_path / "loose"
    assert nas_search(_args(cells, out, "--samples", "40", "--strategy", "random", "--seed", "2", "--target-latency", "1.5ms")) == 0
    printed = capsys.readouterr().out
    best = json.loads((out / "best.json").read_text())
    within = [r for r in trained(out) if float(r["latency_ms"]) <= 1.5]
    assert best["latency_ms"] > 1.5 and within  # what the case is about
    expected = max(within, key=lambda r: (float(r["accuracy"]), -float(r["latency_ms"])))
    assert float(expected["accuracy"]) < best["accuracy"]
    assert f"  latency / target = {best['latency_ms'] / 1.5:.2f}: over the target\nmost accurate within the target: #{expected['number']}," in printed
    # a target only the table's fastest cell meets: nothing evaluated meets it
    fastest = float(pd.read_csv(cells)["latency_ms_toy"].min())
    out = tmp_path / "tight"
    assert nas_search(_args(cells, out, "--samples", "5", "--strategy", "random", "--seed", "2", "--target-latency", f"{fastest * 1.0001}ms")) == 0
    assert not [r for r in trained(out) if float(r["latency_ms"]) <= fastest * 1.0001]
    assert f"nothing evaluated is within the {fastest * 1.0001:g} ms target by the table; --max-latency-ratio 1 spends every evaluation within it" in capsys.readouterr().out
    assert nas_results(["show", str(out)]) == 0  # in the same words ('best accuracy -' read as a value missing)
    assert f"  within target   nothing evaluated is within the {fastest * 1.0001:g} ms target\n" in capsys.readouterr().out
    # within the target: neither line
    out = tmp_path / "hard"
    assert nas_search(_args(cells, out, "--samples", "10", "--strategy", "random", "--seed", "2", "--reward", "hard", "--target-latency", "40ms")) == 0
    printed = capsys.readouterr().out
    assert "over the target" not in printed and "most accurate within" not in printed and "nothing evaluated" not in printed


def test_ctrl_c_before_the_run_folder_exists_says_there_is_nothing_to_resume(cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # it said "completed work is saved" with nothing saved; after the folder exists, how to go on
    import mobilenas.search.cli as search_cli
    from mobilenas.search.orchestrator import SearchRun

    real = search_cli.build_setup
    monkeypatch.setattr(search_cli, "build_setup", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    out = tmp_path / "run"
    assert nas_search(_args(cells, out, "--samples", "5", "--strategy", "random")) == 130
    assert "interrupted; no search was started yet, so there is nothing to resume" in capsys.readouterr().err and not out.exists()
    monkeypatch.setattr(search_cli, "build_setup", real)
    monkeypatch.setattr(SearchRun, "__init__", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert nas_search(_args(cells, out, "--samples", "5", "--strategy", "random")) == 130
    assert f"interrupted; completed work is saved; continue with: nas-search --resume {out}" in capsys.readouterr().err
    monkeypatch.undo()
    assert nas_search(["--resume", str(out), "--quiet"]) == 0  # as the line says
    assert sum(r["source"] == "trained" for r in csv.DictReader((out / "trials.csv").open())) == 5


def test_the_latency_filter_moves_the_progress_bar_while_it_rejects(cells: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ask spun through rejection after rejection behind a frozen bar: the filter now calls the run's update
    from mobilenas.search.orchestrator import SearchRun
    from mobilenas.search.wrappers import LatencyFilter, StrategyWrapper

    made: list[SearchRun] = []
    real = SearchRun.__init__
    monkeypatch.setattr(SearchRun, "__init__", lambda self, *a, **k: (real(self, *a, **k), made.append(self))[0])
    assert nas_search(_args(cells, tmp_path / "run", "--samples", "5", "--strategy", "random", "--max-latency-ratio", "1")) == 0
    wrapper = made[0].strategy
    while isinstance(wrapper, StrategyWrapper) and not isinstance(wrapper, LatencyFilter):
        wrapper = wrapper.inner
    assert isinstance(wrapper, LatencyFilter) and wrapper.on_rejections == made[0]._notify


def test_a_latency_filter_nothing_passes_is_refused_before_any_work(cells: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # it rejected 10,000 proposals in a row (minutes, a frozen progress bar) and then failed
    import pandas as pd

    fastest = float(pd.read_csv(cells)["latency_ms_toy"].min())
    out = tmp_path / "run"
    target = fastest * 4
    assert nas_search(_args(cells, out, "--samples", "5", "--strategy", "random", "--target-latency", f"{target}ms", "--max-latency-ratio", "0.2")) == 2
    err = capsys.readouterr().err
    assert "--max-latency-ratio 0.2 rejects everything over" in err and f"give --max-latency-ratio {reachable_target_ms(0.25):g} or more" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert nas_search(_args(cells, out, "--samples", "5", "--strategy", "random", "--target-latency", f"{target}ms", "--max-latency-ratio", f"{reachable_target_ms(fastest / target):g}")) == 0


@pytest.mark.parametrize("extra", [[], ["--max-latency-ratio", "1"]])
def test_a_cell_without_latency_fails_its_trial_not_the_search(cells: Path, tmp_path: Path, extra: list[str]) -> None:
    # the latency is read before an evaluation (and by the latency filter): an empty cell there
    # stopped the search with a usage error, and every resume met it again. Now its evaluation
    # fails; the filter rejects it (a latency not known cannot be shown to be within the limit)
    import pandas as pd

    assert nas_search(_args(cells, tmp_path / "whole", "--samples", "8", "--strategy", "random", *extra)) == 0
    first = next(e["key"] for e in _events(tmp_path / "whole") if e["type"] == "proposal")
    frame = pd.read_csv(cells)
    frame.loc[frame["arch_str"] == first, "latency_ms_toy"] = np.nan
    holed = tmp_path / "holed.csv"
    frame.to_csv(holed, index=False)
    out = tmp_path / "run"
    assert nas_search(_args(holed, out, "--samples", "8", "--strategy", "random", *extra)) == 0
    everything = list(csv.DictReader((out / "trials.csv").open()))
    rows = {r["key"]: r for r in everything if r["source"] == "trained"}
    assert len(rows) == 8
    if extra:
        assert first not in rows and [r["status"] for r in everything if r["key"] == first] == ["infeasible"]
        assert all(r["status"] == "ok" for r in rows.values())
    else:
        assert rows[first]["status"] == "failed" and "no value in column 'latency_ms_toy'" in rows[first]["error"]
        assert [k for k, r in rows.items() if r["status"] != "ok"] == [first]
    assert nas_search(["--resume", str(out), "--samples", "12", "--quiet"]) == 0
    assert len([r for r in csv.DictReader((out / "trials.csv").open()) if r["source"] == "trained"]) == 12


def test_rejected_architectures_are_told_the_reward_of_accuracy_0_at_their_latency(cells: Path, tmp_path: Path) -> None:
    # With TuNAS's absolute reward a constant 0 rated a rejection above a slow architecture that
    # trained (its reward is negative away from the target); MnasNet's rewards keep 0.
    out = tmp_path / "absolute"
    assert nas_search(_args(cells, out, "--samples", "30", "--strategy", "random", "--reward", "absolute", "--max-latency-ratio", "1.2")) == 0
    rejected = [e for e in _events(out) if e["type"] == "result" and e["source"] == "rejected"]
    assert rejected
    for event in rejected:
        assert event["reward"] == pytest.approx(-0.1 * abs(event["latency_ms"] / 9.0 - 1.0)) and event["reward"] < 0


def test_a_failed_evaluation_is_recorded_with_the_reward_the_strategy_was_told(cells: Path, tmp_path: Path) -> None:
    # trials.csv said 0 for a failed architecture while the strategy was told -0.1 x |LAT/T - 1|
    import pandas as pd

    frame = pd.read_csv(cells)
    frame.loc[frame.index % 2 == 0, "val_acc_12ep"] = float("nan")  # half the cells have no accuracy: they fail
    holey = tmp_path / "holey.csv"
    frame.to_csv(holey, index=False)
    out = tmp_path / "run"
    assert nas_search(_args(holey, out, "--samples", "20", "--strategy", "random", "--reward", "absolute")) == 0
    failed = [e for e in _events(out) if e["type"] == "result" and e["status"] == "failed"]
    assert failed and any(e["latency_ms"] != 9.0 for e in failed)
    for event in failed:
        assert event["reward"] == pytest.approx(-0.1 * abs(event["latency_ms"] / 9.0 - 1.0))


def test_a_long_tabular_search_writes_each_row_once_and_its_tables_match_a_fresh_reading(cells: Path, tmp_path: Path, monkeypatch) -> None:
    # trials.csv was rewritten whole after each trial and the strategy saved twice a trial, which
    # made a few thousand table lookups take minutes (quadratic). Rows are now appended, and the
    # tables must still be what the journal says: every result once, and the front of all trials.
    from mobilenas.results import load_run
    from mobilenas.search import orchestrator
    from mobilenas.search.pareto import pareto_mask

    serialised = {"trials": 0}
    real_csv = orchestrator._csv

    def counting_csv(rows, columns, **kwargs):
        if "source" in columns:
            serialised["trials"] += len(rows)
        return real_csv(rows, columns, **kwargs)

    monkeypatch.setattr(orchestrator, "_csv", counting_csv)
    checkpoints = []
    monkeypatch.setattr(orchestrator.SearchRun, "_checkpoint", lambda self, _real=orchestrator.SearchRun._checkpoint: (checkpoints.append(1), _real(self))[1])
    out = tmp_path / "run"
    # evolution on a 9 ms target proposes many architectures it has seen (duplicate rows, reused)
    assert nas_search(_args(cells, out, "--samples", "150", "--strategy", "evolution", "--seed", "4")) == 0
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert sum(r["source"] == "trained" for r in rows) == 150 and sum(r["source"] == "duplicate" for r in rows) >= 10
    # a repeat's row is its twin's, the benchmark's final accuracy included (it was left empty)
    by_number = {r["number"]: r for r in rows if r["source"] == "trained"}
    for row in (r for r in rows if r["source"] == "duplicate"):
        twin = by_number[row["duplicate_of"]]
        assert twin["final_accuracy"] and all(row[c] == twin[c] for c in ("accuracy", "final_accuracy", "latency_ms", "reward", "key"))
    assert serialised["trials"] == len(rows)  # each row written once (the old rewrites: about 150 x 150 / 2)
    assert len(checkpoints) <= 151  # one per proposal (and one at the end), not two per trial
    journal = load_run(out).trials
    assert sorted((int(r["number"]), r["source"]) for r in rows) == sorted(zip(journal["number"], journal["source"], strict=True))
    trained = [r for r in rows if r["source"] == "trained" and r["status"] == "ok"]
    mask = pareto_mask([float(r["accuracy"]) for r in trained], [float(r["latency_ms"]) for r in trained])
    front = sorted((r for r, keep in zip(trained, mask, strict=True) if keep), key=lambda r: float(r["latency_ms"]))
    assert [r["number"] for r in csv.DictReader((out / "pareto.csv").open())] == [r["number"] for r in front]


def test_duplicates_found_in_one_ask_are_journaled_in_one_write(cells: Path, tmp_path: Path, monkeypatch) -> None:
    # A converged strategy can propose hundreds of known architectures before a new one; an fsync
    # for each of their lines was most of a long tabular search's time.
    import mobilenas.runs as runs

    writes: list[int] = []
    extend = runs.Journal.extend
    monkeypatch.setattr(runs.Journal, "extend", lambda self, events: (writes.append(len(events)), extend(self, events))[1])
    out = tmp_path / "run"
    assert nas_search(_args(cells, out, "--samples", "100", "--strategy", "ppo", "--seed", "4")) == 0
    lines = len(_events(out))
    assert sum(writes) == lines and max(writes) > 10 and len(writes) < lines / 2  # (a write a line: 942 writes)


def test_a_run_whose_strategy_was_saved_by_torch_save_resumes(cells: Path, tmp_path: Path) -> None:
    # Runs from before the checkpoint was pickled directly hold a torch.save zip file.
    import pickle

    import torch

    straight, old = tmp_path / "straight", tmp_path / "old"
    assert nas_search(_args(cells, straight, "--samples", "20", "--strategy", "ppo", "--seed", "2")) == 0
    assert nas_search(_args(cells, old, "--samples", "10", "--strategy", "ppo", "--seed", "2")) == 0
    torch.save(pickle.loads((old / "strategy.pt").read_bytes()), old / "strategy.pt")
    assert nas_search(["--resume", str(old), "--samples", "20", "--quiet"]) == 0
    keys = [[e["key"] for e in _events(run) if e["type"] == "proposal" and e["source"] == "trained"] for run in (straight, old)]
    assert keys[0] == keys[1] and len(keys[0]) == 20


def test_the_progress_bar_counts_trials_before_and_after_a_resume(cells: Path, tmp_path: Path, capsys) -> None:
    # The bar's count is kept up to date incrementally; a resume rebuilds the trials and counts anew.
    out = tmp_path / "run"
    assert nas_search([a for a in _args(cells, out, "--samples", "10", "--strategy", "evolution") if a != "--quiet"]) == 0
    first = capsys.readouterr().err
    assert "10/10 [" in first and "11/10" not in first
    assert nas_search(["--resume", str(out), "--samples", "25"]) == 0
    again = capsys.readouterr().err
    assert "25/25 [" in again and "26/25" not in again and "35/25" not in again


def test_a_time_limit_ends_the_search_in_order_and_a_resume_goes_on(cells: Path, tmp_path: Path, capsys) -> None:
    # Far more samples than a second allows (each lookup is journaled and fsynced): the limit ends it.
    out = tmp_path / "run"
    assert nas_search(_args(cells, out, "--samples", "15625", "--strategy", "random", "--time-limit", "1s")) == 0
    printed = capsys.readouterr().out
    trained = [e for e in _events(out) if e["type"] == "result" and e["source"] == "trained"]
    count = len(trained)
    assert 0 < count < 15625
    assert f"the search reached its time limit (1 s) after {count} of 15625 architectures; nas-search --resume {out} continues it" in printed
    assert "Pareto front" in printed  # ended as a search that ran its samples does
    best = json.loads((out / "best.json").read_text())
    assert best["reward"] == pytest.approx(max(e["reward"] for e in trained))
    assert json.loads((out / "manifest.json").read_text())["config"]["time_limit"] == 1.0
    assert nas_results(["show", str(out)]) == 0  # not "interrupted": it ended as asked
    assert f"not finished    stopped at its time limit (1 s): nas-search --resume {out} goes on" in capsys.readouterr().out
    # A resume gets the limit afresh; "none" lifts it. Nothing is evaluated twice.
    assert nas_search(["--resume", str(out), "--samples", str(count + 5), "--time-limit", "none", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["trials"] == count + 5 and summary["time_limit_reached"] is False
    numbers = [e["number"] for e in _events(out) if e["type"] == "result" and e["source"] == "trained"]
    assert len(numbers) == len(set(numbers)) == count + 5
    assert nas_results(["show", str(out)]) == 0
    assert "not finished" not in capsys.readouterr().out
    # lifted for good: the next plain --resume (the hint a Ctrl-C prints) had brought the 1 s back
    assert json.loads((out / "manifest.json").read_text())["config"]["time_limit"] is None
    assert nas_search(["--resume", str(out), "--samples", str(count + 7), "--time-limit", "2h", "--quiet"]) == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["time_limit"] == 7200.0


def test_the_bar_counts_an_evaluation_as_running_from_its_submission(cells: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bar was drawn only when a trial ended, before the next one was submitted: with two
    # workers busy it always said running=1 (here, with one evaluation at a time: running=0).
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    args = [a for a in _args(cells, tmp_path / "run", "--samples", "5", "--strategy", "random") if a != "--quiet"]
    assert nas_search(args) == 0
    frames = [frame for frame in terminal.getvalue().replace("\r", "\n").splitlines() if frame.startswith("search:")]
    assert any("running=1" in frame for frame in frames), frames
    # a finished run resumed counts nothing: it drew an empty bar, then a full one
    terminal.seek(0)
    terminal.truncate()
    assert nas_search(["--resume", str(tmp_path / "run")]) == 0
    assert "the run is complete" in terminal.getvalue() and "search:" not in terminal.getvalue(), terminal.getvalue()


def test_the_bars_clock_starts_with_the_first_evaluation() -> None:
    """Ray's start-up (5-10 s) had counted in the bar's elapsed time and in the rate of its first ETAs."""
    from types import SimpleNamespace

    from mobilenas.search.cli import _progress_hook

    bar, update = _progress_hook({"quiet": False}, 5)
    try:
        idle = SimpleNamespace(in_flight={}, trained_count=0, samples=5, best=None, time_limit=SimpleNamespace(left_text=lambda: None), strategy=None)
        update(idle)  # before any submission (Ray starting): the clock waits
        time.sleep(0.3)
        first = bar._time()
        update(SimpleNamespace(**{**vars(idle), "in_flight": {0: None}}))
        assert bar.start_t >= first and bar.last_print_t >= first
        started = bar.start_t
        time.sleep(0.05)
        update(SimpleNamespace(**{**vars(idle), "in_flight": {0: None, 1: None}}))
        assert bar.start_t == started  # set once
    finally:
        bar.close()


def _plain(value: Any) -> Any:
    """A trials.csv cell or a DataFrame value, as one comparable value (None where empty)."""
    if value is None or value == "" or (isinstance(value, float) and np.isnan(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


@pytest.mark.slow
def test_duplicates_are_journaled_compactly_and_read_back_as_trials_csv_has_them(cells: Path, tmp_path: Path) -> None:
    # A converged strategy journals many known architectures for each new one (a 1000-sample PPO
    # search: 51,734 duplicates beside 1000 trials, 44 MB), so their lines leave out what their
    # twin's line holds. Read back, every result must be what trials.csv (written from the search's
    # own trials) says, also after a resume whose duplicates have twins from before it.
    import pandas as pd

    from mobilenas.results import load_run
    from mobilenas.search.journal import TRIAL_COLUMNS

    whole, split = tmp_path / "whole", tmp_path / "split"
    assert nas_search(_args(cells, whole, "--samples", "150", "--strategy", "evolution", "--seed", "4")) == 0
    assert nas_search(_args(cells, split, "--samples", "70", "--strategy", "evolution", "--seed", "4")) == 0
    assert nas_search(["--resume", str(split), "--samples", "150", "--quiet"]) == 0

    def table(run: Path) -> list[dict[str, str]]:
        return list(csv.DictReader((run / "trials.csv").open()))

    assert [{k: v for k, v in r.items() if k != "finished"} for r in table(whole)] == [{k: v for k, v in r.items() if k != "finished"} for r in table(split)]
    for run in (whole, split):
        rows, frame = table(run), load_run(run).trials
        assert len(rows) == len(frame) and sum(r["source"] == "duplicate" for r in rows) >= 10
        written = sorted((tuple(_plain(r[c]) for c in TRIAL_COLUMNS if c != "finished"), _plain(pd.Timestamp(r["finished"]))) for r in rows)
        read = sorted((tuple(_plain(v) for c, v in r.items() if c != "finished"), _plain(r["finished"])) for r in frame[list(TRIAL_COLUMNS)].to_dict("records"))
        assert written == read
        duplicates = [e for e in _events(run) if e.get("source") == "duplicate"]
        assert all("key" not in e and "architecture" not in e for e in duplicates)
        assert max(len(json.dumps(e)) for e in duplicates) < 160  # a whole duplicate result line: over 500 bytes


def test_a_run_folder_moved_away_mid_search_ends_it_in_one_line_and_is_not_made_again(cells: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    # It had been made again, without its manifest, by the next writes, and the search ended in a KeyError traceback.
    # The folder is moved (as rm -rf does, but in one step) by the strategy itself, after its 5th result: at a known point.
    mover = tmp_path / "mover.py"
    mover.write_text(
        "import os\nfrom mobilenas.search.strategies.random_search import RandomSearch\n\n"
        "class MovesItsRun(RandomSearch):\n"
        "    def _observe(self, number, indices, note, observation):\n"
        "        super()._observe(number, indices, note, observation)\n"
        "        if self._told == 5:\n"
        "            os.rename(os.environ['THE_RUN'], os.environ['THE_RUN'] + '-moved')\n"
    )
    out = tmp_path / "run"
    monkeypatch.setenv("THE_RUN", str(out))
    assert nas_search(_args(cells, out, "--samples", "50", "--strategy", f"{mover}:MovesItsRun", "--quiet")) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"nas-search: error: the folder {out} is gone (deleted or moved while this ran): nothing more is written; what was in it went with it"
    assert "Traceback" not in err
    assert not out.exists() and (tmp_path / "run-moved" / "manifest.json").is_file()


def test_of_tied_rewards_the_faster_trial_is_the_best_also_after_a_resume(tmp_path: Path, capsys) -> None:
    """NAS-Bench-201's isomorphic cells share an accuracy, so under the hard constraint many trials
    tie on reward; best.json had kept the first of them, which a faster tie dominates (off the run's
    own front). Accuracies here take three values, so ties are certain."""
    import pandas as pd

    from helpers import write_cell_benchmark

    cells = tmp_path / "tied.csv"
    write_cell_benchmark(cells)
    frame = pd.read_csv(cells)
    frame["val_acc_12ep"] = (frame["val_acc_12ep"] // 20) * 20
    frame.to_csv(cells, index=False)

    def best_is_the_fastest_of_the_top(run: Path) -> dict[str, Any]:
        best = json.loads((run / "best.json").read_text())
        with (run / "trials.csv").open() as handle:
            rows = [r for r in csv.DictReader(handle) if r["status"] == "ok" and r["source"] == "trained"]
        top = max(float(r["reward"]) for r in rows)
        tied = [r for r in rows if float(r["reward"]) == top]
        assert len(tied) > 1  # the case at hand
        assert best["latency_ms"] == min(float(r["latency_ms"]) for r in tied)
        with (run / "pareto.csv").open() as handle:
            assert best["number"] in {int(r["number"]) for r in csv.DictReader(handle)}  # on its own front
        return best

    run = tmp_path / "run"
    assert nas_search([*_args(cells, run, "--reward", "hard", "--strategy", "random", "--samples", "40")]) == 0
    best_is_the_fastest_of_the_top(run)
    # a resume rebuilds the best from the journal by the same rule
    (run / "best.json").unlink()
    assert nas_search(["--resume", str(run), "--samples", "60", "--quiet"]) == 0
    best_is_the_fastest_of_the_top(run)
    capsys.readouterr()
