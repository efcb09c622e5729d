"""The umbrella command: ``mobilenas show|latency|train|search|netadapt|results ...``.

Each subcommand is the same program as its stand-alone script (``mobilenas search`` is
``nas-search``); this module only dispatches, importing the chosen package lazily so that
``mobilenas show`` does not pay for Ray or ONNX Runtime.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from mobilenas import __version__

# subcommand -> (module with main(argv, prog), one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "show": ("mobilenas.space.cli", "inspect an architecture: blocks, parameters, MACs, notation"),
    "latency": ("mobilenas.latency.cli", "measure latency, build lookup tables, calibrate them (nas-latency)"),
    "train": ("mobilenas.train.cli", "train an architecture on a data set (nas-train)"),
    "search": ("mobilenas.search.cli", "latency-aware architecture search (nas-search)"),
    "netadapt": ("mobilenas.netadapt.cli", "prune an architecture under a latency budget (netadapt)"),
    "results": ("mobilenas.results.cli", "Pareto fronts, reports and plots of runs (nas-results)"),
}


def _usage() -> str:
    lines = [
        f"usage: mobilenas COMMAND [options]   (mobilenas {__version__})",
        "",
        "Platform-aware neural architecture search (MnasNet search, NetAdapt pruning).",
        "",
        "commands:",
    ]
    lines += [f"  {name:<10} {description}" for name, (_, description) in COMMANDS.items()]
    lines += [
        "",
        "examples:",
        "  mobilenas search --target-latency 15ms",
        "  mobilenas netadapt refine results/runs/<run>/best.json",
        "  mobilenas show mobilenetv3-small@0.75",
        "",
        "Run 'mobilenas COMMAND --help' for a command's options.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["help"] and len(args) > 1:
        args = [args[1], "--help"]  # mobilenas help search: search's help
    if not args:  # as the other commands without a subcommand: the usage, and a usage error's code
        print(_usage())
        return 2
    if args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] == "--version":
        print(f"mobilenas {__version__}")
        return 0
    name = args[0]
    if name not in COMMANDS:
        from mobilenas.errors import did_you_mean

        if name.startswith("-"):
            print(f"mobilenas: error: unknown option {name!r}{did_you_mean(name, ('--help', '--version'))}; mobilenas itself takes --help, --version or a COMMAND, whose options follow it (see mobilenas --help)", file=sys.stderr)
            return 2
        print(f"mobilenas: error: unknown command {name!r}{did_you_mean(name, COMMANDS)}; choose one of {', '.join(COMMANDS)} (see mobilenas --help)", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(args[1:], prog=f"mobilenas {name}") or 0)


if __name__ == "__main__":
    sys.exit(main())
