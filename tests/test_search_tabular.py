from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mobilenas.search.base import STATUS_FAILED, STATUS_OK, Evaluator
from mobilenas.search.tabular import TabularEvaluator
from mobilenas.space.nb201 import CellSpace

SMALL = CellSpace(name="tiny-cell", operations=("none", "skip_connect", "nor_conv_3x3"), num_nodes=3)
COLUMNS = ["index", "arch_str", "val_acc_12ep", "test_acc_12ep", "test_acc_200ep", "latency_ms_raspi4", "latency_ms_pixel3"]


def make_table(space: CellSpace = SMALL) -> pd.DataFrame:
    """A table in the NAS-Bench-201 export's format: percentages, one latency column per device."""
    rng = np.random.default_rng(0)
    rows = []
    for number, indices in enumerate(space.all_indices()):
        convs = sum(1 for i in indices if space.operations[i] == "nor_conv_3x3")
        rows.append({
            "index": number,
            "arch_str": space.decode(indices),
            "val_acc_12ep": round(60 + 5 * convs + rng.uniform(0, 3), 3),
            "test_acc_12ep": round(62 + 5 * convs + rng.uniform(0, 3), 3),
            "test_acc_200ep": round(80 + 4 * convs + rng.uniform(0, 2), 3),
            "latency_ms_raspi4": round(2 + 10 * convs + rng.uniform(0, 1), 4),
            "latency_ms_pixel3": round(1 + 3 * convs + rng.uniform(0, 1), 4),
        })
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture
def table(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    frame = make_table()
    path = tmp_path / "tiny.csv.gz"
    with gzip.open(path, "wt") as handle:
        frame.to_csv(handle, index=False)
    return path, frame


def test_looks_up_every_architecture_as_fractions(table: tuple[Path, pd.DataFrame]) -> None:
    path, frame = table
    evaluator = TabularEvaluator(path, latency_column="latency_ms_raspi4")
    assert isinstance(evaluator, Evaluator) and evaluator.cheap
    assert len(evaluator) == 27 and evaluator.architectures() == list(frame["arch_str"])
    for row in frame.itertuples():
        result = evaluator.evaluate(row.arch_str)
        assert result.status == STATUS_OK and result.error is None
        assert result.accuracy == pytest.approx(row.val_acc_12ep / 100)
        assert result.final_accuracy == pytest.approx(row.test_acc_200ep / 100)
        assert result.latency_ms == pytest.approx(row.latency_ms_raspi4)
        assert result.info["row"] == row.Index
        assert evaluator.latency_ms(row.arch_str) == pytest.approx(row.latency_ms_raspi4)
    # Columns the user names; whitespace around a string is ignored.
    other = TabularEvaluator(path, reward_column="test_acc_12ep", final_column="val_acc_12ep", latency_column="latency_ms_pixel3")
    arch = frame["arch_str"][5]
    assert other.evaluate(f" {arch} ").accuracy == pytest.approx(frame["test_acc_12ep"][5] / 100)
    assert other.evaluate(arch).latency_ms == pytest.approx(frame["latency_ms_pixel3"][5])
    assert arch in other and "|x~0|" not in other


def test_plain_csv_and_fraction_units(tmp_path: Path) -> None:
    frame = make_table()
    frame[["val_acc_12ep", "test_acc_200ep"]] /= 100
    path = tmp_path / "fractions.csv"
    frame.to_csv(path, index=False)
    evaluator = TabularEvaluator(path, latency_column="latency_ms_pixel3", accuracy_unit="fraction")
    assert evaluator.evaluate(frame["arch_str"][0]).accuracy == pytest.approx(frame["val_acc_12ep"][0])
    with pytest.raises(ValueError, match=r"has accuracies outside 0..1 fraction: are they percentages"):
        TabularEvaluator(tmp_path / "fractions.csv", latency_column="latency_ms_pixel3", reward_column="test_acc_12ep", accuracy_unit="fraction")
    make_table().assign(val_acc_12ep=150.0).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"accuracies outside 0..100 percent$"):
        TabularEvaluator(tmp_path / "bad.csv", latency_column="latency_ms_pixel3")
    # fractions read as percent would be 100x too small, silently (the absolute reward depends on the scale)
    with pytest.raises(ValueError, match=r"column 'val_acc_12ep' of fractions.csv holds fractions .all values <= 1., not percent: use accuracy_unit='fraction' .nas-search --accuracy-unit fraction."):
        TabularEvaluator(path, latency_column="latency_ms_pixel3", reward_column="val_acc_12ep", final_column="test_acc_200ep")


