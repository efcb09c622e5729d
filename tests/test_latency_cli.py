from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from mobilenas.latency.cli import main

from helpers import run_nas_latency, tiny_arch, tiny_space

TINY = tiny_arch().to_notation()


run = run_nas_latency


def test_umbrella_measure_json_has_latency_and_spread() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mobilenas.cli", "latency", "measure", TINY, "--input-size", "32", "--repeats", "3", "--warmup", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["latency_ms"] > 0
    assert {"iqr_ms", "std_ms", "p25_ms", "p75_ms", "min_ms", "max_ms"} <= set(payload["spread"])
    assert payload["runs"] == 3 and payload["device"]["input_shape"] == [1, 3, 32, 32]
    assert payload["device"]["runtime"] == "onnxruntime"


def test_measure_of_a_runs_result_is_at_the_size_its_latency_is_of(tmp_path, capsys) -> None:
    # predict best.json took the run's 64 px table, measure best.json timed it at 224 px
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"architecture": json.loads(tiny_arch().to_json()), "preprocessing": {"input_shape": [1, 3, 40, 40]}}))
    code, out, _ = run(["measure", str(best), "--repeats", "3", "--warmup", "1", "--json"], capsys)
    assert code == 0 and json.loads(out)["input_size"] == 40 and json.loads(out)["device"]["input_shape"] == [1, 3, 40, 40]
    code, out, _ = run(["measure", str(best), "--input-size", "32", "--repeats", "3", "--warmup", "1", "--json"], capsys)
    assert code == 0 and json.loads(out)["input_size"] == 32


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.json"
    path.write_text(tiny_space().to_json())
    return path


@pytest.fixture(scope="module")
def built_table(space_file, tmp_path_factory):
    table = tmp_path_factory.mktemp("table") / "tiny.jsonl"
    code = main(["build", "--space", str(space_file), "--num-classes", "10", "--input-size", "32", "--table", str(table), "--repeats", "3", "--correction-samples", "2", "--quiet"], prog="nas-latency")
    assert code == 0
    return table


def test_build_json_reports_entries_and_resumes(built_table, space_file, capsys) -> None:
    code, out, _ = run(["build", "--space", str(space_file), "--num-classes", "10", "--input-size", "32", "--table", str(built_table), "--repeats", "3", "--correction-samples", "2", "--quiet", "--json"], capsys)
    assert code == 0
    payload = json.loads(out)
    assert payload["measured"] == 0 and payload["reused"] == payload["entries"] > 20
    assert payload["correction"]["fitted"] and payload["table"] == str(built_table)
    # without --input-size: the table's (it was refused for not being 224 px)
    code, out, _ = run(["build", "--space", str(space_file), "--num-classes", "10", "--table", str(built_table), "--repeats", "3", "--correction-samples", "2", "--quiet", "--json"], capsys)
    assert code == 0 and json.loads(out)["measured"] == 0


def test_build_refuses_to_refit_another_spaces_table(built_table, tmp_path, capsys) -> None:
    # it refitted the other space's correction on this space's networks, without a word
    other = tmp_path / "other.jsonl"
    shutil.copy(built_table, other)
    before = other.read_text()
    code, _, err = run(["build", "--space", "mobilenetv3", "--input-size", "32", "--table", str(other), "--quiet"], capsys)
    assert code == 2 and "was built for space tiny: building space mobilenetv3 into it would refit its correction" in err and "--correction-samples 0" in err
    assert other.read_text() == before


def test_calibrate_json_has_the_names_scripts_rely_on(built_table, space_file, tmp_path, capsys) -> None:
    code, out, _ = run(["calibrate", "--space", str(space_file), "--num-classes", "10", "--input-size", "32", "--table", str(built_table), "--samples", "3", "--rounds", "1", "--out", str(tmp_path / "cal"), "--quiet", "--json"], capsys)
    assert code == 0
    payload = json.loads(out)
    assert {"samples", "mape", "within_5pct", "within_10pct", "spearman", "rmse_ms"} <= set(payload)
    assert payload["samples"] == 3
    assert 0 <= payload["within_5pct"] <= payload["within_10pct"] <= 1  # fractions, not percent
    assert (tmp_path / "cal" / "calibration.csv").is_file() and (tmp_path / "cal" / "calibration.png").is_file()
    # an output folder that cannot be made: refused before any measurement (it used to measure, then fail)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, out, err = run(["calibrate", "--space", str(space_file), "--num-classes", "10", "--input-size", "32", "--table", str(built_table), "--samples", "3", "--out", str(blocker / "cal")], capsys)
    assert code == 2 and "is a file, not a folder" in err and len(err.strip().splitlines()) == 1


