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
Each line keeps how its training was made (command, commit, date, machine): a report rendered from
cached trainings names those, and the command that rendered it apart.

    python ../shared/data/cifar10/to_batches.py /tmp/cifar      # once: the standard layout, outside the repo
    flock /tmp/mobilenas-cpu.lock python benchmarks/train_proxy_fidelity.py --data-dir /tmp/cifar

Writes ``benchmarks/train_proxy_fidelity.json`` and ``benchmarks/train_proxy_fidelity.md`` (the
committed results: give ``--out`` elsewhere for a trial run).
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

from _common import at_least, check_out, check_report, positive_int, provenance, write_report

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
    """Kendall's tau-b (ties in either ranking handled as scipy.stats.kendalltau does), in numpy:
    scipy is no dependency of the project, and the tests run this on a clean install."""
    import numpy as np

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    upper = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[:, None] - x[None, :])[upper], np.sign(y[:, None] - y[None, :])[upper]
    denominator = np.sqrt(float(np.count_nonzero(dx)) * float(np.count_nonzero(dy)))
    return float(np.sum(dx * dy) / denominator) if denominator else float("nan")


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


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties), as scipy.stats.spearmanr."""
    import numpy as np
    import pandas as pd

    x, y = pd.Series(list(a), dtype=float).rank().to_numpy(), pd.Series(list(b), dtype=float).rank().to_numpy()
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def analyse(records: list[dict[str, Any]], archs: list[Any]) -> dict[str, Any]:
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
            "spearman_vs_reference_val": _spearman(accuracies, reference),
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


#: the session of cache lines written before the cache kept how each training was made
UNRECORDED = "unrecorded"


def machine_words(environment: dict[str, Any]) -> str:
    return f"{environment.get('cpu_count')} CPUs, torch {environment.get('torch')}, {environment.get('platform')}"


def training_provenance(workers: int, argv: Sequence[str] | None) -> dict[str, Any]:
    """What each cache line written by this process keeps of how its training was made: the
    :func:`provenance` of the run (date, command, commit, environment), the workers in parallel,
    when it started (epoch seconds, for its wall time) and an id telling its lines apart."""
    made = provenance(__file__, argv)
    return {**made, "session": f"{made['date']} pid {os.getpid()}", "workers": workers, "started_at": time.time()}


def training_sessions(used: list[dict[str, Any]], previous_meta: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The runs that made the trainings ``used`` (cache lines), oldest first: each its provenance,
    how many of the trainings it made and its wall time (first start to last finish, None if unknown).

    Lines cached before the cache kept their provenance are one session, ``UNRECORDED``: what the
    previous report (``previous_meta``, its ``meta``) said of them, marked as such, else nothing.
    """
    sessions: dict[str, dict[str, Any]] = {}
    for record in used:
        made = record.get("made_by")
        key = made["session"] if made else UNRECORDED
        session = sessions.get(key)
        if session is None:
            session = sessions[key] = {**(made or {"session": UNRECORDED}), "trainings": 0, "finished_at": None}
        session["trainings"] += 1
        if record.get("finished_at") is not None:
            session["finished_at"] = max(session["finished_at"] or 0.0, float(record["finished_at"]))
    for session in sessions.values():
        start, end = session.pop("started_at", None), session.pop("finished_at")
        session["wall_time_min"] = (end - start) / 60.0 if start is not None and end is not None else None
    if UNRECORDED in sessions:
        sessions[UNRECORDED].update(_unrecorded_from(previous_meta))
    return sorted(sessions.values(), key=lambda x: (x["session"] != UNRECORDED, x.get("date") or ""))


def _unrecorded_from(previous_meta: dict[str, Any] | None) -> dict[str, Any]:
    """What the previous report said of the trainings whose cache lines do not say who made them."""
    if not previous_meta:
        return {"note": "not recorded: cached before the cache kept how each training was made"}
    for session in previous_meta.get("trainings_made_by", []):
        if session.get("session") == UNRECORDED:
            return {k: v for k, v in session.items() if k not in ("session", "trainings")}
    if "command" not in previous_meta:
        return {"note": "not recorded: cached before the cache kept how each training was made"}
    kept = {"command": previous_meta["command"], "environment": previous_meta.get("environment"), "workers": previous_meta.get("workers"),
            "wall_time_min": previous_meta.get("wall_time_min")}
    return kept | {"note": "as the previous report named it (the cache lines do not say)"}


