#!/usr/bin/env python3
"""The built-in synthetic data set: what the reference networks reach, and the default trial's cost.

For each reference network and for a few architectures sampled from the ``mobilenetv3`` space,
runs the default proxy (``ProxyConfig()``, one thread) on the default synthetic data set and a
training 5x longer, and records validation accuracy and the wall time of each trial (build,
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

HERE = Path(__file__).resolve().parent
LONG_FACTOR = 5
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

    name, arch_dict, factor = job
    config = ProxyConfig()
    assert config.steps is not None
    config = dataclasses.replace(config, steps=config.steps * factor, threads=1)
    result = train_proxy(Architecture.from_dict(arch_dict), _DATA, config)
    return {"name": name, "factor": factor, **result.to_dict()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "train_synthetic"))
    args = parser.parse_args(argv)

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
    jobs = [(name, arch.to_dict(), factor) for factor in (LONG_FACTOR, 1) for name, arch in archs.items() if factor == 1 or name in REFERENCES]
    records = []
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers, initializer=_init) as pool:
        for record in pool.imap_unordered(_run, jobs):
            records.append(record)
            print(f"{record['name']} x{record['factor']}: {record['accuracy']:.3f} in {record['wall_time_s']:.1f} s", file=sys.stderr, flush=True)
    by = {(r["name"], r["factor"]): r for r in records}
    config = ProxyConfig()
    rows = []
    for name, arch in archs.items():
        default = by[(name, 1)]
        long = by.get((name, LONG_FACTOR))
        rows.append({
            "name": name,
            "params": count_params(arch),
            "default_val_accuracy": default["accuracy"],
            "default_trial_s": default["wall_time_s"],
            "default_train_s": default["train_time_s"],
            "train_images_per_s": default["images_per_s"],
            "long_val_accuracy": long["accuracy"] if long else None,
            "long_trial_s": long["wall_time_s"] if long else None,
        })
    space_times = [r["default_trial_s"] for r in rows if r["name"].startswith("mobilenetv3-space")]
    env = environment()
    summary = {
        "command": "flock /tmp/mobilenas-cpu.lock python benchmarks/train_synthetic.py",
        "config": config.to_dict(),
        "dataset_load_s": load_s,
        "rows": rows,
        "median_default_trial_s_mobilenetv3_space": statistics.median(space_times),
        "environment": env,
        "workers": args.workers,
    }
    Path(args.out + ".json").write_text(json.dumps(summary, indent=2) + "\n")
    assert config.steps is not None
    lines = [
        "# Synthetic data set: reference accuracies and the cost of a default proxy trial",
        "",
        f"Command: `{summary['command']}`  ",
        f"Machine: {env.get('cpu_count')} CPUs, torch {env.get('torch')}; every trial 1 thread, {args.workers} in parallel.",
        "",
        f"Data: `load_dataset(\"synthetic\")` (4,000 train / 1,000 val / 2,000 test, 32x32, drawn in {load_s:.2f} s). "
        f"Default proxy: {config.steps} steps of {config.batch_size} images ({config.optimizer}, lr {config.learning_rate}), "
        f"batch-norm recalibration on {config.bn_recalibration_images} images, evaluation on {config.val_subset} validation images. "
        f"Long: {LONG_FACTOR}x the steps.",
        "",
        "| network | params | default proxy val acc | default trial (s) | train img/s | 5x longer val acc | 5x trial (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        long_acc = f"{r['long_val_accuracy']:.3f}" if r["long_val_accuracy"] is not None else "-"
        long_s = f"{r['long_trial_s']:.1f}" if r["long_trial_s"] is not None else "-"
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.2f}M | {r['default_val_accuracy']:.3f} | {r['default_trial_s']:.1f} | {r['train_images_per_s']:.0f} | {long_acc} | {long_s} |")
    lines += [
        "",
        f"Median default trial for mobilenetv3-space samples: **{summary['median_default_trial_s_mobilenetv3_space']:.1f} s** on one thread (chance accuracy is 0.100).",
        "",
    ]
    Path(args.out + ".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