def test_a_calibration_never_overwrites_an_earlier_one(built_table, space_file, tmp_path, capsys, monkeypatch) -> None:
    # A second calibrate into the same folder had replaced the first one's measurements silently.
    common = ["calibrate", "--space", str(space_file), "--num-classes", "10", "--input-size", "32", "--table", str(built_table), "--rounds", "1", "--no-anchors", "--quiet", "--json"]
    assert run([*common, "--samples", "3", "--out", str(tmp_path / "cal")], capsys)[0] == 0
    before = (tmp_path / "cal" / "calibration.csv").read_text()
    code, _, err = run([*common, "--samples", "2", "--out", str(tmp_path / "cal")], capsys)
    assert code == 2 and f"--out {tmp_path / 'cal'} holds a calibration already" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "cal" / "calibration.csv").read_text() == before
    # the default folder: the next free name beside it
    monkeypatch.chdir(tmp_path)
    assert run([*common, "--samples", "2"], capsys)[0] == 0
    first = next(tmp_path.glob("calibration-*px"))
    assert run([*common, "--samples", "2"], capsys)[0] == 0
    assert (first / "calibration.csv").is_file() and (tmp_path / f"{first.name}-2" / "calibration.csv").is_file()


def test_predict_and_breakdown(built_table, capsys) -> None:
    arch = tiny_space().sample(__import__("numpy").random.default_rng(3))
    code, out, _ = run(["predict", arch.to_notation(), "--table", str(built_table), "--breakdown", "--json"], capsys)
    assert code == 0
    payload = json.loads(out)
    correction = payload["correction"]
    assert payload["latency_ms"] == pytest.approx(correction["a"] * payload["sum_ms"] + correction["b"] + correction["se_ms"] * payload["se_blocks"])
    assert payload["se_blocks"] == sum(1 for _, _, block in arch.blocks() if block.se_channels > 0)
    assert payload["sum_ms"] == pytest.approx(sum(row["latency_ms"] for row in payload["breakdown"]))
    assert payload["breakdown"][0]["path"] == "stem" and payload["breakdown"][-1]["path"] == "head"
    # a device named for a table of this machine's CPU is refused, as measure refuses it (it was ignored)
    code, _, err = run(["predict", arch.to_notation(), "--table", str(built_table), "--device-name", "pixel7"], capsys)
    assert code == 2 and "--device-name 'pixel7' names the device a --command measures on" in err


