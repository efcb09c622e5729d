"""mobilenas.space: what a network is.

The :class:`Architecture` value (stem, stages of explicit blocks, head), the two search spaces
(``mnasnet``, ``mobilenetv3``), the reference networks, the one builder, analytic costs and ONNX
export.
"""

from mobilenas.space.arch import (
    Architecture,
    Block,
    BlockContext,
    Head,
    Stem,
    block_contexts,
    diff,
    make_divisible,
)
from mobilenas.space.cost import architecture_cost, count_macs, count_params
from mobilenas.space.io import load_architecture
from mobilenas.space.references import REFERENCES, published_width, reference, scale_width
from mobilenas.space.search_space import (
    SPACES,
    Decision,
    SearchSpace,
    StageSpec,
    get_space,
    mnasnet_space,
    mobilenetv3_space,
)

__all__ = [
    "REFERENCES",
    "SPACES",
    "Architecture",
    "Block",
    "BlockContext",
    "Decision",
    "Head",
    "SearchSpace",
    "StageSpec",
    "Stem",
    "architecture_cost",
    "block_contexts",
    "count_macs",
    "count_params",
    "diff",
    "get_space",
    "load_architecture",
    "make_divisible",
    "mnasnet_space",
    "mobilenetv3_space",
    "published_width",
    "reference",
    "scale_width",
]
