"""The README's and the --help texts' commands and options are the ones the tools accept.

Each command line in the README's code blocks and in each tool's --help examples is parsed by its tool's own argument parser (it
is not run), with the options a trailing comment suggests (``# --measured, --references a,b``);
and every ``--option`` the README or a --help text names anywhere is an option of some tool.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

TOOLS = {
    "nas-search": "mobilenas.search.cli",
    "netadapt": "mobilenas.netadapt.cli",
    "nas-latency": "mobilenas.latency.cli",
    "nas-train": "mobilenas.train.cli",
    "nas-results": "mobilenas.results.cli",
    "mobilenas show": "mobilenas.space.cli",
}
# options of other programs that the README quotes: --help; benchmarks/strategies_nb201.py's
# --strategies (that script's own test runs it with them)
FOREIGN_OPTIONS = {"--help", "--strategies", "--data"}  # (--strategies and --data: benchmarks/strategies_nb201.py's)


def _parser(tool: str) -> argparse.ArgumentParser:
    return importlib.import_module(TOOLS[tool]).build_parser(tool)


def _code_lines() -> list[str]:
    """The lines of the README's code blocks."""
    lines: list[str] = []
    inside = False
    for raw in README.read_text().splitlines():
        if raw.startswith("```"):
            inside = not inside
        elif inside:
            lines.append(raw)
    return lines


def _help_lines() -> list[str]:
    """The lines of each tool's --help texts (descriptions, examples, each option's help), subcommands' included."""
    lines: list[str] = []

    def collect(parser: argparse.ArgumentParser) -> None:
        for text in (parser.description, parser.epilog):
            lines.extend((text or "").splitlines())
        for action in parser._actions:
            lines.extend(str(action.help or "").splitlines())
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    collect(sub)

    for tool in TOOLS:
        collect(_parser(tool))
    return lines


def _commands(raw_lines: list[str]) -> list[tuple[str, str]]:
    """(line as written, argv without comment) of each tool command among ``raw_lines``."""
    lines: list[str] = []
    for raw in raw_lines:
        if lines and lines[-1].rstrip().endswith("\\"):
            lines[-1] = lines[-1].rstrip()[:-1] + " " + raw.strip()
        else:
            lines.append(raw.strip())
    found = []
    for line in lines:
        command, _, comment = line.partition(" #")
        if not any(command.startswith(tool + " ") for tool in TOOLS) or "[" in command:  # synopses like 'show [RUN]'
            continue
        if comment.strip().startswith("--"):  # '# --measured, --references a,b': options that also go here
            command += " " + comment.strip().replace(", ", " ")
        found.append((line, command))
    return found


COMMANDS = _commands(_code_lines())
HELP_COMMANDS = _commands(_help_lines())


def test_the_readme_has_commands_of_every_tool() -> None:
    assert {next(tool for tool in TOOLS if command.startswith(tool + " ")) for _, command in COMMANDS} == set(TOOLS)


def test_the_help_texts_have_examples() -> None:
    assert len(HELP_COMMANDS) >= 10


@pytest.mark.parametrize(("line", "command"), COMMANDS + HELP_COMMANDS, ids=[line[:60] for line, _ in COMMANDS + HELP_COMMANDS])
def test_each_readme_and_help_example_parses(line: str, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    tool = next(tool for tool in TOOLS if command.startswith(tool + " "))
    # placeholders such as <run> or <that table> stand for one path
    argv = shlex.split(re.sub(r"<[^>]*>", "X", command[len(tool):]))
    try:
        _parser(tool).parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"example {line!r} does not parse (exit {exit_.code}): {capsys.readouterr().err.strip()}")


def _options(parser: argparse.ArgumentParser) -> set[str]:
    options: set[str] = set()
    for action in parser._actions:
        options.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                options |= _options(sub)
    return options


def test_every_option_the_readme_and_the_help_texts_name_exists() -> None:
    known = set().union(*(_options(_parser(tool)) for tool in TOOLS)) | FOREIGN_OPTIONS
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", README.read_text() + "\n".join(_help_lines())))
    assert named, "the README names no option: the pattern is wrong"
    assert sorted(named - known) == []
