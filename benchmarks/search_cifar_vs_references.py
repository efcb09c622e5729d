"""Benchmark: a CIFAR-10 proxy search at a latency target versus width-scaled reference networks.

1. ``nas-search`` on CIFAR-10 (default proxy training, mobilenetv3 space, MnasNet's controller and
   soft reward) at a target equal to a reference network's table latency on this CPU (224x224,
   ONNX Runtime, 1 thread): MobileNetV2 1.0 by default, the network MnasNet compares with.
2. Final selection as MnasNet does it (it trained the top models of its search fully and kept the
   best): the ``--top`` trials by reward are trained again with the same proxy, ``--seeds`` seeds
   each (0 .. N-1), and the one with the best mean validation accuracy is the searched network.
3. MobileNetV2 and MobileNetV3-Small are scaled by width (``scale_width``) to the largest
   multiplier whose table latency does not exceed the searched network's.
4. Searched network and both scaled references are trained again on ``--verdict-seeds`` (default
   3,4,5: seeds the selection did not use, so the searched network's figures do not carry the
   winner's luck of the selection's trainings), with the same proxy, and compared on the held-out
   test split (the search and the selection only saw validation accuracy), next to their table and
   measured latencies. The verdict has three outcomes per reference: *met* (searched better by more
   than one standard error of the difference), *not distinguishable*, *not met* (worse by more).

The CIFAR-10 batches are written from the shared copy on first use. Everything is cached in
``--work`` (the search resumes, trainings are not repeated), so an interrupted run continues. The
search's folder there is named by the target reference and the proxy budget; a rerun with another
``--samples`` than the search in it was started with is refused (give another ``--work``).

    flock /tmp/mobilenas-cpu.lock python benchmarks/search_cifar_vs_references.py
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import (
    check_out_folder,
    check_report,
    command_line,
    positive_int,
    provenance,
    seed_number,
    stem_file,
)

HERE = Path(__file__).parent
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def ensure_cifar(root: Path) -> Path:
    if not (root / "cifar-10-batches-py" / "data_batch_1").exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(SHARED / "to_batches.py"), str(root)], check=True)
    return root


def scale_to_latency(name: str, table, limit_ms: float, num_classes: int) -> tuple[tuple[float, object, float], tuple[float, object, float] | None]:
    """The widest multiplier (steps of 0.05, up to 2.0) whose table latency is at most ``limit_ms``,
    and the next step up (just slower than ``limit_ms``; None past 2.0): the two bracket the limit."""
    from mobilenas.space import reference, scale_width

    best = None
    for step in range(2, 41):
        multiplier = step * 0.05
        arch = scale_width(reference(name, num_classes=num_classes), multiplier)
        latency = table.predict(arch, measure_missing=True)
        if latency <= limit_ms:
            best = (multiplier, arch, latency)
        elif best is not None:
            return best, (multiplier, arch, latency)
    if best is None:
        raise SystemExit(f"{name} cannot be made as fast as {limit_ms:.2f} ms by width scaling alone")
    return best, None


def seed_list(text: str) -> list[int]:
    """argparse type of --verdict-seeds: distinct seeds separated by commas, at least two (a
    standard error needs two), e.g. ``3,4,5``."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        seeds = [seed_number(part) for part in parts]
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}; give seeds separated by commas, e.g. 3,4,5") from None
    if len(seeds) < 2:
        raise argparse.ArgumentTypeError(f"{text!r} names {len(seeds)} seed(s): a standard error needs at least 2, e.g. 3,4,5")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} names a seed twice: give each once")
    return seeds


def seed_plan(selection_count: int, verdict_seeds: Sequence[int]) -> tuple[list[int], list[int]]:
    """The selection's seeds (0 .. ``selection_count``-1) and the verdict's; ValueError when they
    share one (the verdict must not reuse a training the selection chose on)."""
    selection = list(range(selection_count))
    shared = sorted(set(selection) & set(verdict_seeds))
    if shared:
        raise ValueError(
            f"--verdict-seeds {','.join(map(str, verdict_seeds))} reuses seed(s) {', '.join(map(str, shared))} of the selection "
            f"(--seeds {selection_count}: seeds 0..{selection_count - 1}): give seeds from {selection_count} up, e.g. "
            f"{','.join(str(selection_count + i) for i in range(len(verdict_seeds)))}"
        )
    return selection, list(verdict_seeds)


