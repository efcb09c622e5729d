"""Shared command-line plumbing: one-line errors with exit code 2, ``--json`` output, progress.

Every entry point of the project (``nas-search``, ``netadapt``, ``nas-latency``, ...) builds its
parser from :class:`ArgumentParser` and runs through :func:`run_main`, so bad input always ends
in one line on stderr naming what was wrong, never in a traceback. Set ``MOBILENAS_DEBUG=1`` to
see the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import re
import signal
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from mobilenas.errors import FolderGone, SpecError, UsageError, closest

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process ended by SIGPIPE
EXIT_TERMINATED = 143  # ... and by SIGTERM


class KeepLinesFormatter(argparse.HelpFormatter):
    """Descriptions and epilogs wrapped to the terminal, except those written with line breaks
    (examples), which are kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def examples(*lines: str) -> str:
    """An ``examples:`` epilog of command lines (a trailing ``# comment`` stays on its line)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` with a one-line error message that points at ``--help``.

    A value that starts with a minus and a digit (``--target-latency -5ms``) is read as a value,
    not as an unknown option, so it gets its own error ("must be positive") instead of argparse's
    "expected one argument".
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: nas-search --device cuda had been taken for --device-name, and a
        # command's options may grow (an abbreviation that works today is ambiguous tomorrow).
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\.?\d")
        #: what to say of an option this command does not have but a user may well type (an option
        #: of another command that means something else here)
        self.unknown_option_hints: dict[str, str] = {}

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_usage(self) -> str:
        _name_values(self)
        return super().format_usage()

    def format_help(self) -> str:
        _name_values(self)
        return super().format_help()

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """As argparse's, but an unknown option is reported by the subcommand that was given it,
        with the closest option it has (``--target-latncy``: did you mean --target-latency?); and
        ``--version`` anywhere, a subcommand's options included, prints the version (a
        subcommand's parser had refused it, or first asked for its required options)."""
        tokens = list(sys.argv[1:] if args is None else args)
        if "--version" in (tokens[: tokens.index("--")] if "--" in tokens else tokens):
            from mobilenas import __version__

            print(f"mobilenas {__version__}")  # on stdout, as argparse's version action
            self.exit(0)
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parser: argparse.ArgumentParser = self
            while (sub := _chosen_subcommand(parser, parsed)) is not None:
                parser = sub
            message = f"unrecognized arguments: {' '.join(extras)}"
            unknown = next((extra.split("=", 1)[0] for extra in extras if extra.startswith("--")), None)
            hints = getattr(parser, "unknown_option_hints", {})
            hinted = next((name for name in hints if unknown and (unknown == name or (len(unknown) > 3 and name.startswith(unknown)))), None)
            hinted = hinted or (closest(unknown, list(hints)) if unknown else None)
            if hinted:
                parser.error(f"{message}; {hints[hinted]}")
            if unknown is None and extras[0].lower() in _UNITS:  # --target-latency 15 ms: the unit came apart
                parser.error(f"{message}; write a duration as one word, like 15ms or 0.015s (not 15 ms)")
            options = [option for action in parser._actions for option in action.option_strings if option.startswith("--")]
            # an abbreviation (refused: see __init__) names the option it begins, where only one does
            begun = [option for option in options if unknown and len(unknown) > 3 and option.startswith(unknown)]
            close = begun[0] if len(begun) == 1 else closest(unknown, options) if unknown else None
            parser.error(message + (f"; did you mean {close}?" if close else ""))
        return parsed

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        """As argparse's, but an empty name given to an option that takes a folder or a file
        (``--out ""``, an unset shell variable) is refused: it had silently meant the default."""
        if arg_string == "" and action.option_strings and action.metavar in _PATH_METAVARS:
            what = "a folder" if action.metavar == "DIR" else "a file"
            raise argparse.ArgumentError(action, f"expected {what}, got an empty name (leave the option out for the default)")
        return super()._get_value(action, arg_string)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """As argparse's, with the closest choice for a misspelt one (a subcommand, --reward ...)."""
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as error:
            close = closest(value, [str(choice) for choice in action.choices or ()]) if isinstance(value, str) else None
            if close is None:
                raise
            raise argparse.ArgumentError(action, f"{error.message}; did you mean {close!r}?") from None




#: the value names (metavars) of the options that take a folder or a file's name
_PATH_METAVARS = frozenset({"DIR", "FILE", "PATH", "RUN", "PNG", "CSV", "TABLE"})


