"""How a latency table's entries are timed: :class:`Method` (see :mod:`.table`'s docstring).

Kept free of torch, so that ``nas-latency --help`` can show its defaults at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

METHODS = ("in-context", "isolated")


@dataclass(frozen=True)
class Method:
    """How the table's entries are timed (see the module docstring)."""

    name: str = "in-context"
    cold_cache: bool = False
    warmup: int = 3
    repeats: int = 40

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise ValueError(f"measurement method {self.name!r} is not one of {', '.join(METHODS)}")
        for field in ("warmup", "repeats"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if field == "warmup" else 1):
                raise ValueError(f"method.{field} must be a whole number >= {0 if field == 'warmup' else 1}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Method:
        if not isinstance(data, dict):
            raise ValueError(f"method: expected an object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
