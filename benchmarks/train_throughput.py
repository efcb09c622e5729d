#!/usr/bin/env python3
"""Throughput: training images/s of the proxy trainer against a bare PyTorch loop.

Same model (a mobilenetv3-space architecture at 32x32, built by the same builder with the same
seed), same batch size, same optimiser (the proxy's default AdamW), same threads, channels-last
in both. The bare loop is the textbook minimum: pre-normalised float tensors indexed in a
random order, forward, label-smoothed cross-entropy, backward, step. The proxy trainer adds
what it needs (uint8 batches normalised on the fly, learning-rate schedule, divergence checks,
gradient clipping). Rounds are interleaved (proxy, bare, bare, proxy, ...) so machine drift
hits both; the ratio is the median over rounds. Target: within 10%.

    flock /tmp/mobilenas-cpu.lock python benchmarks/train_throughput.py

Writes ``benchmarks/train_throughput.json`` and ``benchmarks/train_throughput.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from _common import check_out, command_line, positive_int, write_report
from torch import nn

from mobilenas.runs import environment
from mobilenas.space import mobilenetv3_space
from mobilenas.train import ProxyConfig, build_for_data, load_dataset, train_model
from mobilenas.train.engine import make_optimizer

HERE = Path(__file__).resolve().parent


def bare_loop(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: ProxyConfig, steps: int, seed: int) -> float:
    """Images per second of the minimal loop over pre-normalised channels-last tensors."""
    optimizer = make_optimizer(model, config.optimiser_settings())
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=generator)
    model.train()
    batch = config.batch_size
    start = time.perf_counter()
    for step in range(steps):
        index = order[(step * batch) % (len(images) - batch + 1) :][:batch]
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(images[index]), labels[index])
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--steps", type=positive_int, default=20, help="steps per timed round (default: %(default)s)")
    parser.add_argument("--rounds", type=positive_int, default=6, help="timed rounds of each loop, interleaved (default: %(default)s)")
    parser.add_argument("--out", default=str(HERE / "train_throughput"), help="output stem: writes OUT.md and OUT.json (default: the committed results)")
    args = parser.parse_args(argv)
    check_out(parser, args.out + ".md", args.out + ".json")
    torch.set_num_threads(args.threads)

    data = load_dataset("synthetic", train_size=2000, val_size=200, test_size=100)
    arch = mobilenetv3_space(num_classes=10).sample(np.random.default_rng(1))
    config = ProxyConfig(steps=args.steps, threads=args.threads, train_subset=None)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        proxy_model = build_for_data(arch, data).to(memory_format=torch.channels_last)
        torch.manual_seed(0)
        bare_model = build_for_data(arch, data).to(memory_format=torch.channels_last)
    images = data.train.normalise(data.train.images).contiguous(memory_format=torch.channels_last)
    labels = data.train.labels

    # Warm-up both (oneDNN primitive creation, allocator) before timing.
    train_model(proxy_model, data, config, steps=3)
    bare_loop(bare_model, images, labels, config, 3, seed=0)

    rows = []
    for round_index in range(args.rounds):
        order = ("proxy", "bare") if round_index % 2 == 0 else ("bare", "proxy")
        measured: dict[str, float] = {}
        for which in order:
            if which == "proxy":
                result = train_model(proxy_model, data, config, steps=args.steps)
                measured["proxy"] = result.images_per_s
            else:
                measured["bare"] = bare_loop(bare_model, images, labels, config, args.steps, seed=round_index)
        rows.append({"round": round_index + 1, **measured, "ratio": measured["proxy"] / measured["bare"]})
        print(f"round {round_index + 1}: proxy {measured['proxy']:.1f} img/s, bare {measured['bare']:.1f} img/s, ratio {rows[-1]['ratio']:.3f}", file=sys.stderr)

    ratio = statistics.median(r["ratio"] for r in rows)
    env = environment()
    summary: dict[str, Any] = {
        "command": command_line(__file__, argv),
        "architecture": arch.to_notation(),
        "input_size": data.input_size,
        "batch_size": config.batch_size,
        "threads": args.threads,
        "steps_per_round": args.steps,
        "rounds": rows,
        "median_proxy_images_per_s": statistics.median(r["proxy"] for r in rows),
        "median_bare_images_per_s": statistics.median(r["bare"] for r in rows),
        "median_ratio": ratio,
        "within_10_percent": ratio >= 0.9,
        "environment": env,
    }
    lines = [
        "# Training throughput: proxy trainer vs a bare PyTorch loop",
        "",
        f"Command: `{summary['command']}`  ",
        f"Machine: {env.get('cpu_count')} CPUs, torch {env.get('torch')}; {args.threads} thread(s), batch {config.batch_size}, "
        f"32x32 synthetic images, {args.steps} steps per round, rounds interleaved.",
        "",
        f"Model: `{arch.to_notation()}` (mobilenetv3 space sample, adapted to 32x32), AdamW, label smoothing {config.label_smoothing}, channels-last in both.",
        "",
        "| round | proxy trainer (img/s) | bare loop (img/s) | ratio |",
        "| --- | --- | --- | --- |",
        *[f"| {r['round']} | {r['proxy']:.1f} | {r['bare']:.1f} | {r['ratio']:.3f} |" for r in rows],
        "",
        f"Median ratio proxy / bare: **{ratio:.3f}** ({'within' if ratio >= 0.9 else 'NOT within'} 10%).",
        "",
    ]
    write_report(args.out, summary, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
