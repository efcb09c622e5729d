#!/usr/bin/env python3
"""Proxy fidelity: does the short proxy training rank architectures like a 5x longer training?

20 architectures sampled from the ``mobilenetv3`` space (seeded) are trained on a CIFAR-10
subset (4,000 training images, 1,000 validation images carved from the training set) with the
proxy trainer at three candidate budgets and once at a reference budget 5x the middle one. For
each candidate budget it reports the Kendall tau (and Spearman rho) between the candidate's
validation accuracy and the reference's, a bootstrap 90% interval of tau over architectures, the
CPU time per trial, and tau per CPU-minute. NAS-Bench-201's 12-epoch vs 200-epoch tau is 0.70.

Every training runs with one thread; ``--workers 2`` runs two in parallel (on this 2-core
machine two 1-thread trainings match one 2-thread training). Results are appended to a cache
file (one JSON line per training) as they finish, so an interrupted run resumes where it stopped.

    python ../shared/data/cifar10/to_batches.py /tmp/cifar      # once: the standard layout, outside the repo
    flock /tmp/mobilenas-cpu.lock python benchmarks/train_proxy_fidelity.py --data-dir /tmp/cifar

Writes ``benchmarks/train_proxy_fidelity.json`` and ``benchmarks/train_proxy_fidelity.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import at_least, check_out, command_line, positive_int, write_report

HERE = Path(__file__).resolve().parent
# Candidate proxy budgets in training images (batch 32), and the reference budget: 5x the middle one.
CANDIDATE_IMAGES = (320, 640, 1280)
REFERENCE_IMAGES = 3200
BATCH_SIZE = 32
TRAIN_SIZE = 4000
VAL_SIZE = 1000
TEST_SIZE = 2000
NUM_ARCHITECTURES = 20
SPACE_SEED = 0
DECISION = """## Choice of the default budget

