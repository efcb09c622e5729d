"""NetAdapt's central claim on this CPU: at the same measured latency, it beats scaling the width.

A MobileNetV3-Small-style network is trained on a CIFAR-10 subset (at 32x32, with the builder's
documented stride adaptation for small inputs); ``netadapt refine`` prunes it against the lookup
table of this CPU (ONNX Runtime, 1 thread, batch 1, at the networks' 224x224 design resolution,
the project's convention: latency at the deployment size, accuracy from the proxy resolution)
down to the lowest budget, and the first network of its trajectory under each budget (75%, 62.5%
and 50% of the starting latency; NetAdapt removes 2.5% of it per iteration, the official code's
initial step, without decay) gets the long fine-tune.
Against each, the same network scaled by a width multiplier (``mobilenas.space.scale_width``,
the multiplier whose table latency is closest) is trained from scratch with the same number of
training steps as the NetAdapt network's lineage (the seed's training, the short fine-tunes of
the proposals it descends from, and its long fine-tune). All networks are then measured end to
end, interleaved, and evaluated on the test split (never used for any decision).

At 32x32 these networks run in about 0.3 ms, where per-operator overheads, not channels, decide
latency (neither method can then remove much); hence the 224x224 deployment size.

Writes ``benchmarks/netadapt_vs_width.md`` and ``.json`` beside this script. Every stage is
cached in the work directory, so a killed benchmark resumes where it stopped::

    flock /tmp/mobilenas-cpu.lock python benchmarks/netadapt_vs_width.py

``--quick`` runs a tiny version (a few minutes) to check the pipeline.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


@dataclasses.dataclass(frozen=True)
class Plan:
    arch: str
    budgets: tuple[float, ...]
    train_size: int
    val_size: int
    test_size: int
    pretrain_epochs: int
    final_epochs: int
    finetune_steps: int
    reduction: float
    granularity: int
    batch_size: int
    threads: int
    seed: int
    deploy_size: int


def log(message: str) -> None:
    stamp = _dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def cached(path: Path, compute: Any) -> Any:
    """``compute()`` once; its JSON result is kept in ``path``."""
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2))
    tmp.replace(path)
    return value


def ensure_cifar(data_dir: Path) -> Path:
    if (data_dir / "cifar-10-batches-py" / "test_batch").is_file():
        return data_dir
    script = SHARED_CIFAR / "to_batches.py"
    if not script.is_file():
        raise SystemExit(f"no CIFAR-10 at {data_dir} and no {script} to write one; give --data-dir")
    log(f"writing CIFAR-10 to {data_dir}")
    subprocess.run([sys.executable, str(script), str(data_dir)], check=True)
    return data_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cifar10"), help="CIFAR-10 python layout (written from ../shared/data if missing)")
    parser.add_argument("--work", type=Path, default=None, help="cache of every stage (default: /tmp/netadapt-bench[-quick])")
    parser.add_argument("--out", type=Path, default=HERE, help="where the results go (default: benchmarks/)")
    parser.add_argument("--arch", default="mobilenetv3-small@0.5", help="the seed network (default: mobilenetv3-small@0.5)")
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the pipeline; writes *_quick files")
    parser.add_argument("--threads", type=int, default=2, help="training threads (default: 2)")
    parser.add_argument("--deploy-size", type=int, default=224, help="resolution latency is measured at (default: 224, the networks' design size)")
    args = parser.parse_args()

    if args.quick:
        plan = Plan(args.arch, (0.8, 0.65), 1500, 300, 500, 2, 1, 5, 0.15, 8, 64, args.threads, 0, args.deploy_size)
    else:
        plan = Plan(args.arch, (0.75, 0.625, 0.5), 5000, 2000, 5000, 10, 3, 20, 0.025, 8, 64, args.threads, 0, args.deploy_size)
    work = args.work or Path("/tmp/netadapt-bench" + ("-quick" if args.quick else ""))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", str(plan.threads))
    data_dir = ensure_cifar(args.data_dir)
    started = time.perf_counter()

    import torch

    from mobilenas.latency import make_backend, measure_architectures
    from mobilenas.latency.table import LookupTable
    from mobilenas.netadapt.cli import main as netadapt_main
    from mobilenas.netadapt.run import load_into, load_weights, save_weights
    from mobilenas.netadapt.training import DataTrainer, TrainingSettings
    from mobilenas.runs import Journal
    from mobilenas.space import reference
    from mobilenas.space.builder import adapt_for_input_size, build_model
    from mobilenas.space.cost import architecture_cost
    from mobilenas.train.data import load_dataset
    from mobilenas.train.engine import steps_per_epoch

    torch.set_num_threads(plan.threads)
    data = load_dataset("cifar10", data_dir=data_dir, seed=plan.seed, train_size=plan.train_size, val_size=plan.val_size, test_size=plan.test_size)
    log(f"data: {data.sizes()}")
    settings = TrainingSettings(batch_size=plan.batch_size, augment=True, threads=plan.threads)
    trainer = DataTrainer(data, settings)
    per_epoch = steps_per_epoch(len(data.train), plan.batch_size)
    base_name, _, base_width = plan.arch.partition("@")
    base_multiplier = float(base_width or 1.0)
    seed_arch, _ = adapt_for_input_size(reference(plan.arch, num_classes=10), plan.deploy_size)

    # ------------------------------------------------------------------ seed network
    seed_weights = work / "seed.pt"

    def train_seed() -> dict[str, Any]:
        log(f"training the seed network {plan.arch} for {plan.pretrain_epochs} epochs")
        torch.manual_seed(plan.seed)
        model = build_model(seed_arch, input_size=data.input_size)
        result = trainer.train(model, plan.pretrain_epochs, plan.seed, progress=True, from_scratch=True)
        assert result.status == "ok", result.error
        save_weights(seed_weights, model.state_dict())
        return {"val": trainer.evaluate(model), "test": trainer.test(model), "steps": result.steps, "wall_time_s": result.wall_time_s}

    seed = cached(work / "seed.json", train_seed)
    (work / "seed_arch.json").write_text(seed_arch.to_json())
    log(f"seed: validation {seed['val']:.4f}, test {seed['test']:.4f}")

    # ------------------------------------------------------------------ NetAdapt
    table_path = work / "table.jsonl"
    run_dir = work / "netadapt"
    common = [
        "--dataset", "cifar10", "--data-dir", str(data_dir), "--train-size", str(plan.train_size), "--val-size", str(plan.val_size),
        "--test-size", str(plan.test_size), "--seed", str(plan.seed), "--threads", str(plan.threads), "--batch-size", str(plan.batch_size),
    ]
    if not (run_dir / "refined.json").is_file():
        if (run_dir / "manifest.json").is_file():
            code = netadapt_main(["refine", "--resume", str(run_dir)])
        else:
            code = netadapt_main([
                "refine", str(work / "seed_arch.json"), "--weights", str(seed_weights), "--budget-ratio", str(min(plan.budgets)),
                "--finetune-steps", str(plan.finetune_steps), "--final", "none", "--granularity", str(plan.granularity),
                "--initial-reduction", str(plan.reduction), "--reduction-decay", "1", "--table", str(table_path), "--input-size", str(plan.deploy_size),
                "--out", str(run_dir), *common,
            ])
        if code != 0:
            raise SystemExit(f"netadapt refine failed with exit code {code}")
    history = [line for line in Journal(run_dir / "history.jsonl").read() if line.get("type") == "iteration"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    start_latency = manifest["start_latency_ms"]
    total_proposal_steps = sum(plan.finetune_steps * sum(1 for p in line["proposals"] if p["status"] == "ok") for line in history)
    from mobilenas.latency.table import Correction

    table = LookupTable.load(table_path)
    correction = Correction.from_dict(manifest["latency"]["correction"])

    def table_latency(arch: Any) -> float:
        return correction.apply(table.predict_sum(arch, measure_missing=True))

    # ------------------------------------------------------------------ per budget
    rows = []
    for budget in plan.budgets:
        limit = budget * start_latency
        line = next(line for line in history if line["latency_ms"] <= limit * (1 + 1e-9))
        iteration = line["iteration"]
        from mobilenas.space.arch import Architecture

        pruned_arch = Architecture.from_dict(line["architecture"])
        lineage_steps = iteration * plan.finetune_steps
        key = f"{budget:.2f}"

        def fine_tune(line: dict[str, Any] = line, pruned_arch: Architecture = pruned_arch, key: str = key) -> dict[str, Any]:
            log(f"budget {key}: long fine-tune of NetAdapt iteration {line['iteration']} for {plan.final_epochs} epochs")
            model = load_into(pruned_arch, load_weights(run_dir / line["checkpoint"]), data.input_size)
            result = trainer.train(model, plan.final_epochs, plan.seed + 1, progress=True)
            assert result.status == "ok", result.error
            save_weights(work / f"netadapt-{key}.pt", model.state_dict())
            return {"val": trainer.evaluate(model), "test": trainer.test(model), "steps": result.steps}

        tuned = cached(work / f"netadapt-{key}.json", fine_tune)

        def pick_multiplier(target_ms: float = line["latency_ms"], key: str = key) -> dict[str, Any]:
            # the multiplier whose table latency is closest to NetAdapt's (bisection, then the better neighbour)
            low, high = 0.05, base_multiplier
            for _ in range(8):
                middle = (low + high) / 2
                if table_latency(adapt_for_input_size(reference(f"{base_name}@{middle:.4f}", num_classes=10), plan.deploy_size)[0]) > target_ms:
                    high = middle
                else:
                    low = middle
            options = []
            for multiplier in (low, high):
                arch = adapt_for_input_size(reference(f"{base_name}@{multiplier:.4f}", num_classes=10), plan.deploy_size)[0]
                options.append((abs(table_latency(arch) - target_ms), multiplier, table_latency(arch)))
            _, multiplier, latency = min(options)
            log(f"budget {key}: width multiplier {multiplier:.3f} ({latency:.3f} ms by the table; NetAdapt {target_ms:.3f} ms)")
            return {"multiplier": multiplier, "latency_ms": latency}

        picked = cached(work / f"width-{key}.choice.json", pick_multiplier)
        width_arch = adapt_for_input_size(reference(f"{base_name}@{picked['multiplier']:.4f}", num_classes=10), plan.deploy_size)[0]
        total_steps = seed["steps"] + lineage_steps + tuned["steps"]

        def train_width(width_arch: Any = width_arch, total_steps: int = total_steps, key: str = key) -> dict[str, Any]:
            epochs = total_steps / per_epoch
            log(f"budget {key}: training the width-scaled network from scratch for {epochs:.2f} epochs ({total_steps} steps)")
            torch.manual_seed(plan.seed)
            model = build_model(width_arch, input_size=data.input_size)
            result = trainer.train_for_steps(model, total_steps, plan.seed, progress=True, from_scratch=True)
            assert result.status == "ok", result.error
            save_weights(work / f"width-{key}.pt", model.state_dict())
            return {"val": trainer.evaluate(model), "test": trainer.test(model), "steps": result.steps}

        width = cached(work / f"width-{key}.json", train_width)
        rows.append({
            "budget": budget, "budget_ms": limit, "iteration": iteration, "netadapt_arch": pruned_arch, "width_arch": width_arch,
            "netadapt": {**tuned, "latency_ms": line["latency_ms"], "notation": pruned_arch.to_notation(), "params": architecture_cost(pruned_arch, plan.deploy_size).params, "macs": architecture_cost(pruned_arch, plan.deploy_size).macs, "steps_total": total_steps},
            "width": {**width, "multiplier": picked["multiplier"], "latency_ms": picked["latency_ms"], "notation": width_arch.to_notation(), "params": architecture_cost(width_arch, plan.deploy_size).params, "macs": architecture_cost(width_arch, plan.deploy_size).macs},
        })

    # ------------------------------------------------------------------ measured latency, interleaved
    def measure_all() -> dict[str, Any]:
        archs = [seed_arch] + [r["netadapt_arch"] for r in rows] + [r["width_arch"] for r in rows]
        log(f"measuring {len(archs)} networks end to end (interleaved, ONNX Runtime, 1 thread)")
        backend = make_backend("onnxruntime", threads=1, repeats=210)
        measurements = measure_architectures(archs, backend, input_size=plan.deploy_size, rounds=7, seed=plan.seed)
        return {"latency_ms": [m.latency_ms for m in measurements], "iqr_ms": [m.spread.iqr_ms for m in measurements], "device": backend.device().describe()}

    measured = cached(work / "measured.json", measure_all)
    count = len(rows)
    seed_measured = measured["latency_ms"][0]
    for i, row in enumerate(rows):
        row["netadapt"]["measured_latency_ms"] = measured["latency_ms"][1 + i]
        row["width"]["measured_latency_ms"] = measured["latency_ms"][1 + count + i]

    # ------------------------------------------------------------------ report
    seed_cost = architecture_cost(seed_arch, plan.deploy_size)
    report = {
        "benchmark": "netadapt_vs_width",
        "date": _dt.date.today().isoformat(),
        "plan": dataclasses.asdict(plan),
        "data": data.summary(),
        "device": measured["device"],
        "seed": {**seed, "arch": plan.arch, "notation": seed_arch.to_notation(), "latency_ms": start_latency, "measured_latency_ms": seed_measured, "params": seed_cost.params, "macs": seed_cost.macs},
        "netadapt_iterations": len(history) - 1,
        "netadapt_proposal_steps_total": total_proposal_steps,
        "rows": [{k: v for k, v in r.items() if not k.endswith("_arch")} for r in rows],
        "wall_time_s": time.perf_counter() - started,
    }
    suffix = "_quick" if args.quick else ""
    (args.out / f"netadapt_vs_width{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = render(report)
    (args.out / f"netadapt_vs_width{suffix}.md").write_text(markdown)
    print(markdown)
    return 0


def render(report: dict[str, Any]) -> str:
    plan, seed = report["plan"], report["seed"]
    lines = [
        "# NetAdapt versus width multipliers on this CPU",
        "",
        f"Generated by `benchmarks/netadapt_vs_width.py` on {report['date']} ({report['device']}).",
        "",
        f"Seed network: `{seed['arch']}`, trained {plan['pretrain_epochs']} epochs on a CIFAR-10 subset at 32x32 (the builder removes the first two strides for such small inputs) "
        f"({report['data']['sizes']['train']} training images, {report['data']['sizes']['val']} validation images carved from them for every NetAdapt "
        f"decision, {report['data']['sizes']['test']} test images used only here). Latency: ONNX Runtime, 1 thread, batch 1, {plan['deploy_size']}x{plan['deploy_size']} (the design resolution; at 32x32 these networks take ~0.3 ms, dominated by per-operator overhead), "
        f"measured end to end with the runs of all networks interleaved (median of 210 runs in 7 rounds); \"table\" is the lookup table's prediction NetAdapt worked with.",
        "",
        f"NetAdapt: `netadapt refine` with {plan['reduction']:.1%} of the starting latency removed per iteration (no decay), granularity {plan['granularity']}, "
        f"{plan['finetune_steps']} short fine-tune steps per proposal, the MobileNetV3 selection rule (accuracy change per latency saved), "
        f"{report['netadapt_iterations']} iterations down to {min(plan['budgets']):.1%}; the first network under each budget then gets "
        f"{plan['final_epochs']} epochs of fine-tuning. Width multiplier: the same network scaled with `scale_width` "
        f"(the multiplier with the closest table latency), trained from scratch for as many steps as the NetAdapt network's lineage "
        f"received (seed training + short fine-tunes of its ancestors + long fine-tune). All proposals of all iterations together took "
        f"{report['netadapt_proposal_steps_total']} fine-tune steps, which this accounting does not charge to NetAdapt.",
        "",
        "| budget | method | network | table ms | measured ms | test accuracy | val accuracy | params | MACs | training steps |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| 100% | seed | `{seed['arch']}` | {seed['latency_ms']:.3f} | {seed['measured_latency_ms']:.3f} | {seed['test']:.4f} | {seed['val']:.4f} | {seed['params']:,} | {seed['macs'] / 1e6:.2f}M | {seed['steps']} |",
    ]
    for row in report["rows"]:
        n, w = row["netadapt"], row["width"]
        lines.append(f"| {row['budget']:.1%} | NetAdapt (iteration {row['iteration']}) | see below | {n['latency_ms']:.3f} | {n['measured_latency_ms']:.3f} | {n['test']:.4f} | {n['val']:.4f} | {n['params']:,} | {n['macs'] / 1e6:.2f}M | {n['steps_total']} |")
        lines.append(f"| {row['budget']:.1%} | width x{w['multiplier']:.3f} of the base | see below | {w['latency_ms']:.3f} | {w['measured_latency_ms']:.3f} | {w['test']:.4f} | {w['val']:.4f} | {w['params']:,} | {w['macs'] / 1e6:.2f}M | {w['steps']} |")
    lines += ["", "Test accuracy difference (NetAdapt minus width multiplier) and measured latency ratio:", ""]
    for row in report["rows"]:
        n, w = row["netadapt"], row["width"]
        lines.append(f"- {row['budget']:.1%}: {100 * (n['test'] - w['test']):+.2f} points at {n['measured_latency_ms'] / w['measured_latency_ms']:.3f}x the width-scaled network's measured latency")
    lines += ["", "Networks:", ""]
    for row in report["rows"]:
        lines.append(f"- {row['budget']:.1%} NetAdapt: `{row['netadapt']['notation']}`")
        lines.append(f"- {row['budget']:.1%} width: `{row['width']['notation']}`")
    lines += ["", f"Wall time of this invocation: {report['wall_time_s'] / 60:.1f} min (stages cached in the work directory are not counted again).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

