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
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import check_out, command_line, image_pixels, positive_int, provenance, seed_number

HERE = Path(__file__).resolve().parent
MEASURE_ROUNDS = 15
MEASURE_RUNS_PER_ROUND = 20
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


def seed_network(text: str) -> str:
    """argparse type of --arch: a reference network's name, optionally ``@M`` for a width multiplier
    (``mobilenetv3-small@0.5``), checked before any work (it had been met after the work folder was made)."""
    from mobilenas.space.references import REFERENCES

    name, at, width = text.partition("@")
    if name not in REFERENCES:
        raise argparse.ArgumentTypeError(f"{text!r} is not a reference network: give one of {', '.join(REFERENCES)}, optionally with @M for a width multiplier (e.g. mobilenetv3-small@0.5)")
    if at:
        try:
            multiplier = float(width)
        except ValueError:
            multiplier = float("nan")
        if not 0 < multiplier <= 1:  # NaN fails too; pick_multiplier searches widths up to 1.0 of the base
            raise argparse.ArgumentTypeError(f"{text!r}: the width multiplier after @ must be a number in (0, 1], e.g. {name}@0.5")
    return text


def read_result(parser: argparse.ArgumentParser, path: Path, option: str) -> dict[str, Any]:
    """A result JSON of this benchmark, or argparse's one line (exit 2) saying what is wrong with it."""
    try:
        report = json.loads(path.read_text())
    except OSError as error:
        parser.error(f"{option} {path}: cannot read it ({error.strerror or error}); give a netadapt_vs_width result JSON")
    except ValueError as error:
        parser.error(f"{option} {path}: not JSON ({error}); give a netadapt_vs_width result JSON")
    if not isinstance(report, dict) or report.get("benchmark") != "netadapt_vs_width" or "networks" not in report or "comparisons" not in report:
        parser.error(f"{option} {path}: not a netadapt_vs_width result (no \"benchmark\": \"netadapt_vs_width\" with its networks and comparisons); give one of benchmarks/netadapt_vs_width*.json")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/cifar10"), help="CIFAR-10 python layout (written from ../shared/data if missing)")
    parser.add_argument("--work", type=Path, default=None, help="cache of every stage (default: /tmp/netadapt-bench[-quick][-seedN]); a run with it in place resumes it: give a fresh one for a new run")
    parser.add_argument("--out", type=Path, default=HERE, help="the folder the results go to (default: benchmarks/, where a run overwrites the committed results)")
    parser.add_argument("--arch", type=seed_network, default="mobilenetv3-small@0.5", help="the seed network, a reference NAME[@M] (default: mobilenetv3-small@0.5)")
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the pipeline; writes *_quick files")
    parser.add_argument("--threads", type=positive_int, default=2, help="training threads (default: 2)")
    parser.add_argument("--deploy-size", type=image_pixels, default=224, help="resolution latency is measured at (default: 224, the networks' design size)")
    parser.add_argument("--seed", type=seed_number, default=0, help="data subset, initialisation and training order (default: 0); other seeds write netadapt_vs_width.seed<N>.*")
    parser.add_argument("--table", type=Path, default=None, help="start from this latency table (copied into the work directory), so that several seeds share one table's measurements")
    parser.add_argument("--summarize", type=Path, nargs="+", metavar="JSON", help="no run: gather the JSON results of several seeds into netadapt_vs_width.seeds.md")
    parser.add_argument("--render", type=Path, metavar="JSON", help="no run: write the .md and .png of a result JSON again (after a change to the report)")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file: give the folder the results go to")
    if args.summarize:
        check_out(parser, args.out / "netadapt_vs_width.seeds.md", args.out / "netadapt_vs_width.seeds.png")
        reports = [(path, read_result(parser, path, "--summarize")) for path in args.summarize]
        try:
            return summarize(reports, args.out)
        except ValueError as error:
            parser.error(f"--summarize: {error}")
    if args.render:
        stem = args.render.name.removesuffix(".json")
        check_out(parser, args.out / f"{stem}.md", args.out / f"{stem}.png")
        report = read_result(parser, args.render, "--render")
        plot(report, args.out / f"{stem}.png")
        (args.out / f"{stem}.md").write_text(render(report, f"{stem}.png"))
        return 0

    if args.quick:
        plan = Plan(args.arch, (0.8, 0.65), 1500, 300, 500, 2, 1, 5, 0.15, 8, 64, args.threads, args.seed, args.deploy_size)
    else:
        plan = Plan(args.arch, (0.75, 0.625, 0.5), 5000, 2000, 5000, 10, 3, 20, 0.025, 8, 64, args.threads, args.seed, args.deploy_size)
    stem = "netadapt_vs_width" + ("_quick" if args.quick else "") + (f".seed{args.seed}" if args.seed else "")
    check_out(parser, *(args.out / f"{stem}{suffix}" for suffix in (".md", ".json", ".png")))
    seed_suffix = f"-seed{args.seed}" if args.seed else ""
    work = args.work or Path("/tmp/netadapt-bench" + ("-quick" if args.quick else "") + seed_suffix)
    if args.table is not None and not (work / "table.jsonl").is_file() and not args.table.is_file():  # before the work folder is made
        parser.error(f"--table {args.table}: no such file; give a latency table (.jsonl) of an earlier run, or leave --table out")
    work.mkdir(parents=True, exist_ok=True)
    if args.table is not None and not (work / "table.jsonl").is_file():
        shutil.copyfile(args.table, work / "table.jsonl")
        log(f"latency table: a copy of {args.table}")
    os.environ.setdefault("OMP_NUM_THREADS", str(plan.threads))
    data_dir = ensure_cifar(args.data_dir)
    started = time.perf_counter()

    import torch

    from mobilenas.latency import make_backend, measure_architectures
    from mobilenas.latency.table import LookupTable
    from mobilenas.netadapt.cli import main as netadapt_main
    from mobilenas.netadapt.run import load_into
    from mobilenas.netadapt.training import DataTrainer, TrainingSettings
    from mobilenas.runs import Journal
    from mobilenas.space import reference, scale_width
    from mobilenas.space.arch import Architecture, make_divisible
    from mobilenas.space.builder import adapt_for_input_size, build_model
    from mobilenas.space.cost import architecture_cost
    from mobilenas.train.data import load_dataset
    from mobilenas.train.engine import seeded, steps_per_epoch
    from mobilenas.train.weights import load_weights, save_weights

    torch.set_num_threads(plan.threads)
    data = load_dataset("cifar10", data_dir=data_dir, seed=plan.seed, train_size=plan.train_size, val_size=plan.val_size, test_size=plan.test_size)
    log(f"data: {data.sizes()}")
    settings = TrainingSettings(batch_size=plan.batch_size, augment=True, threads=plan.threads)
    trainer = DataTrainer(data, settings)
    per_epoch = steps_per_epoch(len(data.train), plan.batch_size)
    base_name, _, base_width = plan.arch.partition("@")
    base_multiplier = float(base_width or 1.0)
    # NAME@M is scaled by scale_width here, the rule of the `width` family below (and of every
    # committed run of this benchmark), not by the reference's own published rule.
    seed_arch, _ = adapt_for_input_size(scale_width(reference(base_name, num_classes=10), base_multiplier), plan.deploy_size)

    # ------------------------------------------------------------------ seed network
    seed_weights = work / "seed.pt"

    def train_seed() -> dict[str, Any]:
        log(f"training the seed network {plan.arch} for {plan.pretrain_epochs} epochs")
        with seeded(plan.seed):
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

    # ------------------------------------------------------------------ the networks
    base_arch = reference(base_name, num_classes=10)

    def family_arch(family: str, multiplier: float) -> Any:
        """``width``: ``scale_width`` (head kept wide, MobileNetV2's rule, as mobilenas scales);
        ``width+head``: every layer scaled, the head's 1x1 conv and hidden layer too (torchvision's
        MobileNetV3 width multiplier)."""
        arch = scale_width(reference(base_name, num_classes=10), float(f"{multiplier:.4f}"))
        if family == "width+head":
            head = dataclasses.replace(
                arch.head,
                conv_channels=make_divisible(base_arch.head.conv_channels * multiplier),
                hidden_channels=make_divisible(base_arch.head.hidden_channels * multiplier) if base_arch.head.hidden_channels else None,
            )
            arch = dataclasses.replace(arch, head=head)
        return adapt_for_input_size(arch, plan.deploy_size)[0]

    def pick_multiplier(family: str, target_ms: float, what: str) -> dict[str, Any]:
        # the multiplier whose table latency is closest to the target (bisection, then the better neighbour)
        low, high = 0.05, 1.0
        for _ in range(9):
            middle = (low + high) / 2
            if table_latency(family_arch(family, middle)) > target_ms:
                high = middle
            else:
                low = middle
        options = [(abs(table_latency(family_arch(family, m)) - target_ms), m, table_latency(family_arch(family, m))) for m in (low, high)]
        _, multiplier, latency = min(options)
        log(f"{family} matched to {what}: multiplier {multiplier:.3f} ({latency:.3f} ms by the table, target {target_ms:.3f} ms)")
        return {"multiplier": multiplier, "latency_ms": latency}

    def train_from_scratch(arch: Any, steps: int, name: str) -> dict[str, Any]:
        log(f"{name}: training from scratch for {steps} steps ({steps / per_epoch:.2f} epochs)")
        with seeded(plan.seed):
            model = build_model(arch, input_size=data.input_size)
        result = trainer.train_for_steps(model, steps, plan.seed, progress=True, from_scratch=True)
        assert result.status == "ok", result.error
        save_weights(work / f"{name}.pt", model.state_dict())
        return {"val": trainer.evaluate(model), "test": trainer.test(model), "steps": result.steps}

    networks: list[dict[str, Any]] = [{"name": "seed", "family": "seed", "arch": seed_arch, **seed, "latency_ms": start_latency, "multiplier": base_multiplier}]
    pairs = []
    for budget in plan.budgets:
        limit = budget * start_latency
        line = next(line for line in history if line["latency_ms"] <= limit * (1 + 1e-9))
        pruned_arch = Architecture.from_dict(line["architecture"])
        key = f"{budget:.2f}"

        def fine_tune(line: dict[str, Any] = line, pruned_arch: Architecture = pruned_arch, key: str = key) -> dict[str, Any]:
            log(f"budget {key}: long fine-tune of NetAdapt iteration {line['iteration']} for {plan.final_epochs} epochs")
            model = load_into(pruned_arch, load_weights(run_dir / line["checkpoint"]), data.input_size)
            result = trainer.train(model, plan.final_epochs, plan.seed + 1, progress=True)
            assert result.status == "ok", result.error
            save_weights(work / f"netadapt-{key}.pt", model.state_dict())
            return {"val": trainer.evaluate(model), "test": trainer.test(model), "steps": result.steps}

        tuned = cached(work / f"netadapt-{key}.json", fine_tune)
        lineage = seed["steps"] + line["iteration"] * plan.finetune_steps + tuned["steps"]
        netadapt = {"name": f"netadapt-{key}", "family": "netadapt", "arch": pruned_arch, **tuned, "steps": lineage, "latency_ms": line["latency_ms"], "iteration": line["iteration"], "budget": budget}
        networks.append(netadapt)
        pair = {"budget": budget, "netadapt": netadapt["name"]}
        for family, prefix in (("width", "width"), ("width+head", "widthhead")):
            choice = cached(work / f"{prefix}-{key}.choice.json", lambda family=family, line=line, key=key: pick_multiplier(family, line["latency_ms"], f"NetAdapt {key}"))
            arch = family_arch(family, choice["multiplier"])
            trained = cached(work / f"{prefix}-{key}.json", lambda arch=arch, lineage=lineage, name=f"{prefix}-{key}": train_from_scratch(arch, lineage, name))
            networks.append({"name": f"{prefix}-{key}", "family": family, "arch": arch, **trained, "latency_ms": choice["latency_ms"], "multiplier": choice["multiplier"]})
            pair[family] = f"{prefix}-{key}"
        pairs.append(pair)

    # More points on each width curve, so that accuracy can be read at any measured latency.
    longest = max(n["steps"] for n in networks if n["family"] == "netadapt")
    extra = [("width", 0.35), ("width", base_multiplier)]
    choice = cached(work / "widthhead-seed.choice.json", lambda: pick_multiplier("width+head", start_latency, "the seed"))
    extra.append(("width+head", choice["multiplier"]))
    for family, multiplier in extra:
        name = f"{'width' if family == 'width' else 'widthhead'}-x{multiplier:.3f}"
        arch = family_arch(family, multiplier)
        trained = cached(work / f"{name}.json", lambda arch=arch, name=name: train_from_scratch(arch, longest, name))
        networks.append({"name": name, "family": family, "arch": arch, **trained, "latency_ms": table_latency(arch), "multiplier": multiplier})

    # ------------------------------------------------------------------ measured latency, interleaved
    def measure_all() -> dict[str, Any]:
        log(f"measuring {len(networks)} networks end to end (interleaved, ONNX Runtime, 1 thread)")
        backend = make_backend("onnxruntime", threads=1, repeats=MEASURE_ROUNDS * MEASURE_RUNS_PER_ROUND)
        measurements = measure_architectures([n["arch"] for n in networks], backend, input_size=plan.deploy_size, rounds=MEASURE_ROUNDS, seed=plan.seed)
        return {"names": [n["name"] for n in networks], "latency_ms": [m.latency_ms for m in measurements], "iqr_ms": [m.spread.iqr_ms for m in measurements], "device": backend.device().describe()}

    measured = cached(work / "measured-all.json", measure_all)
    assert measured["names"] == [n["name"] for n in networks], "the cached measurements are of other networks; delete measured-all.json"
    for network, value, iqr in zip(networks, measured["latency_ms"], measured["iqr_ms"], strict=True):
        cost = architecture_cost(network["arch"], plan.deploy_size)
        network.update(measured_latency_ms=value, measured_iqr_ms=iqr, params=cost.params, macs=cost.macs, notation=network["arch"].to_notation())

    # ------------------------------------------------------------------ comparison
    by_name = {n["name"]: n for n in networks}
    comparisons = []
    for pair in pairs:
        point = by_name[pair["netadapt"]]
        row: dict[str, Any] = {"budget": pair["budget"], "netadapt": point["name"], "test": point["test"], "measured_latency_ms": point["measured_latency_ms"]}
        for family in ("width", "width+head"):
            matched = by_name[pair[family]]
            curve = sorted(((n["measured_latency_ms"], n["test"]) for n in networks if n["family"] == family), key=lambda xy: xy[0])
            row[family] = {
                "matched": matched["name"],
                "matched_test": matched["test"],
                "matched_measured_latency_ms": matched["measured_latency_ms"],
                "test_at_same_latency": interpolate(curve, point["measured_latency_ms"]),
                "latency_at_same_accuracy_ms": latency_at(curve, point["test"]),
            }
        comparisons.append(row)

    report = {
        "benchmark": "netadapt_vs_width",
        "date": _dt.date.today().isoformat(),
        "command": command_line(__file__),
        "plan": dataclasses.asdict(plan),
        "data": data.summary(),
        "device": measured["device"],
        "start_latency_ms": start_latency,
        "netadapt_iterations": len(history) - 1,
        "netadapt_proposal_steps_total": total_proposal_steps,
        "networks": [{k: v for k, v in n.items() if k != "arch"} for n in networks],
        "comparisons": comparisons,
        "wall_time_s": time.perf_counter() - started,
    }
    report["table_copied_from"] = None if args.table is None else str(args.table)
    report["provenance"] = provenance(__file__)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / f"{stem}.png")
    markdown = render(report, f"{stem}.png")
    (args.out / f"{stem}.md").write_text(markdown)
    print(markdown)
    return 0


