"""The training and latency benchmark scripts: bad input refused in one line (exit 2) before any
work, reports that say how their figures were made, and the pieces behind their verdicts.
Nothing here trains, builds a table or reads a data set."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def run_script(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a run refused by argparse (exit 2, no traceback)."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))


# --- an --out that is a folder ------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("cli_startup.py", []),
        ("train_throughput.py", []),
        ("train_default_trial.py", []),
        ("train_eval_speed.py", []),
        ("train_synthetic.py", []),
        ("train_proxy_fidelity.py", ["--cache", "CACHE"]),
    ],
)
def test_an_out_that_is_a_folder_is_refused_before_the_work(name: str, args: list[str], tmp_path: Path) -> None:
    # --out is a stem: a folder had written FOLDER.md and FOLDER.json beside it, after the whole run.
    folder = tmp_path / "results"
    folder.mkdir()
    args = [str(tmp_path / "c.jsonl") if a == "CACHE" else a for a in args]
    line = refused(run_script(name, *args, "--out", str(folder)))
    assert f"--out {folder}: is a folder" in line
    assert not (tmp_path / "results.md").exists() and not (tmp_path / "results.json").exists()


def test_check_report_refuses_a_folder_and_keeps_its_signature(bench: None, tmp_path: Path) -> None:
    import argparse

    from _common import check_report

    parser = argparse.ArgumentParser(prog="x")
    assert check_report(parser, tmp_path / "name.md") == tmp_path / "name"
    with pytest.raises(SystemExit) as exit_info:
        check_report(parser, tmp_path, option="--out")
    assert exit_info.value.code == 2


# --- train_proxy_fidelity.py ----------------------------------------------------------------------

def cache_lines(count: int, made_by: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A full cache for ``count`` architectures, accuracies made up (record fields as _run writes them)."""
    import train_proxy_fidelity as fidelity

    lines = []
    for arch in range(count):
        for images in (*fidelity.CANDIDATE_IMAGES, fidelity.REFERENCE_IMAGES):
            record: dict[str, Any] = {"arch": arch, "images": images, "status": "ok", "accuracy": 0.1 + 0.05 * arch + images / 1e5,
                                      "wall_time_s": 10.0, "train_time_s": 8.0, "images_per_s": 30.0}
            if images == fidelity.REFERENCE_IMAGES:
                record["test_accuracy"] = record["accuracy"] - 0.01
            if made_by is not None:
                record |= {"made_by": made_by, "finished_at": made_by["started_at"] + 60.0 * (arch + 1)}
            lines.append(record)
    return lines


OLD_RUN = {"date": "2025-01-02T03:04:05+00:00", "command": "flock /tmp/mobilenas-cpu.lock python benchmarks/train_proxy_fidelity.py --data-dir /tmp/cifar",
           "commit": "abc1234", "environment": {"cpu_count": 2, "torch": "2.0", "platform": "Linux-old"}, "session": "2025-01-02T03:04:05+00:00 pid 7",
           "workers": 2, "started_at": 1000.0}


def render(tmp_path: Path, lines: list[dict[str, Any]], *extra: str) -> tuple[str, dict[str, Any]]:
    import train_proxy_fidelity as fidelity

    cache = tmp_path / "cache.jsonl"
    cache.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "pf"
    assert fidelity.main(["--data-dir", str(tmp_path / "nonexistent"), "--architectures", "3", "--cache", str(cache), "--out", str(out), *extra]) == 0
    return (tmp_path / "pf.md").read_text(), json.loads((tmp_path / "pf.json").read_text())


