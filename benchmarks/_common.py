"""What benchmark scripts share (imported as a sibling: ``python benchmarks/x.py``); nothing heavy,
so that a script that only drives subprocesses does not load torch for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(out: str, summary: dict[str, Any], markdown: str) -> None:
    """Write ``<out>.json`` (the figures) and ``<out>.md`` (the table), and print the table."""
    Path(out + ".json").write_text(json.dumps(summary, indent=2) + "\n")
    Path(out + ".md").write_text(markdown)
    print(markdown)


def stem_file(stem: Path, suffix: str) -> Path:
    """STEM + suffix, the stem kept whole (``strategies_nb201.seeds20-39`` -> ``...seeds20-39.md``;
    ``Path.with_suffix`` would have written ``strategies_nb201.md``); a stem given with its ``.md``,
    ``.json`` or ``.png`` is taken without it."""
    if stem.suffix in (".md", ".json", ".png"):
        stem = stem.with_suffix("")
    return stem.parent / (stem.name + suffix)
