"""Benchmark: how a tabular search's time grows with its length (it must grow linearly).

``nas-search`` on the NAS-Bench-201 table (``../shared/data/nb201/``), as a user runs it, for a few
strategies and numbers of samples. Each row is one command, timed whole; the median of three
one-sample runs of the same strategy gives the start-up (imports, reading the table), which is
subtracted. A search's
cost per step is then its *proposals* (architectures the strategy proposed: the distinct ones
looked up plus the repeats answered from memory, each journaled) divided into the time.

The target (linear growth; rewriting trials.csv and saving the strategy twice per trial made it
quadratic before; so did pickling the de-duplication's whole memory at every checkpoint, which the
random search's 15000 samples, nearly the whole table of 15625 cells, show): a least-squares line
``seconds = start-up + cost x proposals`` through the strategy's shorter runs (every size but the
longest, and the one-sample start-up runs) predicts the longest run; the longest run's cost per
proposal (its seconds less the fitted start-up, over its proposals) is at most twice the fitted
cost. (It had divided the longest run's cost per proposal by the shortest run's, where a few
tenths of a second of work were left after subtracting ~3 s of start-up: noise decided it.)

    python benchmarks/search_tabular_scaling.py --out /tmp/scaling   # the default --out overwrites the committed results
    python benchmarks/search_tabular_scaling.py --quick --out /tmp/scaling   # smaller sizes: about a minute
    python benchmarks/search_tabular_scaling.py --baseline f9acbcf --out /tmp/scaling   # and the same runs of that commit
    python benchmarks/search_tabular_scaling.py --render benchmarks/search_tabular_scaling.json --out /tmp/scaling   # no runs: the report of a JSON again

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
from typing import Any

import tomllib
from _common import check_report, command_line, positive_int, provenance, stem_file

HERE = Path(__file__).parent
TABLE = HERE.parent.parent / "shared" / "data" / "nb201" / "nb201_cifar10_dev.csv.gz"
STARTUP_RUNS = 3
PLAN = {"random": (250, 1000, 4000, 15000), "evolution": (250, 1000, 4000), "ppo": (250, 500, 1000)}
QUICK_PLAN = {"random": (250, 1000, 3000), "evolution": (250, 1000, 2000), "ppo": (50, 100, 250)}  # to check the pipeline, not to judge
GROWTH_LIMIT = 2.0  # the longest run's cost per proposal over the fitted cost of the shorter ones


def check_revision(rev: str) -> str | None:
    """None if ``rev`` names a commit of this repository, else why not (one line)."""
    try:
        done = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        return f"cannot run git to find it ({error})"
    if done.returncode != 0:
        return "no such commit in this repository (give a commit, tag or branch that `git log` shows)"
    return None


def baseline_tree(rev: str, root: Path) -> Path:
    """An import root holding the package ``mobilenas`` as commit ``rev`` had it."""
    source = root / "source"
    source.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", rev], check=True, capture_output=True).stdout  # rev checked by check_revision
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


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares ``y = intercept + slope x`` through (x, y) points (at least two distinct x)."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if n < 2 or sxx == 0:
        raise ValueError("a line needs points at two different numbers of proposals at least")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    return mean_y - slope * mean_x, slope


def growth(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The linear-growth check of one strategy's rows (sorted by samples): a least-squares line of
    seconds against proposals through the shorter runs (every size but the longest) and the
    one-sample start-up runs (``startup_runs``: (proposals, seconds) each; a row of an older JSON
    has only their median, ``startup_s``, taken as one run of one proposal); the longest run's cost
    per proposal (its seconds less the fitted start-up) over the fitted cost: ``ratio``, None when
    the shorter runs show no growth to compare with. Also the start-up runs' spread and the share
    of the shortest run's time that is work, not start-up."""
    rows = sorted(rows, key=lambda r: r["samples"])
    longest, shorter = rows[-1], rows[:-1]
    startups = [tuple(run) for run in rows[0].get("startup_runs", [])] or [(1, rows[0]["startup_s"])]
    points = [*startups, *((float(r["proposals"]), float(r["seconds"])) for r in shorter)]
    result: dict[str, Any] = {
        "strategy": longest["strategy"], "longest_samples": longest["samples"], "fitted_on_samples": [r["samples"] for r in shorter],
        "startup_runs_s": [seconds for _, seconds in startups] if rows[0].get("startup_runs") else None,
        "startup_median_s": rows[0]["startup_s"],
        "shortest_work_s": rows[0]["seconds"] - rows[0]["startup_s"],
    }
    try:
        intercept, slope = fit_line(points)
    except ValueError:
        return {**result, "fitted_startup_s": None, "fitted_ms_per_proposal": None, "longest_ms_per_proposal": None, "ratio": None}
    longest_cost = 1000 * (longest["seconds"] - intercept) / longest["proposals"]
    ratio = longest_cost / (1000 * slope) if slope > 0 else None
    return {**result, "fitted_startup_s": intercept, "fitted_ms_per_proposal": 1000 * slope, "longest_ms_per_proposal": longest_cost, "ratio": ratio}