def made_by_lines(sessions: list[dict[str, Any]], rendered_by: dict[str, Any]) -> list[str]:
    """The report's lines on how its figures were made: the trainings' runs, and the run that rendered them."""
    def describe(session: dict[str, Any]) -> str:
        parts = [f"{session['trainings']} training{'s' if session['trainings'] != 1 else ''}"]
        if session.get("date"):
            parts.append(str(session["date"]))
        if session.get("commit"):
            parts.append(f"commit {session['commit']}")
        if session.get("environment"):
            parts.append(machine_words(session["environment"]))
        if session.get("workers"):
            parts.append(f"every training 1 thread, {session['workers']} in parallel")
        if session.get("wall_time_min") is not None:
            parts.append(f"wall time {session['wall_time_min']:.1f} min")
        if session.get("note"):
            parts.append(session["note"])
        command = f"`{session['command']}`" if session.get("command") else "an unknown command"
        return f"{command} ({'; '.join(parts)})"

    current = rendered_by["session"]
    if len(sessions) == 1 and sessions[0]["session"] == current:
        only = sessions[0]
        wall = f"; total wall time {only['wall_time_min']:.1f} min" if only.get("wall_time_min") is not None else ""
        return [f"Command: `{only['command']}`  ", f"Machine: {machine_words(only['environment'])}; every training 1 thread, {only['workers']} in parallel{wall}."]
    cached = [x for x in sessions if x["session"] != current]
    ran = [x for x in sessions if x["session"] == current]
    lines = ["Figures from cached trainings made by: " + "; ".join(describe(x) for x in cached) + ".  "]
    if ran:
        lines.append(f"The other trainings, and the report, by: {describe(ran[0])}.")
    else:
        lines.append(f"Rendered (no training run) by: `{rendered_by['command']}` ({rendered_by['date']}, {machine_words(rendered_by['environment'])}).")
    return lines


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Proxy fidelity (CIFAR-10 subset, mobilenetv3 space)",
        "",
        *made_by_lines(meta["trainings_made_by"], meta["rendered_by"]),
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


def _data_dir_problem(data_dir: str | None, missing: int) -> str | None:
    """Why ``--data-dir`` cannot feed the ``missing`` trainings (None: it can)."""
    fix = "give --data-dir DIR, DIR holding cifar-10-batches-py (write it with: python ../shared/data/cifar10/to_batches.py DIR)"
    if data_dir is None:
        return f"--data-dir: {missing} trainings are not in the cache; {fix}"
    folder = Path(data_dir)
    if not folder.is_dir():
        return f"--data-dir {data_dir}: {'is a file, not a folder' if folder.exists() else 'no such folder'}; {fix}"
    if not ((folder / "cifar-10-batches-py").is_dir() or (folder / "data_batch_1").is_file()):
        return f"--data-dir {data_dir}: holds no cifar-10-batches-py (nor data_batch_1); {fix}"
    return None


