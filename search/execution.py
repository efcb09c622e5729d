"""Where evaluations run: in-process for cheap ones, on Ray for expensive ones.

* :func:`ray_session` starts a local Ray bound to 127.0.0.1 on demand (or joins ``address``) and
  shuts it down afterwards if it started it. ``ray.init`` costs 2-3 s and ~250 MB, so nothing
  cheap (a table look-up) ever goes through Ray.
* :func:`map_parallel` runs a list of independent jobs (NetAdapt's proposals of one iteration)
  with at most ``workers`` at once, each with ``cpus_per_task`` CPUs; a job whose worker process
  dies is retried up to ``max_retries`` times, then reported as failed with its error. With
  ``workers=1`` and no address the jobs run in this process, one after the other.
* The search's proxy trainings run on Ray Tune (see :mod:`mobilenas.search.tune_driver`).

No job changes the working directory: Ray Tune's per-trial ``chdir`` is switched off.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

# Settings for Ray and Tune in this process and in the workers it starts.
RAY_ENVIRONMENT = {
    "RAY_CHDIR_TO_TRIAL_DIR": "0",  # trials keep the working directory of the driver
    "RAY_AIR_NEW_OUTPUT": "0",  # the classic reporter honours verbose=0: our own progress bar talks
    "RAY_DEDUP_LOGS": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "100",
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
    # Ctrl-C is ours: Tune's own handler ends the experiment quietly instead, so the trials in
    # flight came back as lost (recorded failed, never retried) and the run ended as if finished.
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
}


def joins_cluster(address: str | None) -> bool:
    """Whether ``--ray-address`` names a cluster to join (``local``, like none, starts one here)."""
    return bool(address) and address != "local"


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Use the Ray at ``address``, or start a local one bound to 127.0.0.1 for this block."""
    for key, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if address == "local":  # Ray's name for a new local cluster: ours, bound to 127.0.0.1 like the default
        address = None
    if not address or _on_loopback(address):
        # also to join a cluster on 127.0.0.1: otherwise Ray rewrites that to the machine's
        # address, where a loopback-bound cluster does not listen
        _bind_to_loopback()
        # Ray >= 2.5x turns token authentication on for a new local cluster (good) and says so in
        # a warning on every start (noise in our output). Setting RAY_AUTH_MODE here would silence
        # it too, but a Ray imported earlier in the process keeps the mode it read then, and its
        # driver then fails to reach its own cluster; only the message is dropped.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    import ray

    started = False
    if not ray.is_initialized():
        worker_env = {"env_vars": {k: os.environ[k] for k in RAY_ENVIRONMENT}}
        before = signal.getsignal(signal.SIGTERM)
        try:
            if address:
                ray.init(address=address, log_to_driver=False, configure_logging=False, runtime_env=worker_env)
            else:
                ray.init(
                    address="local",
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    log_to_driver=False,
                    configure_logging=False,
                    runtime_env=worker_env,
                )
            if callable(before) and signal.getsignal(signal.SIGTERM) is not before:
                # ray.init installs a SIGTERM handler that dumps a stack and exits; a command's own
                # (an orderly stop with a resume hint, cliutil.run_main) comes first
                signal.signal(signal.SIGTERM, before)
        except ConnectionError as error:
            raise ValueError(
                f"cannot join the Ray cluster at {address!r} ({error}); check --ray-address, and if that cluster uses "
                "token authentication (Ray's default for clusters started by ray.init), set RAY_AUTH_MODE=token here too"
            ) from None
        started = True
    _no_colour_reset_at_exit()
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _no_colour_reset_at_exit() -> None:
    """Ray imports colorama and calls its init, which writes a colour reset (ESC[0m) on a line of
    its own to a terminal when the process exits, after a command's last line: undone."""
    import atexit

    for name in ("colorama.initialise", "ray.thirdparty_files.colorama.initialise"):
        module = sys.modules.get(name)
        reset_all = getattr(module, "reset_all", None)
        if callable(reset_all):
            atexit.unregister(reset_all)


