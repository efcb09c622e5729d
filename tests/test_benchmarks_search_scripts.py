"""The search and NetAdapt benchmark scripts (benchmarks/search_*.py, strategies_nb201.py,
netadapt_vs_width.py): their verdicts computed from the data, and bad options refused in one line
(exit 2) before any work. Nothing here trains, searches or reads the shared data sets."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The scripts under test; another folder (holding the scripts and their _common.py) checks that
# these tests fail on an earlier version of them.
BENCHMARKS = Path(os.environ.get("MOBILENAS_BENCHMARKS_UNDER_TEST", ROOT / "benchmarks"))


def load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/NAME.py as a module (its sibling _common importable, as when it runs)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delitem(sys.modules, "_common", raising=False)
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_script(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def refused(result: subprocess.CompletedProcess[str], said: str) -> None:
    """Refused as argparse does: exit 2, one error line naming the problem, no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and said in errors[0], result.stderr


# ---------------------------------------------------------------- search_cifar_vs_references.py


def test_cifar_verdict_has_three_outcomes_in_standard_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load("search_cifar_vs_references", monkeypatch)
    searched, reference = [0.30, 0.32, 0.34], [0.20, 0.21, 0.22]
    found = bench.compare(searched, reference)
    error = math.sqrt((0.02**2 + 0.01**2) / 3)  # the seed-to-seed standard deviations are 0.02 and 0.01
    assert found["difference"] == pytest.approx(0.11)
    assert found["standard_error"] == pytest.approx(error)
    assert found["in_standard_errors"] == pytest.approx(0.11 / error)
    assert found["outcome"] == "met"
    assert bench.compare(reference, searched)["outcome"] == "not met"
    assert bench.compare([0.30, 0.32, 0.34], [0.31, 0.30, 0.33])["outcome"] == "not distinguishable"  # 0.0067 against 0.0117
    assert bench.overall(["met", "met"]) == "met"
    assert bench.overall(["met", "not distinguishable"]) == "not distinguishable"
    assert bench.overall(["met", "not met"]) == "not met"


def test_cifar_verdict_seeds_are_not_the_selection_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load("search_cifar_vs_references", monkeypatch)
    assert bench.seed_plan(3, [3, 4, 5]) == ([0, 1, 2], [3, 4, 5])
    with pytest.raises(ValueError, match=r"reuses seed\(s\) 2 of the selection .*e\.g\. 3,4"):
        bench.seed_plan(3, [2, 7])
    assert bench.seed_list("3, 4,5") == [3, 4, 5]


@pytest.mark.parametrize(("verdict_seeds", "said"), [
    ("1,2,3", "reuses seed(s) 1, 2 of the selection"),
    ("4", "a standard error needs at least 2"),
    ("3,3", "names a seed twice"),
    ("3,x", "give seeds separated by commas"),
])
def test_cifar_refuses_bad_verdict_seeds_before_any_work(verdict_seeds: str, said: str, tmp_path: Path) -> None:
    result = run_script("search_cifar_vs_references", "--verdict-seeds", verdict_seeds, "--work", str(tmp_path / "work"), "--out", str(tmp_path / "x.md"))
    refused(result, said)
    assert not (tmp_path / "work").exists()