def growth_line(g: dict[str, Any]) -> str:
    """The verdict line of one strategy (see :func:`growth`)."""
    if g["ratio"] is None:
        why = "too few runs to fit" if g["fitted_ms_per_proposal"] is None else f"the shorter runs show no growth (fitted {g['fitted_ms_per_proposal']:.2f} ms per proposal)"
        return f"- {g['strategy']}: n/a: {why}; run more or longer sizes"
    sizes = ", ".join(map(str, g["fitted_on_samples"]))
    return (
        f"- {g['strategy']}: line through the start-up runs and {sizes} samples: {g['fitted_startup_s']:.2f} s + {g['fitted_ms_per_proposal']:.2f} ms per proposal; "
        f"the {g['longest_samples']}-sample run: {g['longest_ms_per_proposal']:.2f} ms per proposal, {g['ratio']:.2f}x the fitted cost: "
        f"{'met' if g['ratio'] <= GROWTH_LIMIT else 'NOT met'}"
    )


def startup_line(g: dict[str, Any]) -> str:
    if g["startup_runs_s"]:
        runs = g["startup_runs_s"]
        spread = f"{min(runs):.2f}-{max(runs):.2f} s over {len(runs)} runs (median {g['startup_median_s']:.2f} s" + (
            f", standard deviation {statistics.stdev(runs):.2f} s)" if len(runs) > 1 else ")")
    else:
        spread = f"median {g['startup_median_s']:.2f} s (the single runs are not in this JSON, so their spread is not known)"
    return f"- {g['strategy']}: start-up {spread}; the shortest run has {g['shortest_work_s']:.2f} s of work beyond the median start-up"


