#!/usr/bin/env python3
"""Evaluation speed: batch norms folded into the convolutions against the model as trained.

Every proxy training ends with a validation pass (1,000 images by default), and NetAdapt
evaluates each proposal twice; ``evaluate`` runs a copy of the model with each batch norm folded
into its convolution (``mobilenas.space.builder.fold_batchnorm``). This measures, for the
reference networks and samples of the mobilenetv3 space at the proxy's 32x32 (adapted as the
proxy adapts them), the images/s of eval-mode inference with and without folding, rounds
interleaved (folded, plain, plain, folded, ...) so machine drift hits both; the figure is the
median ratio over rounds. It also checks that both give the same predictions: the largest
difference of a logit, and the share of images whose predicted class differs.

    flock /tmp/mobilenas-cpu.lock python benchmarks/train_eval_speed.py

Writes ``benchmarks/train_eval_speed.json`` and ``benchmarks/train_eval_speed.md``.
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
from _common import check_report, command_line, nonnegative_int, positive_int, write_report
from torch import nn

from mobilenas.runs import environment
from mobilenas.space import mobilenetv3_space, reference
from mobilenas.space.builder import fold_batchnorm
from mobilenas.train import build_for_data, load_dataset
from mobilenas.train.engine import recalibrate_batchnorm

HERE = Path(__file__).resolve().parent


def images_per_s(model: nn.Module, images: torch.Tensor, batch_size: int) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            model(images[i : i + batch_size])
    return len(images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads (default: %(default)s)")
    parser.add_argument("--images", type=positive_int, default=500, help="images per timed pass (default: %(default)s)")
    parser.add_argument("--rounds", type=positive_int, default=4, help="timed rounds of each, interleaved (default: %(default)s)")
    parser.add_argument("--samples", type=nonnegative_int, default=3, help="architectures sampled from the mobilenetv3 space, besides the three reference networks (default: %(default)s)")
    parser.add_argument("--out", default=str(HERE / "train_eval_speed"), help="output stem: writes OUT.md and OUT.json (default: the committed results)")
    args = parser.parse_args(argv)
    out = check_report(parser, args.out)
    torch.set_num_threads(args.threads)
    batch_size = 250  # the proxy's eval batch

    data = load_dataset("synthetic", train_size=2000, val_size=args.images, test_size=100)
    images = data.val.normalise(data.val.images).contiguous(memory_format=torch.channels_last)
    space = mobilenetv3_space(num_classes=10)
    rng = np.random.default_rng(1)
    archs = [(name, reference(name, num_classes=10)) for name in ("mobilenetv2", "mobilenetv3-small", "mobilenetv3-large")]
    archs += [(f"mobilenetv3 space sample {i + 1}", space.sample(rng)) for i in range(args.samples)]

    rows = []
    for name, arch in archs:
        torch.manual_seed(0)
        model = build_for_data(arch, data).to(memory_format=torch.channels_last)
        recalibrate_batchnorm(model, data.train, num_images=500, batch_size=batch_size, seed=0, channels_last=True, device=torch.device("cpu"))
        model.eval()
        folded = fold_batchnorm(model)
        with torch.no_grad():
            plain_logits, folded_logits = model(images), folded(images)
        images_per_s(model, images[:batch_size], batch_size)  # warm-up (oneDNN primitives, allocator)
        images_per_s(folded, images[:batch_size], batch_size)
        plain_rates, folded_rates, ratios = [], [], []
        for round_index in range(args.rounds):
            order = ("folded", "plain") if round_index % 2 == 0 else ("plain", "folded")
            measured = {which: images_per_s(folded if which == "folded" else model, images, batch_size) for which in order}
            plain_rates.append(measured["plain"])
            folded_rates.append(measured["folded"])
            ratios.append(measured["folded"] / measured["plain"])
        row = {
            "network": name,
            "notation": arch.to_notation(),
            "plain_images_per_s": statistics.median(plain_rates),
            "folded_images_per_s": statistics.median(folded_rates),
            "ratio": statistics.median(ratios),
            "max_logit_difference": float((plain_logits - folded_logits).abs().max()),
            "logit_scale": float(plain_logits.abs().max()),
            "predictions_differing": float((plain_logits.argmax(1) != folded_logits.argmax(1)).float().mean()),
        }
        rows.append(row)
        print(f"{name}: plain {row['plain_images_per_s']:.0f} img/s, folded {row['folded_images_per_s']:.0f} img/s, ratio {row['ratio']:.2f}", file=sys.stderr)

    ratio = statistics.median(r["ratio"] for r in rows)
    env = environment()
    command = command_line(__file__, argv)
    summary: dict[str, Any] = {
        "command": command,
        "input_size": data.input_size,
        "batch_size": batch_size,
        "images_per_pass": len(images),
        "threads": args.threads,
        "rounds": args.rounds,
        "networks": rows,
        "median_ratio": ratio,
        "environment": env,
    }
    lines = [
        "# Evaluation speed: batch norms folded into the convolutions",
        "",
        f"Command: `{command}`  ",
        f"Machine: {env.get('cpu_count')} CPUs, torch {env.get('torch')}; {args.threads} thread(s), eval mode, batches of {batch_size}, "
        f"{len(images)} synthetic {data.input_size}x{data.input_size} images a pass, channels-last, {args.rounds} rounds interleaved; "
        "networks adapted to 32x32 as the proxy adapts them, batch-norm statistics recalibrated on 500 training images.",
        "",
        "| network | as trained (img/s) | folded (img/s) | ratio (median of rounds) | largest logit difference | predictions differing |",
        "| --- | --- | --- | --- | --- | --- |",
        *[
            f"| {r['network']} | {r['plain_images_per_s']:.0f} | {r['folded_images_per_s']:.0f} | {r['ratio']:.2f} | "
            f"{r['max_logit_difference']:.1e} (logits up to {r['logit_scale']:.1f}) | {r['predictions_differing']:.1%} |"
            for r in rows
        ],
        "",
        f"Median ratio folded / as trained: **{ratio:.2f}x**. `evaluate` (every proxy training's validation pass, "
        "NetAdapt's evaluations) runs the folded copy.",
        "",
        "Sampled architectures:",
        "",
        *[f"- {r['network']}: `{r['notation']}`" for r in rows if r["network"].startswith("mobilenetv3 space")],
        "",
    ]
    write_report(out, summary, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
