"""A benchmark command for :class:`~mobilenas.latency.CommandBackend`: the worked example.

``python -m mobilenas.latency.ort_command MODEL.onnx [--threads N] [--warmup N] [--repeats N]``
times an ONNX file with ONNX Runtime in this separate process and prints its median as the last
line, a JSON object ``{"latency_ms": ..., "iqr_ms": ..., "runs": ...}``. Any command that prints
such a line (or ``... 12.3 ms``) works with ``nas-latency --command``; for a phone, the same
script would ``adb push`` the file and run the vendor's benchmark tool instead::

    nas-latency measure mobilenetv3-large \\
        --command "python -m mobilenas.latency.ort_command {model} --threads {threads}"
    nas-latency build --space mobilenetv3 --device-name my-phone \\
        --command "python my_phone_bench.py {model}"

It imports only NumPy and ONNX Runtime, so it can be copied and adapted on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobilenas.latency.ort_command", description="Time an ONNX model with ONNX Runtime (CPU) and print its median latency.")
    parser.add_argument("model", help="the .onnx file")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default: 1)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: 5)")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs (default: 30)")
    args = parser.parse_args(argv)
    for name, value, least in (("--threads", args.threads, 1), ("--warmup", args.warmup, 0), ("--repeats", args.repeats, 1)):
        if value < least:
            parser.error(f"argument {name}: expected a whole number >= {least}, got {value}")

    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime raises its own exception types
        print(f"ort_command: cannot load {args.model}: {error}", file=sys.stderr)
        return 2
    (model_input,) = session.get_inputs()
    shape = [d if isinstance(d, int) else 1 for d in model_input.shape]
    feed = {model_input.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    for _ in range(args.warmup):
        session.run(None, feed)
    clock = time.thread_time_ns if args.threads == 1 else time.perf_counter_ns
    samples = []
    for _ in range(args.repeats):
        start = clock()
        session.run(None, feed)
        samples.append((clock() - start) / 1e6)
    p25, median, p75 = np.percentile(samples, [25, 50, 75])
    print(json.dumps({"latency_ms": float(median), "iqr_ms": float(p75 - p25), "runs": len(samples)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
