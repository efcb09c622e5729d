"""mobilenas.space: what a network is.

The :class:`Architecture` value (stem, stages of explicit blocks, head), the three network search
spaces (``mnasnet``, ``mobilenetv3``, ``mnasnet-relu6``; :func:`get_space`) and the NAS-Bench-201
cell space of tabular searches (``nb201``; :func:`load_space` reads either kind), the reference
networks, the one builder (:func:`build_model`), analytic costs (:func:`count_params`,
:func:`count_macs`) and ONNX export (:func:`export_onnx`).

The builder and the export need torch, which is imported when they are first used
(``from mobilenas.space import build_model``), not with this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenas.lazy import lazy_exports
from mobilenas.space.arch import (
    Architecture,
    Block,
    BlockContext,
    Head,
    Stem,
    adapt_for_input_size,
    block_contexts,
    diff,
    make_divisible,
)
from mobilenas.space.cost import architecture_cost, count_macs, count_params
from mobilenas.space.io import load_architecture
from mobilenas.space.nb201 import CellSpace, nb201_space
from mobilenas.space.references import REFERENCES, published_width, reference, scale_width
from mobilenas.space.search_space import (
    SPACES,
    Decision,
    SearchSpace,
    StageSpec,
    get_space,
    load_space,
    mnasnet_space,
    mobilenetv3_space,
)

if TYPE_CHECKING:  # imported on first use (torch): see mobilenas.lazy
    from mobilenas.space.builder import build_model
    from mobilenas.space.export import check_onnx, export_onnx

__all__ = [
    "REFERENCES",
    "SPACES",
    "Architecture",
    "Block",
    "BlockContext",
    "CellSpace",
    "Decision",
    "Head",
    "SearchSpace",
    "StageSpec",
    "Stem",
    "adapt_for_input_size",
    "architecture_cost",
    "block_contexts",
    "build_model",
    "check_onnx",
    "count_macs",
    "count_params",
    "diff",
    "export_onnx",
    "get_space",
    "load_architecture",
    "load_space",
    "make_divisible",
    "mnasnet_space",
    "mobilenetv3_space",
    "nb201_space",
    "published_width",
    "reference",
    "scale_width",
]

lazy_exports(__name__, __file__)
