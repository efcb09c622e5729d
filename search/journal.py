"""Rules of a search's journal (``events.jsonl``) that the orchestrator and nas-results share.

Kept free of torch and pandas, so that :mod:`mobilenas.results` reads a run by the same rule the
orchestrator replays it with (see :mod:`mobilenas.search.orchestrator` for the format).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def void_before(events: Sequence[dict[str, Any]]) -> dict[int, int]:
    """``{number: position}`` of each proposal number's last ``abandoned`` line.

    A proposal lost to a kill before its checkpoint is asked again under the same number, and
    journaled anew below that line: the line voids only the lines of its number above it.
    """
    return {int(e["number"]): position for position, e in enumerate(events) if e.get("type") == "abandoned" and e.get("number") is not None}
