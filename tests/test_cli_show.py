from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenas.space import reference


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mobilenas.cli", *args], capture_output=True, text=True, timeout=120)


def test_show_json_has_the_keys_scripts_rely_on() -> None:
    result = run("show", "mobilenetv3-large", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert {"architecture", "notation", "params", "macs"} <= set(payload)
    assert payload["params"] == 5_483_032
    assert payload["architecture"] == reference("mobilenetv3-large").to_dict()


def test_show_prints_blocks_and_notation(tmp_path) -> None:
    path = tmp_path / "arch.json"
    path.write_text(reference("mobilenetv2").to_json())
    result = run("show", str(path), "--space", "mnasnet-relu6")
    assert result.returncode == 0, result.stderr
    assert "parameters 3,504,872" in result.stdout
    assert "notation: stem_k3_s2_c32_nr6" in result.stdout
    assert "stage4.num_layers" in result.stdout and "stages[6][0]" in result.stdout


def test_show_lists_a_spaces_decisions_the_tabular_cell_space_too() -> None:
    from mobilenas.space.nb201 import nb201_space

    result = run("show", "--space", "nb201")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("space nb201: 6 decisions, 15,625 index vectors")
    assert "edge_3<-2                  none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3" in result.stdout
    assert json.loads(run("show", "--space", "nb201", "--json").stdout)["space"] == nb201_space().to_dict()
    assert run("show", "--space", "mobilenetv3").stdout.startswith("space mobilenetv3: 42 decisions, 1.248e+18 index vectors")


def test_show_reads_a_best_json_and_a_notation(tmp_path) -> None:
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"architecture": reference("mnasnet-b1").to_dict(), "accuracy": 0.5}))
    result = run("show", str(path), "--json")
    assert json.loads(result.stdout)["params"] == 4_383_312
    notation = reference("mobilenetv3-small").to_notation()
    result = run("show", notation, "--json")
    assert json.loads(result.stdout)["params"] == 2_542_856


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("show", "resnet50"), "'resnet50' is neither a reference"),
        (("show", "mobilenetv2", "--input-size", "0"), "--input-size: expected a whole number >= 1"),
        (("show",), "give an architecture"),
        (("frobnicate",), "unknown command 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], fragment: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_json_file_is_one_line(tmp_path) -> None:
    data = reference("mobilenetv2").to_dict()
    data["stages"][3]["blocks"][1]["kernel_size"] = 4
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    result = run("show", str(path))
    assert result.returncode == 2
    assert "stages[3].blocks[1].kernel_size: 4 is not one of 3, 5, 7" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _every_parser() -> list[tuple[str, object]]:
    """(prog, parser) for every command of the umbrella and every subcommand of those."""
    import argparse
    import importlib

    from mobilenas.cli import COMMANDS

    found = []
    for name, (module, _) in COMMANDS.items():
        stack = [importlib.import_module(module).build_parser(f"mobilenas {name}")]
        while stack:
            parser = stack.pop()
            found.append((parser.prog, parser))
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    stack.extend(action.choices.values())
    return found


def test_every_help_page_is_readable_in_a_100_column_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """No literal '%%' (argparse formats help strings, not descriptions), no line wider than 100."""
    monkeypatch.setenv("COLUMNS", "80")
    pages = _every_parser()
    assert len(pages) >= 20  # six commands and their subcommands
    for prog, parser in pages:
        text = parser.format_help()  # type: ignore[attr-defined]
        assert "%%" not in text, prog
        wide = [line for line in text.splitlines() if len(line) > 100]
        assert not wide, (prog, wide)


def test_every_command_page_has_examples() -> None:
    """README: "Every command has --help with examples" (a review found nas-train, nas-results show and
    netadapt describe without); the pages that only list subcommands excepted."""
    import argparse

    leaves = [(prog, parser) for prog, parser in _every_parser() if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)]  # type: ignore[attr-defined]
    assert len(leaves) >= 18
    missing = [prog for prog, parser in leaves if "examples:" not in parser.format_help()]  # type: ignore[attr-defined]
    assert not missing


def test_every_option_value_is_named_for_what_it_is_not_for_its_destination() -> None:
    """--help shows ``--epochs N``, ``--out DIR``, ``--target-latency DURATION``: never argparse's
    fallback, the destination in capitals (``--data-dir DATA_DIR``, ``--epochs EPOCHS``)."""
    import argparse

    from mobilenas.cliutil import count_or_fraction, duration_ms, nonnegative_int, positive_int

    counts = {positive_int, nonnegative_int, count_or_fraction}
    seen_count = seen_duration = 0
    for prog, parser in _every_parser():
        usage = parser.format_usage()  # type: ignore[attr-defined]
        for action in parser._actions:  # type: ignore[attr-defined]
            if not action.option_strings or action.nargs == 0 or isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            fallback = action.dest.upper()
            shown = f"{action.option_strings[0]} {fallback}"
            if action.choices is None and ("_" in fallback or action.type in counts or action.type is duration_ms):
                assert shown not in usage, (prog, shown)
            if action.type in counts:
                seen_count += f"{action.option_strings[0]} N" in usage  # named by type unless it names itself (--input-size PX)
            if action.type is duration_ms:
                assert f"{action.option_strings[0]} DURATION" in usage, (prog, action.option_strings[0])
                seen_duration += 1
    assert seen_count >= 30 and seen_duration >= 3


def test_every_command_says_its_version_and_python_m_mobilenas_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    from mobilenas import __version__
    from mobilenas.cli import COMMANDS

    for module, _ in COMMANDS.values():
        assert importlib.import_module(module).main(["--version"]) == 0, module
        assert capsys.readouterr().out.strip() == f"mobilenas {__version__}", module
    # a subcommand's too: "unrecognized arguments", or "--space is required" first
    for module, argv in (("mobilenas.results.cli", ["show", "--version"]), ("mobilenas.latency.cli", ["build", "--version"]),
                         ("mobilenas.netadapt.cli", ["describe", "--version"]), ("mobilenas.search.cli", ["--target-latency", "5ms", "--version"])):
        assert importlib.import_module(module).main(argv) == 0, (module, argv)
        assert capsys.readouterr().out.strip() == f"mobilenas {__version__}", (module, argv)
    result = subprocess.run([sys.executable, "-m", "mobilenas", "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == f"mobilenas {__version__}", result.stderr


def test_a_space_too_large_for_a_float_is_shown(tmp_path: Path) -> None:
    """A space of many stages (its size past 1.8e308) ended 'mobilenas show' in an OverflowError traceback."""

    from mobilenas.space.search_space import get_space

    data = get_space("mnasnet").to_dict()
    data["stages"] = data["stages"] * 9  # 63 stages (at most 64), each with 300 SE ratios
    for stage in data["stages"]:
        stage["choices"]["se_ratio"] = [i / 300 for i in range(300)]
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(data))
    result = run("show", "--space", str(path))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert re.match(r"space mnasnet \(edited copy [0-9a-f]{8}\): \d+ decisions, \d\.\d{3}e\+\d{3,} index vectors", result.stdout), result.stdout[:200]