def test_regret_oracle_and_latency_summaries(table: tuple[Path, pd.DataFrame]) -> None:
    path, frame = table
    evaluator = TabularEvaluator(path, latency_column="latency_ms_raspi4")
    latency = frame["latency_ms_raspi4"]
    assert evaluator.fastest_latency_ms() == pytest.approx(latency.min())
    assert evaluator.latency_quantile(0.5) == pytest.approx(latency.quantile(0.5))
    for target in (latency.min(), latency.quantile(0.25), latency.quantile(0.5), latency.max()):
        feasible = frame[latency <= target]
        best = evaluator.best_feasible(target)
        assert best is not None
        assert best.final_accuracy == pytest.approx(feasible["test_acc_200ep"].max() / 100)
        assert best.latency_ms is not None and best.latency_ms <= target
        assert evaluator.best_feasible_final_accuracy(target) == best.final_accuracy
        by_reward = evaluator.best_feasible(target, by="reward")
        assert by_reward is not None and by_reward.accuracy == pytest.approx(feasible["val_acc_12ep"].max() / 100)
    assert evaluator.best_feasible(latency.min() / 2) is None
    assert evaluator.best_feasible_final_accuracy(latency.min() / 2) is None
    with pytest.raises(ValueError, match="a quantile is in"):
        evaluator.latency_quantile(1.5)


def test_describe_for_the_manifest(table: tuple[Path, pd.DataFrame]) -> None:
    path, _ = table
    description = TabularEvaluator(path, latency_column="latency_ms_raspi4").describe()
    assert description["rows"] == 27 and description["latency_column"] == "latency_ms_raspi4"
    assert description["reward_column"] == "val_acc_12ep" and description["final_column"] == "test_acc_200ep"
    assert len(description["fingerprint"]) == 16


def test_empty_cells_fail_the_candidate_not_the_search(tmp_path: Path) -> None:
    frame = make_table()
    frame.loc[3, "val_acc_12ep"] = np.nan
    frame.loc[4, "latency_ms_raspi4"] = np.nan
    frame.to_csv(tmp_path / "holes.csv", index=False)
    evaluator = TabularEvaluator(tmp_path / "holes.csv", latency_column="latency_ms_raspi4")
    missing_accuracy = evaluator.evaluate(frame["arch_str"][3])
    assert missing_accuracy.status == STATUS_FAILED and "val_acc_12ep" in (missing_accuracy.error or "")
    missing_latency = evaluator.evaluate(frame["arch_str"][4])
    assert missing_latency.status == STATUS_FAILED and "latency_ms_raspi4" in (missing_latency.error or "")
    with pytest.raises(ValueError, match="has no latency"):
        evaluator.latency_ms(frame["arch_str"][4])
    best = evaluator.best_feasible(1e9)
    assert best is not None and best.row not in (3, 4)


