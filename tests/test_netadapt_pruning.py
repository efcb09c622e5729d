"""Prunable groups of architectures and the weight copy into the narrower network."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mobilenas.netadapt.core import smallest_reachable
from mobilenas.netadapt.groups import (
    ArchitectureDescription,
    channel_layout,
    prunable_groups,
    set_group_width,
    tied_groups,
)
from mobilenas.netadapt.pruning import filter_norms, kept_channels, shrink_model, shrink_state_dict
from mobilenas.space import REFERENCES, Architecture, Block, Head, Stem, reference
from mobilenas.space.builder import build_model

from helpers import randomise_batchnorm, tiny_arch


def coverage_arch() -> Architecture:
    """Every case the copy must handle: a stem tied to a ds block with SE (on its input), ir
    blocks with SE chained by skips to a conv block with SE, an ir block without SE or skip,
    and a head with a hidden layer."""
    return Architecture(
        stem=Stem(16, "hswish", stride=1),
        stages=(
            (Block("ds", 3, 1, 16, "relu", se_channels=4, skip=True),),
            (
                Block("ir", 5, 2, 24, "hswish", expanded_channels=48, se_channels=12),
                Block("ir", 3, 1, 24, "relu", expanded_channels=40, se_channels=10, skip=True),
                Block("conv", 3, 1, 24, "relu6", se_channels=6, skip=True),
            ),
            (Block("ir", 3, 1, 32, "relu6", expanded_channels=64),),
        ),
        head=Head(48, 10, "hswish", hidden_channels=40, dropout=0.0),
        se_gate="hardsigmoid",
    )


# --------------------------------------------------------------------------- groups


def test_groups_of_the_coverage_arch() -> None:
    arch = coverage_arch()
    groups = {g.name: (g.width, g.kind) for g in prunable_groups(arch)}
    assert groups == {
        "stem": (16, "tied"),
        "stages[1].blocks[0].expanded": (48, "expanded"),
        "stages[1].blocks[0].out": (24, "tied"),
        "stages[1].blocks[1].expanded": (40, "expanded"),
        "stages[2].blocks[0].expanded": (64, "expanded"),
        "stages[2].blocks[0].out": (32, "tied"),
        "head.conv": (48, "head"),
        "head.hidden": (40, "head"),
    }
    tied = {g.name: g.producers for g in tied_groups(arch)}
    assert tied["stem"] == ("stem", "stages[0].blocks[0]")
    assert tied["stages[1].blocks[0].out"] == ("stages[1].blocks[0]", "stages[1].blocks[1]", "stages[1].blocks[2]")


def test_residual_tied_group_shrinks_together() -> None:
    arch = coverage_arch()
    small = set_group_width(arch, "stages[1].blocks[0].out", 16)
    assert [b.out_channels for b in small.stages[1]] == [16, 16, 16]
    assert [b.skip for _, _, b in small.blocks()] == [b.skip for _, _, b in arch.blocks()]
    assert small.block_in_channels(2, 0) == 16
    assert small.stages[1][2].se_channels == 4  # conv block's SE acts on its outputs: 6 * 16/24
    assert small.stages[1][1].se_channels == 10  # an ir block's SE follows its expansion only
    stem_small = set_group_width(arch, "stem", 8)
    assert stem_small.stem.out_channels == 8 and stem_small.stages[0][0].out_channels == 8
    assert stem_small.stages[0][0].se_channels == 2  # the ds block's SE acts on its input
    expanded = set_group_width(arch, "stages[1].blocks[0].expanded", 24)
    assert expanded.stages[1][0].expanded_channels == 24 and expanded.stages[1][0].se_channels == 6
    head = set_group_width(set_group_width(arch, "head.conv", 16), "head.hidden", 8)
    assert (head.head.conv_channels, head.head.hidden_channels, head.head.num_classes) == (16, 8, 10)


def test_set_group_width_rejects_unknown_groups_and_bad_widths() -> None:
    with pytest.raises(ValueError, match=r"not a prunable group.*groups: "):
        set_group_width(coverage_arch(), "stages[0].blocks[0].expanded", 8)  # a ds block has no expansion
    with pytest.raises(ValueError, match="whole number >= 1"):
        set_group_width(coverage_arch(), "stem", 0)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_reference_groups_and_tied_skips(name: str) -> None:
    arch = reference(name, num_classes=10)
    groups = prunable_groups(arch)
    assert len({g.name for g in groups}) == len(groups)
    expansions = sum(1 for _, _, b in arch.blocks() if b.type == "ir")
    assert sum(1 for g in groups if g.kind == "expanded") == expansions
    for group in tied_groups(arch):
        widths = {arch.stem.out_channels if p == "stem" else arch.stages[int(p[7])][int(p.split("[")[2][:-1])].out_channels for p in group.producers}
        assert widths == {group.width}


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(REFERENCES)), data=st.data())
def test_any_group_at_any_width_is_a_valid_architecture(name: str, data: st.DataObject) -> None:
    arch = reference(name, num_classes=10)
    group = data.draw(st.sampled_from(prunable_groups(arch)))
    width = data.draw(st.integers(1, group.width))
    small = set_group_width(arch, group.name, width)  # validates skips on construction
    assert {g.name: g.width for g in prunable_groups(small)}[group.name] == width
    assert [b.skip for _, _, b in small.blocks()] == [b.skip for _, _, b in arch.blocks()]
    others = {g.name: g.width for g in prunable_groups(arch) if g.name != group.name}
    assert {g.name: g.width for g in prunable_groups(small) if g.name != group.name} == others


@pytest.mark.parametrize("name", [*REFERENCES, "tiny"])
def test_layout_covers_every_parameter_and_the_smallest_network_loads(name: str) -> None:
    arch = tiny_arch() if name == "tiny" else reference(name, num_classes=10)
    model = build_model(arch)
    layout = channel_layout(arch)
    for key in model.state_dict():
        assert key.rpartition(".")[0] in layout, key
    smallest = smallest_reachable(arch, 8, ArchitectureDescription())
    state = shrink_state_dict(arch, model.state_dict(), smallest)
    build_model(smallest).load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- the weight copy


def hook_points(arch: Architecture, group: str) -> list[str]:
    """Module outputs (by name) that carry ``group``'s channels, written out by hand."""
    table = {
        "stem": ["stem", "stages.0.0", "stages.0.0.dw"],
        "stages[1].blocks[0].expanded": ["stages.1.0.expand", "stages.1.0.dw"],
        "stages[1].blocks[0].out": ["stages.1.0.project", "stages.1.0", "stages.1.1", "stages.1.2.conv", "stages.1.2"],
        "stages[1].blocks[1].expanded": ["stages.1.1.expand", "stages.1.1.dw"],
        "stages[2].blocks[0].expanded": ["stages.2.0.expand", "stages.2.0.dw"],
        "stages[2].blocks[0].out": ["stages.2.0.project", "stages.2.0"],
        "head.conv": ["head.conv"],
        "head.hidden": ["head.hidden"],
    }
    return table[group]