def test_predict_finds_the_table_of_the_search_run_that_wrote_best_json(built_table, tmp_path, capsys) -> None:
    arch = tiny_space().sample(__import__("numpy").random.default_rng(4))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "best.json").write_text(json.dumps({"architecture": arch.to_dict(), "accuracy": 0.5}))
    (run_dir / "manifest.json").write_text(json.dumps({"kind": "search", "latency_table": {"path": str(built_table)}}))
    code, out, _ = run(["predict", arch.to_notation(), "--table", str(built_table), "--json"], capsys)
    expected = json.loads(out)["latency_ms"]
    for given in (run_dir / "best.json", run_dir):
        code, out, err = run(["predict", str(given), "--json"], capsys)
        assert code == 0 and json.loads(out)["latency_ms"] == pytest.approx(expected)
        assert f"using the latency table of the run that wrote {given}: {built_table}" in err
    # an --input-size the run's table was not measured at would be ignored: refused instead
    code, out, err = run(["predict", str(run_dir / "best.json"), "--input-size", "64"], capsys)
    assert code == 2 and not out and f"{built_table} is a table for 32x32 inputs, not --input-size 64; drop --input-size" in err
    # block notation longer than a file name may be (mobilenetv3-large's: 288 characters) is not a path
    from mobilenas.runs import run_latency_table
    from mobilenas.space.references import mobilenetv3_large

    long = mobilenetv3_large().to_notation()
    assert len(long) > 255 and run_latency_table(long) is None  # OSError: File name too long, before
    code, _, err = run(["predict", long], capsys)
    assert code == 2 and "give --table PATH, or --space NAME" in err and "Traceback" not in err
    # a NetAdapt run froze its own correction beside its table: predicted with that one, as the run did
    frozen = {"a": 2.0, "b": 0.5, "points": 2, "fitted": True, "se_ms": 0.0}
    (run_dir / "manifest.json").write_text(json.dumps({"kind": "netadapt", "latency": {"table": str(built_table), "correction": frozen}}))
    code, out, err = run(["predict", str(run_dir / "best.json"), "--json"], capsys)
    payload = json.loads(out)
    assert code == 0 and payload["latency_ms"] == pytest.approx(2.0 * payload["sum_ms"] + 0.5) and payload["correction"]["a"] == 2.0
    assert "(with the correction that run froze)" in err
    # the run's table moved away: said so (it said only "give --table PATH, or --space NAME")
    (run_dir / "manifest.json").write_text(json.dumps({"kind": "netadapt", "latency": {"table": str(run_dir / "moved.jsonl"), "correction": frozen}}))
    code, _, err = run(["predict", str(run_dir / "best.json")], capsys)
    assert code == 2 and f"the latency table of the run that wrote {run_dir / 'best.json'}, {run_dir / 'moved.jsonl'}, no longer exists" in err
    # a run of another kind (or none) leaves the choice to the user
    (run_dir / "manifest.json").write_text(json.dumps({"kind": "train", "latency": {"table": str(built_table)}}))
    code, _, err = run(["predict", str(run_dir / "best.json")], capsys)
    assert code == 2 and "give --table PATH, or --space NAME" in err


def test_fastest_with_a_target(built_table, space_file, capsys) -> None:
    code, out, _ = run(["fastest", "--space", str(space_file), "--num-classes", "10", "--input-size", "32", "--table", str(built_table), "--target-latency", "0.001ms", "--json"], capsys)
    assert code == 1  # a script can test it: nas-latency fastest ... --target-latency T && nas-search ...
    payload = json.loads(out)
    assert payload["target_latency_ms"] == pytest.approx(0.001) and payload["feasible"] is False
    assert payload["latency_ms"] > 0
    fastest = payload["latency_ms"]
    common = ["fastest", "--space", str(space_file), "--num-classes", "10", "--input-size", "32", "--table", str(built_table)]
    code, out, _ = run([*common, "--target-latency", "0.001ms"], capsys)
    assert code == 1 and "NOT reachable" in out
    code, out, _ = run([*common, "--target-latency", f"{fastest * 1.01}ms"], capsys)
    assert code == 0 and ": reachable" in out
    code, out, _ = run([*common, "--target-latency", f"{fastest * 1.01}ms", "--json"], capsys)
    payload = json.loads(out)
    assert code == 0 and payload["feasible"] is True and payload["binding"] is True
    # the slowest: beyond it a target constrains nothing
    from mobilenas.latency import LookupTable, slowest_latency
    from mobilenas.space.search_space import SearchSpace
    from mobilenas.units import format_ms

    slowest, arch = slowest_latency(SearchSpace.from_json(space_file.read_text()).for_data(10, 3), LookupTable.load(built_table))
    assert slowest > fastest and payload["slowest_latency_ms"] == pytest.approx(slowest) and payload["slowest_architecture"] == arch.to_notation()
    code, out, _ = run([*common, "--target-latency", f"{slowest * 1.01}ms"], capsys)
    assert code == 0 and f"target {format_ms(slowest * 1.01)}: reachable by every architecture of the space: it constrains nothing" in out
    assert f"slowest: {format_ms(slowest)} predicted (targets from {format_ms(fastest)} to {format_ms(slowest)} trade accuracy for latency)" in out
    code, _, err = run(["fastest", "--space", str(space_file), "--num-classes", "10", "--input-size", "64", "--table", str(built_table)], capsys)
    assert code == 2 and "is a table for 32x32 inputs, not --input-size 64" in err