def read_cache(path: Path) -> list[dict[str, Any]]:
    """The training records of a cache file (a torn last line from an interrupted run skipped)."""
    records: list[dict[str, Any]] = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "arch" in record and "images" in record:
                records.append(record)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        help="folder holding cifar-10-batches-py, CIFAR-10's standard python layout (as torchvision downloads it); to write it "
        "from the shared copy, outside this repository: python ../shared/data/cifar10/to_batches.py DIR. Needed unless every training is in --cache",
    )
    parser.add_argument("--architectures", type=at_least(3, "a rank correlation"), default=NUM_ARCHITECTURES, metavar="N", help="architectures sampled (default: %(default)s)")
    parser.add_argument("--workers", type=positive_int, default=2, help="trainings in parallel, one thread each (default: %(default)s)")
    parser.add_argument("--cache", default=str(HERE / "train_proxy_fidelity.cache.jsonl"), help="per-training results (resume file; default: %(default)s, the committed one)")
    parser.add_argument(
        "--out", default=str(HERE / "train_proxy_fidelity"),
        help="output stem: writes OUT.md and OUT.json (default: %(default)s, which OVERWRITES the committed results; give another for a trial run)",
    )
    args = parser.parse_args(argv)
    out = check_report(parser, args.out)
    if Path(args.cache).is_dir():
        parser.error(f"--cache {args.cache}: is a folder; give the cache file (one JSON line per training), e.g. {Path(args.cache) / 'cache.jsonl'}")
    check_out(parser, args.cache, option="--cache")

    archs = _architectures(args.architectures)
    cache = Path(args.cache)
    try:
        records = read_cache(cache)
    except (OSError, UnicodeDecodeError) as error:
        parser.error(f"--cache {cache}: cannot be read ({error}); give another --cache")
    done = {(r["arch"], r["images"]) for r in records}
    jobs = [
        (i, images, archs[i].to_dict(), images == REFERENCE_IMAGES)
        for images in (REFERENCE_IMAGES, *reversed(CANDIDATE_IMAGES))  # longest first balances the two workers
        for i in range(len(archs))
        if (i, images) not in done
    ]
    if jobs and (problem := _data_dir_problem(args.data_dir, len(jobs))):
        parser.error(problem)

    from mobilenas.train.proxy import ProxyConfig

    json_path = Path(str(out) + ".json")
    previous_meta: dict[str, Any] | None = None
    if json_path.exists():
        try:
            previous_meta = json.loads(json_path.read_text()).get("meta")
        except (OSError, ValueError, AttributeError):
            previous_meta = None  # unreadable: its figures are rebuilt from the cache anyway
    made_now = training_provenance(args.workers, argv)
    print(f"{len(done)} trainings cached, {len(jobs)} to run", file=sys.stderr)
    start = time.perf_counter()
    if jobs:
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.workers, initializer=_worker_init, initargs=(args.data_dir,)) as pool, open(cache, "a") as handle:
            for count, record in enumerate(pool.imap_unordered(_run, jobs), 1):
                record = {**record, "made_by": made_now, "finished_at": time.time()}
                handle.write(json.dumps(record) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
                records.append(record)
                print(
                    f"[{count}/{len(jobs)}] arch {record['arch']:2d} {record['images']:5d} images: "
                    f"val acc {record['accuracy']:.3f} in {record['wall_time_s']:.0f} s ({time.perf_counter() - start:.0f} s elapsed)",
                    file=sys.stderr, flush=True,
                )
    summary = analyse(records, archs)
    by = {(r["arch"], r["images"]): r for r in records}  # the records analyse used (the last of each)
    used = [by[(i, images)] for i in range(len(archs)) for images in (*CANDIDATE_IMAGES, REFERENCE_IMAGES)]
    sessions = training_sessions(used, previous_meta)
    known = [x["wall_time_min"] for x in sessions if x.get("wall_time_min") is not None]
    config = ProxyConfig()
    meta = {
        # How the figures were made (the cache lines' provenance), apart from the run that rendered them.
        "trainings_made_by": sessions,
        "rendered_by": {k: made_now[k] for k in ("date", "command", "commit", "environment", "session")},
        "trained_now": len(jobs),
        "num_architectures": len(archs),
        "wall_time_min": sum(known) if len(known) == len(sessions) else None,  # of the trainings' runs, all of them
        "config": f"optimizer {config.optimizer}, lr {config.learning_rate}, batch {BATCH_SIZE}, warm-up {config.warmup_fraction:.0%} + cosine, "
        f"label smoothing {config.label_smoothing}, weight decay {config.weight_decay}, no augmentation, batch-norm recalibration on {config.bn_recalibration_images} images",
    }
    if not jobs:
        print(f"no training run: the figures come from the {len(used)} cached trainings in {cache}", file=sys.stderr)
    best = max(summary["candidates"], key=lambda r: r["tau_per_cpu_minute"] or -1.0)
    meta["conclusion"] = (
        f"Best tau per CPU-minute: {best['train_images']} images ({best['steps']} steps of {BATCH_SIZE}), "
        f"tau {best['kendall_tau_vs_reference_val']:.3f} at {best['mean_trial_s']:.1f} s per trial."
    )
    write_report(out, {"meta": meta, **summary}, markdown(summary, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