@pytest.mark.parametrize(
    ("change", "options", "message"),
    [
        (None, {"latency_column": "latency_ms_raspi4", "reward_column": "val_acc"},
         "reward column 'val_acc' is not in tiny.csv; available columns: index, arch_str, val_acc_12ep, test_acc_12ep, test_acc_200ep, latency_ms_raspi4, latency_ms_pixel3"),
        (None, {"latency_column": "latency_ms_pi"}, r"latency column 'latency_ms_pi' is not in tiny.csv \(did you mean 'latency_ms_raspi4'\?\); available columns: index, arch_str"),
        (None, {"latency_column": "latency_ms_raspi4", "final_column": "test_acc"}, "final column 'test_acc' is not in"),
        (None, {}, "choose the latency column .the device. of tiny.csv with --latency-column .latency_column= from Python.; it has 2 latency columns .devices.: latency_ms_raspi4, latency_ms_pixel3$"),
        ("no-latency", {}, "of tiny.csv with --latency-column .latency_column= from Python.; it has no column named latency_ms[*]; columns: index, arch_str, val_acc_12ep"),
        (None, {"latency_column": "latency_ms_raspi4", "accuracy_unit": "percents"}, "accuracy_unit 'percents' is not one of percent, fraction"),
        # a column of the wrong kind in a role: accuracies read as milliseconds, latencies as accuracies
        (None, {"latency_column": "test_acc_200ep"}, "^the latency column and the final column are both 'test_acc_200ep': a column is latencies or accuracies; choose a device among latency_ms_raspi4, latency_ms_pixel3$"),
        (None, {"latency_column": "latency_ms_raspi4", "reward_column": "latency_ms_pixel3"}, "^reward column 'latency_ms_pixel3' of tiny.csv holds latencies, not accuracies: choose an accuracy column"),
        (None, {"latency_column": "latency_ms_raspi4", "final_column": "latency_ms_raspi4"}, "^final column 'latency_ms_raspi4' of tiny.csv holds latencies"),
        ("duplicate", {"latency_column": "latency_ms_raspi4"}, "appears twice .rows 0 and 27."),
        ("text", {"latency_column": "latency_ms_raspi4"}, "column 'val_acc_12ep' of tiny.csv is not numeric .row 2: 'high'."),
        ("zero", {"latency_column": "latency_ms_raspi4"}, "latency column 'latency_ms_raspi4' of tiny.csv has latencies <= 0 ms"),
        # a file that is no benchmark at all says so first, before asking for a latency column
        ("no-arch", {}, "^tiny.csv is not a NAS-Bench-201-style table: it has no architecture column 'arch_str' .columns: index, val_acc_12ep"),
        # a wide table's columns are not all listed
        ("wide", {"latency_column": "latency_ms_raspi4", "reward_column": "val"},
         r"available columns: index, arch_str, .*, extra_12, \.\.\. \(17 more\)$"),
    ],
)
def test_bad_tables_and_columns_say_what_is_wrong(tmp_path: Path, change: str | None, options: dict, message: str) -> None:
    frame = make_table()
    if change == "duplicate":
        frame = pd.concat([frame, frame.iloc[:1]], ignore_index=True)
    elif change == "text":
        frame["val_acc_12ep"] = frame["val_acc_12ep"].astype(object)
        frame.loc[2, "val_acc_12ep"] = "high"
    elif change == "zero":
        frame.loc[0, "latency_ms_raspi4"] = 0.0
    elif change == "no-arch":
        frame = frame.drop(columns=["arch_str"])
    elif change == "wide":
        for k in range(30):
            frame[f"extra_{k}"] = 0.0
    elif change == "no-latency":
        frame = frame.drop(columns=["latency_ms_raspi4", "latency_ms_pixel3"])
    frame.to_csv(tmp_path / "tiny.csv", index=False)
    with pytest.raises(ValueError, match=message):
        TabularEvaluator(tmp_path / "tiny.csv", **options)


def test_single_latency_column_is_the_default(tmp_path: Path) -> None:
    make_table().drop(columns=["latency_ms_pixel3"]).to_csv(tmp_path / "one.csv", index=False)
    assert TabularEvaluator(tmp_path / "one.csv").latency_column == "latency_ms_raspi4"


