"""What a search run and a NetAdapt run share once read: directory, label, manifest; tolerant reads."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilenas.runs import read_json


@dataclass(frozen=True)
class RunBase:
    """A run read from ``path``; ``label`` names it in tables and legends (the directory name unless given)."""

    path: Path
    label: str
    manifest: dict[str, Any]

    @property
    def seed(self) -> int | None:
        seed = self.manifest.get("seed")
        return int(seed) if isinstance(seed, int | float) else None


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` if the file is absent, unreadable or not an object.

    A run's JSON files are written atomically, so an unreadable one is not ours to guess at.
    """
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except (json.JSONDecodeError, OSError):
        return None
    return data if isinstance(data, dict) else None


def number_or_nan(value: Any) -> float:
    """``value`` as a float if it is a JSON number (not a bool), else NaN."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