def _name_values(parser: argparse.ArgumentParser) -> None:
    """Give an option whose value is a count ``N`` and a duration ``DURATION`` in --help, where it
    names none itself (argparse would show its destination: ``--epochs EPOCHS``)."""
    named: dict[object, str] = {positive_int: "N", nonnegative_int: "N", seed_number: "N", image_pixels: "PX", count_or_fraction: "N", duration_ms: "DURATION"}
    for action in parser._actions:
        if action.option_strings and action.metavar is None and action.nargs is None and action.choices is None:
            name = named.get(action.type)
            if name is not None:
                action.metavar = name


#: Units a duration may be written in, which a shell splits off when typed apart ("15 ms").
_UNITS = ("ms", "s", "us", "µs", "sec", "seconds", "msec", "min", "m", "h")


def _chosen_subcommand(parser: argparse.ArgumentParser, parsed: argparse.Namespace) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            name = getattr(parsed, action.dest, None) if action.dest != argparse.SUPPRESS else None
            chosen = action.choices.get(name) if isinstance(name, str) else None
            return chosen if isinstance(chosen, argparse.ArgumentParser) else None
    return None


_resume_hint: list[str] = []  # the command that continues the work in progress, once there is some
_open_bars: weakref.WeakSet[Any] = weakref.WeakSet()  # progress bars not yet closed (closed when a command stops)


def resume_hint() -> str | None:
    """The command that continues the work in progress (see :func:`set_resume_hint`), if any."""
    return _resume_hint[0] if _resume_hint else None


def set_resume_hint(command: str) -> None:
    """Name the command that continues this work; Ctrl-C's message then says it."""
    _resume_hint[:] = [command]


_interrupt_note: list[str] = []  # what an interrupt keeps, where "completed work is saved" says too little
_command_name: list[str] = []  # the subcommand's full name (``netadapt refine``), once it is known


def missing_command(parser: argparse.ArgumentParser, prog: str) -> UsageError:
    """The usage error for ``prog`` given without its subcommand (``nas-latency`` alone), naming
    them: raise it (it had printed the whole help on stdout and exited 2 without a word on stderr)."""
    choices = next((list(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction) and a.choices), [])
    return UsageError(f"give a command: {', '.join(choices)} (see {prog} --help)")


def set_command_name(name: str) -> None:
    """Name the subcommand being run (``netadapt refine``): errors and interrupts then start with it,
    as argparse's own errors about that subcommand's arguments do."""
    _command_name[:] = [name]


_memory_hint: list[str] = []  # what needs less memory, where "a smaller input, batch or fewer workers" names options the command lacks


def set_memory_hint(hint: str) -> None:
    """Say what would need less memory when this command runs out of it, instead of "a smaller
    input, batch or fewer workers need less" (for a command without some of those options)."""
    _memory_hint[:] = [hint]


def set_interrupt_note(note: str) -> None:
    """Say what Ctrl-C keeps of this command's work, instead of "completed work is saved" (for work
    that counts only all together, such as interleaved timings)."""
    _interrupt_note[:] = [note]


def _raised_writing_stdout(error: OSError) -> bool:
    """Whether ``error``, a full disk naming no file (our own files are named in their errors),
    is standard output's: it goes to /dev/full, or to a file system with no space left."""
    if error.filename is not None or error.errno not in (errno.ENOSPC, errno.EDQUOT) or sys.stdout is None:
        return False
    try:
        fd = sys.stdout.fileno()
        if os.fstat(fd).st_rdev == os.makedev(1, 7):  # /dev/full
            return True
        return os.fstatvfs(fd).f_bavail == 0
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor, or closed
        return False


def _stdout_to_devnull() -> None:
    """Point stdout's descriptor at /dev/null (its buffer is then written there, at exit too)."""
    try:
        target = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, target)
    os.close(null)


