"""Run directories: the single source of truth of a search or a NetAdapt run.

A run directory holds ``manifest.json`` (the resolved configuration, versions, seed), an
append-only ``events.jsonl`` journal (one JSON object a line, flushed and fsynced per event,
replayed to resume, tolerant of a torn last line left by a killed process), and artifacts
written atomically (write to a temporary file, fsync, rename). Ray's or Optuna's own state is
never authoritative.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import secrets
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mobilenas.units import counted, format_duration, listed

MANIFEST = "manifest.json"
LOCK = ".lock"  # held by the process working on the run (RunDir.claim)
EVENTS = "events.jsonl"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def mobilenas_home() -> Path:
    """Where mobilenas keeps what outlives a run (the latency tables): ``$MOBILENAS_HOME``, or
    ``~/.cache/mobilenas``."""
    return Path(os.environ.get("MOBILENAS_HOME") or "~/.cache/mobilenas").expanduser()


def tables_folder_words() -> str:
    """Where the latency tables are, as --help says it: ``$MOBILENAS_HOME/tables`` as now set."""
    if os.environ.get("MOBILENAS_HOME"):
        return f"$MOBILENAS_HOME/tables, here {mobilenas_home() / 'tables'}"
    return "~/.cache/mobilenas/tables (or $MOBILENAS_HOME/tables)"


def absolute_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a run records it: ``~`` expanded and absolute, so ``--resume`` finds it from any folder."""
    return str(Path(path).expanduser().resolve())


