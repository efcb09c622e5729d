from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilenas.space import Architecture, Block, Head, Stem, architecture_cost, reference
from mobilenas.space.builder import adapt_for_input_size, build_model, fold_batchnorm
from mobilenas.space.references import PUBLISHED_PARAMS, REFERENCES, scale_width

from helpers import randomise_batchnorm, tiny_arch
from strategies import SPACES


def module_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def module_macs(model: torch.nn.Module, input_size: int, in_channels: int = 3) -> int:
    """MACs of convolutions and linear layers, counted by forward hooks (the oracle)."""
    total = 0

    def conv_hook(module: torch.nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * (module.in_channels // module.groups) * k

    def linear_hook(module: torch.nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, in_channels, input_size, input_size))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS))
def test_published_parameter_counts(name: str) -> None:
    arch = reference(name)
    assert module_params(build_model(arch)) == PUBLISHED_PARAMS[name]
    assert architecture_cost(arch).params == PUBLISHED_PARAMS[name]


def test_mnasnet_a1_matches_the_paper_within_half_a_percent() -> None:
    # No torchvision model; the paper reports 3.9M, timm's mnasnet_a1 3.89M.
    params = module_params(build_model(reference("mnasnet-a1")))
    assert abs(params - 3.89e6) / 3.89e6 < 0.005


def test_published_macs() -> None:
    # MobileNetV2 1.0: 300M (Table 4), MobileNetV3-Large 219M / -Small 56M (Tables 3), MnasNet-A1 312M.
    assert abs(architecture_cost(reference("mobilenetv2")).macs / 300e6 - 1) < 0.01
    assert abs(architecture_cost(reference("mobilenetv3-large")).macs / 219e6 - 1) < 0.02
    assert abs(architecture_cost(reference("mobilenetv3-small")).macs / 56e6 - 1) < 0.02
    assert abs(architecture_cost(reference("mnasnet-a1")).macs / 312e6 - 1) < 0.01


@pytest.mark.parametrize(("name", "params"), [("mnasnet-b1@0.5", 2_218_512), ("mnasnet-b1@0.75", 3_170_208), ("mnasnet-b1@1.3", 6_282_256)])
def test_width_multiplied_mnasnet_has_torchvisions_published_parameter_count(name: str, params: int) -> None:
    # torchvision's mnasnet0_5, mnasnet0_75 and mnasnet1_3
    assert architecture_cost(reference(name)).params == params
    assert module_params(build_model(reference(name))) == params


@pytest.mark.parametrize(
    ("name", "macs", "params", "tolerance"),
    [
        # MobileNetV2 (Sandler et al. 2018, TF-slim's table): 0.75 209M, 0.5 97M, 0.35 59M, 1.4 582M MACs;
        # TF-slim counts 1% fewer parameters at every width (3.47M at 1.0, torchvision 3,504,872)
        ("mobilenetv2@0.75", 209e6, 2.61e6, 0.015),
        ("mobilenetv2@0.5", 97e6, 1.95e6, 0.015),
        ("mobilenetv2@0.35", 59e6, 1.66e6, 0.015),
        ("mobilenetv2@1.4", 582e6, 6.06e6, 0.015),
        # MobileNetV3 (Howard et al. 2019, Table 3), to the paper's two significant digits
        ("mobilenetv3-large@0.75", 155e6, 4.0e6, 0.01),
        ("mobilenetv3-small@0.75", 44e6, 2.0e6, 0.025),
    ],
)
def test_width_multiplied_references_are_the_published_networks(name: str, macs: float, params: float, tolerance: float) -> None:
    # the old rule (every width scaled on its own, expansions rounded apart from their inputs)
    # was 5-11% short in MACs: mobilenetv2@0.75 had 192.8M
    cost = architecture_cost(reference(name))
    assert abs(cost.macs / macs - 1) < tolerance
    assert abs(cost.params / params - 1) < tolerance


def test_width_multiplied_references_build() -> None:
    for name in ("mobilenetv3-small@0.75", "mnasnet-a1@0.5", "mobilenetv2@0.35"):
        arch = reference(name)
        assert module_params(build_model(arch)) == architecture_cost(arch).params
    for name in REFERENCES:  # the rules give each network back at width 1
        assert reference(f"{name}@1.0") == reference(name)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_analytic_costs_equal_the_built_module_for_references(name: str) -> None:
    arch = reference(name)
    model = build_model(arch)
    cost = architecture_cost(arch, 224)
    assert cost.params == module_params(model)
    assert cost.macs == module_macs(model, 224)


@pytest.mark.parametrize("space_name", list(SPACES))
def test_analytic_costs_equal_the_built_module_for_samples(space_name: str) -> None:
    rng = np.random.default_rng(11)
    for _ in range(4):
        arch = SPACES[space_name].sample(rng).with_num_classes(10)
        model = build_model(arch)
        cost = architecture_cost(arch, 64)
        assert cost.params == module_params(model)
        assert cost.macs == module_macs(model, 64)


