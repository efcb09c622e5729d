"""Benchmark: the README's main job, ``nas-search --target-latency 15ms``, as a new user runs it.

Runs the command exactly as typed, in a fresh ``MOBILENAS_HOME`` (so the lazy latency table and
its correction are created on the way, as on a first run) and a scratch run directory, and
reports its wall time, the peak memory of the nas-search process and what ``best.json`` says.
Target: under 10 minutes on a 2-core CPU.

    flock /tmp/mobilenas-cpu.lock python benchmarks/search_quickstart.py   # overwrites the committed results
    flock /tmp/mobilenas-cpu.lock python benchmarks/search_quickstart.py --samples 2 --out /tmp/quick.md   # a quick check, not judged
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import check_report, command_line, positive_int, provenance, stem_file

HERE = Path(__file__).resolve().parent
COMMAND = ["nas-search", "--target-latency", "15ms"]
TARGET_S = 600.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "search_quickstart.md",
                        help="where the table goes, and the .json beside it (default: benchmarks/search_quickstart.md, the committed results, which a run overwrites)")
    parser.add_argument("--samples", type=positive_int, default=None, metavar="N",
                        help="a quick check: run the command with --samples N (fewer trainings); the wall-time target is then not judged, since it is not the README's command (default: the command as typed)")
    args = parser.parse_args(argv)
    out = check_report(parser, args.out)
    command = COMMAND if args.samples is None else [*COMMAND, "--samples", str(args.samples)]
    executable = shutil.which(COMMAND[0])
    if executable is None:
        raise SystemExit("nas-search is not on PATH: pip install -e '.[dev]' first")
    scratch = Path(tempfile.mkdtemp(prefix="mobilenas-quickstart-"))
    try:
        environment = dict(os.environ, MOBILENAS_HOME=str(scratch / "home"))
        run = scratch / "run"
        start = time.perf_counter()
        completed = subprocess.run([executable, *command[1:], "--out", str(run)], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if completed.returncode != 0:
            print(completed.stdout[-4000:], file=sys.stderr)
            raise SystemExit(f"{' '.join(command)} failed with exit code {completed.returncode}")
        best = json.loads((run / "best.json").read_text())
        with open(run / "trials.csv") as handle:
            trials = sum(1 for _ in handle) - 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    judged = args.samples is None
    verdict = ("met" if wall < TARGET_S else "NOT met") if judged else f"not judged: --samples {args.samples} is a quick check, not the README's command"
    rows = [
        ("command", f"`{' '.join(command)}` (fresh MOBILENAS_HOME, lazy latency table created on the way)"),
        ("wall time", f"{wall:.0f} s ({wall / 60:.1f} min; target under {TARGET_S / 60:.0f} min: {verdict})"),
        ("trials", str(trials)),
        ("peak memory of the nas-search process (Ray workers not counted)", f"{peak_mb:.0f} MB"),
        ("best accuracy (proxy, synthetic set)", f"{best['accuracy']:.4f}"),
        ("best latency by the table", f"{best['latency_ms']:.2f} ms"),
        ("best latency measured", "-" if best.get("measured_latency_ms") is None else f"{best['measured_latency_ms']:.2f} ms"),
        ("machine", f"{os.cpu_count()} CPUs"),
    ]
    stamp = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    lines = [
        f"# The main job: `{' '.join(command)}` from a fresh start",
        "",
        f"Produced by `{command_line(__file__, argv)}` on {stamp}.",
        "",
        "| figure | value |",
        "| --- | --- |",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    stem_file(out, ".md").write_text(text)
    payload = {"date": stamp, "command": command, "wall_time_s": wall, "target_s": TARGET_S, "met": (wall < TARGET_S) if judged else None, "trials": trials,
               "peak_rss_mb": peak_mb, "best": {k: best.get(k) for k in ("accuracy", "latency_ms", "measured_latency_ms", "target_latency_ms", "reward")},
               "provenance": provenance(__file__, argv)}
    stem_file(out, ".json").write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
