"""Hypothesis strategies for architectures: space members and arbitrary (non-uniform) values."""

from __future__ import annotations

from hypothesis import strategies as st

from mobilenas.space import (
    Architecture,
    Block,
    Head,
    SearchSpace,
    Stem,
    mnasnet_space,
    mobilenetv3_space,
)

SPACES = {"mnasnet": mnasnet_space(), "mobilenetv3": mobilenetv3_space()}


def index_vectors(space: SearchSpace) -> st.SearchStrategy[tuple[int, ...]]:
    return st.tuples(*(st.integers(0, len(d.options) - 1) for d in space.decisions))


def space_members(space: SearchSpace) -> st.SearchStrategy[Architecture]:
    return index_vectors(space).map(space.decode)


@st.composite
def arbitrary_architectures(draw: st.DrawFn, max_stages: int = 4, max_blocks: int = 3) -> Architecture:
    """Any valid architecture with arbitrary channel counts (what NetAdapt produces)."""
    acts = st.sampled_from(["relu", "relu6", "hswish"])
    stem = Stem(draw(st.integers(1, 40)), draw(acts), draw(st.sampled_from([3, 5, 7])), draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 3])))
    in_channels = stem.out_channels
    stages = []
    for _ in range(draw(st.integers(1, max_stages))):
        blocks = []
        for _ in range(draw(st.integers(1, max_blocks))):
            kind = draw(st.sampled_from(["ir", "ds", "conv"]))
            stride = draw(st.sampled_from([1, 2]))
            out = draw(st.one_of(st.just(in_channels), st.integers(1, 64)))
            expanded = draw(st.integers(1, 200)) if kind == "ir" else None
            se = draw(st.one_of(st.just(0), st.integers(1, 32)))
            skip = draw(st.booleans()) and stride == 1 and out == in_channels
            blocks.append(Block(kind, draw(st.sampled_from([3, 5, 7])), stride, out, draw(acts), expanded_channels=expanded, se_channels=se, skip=skip))
            in_channels = out
        stages.append(tuple(blocks))
    hidden = draw(st.one_of(st.none(), st.integers(1, 64)))
    head = Head(draw(st.integers(1, 64)), draw(st.integers(1, 20)), draw(acts), hidden_channels=hidden, dropout=draw(st.sampled_from([0.0, 0.2, 0.5])))
    return Architecture(stem, tuple(stages), head, draw(st.sampled_from(["sigmoid", "hardsigmoid"])))