def test_closed_form_costs_of_a_hand_computed_network() -> None:
    # input 3x8x8; stem 3->8 k3 s2 (4x4); ds k3 8->8 with skip; ir k3 s2 8->16 (exp 16, SE 4) (2x2);
    # head 1x1 16->32, classifier 32->10.
    arch = Architecture(
        Stem(8, "relu"),
        ((Block("ds", 3, 1, 8, "relu", skip=True),), (Block("ir", 3, 2, 16, "relu", expanded_channels=16, se_channels=4),)),
        Head(32, 10, "relu", dropout=0.0),
    )
    stem = 3 * 8 * 9 + 2 * 8  # 232 params; MACs 216 * 16 = 3456
    ds = (8 * 9 + 2 * 8) + (8 * 8 + 2 * 8)  # 168; MACs 72*16 + 64*16 = 2176
    ir = (8 * 16 + 32) + (16 * 9 + 32) + (16 * 4 + 4 + 4 * 16 + 16) + (16 * 16 + 32)  # 772
    # ir MACs: expand 128*16 + dw 144*4 + SE 64+64 + project 256*4 = 3776
    head = (16 * 32 + 64) + (32 * 10 + 10)  # 906; MACs 512*4 + 320 = 2368
    assert (stem, ds, ir, head) == (232, 168, 772, 906)
    cost = architecture_cost(arch, 8)
    assert cost.params == 2078 == stem + ds + ir + head
    assert cost.macs == 11776 == 3456 + 2176 + 3776 + 2368
    model = build_model(arch)
    assert module_params(model) == 2078 and module_macs(model, 8) == 11776


@pytest.mark.parametrize("name", list(REFERENCES))
@pytest.mark.parametrize("input_size", [224, 32])
def test_reference_smoke(name: str, input_size: int) -> None:
    torch.manual_seed(0)
    arch = reference(name, num_classes=10)
    model = build_model(arch, input_size=input_size)
    model.train()
    x = torch.randn(2, 3, input_size, input_size)
    out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "classifier" in n)


def test_tiny_arch_touches_every_block_kind() -> None:
    model = build_model(tiny_arch())
    names = {n for n, _ in model.named_modules()}
    assert {"stages.0.0.dw.conv", "stages.1.0.expand.conv", "stages.1.0.se.reduce", "stages.1.1.conv.conv", "stages.1.1.se.expand", "head.hidden"} <= names
    out = model(torch.randn(1, 3, 16, 16))
    assert out.shape == (1, 10)


def test_skip_is_an_identity_residual() -> None:
    block = Block("ds", 3, 1, 8, "relu", skip=True)
    arch = Architecture(Stem(8, "relu", stride=1), ((block,),), Head(8, 2, "relu", dropout=0.0))
    model = build_model(arch).eval()
    inner = model.stages[0][0]
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        inner.skip = False
        plain = inner(x)
        inner.skip = True
        assert torch.allclose(inner(x), plain + x)


def test_adaptation_for_small_inputs() -> None:
    arch = reference("mobilenetv2")
    same, changed = adapt_for_input_size(arch, 224)
    assert same == arch and changed == ()
    small, changed = adapt_for_input_size(arch, 32)
    assert changed == ("stem.stride", "stages[1].blocks[0].stride")
    assert architecture_cost(small).params == architecture_cost(arch).params
    model = build_model(arch, input_size=32)
    assert model.adaptation == changed
    feature = model.stages(model.stem(torch.zeros(1, 3, 32, 32)))
    assert feature.shape[-1] == 4
    assert adapt_for_input_size(arch, 64)[1] == ("stem.stride",)


def test_scale_width() -> None:
    arch = reference("mobilenetv2")
    half = scale_width(arch, 0.5)
    assert half.stem.out_channels == 16 and half.stages[1][0].out_channels == 16
    assert half.head.conv_channels == 1280  # never scaled down (MobileNetV2's rule)
    assert architecture_cost(half).macs < architecture_cost(arch).macs / 2
    assert scale_width(arch, 1.0) == arch
    wide = scale_width(arch, 1.4)
    assert wide.head.conv_channels == 1792
    for (_, _, old), (_, _, new) in zip(arch.blocks(), wide.blocks(), strict=True):
        assert new.out_channels % 8 == 0 and new.out_channels >= 0.9 * 1.4 * old.out_channels
        if old.expanded_channels:
            assert new.expanded_channels % 8 == 0 and new.expanded_channels >= 0.9 * 1.4 * old.expanded_channels


@pytest.mark.parametrize("width", ["inf", "1e308", "nan", "1e9", "0", "-1", "16.5"])
def test_a_reference_width_no_network_could_have_is_one_clear_error(width: str) -> None:
    # inf and 1e308 had ended in an OverflowError traceback; 1e9 had printed a 2e27-parameter network
    with pytest.raises(ValueError, match=rf"^'mobilenetv2@{width}': width multiplier must be a positive number up to 16, got "):
        reference(f"mobilenetv2@{width}")
    with pytest.raises(ValueError, match=r"width multiplier must be a positive number up to 16"):
        scale_width(reference("mobilenetv2"), float(width))
    assert all(reference(f"{name}@16").stem.out_channels > 0 for name in REFERENCES)  # the widest allowed builds


@pytest.mark.parametrize("channels_last", [False, True])
def test_folding_batchnorm_keeps_the_outputs_and_leaves_the_model_alone(channels_last: bool) -> None:
    model = build_model(reference("mobilenetv3-small"), input_size=64)
    randomise_batchnorm(model, seed=3)  # folding the initial statistics (mean 0, var 1) would check little
    images = torch.randn(6, 3, 64, 64)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    model.train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert not folded.training
    assert model.training and sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 10
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())
    with torch.no_grad():
        expected = model.eval()(images)
        got = folded(images)
    assert expected.abs().max() > 1e-2
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