def test_cifar_verdict_uses_fresh_seeds_not_the_selection_trainings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The winner of the final selection is lucky on the selection's seeds (0-2) and ordinary on
    others: its row and the verdict take seeds 3-5 only; the selection table keeps seeds 0-2."""
    import mobilenas.latency
    import mobilenas.search.cli
    import mobilenas.train
    from mobilenas.space import reference, scale_width

    bench = load("search_cifar_vs_references", monkeypatch)
    base = reference("mobilenetv3-small", num_classes=10)
    finalists = [scale_width(base, width) for width in (1.0, 0.9, 0.8)]
    v2, v3 = scale_width(reference("mobilenetv2", num_classes=10), 0.5), scale_width(base, 1.5)
    lucky = finalists[0].fingerprint()

    def accuracy(arch: Any, seed: int) -> float:
        if arch.fingerprint() == lucky:
            return 0.40 + 0.01 * seed if seed < 3 else 0.20 + 0.01 * (seed - 3)  # 0.40-0.42 in the selection, 0.20-0.22 after
        if arch.fingerprint() == v3.fingerprint():
            return 0.30 + 0.01 * (seed % 3)
        return 0.10 + 0.01 * (seed % 3)

    def fake_search(argv: list[str]) -> int:
        run = Path(argv[argv.index("--out") + 1])
        run.mkdir(parents=True)
        with open(run / "trials.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["status", "source", "reward", "accuracy", "latency_ms", "architecture"])
            writer.writeheader()
            for rank, arch in enumerate(finalists):
                writer.writerow({"status": "ok", "source": "trained", "reward": 0.3 - 0.01 * rank, "accuracy": 0.3, "latency_ms": 5.0, "architecture": arch.to_notation()})
        return 0

    class Table:
        input_size = 224

        def predict(self, arch: Any, measure_missing: bool = False) -> float:
            return 5.0

        def measuring_backend(self) -> None:
            return None

    data = SimpleNamespace(num_classes=10, train=[0] * 8, val=[0] * 4, test=[0] * 4)
    trained: list[int] = []

    def fake_train(arch: Any, data: Any, config: Any, keep_weights: bool = False) -> Any:
        trained.append(config.seed)
        return SimpleNamespace(accuracy=accuracy(arch, config.seed), status="ok", state_dict={"arch": arch, "seed": config.seed})

    class Model:
        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.state = state

    def fake_evaluate(model: Model, split: Any) -> tuple[float, float]:
        return accuracy(model.state["arch"], model.state["seed"]), 0.0

    monkeypatch.setattr(bench, "ensure_cifar", lambda root: root)
    monkeypatch.setattr(bench, "scale_to_latency", lambda name, table, limit, classes: ((0.5, v2, 4.9) if name == "mobilenetv2" else (1.5, v3, 4.9), None))
    monkeypatch.setattr(mobilenas.search.cli, "main", fake_search)
    monkeypatch.setattr(mobilenas.latency, "open_or_create_table", lambda space, progress=False: Table())
    monkeypatch.setattr(mobilenas.latency, "measure_architectures", lambda archs, *a, **k: [SimpleNamespace(latency_ms=4.0) for _ in archs])
    monkeypatch.setattr(mobilenas.train, "load_dataset", lambda *a, **k: data)
    monkeypatch.setattr(mobilenas.train, "train_proxy", fake_train)
    monkeypatch.setattr(mobilenas.train, "build_for_data", lambda arch, data: Model())
    monkeypatch.setattr(mobilenas.train, "evaluate", fake_evaluate)

    out = tmp_path / "report.md"
    assert bench.main(["--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    capsys.readouterr()
    report = json.loads(out.with_suffix(".json").read_text())
    searched = report["rows"][0]
    assert searched["network"] == "searched" and searched["test_mean"] == pytest.approx(0.21)  # seeds 3-5, not 0.41 of seeds 0-2
    assert report["selection"][0]["val_mean"] == pytest.approx(0.41)  # the selection keeps its own trainings
    assert report["verdict"] == "not met"  # 0.21 against mobilenetv3-small scaled's 0.31 (and mobilenetv2 scaled's 0.11)
    assert report["comparisons"]["mobilenetv3-small scaled"]["outcome"] == "not met"
    assert report["comparisons"]["mobilenetv2 scaled"]["outcome"] == "met"
    assert sorted(set(trained)) == [0, 1, 2, 3, 4, 5]
    text = out.read_text()
    error = report["comparisons"]["mobilenetv3-small scaled"]["standard_error"]
    assert f"searched - mobilenetv3-small scaled = -0.1000 (test accuracy, means of 3 seeds; standard error of the difference {error:.4f}, so {-0.1 / error:+.1f} standard errors): **not met**" in text
    assert "Verdict: **not met**." in text
    # a second run resumes from the cache: the keys are those of earlier versions (fingerprint-seed)
    cache = json.loads((tmp_path / "work" / "trainings.json").read_text())
    assert f"{lucky}-0" in cache and f"{lucky}-5" in cache


@pytest.mark.parametrize("name", ["search_cifar_vs_references", "search_tabular_scaling", "search_quickstart", "search_ray_throughput", "strategies_nb201"])
def test_an_out_that_is_a_folder_is_refused_before_the_work(name: str, tmp_path: Path) -> None:
    """--out is a stem: --out /tmp had been taken as /tmp.md, written at the end of the run."""
    # options that make an earlier version of a script stop early too, so that it fails fast
    stop_early = {
        "search_cifar_vs_references": ["--target-reference", "nonsense", "--work", str(tmp_path / "work")],
        "search_tabular_scaling": ["--table", str(tmp_path / "none.csv.gz")],
        "strategies_nb201": ["--data", str(tmp_path / "none.csv.gz"), "--cache", str(tmp_path / "cache")],
        "search_quickstart": [],
        "search_ray_throughput": [],
    }[name]
    result = run_script(name, "--out", str(tmp_path), *stop_early)
    refused(result, "is a folder")
    assert f"--out {tmp_path}" in result.stderr
    assert not (tmp_path.parent / (tmp_path.name + ".md")).exists()


# ---------------------------------------------------------------- netadapt_vs_width.py


def test_netadapt_refuses_an_unknown_seed_network_before_making_its_work_folder(tmp_path: Path) -> None:
    data = tmp_path / "data" / "cifar-10-batches-py"
    data.mkdir(parents=True)
    (data / "test_batch").write_bytes(b"")  # an earlier version went on to load it (and failed there)
    result = run_script("netadapt_vs_width", "--arch", "nonsense", "--work", str(tmp_path / "work"), "--out", str(tmp_path), "--data-dir", str(tmp_path / "data"))
    refused(result, "'nonsense' is not a reference network: give one of mobilenetv2, mnasnet-a1, mnasnet-b1, mobilenetv3-large, mobilenetv3-small")
    assert not (tmp_path / "work").exists()
    refused(run_script("netadapt_vs_width", "--arch", "mobilenetv2@2x", "--out", str(tmp_path)), "the width multiplier after @ must be a number in (0, 1]")


def test_netadapt_refuses_missing_or_foreign_inputs_in_one_line(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": [], "provenance": {}}))  # another benchmark's result
    refused(run_script("netadapt_vs_width", "--render", str(tmp_path / "none.json"), "--out", str(tmp_path)), f"--render {tmp_path / 'none.json'}: cannot read it")
    refused(run_script("netadapt_vs_width", "--render", str(other), "--out", str(tmp_path)), "not a netadapt_vs_width result")
    refused(run_script("netadapt_vs_width", "--summarize", str(tmp_path / "none.json"), "--out", str(tmp_path)), f"--summarize {tmp_path / 'none.json'}: cannot read it")
    result = run_script("netadapt_vs_width", "--table", str(tmp_path / "none.jsonl"), "--work", str(tmp_path / "work"), "--out", str(tmp_path))
    refused(result, f"--table {tmp_path / 'none.jsonl'}: no such file")
    assert not (tmp_path / "work").exists()
    assert not list(tmp_path.glob("*.md"))


def netadapt_report(matched_ms: float) -> dict[str, Any]:
    """A result of two budgets; the matched multipliers measure ``matched_ms`` against NetAdapt's 1.0 ms."""
    networks = [
        {"name": "seed", "family": "seed", "test": 0.5, "measured_latency_ms": 1.2},
        *({"name": f"{family}-{x}", "family": family, "test": 0.40 + 0.1 * x, "measured_latency_ms": 0.5 + 0.6 * x} for family in ("width", "width+head") for x in (0, 1)),
    ]
    comparisons = [
        {"budget": budget, "netadapt": f"netadapt-{budget:.2f}", "test": 0.5, "measured_latency_ms": 1.0,
         **{family: {"matched": f"{family}-0", "matched_test": 0.45, "matched_measured_latency_ms": matched_ms, "test_at_same_latency": 0.48,
                     "latency_at_same_accuracy_ms": 1.1} for family in ("width", "width+head")}}
        for budget in (0.75, 0.5)
    ]
    return {"benchmark": "netadapt_vs_width", "plan": {"seed": 0}, "date": "2026-12-07", "start_latency_ms": 1.3, "netadapt_iterations": 8, "networks": networks, "comparisons": comparisons}


