"""Benchmark: proxy-training throughput on Ray Tune with 2 workers versus 1, on this machine.

The same 12 architectures (a seeded random sample of the mobilenetv3 space) are proxy-trained
with the default proxy budget through the search's Ray Tune driver, once with ``--workers 1`` and
once with ``--workers 2`` (each trial one thread), in the order 1, 2, 2, 1 so that the machine's
slow drift cancels. Latency is a constant here: only training throughput is measured. Ray's
start-up (``ray.init``) is included, as a user pays it.

    python benchmarks/search_ray_throughput.py            # writes (overwrites) the committed benchmarks/search_ray_throughput.md and .json
    python benchmarks/search_ray_throughput.py --samples 2 --out /tmp/ray.md   # a quick check
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from _common import check_report, command_line, positive_int, write_report

from mobilenas.runs import RunDir
from mobilenas.search.orchestrator import Problem, SearchRun
from mobilenas.search.proxy import ProxySettings
from mobilenas.search.rewards import RewardSpec
from mobilenas.search.strategies import make_strategy
from mobilenas.search.tune_driver import run_on_tune
from mobilenas.search.wrappers import Deduplicate, HandleFailures
from mobilenas.space import get_space
from mobilenas.train import ProxyConfig, load_dataset

HERE = Path(__file__).parent


class ConstantLatency(Problem):
    kind = "network"

    def __init__(self, space) -> None:
        self.space = space

    def key(self, indices):
        return self.decode(indices).fingerprint()

    def latency_ms(self, indices) -> float:
        return 10.0

    def describe(self, candidate) -> str:
        return candidate.to_notation()


def one_run(workers: int, samples: int, data, config: ProxyConfig, seed: int) -> dict:
    space = get_space("mobilenetv3", num_classes=data.num_classes)
    problem = ConstantLatency(space)
    with tempfile.TemporaryDirectory() as root:
        run = RunDir.create(Path(root) / "run", {"kind": "search"})
        strategy = Deduplicate(HandleFailures(make_strategy("random", [len(d.options) for d in space.decisions], seed)), problem.key)
        search = SearchRun(run, problem, strategy, RewardSpec.soft(), 10.0, samples, seed=seed)
        settings = ProxySettings(config, str(run.root), keep_weights=False, train_images=len(data.train))
        start = time.perf_counter()
        run_on_tune(search, data, settings, workers=workers)
        wall = time.perf_counter() - start
        trained = search.trained
        images = sum(int(t.info.get("steps", 0)) * config.batch_size for t in trained)
        return {
            "workers": workers, "wall_time_s": wall, "trainings": len(trained), "failed": sum(t.status != "ok" for t in trained),
            "trainings_per_min": 60 * len(trained) / wall, "images_per_s": images / wall,
            "per_trial_images_per_s": statistics.median(float(t.images_per_s or 0) for t in trained),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=positive_int, default=12, help="architectures proxy-trained in each run (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=HERE / "search_ray_throughput.md", help="the .md to write, and the .json beside it (default: the committed results, overwritten)")
    args = parser.parse_args(argv)
    out = check_report(parser, args.out)
    data = load_dataset("synthetic", seed=0)
    config = ProxyConfig(threads=1)
    runs = [one_run(w, args.samples, data, config, seed=7) for w in (1, 2, 2, 1)]
    by = {w: [r for r in runs if r["workers"] == w] for w in (1, 2)}
    mean = {w: {k: statistics.mean(r[k] for r in rs) for k in ("wall_time_s", "trainings_per_min", "images_per_s", "per_trial_images_per_s")} for w, rs in by.items()}
    speedup = mean[2]["trainings_per_min"] / mean[1]["trainings_per_min"]
    lines = [
        "# Ray Tune proxy-training throughput: 2 workers vs 1",
        "",
        f"{args.samples} mobilenetv3-space architectures, default proxy ({config.steps} steps x {config.batch_size} images, "
        f"1 thread each), synthetic data set; runs in the order 1, 2, 2, 1 workers on this {os.cpu_count()}-core machine.",
        "",
        "| workers | run | wall time (s) | trainings/min | training images/s (all workers) | median images/s of one trial |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for i, r in enumerate(runs):
        lines.append(f"| {r['workers']} | {i + 1} | {r['wall_time_s']:.1f} | {r['trainings_per_min']:.2f} | {r['images_per_s']:.0f} | {r['per_trial_images_per_s']:.0f} |")
    lines += ["", f"Speed-up of 2 workers over 1 (trainings per minute, mean of two runs each): **{speedup:.2f}x**.", "",
              f"Reproduce: `{command_line(__file__, argv)}`", ""]
    write_report(out, {"runs": runs, "speedup": speedup}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