Taken from this measurement, with one judgement call. Tau per CPU-minute is highest at 320 images
(10 steps), but the three taus are not distinguishable: their 90% intervals overlap over most of
their width, and their order (longer proxy, lower tau against a longer reference) is the opposite
of what a real effect would give, so the differences are noise from a 1,000-image validation set
and a narrow accuracy range. At 10 steps the mean validation accuracy (0.129) is barely above
chance (0.100) and five of the 20 networks sit at 0.100-0.117; on the synthetic quickstart set
10 steps spread the reference networks over only 0.178-0.208 (`train_synthetic.md`). The default is
therefore **20 steps of 32 images (640 images)**: tau 0.42, the cheapest budget whose accuracies
are clearly above chance, and a median of 11.6 s a trial (8-23 s) on one thread including the
evaluation (`train_default_trial.md`), inside the quickstart's budget. Every budget a CPU allows per trial
here is a weak ranker (tau 0.3-0.5, against 0.70 for NAS-Bench-201's 12 vs 200 epochs on a GPU);
the search should not over-trust small accuracy differences.

Timing caveat: the machine was shared with other jobs during this run (load average 3-4 on 2
cores), so the trial times here are 1.5-2x what an idle machine gives; the ratios between
budgets hold.
"""


def _load(data_dir: str) -> Any:
    from mobilenas.train.data import load_dataset

    return load_dataset("cifar10", data_dir=data_dir, train_size=TRAIN_SIZE, val_size=VAL_SIZE, test_size=TEST_SIZE, seed=0)


def _architectures(count: int) -> list[Any]:
    import numpy as np

    from mobilenas.space import mobilenetv3_space

    space = mobilenetv3_space(num_classes=10)
    rng = np.random.default_rng(SPACE_SEED)
    return [space.sample(rng) for _ in range(count)]


_DATA: Any = None


def _worker_init(data_dir: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    global _DATA
    _DATA = _load(data_dir)


def _run(job: tuple[int, int, dict[str, Any], bool]) -> dict[str, Any]:
    """Train architecture ``index`` for ``images`` training images; returns one cache record."""
    import torch

    from mobilenas.space import Architecture
    from mobilenas.train.proxy import ProxyConfig, build_for_data, evaluate, train_proxy

    index, images, arch_dict, is_reference = job
    arch = Architecture.from_dict(arch_dict)
    config = dataclasses.replace(ProxyConfig(), steps=images // BATCH_SIZE, batch_size=BATCH_SIZE, threads=1, seed=0)
    result = train_proxy(arch, _DATA, config, keep_weights=is_reference)
    record: dict[str, Any] = {"arch": index, "images": images, **result.to_dict()}
    if result.state_dict is not None:
        with torch.random.fork_rng(devices=[]):
            model = build_for_data(arch, _DATA)
        model.load_state_dict(result.state_dict)
        torch.set_num_threads(1)
        record["test_accuracy"], record["test_loss"] = evaluate(model, _DATA.test)
    return record


def _kendall(a: Sequence[float | None], b: Sequence[float | None]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def _bootstrap_tau(a: list[float], b: list[float], seed: int = 0, rounds: int = 2000) -> tuple[float, float]:
    import numpy as np

    rng = np.random.default_rng(seed)
    x, y = np.asarray(a), np.asarray(b)
    taus = []
    for _ in range(rounds):
        pick = rng.integers(0, len(x), len(x))
        if len(set(pick.tolist())) < 3:
            continue
        taus.append(_kendall(x[pick].tolist(), y[pick].tolist()))
    clean = np.asarray([t for t in taus if np.isfinite(t)])
    return float(np.percentile(clean, 5)), float(np.percentile(clean, 95))


def analyse(records: list[dict[str, Any]], archs: list[Any]) -> dict[str, Any]:
    from scipy.stats import spearmanr

    from mobilenas.space import count_params

    by = {(r["arch"], r["images"]): r for r in records}
    n = len(archs)
    reference = [by[(i, REFERENCE_IMAGES)]["accuracy"] for i in range(n)]
    reference_test = [by[(i, REFERENCE_IMAGES)].get("test_accuracy") for i in range(n)]
    rows = []
    for images in CANDIDATE_IMAGES:
        accuracies = [by[(i, images)]["accuracy"] for i in range(n)]
        cpu_s = [by[(i, images)]["wall_time_s"] for i in range(n)]
        tau = _kendall(accuracies, reference)
        low, high = _bootstrap_tau(accuracies, reference)
        mean_cpu_min = sum(cpu_s) / n / 60.0
        rows.append({
            "train_images": images,
            "steps": images // BATCH_SIZE,
            "kendall_tau_vs_reference_val": tau,
            "kendall_tau_90ci": [low, high],
            "kendall_tau_vs_reference_test": _kendall(accuracies, reference_test),
            "spearman_vs_reference_val": float(spearmanr(accuracies, reference).statistic),
            "mean_val_accuracy": sum(accuracies) / n,
            "mean_trial_s": sum(cpu_s) / n,
            "mean_train_s": sum(by[(i, images)]["train_time_s"] for i in range(n)) / n,
            "tau_per_cpu_minute": tau / mean_cpu_min if mean_cpu_min > 0 else None,
            "failed": sum(by[(i, images)]["status"] != "ok" for i in range(n)),
        })
    ref_times = [by[(i, REFERENCE_IMAGES)]["wall_time_s"] for i in range(n)]
    per_arch = []
    for i, arch in enumerate(archs):
        per_arch.append({
            "arch": i,
            "params": count_params(arch),
            "notation": arch.to_notation(),
            **{f"val_acc_{images}": by[(i, images)]["accuracy"] for images in (*CANDIDATE_IMAGES, REFERENCE_IMAGES)},
            "test_acc_reference": reference_test[i],
            "train_images_per_s": by[(i, REFERENCE_IMAGES)]["images_per_s"],
        })
    return {
        "candidates": rows,
        "reference": {
            "train_images": REFERENCE_IMAGES,
            "steps": REFERENCE_IMAGES // BATCH_SIZE,
            "mean_val_accuracy": sum(reference) / n,
            "mean_test_accuracy": sum(t for t in reference_test if t is not None) / n,
            "mean_trial_s": sum(ref_times) / n,
            "kendall_tau_val_vs_test": _kendall(reference, reference_test),
        },
        "architectures": per_arch,
    }


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Proxy fidelity (CIFAR-10 subset, mobilenetv3 space)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}; every training 1 thread, {meta['workers']} in parallel; total wall time {meta['wall_time_min']:.1f} min.",
        "",
        f"Data: CIFAR-10 (standard python layout written by `../shared/data/cifar10/to_batches.py`), {TRAIN_SIZE} training images, "
        f"{VAL_SIZE} validation images carved from the training set (stratified, seed 0), {TEST_SIZE} test images. "
        f"{meta['num_architectures']} architectures sampled from `mobilenetv3_space(num_classes=10)` with seed {SPACE_SEED}, "
        "adapted to 32x32 by the builder (stem and first stride-2 block at stride 1).",
        "",
        f"Proxy: the default `ProxyConfig` ({meta['config']}) except for the budget. Reference: the same "
        f"trainer for {REFERENCE_IMAGES} images ({REFERENCE_IMAGES // BATCH_SIZE} steps of {BATCH_SIZE}), 5x the middle candidate.",
        "",
        "| candidate budget | steps | mean val acc | Kendall tau vs reference (90% CI) | tau vs reference test acc | Spearman | mean trial (s, 1 thread) | tau per CPU-minute |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in summary["candidates"]:
        low, high = row["kendall_tau_90ci"]
        lines.append(
            f"| {row['train_images']} images | {row['steps']} | {row['mean_val_accuracy']:.3f} | {row['kendall_tau_vs_reference_val']:.3f} ({low:.2f} to {high:.2f}) | "
            f"{row['kendall_tau_vs_reference_test']:.3f} | {row['spearman_vs_reference_val']:.3f} | {row['mean_trial_s']:.1f} | {row['tau_per_cpu_minute']:.2f} |"
        )
    ref = summary["reference"]
    lines += [
        f"| reference: {ref['train_images']} images | {ref['steps']} | {ref['mean_val_accuracy']:.3f} (test {ref['mean_test_accuracy']:.3f}) | - | - | - | {ref['mean_trial_s']:.1f} | - |",
        "",
        f"Reference validation vs test accuracy: Kendall tau {ref['kendall_tau_val_vs_test']:.3f} (the noise floor of a 1,000-image validation set).",
        "NAS-Bench-201 (12 vs 200 epochs, full CIFAR-10): tau 0.70.",
        "",
        "## Per architecture (validation accuracy)",
        "",
        "| # | params | " + " | ".join(f"{i} img" for i in (*CANDIDATE_IMAGES, REFERENCE_IMAGES)) + " | reference test | train img/s |",
        "| --- | --- | " + " | ".join("---" for _ in range(len(CANDIDATE_IMAGES) + 1)) + " | --- | --- |",
    ]
    for a in summary["architectures"]:
        lines.append(
            f"| {a['arch']} | {a['params'] / 1e6:.2f}M | "
            + " | ".join(f"{a[f'val_acc_{i}']:.3f}" for i in (*CANDIDATE_IMAGES, REFERENCE_IMAGES))
            + f" | {a['test_acc_reference']:.3f} | {a['train_images_per_s']:.0f} |"
        )
    lines += ["", meta.get("conclusion", ""), "", DECISION, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", required=True,
        help="folder holding cifar-10-batches-py, CIFAR-10's standard python layout (as torchvision downloads it); to write it "
        "from the shared copy, outside this repository: python ../shared/data/cifar10/to_batches.py DIR",
    )
    parser.add_argument("--architectures", type=at_least(3, "a rank correlation"), default=NUM_ARCHITECTURES, metavar="N", help="architectures sampled (default: %(default)s)")
    parser.add_argument("--workers", type=positive_int, default=2, help="trainings in parallel, one thread each (default: %(default)s)")
    parser.add_argument("--cache", default=str(HERE / "train_proxy_fidelity.cache.jsonl"), help="per-training results (resume file)")
    parser.add_argument("--out", default=str(HERE / "train_proxy_fidelity"), help="output path without extension")
    args = parser.parse_args(argv)
    check_out(parser, args.out + ".md", args.out + ".json")
    check_out(parser, args.cache, option="--cache")

    from mobilenas.runs import environment
    from mobilenas.train.proxy import ProxyConfig

    archs = _architectures(args.architectures)
    cache = Path(args.cache)
    records: list[dict[str, Any]] = []
    if cache.exists():
        for line in cache.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line from an interrupted run
    done = {(r["arch"], r["images"]) for r in records}
    jobs = [
        (i, images, archs[i].to_dict(), images == REFERENCE_IMAGES)
        for images in (REFERENCE_IMAGES, *reversed(CANDIDATE_IMAGES))  # longest first balances the two workers
        for i in range(len(archs))
        if (i, images) not in done
    ]
    print(f"{len(done)} trainings cached, {len(jobs)} to run", file=sys.stderr)
    start = time.perf_counter()
    if jobs:
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.workers, initializer=_worker_init, initargs=(args.data_dir,)) as pool, open(cache, "a") as handle:
            for count, record in enumerate(pool.imap_unordered(_run, jobs), 1):
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
                records.append(record)
                print(
                    f"[{count}/{len(jobs)}] arch {record['arch']:2d} {record['images']:5d} images: "
                    f"val acc {record['accuracy']:.3f} in {record['wall_time_s']:.0f} s ({time.perf_counter() - start:.0f} s elapsed)",
                    file=sys.stderr, flush=True,
                )
    elapsed_min = (time.perf_counter() - start) / 60.0
    summary = analyse(records, archs)
    env = environment()
    config = ProxyConfig()
    json_path = Path(args.out + ".json")
    if not jobs and json_path.exists():
        # Nothing was trained now: keep the wall time of the run that filled the cache.
        elapsed_min = float(json.loads(json_path.read_text())["meta"]["wall_time_min"])
    meta = {
        "command": command_line(__file__, argv),
        "machine": f"{env.get('cpu_count')} CPUs, torch {env.get('torch')}, {env.get('platform')}",
        "workers": args.workers,
        "num_architectures": len(archs),
        "wall_time_min": elapsed_min,
        "config": f"optimizer {config.optimizer}, lr {config.learning_rate}, batch {BATCH_SIZE}, warm-up {config.warmup_fraction:.0%} + cosine, "
        f"label smoothing {config.label_smoothing}, weight decay {config.weight_decay}, no augmentation, batch-norm recalibration on {config.bn_recalibration_images} images",
        "environment": env,
    }
    best = max(summary["candidates"], key=lambda r: r["tau_per_cpu_minute"] or -1.0)
    meta["conclusion"] = (
        f"Best tau per CPU-minute: {best['train_images']} images ({best['steps']} steps of {BATCH_SIZE}), "
        f"tau {best['kendall_tau_vs_reference_val']:.3f} at {best['mean_trial_s']:.1f} s per trial."
    )
    write_report(args.out, {"meta": meta, **summary}, markdown(summary, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