def _reopen_closed_standard_streams() -> None:
    """Point a standard stream the command was started without (``>&-``, ``2>&-``) at /dev/null.

    Python leaves ``sys.stdout`` None then (every print and flush of ours failed with a traceback),
    and the file opened next would take the closed descriptor: a journal or a table on fd 1, where
    a child process (a Ray worker, a --command) writes what it prints.
    """
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:  # closed: the lowest free descriptor is this one
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 (the interpreter's own stream, for its life)


def run_main(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None, prog: str) -> int:
    """Run ``main(argv)`` and turn user errors into one line on stderr plus exit code 2."""
    _reopen_closed_standard_streams()
    _resume_hint.clear()
    _interrupt_note.clear()
    _memory_hint.clear()
    _command_name.clear()
    _terminated.clear()
    previous = _stop_on_sigterm()
    try:
        code = int(main(argv) or 0)
        sys.stdout.flush()  # a reader that left early is met here, not in the interpreter's last flush
        return code
    except BrokenPipeError as error:
        if not _stdout_reader_gone():  # some other pipe (a benchmark command's, Ray's): a real error
            return _system_error(_said_as(prog), error)
        # `nas-results show RUN --json | head`: the reader has what it wanted; stop quietly, and
        # point stdout at /dev/null so that the interpreter's final flush does not complain either
        _stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    except SystemExit as exit_:  # argparse's usage errors and --help, when called in-process
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through _raise_terminated
        _close_progress_bars()
        hint = f"; continue with: {_resume_hint[0]}" if _resume_hint else ""
        terminated = bool(_terminated)
        kept = _interrupt_note[0] if _interrupt_note else "completed work is saved"
        print(f"{_said_as(prog)}: {'terminated' if terminated else 'interrupted'}; {kept}{hint}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except (SpecError, UsageError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as error:
        if os.environ.get("MOBILENAS_DEBUG"):
            raise
        _close_progress_bars()
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, FileExistsError) and error.filename and _raised_by_mkdir(error):
            name = os.fsdecode(error.filename)
            what = "a link to nothing" if os.path.islink(name) and not os.path.exists(name) else "a file, not a folder"
            message = f"{name} is {what}: nothing can be made inside it; give another path"
        elif isinstance(error, OSError) and error.strerror and error.filename:
            message = _os_message(error)  # not "[Errno 2] ...: '/path'"
        elif isinstance(error, OSError) and error.filename and str(error.filename) not in message:
            message = f"{message}: {error.filename}"
        if isinstance(error, OSError):
            message += _home_hint(error)
        print(f"{_said_as(prog)}: error: {message}", file=sys.stderr)
        return 1 if isinstance(error, FolderGone) else EXIT_USAGE
    except OSError as error:  # the system refused: a name too long, a full disk, an I/O error
        return _system_error(_said_as(prog), error)
    except (MemoryError, RuntimeError) as error:  # torch's allocators raise RuntimeError
        if not out_of_memory(error) or os.environ.get("MOBILENAS_DEBUG"):
            raise
        _close_progress_bars()
        hint = f"; completed work is saved; continue with: {_resume_hint[0]}" if _resume_hint else ""
        less = _memory_hint[0] if _memory_hint else "a smaller input, batch or fewer workers need less"
        print(f"{_said_as(prog)}: error: out of memory ({_memory_detail(error)}); {less}{hint}", file=sys.stderr)
        return 1
    finally:
        if previous is not _NOT_INSTALLED:  # None: a handler not set from Python; the default stands for it
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _raised_by_mkdir(error: BaseException) -> bool:
    """Whether ``error`` came from making a folder (``Path.mkdir``, ``os.makedirs``): a file stands
    where one of the folders of a path was to be (``--table afile/t.jsonl``)."""
    import traceback

    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].name in ("mkdir", "makedirs")


def _said_as(prog: str) -> str:
    """What an error or an interrupt starts with: the subcommand once named (set_command_name)."""
    return _command_name[0] if _command_name else prog


_OUT_OF_MEMORY = ("can't allocate memory", "out of memory", "failed to allocate memory", "bad_alloc", "unable to allocate")