@pytest.fixture
def quick_fidelity(bench: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import train_proxy_fidelity as fidelity

    monkeypatch.setattr(fidelity, "_bootstrap_tau", lambda a, b: (0.0, 1.0))  # 2,000 resamples: seconds, and not what is tested


def test_proxy_fidelity_from_cached_trainings_names_who_made_them(quick_fidelity: None, tmp_path: Path) -> None:
    # All from the cache: the report had named this process's command and machine beside the old run's figures.
    markdown, written = render(tmp_path, cache_lines(3, OLD_RUN))
    meta = written["meta"]
    assert meta["trained_now"] == 0
    [made] = meta["trainings_made_by"]
    assert made["command"] == OLD_RUN["command"] and made["commit"] == "abc1234" and made["trainings"] == 12
    assert made["wall_time_min"] == pytest.approx(3.0)  # first start to last finish
    assert meta["wall_time_min"] == pytest.approx(3.0)
    assert f"Figures from cached trainings made by: `{OLD_RUN['command']}` (12 trainings; 2025-01-02T03:04:05+00:00; commit abc1234" in markdown
    assert "Rendered (no training run) by: `" in markdown and f"--cache {tmp_path / 'cache.jsonl'}" in markdown
    assert "Command: `" not in markdown  # the old header, which named this process as if it had trained


def test_proxy_fidelity_keeps_what_the_previous_report_said_of_unrecorded_trainings(quick_fidelity: None, tmp_path: Path) -> None:
    # Cache lines from before the cache kept their provenance: the previous report's command is kept,
    # marked as such, and carried into the next report too.
    (tmp_path / "pf.json").write_text(json.dumps({"meta": {"command": OLD_RUN["command"], "environment": OLD_RUN["environment"], "workers": 2,
                                                           "wall_time_min": 30.2}}))
    for _ in range(2):
        markdown, written = render(tmp_path, cache_lines(3, None))
        [made] = written["meta"]["trainings_made_by"]
        assert made["session"] == "unrecorded" and made["command"] == OLD_RUN["command"] and made["wall_time_min"] == 30.2
        assert "as the previous report named it" in made["note"]
        assert f"cached trainings made by: `{OLD_RUN['command']}`" in markdown


def test_proxy_fidelity_sessions_and_lines(bench: None) -> None:
    import train_proxy_fidelity as fidelity

    newer = {**OLD_RUN, "session": "new", "date": "2026-01-01T00:00:00+00:00", "command": "python benchmarks/train_proxy_fidelity.py --data-dir /d"}
    used = cache_lines(3, OLD_RUN)[:6] + cache_lines(3, newer)[6:] + [{"arch": 9, "images": 320}]
    sessions = fidelity.training_sessions(used, None)
    assert [(s["session"], s["trainings"]) for s in sessions] == [("unrecorded", 1), (OLD_RUN["session"], 6), ("new", 6)]
    assert "not recorded" in sessions[0]["note"] and "command" not in sessions[0]  # no previous report to say
    rendered_by = {**newer, "environment": {"cpu_count": 4}}
    lines = fidelity.made_by_lines(sessions[1:], rendered_by)
    assert lines[0].startswith(f"Figures from cached trainings made by: `{OLD_RUN['command']}` (6 trainings")
    assert lines[1].startswith(f"The other trainings, and the report, by: `{newer['command']}` (6 trainings")
    only = fidelity.made_by_lines(sessions[2:], rendered_by)
    assert only[0] == f"Command: `{newer['command']}`  "


def test_proxy_fidelity_new_cache_lines_keep_their_provenance(bench: None) -> None:
    import train_proxy_fidelity as fidelity

    made = fidelity.training_provenance(2, ["--data-dir", "/d"])
    assert made["command"].endswith("train_proxy_fidelity.py --data-dir /d")
    assert made["date"] and made["environment"]["torch"] and made["workers"] == 2 and made["session"] and made["started_at"] > 0
    assert "commit" in made


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--data-dir", "NOWHERE"], "--data-dir NOWHERE: no such folder"),
        (["--data-dir", "TMP"], "--data-dir TMP: holds no cifar-10-batches-py"),
        ([], "--data-dir: 12 trainings are not in the cache"),
    ],
)
def test_proxy_fidelity_needs_a_data_dir_only_for_trainings_to_run(args: list[str], expected: str, tmp_path: Path) -> None:
    names = {"NOWHERE": str(tmp_path / "nowhere"), "TMP": str(tmp_path)}
    args = [names.get(a, a) for a in args]
    result = run_script("train_proxy_fidelity.py", *args, "--architectures", "3", "--cache", str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "pf"))
    line = refused(result)
    for key, value in names.items():
        expected = expected.replace(key, value)
    assert expected in line
    assert not (tmp_path / "c.jsonl").exists() and not (tmp_path / "pf.md").exists()