def check_ray_address(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail now, in one line, if ``address`` (``--ray-address``) is malformed or nothing answers there.

    Ray itself retries a dead address for minutes, printing warnings, and only after the run has
    started. ``auto`` (the cluster that ``RAY_ADDRESS`` names, or the last ``ray start`` on this
    machine) is resolved as Ray resolves it and checked alike; ``local`` is left to Ray.
    """
    from mobilenas.errors import UsageError

    if not address or address == "local":
        return
    if address == "auto":
        found = _auto_address()
        if found is None:
            raise UsageError("--ray-address auto: no Ray cluster runs on this machine (RAY_ADDRESS is unset and nothing was started with ray start); "
                             "start one (ray start --head), give its HOST:PORT, or drop --ray-address for a local Ray")
        if found == "auto":
            return  # Ray's resolution is not available here; Ray will say
        return _check_reachable(found, f"auto (= {found})", timeout_s)
    _check_reachable(address, address, timeout_s)


def _check_reachable(address: str, shown: str, timeout_s: float) -> None:
    import socket

    from mobilenas.errors import UsageError

    host, port = _host_and_port(address)
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {shown!r}: expected HOST:PORT (the head node's GCS, e.g. 10.0.0.5:6379), ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as connection:  # a TLS cluster (RAY_USE_TLS) answers in TLS
            # A Ray cluster's GCS (and a Ray Client server, ray://) speaks gRPC: HTTP/2, whose server
            # answers a client's preface with a SETTINGS frame. Anything else there (a dashboard, a
            # web server, a proxy that accepts every connection) had Ray retry for minutes.
            reply = _http2_reply(connection, timeout_s)
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise UsageError(f"--ray-address {shown}: cannot connect ({reason}); start the cluster there (ray start --head) or drop --ray-address for a local Ray") from None
    tls = os.environ.get("RAY_USE_TLS", "").strip().lower() in ("1", "true") or reply[:1] in (b"\x15", b"\x16")  # a TLS record: gRPC over TLS
    if not tls and (len(reply) < 9 or reply[3] != HTTP2_SETTINGS):
        what = ("it answers as a web server (is it the dashboard's port, 8265?)" if reply[:4] in (b"HTTP", b"<!DO", b"<htm", b"<HTM")
                else f"no gRPC reply within {timeout_s:g} s" if not reply else "its reply is not gRPC")
        raise UsageError(f"--ray-address {shown}: something listens there, but not a Ray cluster ({what}); give the head node's GCS address "
                         "(HOST:PORT as ray start --head prints it; port 6379 by default), or drop --ray-address for a local Ray")


#: The client connection preface of HTTP/2 and an empty SETTINGS frame (RFC 9113, section 3.4).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4  # the frame type of a server's first frame


def _http2_reply(connection: Any, timeout_s: float) -> bytes:
    """The first 9 bytes (a frame header) the server sends after the HTTP/2 preface; fewer where it
    closes or stays silent for ``timeout_s``."""

    connection.settimeout(timeout_s)
    reply = b""
    try:
        connection.sendall(HTTP2_PREFACE)
        while len(reply) < 9:
            chunk = connection.recv(9 - len(reply))
            if not chunk:
                break
            reply += chunk
    except (TimeoutError, ConnectionError):
        pass
    return reply


def _auto_address() -> str | None:
    """What Ray's ``address="auto"`` connects to: ``RAY_ADDRESS``, else the cluster the last ``ray
    start`` on this machine recorded; None when neither; ``"auto"`` when Ray's lookup is missing."""
    if os.environ.get("RAY_ADDRESS", "").strip():
        return os.environ["RAY_ADDRESS"].strip()
    try:  # Ray's own lookup (not a public API)
        from ray._private.services import find_bootstrap_address
    except ImportError:
        return "auto"
    return find_bootstrap_address(None) or None


def oversubscription_note(workers: int, cpus_per_worker: float, what: str, option: str = "--cpus-per-trial") -> str | None:
    """A note when a local Ray would run more CPUs of work at once than this machine has cores
    (``option`` sets the CPUs, and threads, of each)."""
    cores = os.cpu_count() or 1
    if workers * cpus_per_worker <= cores:
        return None
    if workers <= 1:  # one at a time, with more threads than cores
        return (f"note: {option} {cpus_per_worker:g} on {cores} cores: the {what} run {cpus_per_worker:g} threads on {cores} cores, "
                f"which is slower than {cores}; {option} {cores} matches this machine")
    fitting = max(1, int(cores // cpus_per_worker))
    return (
        f"note: {workers} {what} at once x {cpus_per_worker:g} CPU{'' if cpus_per_worker == 1 else 's'} each on {cores} cores: they share the cores and each runs "
        f"slower; --workers {fitting} matches this machine"
    )


def _host_and_port(address: str) -> tuple[str, str]:
    """``("10.0.0.5", "6379")`` from ``10.0.0.5:6379``, ``ray://10.0.0.5:10001`` or ``[::1]:6379``."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return host.strip("[]"), port


def _on_loopback(address: str) -> bool:
    return _host_and_port(address)[0] in ("127.0.0.1", "localhost", "::1")


def _bind_to_loopback() -> None:
    """Make a local Ray listen on 127.0.0.1 only.

    Ray resolves ``127.0.0.1`` to the machine's reachable address and its servers then listen on
    every interface, unless clustering is off (its single-machine mode on macOS and Windows),
    where every server binds to the loopback address. The switch is read when ``ray`` is first
    imported, and looked up again at call time, so set both.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False  # type: ignore[attr-defined]


@dataclass(frozen=True)
class TaskOutcome:
    """The result of one job of :func:`map_parallel`: a value, or the error that ended it."""

    index: int
    value: Any = None
    error: str | None = None
    wall_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}".strip()


def map_parallel(
    fn: Callable[..., T],
    items: Sequence[Any],
    *,
    workers: int = 1,
    ray_address: str | None = None,
    cpus_per_task: float = 1.0,
    max_retries: int = 2,
    on_done: Callable[[TaskOutcome], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[TaskOutcome]:
    """Run ``fn(item)`` for every item; outcomes come back in the order of ``items``.

    ``on_done`` is called in this process as each job finishes (for progress bars and journals).
    An exception raised by ``fn`` is not retried (it would fail again); a worker that dies
    (killed, out of memory) is retried up to ``max_retries`` times by Ray. ``stop()``, asked
    before each job starts, ends the work early when it returns true: jobs under way finish, the
    rest never start and have no outcome (the list is then shorter than ``items``).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    outcomes: list[TaskOutcome | None] = [None] * len(items)
    if workers == 1 and ray_address is None:
        for index, item in enumerate(items):
            if stop is not None and stop():
                break
            start = time.perf_counter()
            try:
                outcome = TaskOutcome(index, value=fn(item), wall_time_s=time.perf_counter() - start)
            except Exception as error:
                outcome = TaskOutcome(index, error=_describe(error), wall_time_s=time.perf_counter() - start)
            outcomes[index] = outcome
            if on_done:
                on_done(outcome)
        return [o for o in outcomes if o is not None]

    import ray

    with ray_session(ray_address, num_cpus=None if ray_address else max(workers, int(cpus_per_task * workers + 0.999))):
        remote = ray.remote(num_cpus=cpus_per_task, max_retries=max_retries, retry_exceptions=False)(_timed_call)
        fn_ref = ray.put(fn)
        waiting: dict[Any, int] = {}
        next_item = 0
        while next_item < len(items) or waiting:
            while next_item < len(items) and len(waiting) < workers:
                if stop is not None and stop():
                    next_item = len(items)  # start nothing more; what runs finishes
                    break
                waiting[remote.remote(fn_ref, items[next_item])] = next_item
                next_item += 1
            if not waiting:
                break
            ready, _ = ray.wait(list(waiting), num_returns=1)
            for ref in ready:
                index = waiting.pop(ref)
                try:
                    value, message, seconds = ray.get(ref)
                    outcome = TaskOutcome(index, value=value, error=message, wall_time_s=seconds)
                except Exception as crash:  # the worker died more often than max_retries allows
                    outcome = TaskOutcome(index, error=_describe(crash))
                outcomes[index] = outcome
                if on_done:
                    on_done(outcome)
    return [o for o in outcomes if o is not None]


def _timed_call(fn: Callable[[Any], Any], item: Any) -> tuple[Any, str | None, float]:
    start = time.perf_counter()
    try:
        return fn(item), None, time.perf_counter() - start
    except Exception as error:
        return None, _describe(error), time.perf_counter() - start
