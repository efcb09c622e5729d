from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from mobilenas.space import reference
from mobilenas.space.builder import build_model
from mobilenas.space.export import check_onnx, export_onnx, onnxruntime_session
from mobilenas.space.references import REFERENCES

from helpers import randomise_batchnorm, tiny_arch
from strategies import SPACES


@pytest.mark.parametrize("name", list(REFERENCES))
def test_reference_exports_and_matches_onnxruntime(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(reference(name))
    randomise_batchnorm(model)
    fixed = export_onnx(model, input_size=224)
    x = torch.randn(1, 3, 224, 224)
    assert check_onnx(model, fixed, x) <= 1e-4
    dynamic = export_onnx(model, input_size=224, dynamic_batch=True)
    assert check_onnx(model, dynamic, torch.randn(3, 3, 224, 224)) <= 1e-4


@pytest.mark.parametrize("space_name", list(SPACES))
def test_sampled_architectures_export(space_name: str) -> None:
    rng = np.random.default_rng(5)
    for _ in range(3):
        arch = SPACES[space_name].sample(rng).with_num_classes(10)
        model = build_model(arch)
        randomise_batchnorm(model)
        data = export_onnx(model, input_size=96, dynamic_batch=True)
        assert check_onnx(model, data, torch.randn(2, 3, 96, 96)) <= 1e-4


def test_fixed_batch_and_dynamic_batch_shapes(tmp_path) -> None:
    arch = tiny_arch()
    path = tmp_path / "tiny.onnx"
    export_onnx(arch, path, input_size=32)
    graph = onnx.load(str(path)).graph
    dims = [d.dim_value or d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 32, 32]
    dynamic = onnx.load_from_string(export_onnx(arch, input_size=32, dynamic_batch=True))
    dims = [d.dim_value or d.dim_param for d in dynamic.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 32, 32]
    session = onnxruntime_session(str(path))
    (out,) = session.run(None, {"input": np.zeros((1, 3, 32, 32), np.float32)})
    assert out.shape == (1, 10)


def test_export_leaves_the_model_in_training_mode() -> None:
    model = build_model(tiny_arch())
    model.train()
    export_onnx(model, input_size=16)
    assert model.training