def test_proxy_fidelity_help_names_the_default_out_and_what_it_overwrites() -> None:
    result = run_script("train_proxy_fidelity.py", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "benchmarks/train_proxy_fidelity, which OVERWRITES the committed results" in text


# --- train_synthetic.py ----------------------------------------------------------------------------

def test_synthetic_reuse_records_without_the_file_is_refused(tmp_path: Path) -> None:
    # It had started the whole multi-hour training instead.
    line = refused(run_script("train_synthetic.py", "--reuse-records", "--records", str(tmp_path / "none.json"), "--out", str(tmp_path / "ts"), timeout=30))
    assert f"--records {tmp_path / 'none.json'}: no such file" in line


def test_synthetic_reuse_records_refuses_records_that_lack_trials(bench: None, tmp_path: Path) -> None:
    import argparse

    import train_synthetic

    parser = argparse.ArgumentParser(prog="train_synthetic.py")
    path = tmp_path / "records.json"
    path.write_text(json.dumps([{"name": "a", "budget": 10}]))
    assert train_synthetic._read_records(parser, path, {("a", 10)}) == [{"name": "a", "budget": 10}]
    for text in (json.dumps([{"name": "a", "budget": 10}]), "not json", json.dumps({"a": 1})):
        path.write_text(text)
        with pytest.raises(SystemExit) as exit_info:
            train_synthetic._read_records(parser, path, {("a", 10), ("b", 20)})
        assert exit_info.value.code == 2


# --- train_throughput.py -----------------------------------------------------------------------------

def test_throughput_discards_a_warm_up_round(bench: None) -> None:
    import train_throughput

    def measure(which: str, round_index: int) -> float:  # the first round reads low, as it did (0.742)
        return 100.0 if which == "bare" else (74.2 if round_index == 0 else 100.0)

    warmup, rows = train_throughput.timed_rounds(measure, rounds=2, warmup_rounds=1)
    assert [r["ratio"] for r in warmup] == [pytest.approx(0.742)]
    assert [r["round"] for r in rows] == [1, 2] and all(r["ratio"] == 1.0 for r in rows)
    assert "1 warm-up round run first and discarded" in train_throughput.ratio_sentence(1.0, rows, warmup)
    kept_all, rows = train_throughput.timed_rounds(measure, rounds=2, warmup_rounds=0)
    assert kept_all == [] and rows[0]["ratio"] == pytest.approx(0.742)
    assert "No warm-up round discarded" in train_throughput.ratio_sentence(0.87, rows, kept_all)


def test_throughput_help_offers_the_warm_up_option() -> None:
    result = run_script("train_throughput.py", "--help")
    assert result.returncode == 0 and "--warmup-rounds" in result.stdout and "(default: 1)" in " ".join(result.stdout.split())


# --- latency_calibration.py -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("FOLDER", "--table FOLDER: is a folder"),
        ("FOLDER/none/t.jsonl", "--table FOLDER/none/t.jsonl: no such file"),
    ],
)
def test_latency_calibration_timing_only_refuses_a_bad_table_in_one_line(table: str, expected: str, tmp_path: Path) -> None:
    # A folder had given a ValueError traceback, a missing file exit 1.
    table, expected = table.replace("FOLDER", str(tmp_path)), expected.replace("FOLDER", str(tmp_path))
    assert expected in refused(run_script("latency_calibration.py", "--table", table, "--timing-only", timeout=30))


def test_latency_calibration_refuses_a_table_in_a_missing_folder(tmp_path: Path) -> None:
    line = refused(run_script("latency_calibration.py", "--table", str(tmp_path / "no" / "t.jsonl"), "--out", str(tmp_path), timeout=30))
    assert f"the folder {tmp_path / 'no'} does not exist" in line


def test_latency_calibration_table_line_adds_up(bench: None) -> None:
    from types import SimpleNamespace

    import latency_calibration

    build = SimpleNamespace(path=Path("t.jsonl"), entries=3175, measured=1238, reused=1905, shared=32, wall_time_s=600.0)
    line = latency_calibration.table_line(build)
    assert "3175 entries (1238 measured in this run, 32 measured by another process meanwhile, 1905 reused)" in line
    assert 1238 + 32 + 1905 == 3175
    assert not latency_calibration.table_was_reused(build)
    assert latency_calibration.table_was_reused(SimpleNamespace(measured=0, shared=0))
    assert not latency_calibration.table_was_reused(SimpleNamespace(measured=0, shared=4))


def test_latency_calibration_warns_when_the_machine_was_busy(bench: None) -> None:
    import latency_calibration as calibration

    assert (calibration.BUSY_OTHERS_LIMIT, calibration.BUSY_NOISE_LIMIT) == (0.15, 0.08)
    assert calibration.busy_warnings(0.05, 0.10, 0.02) == []
    assert calibration.busy_warnings(None, 0.15, 0.08) == []  # at the limits: still quiet enough
    [busy] = calibration.busy_warnings(0.40, 0.10, 0.02)
    assert "not representative" in busy and "40%" in busy and "while the table was built" in busy and "limit 15%" in busy
    [noisy] = calibration.busy_warnings(None, 0.0, 0.12)
    assert "not representative" in noisy and "12.0%" in noisy and "limit 8%" in noisy
    assert len(calibration.busy_warnings(0.2, 0.3, 0.09)) == 3
    assert calibration.busy_warnings(float("nan"), float("nan"), 0.0) == []  # no /proc/stat: not judged


def test_latency_calibration_does_not_report_the_load_of_a_reused_table(bench: None) -> None:
    import latency_calibration as calibration

    assert "the table was reused" in calibration.load_line(None, 0.05)
    assert "while the table was built" not in calibration.load_line(None, 0.05)
    assert "other processes used 30% of the CPU time while the table was built, 5% during calibration" in calibration.load_line(0.3, 0.05)
