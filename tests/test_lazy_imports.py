"""``--help`` answers without loading torch, pandas, ONNX Runtime or Ray; the packages' lazy exports."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from mobilenas.lazy import _type_checking_imports

HEAVY = ("torch", "pandas", "onnxruntime", "ray", "optuna")

# Each command's module, and the help screens a user asks for.
HELP = {
    "mobilenas.cli": [["--help"], ["netadapt", "refine", "--help"], ["latency", "build", "--help"], ["train", "--help"], ["results", "show", "--help"], ["search", "--help"], ["show", "--help"]],
    "mobilenas.search.cli": [["--help"]],
    "mobilenas.netadapt.cli": [["--help"], ["refine", "--help"], ["describe", "--help"]],
    "mobilenas.latency.cli": [["--help"], ["build", "--help"], ["predict", "--help"], ["measure", "--help"]],
    "mobilenas.train.cli": [["--help"]],
    "mobilenas.results.cli": [["--help"], ["show", "--help"], ["compare", "--help"]],
}

CHILD = """
import contextlib, io, json, sys, importlib
module = importlib.import_module(sys.argv[1])
shown = []
for argv in json.loads(sys.argv[2]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        module.main(argv)
    shown.append(len(out.getvalue()))
print(json.dumps({"shown": shown, "loaded": sorted(m for m in json.loads(sys.argv[3]) if m in sys.modules)}))
"""


@pytest.mark.parametrize("module", sorted(HELP))
def test_help_does_not_load_the_heavy_libraries(module: str) -> None:
    argvs = HELP[module]
    result = subprocess.run(
        [sys.executable, "-c", CHILD, module, json.dumps(argvs), json.dumps(HEAVY)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(length > 200 for length in report["shown"]), report  # each help screen was printed
    assert report["loaded"] == [], f"{module} --help imports {report['loaded']}"


LAZY_PACKAGES = ("mobilenas.latency", "mobilenas.netadapt", "mobilenas.train", "mobilenas.results")


@pytest.mark.parametrize("name", LAZY_PACKAGES)
def test_every_exported_name_resolves(name: str) -> None:
    package = importlib.import_module(name)
    assert package.__file__ is not None
    with open(package.__file__, encoding="utf-8") as handle:
        lazy = _type_checking_imports(handle.read())
    assert lazy, f"{name} lists no lazy exports"
    for exported in package.__all__:
        value = getattr(package, exported)
        assert value is not None
        if exported in lazy:
            module, attribute = lazy[exported]
            assert value is getattr(importlib.import_module(module), attribute)
    assert set(lazy) <= set(package.__all__), set(lazy) - set(package.__all__)
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        package.not_a_name  # noqa: B018


def test_an_export_named_like_its_module_stays_the_export() -> None:
    # mobilenas.latency exports the functions measure and calibrate of the modules of those names;
    # importing the modules (as any command does) must not put the modules in their place.
    import mobilenas.latency.calibrate
    import mobilenas.latency.measure  # noqa: F401
    from mobilenas.latency import calibrate, measure

    assert callable(measure) and measure.__module__ == "mobilenas.latency.measure"
    assert callable(calibrate) and calibrate.__module__ == "mobilenas.latency.calibrate"
    assert sys.modules["mobilenas.latency.measure"].measure is measure


def test_a_submodule_is_still_imported_by_name() -> None:
    from mobilenas.train import engine

    assert engine.__name__ == "mobilenas.train.engine"


def test_type_checking_block_is_read() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import os\n"
        "if TYPE_CHECKING:\n"
        "    from a.b import c, d as e\n"
        "    from . import relative\n"
        "if other:\n"
        "    from x import y\n"
    )
    assert _type_checking_imports(source) == {"c": ("a.b", "c"), "e": ("a.b", "d")}