def temporary_path(path: Path, suffix: str = ".tmp") -> Path:
    """Where to write ``path``'s new content before it replaces the file: ``.NAME.PID`` + ``suffix``
    beside it, or a hash of the name where that would pass the system's 255 bytes a name."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{suffix}")
    if len(os.fsencode(tmp.name)) > 255:
        import hashlib

        tmp = path.with_name(f".{hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]}.{os.getpid()}{suffix}")
    return tmp


def atomic_write_bytes(path: str | Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` so that readers see either the old file or the whole new one.

    ``exclusive``: only if ``path`` does not exist yet, else ``FileExistsError`` (of two
    processes creating it at once, exactly one wins; the file appears whole).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)  # fails if path exists, unlike a rename
            tmp.unlink()
        else:
            os.replace(tmp, path)
    except OSError as error:  # name the file asked for, not the temporary one
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(path)) from None
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str, *, exclusive: bool = False) -> None:
    atomic_write_bytes(path, text.encode(), exclusive=exclusive)


def _default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(obj, indent=indent, default=_default, allow_nan=True)


def atomic_write_json(path: str | Path, obj: Any, *, exclusive: bool = False) -> None:
    atomic_write_text(path, dumps(obj, indent=2) + "\n", exclusive=exclusive)


def read_json(path: str | Path) -> Any:
    with open(path) as handle:
        return json.load(handle)


def run_of(path: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """``(folder, manifest)`` of the run that ``path`` is or holds a file of (its best.json or
    refined.json); ``None`` when it is none, its manifest cannot be read, or ``path`` is no file
    name at all (block notation or a reference name, perhaps too long for one)."""
    try:
        given = Path(path).expanduser()
        run = given if given.is_dir() else given.parent if given.is_file() else None
        if run is None or not (run / MANIFEST).is_file():
            return None
        manifest = read_json(run / MANIFEST)
    except (OSError, ValueError):
        return None
    return (run, manifest) if isinstance(manifest, dict) else None


def run_latency_table(path: str | Path, *, gone: bool = False) -> tuple[str, Path, dict[str, Any] | None] | None:
    """``(kind, table, correction)`` of the run that ``path`` is or holds a file of (its best.json or
    refined.json), when that run recorded a latency table that still exists; else ``None``.

    ``kind`` is ``search`` or ``netadapt``. ``correction`` is the one the run predicted with, as
    its manifest records it (a NetAdapt run's frozen one, a search's from its start): the table's
    own may have been refitted since, and would predict something else than the run reported;
    ``None`` where the manifest has none. With ``gone``, the table is returned also where it no
    longer exists (to say so).
    """
    found = run_of(path)
    if found is None:
        return None
    _, manifest = found
    try:
        kind = manifest.get("kind")
        if kind == "search":
            # the correction the search predicted with (recorded when it started): the shared table's
            # own may have been refitted since by other searches' end-to-end points
            section = manifest.get("latency_table") or {}
            recorded, correction = section.get("path"), section.get("correction")
        elif kind == "netadapt":
            latency = manifest.get("latency") or {}
            recorded, correction = latency.get("table"), latency.get("correction")
        else:
            return None
    except AttributeError:  # a hand-edited manifest: a section that is not an object
        return None
    if not recorded or not (gone or Path(recorded).is_file()):
        return None
    usable = isinstance(correction, dict) and all(isinstance(correction.get(k), int | float) and not isinstance(correction.get(k), bool) for k in ("a", "b"))
    return str(kind), Path(recorded), correction if usable else None


#: The options that say which images a run trained and validated on (its data set, and the seed
#: and size of the validation split it carved): a later command on the run's result reads the
#: same unless told otherwise, so that it never trains on images the run held out, or the other way.
DATA_OPTIONS = ("dataset", "data_dir", "val_size", "test_size", "seed", "image_size", "channels")


def run_data_options(path: str | Path) -> tuple[str, dict[str, Any]] | None:
    """``(kind, options)``: the :data:`DATA_OPTIONS` the run that ``path`` is or holds a file of
    (its best.json or refined.json) loaded its data with; ``kind`` is ``search`` or ``netadapt``.
    ``None`` for anything else, a tabular search (it trained nothing) included."""
    found = run_of(path)
    if found is None:
        return None
    _, manifest = found
    kind = manifest.get("kind")
    recorded = manifest.get("config") if kind == "search" else manifest.get("arguments") if kind == "netadapt" else None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("dataset"), str) or recorded.get("benchmark"):
        return None
    # only what the run recorded, and of the right kind (a search has no test_size, image_size or
    # channels; an older or hand-edited manifest may lack more): the rest is the defaults
    kept = {key: recorded[key] for key in DATA_OPTIONS if key in recorded}
    return str(kind), {key: value for key, value in kept.items() if value is None or (isinstance(value, _OPTION_TYPES[key]) and not isinstance(value, bool))}


_OPTION_TYPES: dict[str, type | tuple[type, ...]] = {
    "dataset": str, "data_dir": str, "val_size": (int, float), "test_size": (int, float), "seed": int, "image_size": int, "channels": int,
}


def option_text(key: str, value: Any) -> str:
    """``--data-dir /some/where``: an option as it is typed (``no --data-dir`` for an unset one)."""
    flag = f"--{key.replace('_', '-')}"
    return f"no {flag}" if value is None else f"{flag} {shlex.quote(str(value))}"


class TimeLimit:
    """A wall-clock limit on starting new work (``--time-limit``): ``seconds`` after ``since`` (a
    reading of ``clock``; default: now), or none (``seconds=None``). Work under way is never cut:
    the caller asks :meth:`reached` before starting more."""

    def __init__(self, seconds: float | None = None, *, since: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self.deadline = None if seconds is None else (clock() if since is None else since) + seconds
        self.was_reached = False

    def reached(self, on_reached: Callable[[], None] | None = None) -> bool:
        """Whether the limit has passed; it stays passed. ``on_reached`` is called the first time
        (to journal it)."""
        if not self.was_reached and self.deadline is not None and self.clock() >= self.deadline:
            self.was_reached = True
            if on_reached is not None:
                on_reached()
        return self.was_reached

    def seconds_left(self) -> float | None:
        """Until the limit (never below 0), or ``None`` without one."""
        return None if self.deadline is None else max(0.0, self.deadline - self.clock())

    def ends_at(self) -> str | None:
        """The local time the limit passes at (``HH:MM:SS``), or ``None`` without one."""
        left = self.seconds_left()
        return None if left is None else time.strftime("%H:%M:%S", time.localtime(time.time() + left))

    def left_text(self) -> str | None:
        """What a progress bar shows: ``12 min``, ``0 (finishing)`` once passed; ``None`` without a limit."""
        left = self.seconds_left()
        if left is None:
            return None
        return format_duration(left) if left > 0 else "0 (finishing)"


@contextlib.contextmanager
def hold_lock(path: Path, busy: str) -> Iterator[None]:
    """Hold the advisory lock in file ``path`` (made if missing) while the block runs, with this
    process's id written in it. Held by another process: ``ValueError(busy)``, where ``{by}`` in
    ``busy`` becomes `` (pid N)``. A killed holder releases it at once. No lock where the system has
    none (not POSIX)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(path, "a+") as handle:
        for _ in range(5):  # a few tries: RunDir.holder (nas-results show) holds it shared for an instant
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.05)
        else:
            handle.seek(0)
            holder = handle.read().strip()
            raise ValueError(busy.replace("{by}", f" (pid {holder})" if holder.isdigit() else ""))
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class Journal:
    """An append-only JSON-lines event log, fsynced per append (Optuna's journal storage idea)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.skipped: list[int] = []  # the numbers (from 1) of the lines the last read skipped

    def append(self, event: dict[str, Any]) -> None:
        self.extend([event])

    def extend(self, events: Sequence[dict[str, Any]]) -> None:
        """Append several events in one write and one fsync (all or, after a kill, a prefix of them)."""
        if not events:
            return
        line = "".join(dumps(event) + "\n" for event in events)
        if not self.path.parent.is_dir():  # (a journal lives in a run folder made before it)
            from mobilenas.errors import FolderGone

            raise FolderGone(self.path.parent)  # not made again, half empty, for the next writes to fill
        # A killed writer can leave a torn last line; start on a fresh line so it stays isolated.
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                needs_newline = handle.read(1) != b"\n"
        with open(self.path, "a") as handle:
            handle.write(("\n" if needs_newline else "") + line)
            handle.flush()
            os.fsync(handle.fileno())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.read())

    def read(self) -> list[dict[str, Any]]:
        """All complete events; a torn or corrupt line (from a kill mid-write, a bad disk block:
        bytes that are not even UTF-8) is skipped, and its number kept in :attr:`skipped`."""
        self.skipped = []
        if not self.path.exists():
            return []
        events = []
        with open(self.path, "rb") as handle:
            for line, raw in enumerate(handle, start=1):
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    event = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    event = None
                if isinstance(event, dict):
                    events.append(event)
                else:
                    self.skipped.append(line)
        return events


def new_run_id(prefix: str = "run") -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(2)}"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded in every manifest."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    for module in ("mobilenas", "torch", "numpy", "onnxruntime", "onnx", "ray", "optuna"):
        mod = sys.modules.get(module)
        if mod is None:
            try:
                mod = __import__(module)
            except Exception:
                continue
        info[module] = getattr(mod, "__version__", "unknown")
    return info


RESUME_COMMANDS = {"search": "nas-search --resume", "netadapt": "netadapt refine --resume"}  # by manifest kind
_KIND_LABELS = {"search": "nas-search", "netadapt": "NetAdapt"}  # what a message calls a run of each kind


def _is_run(folder: Path) -> bool:
    """Whether ``folder`` holds a mobilenas run (a manifest with a kind this version writes; another
    tool's ``manifest.json``, a web app's say, is no run)."""
    try:
        if not (folder / MANIFEST).is_file():
            return False
        manifest = read_json(folder / MANIFEST)
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("kind") in RESUME_COMMANDS


def _left_by_a_start(name: str) -> bool:
    """A file that a run killed before its manifest was written may leave in its folder (the lock,
    a temporary file of :func:`atomic_write_bytes`, a probe of ``check_writable_folder``): a new run
    may be made beside it."""
    return name == LOCK or (name.startswith(".") and name.endswith(".tmp")) or name.startswith(".mobilenas-probe-")


class RunDir:
    """A run directory: ``manifest.json``, ``events.jsonl`` and atomically written artifacts."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.events = Journal(self.root / EVENTS)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def refuse_existing(self, kind: str | None = None) -> None:
        """Raise ``ValueError`` unless a new run of ``kind`` may be made here (commands call it before
        any work): the folder must be new, empty, or hold only what a run killed before its manifest
        leaves (a lock no process holds, a temporary file), and lie in no other run's folder (their
        files would mix). The message says what is there: a run to ``--resume`` (one of ``kind``;
        ``None``: the command of whatever kind is there), one of another kind, one in use."""
        quoted = shlex.quote(str(self.root))
        holder = self.holder()
        by = "" if holder is None else f" (pid {holder})" if holder > 0 else ""
        if self.exists():
            try:
                found = self.manifest().get("kind")
            except (OSError, ValueError):
                found = None
            label = _KIND_LABELS.get(str(found))
            if holder is not None:
                raise ValueError(f"{self.root} already holds a run that another process{by} is working on now; choose another --out")
            if found is not None and found == kind:
                raise ValueError(f"{self.root} already holds a run; use --resume {quoted} to continue it, or choose another --out")
            if label is None:
                raise ValueError(f"{self.root} already holds a run ({MANIFEST} names no kind this version knows); choose another --out")
            if kind is None:
                raise ValueError(f"{self.root} already holds a {label} run; {RESUME_COMMANDS[str(found)]} {quoted} continues it, or choose another --out")
            raise ValueError(f"{self.root} already holds a {label} run; choose another --out")
        for folder in self.root.absolute().parents:
            if _is_run(folder):
                raise ValueError(f"{self.root} is inside the run folder {folder}, and its files would mix with that run's; choose a folder outside it with --out")
        if holder is not None:  # a run that has not written its manifest yet
            raise ValueError(f"{self.root} is in use by another process{by} starting a run there; choose another --out")
        try:
            present = sorted(entry.name for entry in self.root.iterdir() if not _left_by_a_start(entry.name))
        except (NotADirectoryError, FileNotFoundError):
            return  # missing (made later), or a file (check_writable_folder says so)
        except OSError:
            return  # unreadable: making the run there fails with its own message
        if MANIFEST in present and self.exists():  # another process made a run here meanwhile (RunDir.create at once)
            self.refuse_existing(kind)
        if present:
            raise ValueError(
                f"{self.root} is not empty ({counted(len(present), 'entry', 'entries')}: {listed(present, 3)}) and holds no run; a run's files would mix with them:"
                " choose a new or empty folder with --out"
            )

    @classmethod
    def create(cls, root: str | Path, manifest: dict[str, Any]) -> RunDir:
        run = cls(root)
        kind = manifest.get("kind")
        run.refuse_existing(kind if isinstance(kind, str) else None)
        run.root.mkdir(parents=True, exist_ok=True)
        full = {"created": now_iso(), "environment": environment(), **manifest}
        try:  # two processes given the same --out at once: one gets the run, the other this error
            atomic_write_json(run.manifest_path, full, exclusive=True)
        except FileExistsError:
            run.refuse_existing(kind if isinstance(kind, str) else None)
            raise
        return run

    @classmethod
    def open(cls, root: str | Path, kind: str | None = None) -> RunDir:
        """The run in ``root``, or in the folder of ``root`` when that is one of a run's files
        (``--resume RUN/best.json``, as a shell completes it); ``kind`` checks what wrote it."""
        run = cls(root)
        if run.root.is_file() and (run.root.parent / MANIFEST).is_file():
            run = cls(run.root.parent)
        if not run.root.is_dir():
            raise ValueError(f"{run.root} is not a directory; give the run directory printed when the run started")
        if not run.exists():
            raise ValueError(f"{run.root} is not a mobilenas run directory (no {MANIFEST})")
        if kind is not None:
            found = run.manifest().get("kind")
            if found != kind:
                command = RESUME_COMMANDS.get(str(found))
                hint = f"; continue it with {command} {shlex.quote(str(run.root))}" if command else ""
                if (found, kind) == ("search", "netadapt"):
                    hint += f", or prune its best with netadapt refine {shlex.quote(str(run.root / 'best.json'))}"
                raise ValueError(f"{run.root} is a {found!r} run, not a {kind!r} run{hint}")
        return run

    @contextlib.contextmanager
    def claim(self) -> Iterator[RunDir]:
        """Hold this run for this process while the block runs (an advisory lock in ``.lock``).

        A second process that claims it meanwhile (``--resume`` of a run still going, say) gets a
        one-line ``ValueError`` before it writes anything; a killed holder releases it at once.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        busy = f"{self.root} is in use by another process{{by}}; let it finish or stop it, then --resume {shlex.quote(str(self.root))}"
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(hold_lock(self.root / LOCK, busy))
            except OSError as error:  # a read-only copy or mount: the bare "Read-only file system: .../.lock" said too little
                raise ValueError(
                    f"cannot write in {self.root} ({error.strerror or type(error).__name__}): a run goes on in its own folder; copy it somewhere"
                    f" writable (cp -r) and go on there; nas-results show {shlex.quote(str(self.root))} reads it where it is"
                ) from None
            yield self

    def holder(self) -> int | None:
        """The process id working on this run now (holding :meth:`claim`), or None.

        Probes the lock with a shared, non-blocking request released at once; the file is not
        created. A run whose holder was killed has none.
        """
        try:
            import fcntl
        except ImportError:  # not POSIX: unknown
            return None
        try:
            handle = open(self.root / LOCK)  # noqa: SIM115 (closed below)
        except OSError:
            return None
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = handle.read().strip()
                return int(text) if text.isdigit() else -1
            except OSError:
                return None
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return None

    def manifest(self) -> dict[str, Any]:
        try:
            data = read_json(self.manifest_path)
        except json.JSONDecodeError as error:
            raise ValueError(f"{self.manifest_path} is not valid JSON ({error.msg} at line {error.lineno}); it is not a readable run manifest") from None
        except UnicodeDecodeError:
            raise ValueError(f"{self.manifest_path} is not text; it is not a readable run manifest") from None
        if not isinstance(data, dict):
            raise ValueError(f"{self.manifest_path} is not a JSON object; it is not a run manifest")
        return data

    def update_manifest(self, **fields: Any) -> None:
        data = self.manifest()
        data.update(fields)
        atomic_write_json(self.manifest_path, data)

    def path(self, name: str) -> Path:
        return self.root / name

    def write_json(self, name: str, obj: Any) -> Path:
        target = self.root / name
        atomic_write_json(target, obj)
        return target

    def write_text(self, name: str, text: str) -> Path:
        target = self.root / name
        atomic_write_text(target, text)
        return target
