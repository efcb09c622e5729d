"""Findings of a user review of nas-latency and its tables (wrong numbers, lost work, messages)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenas.latency import (
    CommandBackend,
    Correction,
    LookupTable,
    Measurement,
    Method,
    OnnxRuntimeBackend,
    Spread,
    space_signatures,
)
from mobilenas.latency.signature import architecture_signatures
from mobilenas.latency.table import DeviceMismatchError, Entry
from mobilenas.space.arch import Block

from helpers import run_nas_latency, tiny_arch, tiny_space

SIZE = 32
FAST = Method(name="in-context", cold_cache=False, warmup=1, repeats=3)
TINY = tiny_arch().to_notation()


run = run_nas_latency


def one_line_error(code: int, err: str, *parts: str) -> None:
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, err


@pytest.fixture
def space_file(tmp_path) -> Path:
    path = tmp_path / "tiny_space.json"
    path.write_text(tiny_space().to_json())
    return path


def table_of(path: Path, archs=(), *, ms: float = 0.1, correction: Correction | None = None, space: bool = False) -> LookupTable:
    """A table at ``path`` (32 px, this machine) holding made-up entries for ``archs`` (or, with
    ``space``, for every op of the tiny space)."""
    table = LookupTable.create(path, backend=OnnxRuntimeBackend(), input_size=SIZE, method=FAST, space_name="tiny" if space else None,
                               space_fingerprint=tiny_space().layout_fingerprint() if space else None)
    signatures = list(space_signatures(tiny_space(), SIZE)) if space else []
    signatures += [p.signature for arch in archs for p in architecture_signatures(arch, SIZE)]
    for signature in dict.fromkeys(signatures):
        table.add_entry(Entry(signature, ms, 0.0, 1, "2025-01-01T00:00:00+00:00", ms))
    if correction is not None:
        table.set_correction(correction)
    return table


def measured(ms: float, table: LookupTable) -> Measurement:
    return Measurement(ms, Spread.of([ms]), 1, table.device.with_shape((1, 3, SIZE, SIZE)))


def other_arch():
    return tiny_arch().replace_block(0, 0, Block("ds", 3, 1, tiny_arch().stages[0][0].out_channels, "relu"))


# --------------------------------------------------------------------------- A1: builds sharing a table


BUILD_PROCESS = """
import glob, sys, time
sys.path.insert(0, sys.argv[3])
import onnxruntime, torch  # imported before the two start together
from mobilenas.latency.cli import main
from mobilenas.latency.measure import OnnxRuntimeBackend
OnnxRuntimeBackend().device()
table, name, space = sys.argv[1], sys.argv[2], sys.argv[4]
open(f"{table}.ready-{name}", "w").close()
deadline = time.time() + 120
while len(glob.glob(f"{table}.ready-*")) < 2 and time.time() < deadline:
    time.sleep(0.02)
sys.exit(main(["build", "--space", space, "--num-classes", "10", "--input-size", "32", "--table", table, "--repeats", "2",
               "--correction-samples", "3", "--quiet", "--json"], prog="nas-latency"))
