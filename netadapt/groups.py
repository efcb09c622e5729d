"""What is prunable in an :class:`~mobilenas.space.Architecture`, and how widths are set.

Channel *spaces* are the sets of channels that must be indexed the same way. Every tensor between
two blocks is one; identity skips tie tensors together (block ``i`` adds its input to its output,
so both carry the same channels in the same order), and a chain of such tensors is one space, a
*residual-tied group*. The prunable groups (MobileNetV3's proposal types) are:

``stem`` / ``stages[s].blocks[b].out`` (kind ``tied``)
    the output width of a residual-tied group: the stem or the first block producing it, plus
    every block chained to it by identity skips (type (b)); the next block's input follows.
``stages[s].blocks[b].expanded`` (kind ``expanded``)
    the expanded width of an ``ir`` block (type (a)).
``head.conv``, ``head.hidden`` (kind ``head``)
    the head's 1x1 convolution and hidden linear layer.

Squeeze-and-excitation widths are not groups of their own: they follow the channels their
block's SE acts on, keeping the block's SE ratio (``round(se * new / old)``, at least 1). The
classifier's outputs and the input channels are never pruned. ``ds`` blocks have no expansion,
so their depthwise convolution (and SE) act on the input space.

:class:`ArchitectureDescription` implements :class:`mobilenas.netadapt.core.Description` for
architectures; :func:`channel_layout` tells the weight copy which space indexes each dimension of
each module (by the builder's stable module names).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mobilenas.netadapt.core import Group
from mobilenas.space.arch import Architecture, Block
from mobilenas.units import listed

STEM = "stem"
HEAD_CONV = "head.conv"
HEAD_HIDDEN = "head.hidden"


def block_path(stage: int, index: int) -> str:
    return f"stages[{stage}].blocks[{index}]"


def _module_prefix(stage: int, index: int) -> str:
    return f"stages.{stage}.{index}"


@dataclass(frozen=True)
class TiedGroup:
    """A residual-tied group: the tensors that carry the same channels.

    ``producers`` are ``"stem"`` or block paths whose output is in the group (all but the first
    have identity skips); ``readers`` are the block paths whose *input* is in the group.
    """

    name: str
    producers: tuple[str, ...]
    readers: tuple[str, ...]
    width: int


def tied_groups(arch: Architecture) -> tuple[TiedGroup, ...]:
    """Residual-tied groups in network order (the first one contains the stem)."""
    names: list[str] = [STEM]
    members: list[list[str]] = [[STEM]]
    readers: list[list[str]] = [[]]
    widths: list[int] = [arch.stem.out_channels]
    for s, b, block in arch.blocks():
        path = block_path(s, b)
        readers[-1].append(path)
        if block.skip:
            members[-1].append(path)
        else:
            names.append(f"{path}.out")
            members.append([path])
            readers.append([])
            widths.append(block.out_channels)
    return tuple(TiedGroup(n, tuple(m), tuple(r), w) for n, m, r, w in zip(names, members, readers, widths, strict=True))


def _tied_group_of_input(arch: Architecture) -> dict[str, TiedGroup]:
    """Block path -> the tied group its input belongs to."""
    return {reader: group for group in tied_groups(arch) for reader in group.readers}


def prunable_groups(arch: Architecture) -> tuple[Group, ...]:
    """Every prunable group in network order (see the module docstring)."""
    tied = {g.producers[0]: g for g in tied_groups(arch)}
    groups: list[Group] = [Group(STEM, arch.stem.out_channels, "tied")]
    for s, b, block in arch.blocks():
        path = block_path(s, b)
        if block.type == "ir":
            assert block.expanded_channels is not None
            groups.append(Group(f"{path}.expanded", block.expanded_channels, "expanded"))
        if path in tied:
            groups.append(Group(tied[path].name, block.out_channels, "tied"))
    groups.append(Group(HEAD_CONV, arch.head.conv_channels, "head"))
    if arch.head.hidden_channels:
        groups.append(Group(HEAD_HIDDEN, arch.head.hidden_channels, "head"))
    return tuple(groups)


def scaled_se(se_channels: int, old_width: int, new_width: int) -> int:
    """An SE squeeze width that keeps its ratio to the channels it acts on."""
    if not se_channels:
        return 0
    return max(1, round(se_channels * new_width / old_width))


def _parse_block_path(text: str) -> tuple[int, int]:
    # "stages[2].blocks[0]" -> (2, 0)
    stage_part, block_part = text.split(".")
    return int(stage_part[len("stages["):-1]), int(block_part[len("blocks["):-1])


def set_group_width(arch: Architecture, group: str, width: int) -> Architecture:
    """A new architecture with ``group`` at ``width`` channels; ties and SE widths follow."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"{group}: a width must be a whole number >= 1, got {width!r}")
    names = {g.name for g in prunable_groups(arch)}
    if group not in names:
        raise ValueError(f"{group!r} is not a prunable group of this architecture; groups: {', '.join(sorted(names))}")
    stages = [list(stage) for stage in arch.stages]
    stem, head = arch.stem, arch.head

    def replace(path: str, *, out_channels: int | None = None, expanded_channels: int | None = None, se_channels: int | None = None) -> None:
        s, b = _parse_block_path(path)
        block = stages[s][b]
        stages[s][b] = dataclasses.replace(
            block,
            out_channels=block.out_channels if out_channels is None else out_channels,
            expanded_channels=block.expanded_channels if expanded_channels is None else expanded_channels,
            se_channels=block.se_channels if se_channels is None else se_channels,
        )

    if group == HEAD_CONV:
        head = dataclasses.replace(head, conv_channels=width)
    elif group == HEAD_HIDDEN:
        head = dataclasses.replace(head, hidden_channels=width)
    elif group.endswith(".expanded"):
        path = group[: -len(".expanded")]
        s, b = _parse_block_path(path)
        block = stages[s][b]
        assert block.expanded_channels is not None
        replace(path, expanded_channels=width, se_channels=scaled_se(block.se_channels, block.expanded_channels, width))
    else:
        tied = next(g for g in tied_groups(arch) if g.name == group)
        old = tied.width
        for producer in tied.producers:
            if producer == STEM:
                stem = dataclasses.replace(stem, out_channels=width)
                continue
            s, b = _parse_block_path(producer)
            block = stages[s][b]
            # a conv block's SE acts on its outputs
            se = scaled_se(block.se_channels, old, width) if block.type == "conv" else None
            replace(producer, out_channels=width, se_channels=se)
        for reader in tied.readers:
            s, b = _parse_block_path(reader)
            block = stages[s][b]
            if block.type == "ds":  # a ds block's depthwise conv and SE act on its inputs
                replace(reader, se_channels=scaled_se(block.se_channels, old, width))
    return dataclasses.replace(arch, stem=stem, stages=tuple(tuple(stage) for stage in stages), head=head)