def out_of_memory(error: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, torch's CPU and CUDA allocators' RuntimeErrors."""
    return isinstance(error, MemoryError) or any(marker in str(error).lower() for marker in _OUT_OF_MEMORY)


def _memory_detail(error: BaseException) -> str:
    """What the allocator said, from its 'can't allocate memory' on (not torch's 'enforce fail at ...')."""
    text = (str(error).strip().splitlines() or [""])[0]
    lower = text.lower()
    starts = [lower.find(marker) for marker in _OUT_OF_MEMORY if marker in lower]
    text = text[min(starts):] if starts else text
    text = text if len(text) <= 160 else text[:157] + "..."
    return text or type(error).__name__


def _system_error(prog: str, error: OSError) -> int:
    """One line for an error the system raised (with the resume hint once there is work to keep)."""
    if os.environ.get("MOBILENAS_DEBUG"):
        raise error
    _close_progress_bars()
    home = _home_hint(error)
    # a read-only file system is a folder the user chose, as a PermissionError is: the same command
    # would meet it again, so no "continue with" that does
    read_only = error.errno == errno.EROFS
    hint = f"; completed work is saved; continue with: {_resume_hint[0]}" if _resume_hint and not read_only else ""
    if _raised_writing_stdout(error):  # `> /dev/full`: not a disk of the run's
        print(f"{prog}: error: writing the output failed: {error.strerror or error} (standard output: its file or disk){hint}", file=sys.stderr)
        _stdout_to_devnull()  # what could not be written is not tried again at exit
        return 1
    print(f"{prog}: error: {_os_message(error)}{home}{hint}", file=sys.stderr)
    # a name that cannot be one is the user's input, and so is a home that cannot be made; a full
    # disk or a failing device is not
    return EXIT_USAGE if home or read_only or error.errno in (errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL) else 1


def _home_hint(error: OSError) -> str:
    """Where the failing path is mobilenas's home (the latency tables' folder), or a folder that
    could not be made on the way to it: what that folder is and how to choose another."""
    from pathlib import Path

    from mobilenas.runs import mobilenas_home

    if not error.filename:
        return ""
    home, path = mobilenas_home().absolute(), Path(os.fsdecode(error.filename)).absolute()
    if not (path == home or home in path.parents or (path in home.parents and not path.exists())):
        return ""
    named = "$MOBILENAS_HOME" if os.environ.get("MOBILENAS_HOME") else "~/.cache/mobilenas, or $MOBILENAS_HOME"
    return f"; mobilenas keeps its latency tables in {home} ({named}): set MOBILENAS_HOME to a folder you can write, or give --table PATH"


def _os_message(error: OSError) -> str:
    """``No such file or directory: /path``, a name of over 100 characters shortened in the middle."""
    name = str(error.filename or "")
    shown = name if len(name) <= 100 else name[:60] + "..." + name[-30:]
    return f"{error.strerror or error}" + (f": {shown}" if shown else "")


_terminated: list[int] = []  # SIGTERM received during this command (what a library re-raises is a plain KeyboardInterrupt)


def _raise_terminated(signum: int, frame: Any) -> None:
    _terminated.append(signum)
    raise KeyboardInterrupt("terminated")


_NOT_INSTALLED = object()


def _stop_on_sigterm() -> Any:
    """SIGTERM (a job scheduler, ``kill PID``) stops the command like Ctrl-C, as "terminated" with exit
    code 143; returns the handler it replaced."""
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        return _NOT_INSTALLED


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end has been closed (poll reports an error on it)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), stdout closed or replaced
        return False


def refuse_ineffective(keys: Sequence[str], why: str, *, alternative: str = "") -> None:
    """A usage error naming options (by their ``dest``) that would be silently ignored, if any.

    ``why`` completes "would have no effect ..."; ``alternative`` is added after "drop it/them".
    """
    if keys:
        names = ", ".join("--" + key.replace("_", "-") for key in keys)
        raise UsageError(f"{names} would have no effect {why}; drop {'it' if len(keys) == 1 else 'them'}{alternative}")


def refuse_changed_on_resume(typed: dict[str, Any], recorded: dict[str, Any], allowed: str) -> None:
    """``--resume RUN`` with options typed: those equal to what the run recorded are fine (the run's
    own command with ``--resume`` added); a usage error names the others with the run's values.

    Keys are ``dest`` names (``input`` is shown as INPUT); ``typed`` holds values as the run would
    have recorded them (paths absolute); ``target_latency`` and ``*_ms`` keys are shown in ms (a
    ``*_ms`` key as the option without the suffix).
    ``allowed`` says, in parentheses after the error, what a resume may change.
    """
    def same(a: Any, b: Any) -> bool:
        if a == b:
            return True
        if isinstance(a, str) and isinstance(b, str):  # a path recorded relative to where the run started
            return os.path.abspath(os.path.expanduser(a)) == os.path.abspath(os.path.expanduser(b))
        return isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) and math.isclose(a, b, rel_tol=1e-12)

    changed = sorted(key for key, value in typed.items() if not same(value, recorded.get(key)))
    if not changed:
        return

    def option(key: str) -> str:
        return "INPUT" if key == "input" else "--" + key.removesuffix("_ms").replace("_", "-")

    def shown(key: str, value: Any) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        if value is None or value == []:
            return "unset"
        if (key == "target_latency" or key.endswith("_ms")) and isinstance(value, int | float):
            return f"{value:g}ms"
        return " ".join(map(str, value)) if isinstance(value, list) else str(value)

    had = "; ".join(f"{option(key)} {shown(key, recorded.get(key))}" for key in changed)
    raise UsageError(f"--resume continues a run with its own arguments (it has {had}); drop {', '.join(option(k) for k in changed)} ({allowed})")


def latency_threads_note(threads: int, option: str, *, command: str | None = None) -> str | None:
    """A note when latencies would be timed on this machine with more threads than it has cores."""
    cores = os.cpu_count() or 1
    if command is not None or threads <= cores:  # a command times on its own device
        return None
    return (
        f"note: {option} {threads} on {cores} cores: the threads share the cores, so the latencies come out slower and"
        f" noisier than on a device with {threads}; {option} {cores} at most times this machine as it is"
    )


# endings of the files the commands write or read: a folder option given one of them is a slip
_FILE_SUFFIXES = frozenset({".csv", ".json", ".jsonl", ".png", ".pdf", ".svg", ".pt", ".pth", ".onnx", ".parquet", ".txt", ".md", ".npz"})


def check_writable_folder(path: str | os.PathLike[str], what: str) -> None:
    """Fail now, in one line, if ``path`` cannot become a folder we can write (before any work).

    ``what`` names it for the message (``"--out results/x"``). Creates nothing: the nearest
    existing ancestor must be a folder in which a file can be made (a probe file, removed at once;
    permission bits alone say nothing when running as root).
    """
    import tempfile
    from pathlib import Path

    folder = Path(path)
    if not folder.exists() and folder.suffix.lower() in _FILE_SUFFIXES:  # `--out calibration.csv`: made a folder of that name
        raise UsageError(f"{what}: expected a folder (the files are written into it), got a file's name; give a folder, e.g. {folder.with_suffix('')}")
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{what}: {ancestor} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=ancestor, prefix=".mobilenas-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise UsageError(f"{what}: cannot write in {ancestor} ({error.strerror or error})") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _jsonable(value.item())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def print_json(payload: Any) -> None:
    """Print one JSON object on stdout (NaN and infinities become null, as JSON has none)."""
    print(json.dumps(_jsonable(payload), indent=2, sort_keys=False))


@contextlib.contextmanager
def stdout_kept_for_json(enabled: bool = True) -> Iterator[None]:
    """While the block runs, whatever is written to standard output (file descriptor 1: Ray's
    messages about a worker that died, from its threads or its C++ core) goes to standard error,
    so that ``--json`` prints one JSON object on standard output, after the block."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptors to move (an embedded interpreter): as it was
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    """``--version``: the installed mobilenas version (every command has it)."""
    from mobilenas import __version__

    parser.add_argument("--version", action="version", version=f"mobilenas {__version__}", help="print the version and exit")


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def progress(
    iterable: Any = None, *, total: int | None = None, desc: str = "", enabled: bool = True, unit: str = "it", initial: int = 0,
    seconds_left: Callable[[], float | None] | None = None,
) -> Any:
    """A tqdm progress bar on stderr (with ETA); a silent pass-through when ``enabled`` is false.

    ``initial``: work already done (a resumed run); it shows in the count but not in the rate, so
    the ETA is not flattered by work that took no time now. ``seconds_left``: the time until a
    ``--time-limit`` stops new work (None: no limit); the ETA shown is never later than it.
    """
    from tqdm.auto import tqdm

    if seconds_left is not None:
        tqdm = _limited_bar_class(tqdm, seconds_left)

    # Redirected to a file or a CI log, a bar redrawn ten times a second is noise: redraw rarely.
    interactive = sys.stderr.isatty()
    # A terminal that reports no width (a pseudo-terminal nobody sized, as some containers and CI
    # runners give) makes tqdm count its rows as -1 and hide every bar: give it 100 x 24 instead.
    sized = not interactive or _terminal_columns() > 0
    bar = tqdm(
        iterable, total=total, desc=desc, disable=not enabled, unit=unit, initial=initial, file=sys.stderr,
        dynamic_ncols=sized, ncols=None if sized else 100, nrows=None if sized else 24,
        mininterval=0.1 if interactive else 30.0, maxinterval=10.0 if interactive else 60.0,
    )
    _open_bars.add(bar)
    return bar