def test_missing_file_unreadable_file_and_unknown_architecture(tmp_path: Path, table: tuple[Path, pd.DataFrame]) -> None:
    with pytest.raises(FileNotFoundError, match=r"tabular benchmark .*nope.csv.gz does not exist"):
        TabularEvaluator(tmp_path / "nope.csv.gz")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        TabularEvaluator(tmp_path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"cannot read tabular benchmark .*empty.csv as CSV"):
        TabularEvaluator(tmp_path / "empty.csv")
    (tmp_path / "broken.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"cannot read tabular benchmark .*broken.csv.gz as CSV"):
        TabularEvaluator(tmp_path / "broken.csv.gz")
    path, _ = table
    evaluator = TabularEvaluator(path, latency_column="latency_ms_raspi4")
    unknown = "|avg_pool_3x3~0|+|none~0|none~1|"
    with pytest.raises(ValueError, match=r"architecture '\|avg_pool_3x3~0\|\+\|none~0\|none~1\|' is not in tiny.csv.gz \(27 architectures\); check that the search space matches the table"):
        evaluator.evaluate(unknown)


def test_benchmark_one_with_the_latency_filter(cells: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/strategies_nb201.py --max-latency-ratio: proposals over the limit are rejected
    before their look-up (no query), so every query and the run's top reward are within the target;
    the runs cached without the filter keep their cache key."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import strategies_nb201 as bench

    from mobilenas.search.rewards import RewardSpec
    from mobilenas.search.strategies import parse_options

    evaluator = TabularEvaluator(cells, latency_column="latency_ms_toy")
    target = evaluator.latency_quantile(0.25)
    best = evaluator.best_feasible(target)
    assert best is not None and best.final_accuracy is not None
    cell = bench.Cell("latency_ms_toy", 0.25, target, best.final_accuracy, best.final_accuracy)
    reward, config = RewardSpec.from_options("hard"), parse_options("random", [])
    plain = bench.run_one(evaluator, cell, "random", config, reward, 0, 40)
    filtered = bench.run_one(evaluator, cell, "random", config, reward, 0, 40, max_latency_ratio=1.0)
    assert plain["rejected"] == 0 and plain["proposals"] == 40
    assert filtered["queries"] == 40 and filtered["rejected"] > 40  # 3 of 4 architectures are over a q25 target
    assert filtered["proposals"] == filtered["rejected"] + 40 and filtered["top_reward_meets_target"]
    fingerprint = evaluator.fingerprint()
    assert bench.cache_key("random", config, reward, 40, fingerprint) == bench.cache_key("random", config, reward, 40, fingerprint, None)
    assert bench.cache_key("random", config, reward, 40, fingerprint, 1.0) != bench.cache_key("random", config, reward, 40, fingerprint)
    # the default output is the committed report, which has no filter; nor have the tuning grids
    for extra, message in (([], "give --out STEM (or --no-write) with --max-latency-ratio"), (["--tune", "ppo5"], "leave --max-latency-ratio out")):
        with pytest.raises(SystemExit) as refused:
            bench.main(["--data", str(cells), "--columns", "latency_ms_toy", "--max-latency-ratio", "1", *extra])
        assert refused.value.code == 2 and message in capsys.readouterr().err


def test_benchmark_one_says_how_sure_its_verdict_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """The margin (random - ppo) - std under each reading, with a paired bootstrap over seeds: on
    the data itself it is the plain difference; a clear win is met in (nearly) every draw, a clear
    miss in (nearly) none, and an edge case in some."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import strategies_nb201 as bench

    rng = np.random.default_rng(3)
    ppo = rng.normal(0.7, 0.1, size=40)

    def margins(random_offset: float) -> dict[str, dict[str, float]]:
        random = ppo + random_offset + rng.normal(0.0, 0.1, size=40)
        summary = {"ppo": {"per_seed_overall_pp": list(ppo)}, "random": {"per_seed_overall_pp": list(random)}}
        found = bench._margin_bootstrap(summary, draws=2000)
        gap = random.mean() - ppo.mean()
        larger = max(ppo.std(ddof=1), random.std(ddof=1))
        assert found["the larger of the two"]["margin_pp"] == pytest.approx(gap - larger)
        assert found["PPO's own"]["margin_pp"] == pytest.approx(gap - ppo.std(ddof=1))
        for m in found.values():
            assert m["low_pp"] < m["margin_pp"] < m["high_pp"]
        return found

    assert all(m["met_share"] > 0.99 for m in margins(0.5).values())
    assert all(m["met_share"] < 0.01 for m in margins(0.0).values())
    edge = margins(0.14)["the larger of the two"]
    assert 0.02 < edge["met_share"] < 0.98
