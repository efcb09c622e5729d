"""The one place where durations typed by users are parsed ("15ms", "0.015s", "15"), and where
durations and counts are written for people ("12.34 ms", "12 min", "1 proposal")."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

_DURATION = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|us|µs)?\s*$", re.IGNORECASE)
_TO_MS = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3, "μs": 1e-3}  # the micro sign, and the Greek mu it folds to


def parse_duration_ms(text: str | float | int, *, what: str = "duration") -> float:
    """Parse a user-typed duration into milliseconds.

    Accepts ``15ms``, ``0.015s``, ``1500us`` (units in any case: ``15MS``) and a bare number, which
    is read as milliseconds.
    Anything else (a unit we do not know, a negative or zero value, ``15 m``) raises ``ValueError``
    with a message that shows accepted forms.
    """
    prefix = f"{what}: " if what else ""
    if isinstance(text, bool):
        raise ValueError(f"{prefix}expected a duration such as 15ms or 0.015s, got {text!r}")
    if isinstance(text, int | float):
        value, unit = float(text), "ms"
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise ValueError(f"{prefix}cannot read {text!r} as a duration; write it like 15ms, 0.015s or 1500us")
        value, unit = float(match.group(1)), (match.group(2) or "ms").lower()
    ms = value * _TO_MS[unit]
    if not math.isfinite(ms):
        raise ValueError(f"{prefix}a duration must be finite, got {text!r}; write it like 15ms, 0.015s or 1500us")
    if ms <= 0:
        raise ValueError(f"{prefix}a duration must be positive, got {text!r}")
    return ms


_TIME_LIMIT = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zµ]*)\s*$", re.IGNORECASE)
_TO_S = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
         "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400}
_TIME_LIMIT_FORMS = "write it like 90s, 30min or 2h"


def parse_time_limit_s(text: str) -> float | None:
    """Parse a wall-clock time limit (``90s``, ``30min``, ``30m``, ``2h``, ``1d``) into seconds;
    ``none`` is no limit (``None``).

    A bare number is refused (seconds or minutes?), as are milliseconds (``500ms``: not a limit
    anyone means) and anything that is not positive and finite, with a message showing the forms.
    """
    stripped = str(text).strip()
    if stripped.lower() == "none":
        return None
    match = _TIME_LIMIT.match(stripped)
    if not match or (match.group(2) and match.group(2).lower() not in _TO_S):
        raise ValueError(f"cannot read {text!r} as a time limit; {_TIME_LIMIT_FORMS} (or none)")
    if not match.group(2):
        raise ValueError(f"cannot tell seconds from minutes in {text!r}: give it a unit, like 90s, 30min or 2h")
    seconds = float(match.group(1)) * _TO_S[match.group(2).lower()]
    if not math.isfinite(seconds):
        raise ValueError(f"a time limit must be finite, got {text!r}; {_TIME_LIMIT_FORMS}")
    if seconds <= 0:
        raise ValueError(f"a time limit must be positive, got {text!r}; {_TIME_LIMIT_FORMS} (or none for no limit)")
    return seconds


def format_ms(ms: float | None) -> str:
    """Render milliseconds for people: ``12.34 ms``, ``0.512 ms``, ``0.00042 ms``; ``-`` for unknown."""
    if ms is None or (isinstance(ms, float) and math.isnan(ms)):
        return "-"
    if 0 < abs(ms) < 0.01:  # three decimals would say 0.000 ms
        return f"{ms:.2g} ms"
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.2f} ms"


def format_duration(seconds: float) -> str:
    """Render a duration for people, to the precision an estimate has: ``40 s``, ``12 min``, ``3.1 h``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_time_limit(seconds: float) -> str:
    """A duration someone gave (``--time-limit``), exactly, in the largest whole unit: ``90 s``,
    ``45 min``, ``8 h`` (:func:`format_duration` rounds, as fits an estimate: 90 s would read 2 min)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    for size, unit in ((3600, "h"), (60, "min")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:g} s"


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` and the noun that agrees with it: ``1 proposal``, ``2 proposals``, ``0 entries``
    (``plural`` where adding an s is wrong)."""
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def listed(items: Sequence[str], most: int) -> str:
    """``a, b, c`` for an error message, at most ``most`` of them: ``a, b, ... (5 more)``."""
    shown = ", ".join(items[:most])
    return shown + (f", ... ({len(items) - most} more)" if len(items) > most else "")