class ArchitectureDescription:
    """:class:`mobilenas.netadapt.core.Description` for :class:`Architecture` values."""

    def groups(self, definition: Architecture) -> tuple[Group, ...]:
        return prunable_groups(definition)

    def with_width(self, definition: Architecture, group: str, width: int) -> Architecture:
        return set_group_width(definition, group, width)


def granularity_problem(arch: Architecture, granularity: int) -> str | None:
    """What to say where ``granularity`` leaves groups of ``arch`` unable to shrink (a group
    shrinks only to multiples of it below its width); ``None`` where every group can."""
    groups = prunable_groups(arch)
    stuck = [g for g in groups if g.width <= granularity]
    if not groups or not stuck:
        return None
    if len(stuck) == len(groups):
        widest = max(g.width for g in groups)
        return (f"--granularity {granularity} is not smaller than any group's width (the widest has {widest} channels), so no group can be pruned;"
                f" give a --granularity below {widest} (default: 8)")
    return (f"{len(stuck)} of the {len(groups)} groups cannot shrink at --granularity {granularity}: they are {granularity} channels wide or less"
            f" ({listed([g.name for g in stuck], 3)})")


def group_widths(arch: Architecture) -> dict[str, int]:
    """``{group name: width}`` in network order (what the history records per iteration)."""
    return {g.name: g.width for g in prunable_groups(arch)}