def count_done_before(bar: Any, done: int) -> None:
    """Show ``done`` units of a resumed run's work on a bar made before it was known (as
    :func:`progress`'s ``initial``): in the count, not in the rate the ETA comes from. tqdm's
    smoothed rate takes each redraw's step from the last count drawn, so that count moves too (left
    behind, the first redraw took every unit done before as done now: a resumed search showed 8 s
    an architecture where it took 20)."""
    bar.initial = bar.n = bar.last_print_n = done


def _limited_bar_class(base: Any, seconds_left: Callable[[], float | None]) -> type:
    """``base`` (a tqdm class) whose ETA stops at the time limit: where the rate says the work ends
    later than ``seconds_left()``, the bar shows the time to the limit, marked as such."""

    class LimitedBar(base):
        @property
        def format_dict(self) -> dict[str, Any]:
            return {**super().format_dict, "seconds_left": seconds_left()}

        @staticmethod
        def format_meter(n: float, total: float | None, elapsed: float, seconds_left: float | None = None, **kwargs: Any) -> str:
            rate = kwargs.get("rate")
            if rate is None and elapsed:
                rate = (n - kwargs.get("initial", 0)) / elapsed
            by_rate = (total - n) / rate if rate and total else None
            if seconds_left is not None and total and n < total and kwargs.get("bar_format") is None and (by_rate is None or by_rate > seconds_left):
                left = base.format_interval(seconds_left)
                kwargs["bar_format"] = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<" + left + " time limit, {rate_fmt}{postfix}]"
            return str(base.format_meter(n, total, elapsed, **kwargs))

    return LimitedBar


