#!/usr/bin/env python3
"""The built-in synthetic data set: what the reference networks reach, and the default trial's cost.

For each reference network and for a few architectures sampled from the ``mobilenetv3`` space,
runs the proxy (``ProxyConfig()``, one thread) on the default synthetic data set at the budgets
the fidelity benchmark compared (10, 20 and 40 steps of 32 images) and the reference networks
also for 200 steps, and records validation accuracy and the wall time of each trial (build,
train, batch-norm recalibration, evaluation). The default trial's time is what the quickstart
(``nas-search --target-latency 15ms``) pays per candidate.

    flock /tmp/mobilenas-cpu.lock python benchmarks/train_synthetic.py

Writes ``benchmarks/train_synthetic.json`` and ``benchmarks/train_synthetic.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import check_out, check_report, command_line, positive_int, write_report

HERE = Path(__file__).resolve().parent
BUDGETS = (10, 20, 40)  # steps of 32 images
LONG_STEPS = 200
SAMPLES = 4

_DATA: Any = None


def _init() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    global _DATA
    from mobilenas.train import load_dataset

    _DATA = load_dataset("synthetic")


def _run(job: tuple[str, dict[str, Any], int]) -> dict[str, Any]:
    from mobilenas.space import Architecture
    from mobilenas.train import ProxyConfig, train_proxy

    name, arch_dict, steps = job
    config = dataclasses.replace(ProxyConfig(), steps=steps, threads=1)
    result = train_proxy(Architecture.from_dict(arch_dict), _DATA, config)
    return {"name": name, "budget": steps, **result.to_dict()}


def jobs_keys(jobs: list[tuple[str, dict[str, Any], int]]) -> list[tuple[str, int]]:
    """The (network, steps) pairs a full run trains."""
    return [(name, steps) for name, _, steps in jobs]


def _read_records(parser: argparse.ArgumentParser, path: Path, wanted: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """The per-trial results of ``path``, refused in one line (exit 2) if unreadable or missing trials."""
    try:
        records = json.loads(path.read_text())
        have = {(r["name"], r["budget"]) for r in records}
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as error:
        parser.error(f"--records {path}: not the per-trial results of this script ({type(error).__name__}: {error}); drop --reuse-records to train again")
    missing = sorted(wanted - have)
    if missing:
        name, steps = missing[0]
        parser.error(f"--records {path}: {len(missing)} trials missing (e.g. {name!r} at {steps} steps); drop --reuse-records to train them")
    return list(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=positive_int, default=2, help="trainings in parallel, one thread each (default: %(default)s)")
    parser.add_argument("--out", default=str(HERE / "train_synthetic"), help="output stem: writes OUT.md and OUT.json (default: the committed results)")
    parser.add_argument("--reuse-records", action="store_true", help="rewrite the tables from --records without training")
    parser.add_argument("--records", default="/tmp/train_synthetic.records.json", help="raw per-trial results (kept outside the repo)")
    args = parser.parse_args(argv)
    out = check_report(parser, args.out)
    records_file = Path(args.records)
    if args.reuse_records:
        # Refused now: a missing file had quietly started the whole multi-hour training instead.
        if records_file.is_dir():
            parser.error(f"--records {records_file}: is a folder; give the JSON file of per-trial results a training run wrote")
        if not records_file.is_file():
            parser.error(f"--records {records_file}: no such file; --reuse-records rewrites the tables from it (drop --reuse-records to train again)")
    else:
        check_out(parser, args.records, option="--records")

    import numpy as np

    from mobilenas.runs import environment
    from mobilenas.space import REFERENCES, count_params, mobilenetv3_space, reference
    from mobilenas.train import ProxyConfig, load_dataset

    start = time.perf_counter()
    load_dataset("synthetic")
    load_s = time.perf_counter() - start
    archs = {name: reference(name, num_classes=10) for name in REFERENCES}
    rng = np.random.default_rng(123)
    space = mobilenetv3_space(num_classes=10)
    for i in range(SAMPLES):
        archs[f"mobilenetv3-space sample {i}"] = space.sample(rng)
    jobs = [(name, arch.to_dict(), LONG_STEPS) for name, arch in archs.items() if name in REFERENCES]
    jobs += [(name, arch.to_dict(), steps) for steps in reversed(BUDGETS) for name, arch in archs.items()]
    records = []
    if args.reuse_records:
        records = _read_records(parser, records_file, set(jobs_keys(jobs)))  # only rewrite the tables
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.workers, initializer=_init) as pool:
            for record in pool.imap_unordered(_run, jobs):
                records.append(record)
                print(f"{record['name']} {record['budget']} steps: {record['accuracy']:.3f} in {record['wall_time_s']:.1f} s", file=sys.stderr, flush=True)
        records_file.write_text(json.dumps(records))
    by = {(r["name"], r["budget"]): r for r in records}
    config = ProxyConfig()
    assert config.steps is not None
    rows = []
    for name, arch in archs.items():
        long = by.get((name, LONG_STEPS))
        row: dict[str, Any] = {"name": name, "params": count_params(arch)}
        for steps in BUDGETS:
            row[f"val_accuracy_{steps}"] = by[(name, steps)]["accuracy"]
            row[f"trial_s_{steps}"] = by[(name, steps)]["wall_time_s"]
        row["train_images_per_s"] = by[(name, BUDGETS[-1])]["images_per_s"]
        row["default_val_accuracy"] = by[(name, config.steps)]["accuracy"] if (name, config.steps) in by else None
        row["default_trial_s"] = by[(name, config.steps)]["wall_time_s"] if (name, config.steps) in by else None
        row[f"val_accuracy_{LONG_STEPS}"] = long["accuracy"] if long else None
        row[f"trial_s_{LONG_STEPS}"] = long["wall_time_s"] if long else None
        rows.append(row)
    space_times = {steps: [r[f"trial_s_{steps}"] for r in rows if r["name"].startswith("mobilenetv3-space")] for steps in BUDGETS}
    env = environment()
    summary = {
        "command": command_line(__file__, argv),
        "config": config.to_dict(),
        "dataset_load_s": load_s,
        "rows": rows,
        "median_trial_s_mobilenetv3_space": {str(k): statistics.median(v) for k, v in space_times.items()},
        "default_steps": config.steps,
        "environment": env,
        "workers": args.workers,
    }
    lines = [
        "# Synthetic data set: reference accuracies and the cost of a default proxy trial",
        "",
        f"Command: `{summary['command']}`  ",
        f"Machine: {env.get('cpu_count')} CPUs, torch {env.get('torch')}; every trial 1 thread, {args.workers} in parallel.",
        "",
        f"Data: `load_dataset(\"synthetic\")` (4,000 train / 1,000 val / 2,000 test, 32x32, drawn in {load_s:.2f} s). "
        f"Proxy: `ProxyConfig()` ({config.optimizer}, lr {config.learning_rate}, batch {config.batch_size}, "
        f"batch-norm recalibration on {config.bn_recalibration_images} images, evaluation on {config.val_subset} validation images) "
        f"at {', '.join(map(str, BUDGETS))} steps (the default is {config.steps}) and {LONG_STEPS} steps for the reference networks.",
        "",
        "| network | params | " + " | ".join(f"val acc {s} steps" for s in BUDGETS) + f" | val acc {LONG_STEPS} steps | "
        + " | ".join(f"trial s ({s})" for s in BUDGETS) + " | train img/s |",
        "| --- | --- | " + " | ".join("---" for _ in BUDGETS) + " | --- | " + " | ".join("---" for _ in BUDGETS) + " | --- |",
    ]
    for r in rows:
        long_acc = f"{r[f'val_accuracy_{LONG_STEPS}']:.3f}" if r[f"val_accuracy_{LONG_STEPS}"] is not None else "-"
        lines.append(
            f"| {r['name']} | {r['params'] / 1e6:.2f}M | " + " | ".join(f"{r[f'val_accuracy_{s}']:.3f}" for s in BUDGETS)
            + f" | {long_acc} | " + " | ".join(f"{r[f'trial_s_{s}']:.1f}" for s in BUDGETS) + f" | {r['train_images_per_s']:.0f} |"
        )
    medians = summary["median_trial_s_mobilenetv3_space"]
    lines += [
        "",
        "Median trial time of the mobilenetv3-space samples (one thread, build + train + recalibrate + evaluate): "
        + ", ".join(f"{s} steps **{medians[str(s)]:.1f} s**" for s in BUDGETS) + ". Chance accuracy is 0.100.",
        "",
    ]
    write_report(out, summary, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
