"""ONNX export of any architecture, and a check against ONNX Runtime.

Export uses the TorchScript-based exporter (``dynamo=False``): 0.03 s a block here against 0.75 s
for the dynamo exporter, which also needs onnxscript. Opset 17 has HardSwish and HardSigmoid as
single operators, which ONNX Runtime fuses.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilenas.space.arch import Architecture, as_architecture, check_input_size
from mobilenas.space.builder import build_model

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(
    model: nn.Module | Architecture | str | Path,
    path: str | Path | None = None,
    *,
    input_size: int = 224,
    in_channels: int | None = None,
    batch_size: int = 1,
    dynamic_batch: bool = False,
) -> bytes:
    """Export to ONNX (eval mode, fixed ``batch_size`` or a dynamic batch axis).

    ``model`` is a built module, exported as it is, or an :class:`Architecture` (or a reference
    name, notation string or JSON path), built with random weights for ``input_size`` as
    ``build_model(arch, input_size=input_size)`` builds it: the network mobilenas trains and times
    at that size (adapted to small inputs). Returns the serialised model; with ``path`` it is also
    written there (atomically).
    """
    input_size = check_input_size(input_size)
    if not isinstance(model, nn.Module):
        arch = as_architecture(model, "model")
        in_channels = in_channels or arch.stem.in_channels
        model = build_model(arch, input_size=input_size)
    if in_channels is None:
        built = getattr(model, "arch", None)
        in_channels = built.stem.in_channels if isinstance(built, Architecture) else 3
    was_training = model.training
    model.eval()
    dummy = torch.zeros(batch_size, in_channels, input_size, input_size)
    buffer = io.BytesIO()
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                model,
                (dummy,),
                buffer,  # type: ignore[arg-type]
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    finally:
        model.train(was_training)
    data = buffer.getvalue()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        from mobilenas.runs import temporary_path

        tmp = temporary_path(path)
        tmp.write_bytes(data)
        tmp.replace(path)
    return data


def onnxruntime_session(model_bytes: bytes | str | Path, threads: int = 1) -> object:
    """An ONNX Runtime CPU session at ``ORT_ENABLE_ALL`` (lower levels are 3-4x slower here)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = str(model_bytes) if isinstance(model_bytes, str | Path) else model_bytes
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def check_onnx(model: nn.Module, model_bytes: bytes, inputs: torch.Tensor) -> float:
    """Max absolute difference between PyTorch (eval) and ONNX Runtime on ``inputs``."""
    model.eval()
    with torch.no_grad():
        expected = model(inputs).numpy()
    session = onnxruntime_session(model_bytes)
    (actual,) = session.run(None, {INPUT_NAME: inputs.numpy()})  # type: ignore[attr-defined]
    return float(np.max(np.abs(actual - expected)))