# --------------------------------------------------------------------------- layout for copying


@dataclass(frozen=True)
class ModuleLayout:
    """Which channel space indexes a module's output (dim 0) and input (dim 1) channels.

    ``None`` means a fixed dimension (the image channels, the classes). A depthwise convolution
    has one space for both (its dim 1 has size 1).
    """

    out_space: str | None
    in_space: str | None
    depthwise: bool = False


def se_space(path: str) -> str:
    return f"{path}.se"


def channel_layout(arch: Architecture) -> dict[str, ModuleLayout]:
    """Module name (the builder's stable names) -> :class:`ModuleLayout`, for every conv/BN/linear.

    Spaces are named by prunable groups, plus ``<block>.se`` for each SE squeeze.
    """
    input_group = _tied_group_of_input(arch)
    output_group = {p: g.name for g in tied_groups(arch) for p in g.producers}
    layout: dict[str, ModuleLayout] = {
        "stem.conv": ModuleLayout(STEM, None),
        "stem.bn": ModuleLayout(STEM, None),
    }
    for s, b, block in arch.blocks():
        path, prefix = block_path(s, b), _module_prefix(s, b)
        in_space, out_space = input_group[path].name, output_group.get(path)
        if out_space is None:  # produces a group that started earlier? impossible: a producer is in one group
            raise AssertionError(f"{path} produces no tied group")
        layout.update(_block_layout(block, path, prefix, in_space, out_space))
    last = tied_groups(arch)[-1].name
    layout["head.conv.conv"] = ModuleLayout(HEAD_CONV, last)
    layout["head.conv.bn"] = ModuleLayout(HEAD_CONV, None)
    features = HEAD_CONV
    if arch.head.hidden_channels:
        layout["head.hidden"] = ModuleLayout(HEAD_HIDDEN, HEAD_CONV)
        features = HEAD_HIDDEN
    layout["head.classifier"] = ModuleLayout(None, features)
    return layout


def _block_layout(block: Block, path: str, prefix: str, in_space: str, out_space: str) -> dict[str, ModuleLayout]:
    layout: dict[str, ModuleLayout] = {}
    if block.type == "conv":
        layout[f"{prefix}.conv.conv"] = ModuleLayout(out_space, in_space)
        layout[f"{prefix}.conv.bn"] = ModuleLayout(out_space, None)
        mid = out_space
    else:
        mid = in_space
        if block.type == "ir":
            mid = f"{path}.expanded"
            layout[f"{prefix}.expand.conv"] = ModuleLayout(mid, in_space)
            layout[f"{prefix}.expand.bn"] = ModuleLayout(mid, None)
        layout[f"{prefix}.dw.conv"] = ModuleLayout(mid, mid, depthwise=True)
        layout[f"{prefix}.dw.bn"] = ModuleLayout(mid, None)
        layout[f"{prefix}.project.conv"] = ModuleLayout(out_space, mid)
        layout[f"{prefix}.project.bn"] = ModuleLayout(out_space, None)
    if block.se_channels:
        layout[f"{prefix}.se.reduce"] = ModuleLayout(se_space(path), mid)
        layout[f"{prefix}.se.expand"] = ModuleLayout(mid, se_space(path))
    return layout


def space_widths(arch: Architecture) -> dict[str, int]:
    """Width of every channel space (prunable groups and SE squeezes)."""
    widths = group_widths(arch)
    for s, b, block in arch.blocks():
        if block.se_channels:
            widths[se_space(block_path(s, b))] = block.se_channels
    return widths


def producers(arch: Architecture) -> dict[str, tuple[str, ...]]:
    """Space -> the modules whose filters make its channels (ranked jointly by L2 norm)."""
    result: dict[str, list[str]] = {}
    for name, module in channel_layout(arch).items():
        if module.out_space is None or module.depthwise or name.endswith(".bn") or name.endswith("se.expand"):
            continue
        result.setdefault(module.out_space, []).append(name)
    return {space: tuple(names) for space, names in result.items()}
