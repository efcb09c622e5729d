from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mobilenas.runs import Journal, RunDir, TimeLimit, atomic_write_json, read_json
from mobilenas.units import (
    counted,
    format_duration,
    format_ms,
    format_time_limit,
    parse_duration_ms,
    parse_time_limit_s,
)


@pytest.mark.parametrize(("text", "ms"), [("15ms", 15.0), ("0.015s", 15.0), ("15", 15.0), ("1500us", 1.5), (" 2.5 ms ", 2.5), (7, 7.0), ("1e1ms", 10.0), ("15MS", 15.0), ("0.015S", 15.0), ("1500US", 1.5), ("2Ms", 2.0), ("1500µs", 1.5), ("1500μs", 1.5), ("1500ΜS", 1.5)])
def test_durations(text, ms: float) -> None:
    assert parse_duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["15m", "fast", "-3ms", "0ms", "15 ms s", "", "ms", "nan"])
def test_unclear_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms(text, what="--target-latency")


@pytest.mark.parametrize("text", ["1e400ms", "1e400", 1e400])
def test_overflowing_durations_say_finite(text: str | float) -> None:
    with pytest.raises(ValueError, match="must be finite"):
        parse_duration_ms(text, what="--target-latency")


@pytest.mark.parametrize("text", ["-3ms", "-.5ms", "-0.015s"])
def test_negative_durations_on_the_command_line_say_positive(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    # argparse alone reads "-3ms" as an unknown option and answers "expected one argument"
    from mobilenas.search.cli import main

    assert main(["--target-latency", text]) == 2
    err = capsys.readouterr().err.strip()
    assert f"a duration must be positive, got '{text}'" in err and len(err.splitlines()) == 1


def test_format_ms() -> None:
    assert format_ms(12.345) == "12.35 ms"
    assert format_ms(0.5123) == "0.512 ms"
    assert format_ms(0.00042) == "0.00042 ms"  # not 0.000 ms
    assert format_ms(0.0) == "0.000 ms"
    assert format_ms(None) == "-"


def test_journal_survives_a_torn_last_line(tmp_path) -> None:
    journal = Journal(tmp_path / "events.jsonl")
    journal.append({"type": "a", "n": 1})
    journal.append({"type": "b", "n": 2})
    with open(journal.path, "a") as handle:
        handle.write('{"type": "c", "n": ')  # a writer killed mid-line
    assert [e["n"] for e in journal.read()] == [1, 2]
    journal.append({"type": "d", "n": 4})  # the next append starts on a fresh line
    assert [e["n"] for e in journal.read()] == [1, 2, 4]
    with open(journal.path, "ab") as handle:  # a damaged block: bytes that are not UTF-8 (it had ended nas-results in a decode error)
        handle.write(b'{"type": "e", "n": \xff\xfe}\n')
    journal.append({"type": "f", "n": 6})
    assert [e["n"] for e in journal.read()] == [1, 2, 4, 6]


def test_run_dir_create_open_and_refuse(tmp_path) -> None:
    run = RunDir.create(tmp_path / "r", {"kind": "search", "config": {"seed": 3}})
    assert run.manifest()["config"] == {"seed": 3}
    assert "torch" in run.manifest()["environment"]
    with pytest.raises(ValueError, match="already holds a run; use --resume"):
        RunDir.create(tmp_path / "r", {"kind": "search"})
    assert RunDir.open(tmp_path / "r", kind="search").manifest()["kind"] == "search"
    with pytest.raises(ValueError, match=r"is a 'search' run, not a 'netadapt' run; continue it with nas-search --resume .*/r, or prune its best with netadapt refine .*/r/best.json$"):
        RunDir.open(tmp_path / "r", kind="netadapt")
    # a file of the run, as a shell completes --resume RUN/<tab>: the run
    (tmp_path / "r" / "best.json").write_text("{}")
    assert RunDir.open(tmp_path / "r" / "best.json", kind="search").root == tmp_path / "r"
    assert RunDir.open(tmp_path / "r" / "manifest.json").root == tmp_path / "r"
    (tmp_path / "loose.json").write_text("{}")
    with pytest.raises(ValueError, match=r"loose\.json is not a directory"):
        RunDir.open(tmp_path / "loose.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a mobilenas run directory"):
        RunDir.open(tmp_path / "empty")


def test_suggested_commands_survive_a_path_with_a_space(tmp_path) -> None:
    """A command the tools suggest is pasted into a shell as it is: a path with a space stays one word."""
    import shlex

    from mobilenas.latency.table import LookupTable
    from mobilenas.train.cli import trained_start_commands

    folder = tmp_path / "my runs" / "r 1"
    RunDir.create(folder, {"kind": "search"})
    best = str(folder / "best.json")
    (folder / "best.json").write_text("{}")
    train, refine = trained_start_commands(best, "my data", "aside", f" --dataset npz --data-dir {shlex.quote(str(tmp_path / 'd 1.npz'))}").split(" (aside), then ")
    assert shlex.split(train) == ["nas-train", best, "--dataset", "npz", "--data-dir", str(tmp_path / "d 1.npz"), "--epochs", "10"]
    words = shlex.split(refine)
    assert words[:3] == ["netadapt", "refine", best] and words[-2:] == ["--weights", str(folder / "best.my_data.pt")]
    with pytest.raises(ValueError, match="already holds a run") as error:
        RunDir.create(folder, {"kind": "search"})
    assert shlex.split(str(error.value).split("use --resume ")[1].split(" to continue it")[0]) == [str(folder)]
    with pytest.raises(FileNotFoundError) as missing:
        LookupTable.load(folder / "my table.jsonl")
    assert shlex.split(str(missing.value).split("--table ")[1]) == [str(folder / "my table.jsonl")]


def test_atomic_json(tmp_path) -> None:
    path = tmp_path / "x" / "a.json"
    atomic_write_json(path, {"a": float("nan"), "b": (1, 2)})
    assert json.loads(path.read_text().replace("NaN", "null")) == {"a": None, "b": [1, 2]}
    assert read_json(path)["b"] == [1, 2]
    assert not list(path.parent.glob("*.tmp"))
    # a name the system allows (up to 255 bytes) is written, though ".NAME.PID.tmp" would not fit
    long = path.with_name("p" * 250 + ".json")
    atomic_write_json(long, {"a": 1})
    assert read_json(long) == {"a": 1} and not list(path.parent.glob(".*.tmp"))


def test_an_output_folder_that_cannot_be_written_fails_before_any_work(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.cliutil import check_writable_folder
    from mobilenas.errors import UsageError
    from mobilenas.search.cli import main as nas_search
    from mobilenas.train.cli import main as nas_train

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    check_writable_folder(tmp_path / "new" / "deeper", "--out x")  # creatable: fine, and nothing created
    assert not (tmp_path / "new").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
    with pytest.raises(UsageError, match="a-file is a file, not a folder"):
        check_writable_folder(blocker / "sub", "--out x")
    # nas-search: one line, exit 2, before the latency table is opened or built (none is named here)
    assert nas_search(["--target-latency", "15ms", "--out", str(blocker), "--samples", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--out {blocker}: {blocker} is a file, not a folder" in err and len(err.splitlines()) == 1
    # nas-train: before the first epoch (it used to train, then fail writing its checkpoint)
    assert nas_train(["mobilenetv2", "--out", str(blocker / "sub"), "--epochs", "1", "--train-size", "32", "--val-size", "32", "--test-size", "32", "--image-size", "32", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a file, not a folder" in err and len(err.splitlines()) == 1
    # a folder option given a file's name (it made a folder called calibration.csv)
    from mobilenas.latency.cli import main as nas_latency

    assert nas_latency(["calibrate", "--space", "mobilenetv3", "--samples", "2", "--out", str(tmp_path / "cal.csv")], prog="nas-latency") == 2
    err = capsys.readouterr().err.strip()
    assert f"--out {tmp_path / 'cal.csv'}: expected a folder (the files are written into it), got a file's name; give a folder, e.g. {tmp_path / 'cal'}" in err
    assert not (tmp_path / "cal.csv").exists()
    (tmp_path / "old.csv").mkdir()  # a folder that already has such a name is a folder all the same
    check_writable_folder(tmp_path / "old.csv", "--out x")


def test_a_failed_atomic_write_names_the_file_asked_for(tmp_path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x.json").mkdir()  # a folder where the file should go: the final rename fails
    with pytest.raises(OSError) as caught:
        atomic_write_json(folder / "x.json", {"a": 1})
    assert caught.value.filename == str(folder / "x.json")
    assert [p.name for p in folder.iterdir()] == ["x.json"]  # no temporary file left behind


def test_output_piped_into_a_reader_that_leaves_early_ends_quietly() -> None:
    """`mobilenas show ARCH --json | head -c 100`: no BrokenPipeError traceback, the SIGPIPE exit code."""
    import subprocess
    import sys

    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from mobilenas.cli import main; sys.exit(main())", "show", "mobilenetv3-small", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the reader is gone before the first byte is written
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141, stderr
    assert stderr == ""


@pytest.mark.parametrize(
    ("module", "argv", "prog"),
    [
        ("mobilenas.latency.cli", ["measure", "mobilenetv3-small", "--runs", "3"], "nas-latency measure"),
        ("mobilenas.netadapt.cli", ["describe", "mobilenetv3-small", "--foo"], "netadapt describe"),
        ("mobilenas.results.cli", ["show", "somewhere", "--bar"], "nas-results show"),
    ],
)
def test_an_unknown_option_is_reported_by_the_subcommand_given_it(module: str, argv: list[str], prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    assert importlib.import_module(module).main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"{prog}: error: unrecognized arguments: {' '.join(argv[2:])} (see {prog} --help)"


def _create_at(root: str, start: float, number: int, results) -> None:  # a child process of the test below
    import time as _time

    _time.sleep(max(0.0, start - _time.time()))
    try:
        RunDir.create(root, {"kind": "search", "creator": number})
        results.put((number, "created"))
    except ValueError as error:
        results.put((number, str(error)))


def test_of_processes_creating_one_run_at_once_exactly_one_wins(tmp_path) -> None:
    import multiprocessing
    import time

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    root = tmp_path / "run"
    start = time.time() + 1.0
    children = [context.Process(target=_create_at, args=(str(root), start, n, results)) for n in range(6)]
    for child in children:
        child.start()
    outcomes = dict(results.get(timeout=60) for _ in children)
    for child in children:
        child.join(timeout=60)
    winners = [n for n, outcome in outcomes.items() if outcome == "created"]
    assert len(winners) == 1, outcomes
    assert all("already holds a run" in outcome for n, outcome in outcomes.items() if n not in winners)
    assert json.loads((root / "manifest.json").read_text())["creator"] == winners[0]
    assert not list(root.glob(".*.tmp"))


def test_sigterm_is_an_orderly_stop_and_the_handler_is_given_back(capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import signal
    import time

    from mobilenas.cliutil import run_main, set_resume_hint

    def work(argv) -> int:
        set_resume_hint("nas-search --resume somewhere")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        return 0

    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    assert run_main(work, [], "nas-search") == 143
    assert time.monotonic() - started < 4
    assert capsys.readouterr().err.strip() == "nas-search: terminated; completed work is saved; continue with: nas-search --resume somewhere"
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize(("raised", "line"), [(KeyboardInterrupt(), "prog: interrupted; completed work is saved"), (ValueError("bad input"), "prog: error: bad input")])
def test_the_last_line_of_a_stopped_command_starts_a_line_of_its_own(raised: BaseException, line: str, capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.cliutil import progress, run_main

    def work(argv) -> int:
        bar = progress(total=10, desc="epoch 3/3")
        bar.update(3)
        raise raised  # a progress bar left open, as an interrupted loop leaves it

    assert run_main(work, [], "prog") in (2, 130)
    err = capsys.readouterr().err
    assert f"\n{line}" in err and err.endswith(f"{line}\n")  # not appended to the bar, and the bar not drawn again after it


def test_a_command_that_keeps_less_says_what_an_interrupt_keeps(capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.cliutil import run_main, set_interrupt_note

    def work(argv) -> int:
        set_interrupt_note("the timings count only all together: run it again")
        raise KeyboardInterrupt

    assert run_main(work, [], "prog") == 130
    assert capsys.readouterr().err.strip() == "prog: interrupted; the timings count only all together: run it again"
    # the next command in the same process says the usual
    assert run_main(lambda argv: (_ for _ in ()).throw(KeyboardInterrupt()), [], "prog") == 130
    assert capsys.readouterr().err.strip() == "prog: interrupted; completed work is saved"


def test_errors_and_interrupts_of_a_subcommand_start_with_its_full_name(capsys: pytest.CaptureFixture[str]) -> None:
    """As argparse's own errors about a subcommand's arguments do ('netadapt refine: error: ...')."""
    from mobilenas.cliutil import run_main, set_command_name
    from mobilenas.errors import UsageError

    def work(raised: BaseException):
        def main(argv) -> int:
            set_command_name("netadapt refine")
            raise raised
        return main

    assert run_main(work(UsageError("drop --budget-ratio")), [], "netadapt") == 2
    assert capsys.readouterr().err.strip() == "netadapt refine: error: drop --budget-ratio"
    assert run_main(work(KeyboardInterrupt()), [], "netadapt") == 130
    assert capsys.readouterr().err.strip() == "netadapt refine: interrupted; completed work is saved"
    assert run_main(lambda argv: (_ for _ in ()).throw(UsageError("no run")), [], "netadapt") == 2  # named before the subcommand is known
    assert capsys.readouterr().err.strip() == "netadapt: error: no run"


def test_the_systems_refusals_are_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import errno

    from mobilenas.cliutil import run_main, set_resume_hint

    monkeypatch.delenv("MOBILENAS_DEBUG", raising=False)

    def too_long(argv) -> int:
        from pathlib import Path

        return Path("y" * 300).exists()  # what --space, --dataset or RUN of 300 characters did

    assert run_main(too_long, [], "nas-search") == 2
    err = capsys.readouterr().err
    assert err.startswith("nas-search: error: File name too long: yyyy") and "..." in err and len(err) < 200 and err.count("\n") == 1

    def disk_full(argv) -> int:
        set_resume_hint("nas-search --resume RUN")
        raise OSError(errno.ENOSPC, "No space left on device", "RUN/events.jsonl")

    assert run_main(disk_full, [], "nas-search") == 1  # not the user's input: not a usage error
    assert capsys.readouterr().err.strip() == "nas-search: error: No space left on device: RUN/events.jsonl; completed work is saved; continue with: nas-search --resume RUN"

    def read_only(argv) -> int:  # a folder on a read-only file system: the user's choice, as a PermissionError is
        set_resume_hint("the same nas-latency build command")
        raise OSError(errno.EROFS, "Read-only file system", "ro/x.jsonl")

    assert run_main(read_only, [], "nas-latency") == 2
    assert capsys.readouterr().err.strip() == "nas-latency: error: Read-only file system: ro/x.jsonl"  # no "continue with" that fails again

    def file_in_the_way(argv) -> int:  # --table afile/t.jsonl: said "File exists: afile"
        (tmp_path / "afile").write_text("")
        (tmp_path / "afile" / "t.jsonl").parent.mkdir(parents=True, exist_ok=True)
        return 0

    assert run_main(file_in_the_way, [], "nas-latency") == 2
    assert capsys.readouterr().err.strip() == f"nas-latency: error: {tmp_path / 'afile'} is a file, not a folder: nothing can be made inside it; give another path"

    def dangling_link(argv) -> int:
        (tmp_path / "dangling").symlink_to(tmp_path / "nothing-there")
        (tmp_path / "dangling" / "x.png").parent.mkdir(parents=True, exist_ok=True)
        return 0

    assert run_main(dangling_link, [], "nas-results plot") == 2
    assert capsys.readouterr().err.strip() == f"nas-results plot: error: {tmp_path / 'dangling'} is a link to nothing: nothing can be made inside it; give another path"

    def printing(argv) -> int:
        set_resume_hint("nas-search --resume RUN")
        print("the summary")
        return 0

    # `> /dev/full`: had been "No space left on device", as if the run's disk were full
    with open("/dev/full", "w", buffering=1) as full, monkeypatch.context() as patched:
        patched.setattr(sys, "stdout", full)
        assert run_main(printing, [], "nas-search") == 1
    assert capsys.readouterr().err.strip() == ("nas-search: error: writing the output failed: No space left on device (standard output: its file or disk);"
                                               " completed work is saved; continue with: nas-search --resume RUN")

    def benchmark_pipe_closed(argv) -> int:  # stdout is fine: another pipe broke (a --command's, Ray's)
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    assert run_main(benchmark_pipe_closed, [], "nas-latency") == 1
    assert capsys.readouterr().err.strip() == "nas-latency: error: Broken pipe"  # a traceback, before


def test_running_out_of_memory_is_one_line_and_other_runtime_errors_stay_tracebacks(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from mobilenas.cliutil import run_main, set_resume_hint

    monkeypatch.delenv("MOBILENAS_DEBUG", raising=False)

    def huge_input(argv) -> int:  # what nas-latency measure --input-size 100000 met: a traceback
        set_resume_hint("nas-search --resume RUN")
        torch.empty(1 << 50, dtype=torch.uint8)  # a petabyte: refused by torch's CPU allocator
        return 0

    assert run_main(huge_input, [], "nas-latency") == 1
    err = capsys.readouterr().err
    assert err.startswith("nas-latency: error: out of memory (can't allocate memory: you tried to allocate 1125899906842624 bytes")
    assert err.strip().endswith("; completed work is saved; continue with: nas-search --resume RUN") and err.count("\n") == 1
    assert run_main(lambda argv: len(bytearray(1 << 60)), [], "prog") == 1  # Python's MemoryError
    assert capsys.readouterr().err.strip() == "prog: error: out of memory (MemoryError); a smaller input, batch or fewer workers need less"

    def bug(argv) -> int:
        raise RuntimeError("a bug of ours")

    with pytest.raises(RuntimeError, match="a bug of ours"):
        run_main(bug, [], "prog")


def test_a_home_that_cannot_be_made_is_named_with_the_way_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """MOBILENAS_HOME (or ~/.cache) where no folder can be made: one line that says what the folder
    is for and how to choose another (it said only 'No such file or directory: /proc/foo')."""
    import errno

    from mobilenas.cliutil import run_main
    from mobilenas.latency.cli import main as nas_latency
    from mobilenas.search.cli import main as nas_search

    monkeypatch.delenv("MOBILENAS_DEBUG", raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MOBILENAS_HOME", str(blocker / "home"))
    way_out = f"mobilenas keeps its latency tables in {blocker / 'home'} ($MOBILENAS_HOME): set MOBILENAS_HOME to a folder you can write, or give --table PATH"
    assert nas_latency(["predict", "mobilenetv3-small", "--space", "mobilenetv3", "--measure-missing"]) == 2  # (without it: refused before making anything)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nas-latency predict: error: Not a directory: ") and err.strip().endswith(way_out), err
    out = tmp_path / "run"
    assert nas_search(["--target-latency", "15ms", "--samples", "12", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.strip().endswith(way_out) and not out.exists(), err
    # a folder on the way to the home that cannot be made is named the same way; others are not
    monkeypatch.setenv("MOBILENAS_HOME", str(tmp_path / "missing" / "home"))

    def refused(path: str):
        def main(argv) -> int:
            raise OSError(errno.EACCES, "Permission denied", path)
        return main

    assert run_main(refused(str(tmp_path / "missing")), [], "nas-search") == 2
    assert capsys.readouterr().err.strip().endswith(f"in {tmp_path / 'missing' / 'home'} ($MOBILENAS_HOME): set MOBILENAS_HOME to a folder you can write, or give --table PATH")
    assert run_main(refused(str(tmp_path)), [], "nas-search") == 2  # exists: not on the way to the home
    assert capsys.readouterr().err.strip() == f"nas-search: error: Permission denied: {tmp_path}"


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90.0), ("2h", 7200.0), ("30min", 1800.0), ("30m", 1800.0), (" 1.5 H ", 5400.0), ("45sec", 45.0), ("2hours", 7200.0), ("1d", 86400.0), ("none", None), ("None", None)])
def test_time_limits(text: str, seconds: float | None) -> None:
    assert parse_time_limit_s(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("90", "give it a unit"),  # seconds or minutes? said, not guessed
        ("500ms", "write it like 90s, 30min or 2h"),
        ("0s", "must be positive"),
        ("-1h", "must be positive"),
        ("1e400h", "must be finite"),
        ("soon", "cannot read 'soon' as a time limit"),
    ],
)
def test_unclear_time_limits_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_time_limit_s(text)


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0 s"), (40, "40 s"), (89, "89 s"), (90, "2 min"), (720, "12 min"), (5399, "90 min"), (5400, "1.5 h"), (11_200, "3.1 h"), (float("nan"), "-"), (-1, "-")])
def test_durations_for_people(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["90s", "40s", "1.5min", "30min", "1.5h", "8h", "1d", "2.5s"])
def test_a_time_limit_is_said_back_exactly(text: str) -> None:
    said = format_time_limit(parse_time_limit_s(text))
    assert parse_time_limit_s(said.replace(" ", "")) == parse_time_limit_s(text)  # not rounded, as an estimate is
    assert format_time_limit(90) == "90 s" and format_time_limit(5400) == "90 min" and format_time_limit(8 * 3600) == "8 h"


def test_counts_agree_with_their_nouns() -> None:
    assert [counted(n, "proposal") for n in (0, 1, 2)] == ["0 proposals", "1 proposal", "2 proposals"]
    assert counted(1, "entry", "entries") == "1 entry" and counted(3, "entry", "entries") == "3 entries"


def test_the_run_a_path_belongs_to(tmp_path: Path) -> None:
    from mobilenas.netadapt.cli import proxy_training
    from mobilenas.runs import run_of
    from mobilenas.space.references import mobilenetv3_large

    long = mobilenetv3_large().to_notation()  # 288 characters: too long for a file name
    assert len(long) > 255 and run_of(long) is None and proxy_training(long) is None  # OSError, before
    assert run_of("mobilenetv2") is None and proxy_training("mobilenetv2") is None
    (tmp_path / "best.json").write_text(json.dumps({"weights": "w.pt", "info": {"steps": 20}}))
    (tmp_path / "manifest.json").write_text("[1, 2]")
    assert run_of(tmp_path) is None and proxy_training(str(tmp_path)) is None  # a manifest that is no object: AttributeError, before
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "search", "proxy": {"batch_size": 16}}))
    assert run_of(tmp_path / "best.json") == run_of(tmp_path) == (tmp_path, {"kind": "search", "proxy": {"batch_size": 16}})
    assert proxy_training(str(tmp_path)) == proxy_training(str(tmp_path / "best.json")) == (20, 16)
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "netadapt"}))
    assert run_of(tmp_path) is not None and proxy_training(str(tmp_path)) is None


def test_a_run_probed_at_that_moment_is_still_claimed(tmp_path: Path) -> None:
    # nas-results show probes the run's lock (RunDir.holder: a shared lock held for an instant); a
    # --resume starting just then used to fail with "in use by another process"
    import fcntl
    import os
    import threading

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    (run.root / ".lock").write_text("")
    probe = open(run.root / ".lock")  # noqa: SIM115 (closed by the timer)
    fcntl.flock(probe.fileno(), fcntl.LOCK_SH)
    timer = threading.Timer(0.08, probe.close)  # closing releases it
    timer.start()
    try:
        with run.claim():
            assert run.holder() == os.getpid()
    finally:
        timer.join()
    assert run.holder() is None


def test_a_misspelt_option_command_or_choice_gets_the_closest_one(capsys: pytest.CaptureFixture[str]) -> None:
    from mobilenas.cli import main as mobilenas
    from mobilenas.latency.cli import main as nas_latency
    from mobilenas.search.cli import main as nas_search

    cases = [
        (nas_search, ["--target-latncy", "15ms"], "unrecognized arguments: --target-latncy 15ms; did you mean --target-latency? (see nas-search --help)"),
        (nas_search, ["--target-latency", "15ms", "--stratgy=ppo"], "did you mean --strategy?"),
        (nas_search, ["--target-latency", "15ms", "--reward", "sfot"], "invalid choice: 'sfot' (choose from"),
        (nas_search, ["--target-latency", "15ms", "--reward", "sfot"], "; did you mean 'soft'?"),
        (nas_latency, ["biuld"], "; did you mean 'build'?"),
        (mobilenas, ["serach"], "unknown command 'serach' (did you mean 'search'?); choose one of"),
        (nas_search, ["--target-latency", "15ms", "--space", "mobilenet3"], "unknown search space 'mobilenet3' (did you mean 'mobilenetv3'?); choose one of"),
        (nas_search, ["--target-latency", "15ms", "--strategy", "evolutoin"], "unknown strategy 'evolutoin' (did you mean 'evolution'?): choose one of"),
        (mobilenas, ["show", "mobilenetv3-smal@0.75"], "nor an existing JSON file (did you mean 'mobilenetv3-small'?)"),
        (nas_search, ["--target-latency", "15ms", "--dataset", "cifar11"], "unknown data set 'cifar11' (did you mean 'cifar10'?): choose one of"),
        # in other case; and with --data-dir, a kind mistyped (it had been taken for a path: "give either a data set kind ... or a path")
        (nas_search, ["--target-latency", "15ms", "--dataset", "CIFAR10"], "unknown data set 'CIFAR10' (did you mean 'cifar10'?): choose one of"),
        (nas_search, ["--target-latency", "15ms", "--dataset", "cifar100", "--data-dir", "."], "unknown data set 'cifar100' (did you mean 'cifar10'?): with --data-dir, give the kind"),
        (nas_search, ["--target-latency", "15ms", "--strategy-option", "learning_rat=0.1"], "ppo.learning_rat: unknown option (did you mean 'learning_rate'?) (known:"),
        # no abbreviations: --device had been taken for --device-name, --samp for --samples
        (nas_search, ["--target-latency", "15ms", "--device", "cuda"], "nas-search's proxy trainings run on the CPU (nas-train and netadapt refine take --device cuda)"),
        (nas_search, ["--target-latency", "15ms", "--samp", "3"], "unrecognized arguments: --samp 3; did you mean --samples?"),
        # --threads is training threads in nas-train and netadapt: here, say which
        (nas_search, ["--target-latency", "15ms", "--threads", "2"], "say which threads: --latency-threads N (the latency measurements) or --cpus-per-trial N"),
        (nas_search, ["--target-latency", "15", "ms"], "unrecognized arguments: ms; write a duration as one word, like 15ms or 0.015s (not 15 ms)"),
        # an abbreviation, once accepted, names the one option it begins (it had got --help, --reward or nothing)
        (nas_search, ["--target", "15ms"], "unrecognized arguments: --target 15ms; did you mean --target-latency?"),
        (nas_search, ["--target-latency", "15ms", "--time", "5m"], "did you mean --time-limit?"),
        (nas_search, ["--target-latency", "15ms", "--thread", "2"], "say which threads: --latency-threads N"),
    ]
    for main, argv, fragment in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1, err
    assert nas_search(["--target-latency", "15ms", "--frobnicate", "1"]) == 2  # nothing close: no guess
    assert "did you mean" not in capsys.readouterr().err
    assert mobilenas(["help", "search"]) == 0 and "usage: mobilenas search" in capsys.readouterr().out
    # as the other commands: an unknown name is an error (it had printed the usage with exit 0),
    # and so is no command at all (the usage, exit 2, as nas-latency or netadapt alone)
    assert mobilenas(["help", "serach"]) == 2 and "unknown command 'serach' (did you mean 'search'?)" in capsys.readouterr().err
    assert mobilenas(["--versoin"]) == 2 and "unknown option '--versoin' (did you mean '--version'?)" in capsys.readouterr().err
    assert mobilenas([]) == 2 and "usage: mobilenas COMMAND" in capsys.readouterr().out


def test_a_time_limit_passes_once_and_stays_passed() -> None:
    now = [10.0]
    told: list[float] = []
    limit = TimeLimit(5.0, since=8.0, clock=lambda: now[0])  # counted from 8: passes at 13
    assert not limit.reached(lambda: told.append(now[0])) and limit.seconds_left() == 3.0 and limit.left_text() == "3 s"
    now[0] = 13.0
    assert limit.reached(lambda: told.append(now[0])) and limit.seconds_left() == 0.0 and limit.left_text() == "0 (finishing)"
    now[0] = 1.0  # a clock read again later: once passed, it stays passed, and is told once
    assert limit.reached(lambda: told.append(now[0])) and told == [13.0]
    assert not TimeLimit().reached() and TimeLimit().seconds_left() is None and TimeLimit().left_text() is None and TimeLimit().ends_at() is None
    hour = TimeLimit(3600.0)  # the time of day it passes at, as the commands announce it
    assert hour.ends_at() == time.strftime("%H:%M:%S", time.localtime(time.time() + 3600)) or hour.ends_at() == time.strftime("%H:%M:%S", time.localtime(time.time() + 3599))


def test_a_progress_bar_shows_on_a_terminal_that_reports_no_size() -> None:
    # A pseudo-terminal nobody sized (0 x 0: some containers and CI runners) made tqdm hide every
    # bar: the commands ran for minutes with no sign of progress.
    import os
    import pty
    import subprocess
    import sys

    script = "from mobilenas.cliutil import progress\nbar = progress(total=3, desc='work')\nfor _ in range(3):\n    bar.update(1)\nbar.close()\n"
    leader, follower = pty.openpty()  # a fresh pseudo-terminal is 0 x 0
    assert os.get_terminal_size(follower).columns == 0
    try:
        subprocess.run([sys.executable, "-c", script], stdin=follower, stdout=follower, stderr=follower, timeout=60, check=True)
        os.close(follower)
        written = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other end is closed: all is read
                break
            if not chunk:
                break
            written += chunk
    finally:
        os.close(leader)
    assert b"work: 100%" in written and b"3/3" in written, written


def test_json_output_keeps_standard_output_for_its_object() -> None:
    """What a library writes to file descriptor 1 while a --json command works (Ray's message about a
    worker that died, from a thread or from C) goes to stderr; the JSON alone is on stdout."""
    code = (
        "import os, sys, threading\n"
        "from mobilenas.cliutil import print_json, stdout_kept_for_json\n"
        "with stdout_kept_for_json(True):\n"
        "    os.write(1, b'(raylet) A worker died\\n')\n"
        "    thread = threading.Thread(target=print, args=('from a thread',)); thread.start(); thread.join()\n"
        "print_json({'ok': 1})\n"
        "with stdout_kept_for_json(False):\n"
        "    pass\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ok": 1}
    assert "(raylet) A worker died" in done.stderr and "from a thread" in done.stderr


def test_a_command_started_without_stdout_or_stderr_runs_without_a_traceback(tmp_path: Path) -> None:
    """`nas-results show RUN >&-` had ended in "'NoneType' object has no attribute 'flush'", and a
    search started with 2>&- had failed at its first progress bar, writing nothing."""
    import os
    import subprocess

    env = {**os.environ, "MOBILENAS_HOME": str(tmp_path / "home")}
    code = "import sys; from mobilenas.latency.cli import main; sys.exit(main(['info']))"
    for closed in (1, 2):
        done = subprocess.run([sys.executable, "-c", code], preexec_fn=lambda fd=closed: os.close(fd),
                              stdout=None if closed == 1 else subprocess.PIPE, stderr=None if closed == 2 else subprocess.PIPE, env=env, timeout=120)
        said = (done.stderr if closed == 1 else done.stdout) or b""
        assert done.returncode == 0 and b"Traceback" not in said, (closed, said)


def test_a_progress_bar_eta_stops_at_the_time_limit() -> None:
    """At 1 s a step, 90 steps are left: the ETA says 01:30, unless a --time-limit stops new work
    sooner, when it says the time to the limit (it had promised the 90 s regardless)."""
    import io

    from mobilenas.cliutil import progress

    left: list[float | None] = [5.0]
    bar = progress(total=100, desc="search", seconds_left=lambda: left[0])
    bar.fp = io.StringIO()  # (tqdm's own writer; the meter is read, not drawn)
    bar.start_t -= 10.0
    bar.n = 10
    assert "<00:05 time limit," in str(bar)
    left[0] = 1000.0  # the limit is later than the work's end
    assert "<01:30," in str(bar) and "time limit" not in str(bar)
    left[0] = None  # no limit
    assert "<01:30," in str(bar)
    bar.close()
    plain = progress(total=100, desc="search")
    plain.start_t -= 10.0
    plain.n = 10
    assert "<01:30," in str(plain)
    plain.close()


def test_work_done_before_a_resume_is_counted_but_not_in_the_rate() -> None:
    """A resumed search's bar is made before its done count is known; that count had been taken
    as done in the first redraw's step: 8 of 10 done before, 1 more in 20 s showed 0.45 a second."""
    from mobilenas.cliutil import count_done_before, progress

    bar = progress(total=10, unit="arch")
    clock = [1000.0]
    bar._time = lambda: clock[0]
    bar.start_t = bar.last_print_t = clock[0]
    bar.mininterval = bar.miniters = 0
    count_done_before(bar, 8)
    clock[0] += 20.0
    bar.update(1)
    assert bar.n == 9 and bar.format_dict["rate"] == pytest.approx(1 / 20)
    bar.close()


def test_a_run_in_a_folder_that_cannot_be_written_is_refused_in_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resuming a run on a read-only copy or mount said only "Read-only file system: RUN/.lock"."""
    import builtins
    import errno

    run = RunDir.create(tmp_path / "run", {"kind": "search"})
    opened = builtins.open

    def read_only(file, mode="r", *args, **kwargs):  # what a read-only mount answers (root ignores permission bits)
        if str(file).endswith(".lock") and mode != "r":
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return opened(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    with pytest.raises(ValueError, match=rf"^cannot write in {run.root} \(Read-only file system\): a run goes on in its own folder; copy it somewhere writable"), run.claim():
        pass
    monkeypatch.undo()
    with run.claim():  # writable again: claimed as before, this process named in the lock
        assert (run.root / ".lock").read_text().strip() == str(os.getpid())