def render(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The report of ``rows`` (one per strategy and size, as :func:`main` writes them) and the growth
    check per strategy. ``meta``: ``reproduce`` (the line saying how the rows were made), ``table``,
    ``baseline`` (a commit, or None), ``repeats``, ``startup_runs``."""
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    baseline = any("baseline_seconds" in r for r in rows)
    checks = [growth([r for r in rows if r["strategy"] == strategy]) for strategy in strategies]
    lines = [
        "# Tabular search time against its length",
        "",
        meta["reproduce"],
        "",
        f"`nas-search --space nb201 --benchmark {meta['table']} --latency-column latency_ms_raspi4 --target-latency 20ms --seed 0`, "
        f"each run one command timed whole; start-up (the median of {meta['startup_runs']} one-sample runs of the same strategy) subtracted before dividing by the proposals "
        "(distinct architectures looked up plus repeats answered from memory; both are journaled). "
        "*events.jsonl* and *folder*: the size of the run's journal and of its whole folder (trials.csv, strategy.pt, ...), in MB.",
        "",
        *(
            [f"Baseline: commit {meta['baseline'] or '(not recorded in this JSON)'}, the same command with its code, run in turn with ours ({meta['repeats']} runs of each: "
             "ours then the baseline's, then the other way round; seconds are means); speed-up = baseline seconds / ours.", ""]
            if baseline else []
        ),
        "| strategy | samples | seconds | proposals | ms per proposal | events.jsonl | folder |"
        + (" baseline seconds | speed-up | baseline events.jsonl | baseline folder |" if baseline else ""),
        "| --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- | --- | --- |" if baseline else ""),
        *(
            f"| {r['strategy']} | {r['samples']} | {r['seconds']:.1f} | {r['proposals']} | {r['ms_per_proposal']:.2f} | {r['journal_mb']:.2f} | {r['folder_mb']:.2f} |"
            + ((
                f" {r['baseline_seconds']:.1f} | {r['baseline_seconds'] / r['seconds']:.1f}x | {r['baseline_journal_mb']:.2f} | {r['baseline_folder_mb']:.2f} |"
                if "baseline_seconds" in r else " - | - | - | - |"
            ) if baseline else "")
            for r in rows
        ),
        "",
        "Start-up (one-sample runs) and how much of the shortest run is work: the *ms per proposal* column divides what is left after "
        "subtracting the start-up, so at the short runs the start-up's spread decides it:",
        "",
        *(startup_line(g) for g in checks),
        "",
        f"Target (linear growth): a least-squares line of seconds against proposals through a strategy's start-up runs and shorter runs predicts "
        f"its longest run; the longest run's cost per proposal (its seconds less the fitted start-up, over its proposals) is at most "
        f"{GROWTH_LIMIT:g}x the fitted cost (quadratic growth would make it about as many times larger as the longest run has more proposals than the shorter ones).",
        "",
        *(growth_line(g) for g in checks),
    ]
    compared = [r for r in rows if "baseline_folder_mb" in r]
    if compared:
        lines += ["", "Size of the run folder against the baseline's (the same search: the proposals must be the same):", ""]
        for r in compared:
            lines.append(
                f"- {r['strategy']} {r['samples']}: {r['folder_mb']:.2f} MB vs {r['baseline_folder_mb']:.2f} MB "
                f"({r['baseline_folder_mb'] / r['folder_mb']:.1f}x smaller; events.jsonl {r['baseline_journal_mb'] / r['journal_mb']:.1f}x); "
                + ("same proposals" if r["proposals"] == r["baseline_proposals"] else f"DIFFERENT proposals ({r['proposals']} vs {r['baseline_proposals']})")
            )
    return "\n".join(lines) + "\n", checks


def read_results(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and what is known of how they were made, from a JSON this script wrote (a list of
    rows in older versions, ``{"rows", "meta", "provenance"}`` now); ValueError saying what is wrong."""
    try:
        loaded = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"cannot read it ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error})") from None
    rows = loaded.get("rows") if isinstance(loaded, dict) else loaded
    needed = ("strategy", "samples", "seconds", "proposals", "startup_s", "ms_per_proposal", "journal_mb", "folder_mb")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and all(k in r for k in needed) for r in rows):
        raise ValueError("not a search_tabular_scaling result (rows of strategy, samples, seconds, proposals, startup_s, ...)")
    meta = dict(loaded.get("meta") or {}) if isinstance(loaded, dict) else {}
    command = (loaded.get("provenance") or {}).get("command") if isinstance(loaded, dict) else None
    repeats = next((r["repeats"] for r in rows if "repeats" in r), None)
    meta.setdefault("table", TABLE.name)
    meta.setdefault("baseline", None)
    meta.setdefault("repeats", repeats)
    meta.setdefault("startup_runs", STARTUP_RUNS)
    meta["made_by"] = command or "(not recorded in this JSON)"
    return rows, meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=TABLE, help="a NAS-Bench-201 CSV (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE / "search_tabular_scaling", help="stem of the .md and .json to write (default: %(default)s, the committed results, overwritten)")
    parser.add_argument("--quick", action="store_true", help=f"smaller sizes ({', '.join(f'{k} {v}' for k, v in QUICK_PLAN.items())}): about a minute, to check the pipeline, not to judge")
    parser.add_argument("--render", type=Path, metavar="JSON", help="no runs: write the report of a JSON this script wrote again (with --out elsewhere), with today's verdict")
    parser.add_argument("--baseline", metavar="REV", help="also run the code of this commit, in turn with ours (e.g. f9acbcf)")
    parser.add_argument("--repeats", type=positive_int, default=2, metavar="N", help="with --baseline: runs of each, ours and the baseline's in turn, first ours then the baseline first (default: %(default)s)")
    parser.add_argument("--baseline-max-samples", type=positive_int, default=1000, metavar="N", help="the baseline runs only searches this long or shorter (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.render is not None:
        if args.baseline or args.quick:
            parser.error("--render writes the report of runs already made: leave --baseline and --quick out")
        try:
            rows, meta = read_results(args.render)
        except ValueError as error:
            parser.error(f"--render {args.render}: {error}")
        stem = check_report(parser, args.out)
        meta["reproduce"] = f"Rendered again by `{command_line(__file__, argv, flock=False)}` from runs made by `{meta['made_by']}`."
        text, checks = render(rows, meta)
        stem_file(stem, ".md").write_text(text)
        stem_file(stem, ".json").write_text(json.dumps({"rows": rows, "meta": {k: v for k, v in meta.items() if k != "reproduce"}, "growth": checks, "rendered_from": str(args.render),
                                                        "provenance": provenance(__file__, argv)}, indent=2) + "\n")
        print(text)
        return 0
    stem = check_report(parser, args.out)
    if not args.table.exists():
        parser.error(f"{args.table} does not exist: give the NAS-Bench-201 CSV with --table")
    if args.baseline is not None and (why := check_revision(args.baseline)) is not None:
        parser.error(f"--baseline {args.baseline}: {why}")
    plan = QUICK_PLAN if args.quick else PLAN
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            code = baseline_tree(args.baseline, Path(tmp) / "baseline") if args.baseline else None
        except subprocess.CalledProcessError as error:  # checked above; a tree git cannot archive is still one line
            parser.error(f"--baseline {args.baseline}: git could not extract it ({(error.stderr or b'').decode(errors='replace').strip() or error})")
        for strategy, sizes in plan.items():
            # the median of several: a short search is little more than its start-up, so one slow
            # start-up run makes its cost per proposal meaningless; every one is kept for its spread
            starts = [one(strategy, 1, Path(tmp), args.table, repeat=r) for r in range(STARTUP_RUNS)]
            startup = statistics.median(r["seconds"] for r in starts)
            for samples in sizes:
                paired = code is not None and samples <= args.baseline_max_samples
                ours, theirs = [], []
                for repeat in range(args.repeats if paired else 1):
                    # ours, baseline; then baseline, ours (the machine's speed drifts over minutes)
                    order = [None, code] if repeat % 2 == 0 else [code, None]
                    for which in order if paired else [None]:
                        run = one(strategy, samples, Path(tmp), args.table, which, repeat)
                        (ours if which is None else theirs).append(run)
                row = {**ours[0], "seconds": statistics.mean(r["seconds"] for r in ours), "startup_s": startup,
                       "startup_runs": [[r["proposals"], r["seconds"]] for r in starts]}
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
    meta = {"table": args.table.name, "baseline": args.baseline, "repeats": args.repeats, "startup_runs": STARTUP_RUNS, "quick": args.quick, "plan": plan}
    reproduce = f"Reproduce: `{command_line(__file__, argv, flock=False)}` (under `flock /tmp/mobilenas-cpu.lock`)."
    if args.quick:
        reproduce += " **--quick**: small sizes to check the pipeline; its growth verdicts are not the benchmark's."
    text, checks = render(rows, {**meta, "reproduce": reproduce})
    stem_file(stem, ".md").write_text(text)
    stem_file(stem, ".json").write_text(json.dumps({"rows": rows, "meta": meta, "growth": checks, "provenance": provenance(__file__, argv)}, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
