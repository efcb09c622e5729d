"""Fidelity of the latency lookup table on this machine, and the speed of predict().

Builds (or resumes) the full ``mobilenetv3`` table at 224x224 for ONNX Runtime with one thread,
then calibrates it on 50 random architectures of the space measured end to end (interleaved, out
of sample: none of them is one the correction was fitted on) and times ``LookupTable.predict``.
Prints a table and writes ``benchmarks/latency_calibration.md`` and ``.json`` (figures),
``.csv`` (one row per architecture) and ``.png`` (scatter plot) beside this script.

Targets on this machine: at least 95% of architectures within +-10% of measured, at least 80%
within +-5%. Latency measurements need a quiet machine, so run it under the shared lock::

    flock /tmp/mobilenas-cpu.lock python benchmarks/latency_calibration.py

The table goes to the default place (``$MOBILENAS_HOME/tables``), where ``nas-search`` and
``netadapt`` find it; a full build takes about 10 minutes here and resumes if interrupted. A second
calibration on the same table writes files of its own name::

    flock /tmp/mobilenas-cpu.lock python benchmarks/latency_calibration.py --seed 2 --name latency_calibration.seed2
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    check_out_folder,
    command_line,
    git_commit,
    nonnegative_float,
    positive_int,
    seed_number,
)

from mobilenas.runs import mobilenas_home

HERE = Path(__file__).resolve().parent
TARGET_WITHIN_10 = 0.95
TARGET_WITHIN_5 = 0.80
#: Above these the machine was too busy or too noisy for the figures to stand for it: other
#: processes' share of all cores' CPU time (what --wait-quiet waits under), and the median
#: IQR/median of the end-to-end runs (a quiet run here gives 1-3%).
BUSY_OTHERS_LIMIT = 0.15
BUSY_NOISE_LIMIT = 0.08


class LoadMonitor:
    """Share of the machine's CPU time other processes used between start() and stop() (Linux).

    Latency measured while other processes compete for the cores (or the caches and memory they
    share) reads high; this figure says how quiet the machine was, so the results can be judged.
    """

    def __init__(self) -> None:
        self.start_busy = self.start_own = self.start_wall = 0.0

    @staticmethod
    def _busy_s() -> float:
        fields = [float(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_s() -> float:
        times = os.times()
        return times.user + times.system + times.children_user + times.children_system

    def start(self) -> None:
        self.start_busy, self.start_own, self.start_wall = self._busy_s(), self._own_s(), time.monotonic()

    def stop(self) -> float:
        """Other processes' CPU time as a fraction of all cores' time (0 = quiet)."""
        if not Path("/proc/stat").is_file():
            return float("nan")
        wall = time.monotonic() - self.start_wall
        others = (self._busy_s() - self.start_busy) - (self._own_s() - self.start_own)
        return max(0.0, others) / (wall * (os.cpu_count() or 1))


def wait_for_quiet(monitor: LoadMonitor, patience_s: float, window_s: float = 5.0, quiet: float = 0.15) -> float:
    """Wait (up to ``patience_s``) for a ``window_s`` window in which others use under ``quiet`` of the CPU."""
    start = time.monotonic()
    while time.monotonic() - start < patience_s:
        monitor.start()
        time.sleep(window_s)
        share = monitor.stop()
        if share < quiet:
            break
        print(f"waiting for a quieter machine: other processes use {100 * share:.0f}% of the CPU", file=sys.stderr, flush=True)
    return time.monotonic() - start


def predict_timing(table_path: Path, archs: list, repeats: int) -> dict[str, float]:
    """Microseconds per predict(): first call for an architecture, and repeated calls."""
    from mobilenas.latency import LookupTable

    table = LookupTable.load(table_path)
    start = time.perf_counter()
    for arch in archs:
        table.predict(arch)
    first_us = (time.perf_counter() - start) / len(archs) * 1e6
    start = time.perf_counter()
    for _ in range(repeats):
        for arch in archs:
            table.predict(arch)
    repeated_us = (time.perf_counter() - start) / (repeats * len(archs)) * 1e6
    return {"first_call_us": first_us, "repeated_call_us": repeated_us, "architectures": len(archs)}


def lazy_table_fidelity(space: Any, backend: Any, report: Any) -> dict[str, float]:
    """The same architectures predicted by a fresh lazy table (what a search starts with).

    ``open_or_create_table`` with its default correction (a few architectures measured end to
    end), entries measured on demand; compared with the end-to-end measurements of the
    calibration. Two diagnostics tell the entries from the correction: the ratio of the lazy
    table's sums to the full table's for the same architectures, and the lazy sums put through
    the calibration's in-run correction.
    """
    from mobilenas.latency import Correction, fidelity, open_or_create_table
    from mobilenas.space import Architecture

    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        table = open_or_create_table(space, Path(scratch) / "lazy.jsonl", input_size=224, backend=backend)
        opened_s = time.perf_counter() - start
        archs = [Architecture.from_notation(r.notation) for r in report.rows]
        start = time.perf_counter()
        predicted = [table.predict(arch, measure_missing=True) for arch in archs]
        filled_s = time.perf_counter() - start
        figures = fidelity(predicted, [r.measured_ms for r in report.rows])
        sums = [table.predict_sum(arch) for arch in archs]
        ratios = np.array([s / r.sum_ms for s, r in zip(sums, report.rows, strict=True)])
        diagnostics: dict[str, float] = {"sum_ratio_median": float(np.median(ratios)), "sum_ratio_p10": float(np.percentile(ratios, 10)), "sum_ratio_p90": float(np.percentile(ratios, 90))}
        if report.in_run is not None:
            fresh = Correction(**report.in_run["correction"])
            through_in_run = [table.predict(arch, correction=fresh) for arch in archs]
            diagnostics["mape_with_in_run_correction"] = fidelity(through_in_run, [r.measured_ms for r in report.rows])["mape"]
        return figures | diagnostics | {"open_wall_time_s": opened_s, "fill_wall_time_s": filled_s, "entries": len(table), "correction_points": table.correction.points, "a": table.correction.a, "b": table.correction.b, "se_ms": table.correction.se_ms}


def busy_warnings(load_build: float | None, load_calibrate: float, noise: float) -> list[str]:
    """Why the figures do not stand for this machine, one line each (none: the machine was quiet
    enough). ``load_build`` is None when the table was reused (nothing measured, nothing to judge);
    NaN figures (no /proc/stat) are not judged."""
    warnings = []
    for what, share in (("while the table was built", load_build), ("during the calibration", load_calibrate)):
        if share is not None and share > BUSY_OTHERS_LIMIT:
            warnings.append(
                f"WARNING: figures not representative of this machine: other processes used {100 * share:.0f}% of the CPU {what} "
                f"(limit {100 * BUSY_OTHERS_LIMIT:.0f}%); run again on a quiet machine (--wait-quiet SECONDS)"
            )
    if noise > BUSY_NOISE_LIMIT:
        warnings.append(
            f"WARNING: figures not representative of this machine: measurement noise (median IQR/median) {100 * noise:.1f}% "
            f"(limit {100 * BUSY_NOISE_LIMIT:.0f}%); run again on a quiet machine"
        )
    return warnings


def table_line(build: Any) -> str:
    """Where the table's entries came from; they add up to its size (another process may have
    measured some of them meanwhile: a build or a search on the same table)."""
    others = f", {build.shared} measured by another process meanwhile" if build.shared else ""
    return f"table {build.path}: {build.entries} entries ({build.measured} measured in this run{others}, {build.reused} reused) in {build.wall_time_s:.0f} s"


def table_was_reused(build: Any) -> bool:
    """Nothing measured into the table by this build, nor by another process during it."""
    return bool(build.measured == 0 and build.shared == 0)


def load_line(load_build: float | None, load_calibrate: float) -> str:
    build = "the table was reused (nothing built, so no load to report for it)" if load_build is None else (
        f"other processes used {100 * load_build:.0f}% of the CPU time while the table was built")
    return f"machine load         {build}, {100 * load_calibrate:.0f}% during calibration"


def in_run_lines(report: Any) -> list[str]:
    """The drift of the machine since the correction was fitted, and the figures with the correction refitted in the run."""
    from mobilenas.latency import Correction

    if report.in_run is None or report.drift is None:
        return []
    fresh = report.in_run
    ok10 = "met" if fresh["within_10pct"] >= TARGET_WITHIN_10 else "NOT met"
    ok5 = "met" if fresh["within_5pct"] >= TARGET_WITHIN_5 else "NOT met"
    return [
        f"machine drift        the correction's {fresh['correction']['points']} architectures, measured again interleaved with the {report.samples}, ran {report.drift:.3f}x as long as when it was fitted",
        f"in-run correction    latency = {Correction(**fresh['correction']).describe()}, refitted on those fresh runs (no sampled architecture used)",
        f"  MAPE               {100 * fresh['mape']:.2f}%",
        f"  within +-10%       {100 * fresh['within_10pct']:.0f}%   (target >= {100 * TARGET_WITHIN_10:.0f}%: {ok10})",
        f"  within +-5%        {100 * fresh['within_5pct']:.0f}%   (target >= {100 * TARGET_WITHIN_5:.0f}%: {ok5})",
        f"  Spearman           {fresh['spearman']:.4f}",
        f"  mean error (bias)  {100 * fresh['mean_error']:+.2f}%",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=positive_int, default=50, help="architectures to calibrate on (default: 50)")
    parser.add_argument("--seed", type=seed_number, default=1, help="seed of the sampled architectures (default: 1)")
    parser.add_argument("--rounds", type=positive_int, default=10, help="interleaved rounds of end-to-end runs (default: 10)")
    home = "$MOBILENAS_HOME" if os.environ.get("MOBILENAS_HOME") else "$MOBILENAS_HOME, else ~/.cache/mobilenas"
    default_table = f"{mobilenas_home() / 'tables'}/mobilenetv3-<space fingerprint>-224px-onnxruntime-1t-<device fingerprint>.jsonl ({home})"
    parser.add_argument(
        "--table", type=Path, default=None,
        help=f"table file (default: the mobilenetv3 space's default table for this device, the one nas-search and netadapt use: {default_table}; "
        "a run prints its full name)",
    )
    parser.add_argument("--out", type=Path, default=HERE, help="folder the results go to (default: benchmarks/)")
    parser.add_argument("--name", default="latency_calibration", help="the results' file names: NAME.md, .json, .csv, .png in --out (default: %(default)s, the committed results)")
    parser.add_argument("--wait-quiet", type=nonnegative_float, default=0.0, metavar="SECONDS", help="first wait up to this long for other processes to use under 15%% of the CPU (default: 0, do not wait)")
    parser.add_argument("--refit-correction", action="store_true", help="keep the table's entries but measure the correction's architectures again")
    parser.add_argument(
        "--fresh", action="store_true",
        help="DELETE the table file and build it again (entries and end-to-end runs in one quiet window): the --table file, or without "
        "--table your default table, which nas-search and netadapt use (its name under --table)",
    )
    parser.add_argument("--timing-only", action="store_true", help="only time predict() on the existing table (1000 architectures) and print it; writes nothing")
    args = parser.parse_args(argv)
    if args.table is not None and args.table.is_dir():
        parser.error(f"--table {args.table}: is a folder; give the table file (a .jsonl), e.g. {args.table / 'mobilenetv3.jsonl'}")
    if args.timing_only and args.table is not None and not args.table.is_file():
        parser.error(f"--table {args.table}: no such file; --timing-only times an existing table (run this script without --timing-only first to build one)")
    if args.table is not None and not args.table.parent.is_dir():
        parser.error(f"--table {args.table}: the folder {args.table.parent} does not exist (make it first)")
    if args.timing_only and (args.fresh or args.refit_correction):
        parser.error("--timing-only measures nothing: drop --fresh and --refit-correction, or --timing-only")
    if not args.name or Path(args.name).name != args.name:
        parser.error(f"--name {args.name!r}: give a file name without a folder (the folder is --out)")
    if not args.timing_only:
        check_out_folder(parser, args.out)

    import torch

    torch.set_num_threads(1)
    from mobilenas.latency import (
        Correction,
        OnnxRuntimeBackend,
        build_table,
        calibrate,
        default_table_path,
    )
    from mobilenas.latency.calibrate import sample_architectures
    from mobilenas.runs import atomic_write_json, atomic_write_text, environment
    from mobilenas.space import mobilenetv3_space

    space = mobilenetv3_space()
    backend = OnnxRuntimeBackend(threads=1)
    table_path = args.table or default_table_path(space, backend, 224)
    if args.timing_only:
        if not table_path.is_file():
            parser.error(f"no table at {table_path}: run this script without --timing-only first, or give --table FILE")
        timing = predict_timing(table_path, sample_architectures(space, 1000, seed=99), repeats=10)
        print(f"predict()            {timing['first_call_us']:.0f} us first call per architecture, {timing['repeated_call_us']:.1f} us repeated ({timing['architectures']} architectures)")
        return 0
    if args.fresh and table_path.exists():
        print(f"--fresh: deleting the table {table_path}", file=sys.stderr, flush=True)
        table_path.unlink()
    monitor = LoadMonitor()
    waited_s = wait_for_quiet(monitor, args.wait_quiet)
    monitor.start()
    build = build_table(space, path=table_path, input_size=224, backend=backend, progress=True, refit_correction=args.refit_correction)
    load_build: float | None = monitor.stop()
    table = build.table
    reused_table = table_was_reused(build) and not args.refit_correction and not args.fresh
    if reused_table:
        load_build = None  # it measured a no-op
    print(table_line(build), flush=True)

    monitor.start()
    with tempfile.TemporaryDirectory() as scratch:
        report = calibrate(space, table, args.samples, seed=args.seed, rounds=args.rounds, out_dir=Path(scratch), progress=True, anchors=True)
        args.out.mkdir(parents=True, exist_ok=True)
        for suffix in ("csv", "png"):
            shutil.copyfile(Path(scratch) / f"calibration.{suffix}", args.out / f"{args.name}.{suffix}")
    load_calibrate = monitor.stop()
    timing = predict_timing(build.path, sample_architectures(space, 1000, seed=99), repeats=10)
    lazy = lazy_table_fidelity(space, backend, report)

    rows = sorted(report.rows, key=lambda r: r.measured_ms)
    header = f"{'#':>3}  {'measured ms':>11}  {'IQR ms':>7}  {'predicted ms':>12}  {'error':>7}"
    lines = [header] + [f"{r.index:>3}  {r.measured_ms:11.3f}  {r.measured_iqr_ms:7.3f}  {r.predicted_ms:12.3f}  {100 * r.error:+6.2f}%" for r in rows]
    verdict_10 = "met" if report.within_10pct >= TARGET_WITHIN_10 else "NOT met"
    verdict_5 = "met" if report.within_5pct >= TARGET_WITHIN_5 else "NOT met"
    noise = float(np.median([r.measured_iqr_ms / r.measured_ms for r in report.rows]))
    warnings = busy_warnings(load_build, load_calibrate, noise)
    if warnings:  # a target missed on a busy machine says little about the table
        verdict_10, verdict_5 = (f"{v}, but the machine was busy: see the warning" for v in (verdict_10, verdict_5))
    summary = [
        f"architectures        {report.samples} random mobilenetv3-space networks, 224x224, batch 1",
        f"device               {table.device.describe()}",
        f"table                {build.entries} entries, method {table.method.name} (cold cache {table.method.cold_cache}, {table.method.repeats} paired runs per entry)",
        f"correction           latency = {report.correction.describe()}, fitted on {report.correction.points} other architectures",
        f"MAPE                 {100 * report.mape:.2f}%",
        f"within +-10%         {100 * report.within_10pct:.0f}%   (target >= {100 * TARGET_WITHIN_10:.0f}%: {verdict_10})",
        f"within +-5%          {100 * report.within_5pct:.0f}%   (target >= {100 * TARGET_WITHIN_5:.0f}%: {verdict_5})",
        f"Spearman             {report.spearman:.4f}",
        f"RMSE                 {report.rmse_ms:.3f} ms",
        f"mean error (bias)    {100 * float(np.mean([r.error for r in report.rows])):+.2f}%",
        f"measurement noise    median IQR/median of the end-to-end runs {100 * noise:.1f}% (limit {100 * BUSY_NOISE_LIMIT:.0f}%)",
        load_line(load_build, load_calibrate) + f" (limit {100 * BUSY_OTHERS_LIMIT:.0f}%)",
        *in_run_lines(report),
        f"predict()            {timing['first_call_us']:.0f} us first call per architecture, {timing['repeated_call_us']:.1f} us repeated ({timing['architectures']} architectures)",
        f"lazy table           a fresh open_or_create_table() (correction on {lazy['correction_points']} architectures, {lazy['open_wall_time_s']:.0f} s) "
        f"filled on demand for the same {report.samples} architectures ({lazy['entries']} entries, {lazy['fill_wall_time_s']:.0f} s): "
        f"MAPE {100 * lazy['mape']:.2f}%, within +-10% {100 * lazy['within_10pct']:.0f}%, within +-5% {100 * lazy['within_5pct']:.0f}% "
        f"(correction {Correction(a=lazy['a'], b=lazy['b'], se_ms=lazy['se_ms']).describe()})",
        f"  its entries        lazy sum / full-table sum for the same architectures: median {lazy['sum_ratio_median']:.3f} (10-90%: {lazy['sum_ratio_p10']:.3f}-{lazy['sum_ratio_p90']:.3f})"
        + (f"; the lazy sums through the in-run correction: MAPE {100 * lazy['mape_with_in_run_correction']:.2f}%" if "mape_with_in_run_correction" in lazy else ""),
    ]
    print("\n".join(lines))
    print()
    print("\n".join(summary))
    for warning in warnings:
        print(warning, file=sys.stderr)

    stamp = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    payload = {
        "date": stamp,
        "command": command_line(__file__, argv),
        "commit": git_commit(),
        "device": table.device.to_dict(),
        "environment": environment(),
        "table": {"entries": build.entries, "measured_in_this_run": build.measured, "measured_by_others": build.shared, "reused": build.reused,
                  "reused_whole": reused_table, "build_wall_time_s": build.wall_time_s, "method": table.method.to_dict()},
        "calibration": report.to_dict() | {"csv": f"{args.name}.csv", "plot": f"{args.name}.png"},
        "targets": {"within_10pct": TARGET_WITHIN_10, "within_5pct": TARGET_WITHIN_5},
        "predict_timing": timing,
        "other_processes_cpu_share": {"build": load_build, "calibration": load_calibrate, "waited_for_quiet_s": waited_s},  # build None: table reused
        "noise_median_iqr_over_median": noise,
        "representative": not warnings,
        "warnings": warnings,
        "limits": {"other_processes_cpu_share": BUSY_OTHERS_LIMIT, "noise_median_iqr_over_median": BUSY_NOISE_LIMIT},
        "lazy_table": lazy,
        "rows": [{"measured_ms": r.measured_ms, "measured_iqr_ms": r.measured_iqr_ms, "predicted_ms": r.predicted_ms, "sum_ms": r.sum_ms, "notation": r.notation} for r in report.rows],
    }
    atomic_write_json(args.out / f"{args.name}.json", payload)
    markdown = [
        "# Latency table fidelity on this machine",
        "",
        f"Produced by `{payload['command']}` on {stamp}.",
        "",
        *[f"**{warning}**\n" for warning in warnings],
        "```",
        *summary,
        "```",
        "",
        "Per architecture (sorted by measured latency; error = (predicted - measured) / measured):",
        "",
        "```",
        *lines,
        "```",
        "",
        f"![measured vs predicted]({args.name}.png)",
        "",
        f"Details per architecture (block notation) are in `{args.name}.csv`; every figure is in `{args.name}.json`.",
        "",
    ]
    atomic_write_text(args.out / f"{args.name}.md", "\n".join(markdown))
    print(f"\nwrote {args.out / args.name}.md and .json, .csv, .png")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
