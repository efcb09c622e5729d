#!/usr/bin/env python3
"""Time of one default proxy trial on the synthetic set, one trial at a time on one thread.

What the quickstart (``nas-search --target-latency 15ms``) pays per candidate: ``train_proxy``
with ``ProxyConfig()`` (build, train, batch-norm recalibration, evaluation) for architectures
sampled from the ``mobilenetv3`` space, run sequentially so the trials do not share the cores.

    flock /tmp/mobilenas-cpu.lock python benchmarks/train_default_trial.py

Writes ``benchmarks/train_default_trial.json`` and ``benchmarks/train_default_trial.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from _common import check_report, command_line, positive_int, write_report

from mobilenas.runs import environment
from mobilenas.space import mobilenetv3_space
from mobilenas.train import ProxyConfig, load_dataset, train_proxy

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=positive_int, default=6, help="architectures sampled and trained (default: %(default)s)")
    parser.add_argument("--out", default=str(HERE / "train_default_trial"), help="output stem: writes OUT.md and OUT.json (default: the committed results)")
    args = parser.parse_args(argv)
    out = check_report(parser, args.out)
    start = time.perf_counter()
    data = load_dataset("synthetic")
    load_s = time.perf_counter() - start
    config = ProxyConfig()
    space = mobilenetv3_space(num_classes=10)
    rng = np.random.default_rng(7)
    rows = []
    for i in range(args.samples):
        arch = space.sample(rng)
        result = train_proxy(arch, data, config)
        rows.append({"sample": i, "params": result.params, **{k: result.to_dict()[k] for k in ("accuracy", "wall_time_s", "train_time_s", "eval_time_s", "images_per_s", "status")}})
        print(f"sample {i}: {result.accuracy:.3f} in {result.wall_time_s:.1f} s (train {result.train_time_s:.1f} s, evaluation {result.eval_time_s:.1f} s)", file=sys.stderr, flush=True)
    env = environment()
    median = statistics.median(r["wall_time_s"] for r in rows)
    summary = {
        "command": command_line(__file__, argv),
        "config": config.to_dict(),
        "dataset_load_s": load_s,
        "rows": rows,
        "median_trial_s": median,
        "environment": env,
    }
    lines = [
        "# One default proxy trial on the synthetic set (one thread, one trial at a time)",
        "",
        f"Command: `{summary['command']}`  ",
        f"Machine: {env.get('cpu_count')} CPUs, torch {env.get('torch')}. Data: `load_dataset(\"synthetic\")` drawn in {load_s:.2f} s. "
        f"Proxy: `ProxyConfig()`: {config.steps} steps of {config.batch_size} images, recalibration on {config.bn_recalibration_images}, "
        f"evaluation on {config.val_subset} validation images.",
        "",
        "| sample | params | val acc | trial (s) | train (s) | recalibrate + evaluate (s) | train img/s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[f"| {r['sample']} | {r['params'] / 1e6:.2f}M | {r['accuracy']:.3f} | {r['wall_time_s']:.1f} | {r['train_time_s']:.1f} | {r['eval_time_s']:.1f} | {r['images_per_s']:.0f} |" for r in rows],
        "",
        f"Median default trial: **{median:.1f} s**.",
        "",
    ]
    write_report(out, summary, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
