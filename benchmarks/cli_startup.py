"""Benchmark: how long each command takes to answer ``--help``, beside the cost of importing torch.

Every command parses its arguments before it imports torch, pandas, ONNX Runtime or Ray, so that
``--help`` and every usage error (a typo included) answer at once; before this, ``netadapt``,
``nas-latency`` and ``nas-train`` imported torch first (1.5-1.8 s here). Each round runs, in a
fresh interpreter, every help screen and ``python -c "import torch"`` (what a help screen paid
before), interleaved, so the machine's drift hits all alike. The figure of merit is the ratio
help / torch import (a machine-independent stand-in for the old cost).

    python benchmarks/cli_startup.py            # writes benchmarks/cli_startup.md and .json
    python benchmarks/cli_startup.py --rounds 2 --out /tmp/startup   # /tmp/startup.md and .json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import check_report, command_line, positive_int, write_report

HERE = Path(__file__).parent

COMMANDS = {
    "mobilenas --help": ["mobilenas.cli", "--help"],
    "nas-search --help": ["mobilenas.search.cli", "--help"],
    "netadapt refine --help": ["mobilenas.netadapt.cli", "refine", "--help"],
    "nas-latency build --help": ["mobilenas.latency.cli", "build", "--help"],
    "nas-train --help": ["mobilenas.train.cli", "--help"],
    "nas-results show --help": ["mobilenas.results.cli", "show", "--help"],
}
TORCH = "python -c 'import torch'"


def seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive_int, default=5, help="rounds, each every command once (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE / "cli_startup", help="output stem: writes STEM.md and STEM.json (default: the committed results, benchmarks/cli_startup)")
    args = parser.parse_args(argv)
    out = check_report(parser, args.out)
    times: dict[str, list[float]] = {name: [] for name in [*COMMANDS, TORCH]}
    for _ in range(args.rounds):
        for name, module_args in COMMANDS.items():
            times[name].append(seconds(["-m", *module_args]))
        times[TORCH].append(seconds(["-c", "import torch"]))
    torch_s = statistics.median(times[TORCH])
    rows: list[dict[str, Any]] = [
        {"command": name, "median_s": statistics.median(values), "ratio_to_torch_import": statistics.median(values) / torch_s}
        for name, values in times.items()
    ]
    import torch

    lines = [
        "# Command start-up: `--help` beside importing torch",
        "",
        f"Command: `{command_line(__file__, argv)}`  ",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}; "
        f"{args.rounds} rounds, each a fresh interpreter per command, interleaved; medians.",
        "",
        "| command | median (s) | / import torch |",
        "| --- | --- | --- |",
        *(f"| `{r['command']}` | {r['median_s']:.2f} | {r['ratio_to_torch_import']:.2f} |" for r in rows),
        "",
        "Target: every help screen well under the cost of importing torch (ratio < 0.5), which is what",
        "`netadapt`, `nas-latency` and `nas-train` paid before their heavy imports moved behind parsing.",
        f"Met: {'yes' if all(r['ratio_to_torch_import'] < 0.5 for r in rows if r['command'] != TORCH) else 'no'}.",
        "",
    ]
    write_report(out, {"rounds": args.rounds, "rows": rows, "times": times}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