def test_info_without_a_table_lists_the_tables_mobilenas_keeps(built_table, tmp_path, monkeypatch, capsys) -> None:
    # Which tables exist, for which space and device, was only to be found by listing the folder.
    monkeypatch.setenv("MOBILENAS_HOME", str(tmp_path / "home"))
    code, out, _ = run(["info"], capsys)
    assert code == 0 and out.startswith(f"no latency tables in {tmp_path / 'home' / 'tables'} yet")
    tables = tmp_path / "home" / "tables"
    tables.mkdir(parents=True)
    shutil.copy(built_table, tables / "tiny-32px.jsonl")
    (tables / "broken.jsonl").write_text("not a table\n")
    code, out, _ = run(["info"], capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0] == f"2 latency tables in {tables}, the newest first:"
    listed = next(line for line in lines if line.endswith("tiny-32px.jsonl"))
    assert listed.split()[:2] == ["tiny", "32px"] and "this machine" in listed
    assert any("broken.jsonl: " in line and "not a mobilenas latency table" in line for line in lines)
    code, out, _ = run(["info", "--json"], capsys)
    payload = json.loads(out)
    good = next(t for t in payload["tables"] if t["path"].endswith("tiny-32px.jsonl"))
    assert good["this_device"] is True and good["entries"] > 20 and good["correction"]["fitted"]