def gains(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per budget and width family: NetAdapt's test-accuracy gain (points) at the same measured latency
    (interpolated on the family's curve), against the matched multiplier (same table latency, same
    training steps), and the speed-up at equal accuracy; None where the curve does not reach."""
    rows = []
    for row in report["comparisons"]:
        for family in ("width", "width+head"):
            f = row[family]
            same, at = f["test_at_same_latency"], f["latency_at_same_accuracy_ms"]
            rows.append({
                "budget": row["budget"],
                "family": family,
                "at_same_latency": None if same is None else 100 * (row["test"] - same),
                "matched": 100 * (row["test"] - f["matched_test"]),
                "matched_latency_ratio": f["matched_measured_latency_ms"] / row["measured_latency_ms"],
                "speedup": None if at is None else at / row["measured_latency_ms"],
            })
    return rows


def ratio_range(ratios: list[float]) -> str:
    """``0.90-0.97`` (one value: ``0.93``)."""
    low, high = min(ratios), max(ratios)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"


def summarize(reports: list[tuple[Path, dict[str, Any]]], out: Path) -> int:
    """Gathers runs (one result each, as read by :func:`read_result`) into a table of mean +-
    seed-to-seed std per budget and family; ValueError when they compare different budgets."""
    import statistics

    def stats(values: list[float | None]) -> str:
        known = [v for v in values if v is not None]
        if not known:
            return "n/a"
        spread = f" +- {statistics.stdev(known):.2f}" if len(known) > 1 else ""
        missing = f" ({len(values) - len(known)} n/a)" if len(known) < len(values) else ""
        return f"{statistics.fmean(known):+.2f}{spread}{missing}"

    def wins(values: list[float | None]) -> str:
        known = [v for v in values if v is not None]
        return f"{sum(v > 0 for v in known)}/{len(known)}"

    lines = [
        "# NetAdapt versus width multipliers: several runs",
        "",
        f"`python benchmarks/netadapt_vs_width.py --summarize {' '.join(p.name for p, _ in reports)}` (run from `benchmarks/`). "
        "Each run is one `python benchmarks/netadapt_vs_width.py [--seed N] [--table T]`; its setup and every network are in the .md beside its JSON.",
        "",
        "| run | seed | date | seed latency (table, ms) | seed test acc | NetAdapt iterations |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for path, report in reports:
        seed_net = next(n for n in report["networks"] if n["family"] == "seed")
        lines.append(
            f"| `{path.name}` | {report['plan']['seed']} | {report['date']} | {report['start_latency_ms']:.3f} | {seed_net['test']:.4f} | {report['netadapt_iterations']} |"
        )
    per_run = [gains(report) for _, report in reports]
    for index, first in enumerate(per_run[0]):  # before anything is written
        if any(index >= len(rows) or rows[index]["budget"] != first["budget"] or rows[index]["family"] != first["family"] for rows in per_run):
            raise ValueError("the runs compare different budgets; summarize runs of one plan")
    if any(len(rows) != len(per_run[0]) for rows in per_run):
        raise ValueError("the runs compare different budgets; summarize runs of one plan")
    all_ratios = [r["matched_latency_ratio"] for rows in per_run for r in rows]
    lines += [
        "",
        "NetAdapt's test-accuracy gain in points, mean +- seed-to-seed standard deviation over the runs, and in how many runs it is positive. "
        "*At the same latency*: against the family's curve interpolated at NetAdapt's measured latency (the curve's extra points are trained as "
        "long as the longest NetAdapt lineage, so at the higher budgets they had more steps than NetAdapt). *Matched*: against the multiplier with "
        "the same table latency trained with exactly NetAdapt's steps. The matched multipliers are not at NetAdapt's *measured* latency: their "
        f"measured latency is {ratio_range(all_ratios)} x NetAdapt's (the column beside the matched gain; below 1: the multiplier is faster), "
        "so a matched gain compares NetAdapt with a network that is that much faster or slower.",
        "",
        "| budget | family | gain at the same latency | positive | gain against the matched multiplier | positive | matched / NetAdapt measured latency | speed-up at equal accuracy |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for index, first in enumerate(per_run[0]):
        column = [rows[index] for rows in per_run]
        same = [r["at_same_latency"] for r in column]
        matched = [r["matched"] for r in column]
        speedups = [r["speedup"] for r in column if r["speedup"] is not None]
        speedup = "n/a" if not speedups else f"{min(speedups):.2f}-{max(speedups):.2f}x" + (f" ({len(column) - len(speedups)} never as accurate)" if len(speedups) < len(column) else "")
        ratios = [r["matched_latency_ratio"] for r in column]
        lines.append(
            f"| {first['budget']:.1%} | {first['family']} | {stats(same)} | {wins(same)} | {stats(matched)} | {wins(matched)} | {ratio_range(ratios)} | "
            f"{speedup} |"
        )
    lines += ["", "Over every budget and run, per family (points):", ""]
    for family in ("width", "width+head"):
        rows = [r for run_rows in per_run for r in run_rows if r["family"] == family]
        same, matched = [r["at_same_latency"] for r in rows], [r["matched"] for r in rows]
        ratios = [r["matched_latency_ratio"] for r in rows]
        lines.append(
            f"- against `{family}`: {stats(same)} at the same latency (positive in {wins(same)}), {stats(matched)} against the matched multiplier "
            f"(positive in {wins(matched)}; the matched multipliers measured {ratio_range(ratios)} x NetAdapt's latency)"
        )
    lines.append("")
    lines += ["Plot: `netadapt_vs_width.seeds.png` (every run's gain per budget; a point above zero is a NetAdapt win).", ""]
    plot_gains([(path.name, rows) for (path, _), rows in zip(reports, per_run, strict=True)], out / "netadapt_vs_width.seeds.png")
    markdown = "\n".join(lines)
    (out / "netadapt_vs_width.seeds.md").write_text(markdown)
    print(markdown)
    return 0


def plot_gains(runs: list[tuple[str, list[dict[str, Any]]]], path: Path) -> None:
    """Each run's gains per budget: one panel per width family, both kinds of gain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for axis, family in zip(axes, ("width", "width+head"), strict=True):
        for offset, (key, label, marker) in enumerate((("at_same_latency", "at the same measured latency", "o"), ("matched", "against the matched multiplier", "^"))):
            for index, (_, rows) in enumerate(runs):
                points = [(100 * r["budget"] + (offset - 0.5) * 2.0, r[key]) for r in rows if r["family"] == family and r[key] is not None]
                if points:
                    axis.plot(*zip(*points, strict=True), marker, color=f"C{offset}", alpha=0.75, label=label if index == 0 else None)
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_title(f"NetAdapt against {family}")
        axis.set_xlabel("budget (% of the seed network's latency)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test-accuracy gain of NetAdapt (points)")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"NetAdapt versus width multipliers, {len(runs)} runs")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def interpolate(curve: list[tuple[float, float]], latency_ms: float) -> float | None:
    """Accuracy of a (latency, accuracy) curve at ``latency_ms``, linear between neighbours; None outside."""
    for (x0, y0), (x1, y1) in itertools.pairwise(curve):
        if x0 <= latency_ms <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (latency_ms - x0) / (x1 - x0)
    return None


