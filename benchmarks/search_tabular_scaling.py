"""Benchmark: how a tabular search's time grows with its length (it must grow linearly).

``nas-search`` on the NAS-Bench-201 table (``../shared/data/nb201/``), as a user runs it, for a few
strategies and numbers of samples. Each row is one command, timed whole; the median of three
one-sample runs of the same strategy gives the start-up (imports, reading the table), which is
subtracted. A search's
cost per step is then its *proposals* (architectures the strategy proposed: the distinct ones
looked up plus the repeats answered from memory, each journaled) divided into the time. The target:
the cost per proposal at the longest run is at most twice that at the shortest (linear growth;
rewriting trials.csv and saving the strategy twice per trial made it quadratic before; so did
pickling the de-duplication's whole memory at every checkpoint, which the random search's 15000
samples, nearly the whole table of 15625 cells, show).

    python benchmarks/search_tabular_scaling.py     # writes benchmarks/search_tabular_scaling.md/.json
    python benchmarks/search_tabular_scaling.py --baseline f9acbcf   # and the same runs of that commit

With ``--baseline REV`` each run of up to ``--baseline-max-samples`` samples is also made with the
code of commit REV (extracted with ``git archive``, imported from there), in turn with ours
(``--repeats`` of each, the order swapped each time: the machine's speed drifts by 10-20% over
minutes, which a fixed order turns into a bias): the ratio of the two times is measured side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import tomllib
from _common import check_report, command_line, positive_int, provenance, stem_file

HERE = Path(__file__).parent
TABLE = HERE.parent.parent / "shared" / "data" / "nb201" / "nb201_cifar10_dev.csv.gz"
STARTUP_RUNS = 3
PLAN = {"random": (250, 1000, 4000, 15000), "evolution": (250, 1000, 4000), "ppo": (250, 500, 1000)}


def baseline_tree(rev: str, root: Path) -> Path:
    """An import root holding the package ``mobilenas`` as commit ``rev`` had it."""
    source = root / "source"
    source.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    mapping = tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    tree = root / "tree"
    for package, folder in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        target = tree.joinpath(*package.split("."))
        if package == "mobilenas":
            target.mkdir(parents=True)
            for item in (source / folder).iterdir():
                (target / item.name).symlink_to(item)
        else:
            target.symlink_to(source / folder)
    return tree


def one(strategy: str, samples: int, root: Path, table: Path, code: Path | None = None, repeat: int = 0) -> dict:
    out = root / f"{strategy}-{samples}{'-baseline' if code else ''}-{repeat}"
    command = [
        sys.executable, "-m", "mobilenas.search.cli", "--space", "nb201", "--benchmark", str(table),
        "--latency-column", "latency_ms_raspi4", "--target-latency", "20ms", "--samples", str(samples),
        "--strategy", strategy, "--seed", "0", "--out", str(out), "--quiet",
    ]
    env = {**os.environ, "PYTHONPATH": str(code)} if code else None  # ahead of the installed (editable) package
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    seconds = time.perf_counter() - start
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines() if line.strip()]
    proposals = sum(1 for e in events if e.get("type") == "proposal")
    journal_mb = (out / "events.jsonl").stat().st_size / 1e6
    folder_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    return {"strategy": strategy, "samples": samples, "seconds": seconds, "proposals": proposals, "journal_mb": journal_mb, "folder_mb": folder_mb}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=TABLE, help="a NAS-Bench-201 CSV (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE / "search_tabular_scaling", help="where to write .md and .json (default: %(default)s)")
    parser.add_argument("--baseline", metavar="REV", help="also run the code of this commit, in turn with ours (e.g. f9acbcf)")
    parser.add_argument("--repeats", type=positive_int, default=2, metavar="N", help="with --baseline: runs of each, ours and the baseline's in turn, first ours then the baseline first (default: %(default)s)")
    parser.add_argument("--baseline-max-samples", type=positive_int, default=1000, metavar="N", help="the baseline runs only searches this long or shorter (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.table.exists():
        parser.error(f"{args.table} does not exist: give the NAS-Bench-201 CSV with --table")
    check_report(parser, args.out)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        code = baseline_tree(args.baseline, Path(tmp) / "baseline") if args.baseline else None
        for strategy, sizes in PLAN.items():
            # the median of several: a short search is little more than its start-up, so one slow
            # start-up run makes its cost per proposal (and the growth ratio) meaningless
            startup = statistics.median(one(strategy, 1, Path(tmp), args.table, repeat=r)["seconds"] for r in range(STARTUP_RUNS))
            for samples in sizes:
                paired = code is not None and samples <= args.baseline_max_samples
                ours, theirs = [], []
                for repeat in range(args.repeats if paired else 1):
                    # ours, baseline; then baseline, ours (the machine's speed drifts over minutes)
                    order = [None, code] if repeat % 2 == 0 else [code, None]
                    for which in order if paired else [None]:
                        run = one(strategy, samples, Path(tmp), args.table, which, repeat)
                        (ours if which is None else theirs).append(run)
                row = {**ours[0], "seconds": statistics.mean(r["seconds"] for r in ours), "startup_s": startup}
                row["ms_per_proposal"] = 1000 * max(row["seconds"] - startup, 0.0) / row["proposals"]
                if paired:
                    row["baseline_seconds"] = statistics.mean(r["seconds"] for r in theirs)
                    row["baseline_journal_mb"] = theirs[0]["journal_mb"]
                    row["baseline_folder_mb"] = theirs[0]["folder_mb"]
                    row["baseline_proposals"] = theirs[0]["proposals"]
                    row["repeats"] = len(ours)
                rows.append(row)
                before = f"  (baseline {row['baseline_seconds']:.1f} s)" if "baseline_seconds" in row else ""
                print(f"{strategy:10} {samples:5} samples {row['seconds']:7.1f} s  {row['proposals']:6} proposals  {row['ms_per_proposal']:.2f} ms each  "
                      f"events.jsonl {row['journal_mb']:.1f} MB{before}", flush=True)
    lines = [
        "# Tabular search time against its length",
        "",
        f"Reproduce: `{command_line(__file__, argv, flock=False)}` (under `flock /tmp/mobilenas-cpu.lock`).",
        "",
        f"`nas-search --space nb201 --benchmark {args.table.name} --latency-column latency_ms_raspi4 --target-latency 20ms --seed 0`, "
        f"each run one command timed whole; start-up (the median of {STARTUP_RUNS} one-sample runs of the same strategy) subtracted before dividing by the proposals "
        "(distinct architectures looked up plus repeats answered from memory; both are journaled). "
        "*events.jsonl* and *folder*: the size of the run's journal and of its whole folder (trials.csv, strategy.pt, ...), in MB.",
        "",
        *(
            [f"Baseline: commit {args.baseline}, the same command with its code, run in turn with ours ({args.repeats} runs of each: ours then the baseline's, then the other way round; seconds are means); speed-up = baseline seconds / ours.", ""]
            if args.baseline else []
        ),
        "| strategy | samples | seconds | proposals | ms per proposal | events.jsonl | folder |"
        + (" baseline seconds | speed-up | baseline events.jsonl | baseline folder |" if args.baseline else ""),
        "| --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- | --- | --- |" if args.baseline else ""),
        *(
            f"| {r['strategy']} | {r['samples']} | {r['seconds']:.1f} | {r['proposals']} | {r['ms_per_proposal']:.2f} | {r['journal_mb']:.2f} | {r['folder_mb']:.2f} |"
            + ((
                f" {r['baseline_seconds']:.1f} | {r['baseline_seconds'] / r['seconds']:.1f}x | {r['baseline_journal_mb']:.2f} | {r['baseline_folder_mb']:.2f} |"
                if "baseline_seconds" in r else " - | - | - | - |"
            ) if args.baseline else "")
            for r in rows
        ),
        "",
        "Target: the cost per proposal at a strategy's longest run is at most twice that at its shortest (linear growth).",
        "",
    ]
    for strategy, sizes in PLAN.items():
        first = next(r for r in rows if r["strategy"] == strategy and r["samples"] == sizes[0])
        last = next(r for r in rows if r["strategy"] == strategy and r["samples"] == sizes[-1])
        ratio = last["ms_per_proposal"] / first["ms_per_proposal"]
        lines.append(f"- {strategy}: {sizes[-1]} samples / {sizes[0]} samples = {ratio:.2f}: {'met' if ratio <= 2 else 'NOT met'}")
    compared = [r for r in rows if "baseline_folder_mb" in r]
    if compared:
        lines += ["", "Size of the run folder against the baseline's (the same search: the proposals must be the same):", ""]
        for r in compared:
            lines.append(
                f"- {r['strategy']} {r['samples']}: {r['folder_mb']:.2f} MB vs {r['baseline_folder_mb']:.2f} MB "
                f"({r['baseline_folder_mb'] / r['folder_mb']:.1f}x smaller; events.jsonl {r['baseline_journal_mb'] / r['journal_mb']:.1f}x); "
                + ("same proposals" if r["proposals"] == r["baseline_proposals"] else f"DIFFERENT proposals ({r['proposals']} vs {r['baseline_proposals']})")
            )
    stem_file(args.out, ".md").write_text("\n".join(lines) + "\n")
    stem_file(args.out, ".json").write_text(json.dumps({"rows": rows, "provenance": provenance(__file__, argv)}, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
