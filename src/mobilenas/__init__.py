"""mobilenas: platform-aware neural architecture search."""
from __future__ import annotations

__version__ = "0.1.0"