"""


def test_two_builds_of_one_table_at_once_share_the_work_and_agree_on_the_correction(tmp_path, space_file) -> None:
    # Both measured every op (walking the same seeded order in step, each op's second copy
    # dropped), both said "N measured now", both measured the same end-to-end architectures (the
    # table held each twice), and one printed a correction the table no longer held.
    path = tmp_path / "shared.jsonl"
    tests = str(Path(__file__).parent)
    processes = [
        subprocess.Popen([sys.executable, "-c", BUILD_PROCESS, str(path), name, tests, str(space_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err for _, err in outputs]
    payloads = [json.loads(out) for out, _ in outputs]
    total = len(space_signatures(tiny_space(), SIZE))
    # each counts what it kept (one that started later found some done: its "already there")
    assert sum(p["measured"] for p in payloads) == total and all(p["measured"] + p["reused"] <= total for p in payloads)
    # and says what the other measured meanwhile: "27 measured now, 0 already there" of 54 had not added up
    assert all(p["measured"] + p["measured_by_others"] + p["reused"] == total for p in payloads)
    records = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert len([r for r in records if r["kind"] == "op"]) == total
    points = [r for r in records if r["kind"] == "end_to_end"]
    assert len(points) == 3 and len({p["fingerprint"] for p in points}) == 3  # measured once, by one of them
    held = LookupTable.load(path).correction
    for payload in payloads:  # what each printed is what the table holds
        printed = payload["correction"]
        assert (printed["a"], printed["b"], printed["se_ms"], printed["points"]) == pytest.approx((held.a, held.b, held.se_ms, held.points), rel=1e-9)
    assert held.points == 3


def test_the_correction_takes_in_points_another_process_measured_instead_of_measuring_again(tmp_path, monkeypatch) -> None:
    from mobilenas.latency import ensure_correction

    table_of(tmp_path / "t.jsonl", [tiny_arch(), other_arch()])
    first, second = LookupTable.load(tmp_path / "t.jsonl"), LookupTable.load(tmp_path / "t.jsonl")
    first.record_end_to_end(tiny_arch(), measured(1.0, first), refit=False)
    first.record_end_to_end(other_arch(), measured(0.8, first))

    def measuring(*args, **kwargs):
        raise AssertionError("measured end to end again")

    monkeypatch.setattr("mobilenas.latency.build.measure_architectures", measuring)
    correction = ensure_correction(second, tiny_space(), samples=2)  # loaded before the points were written
    assert correction.points == 2 and correction == LookupTable.load(tmp_path / "t.jsonl").correction


def test_an_architecture_measured_twice_counts_once_in_the_fit(tmp_path) -> None:
    table = table_of(tmp_path / "t.jsonl", [tiny_arch(), other_arch()])
    for arch, ms in ((tiny_arch(), 1.0), (tiny_arch(), 1.2), (other_arch(), 0.8)):
        table.record_end_to_end(arch, measured(ms, table), refit=False)
    correction = table.fit_correction()
    assert correction.points == 2
    fresh = table.fit_on([tiny_arch(), other_arch()], [1.1, 0.8])  # the median of its two timings stands for it
    assert (correction.a, correction.b, correction.se_ms) == pytest.approx((fresh.a, fresh.b, fresh.se_ms), rel=1e-9)


# --------------------------------------------------------------------------- A2, B1, B2: damaged tables


def test_impossible_latencies_are_damaged_lines_skipped_and_counted(tmp_path) -> None:
    two = other_arch()
    table = table_of(tmp_path / "t.jsonl", [two])
    good = [json.loads(line) for line in table.path.read_text().splitlines()[1:]]
    extra = [signature for signature in space_signatures(tiny_space(), SIZE) if signature not in table]
    bad_values = [-5.0, float("nan"), float("inf"), "x"]
    lines = []
    for signature, value in zip(extra, bad_values, strict=False):
        record = Entry(signature, 0.5, 0.0, 1, "", 0.5).to_record()
        record["latency_ms"] = value
        lines.append(json.dumps(record))
    point = {"kind": "end_to_end", "notation": two.to_notation(), "fingerprint": two.fingerprint(), "latency_ms": 0.0, "iqr_ms": 0.0, "runs": 1, "measured": ""}
    lines.append(json.dumps(point))  # a network never runs in no time
    with table.path.open("a") as handle:
        handle.write("\n".join(lines) + "\n")
    loaded = LookupTable.load(table.path)
    assert loaded.skipped_lines == len(bad_values) + 1
    assert len(loaded) == len(good) and loaded.end_to_end_points() == []
    assert all(entry.latency_ms >= 0 for entry in loaded.entries())


@pytest.mark.parametrize(("field", "value", "said"), [("a", "x", "correction.a 'x'"), ("a", float("nan"), "correction.a nan"), ("a", -1.0, "correction.a -1.0"),
                                                      ("b", float("inf"), "correction.b inf"), ("se_ms", "0.5", "correction.se_ms '0.5'"), ("points", 2.5, "correction.points 2.5")])
def test_a_damaged_correction_is_refused_in_one_line_naming_the_file_and_field(tmp_path, capsys, field, value, said) -> None:
    table = table_of(tmp_path / "t.jsonl", [tiny_arch()], correction=Correction(a=1.1, b=0.2, points=3, fitted=True))
    lines = table.path.read_text().splitlines()
    header = json.loads(lines[0])
    header["correction"][field] = value
    table.path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=f"{table.path}: the header .* damaged .*{said}"):
        LookupTable.load(table.path)
    for argv in (["predict", TINY, "--table", str(table.path)], ["info", str(table.path)]):
        code, _, err = run(argv, capsys)
        one_line_error(code, err, str(table.path), said)


def test_a_file_that_is_not_text_is_said_to_be_no_table_and_a_line_that_is_not_is_skipped(tmp_path, capsys) -> None:
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\x7f\xffELF\x00\x01\x02\n\xfe\xfe")
    for argv in (["info", str(binary)], ["predict", TINY, "--table", str(binary)]):
        code, _, err = run(argv, capsys)
        one_line_error(code, err, f"{binary} is not a mobilenas latency table (not text)")
    table = table_of(tmp_path / "t.jsonl", [tiny_arch()])
    table.record_end_to_end(tiny_arch(), measured(1.0, table), refit=False)
    with table.path.open("ab") as handle:
        handle.write(b'{"kind": "op", "key": "\xff\xfe"}\n')
    loaded = LookupTable.load(table.path)
    assert loaded.skipped_lines == 1 and len(loaded) == len(table)
    assert loaded.drop_end_to_end() == 1  # a rewrite keeps the damaged line as it was
    assert table.path.read_bytes().endswith(b'{"kind": "op", "key": "\xff\xfe"}\n')


# --------------------------------------------------------------------------- B3: a table that cannot be written


def _refuse_writes(folder: Path, monkeypatch) -> None:
    import builtins
    import errno

    import mobilenas.latency.table as table_module

    def refusing(file, mode="r", *args, **kwargs):
        if Path(file).parent == folder and any(c in mode for c in "wa+"):
            raise OSError(errno.EPERM, "Operation not permitted", str(file))
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(table_module, "open", refusing, raising=False)

    def measuring(*args, **kwargs):
        raise AssertionError("measured before finding that the table cannot be written")

    monkeypatch.setattr(LookupTable, "_measure", measuring)


def test_commands_that_measure_into_a_table_check_first_that_it_can_be_written(tmp_path, space_file, capsys, monkeypatch) -> None:
    table = table_of(tmp_path / "ro.jsonl", [other_arch()], correction=Correction(a=1.0, b=0.1, points=3, fitted=True))
    _refuse_writes(tmp_path, monkeypatch)
    code, _, err = run(["predict", TINY, "--table", str(table.path), "--measure-missing"], capsys)
    one_line_error(code, err, f"latency table {table.path} cannot be written (Operation not permitted), and the entries it lacks are measured into it", "give another --table")
    code, _, err = run(["fastest", "--space", str(space_file), "--num-classes", "10", "--table", str(table.path)], capsys)
    one_line_error(code, err, "cannot be written (Operation not permitted)")


# --------------------------------------------------------------------------- B4: the command that continues


def test_the_build_hint_of_info_names_the_same_table(tmp_path) -> None:
    from mobilenas.latency import make_backend
    from mobilenas.latency.table import build_command

    path = tmp_path / "four threads.jsonl"
    table = LookupTable.create(path, backend=make_backend("torch", threads=4), input_size=48)
    assert build_command(table, "mobilenetv3") == f"nas-latency build --space mobilenetv3 --input-size 48 --backend torch --threads 4 --table {shlex.quote(str(path))}"
    phone = LookupTable.create(tmp_path / "phone.jsonl", backend=CommandBackend("bench {model}", device_name="pixel 7"), input_size=32)
    assert "--input-size 32 --command 'bench {model}' --device-name 'pixel 7' --table" in build_command(phone, "SPACE")


def test_an_interrupted_build_prints_the_command_itself(tmp_path, space_file, capsys, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("mobilenas.latency.build.build_table", interrupted)
    argv = ["build", "--space", str(space_file), "--input-size", "32", "--table", str(tmp_path / "t t.jsonl"), "--repeats", "3", "--quiet"]
    code, _, err = run(argv, capsys)
    assert code == 130 and err.strip().endswith(f"; continue with: nas-latency {shlex.join(argv)}"), err


# --------------------------------------------------------------------------- B5: measure


def test_measure_refuses_absurd_repeats_and_sizes_before_measuring(capsys, monkeypatch) -> None:
    def measuring(*args, **kwargs):
        raise AssertionError("measured")

    monkeypatch.setattr(sys.modules["mobilenas.latency.measure"], "measure", measuring)
    code, _, err = run(["measure", TINY, "--repeats", "99999999999999999999"], capsys)
    one_line_error(code, err, "--repeats", "from 1 to 10000")
    code, _, err = run(["measure", TINY, "--warmup", "1e20"], capsys)
    one_line_error(code, err, "--warmup")
    code, _, err = run(["measure", TINY, "--input-size", "100000"], capsys)
    one_line_error(code, err, "--input-size 100000: the network needs about", "give a smaller --input-size")


@pytest.mark.parametrize(("raised", "code", "said", "not_said"), [
    (KeyboardInterrupt, 130, "nas-latency measure: interrupted; nothing is saved", "completed work is saved"),
    (MemoryError("can't allocate memory: you tried to allocate 120000000000 bytes"), 1, "; a smaller --input-size needs less", "workers"),
])
def test_measure_says_what_fits_it_when_stopped(capsys, monkeypatch, raised, code, said, not_said) -> None:
    def measuring(*args, **kwargs):
        raise raised

    monkeypatch.setattr(sys.modules["mobilenas.latency.measure"], "measure", measuring)
    got, _, err = run(["measure", TINY, "--input-size", "32"], capsys)
    assert got == code and said in err and not_said not in err, err


# --------------------------------------------------------------------------- B6: method mismatch, D2: a new folder


def test_a_build_names_the_options_of_the_tables_method_and_says_it_makes_a_folder(tmp_path, space_file, capsys) -> None:
    path = tmp_path / "new" / "folder" / "t.jsonl"
    base = ["build", "--space", str(space_file), "--num-classes", "10", "--input-size", "32", "--table", str(path), "--correction-samples", "0", "--quiet"]
    code, _, err = run([*base, "--repeats", "1"], capsys)
    assert code == 0 and f"note: the folder {path.parent} does not exist; it is made for the table" in err
    code, _, err = run([*base, "--method", "isolated"], capsys)
    one_line_error(code, err, "was measured with method in-context (1 timed run per entry, 3 warm-up); resume it with --method in-context --repeats 1, or drop --method and --repeats")
    assert "{" not in err


# --------------------------------------------------------------------------- C1, C2, C3, C4


def test_command_output_in_microseconds_is_read_and_a_bare_number_or_seconds_are_not(capsys) -> None:
    from mobilenas.latency.measure import parse_command_output

    assert parse_command_output("avg 1500 us\n") == pytest.approx(1.5)
    assert parse_command_output("median 2.5 ms (1500 us warm-up)\n") == pytest.approx(2.5)  # milliseconds win
    for output in ("2.5\n", "0.0025 s\n", "latency_ms: 1500 us\n"):
        with pytest.raises(ValueError, match="a bare number or seconds are not read"):
            parse_command_output(output)
    code, out, _ = run(["build", "--help"], capsys)
    help_text = " ".join(out.split())
    assert code == 0 and "'latency_ms: 12.3', a number followed by ms or us" in help_text and "a bare number, or seconds, is refused" in help_text


def test_another_devices_table_is_refused_in_command_line_words(tmp_path) -> None:
    table = table_of(tmp_path / "t.jsonl", [tiny_arch()])
    lines = table.path.read_text().splitlines()
    header = json.loads(lines[0])
    header["device"]["cpu_model"] = "Some Other CPU"
    table.path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with pytest.raises(DeviceMismatchError) as raised:
        LookupTable.load(table.path, backend=OnnxRuntimeBackend())
    message = str(raised.value)
    assert "force=True" not in message and "give --force-device to use it anyway" in message
    assert "a table built with --command ... --device-name NAME is that device's, and predicts on any machine" in message
    phone = tmp_path / "phone.jsonl"
    LookupTable.create(phone, backend=CommandBackend("bench {model}", device_name="pixel7"), input_size=SIZE)
    with pytest.raises(DeviceMismatchError, match=r"give the options it was built with \(--command 'bench \{model\}' --device-name pixel7\), or --force-device"):
        LookupTable.load(phone, backend=CommandBackend("bench {model}", device_name="pixel8"))
    lines = phone.read_text().splitlines()
    header = json.loads(lines[0])
    header["device"]["cpu_model"] = "The Laptop The Phone Was On Before"
    phone.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    assert LookupTable.load(phone).device.device_name == "pixel7"  # it predicts on any machine
    with pytest.raises(DeviceMismatchError, match=r"by the same --command and --device-name from another machine: give --force-device to use it$"):
        LookupTable.load(phone, backend=CommandBackend("bench {model}", device_name="pixel7"))


def test_info_lists_the_se_term_of_a_correction(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MOBILENAS_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "tables").mkdir(parents=True)
    table_of(tmp_path / "home" / "tables" / "t.jsonl", [tiny_arch()], correction=Correction(a=3.76, b=-0.623, points=9, fitted=True, se_ms=0.8046))
    code, out, _ = run(["info"], capsys)
    assert code == 0 and "3.760 * sum -0.623 ms +0.805/SE" in out


def test_a_named_devices_default_table_carries_its_name(tmp_path, monkeypatch) -> None:
    from mobilenas.latency import default_table_path

    monkeypatch.setenv("MOBILENAS_HOME", str(tmp_path))
    space, phone = tiny_space(), CommandBackend("bench {model}", device_name="Pixel 7 / lab")
    path = default_table_path(space, phone, SIZE)
    assert "-32px-Pixel_7_lab-command-1t-" in path.name
    unnamed = path.with_name(path.name.replace("Pixel_7_lab-", ""))  # where tables were made before
    unnamed.parent.mkdir(parents=True)
    unnamed.write_text("{}\n")
    assert default_table_path(space, phone, SIZE) == unnamed
    assert "command-1t" in default_table_path(space, CommandBackend("bench {model}"), SIZE).name


# --------------------------------------------------------------------------- D1, D4


def test_predict_says_it_skipped_damaged_lines(tmp_path, capsys) -> None:
    table = table_of(tmp_path / "t.jsonl", [tiny_arch()], correction=Correction(a=1.0, b=0.1, points=3, fitted=True))
    code, _, err = run(["predict", TINY, "--table", str(table.path)], capsys)
    assert code == 0 and "skipped" not in err
    with table.path.open("a") as handle:
        handle.write('{"kind": "op", "key": "torn\n')
    code, out, err = run(["predict", TINY, "--table", str(table.path)], capsys)
    assert code == 0 and "predicted" in out
    assert f"note: skipped 1 damaged line of latency table {table.path}" in err and err.count("\n") == 1


def test_fastest_notes_a_target_that_looks_like_a_units_slip(tmp_path, space_file, capsys) -> None:
    table = table_of(tmp_path / "t.jsonl", space=True, correction=Correction(a=1.0, b=0.1, points=3, fitted=True))
    base = ["fastest", "--space", str(space_file), "--num-classes", "10", "--table", str(table.path)]
    code, out, err = run([*base, "--target-latency", "15s"], capsys)
    assert code == 0 and "constrains nothing" in out
    assert "note: the target, 15000.00 ms, is over 100 times the slowest architecture's" in err and "give the unit ms" in err
    code, _, err = run([*base, "--target-latency", "15ms"], capsys)
    assert code == 0 and "note" not in err