def _terminal_columns() -> int:
    """The width of the terminal on stderr (0 when it reports none or is no terminal)."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 0


def _close_progress_bars() -> None:
    """Close the bars a stopped command left open, so that its last line starts on a line of its own
    (a bar closed later, by the garbage collector, is drawn again after it)."""
    for bar in list(_open_bars):
        bar.close()
    _open_bars.clear()


def _whole_number(text: str, low: int, high: int | None, expected: str) -> int:
    """``int(text)`` within ``low .. high`` (``high`` None: no limit), else argparse's error saying ``expected``."""
    try:
        value: int | None = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _whole_number(text, 1, None, "a whole number >= 1")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _whole_number(text, 0, None, "a whole number >= 0")


def image_pixels(text: str) -> int:
    """argparse type: an image side in pixels, a whole number >= 8 (the data sets' smallest)."""
    return _whole_number(text, 8, None, "a whole number of pixels >= 8")


MAX_SEED = 2**32 - 1  # trial seeds are derived from it by arithmetic that must stay within torch's 64 bits


def seed_number(text: str) -> int:
    """argparse type: a seed, a whole number from 0 to :data:`MAX_SEED`."""
    return _whole_number(text, 0, MAX_SEED, f"a whole number from 0 to {MAX_SEED}")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1)."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text!r}")
    return value


def fraction_or_zero(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    value = nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def count_or_fraction(text: str) -> int | float:
    """argparse type: a count (``4000``) or a fraction in (0, 1) (``0.1``) of a data set."""
    message = f"expected a count >= 1 or a fraction in (0, 1), got {text!r}"
    stripped = text.strip()
    if stripped.isdigit():
        if int(stripped) < 1:
            raise argparse.ArgumentTypeError(message)
        return int(stripped)
    try:
        value = float(stripped)
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(message)
    return value


def time_limit_s(text: str) -> float | None:
    """argparse type of a wall-clock limit: ``2h``, ``30min``, ``90s`` in seconds, ``none`` for ``None``."""
    from mobilenas.units import parse_time_limit_s

    try:
        return parse_time_limit_s(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def time_limit_text(text: str) -> str:
    """:func:`time_limit_s`'s check, the text kept as typed (so that a resume tells a typed ``none``
    from an option left out, where argparse's default is ``None``)."""
    time_limit_s(text)
    return text.strip()


def duration_ms(text: str) -> float:
    """argparse type for durations typed by users (``15ms``, ``0.015s``)."""
    from mobilenas.units import parse_duration_ms

    try:
        return parse_duration_ms(text, what="")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