def test_netadapt_matched_gain_sits_beside_the_measured_latency_ratio(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The matched multiplier has NetAdapt's *table* latency, not its measured one: each matched gain
    is shown with matched / NetAdapt measured latency, in one run's report and in the summary."""
    bench = load("netadapt_vs_width", monkeypatch)
    committed = ROOT / "benchmarks" / "netadapt_vs_width.json"  # a real result, for render's many fields
    report = json.loads(committed.read_text())
    text = bench.render(report)
    assert "| gain against the matched multiplier (points) | matched / NetAdapt measured latency |" in text
    for row in report["comparisons"]:
        for family in ("width", "width+head"):
            f = row[family]
            gain, ratio = 100 * (row["test"] - f["matched_test"]), f["matched_measured_latency_ms"] / row["measured_latency_ms"]
            assert f"| {f['matched_measured_latency_ms']:.3f} | {gain:+.2f} | {ratio:.2f} |" in text
    monkeypatch.setattr(bench, "plot_gains", lambda runs, path: None)
    runs = [(tmp_path / "a.json", netadapt_report(0.90)), (tmp_path / "b.json", netadapt_report(0.95))]
    assert bench.summarize(runs, tmp_path) == 0
    capsys.readouterr()
    summary = (tmp_path / "netadapt_vs_width.seeds.md").read_text()
    assert "their measured latency is 0.90-0.95 x NetAdapt's" in summary
    assert "| 75.0% | width | +2.00 +- 0.00 | 2/2 | +5.00 +- 0.00 | 2/2 | 0.90-0.95 |" in summary
    assert "+5.00 +- 0.00 against the matched multiplier (positive in 4/4; the matched multipliers measured 0.90-0.95 x NetAdapt's latency)" in summary


def test_netadapt_summary_of_different_plans_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bench = load("netadapt_vs_width", monkeypatch)
    monkeypatch.setattr(bench, "plot_gains", lambda runs, path: None)
    short = netadapt_report(0.9)
    short["comparisons"] = short["comparisons"][:1]
    with pytest.raises(ValueError, match="the runs compare different budgets"):
        bench.summarize([(tmp_path / "a.json", netadapt_report(0.9)), (tmp_path / "b.json", short)], tmp_path)
    assert not (tmp_path / "netadapt_vs_width.seeds.md").exists()


# ---------------------------------------------------------------- search_tabular_scaling.py


def test_tabular_scaling_refuses_an_unknown_baseline_in_one_line(tmp_path: Path) -> None:
    table = tmp_path / "table.csv.gz"
    table.write_bytes(b"")  # never read: the baseline is checked first
    result = run_script("search_tabular_scaling", "--table", str(table), "--baseline", "nosuchrev", "--out", str(tmp_path / "x"))
    refused(result, "--baseline nosuchrev: no such commit in this repository")
    assert not (tmp_path / "x.md").exists()


def scaling_rows(strategy: str, sizes: list[tuple[int, int]], startup: float, ms: float, quadratic: float = 0.0) -> list[dict[str, Any]]:
    """Rows as the script writes them (an older JSON's: the start-up's median only): ``seconds =
    startup + ms/1000 x proposals + quadratic x proposals^2``, with the start-up given per size."""
    rows = []
    for samples, proposals in sizes:
        seconds = startup + ms / 1000 * proposals + quadratic * proposals**2
        rows.append({"strategy": strategy, "samples": samples, "seconds": seconds, "proposals": proposals, "startup_s": startup,
                     "ms_per_proposal": 1000 * (seconds - startup) / proposals, "journal_mb": 0.1, "folder_mb": 0.2})
    return rows


def test_tabular_scaling_judges_growth_by_a_fit_not_by_the_shortest_run(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load("search_tabular_scaling", monkeypatch)
    sizes = [(250, 300), (1000, 1300), (4000, 10000)]
    linear = bench.growth(scaling_rows("evolution", sizes, 2.8, 1.0))
    # (the start-up point is taken as a run of one proposal taking the median: off by that proposal's 1 ms)
    assert linear["ratio"] == pytest.approx(1.0, abs=1e-3) and linear["fitted_ms_per_proposal"] == pytest.approx(1.0, abs=1e-3)
    assert linear["fitted_startup_s"] == pytest.approx(2.8, abs=1e-2)
    assert linear["fitted_on_samples"] == [250, 1000]
    # start-up runs of 2.8, 2.96 and 3.3 s (median 2.96 s, the true one 2.8 s) leave the shortest run
    # 0.14 s of work, not 0.3 s: the old check (the longest run's cost per proposal over the
    # shortest's) read 2.1, NOT met, for a linear search; the fit is not misled so far
    rows = scaling_rows("evolution", sizes, 2.8, 1.0)
    for row in rows:
        row["startup_s"] = 2.96
        row["startup_runs"] = [[1, 2.8], [1, 2.96], [1, 3.3]]
    old_ratio = ((rows[-1]["seconds"] - 2.96) / 10000) / ((rows[0]["seconds"] - 2.96) / 300)
    assert old_ratio > 2
    noisy = bench.growth(rows)
    assert noisy["ratio"] < 1.25 and bench.growth_line(noisy).endswith(": met")
    assert noisy["startup_runs_s"] == [2.8, 2.96, 3.3]
    quadratic = bench.growth(scaling_rows("ppo", [(250, 800), (500, 7000), (1000, 50000)], 4.0, 0.5, quadratic=2e-7))
    assert quadratic["ratio"] > 2
    assert bench.growth_line(quadratic).endswith("NOT met") and bench.growth_line(linear).endswith(": met")
    assert "start-up 2.80-3.30 s over 3 runs (median 2.96 s, standard deviation 0.26 s)" in bench.startup_line(noisy)


def test_tabular_scaling_renders_a_json_again_without_running(tmp_path: Path) -> None:
    old = tmp_path / "old.json"  # the committed results' format: a list of rows
    old.write_text(json.dumps(scaling_rows("random", [(250, 251), (1000, 1028), (4000, 4594), (15000, 49882)], 3.0, 1.2)))
    result = run_script("search_tabular_scaling", "--render", str(old), "--out", str(tmp_path / "again"))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "again.md").read_text()
    assert "- random: line through the start-up runs and 250, 1000, 4000 samples: 3.00 s + 1.20 ms per proposal; the 15000-sample run: 1.20 ms per proposal, 1.00x the fitted cost: met" in text, text
    assert "start-up median 3.00 s (the single runs are not in this JSON, so their spread is not known)" in text
    assert json.loads((tmp_path / "again.json").read_text())["growth"][0]["ratio"] == pytest.approx(1.0, abs=1e-3)
    refused(run_script("search_tabular_scaling", "--render", str(tmp_path / "none.json"), "--out", str(tmp_path / "x")), "cannot read it")
    assert "--quick" in run_script("search_tabular_scaling", "--help").stdout


# ---------------------------------------------------------------- strategies_nb201.py


def nb201_summary(bench: ModuleType, seeds: int, ppo_missing: int = 0) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """A summary of PPO and random on two targets over ``seeds`` seeds (PPO better by about 0.5 pp);
    ``ppo_missing`` of PPO's runs chose nothing within the target."""
    cells = [bench.Cell("latency_ms_toy", q, 1.0 + q, 0.9, 0.89) for q in (0.25, 0.5)]
    records: dict[str, list[dict[str, Any]]] = {"ppo": [], "random": []}
    missing = ppo_missing
    for name, level in (("ppo", 0.5), ("random", 1.0)):
        for cell in cells:
            for seed in range(seeds):
                regret: float | None = level + 0.1 * ((seed * 7 + int(cell.quantile * 4)) % 5)
                if name == "ppo" and missing:
                    regret, missing = None, missing - 1
                records[name].append({
                    "strategy": name, "column": cell.column, "quantile": cell.quantile, "seed": seed, "regret_pp": regret,
                    "top_reward_meets_target": True, "queries": 10, "proposals": 12, "converged": False, "wall_time_s": 0.1,
                    "trajectory": {"25": math.nan if regret is None else regret + 1.0, "50": math.nan if regret is None else regret},
                })
    summary = bench.summarise(records, cells, list(range(seeds)))
    meta = {"command": "python benchmarks/strategies_nb201.py", "wall_time_min": 0.1, "data": "toy.csv", "rows": 27, "reward": "hard",
            "seeds": list(range(seeds)), "queries": 50, "configs": {"ppo": {}, "random": {}}, "figure": "x.png"}
    return summary, cells, meta


def test_nb201_gives_no_standard_errors_or_bootstrap_shares_below_five_seeds(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = load("strategies_nb201", monkeypatch)
    few = bench.render(*nb201_summary(bench, 2))
    assert "met in" not in few and "standard errors)" not in few
    assert "- for scale: standard errors n/a (2 seeds; standard errors and bootstrap shares need at least 5)" in few
    assert "- how sure each verdict is: n/a (2 seeds; standard errors and bootstrap shares need at least 5" in few
    enough = bench.render(*nb201_summary(bench, 6))
    assert "met in" in enough
    # each standard error says which it is: the unpaired one, and the paired one beside it (as the bootstrap)
    summary, _, _ = nb201_summary(bench, 6)
    gap, unpaired = bench._overall_gap(summary, "ppo", "random")
    change = [r - p for p, r in zip(summary["ppo"]["per_seed_overall_pp"], summary["random"]["per_seed_overall_pp"], strict=True)]
    mean = sum(change) / len(change)
    paired = math.sqrt(sum((c - mean) ** 2 for c in change) / (len(change) - 1) / len(change))
    assert f"is {unpaired:.2f} pp (difference = {gap / unpaired:.1f} unpaired standard errors)" in enough
    assert f"the paired one (the standard deviation of the per-seed differences / sqrt(n), PPO and random on the same seed, as the bootstrap below) is {paired:.2f} pp" in enough


def test_nb201_counts_runs_that_chose_nothing_and_calls_no_target_met(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regret is a NaN-mean: a run with no feasible choice had silently left the means."""
    bench = load("strategies_nb201", monkeypatch)
    summary, cells, meta = nb201_summary(bench, 6, ppo_missing=1)
    assert summary["ppo"]["no_feasible_choice"] == 1 and summary["random"]["no_feasible_choice"] == 0
    assert summary["ppo"]["overall_by_queries"]["50"]["no_choice_yet"] == 1
    text = bench.render(summary, cells, meta)
    assert "1 runs chose nothing within their target, left out of the means" in text
    assert "- n/a: 1 ppo run chose nothing within the target (no regret, left out of the means), so no target is called met" in text
    overall = next(line for line in text.splitlines() if line.startswith("- overall (per-seed mean"))
    assert overall.endswith(": n/a (runs without a choice)")
    assert "met in" not in text and "- how sure each verdict is: n/a (1 ppo run chose nothing" in text
    readings = next(line for line in text.splitlines() if line.startswith("- the verdict depends on"))
    assert readings.count("n/a (runs without a choice)") == 3 and "met;" not in readings
    # the target the missing run belongs to is not judged; the other (every run chose) is
    assert "- latency_ms_toy@0.25: random - ppo = " in text and text.split("- latency_ms_toy@0.25: ")[1].split("\n")[0].endswith("n/a (runs without a choice)")
    assert "| 50 | " in text and "n/a (1 runs had no choice within their target yet)" in text
    # with every run choosing, the verdicts are given (PPO is better by about 0.5 pp)
    complete = bench.render(*nb201_summary(bench, 6))
    assert "- overall (per-seed mean over the 2 targets): random - ppo = 0.50 pp" in complete and "n/a (runs without a choice)" not in complete
