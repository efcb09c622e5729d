"""Lazy re-exports for a package's ``__init__``, so that a command's ``--help`` does not pay for torch.

A package lists its public names as ordinary imports under ``if TYPE_CHECKING:`` (type checkers
and readers see them as usual) and ends with::

    lazy_exports(__name__, __file__)

The names of that block are then imported from their modules on first use
(``mobilenas.train.load_dataset`` imports :mod:`mobilenas.train.data`, and torch with it, only
when it is asked for); importing the package itself imports none of them. The block is read from
the package's source, so it stays the one list of what the package exports.
"""

from __future__ import annotations

import ast
import importlib
import sys
import types
from pathlib import Path
from typing import Any


def _type_checking_imports(source: str) -> dict[str, tuple[str, str]]:
    """``{exported name: (module, name in that module)}`` of the ``if TYPE_CHECKING:`` block."""
    exports: dict[str, tuple[str, str]] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                and node.test.id == "TYPE_CHECKING"):
            continue
        for statement in node.body:
            if isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
                for alias in statement.names:
                    exports[alias.asname or alias.name] = (statement.module, alias.name)
    return exports


class _LazyPackage(types.ModuleType):
    """A package whose exports are imported on first use (see :func:`lazy_exports`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            module, attribute = self.__dict__.get("_lazy_exports", {})[name]
        except KeyError:
            # An AttributeError also lets ``from package import submodule`` import the submodule.
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module), attribute)
        super().__setattr__(name, value)  # later lookups skip __getattr__
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing a submodule records it on its package under its own name. Where the package
        # exports a function of that name (``mobilenas.latency.measure``, the function of the
        # module ``measure``) the export wins, as it did when the package imported it eagerly.
        exported = self.__dict__.get("_lazy_exports", {}).get(name)
        if exported is not None and isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
            value = getattr(importlib.import_module(exported[0]), exported[1])
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.__dict__.get("_lazy_exports", {})))


def lazy_exports(package: str, init_file: str) -> None:
    """Make ``package`` import the names of its ``if TYPE_CHECKING:`` block on first use."""
    module = sys.modules[package]
    module.__class__ = _LazyPackage
    module._lazy_exports = _type_checking_imports(Path(init_file).read_text(encoding="utf-8"))  # type: ignore[attr-defined]