def mean_and_error(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for one value)."""
    mean = statistics.mean(values)
    return mean, (statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0)


def compare(searched: Sequence[float], reference: Sequence[float]) -> dict[str, Any]:
    """The searched network's accuracies (one per seed) against a reference's: the difference of
    the means, its standard error (sqrt(se_a^2 + se_b^2), the seeds not paired: the networks
    differ, so a seed's luck is not shared), the difference in those standard errors, and the
    outcome: ``met`` (better by more than one standard error), ``not met`` (worse by more than
    one), else ``not distinguishable``."""
    mean_a, error_a = mean_and_error(searched)
    mean_b, error_b = mean_and_error(reference)
    difference = mean_a - mean_b
    error = (error_a**2 + error_b**2) ** 0.5
    in_errors = None if error == 0 else difference / error
    if error == 0:
        outcome = "met" if difference > 0 else "not met" if difference < 0 else "not distinguishable"
    else:
        outcome = "met" if difference > error else "not met" if difference < -error else "not distinguishable"
    return {"difference": difference, "standard_error": error, "in_standard_errors": in_errors, "outcome": outcome}


def overall(outcomes: Sequence[str]) -> str:
    """One outcome over several references: met only if met against each, not met if not met
    against any, else not distinguishable."""
    if any(o == "not met" for o in outcomes):
        return "not met"
    return "met" if all(o == "met" for o in outcomes) else "not distinguishable"


def describe_comparison(name: str, c: dict[str, Any], seeds: int) -> str:
    margin = "n/a standard errors (no spread)" if c["in_standard_errors"] is None else f"{c['in_standard_errors']:+.1f} standard errors"
    return (f"- searched - {name} = {c['difference']:+.4f} (test accuracy, means of {seeds} seeds; standard error of the difference "
            f"{c['standard_error']:.4f}, so {margin}): **{c['outcome']}**")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mobilenas-bench-search"), help="cache and run directory (default: %(default)s)")
    parser.add_argument("--samples", type=positive_int, default=40, help="architectures the search evaluates (default: %(default)s)")
    parser.add_argument("--workers", type=positive_int, default=2, help="the search's parallel trainings (default: %(default)s)")
    parser.add_argument("--seeds", type=positive_int, default=3, help="seeds of the final selection's trainings, 0 .. N-1 (default: %(default)s)")
    parser.add_argument("--verdict-seeds", type=seed_list, default=[3, 4, 5], metavar="S,S,...",
                        help="seeds of the trainings the table and the verdict use, of the searched network and the references; none of the selection's (default: 3,4,5)")
    parser.add_argument("--top", type=positive_int, default=3, help="trials re-trained for the final selection (default: %(default)s)")
    parser.add_argument("--target-reference", default="mobilenetv2", help="reference whose table latency is the target (default: mobilenetv2)")
    parser.add_argument("--proxy-steps", type=positive_int, default=None, help="steps of every proxy training, in the search and after it (default: the proxy default)")
    parser.add_argument("--out", type=Path, default=HERE / "search_cifar_vs_references.md", help="the .md to write, and the .json beside it (default: the committed results, overwritten)")
    args = parser.parse_args(argv)
    try:
        selection_seeds, verdict_seeds = seed_plan(args.seeds, args.verdict_seeds)
    except ValueError as error:
        parser.error(str(error))
    out = check_report(parser, args.out)
    check_out_folder(parser, args.work, "--work")

    from mobilenas.latency import measure_architectures, open_or_create_table
    from mobilenas.search.cli import main as nas_search
    from mobilenas.space import Architecture, get_space, reference
    from mobilenas.train import ProxyConfig, build_for_data, evaluate, load_dataset, train_proxy

    try:
        reference(args.target_reference, num_classes=10)
    except ValueError as error:  # before CIFAR-10 is loaded, not after
        parser.error(f"--target-reference: {error}")
    # Runs and trainings with another proxy budget are kept apart from the default budget's.
    budget = "" if args.proxy_steps is None else f"-{args.proxy_steps}steps"
    run = args.work / f"search-{args.target_reference}{budget}"
    if (run / "manifest.json").exists():  # a search of another length would be resumed, and reported as this one
        started = json.loads((run / "manifest.json").read_text())["config"]["samples"]
        if int(started) != args.samples:
            parser.error(f"{run} holds a search of {started} samples, not {args.samples}: give --samples {started} to resume it, or another --work")
    args.work.mkdir(parents=True, exist_ok=True)
    cifar = ensure_cifar(args.work / "cifar")
    data = load_dataset("cifar10", data_dir=cifar, seed=0)
    space = get_space("mobilenetv3", num_classes=data.num_classes)
    table = open_or_create_table(space, progress=True)
    if (run / "manifest.json").exists():  # the target the search ran at (the table may have been measured again since)
        target = float(json.loads((run / "manifest.json").read_text())["target_latency_ms"])
    else:
        target = table.predict(reference(args.target_reference, num_classes=data.num_classes), measure_missing=True)

    common = ["--quiet", "--workers", str(args.workers)]
    if (run / "manifest.json").exists():
        code = nas_search(["--resume", str(run), *common])
    else:
        steps = [] if args.proxy_steps is None else ["--proxy-steps", str(args.proxy_steps)]
        code = nas_search(["--target-latency", f"{target:.4f}ms", "--dataset", "cifar10", "--data-dir", str(cifar),
                           "--samples", str(args.samples), "--out", str(run), *steps, *common])
    if code != 0:
        raise SystemExit(f"nas-search failed with exit code {code}")
    with open(run / "trials.csv") as handle:
        trials = [row for row in csv.DictReader(handle) if row["status"] == "ok" and row["source"] == "trained"]
    trials.sort(key=lambda row: float(row["reward"]), reverse=True)
    finalists = [Architecture.from_notation(row["architecture"]) for row in trials[: args.top]]

    cache_path = args.work / f"trainings{budget}.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    config = ProxyConfig(threads=1)
    if args.proxy_steps is not None:
        config = dataclasses.replace(config, steps=args.proxy_steps)

    def train_all(label: str, arch, seeds: Sequence[int]) -> None:
        # the cache key is the one of earlier versions (fingerprint-seed): an old --work resumes
        for seed in seeds:
            key = f"{arch.fingerprint()}-{seed}"
            if key in cache:
                continue
            result = train_proxy(arch, data, dataclasses.replace(config, seed=seed), keep_weights=True)
            model = build_for_data(arch, data)
            model.load_state_dict(result.state_dict)
            test_accuracy, _ = evaluate(model, data.test)
            cache[key] = {"val": result.accuracy, "test": test_accuracy, "status": result.status}
            cache_path.write_text(json.dumps(cache, indent=2))
            print(f"{label} seed {seed}: val {result.accuracy:.4f} test {test_accuracy:.4f}", flush=True)

    def mean_of(arch, split: str) -> float:
        return statistics.mean(cache[f"{arch.fingerprint()}-{s}"][split] for s in selection_seeds)

    selection = []
    for rank, arch in enumerate(finalists, 1):
        train_all(f"finalist {rank}", arch, selection_seeds)
        row = trials[rank - 1]
        selection.append({"rank": rank, "search_reward": float(row["reward"]), "search_accuracy": float(row["accuracy"]),
                          "table_ms": float(row["latency_ms"]), "val_mean": mean_of(arch, "val"), "notation": arch.to_notation()})
    chosen = max(range(len(finalists)), key=lambda i: selection[i]["val_mean"])
    winner = finalists[chosen]
    winner_ms = table.predict(winner, measure_missing=True)

    contenders = {"searched": (1.0, winner, winner_ms)}
    slower = {}  # the next width step of each reference: just slower than the searched network
    for name in ("mobilenetv2", "mobilenetv3-small"):
        contenders[f"{name} scaled"], up = scale_to_latency(name, table, winner_ms, data.num_classes)
        if up is not None:
            slower[f"{name} next width up"] = up
    contenders.update(slower)
    for label, (_, arch, _) in contenders.items():  # on fresh seeds: the selection's winner's luck stays in the selection
        train_all(label, arch, verdict_seeds)

    archs = [arch for _, arch, _ in contenders.values()]
    measured = measure_architectures(archs, table.measuring_backend(), table.input_size, rounds=3, seed=0)
    rows = []
    for (label, (multiplier, arch, table_ms)), measurement in zip(contenders.items(), measured, strict=True):
        vals = [cache[f"{arch.fingerprint()}-{s}"]["val"] for s in verdict_seeds]
        tests = [cache[f"{arch.fingerprint()}-{s}"]["test"] for s in verdict_seeds]
        rows.append({
            "network": label, "width": multiplier, "table_ms": table_ms, "measured_ms": measurement.latency_ms,
            "val_mean": statistics.mean(vals), "val_std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "test_mean": statistics.mean(tests), "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
            "tests": tests, "notation": arch.to_notation(),
        })
    searched = rows[0]
    over = searched["table_ms"] / target - 1  # the soft reward only discounts a network over the target
    comparisons = {r["network"]: compare(searched["tests"], r["tests"]) for r in rows[1:]}
    verdict = overall([c["outcome"] for name, c in comparisons.items() if name not in slower])
    above = [r["network"] for r in rows if r["network"] in slower]
    verdict_above = overall([comparisons[name]["outcome"] for name in above]) if above else None
    seeds_text = ",".join(map(str, verdict_seeds))
    lines = [
        "# CIFAR-10 proxy search versus width-scaled references at the same latency",
        "",
        f"Target: {args.target_reference}'s table latency, {target:.2f} ms (224x224, ONNX Runtime, 1 thread, this CPU). "
        f"Search: {args.samples} architectures of the mobilenetv3 space, ppo controller, soft reward (w = -0.07), {'default ' if args.proxy_steps is None else ''}proxy "
        f"({config.steps} steps x {config.batch_size} images) on CIFAR-10 ({len(data.train)} train / {len(data.val)} val / {len(data.test)} test images). "
        f"Final selection: the top {args.top} trials by reward, each trained again with the same proxy on seeds 0..{args.seeds - 1}; "
        "the best mean validation accuracy is the searched network. References are scaled by width to the largest multiplier "
        "(steps of 0.05) whose table latency does not exceed the searched network's. The searched network and the references are then "
        f"trained with the same proxy on seeds {seeds_text}, which the selection did not use (its trainings of the chosen network carry "
        "the luck that made it the winner); the second table and the verdict use only those. "
        "The verdict uses the test split, which neither the search nor the selection saw.",
        "",
        f"Final selection (seeds 0..{args.seeds - 1}):",
        "",
        "| rank by reward | reward in the search | accuracy in the search | table latency (ms) | mean val accuracy, re-trained |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {r['rank']}{' (chosen)' if i == chosen else ''} | {r['search_reward']:.4f} | {r['search_accuracy']:.4f} | {r['table_ms']:.2f} | {r['val_mean']:.4f} |" for i, r in enumerate(selection)],
        "",
        f"Searched network and references, trained on seeds {seeds_text} (mean ± seed-to-seed standard deviation):",
        "",
        "| network | width | table latency (ms) | measured latency (ms) | val accuracy | test accuracy |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['network']} | {r['width']:.2f} | {r['table_ms']:.2f} | {r['measured_ms']:.2f} | {r['val_mean']:.4f} ± {r['val_std']:.4f} | {r['test_mean']:.4f} ± {r['test_std']:.4f} |")
    lines += [
        "",
        *([f"The searched network is over the target: {searched['table_ms']:.2f} ms by the table, {over:.1%} above {target:.2f} ms "
            "(the soft reward discounts, never refuses, a slower network); the references are scaled to the searched network's latency, "
            "not to the target.", ""] if over > 0 else []),
        f"Searched network more accurate (test, seeds {seeds_text}) than the references at or below its latency, by more than one standard "
        "error of each difference: *met* if against both, *not met* if worse by more than one against either, else *not distinguishable*:",
        "",
        *[describe_comparison(name, c, len(verdict_seeds)) for name, c in comparisons.items() if name not in slower],
        "",
        f"Verdict: **{verdict}**.",
        *([] if verdict_above is None else [
            "",
            "The width grid leaves each reference somewhat faster than the searched network by the table; the *next width up* rows "
            "(the next step of 0.05, just slower than the searched network) bracket it from the other side:",
            "",
            *[describe_comparison(name, comparisons[name], len(verdict_seeds)) for name in above],
            "",
            f"Against those too: **{verdict_above}**.",
        ]),
        "",
        f"Searched: `{searched['notation']}`",
        "",
        f"Reproduce: `{command_line(__file__, argv)}`",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    stem_file(out, ".md").write_text(text)
    stem_file(out, ".json").write_text(json.dumps({
        "target_reference": args.target_reference, "target_ms": target, "selection_seeds": selection_seeds, "verdict_seeds": verdict_seeds,
        "selection": selection, "rows": rows, "comparisons": comparisons, "verdict": verdict, "verdict_next_width_up": verdict_above,
        "provenance": provenance(__file__, argv),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
