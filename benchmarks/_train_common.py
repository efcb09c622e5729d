"""What the ``train_*`` benchmark scripts share (imported as a sibling: ``python benchmarks/x.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(out: str, summary: dict[str, Any], markdown: str) -> None:
    """Write ``<out>.json`` (the figures) and ``<out>.md`` (the table), and print the table."""
    Path(out + ".json").write_text(json.dumps(summary, indent=2) + "\n")
    Path(out + ".md").write_text(markdown)
    print(markdown)
