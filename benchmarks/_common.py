"""What benchmark scripts share (imported as a sibling: ``python benchmarks/x.py``); nothing heavy,
so that a script that only drives subprocesses does not load torch for it."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# The argparse types of the project's commands, for the scripts' options too: a count of 0 or -3
# is refused in one line (exit 2) before any work, not met as a traceback at the end of it.
from mobilenas.cliutil import (
    check_writable_folder,
    image_pixels,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    seed_number,
)
from mobilenas.errors import UsageError

__all__ = [
    "at_least", "check_out", "check_out_folder", "check_report", "check_writable_folder", "command_line", "git_commit", "image_pixels", "nonnegative_float",
    "nonnegative_int", "positive_float", "positive_int", "provenance", "seed_number", "stem_file", "write_report",
]


def at_least(minimum: int, why: str) -> Callable[[str], int]:
    """argparse type: a whole number >= ``minimum``; ``why`` says what needs that many."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too few: {why} needs at least {minimum}")
        return value

    parse.__name__ = f"at_least_{minimum}"  # what argparse names in "invalid ... value"
    return parse


def check_out(parser: argparse.ArgumentParser, *files: str | Path, option: str = "--out") -> None:
    """End the script now, in argparse's one line (exit 2), if one of the ``files`` it writes when it
    is done cannot be written: its folder must exist and take a new file, and the file must not be a
    folder. Call it right after parsing, before the work (an hour's run must not die at its end)."""
    for file in files:
        path = Path(file)
        if path.is_dir():
            parser.error(f"{option}: {path} is a folder, not a file")
        if not path.parent.is_dir():
            what = "is a file, not a folder" if path.parent.exists() else "does not exist (make it first)"
            parser.error(f"{option}: the folder {path.parent} {what}")
        try:
            check_writable_folder(path.parent, option)
        except UsageError as error:
            parser.error(str(error))


def check_report(parser: argparse.ArgumentParser, stem: str | Path, option: str = "--out") -> Path:
    """:func:`check_out` for the STEM.md and STEM.json of :func:`write_report`; returns the stem
    (without a ``.md`` or ``.json`` it was given with)."""
    if Path(stem).is_dir():  # STEM.md beside the folder, not in it: /tmp would have written /tmp.md and /tmp.json
        parser.error(f"{option} {stem}: is a folder; give a file stem (the script writes STEM.md and STEM.json), e.g. {Path(stem) / 'results'}")
    stem = stem_file(Path(stem), "")
    check_out(parser, stem_file(stem, ".md"), stem_file(stem, ".json"), option=option)
    return stem


def check_out_folder(parser: argparse.ArgumentParser, folder: str | Path, option: str = "--out") -> None:
    """As :func:`check_out`, for a script that writes into ``folder`` (made if missing)."""
    try:
        check_writable_folder(folder, f"{option} {folder}")
    except UsageError as error:
        parser.error(str(error))


def command_line(script: str, argv: Sequence[str] | None = None, *, flock: bool = True) -> str:
    """The command that reproduces a results file: ``python benchmarks/SCRIPT`` with the options it
    was actually given (``argv``, or the process's own), shell-quoted; under the shared CPU lock
    unless ``flock`` is False."""
    given = list(sys.argv[1:] if argv is None else argv)
    prefix = "flock /tmp/mobilenas-cpu.lock " if flock else ""
    return f"{prefix}python benchmarks/{Path(script).name} {shlex.join(given)}".rstrip()


def git_commit() -> str | None:
    """The repository's commit (short), with ``+changes`` when tracked files differ from it; None
    outside a git checkout (an unpacked sdist) or without git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def provenance(script: str | None = None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """What a results file records of how it was made: date, the command (see :func:`command_line`;
    ``script`` defaults to the running one), the commit and the versions and machine
    (:func:`mobilenas.runs.environment`)."""
    from mobilenas.runs import environment

    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command_line(script or sys.argv[0], argv),
        "commit": git_commit(),
        "environment": environment(),
    }


def write_report(out: str | Path, summary: dict[str, Any], markdown: str) -> None:
    """Write ``<out>.json`` (the figures, with their :func:`provenance`) and ``<out>.md`` (the
    table), and print the table."""
    stem = str(out)
    Path(stem + ".json").write_text(json.dumps({**summary, "provenance": provenance()}, indent=2) + "\n")
    Path(stem + ".md").write_text(markdown)
    print(markdown)


def stem_file(stem: Path, suffix: str) -> Path:
    """STEM + suffix, the stem kept whole (``strategies_nb201.seeds20-39`` -> ``...seeds20-39.md``;
    ``Path.with_suffix`` would have written ``strategies_nb201.md``); a stem given with its ``.md``,
    ``.json`` or ``.png`` is taken without it."""
    if stem.suffix in (".md", ".json", ".png"):
        stem = stem.with_suffix("")
    return stem.parent / (stem.name + suffix)