SE_OF_SPACE = {
    "stages[0].blocks[0].se": "stages.0.0.se.reduce",
    "stages[1].blocks[0].se": "stages.1.0.se.reduce",
    "stages[1].blocks[1].se": "stages.1.1.se.reduce",
    "stages[1].blocks[2].se": "stages.1.2.se.reduce",
}


@contextmanager
def zeroed(model: nn.Module, points: dict[str, torch.Tensor]) -> Iterator[None]:
    """Zero the channels *not* listed in ``points[name]`` of each named module's output."""
    modules = dict(model.named_modules())
    handles = []
    for name, keep in points.items():
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor, keep: torch.Tensor = keep) -> torch.Tensor:
            mask = torch.zeros(output.shape[1], dtype=output.dtype)
            mask[keep] = 1.0
            shape = (1, -1) + (1,) * (output.dim() - 2)
            return output * mask.view(shape)
        handles.append(modules[name].register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def randomised(arch: Architecture, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(arch)
    randomise_batchnorm(model, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            module.bias.data.normal_(0, 0.2, generator=generator)
        if isinstance(module, nn.Linear):
            module.bias.data.normal_(0, 0.2, generator=generator)
    return model.eval()


@pytest.mark.parametrize("group", [g.name for g in prunable_groups(coverage_arch())])
def test_pruned_model_equals_the_large_one_with_pruned_channels_zeroed(group: str) -> None:
    arch = coverage_arch()
    width = {g.name: g.width for g in prunable_groups(arch)}[group]
    small_arch = set_group_width(arch, group, width // 2 + 1)
    large = randomised(arch, seed=len(group))
    small = shrink_model(large, small_arch).eval()
    assert small.arch == small_arch
    kept = kept_channels(arch, large.state_dict(), small_arch)
    points = {name: kept[group] for name in hook_points(arch, group)}
    for space, indices in kept.items():  # SE squeezes that followed their block
        if space.endswith(".se"):
            points[SE_OF_SPACE[space]] = indices
    assert set(kept) - set(SE_OF_SPACE) == {group}
    inputs = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected_unpruned = large(inputs)
        with zeroed(large, points):
            expected = large(inputs)
        actual = small(inputs)
    assert not torch.allclose(expected, expected_unpruned, atol=1e-4)  # the zeroing mattered
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


def test_kept_filters_have_the_largest_joint_norm() -> None:
    arch = coverage_arch()
    model = randomised(arch, seed=3)
    state = model.state_dict()
    small_arch = set_group_width(arch, "stages[1].blocks[0].out", 8)
    kept = kept_channels(arch, state, small_arch)["stages[1].blocks[0].out"]
    norms = filter_norms([state["stages.1.0.project.conv.weight"], state["stages.1.1.project.conv.weight"], state["stages.1.2.conv.conv.weight"]])
    dropped = [i for i in range(24) if i not in kept.tolist()]
    assert norms[kept].min() >= norms[dropped].max()
    assert kept.tolist() == sorted(kept.tolist())


def test_shrink_model_keeps_the_input_size_adaptation() -> None:
    arch = reference("mobilenetv3-small", num_classes=10)
    model = build_model(arch, input_size=32)
    group = prunable_groups(arch)[3]
    small = shrink_model(model, set_group_width(arch, group.name, 8), input_size=32)
    assert small.adaptation == model.adaptation and small.adaptation
    assert small(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_shrinking_refuses_other_changes() -> None:
    arch = coverage_arch()
    state = build_model(arch).state_dict()
    with pytest.raises(ValueError, match="only changes channel counts"):
        shrink_state_dict(arch, state, arch.replace_block(2, 0, Block("ir", 5, 1, 32, "relu6", expanded_channels=64)))
    with pytest.raises(ValueError, match="cannot grow"):
        shrink_state_dict(arch, state, set_group_width(arch, "head.conv", 64))