def test_info_describes_the_table(built_table, capsys) -> None:
    code, out, _ = run(["info", str(built_table), "--json"], capsys)
    assert code == 0
    payload = json.loads(out)
    assert payload["entries"] > 20 and payload["input_size"] == 32 and payload["correction"]["fitted"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["measure", "no-such-network"], "neither a reference"),
        (["predict", "mobilenetv2", "--table", "/nonexistent/table.jsonl"], "no latency table at /nonexistent/table.jsonl"),
        (["fastest", "--space", "mobilenetv3", "--target-latency", "15parsecs"], "cannot read '15parsecs' as a duration"),
        (["calibrate", "--space", "no-such-space"], "unknown search space 'no-such-space'"),
        (["build", "--space", "nb201"], "nb201 is the NAS-Bench-201 cell space of tabular searches (nas-search --space nb201 --benchmark CSV), whose latencies come from the benchmark's column"),
        (["measure", "mobilenetv2", "--backend", "command"], "needs --command"),
        (["measure", "mobilenetv2", "--command", "bench {model}", "--warmup", "0", "--timer", "wall"],  # silently ignored, the output said 'timer command'
         "--warmup, --timer would have no effect with --command (the benchmark command warms up and times the model itself)"),
        (["measure", "mobilenetv2", "--command", "python bench.py"], "no {model} placeholder"),
        (["measure", "mobilenetv2", "--backend", "torch", "--command", "bench {model}"], "--command cannot be combined with --backend torch"),
        (["build"], "the following arguments are required: --space"),
        # a name only labels what a --command measures; ``--device cuda`` (once argparse's
        # abbreviation of it) says where latency is measured
        (["measure", TINY, "--input-size", "32", "--device-name", "pixel7"], "--device-name 'pixel7' names the device a --command"),
        (["measure", TINY, "--input-size", "32", "--backend", "torch", "--device", "cuda"],
         "unrecognized arguments: --device cuda; latency is measured on this machine's CPU by --backend onnxruntime or torch"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("nas-latency") and "error:" in err
    assert message in err and "Traceback" not in err


def test_a_missing_entry_and_a_foreign_table_are_one_line_errors(built_table, tmp_path, capsys) -> None:
    big = tiny_arch().to_notation()  # an SE conv block the tiny space never produces
    code, _, err = run(["predict", big, "--table", str(built_table)], capsys)
    assert code == 2 and err.count("\n") == 1 and "has no entry for" in err and "(nas-latency predict --measure-missing;" in err
    assert f"nas-latency build --space SPACE --input-size 32 --table {built_table}" in err and "predict(..." not in err  # a custom space: its .json
    lines = built_table.read_text().splitlines()
    header = json.loads(lines[0])
    header["device"]["runtime_version"] = "0.0.1"
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    code, _, err = run(["predict", big, "--table", str(foreign)], capsys)
    assert code == 2 and err.count("\n") == 1 and "another device" in err and "--force-device" in err
    known = tiny_space().sample(__import__("numpy").random.default_rng(3)).to_notation()
    code, _, err = run(["predict", known, "--table", str(foreign), "--force-device"], capsys)
    assert code == 0 and err.startswith(f"nas-latency predict: warning: using latency table {foreign} measured on another device"), err


def test_more_timing_threads_than_cores_get_a_note(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.cliutil import latency_threads_note

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert latency_threads_note(2, "--threads") is None
    assert latency_threads_note(4, "--threads", command="bench {model}") is None  # the command's device has its own cores
    argv = ["measure", tiny_arch().to_notation(), "--input-size", "32", "--repeats", "2", "--warmup", "0", "--json"]
    assert main([*argv, "--threads", "3"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["latency_ms"] > 0  # measured all the same
    assert captured.err.strip() == (
        "note: --threads 3 on 2 cores: the threads share the cores, so the latencies come out slower and noisier than on a"
        " device with 3; --threads 2 at most times this machine as it is"
    )
    assert main([*argv, "--threads", "2"]) == 0
    assert "note" not in capsys.readouterr().err
    # nas-search says it where it makes its latency backend (new runs and resumed ones)
    from mobilenas.search.cli import _backend

    config = {"latency_backend": "onnxruntime", "latency_command": None, "threads": 4, "device_name": None}
    assert _backend(config).threads == 4
    assert "note: --latency-threads 4 on 2 cores" in capsys.readouterr().err


def test_measure_says_what_one_reading_is(capsys) -> None:
    """A --command prints its own summary, one reading: no 'median of 1 runs' and a zero spread."""
    command = f"{sys.executable} -m mobilenas.latency.ort_command {{model}} --warmup 1 --repeats 3"
    code, out, err = run(["measure", TINY, "--input-size", "32", "--command", command], capsys)
    assert code == 0, err
    assert out.splitlines()[0].endswith(" ms (as the benchmark command printed it)"), out
    code, out, err = run(["measure", TINY, "--input-size", "32", "--repeats", "1", "--warmup", "1"], capsys)
    assert code == 0, err
    assert out.splitlines()[0].endswith(" ms (a single run)"), out
    code, out, err = run(["measure", TINY, "--input-size", "32", "--repeats", "3", "--warmup", "1"], capsys)
    assert " (median of 3 runs; IQR " in out.splitlines()[0], out


def test_a_table_that_cannot_be_locked_is_named_not_its_lock_file(space_file, tmp_path, capsys) -> None:
    table = tmp_path / "t.jsonl"
    (tmp_path / "t.jsonl.lock").mkdir()  # the lock file beside the table cannot be opened
    code, _, err = run(["build", "--space", str(space_file), "--num-classes", "10", "--input-size", "32", "--table", str(table), "--quiet"], capsys)
    assert code != 0 and err.strip().endswith(f"Is a directory: {table}") and ".lock" not in err


@pytest.mark.slow  # a lazy table of the mobilenetv3 space: about 20 s
def test_fastest_and_calibrate_take_the_space_a_table_was_built_for(built_table, space_file, tmp_path, capsys) -> None:
    # a built-in space's table: --space may be left out (it was required even with --table)
    table = tmp_path / "mbv3.jsonl"
    code, out, _ = run(["fastest", "--space", "mobilenetv3", "--num-classes", "10", "--input-size", "8", "--table", str(table), "--json"], capsys)
    assert code == 0
    given = json.loads(out)
    code, out, err = run(["fastest", "--table", str(table), "--json"], capsys)
    assert code == 0 and json.loads(out)["architecture"] == given["architecture"] and "_o10_" in given["architecture"]  # its class count too
    code, out, _ = run(["calibrate", "--table", str(table), "--samples", "2", "--rounds", "1", "--no-anchors", "--out", str(tmp_path / "cal"), "--quiet", "--json"], capsys)
    assert code == 0 and json.loads(out)["samples"] == 2
    # another space on it: done, with the note nas-search gives
    code, _, err = run(["fastest", "--space", str(space_file), "--num-classes", "10", "--table", str(table)], capsys)
    assert code == 0 and f"note: latency table {table} was built for space mobilenetv3: the ops of" in err
    # a custom space's table needs its .json; no table and no space: what to give
    code, _, err = run(["fastest", "--table", str(built_table)], capsys)
    assert code == 2 and "not a built-in one: give the space with --space" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["calibrate"], capsys)
    assert code == 2 and "give --space NAME" in err


def test_predict_without_a_table_says_so_before_measuring(tmp_path, monkeypatch, capsys) -> None:
    # a default table that does not exist yet was created and its correction measured (33 s), and
    # then the prediction failed for the entries an empty table lacks
    monkeypatch.setenv("MOBILENAS_HOME", str(tmp_path / "home"))
    assert main(["predict", "mobilenetv3-small", "--space", "mobilenetv3", "--input-size", "64", "--threads", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no latency table for these settings yet" in err
    assert "add --measure-missing" in err and "nas-latency build --space mobilenetv3 --input-size 64 --threads 2" in err
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").rglob("*.jsonl"))


def test_an_interrupted_refit_says_the_table_keeps_its_correction(built_table, space_file, tmp_path, monkeypatch, capsys) -> None:
    # Ctrl-C in the refit's end-to-end bar wiped the table's points and correction, and the
    # message said "completed work is saved"
    from mobilenas.latency import LookupTable

    table = tmp_path / "refit.jsonl"
    shutil.copy(built_table, table)
    before = LookupTable.load(table)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("mobilenas.latency.build.measure_architectures", interrupted)
    code, _, err = run(["build", "--space", str(space_file), "--num-classes", "10", "--table", str(table), "--repeats", "3", "--correction-samples", "2", "--refit-correction", "--quiet"], capsys)
    assert code == 130 and err.strip() == (
        "nas-latency build: interrupted; the ops measured so far are kept in the table; end-to-end timings for the correction count only all together and are"
        " taken again, and until then the table keeps its end-to-end points and correction; continue with: nas-latency build --space"
        f" {shlex.quote(str(space_file))} --num-classes 10 --table {shlex.quote(str(table))} --repeats 3 --correction-samples 2 --refit-correction --quiet"
    )  # the command itself, which resumes where it stopped
    after = LookupTable.load(table)
    assert after.end_to_end_points() == before.end_to_end_points() and after.correction == before.correction


def synthetic_tiny_table(path, measured_ms: list[float]):
    """A tiny-space table at 32 px with every op (0.01 ms each, no measuring) and end-to-end points
    measured as ``measured_ms`` under the identity correction (predictions are the plain sums)."""
    import numpy as np

    from mobilenas.latency import (
        LookupTable,
        Measurement,
        OnnxRuntimeBackend,
        Spread,
        space_signatures,
    )
    from mobilenas.latency.table import Correction, Entry

    space = tiny_space()
    table = LookupTable.create(path, backend=OnnxRuntimeBackend(), input_size=32, space_name="tiny", space_fingerprint=space.layout_fingerprint())
    for signature in space_signatures(space, 32):
        table.add_entry(Entry(signature, 0.01, 0.0, 1, "", 0.01))
    rng = np.random.default_rng(0)
    device = table.device.with_shape((1, 3, 32, 32))
    for ms in measured_ms:
        table.record_end_to_end(space.sample(rng), Measurement(ms, Spread.of([ms]), 1, device), refit=False)
    table.set_correction(Correction(a=1.0, b=0.0, points=len(measured_ms), fitted=True))
    return table


def test_predictions_beyond_the_corrections_points_get_a_note(space_file, tmp_path, capsys) -> None:
    # fastest printed 0.654 ms for a network measured at 0.403 ms, with no word that the correction
    # was fitted on networks of 0.63-4.51 ms only
    table = synthetic_tiny_table(tmp_path / "t.jsonl", [5.0, 8.0])  # every prediction (a sum of 0.01s) lies below 5 ms
    common = ["--space", str(space_file), "--num-classes", "10", "--table", str(table.path)]
    code, out, err = run(["fastest", *common], capsys)
    assert code == 0
    fastest = out.splitlines()[1].strip()
    notes = err.strip().splitlines()
    assert len(notes) == 2 and notes[0].startswith("note: the fastest's ") and notes[1].startswith("note: the slowest's ")
    assert " lies outside the 5.00-8.00 ms of the 2 end-to-end measurements the correction was fitted on, so it is extrapolated there;" in notes[0]
    assert notes[0].endswith(f"; nas-latency measure '{fastest}' --input-size 32 times it")
    code, out, err = run(["fastest", *common, "--json"], capsys)
    assert code == 0 and json.loads(out)["correction_range_ms"] == [5.0, 8.0] and not err
    code, out, err = run(["predict", TINY, "--table", str(table.path), "--measure-missing"], capsys)
    assert code == 0 and err.startswith("note: ") and err.strip().endswith(f"; nas-latency measure '{TINY}' --input-size 32 times it")
    inside = synthetic_tiny_table(tmp_path / "inside.jsonl", [0.001, 100.0])
    code, out, err = run(["fastest", "--space", str(space_file), "--num-classes", "10", "--table", str(inside.path), "--json"], capsys)
    assert code == 0 and "note" not in err
    # a hair outside (the fastest at 0.99 of the lowest point): no note (it read "0.371 ms lies outside the 0.371-3.08 ms")
    fastest_ms = json.loads(out)["latency_ms"]
    for low, noted in ((fastest_ms / 0.99, False), (fastest_ms / 0.9, True)):
        edge = synthetic_tiny_table(tmp_path / f"edge-{noted}.jsonl", [low, 100.0])
        code, _, err = run(["fastest", "--space", str(space_file), "--num-classes", "10", "--table", str(edge.path)], capsys)
        assert code == 0 and ("note: the fastest's" in err) == noted, (low, err)


def test_calibrate_checks_it_can_update_the_table_before_measuring(built_table, space_file, tmp_path, monkeypatch, capsys) -> None:
    # an immutable table (chattr +i): both bars ran to the end, then "error: Operation not permitted".
    # The file system's refusal is made here for the table alone (chattr needs root and ext4-like
    # file systems, which a CI runner may not give).
    import builtins
    import errno
    from pathlib import Path

    import mobilenas.latency.calibrate  # noqa: F401 (the module, for the patch below)
    import mobilenas.latency.table as table_module

    table = tmp_path / "t.jsonl"
    shutil.copy(built_table, table)

    def refusing_open(file, mode="r", *args, **kwargs):
        if Path(file) == table and any(c in mode for c in "wa+"):
            raise PermissionError(errno.EPERM, "Operation not permitted", str(file))
        return builtins.open(file, mode, *args, **kwargs)

    def measured(*args, **kwargs):
        raise AssertionError("measured before the check")

    monkeypatch.setattr(table_module, "open", refusing_open, raising=False)
    monkeypatch.setattr(sys.modules["mobilenas.latency.calibrate"], "measure_architectures", measured)  # the package's name is the function
    code, _, err = run(["calibrate", "--space", str(space_file), "--num-classes", "10", "--table", str(table), "--samples", "2", "--update-correction", "--out", str(tmp_path / "cal")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"latency table {table} cannot be written (Operation not permitted), and --update-correction would add this calibration's measurements to it" in err


def test_calibrate_says_the_new_correction_and_every_file(built_table, space_file, tmp_path, capsys) -> None:
    from mobilenas.latency import LookupTable

    table = tmp_path / "t.jsonl"
    shutil.copy(built_table, table)
    old = LookupTable.load(table).correction
    out_dir = tmp_path / "cal"
    code, out, err = run(["calibrate", "--space", str(space_file), "--num-classes", "10", "--table", str(table), "--samples", "2", "--rounds", "1", "--no-anchors",
                          "--update-correction", "--out", str(out_dir), "--quiet"], capsys)
    assert code == 0, err
    new = LookupTable.load(table).correction
    assert new.points == old.points + 2
    assert f"  correction         latency = {old.describe()} (fitted on {old.points} architectures measured end to end) (the one predicted with)" in out.splitlines()
    assert f"  new correction     latency = {new.describe()} ({new.points} end-to-end points, these included; kept in the table)" in out.splitlines()
    assert f"  wrote              {out_dir / 'calibration.csv'}, {out_dir / 'calibration.png'}, {out_dir / 'calibration.json'}" in out.splitlines()
    assert json.loads((out_dir / "calibration.json").read_text())["updated_correction"]["points"] == new.points


def test_info_describes_another_devices_table_and_how_complete_it_is(built_table, tmp_path, capsys) -> None:
    # info refused another device's table (exit 2, "build a table on this device ... or pass --force-device")
    lines = built_table.read_text().splitlines()
    header = json.loads(lines[0])
    header["device"]["cpu_model"] = "Snapdragon 855"
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    code, out, err = run(["info", str(foreign)], capsys)
    assert code == 0 and not err
    assert "  note         measured on another device, not on this one (" in out and "Snapdragon 855" in out
    code, out, _ = run(["info", str(foreign), "--json"], capsys)
    assert code == 0 and json.loads(out)["this_device"] is False
    code, out, _ = run(["info", str(built_table), "--json"], capsys)
    assert json.loads(out)["this_device"] is True and json.loads(out)["space_ops"] is None  # a custom space's table: unknown
    # a built-in space's table, partly built: how much of the space it holds
    from mobilenas.latency import LookupTable, OnnxRuntimeBackend, space_signatures
    from mobilenas.latency.table import Entry
    from mobilenas.space import get_space

    space = get_space("mobilenetv3")
    partial = LookupTable.create(tmp_path / "mbv3.jsonl", backend=OnnxRuntimeBackend(), input_size=32, space_name="mobilenetv3", space_fingerprint=space.layout_fingerprint())
    wanted = space_signatures(space, 32)
    for signature in wanted[:3]:
        partial.add_entry(Entry(signature, 0.01, 0.0, 1, "", 0.01))
    code, out, _ = run(["info", str(partial.path)], capsys)
    assert code == 0 and f"  space ops    3 of space mobilenetv3's {len(wanted)} ops at 32x32, the rest measured as predictions need them (nas-latency build --space mobilenetv3 --input-size 32 --table {partial.path} measures them all)" in out.splitlines()


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("bad/missing.json", "search space bad/missing.json: no such file; give a space .json file (mobilenas show --space NAME --json > my_space.json writes one), or one of mnasnet, mobilenetv3, mnasnet-relu6"),
        (".", "search space . is a folder; give a space .json file in it, a search run's folder, or one of mnasnet, mobilenetv3, mnasnet-relu6"),
    ],
)
def test_a_space_file_that_is_not_there_is_said_to_be_missing(space, message, capsys) -> None:
    # it said "unknown search space 'bad/missing.json'; choose one of ..."
    for argv in (["build", "--space", space], ["predict", TINY, "--space", space], ["fastest", "--space", space]):
        code, _, err = run(argv, capsys)
        assert code == 2 and err.strip().endswith(f"error: {message}") and len(err.strip().splitlines()) == 1, err


def test_help_names_every_built_in_space(capsys) -> None:
    # --help said "mnasnet, mobilenetv3" where the error offered mnasnet-relu6 too
    code, out, _ = run(["build", "--help"], capsys)
    assert code == 0 and "mnasnet, mobilenetv3, mnasnet-relu6, a space .json file or a search run's folder" in " ".join(out.split())


def test_build_counts_the_entries_of_networks_outside_the_space(built_table, space_file, tmp_path, capsys) -> None:
    """'3183 entries (0 measured now, 3172 already there)': the 11 others, measured for networks of
    another class count or space, were in neither count."""
    table = tmp_path / "other-classes.jsonl"
    shutil.copy(built_table, table)
    code, out, _ = run(["build", "--space", str(space_file), "--num-classes", "7", "--input-size", "32", "--table", str(table), "--repeats", "3", "--correction-samples", "2"], capsys)
    assert code == 0
    found = re.search(r"  (\d+) entries \((\d+) measured now, (\d+) already there, (\d+) of networks outside this space\)", out)
    assert found is not None, out
    entries, measured, reused, other = (int(n) for n in found.groups())
    assert measured > 0 and other > 0 and measured + reused + other == entries  # the classifier for 10 classes, now outside
