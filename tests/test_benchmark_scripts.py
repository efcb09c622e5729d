"""The benchmark scripts' command lines: bad numbers and unwritable outputs are refused in one line
before any work, and a results file names the command that reproduces it. Nothing here trains."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_"))


def run_script(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_works(name: str) -> None:
    result = run_script(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "--out" in result.stdout


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("cli_startup.py", ["--rounds", "0"]),
        ("train_default_trial.py", ["--samples", "0"]),
        ("train_default_trial.py", ["--samples", "-3"]),
        ("train_throughput.py", ["--rounds", "0"]),
        ("train_eval_speed.py", ["--rounds", "0"]),
        ("train_eval_speed.py", ["--samples", "-1"]),
        ("train_synthetic.py", ["--workers", "0"]),
        ("train_proxy_fidelity.py", ["--data-dir", "/tmp", "--architectures", "2"]),
        ("search_ray_throughput.py", ["--samples", "0"]),
        ("search_cifar_vs_references.py", ["--samples", "0"]),
        ("search_cifar_vs_references.py", ["--top", "0"]),
        ("search_tabular_scaling.py", ["--repeats", "0"]),
        ("latency_calibration.py", ["--rounds", "0"]),
        ("netadapt_vs_width.py", ["--threads", "0"]),
    ],
)
def test_a_count_below_its_minimum_is_refused_in_one_line(name: str, args: list[str]) -> None:
    result = run_script(name, *args, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"argument {args[-2]}" in result.stderr


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("cli_startup.py", []),
        ("train_default_trial.py", ["--samples", "1"]),
        ("train_throughput.py", []),
        ("train_eval_speed.py", []),
        ("search_ray_throughput.py", []),
        ("search_quickstart.py", []),
        ("search_cifar_vs_references.py", []),
    ],
)
def test_an_out_in_a_missing_folder_is_refused_before_the_work(name: str, args: list[str], tmp_path: Path) -> None:
    result = run_script(name, *args, "--out", str(tmp_path / "no" / "such" / "x"), timeout=30)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"the folder {tmp_path / 'no' / 'such'} does not exist" in result.stderr


def test_cli_startup_writes_where_out_says_with_the_command_given(tmp_path: Path) -> None:
    committed = (BENCHMARKS / "cli_startup.md").read_text()
    out = tmp_path / "startup"
    result = run_script("cli_startup.py", "--rounds", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (BENCHMARKS / "cli_startup.md").read_text() == committed
    assert f"`flock /tmp/mobilenas-cpu.lock python benchmarks/cli_startup.py --rounds 1 --out {out}`" in (tmp_path / "startup.md").read_text()
    written = json.loads((tmp_path / "startup.json").read_text())
    assert written["rounds"] == 1
    made = written["provenance"]  # when, by which command, at which commit, with which versions
    assert made["command"].endswith(f"cli_startup.py --rounds 1 --out {out}")
    assert made["date"][:4].isdigit() and made["environment"]["torch"] and made["environment"]["mobilenas"]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert made["commit"].split("+")[0] == head


def test_search_cifar_refuses_to_resume_a_search_of_another_length(tmp_path: Path) -> None:
    run = tmp_path / "work" / "search-mobilenetv2"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"config": {"samples": 40}}))
    result = run_script("search_cifar_vs_references.py", "--work", str(tmp_path / "work"), "--samples", "80", "--out", str(tmp_path / "x.md"))
    assert result.returncode == 2, result.stderr
    assert "holds a search of 40 samples, not 80" in result.stderr
    assert not (tmp_path / "work" / "cifar").exists()  # refused before CIFAR-10 was written


def test_command_line_quotes_the_options_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from _common import command_line

    assert command_line("/x/benchmarks/train_default_trial.py", []) == "flock /tmp/mobilenas-cpu.lock python benchmarks/train_default_trial.py"
    assert command_line("strategies_nb201.py", ["--out", "a b", "--seeds", "3"], flock=False) == "python benchmarks/strategies_nb201.py --out 'a b' --seeds 3"


def test_strategies_nb201_records_how_its_results_were_made(cells: Path, tmp_path: Path) -> None:
    options = ["--data", str(cells), "--columns", "latency_ms_toy", "--quantiles", "0.5", "--strategies", "random", "--seeds", "2", "--queries", "10",
               "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "sn")]
    result = run_script("strategies_nb201.py", *options)
    assert result.returncode == 0, result.stderr
    made = json.loads((tmp_path / "sn.json").read_text())["provenance"]
    assert made["commit"] and made["environment"]["torch"] and made["environment"]["optuna"]
    assert made["command"].endswith("strategies_nb201.py " + " ".join(options))


def test_strategies_nb201_names_data_when_its_table_is_missing(tmp_path: Path) -> None:
    # The default --data lies beside the checkout; elsewhere the error had named only the file.
    result = run_script("strategies_nb201.py", "--strategies", "random", "--data", str(tmp_path / "none.csv.gz"), "--out", str(tmp_path / "sn"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--data {tmp_path / 'none.csv.gz'}: no such file; give --data PATH" in result.stderr