def latency_at(curve: list[tuple[float, float]], accuracy: float) -> float | None:
    """The lowest latency at which a (latency, accuracy) curve reaches ``accuracy`` (linear); None if never."""
    for (x0, y0), (x1, y1) in itertools.pairwise(curve):
        if y0 >= accuracy:
            return x0
        if y1 >= accuracy:
            return x0 + (x1 - x0) * (accuracy - y0) / (y1 - y0)
    return None


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.4))
    styles = {"netadapt": ("o-", "tab:green", "NetAdapt (long fine-tuned)"), "width": ("s--", "tab:blue", "width multiplier (head kept)"), "width+head": ("^--", "tab:orange", "width multiplier (head scaled)"), "seed": ("*", "black", "seed network")}
    for family, (style, color, label) in styles.items():
        points = sorted((n["measured_latency_ms"], n["test"]) for n in report["networks"] if n["family"] == family)
        if points:
            axis.plot(*zip(*points, strict=True), style, color=color, label=label, markersize=9 if family == "seed" else 6)
    axis.set_xlabel(f"measured latency (ms, ONNX Runtime, 1 thread, {report['plan']['deploy_size']}x{report['plan']['deploy_size']})")
    axis.set_ylabel("CIFAR-10 test accuracy (subset)")
    axis.set_title("NetAdapt vs. width multipliers")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render(report: dict[str, Any], plot_name: str = "netadapt_vs_width.png") -> str:
    plan = report["plan"]
    sizes = report["data"]["sizes"]
    size = plan["deploy_size"]
    lines = [
        "# NetAdapt versus width multipliers on this CPU",
        "",
        f"Generated by `{report.get('command', 'benchmarks/netadapt_vs_width.py')}` on {report['date']} ({report['device']}); seed {plan['seed']}; plot: `{plot_name}`.",
        "",
        "## Setup",
        "",
        f"- Seed network `{plan['arch']}` (MobileNetV3-Small scaled to width 0.5 by `scale_width`, the `width` family's rule, 10 classes), trained {plan['pretrain_epochs']} epochs from scratch on a CIFAR-10 "
        f"subset at 32x32 (the builder removes the first two strides for such small inputs): {sizes['train']} training images, {sizes['val']} "
        f"validation images carved from the training set for every NetAdapt decision, {sizes['test']} test images used only for this report.",
        f"- Latency: ONNX Runtime, 1 thread, batch 1, at the networks' {size}x{size} design resolution (the project's convention: latency at the "
        "deployment size, accuracy from the proxy resolution; at 32x32 these networks take ~0.3 ms, dominated by per-operator overhead). "
        "\"table\" is the lookup table's prediction NetAdapt worked with (its correction fitted on two networks at the start of the run); "
        f"\"measured\" is end to end, all networks interleaved ({MEASURE_ROUNDS} rounds x {MEASURE_RUNS_PER_ROUND} runs, median)."
        + (f" The table started as a copy of `{report['table_copied_from']}` (`--table`), so that runs of several seeds share its measurements; "
           "entries this run's networks needed beyond it were measured during the run." if report.get("table_copied_from") else ""),
        f"- NetAdapt: `netadapt refine` to {min(plan['budgets']):.1%} of the starting latency, removing {plan['reduction']:.1%} of it per iteration "
        f"(the official code's first step, no decay), granularity {plan['granularity']}, {plan['finetune_steps']} short fine-tune steps per proposal, the "
        f"MobileNetV3 rule (accuracy change per latency saved); {report['netadapt_iterations']} iterations. The first network under each budget "
        f"({', '.join(f'{b:.1%}' for b in plan['budgets'])}) then gets {plan['final_epochs']} epochs of fine-tuning.",
        "- Width multipliers of the same base network, two families: `width` is `mobilenas.space.scale_width` (the head's 1x1 conv and hidden "
        "layer are never scaled down, MobileNetV2's rule); `width+head` scales every layer including the head (torchvision's MobileNetV3 multiplier). "
        "For each NetAdapt network, the multiplier of each family with the closest *table* latency is trained from scratch for as many steps as the "
        "NetAdapt network's lineage received (seed training + the short fine-tunes of its ancestors + its long fine-tune); a few more "
        "multipliers fill in each family's curve (trained as long as the longest lineage).",
        f"- Not charged to NetAdapt: the short fine-tunes of the proposals that lost ({report['netadapt_proposal_steps_total']} steps in all, "
        f"against {plan['finetune_steps']} per iteration for the winners).",
        "",
        "## Every network",
        "",
        "| network | family | multiplier | table ms | measured ms | test acc | val acc | params | MACs | train steps |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in sorted(report["networks"], key=lambda n: (n["family"], -n["measured_latency_ms"])):
        multiplier = f"{n['multiplier']:.3f}" if n.get("multiplier") is not None else f"iteration {n['iteration']}"
        lines.append(
            f"| {n['name']} | {n['family']} | {multiplier} | {n['latency_ms']:.3f} | {n['measured_latency_ms']:.3f} | {n['test']:.4f} | {n['val']:.4f} | "
            f"{n['params']:,} | {n['macs'] / 1e6:.1f}M | {n['steps']} |"
        )
    lines += [
        "",
        "## NetAdapt against each width family",
        "",
        "\"at the same latency\": the family's test accuracy interpolated at the NetAdapt network's measured latency (n/a outside the family's measured "
        "range). \"speed-up at equal accuracy\": the family's measured latency where it reaches the NetAdapt network's accuracy, divided by "
        "NetAdapt's (n/a when the family never reaches it). \"matched\": the multiplier with the same table latency, trained with the same steps; "
        "its measured latency is not NetAdapt's, so its gain sits beside the ratio of the two measured latencies (matched / NetAdapt; below 1: "
        "the multiplier is faster).",
        "",
        "| budget | NetAdapt test acc | NetAdapt measured ms | family | matched: test acc | matched: measured ms | gain against the matched multiplier (points) "
        "| matched / NetAdapt measured latency | family acc at the same latency | NetAdapt gain at the same latency (points) | speed-up at equal accuracy |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["comparisons"]:
        for family in ("width", "width+head"):
            f = row[family]
            same = f["test_at_same_latency"]
            gain = "n/a" if same is None else f"{100 * (row['test'] - same):+.2f}"
            at = f["latency_at_same_accuracy_ms"]
            speedup = "n/a (never as accurate)" if at is None else f"{at / row['measured_latency_ms']:.2f}x"
            matched_gain = 100 * (row["test"] - f["matched_test"])
            ratio = f["matched_measured_latency_ms"] / row["measured_latency_ms"]
            lines.append(
                f"| {row['budget']:.1%} | {row['test']:.4f} | {row['measured_latency_ms']:.3f} | {family} | {f['matched_test']:.4f} | "
                f"{f['matched_measured_latency_ms']:.3f} | {matched_gain:+.2f} | {ratio:.2f} | {'n/a' if same is None else f'{same:.4f}'} | {gain} | {speedup} |"
            )
    lines += ["", "## Networks", ""]
    for n in report["networks"]:
        lines.append(f"- {n['name']}: `{n['notation']}`")
    lines += ["", f"Wall time of the last invocation: {report['wall_time_s'] / 60:.1f} min (stages cached in the work directory are not run again).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

