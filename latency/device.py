"""What a latency was measured on: the device and runtime description, and its fingerprint.

Every :class:`~mobilenas.latency.measure.Measurement` and every lookup table carries a
:class:`DeviceInfo`. Its :meth:`DeviceInfo.fingerprint` hashes what changes latencies (CPU model,
core count, machine, operating system, runtime and its version, execution provider, threads, and
for a custom command backend the command and the device name the user gave it) but not what a
table records separately (batch size, input shape, date).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the fields that identify a device (see the module docstring)
FINGERPRINT_FIELDS = (
    "cpu_model",
    "cpu_count",
    "machine",
    "system",
    "runtime",
    "runtime_version",
    "execution_provider",
    "threads",
    "command",
    "device_name",
)


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, ``sysctl`` on macOS)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def last_level_cache_bytes() -> int | None:
    """Size of the largest CPU cache (Linux sysfs), or ``None`` when unknown."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    sizes = []
    if root.is_dir():
        for index in root.glob("index*"):
            try:
                text = (index / "size").read_text().strip()
            except OSError:
                continue
            units = {"K": 1024, "M": 1024**2, "G": 1024**3}
            try:
                sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
            except (ValueError, IndexError):
                continue
    return max(sizes) if sizes else None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


@dataclass(frozen=True)
class DeviceInfo:
    """The device and runtime a latency was measured on.

    ``input_shape`` is ``(batch, channels, height, width)`` of the measured model; ``timer`` says
    which clock timed the runs (``thread``: CPU time of the calling thread, ``wall``: wall clock,
    ``command``: the milliseconds a custom command printed).
    """

    cpu_model: str
    cpu_count: int
    machine: str
    system: str
    runtime: str
    runtime_version: str
    execution_provider: str
    threads: int
    batch_size: int = 1
    input_shape: tuple[int, ...] = ()
    date: str = ""
    timer: str = "wall"
    command: str | None = None
    device_name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))

    def fingerprint(self) -> str:
        """16 hex digits identifying the device and runtime (see :data:`FINGERPRINT_FIELDS`)."""
        identity = {name: getattr(self, name) for name in FINGERPRINT_FIELDS}
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_shape(self, input_shape: tuple[int, ...]) -> DeviceInfo:
        """This device, stamped with a measured model's input shape and today's date."""
        return dataclasses.replace(self, input_shape=tuple(input_shape), batch_size=int(input_shape[0]) if input_shape else self.batch_size, date=now_iso())

    def describe(self) -> str:
        """One line for people: ``AMD EPYC (2 cores), onnxruntime 1.32.0 CPUExecutionProvider, 1 thread``.

        A custom command's device unnamed (no ``--device-name``) is described by the command, not
        by this machine's CPU: the command may time a phone."""
        if self.runtime == "command" and not self.device_name:
            threads = f"{self.threads} thread" + ("s" if self.threads != 1 else "")
            return f"command: {self.command or '?'} (device not named), {threads}, batch {self.batch_size}"
        where = self.device_name or f"{self.cpu_model} ({self.cpu_count} cores, {self.machine})"
        runtime = f"{self.runtime} {self.runtime_version}".strip()
        if self.execution_provider:
            runtime += f" {self.execution_provider}"
        threads = f"{self.threads} thread" + ("s" if self.threads != 1 else "")
        return f"{where}, {runtime}, {threads}, batch {self.batch_size}"

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["fingerprint"] = self.fingerprint()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "device") -> DeviceInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"fingerprint"})
        if unknown:
            raise ValueError(f"{where}: unknown keys {', '.join(unknown)} (allowed: {', '.join(sorted(names))})")
        try:
            fields: dict[str, Any] = {k: v for k, v in data.items() if k in names}
            fields["input_shape"] = tuple(fields.get("input_shape", ()))
            return cls(**fields)
        except TypeError as error:
            raise ValueError(f"{where}: {error}") from None


def host_device(runtime: str, runtime_version: str, execution_provider: str, threads: int, timer: str, *, command: str | None = None, device_name: str | None = None) -> DeviceInfo:
    """A :class:`DeviceInfo` for this machine and the given runtime."""
    return DeviceInfo(
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 1,
        machine=platform.machine(),
        system=platform.system(),
        runtime=runtime,
        runtime_version=runtime_version,
        execution_provider=execution_provider,
        threads=threads,
        timer=timer,
        command=command,
        device_name=device_name,
    )
