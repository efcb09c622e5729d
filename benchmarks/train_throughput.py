#!/usr/bin/env python3
"""Throughput: training images/s of the proxy trainer against a bare PyTorch loop.

Same model (a mobilenetv3-space architecture at 32x32, built by the same builder with the same
seed), same batch size, same optimiser (the proxy's default AdamW), same threads, channels-last
in both. The bare loop is the textbook minimum: pre-normalised float tensors indexed in a
random order, forward, label-smoothed cross-entropy, backward, step. The proxy trainer adds
what it needs (uint8 batches normalised on the fly, learning-rate schedule, divergence checks,
gradient clipping). Rounds are interleaved (proxy, bare, bare, proxy, ...) so machine drift
hits both; the ratio is the median over rounds. Target: within 10%. A first round of each loop
is run and discarded (``--warmup-rounds``, default 1): it had read 0.74 against about 1.0 after.

    flock /tmp/mobilenas-cpu.lock python benchmarks/train_throughput.py

Writes ``benchmarks/train_throughput.json`` and ``benchmarks/train_throughput.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from _common import check_report, command_line, nonnegative_int, positive_int, write_report
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


def timed_rounds(measure: Callable[[str, int], float], rounds: int, warmup_rounds: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``warmup_rounds`` then ``rounds`` interleaved rounds (proxy, bare, bare, proxy, ...) of
    ``measure(which, round_index)`` (images/s of "proxy" or "bare"): the warm-up rounds, discarded
    from the medians (the first round reads low: 0.74 against about 1.0 after), and the timed ones."""
    warmup: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for round_index in range(warmup_rounds + rounds):
        order = ("proxy", "bare") if round_index % 2 == 0 else ("bare", "proxy")
        measured = {which: measure(which, round_index) for which in order}
        is_warmup = round_index < warmup_rounds
        label: str | int = f"warm-up {round_index + 1}" if is_warmup else round_index - warmup_rounds + 1
        row = {"round": label, "proxy": measured["proxy"], "bare": measured["bare"], "ratio": measured["proxy"] / measured["bare"]}
        (warmup if is_warmup else rows).append(row)
        print(f"round {label}{' (discarded)' if is_warmup else ''}: proxy {row['proxy']:.1f} img/s, bare {row['bare']:.1f} img/s, ratio {row['ratio']:.3f}", file=sys.stderr)
    return warmup, rows


def ratio_sentence(ratio: float, rows: list[dict[str, Any]], warmup: list[dict[str, Any]]) -> str:
    verdict = "within" if ratio >= 0.9 else "NOT within"
    discarded = (
        f"{len(warmup)} warm-up round{'s' if len(warmup) != 1 else ''} run first and discarded (the first round reads low)." if warmup
        else "No warm-up round discarded (--warmup-rounds 0): the first round reads low."
    )
    return f"Median ratio proxy / bare over the {len(rows)} timed rounds: **{ratio:.3f}** ({verdict} 10%). {discarded}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--steps", type=positive_int, default=20, help="steps per timed round (default: %(default)s)")
    parser.add_argument("--rounds", type=positive_int, default=6, help="timed rounds of each loop, interleaved (default: %(default)s)")
    parser.add_argument(
        "--warmup-rounds", type=nonnegative_int, default=1, metavar="N",
        help="rounds run first, as the timed ones, and discarded from the median (the first one reads low); 0 keeps every round (default: %(default)s)",
    )
    parser.add_argument("--out", default=str(HERE / "train_throughput"), help="output stem: writes OUT.md and OUT.json (default: the committed results)")
    args = parser.parse_args(argv)
    out = check_report(parser, args.out)
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

    def measure(which: str, round_index: int) -> float:
        if which == "proxy":
            return train_model(proxy_model, data, config, steps=args.steps).images_per_s
        return bare_loop(bare_model, images, labels, config, args.steps, seed=round_index)

    warmup, rows = timed_rounds(measure, args.rounds, args.warmup_rounds)
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
        "warmup_rounds": warmup,  # run as the timed rounds, left out of the medians
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
        *[f"| {r['round']} (discarded) | {r['proxy']:.1f} | {r['bare']:.1f} | {r['ratio']:.3f} |" for r in warmup],
        *[f"| {r['round']} | {r['proxy']:.1f} | {r['bare']:.1f} | {r['ratio']:.3f} |" for r in rows],
        "",
        ratio_sentence(ratio, rows, warmup),
        "",
    ]
    write_report(out, summary, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
