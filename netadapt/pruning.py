"""Choose filters by L2 norm and copy the survivors into the rebuilt, narrower network. No masks.

NetAdapt rewrites the architecture (smaller channel counts), rebuilds the model with the one
builder and copies the surviving filters by module name. For every channel space whose width
shrank (a prunable group, or an SE squeeze that followed its block), the channels kept are those
whose producing filters have the largest L2 norm; for a residual-tied group the norms of all its
producers (the stem or project convolutions chained by skips) are combined, so every tensor of
the group keeps the same channels. Then every parameter and buffer is sliced along each
dimension that a shrunk space indexes: convolution outputs and inputs, depthwise filters, batch
norm scale, shift and running statistics, SE reduce and expand, the head's linear layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from mobilenas.netadapt.groups import channel_layout, producers, space_widths
from mobilenas.space.arch import Architecture, diff
from mobilenas.space.builder import Network, build_model


def filter_norms(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """L2 norm per output channel (dim 0) of one or several weight tensors, combined.

    ``sqrt(sum over tensors of ||W[c]||^2)``: the norm of channel ``c``'s filters concatenated.
    """
    if not weights:
        raise ValueError("no weights to rank")
    total = torch.zeros(weights[0].shape[0], dtype=torch.float64)
    for weight in weights:
        if weight.shape[0] != total.shape[0]:
            raise ValueError(f"tied filters disagree on their channel count: {weight.shape[0]} vs {total.shape[0]}")
        total += weight.detach().double().reshape(weight.shape[0], -1).pow(2).sum(dim=1).cpu()
    return total.sqrt()


def keep_indices(norms: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` largest norms, in increasing channel order.

    Ties go to the lower channel index (so equal filters keep the first ones, as the official
    "hello world" does).
    """
    size = norms.shape[0]
    if not 1 <= count <= size:
        raise ValueError(f"cannot keep {count} of {size} channels")
    # A stable sort on the negated norms keeps lower indices first among equal norms.
    order = torch.sort(-norms, stable=True).indices[:count]
    return torch.sort(order).values


def _module_weights(state: Mapping[str, torch.Tensor], module: str) -> torch.Tensor:
    key = f"{module}.weight"
    if key not in state:
        raise KeyError(f"the weights have no {key!r}; they do not belong to this architecture")
    return state[key]


def kept_channels(arch: Architecture, state: Mapping[str, torch.Tensor], target: Architecture) -> dict[str, torch.Tensor]:
    """For every channel space that is narrower in ``target``, the channel indices it keeps."""
    old_widths, new_widths = space_widths(arch), space_widths(target)
    sources = producers(arch)
    kept: dict[str, torch.Tensor] = {}
    for space, old in old_widths.items():
        new = new_widths[space]
        if new > old:
            raise ValueError(f"{space}: cannot grow from {old} to {new} channels by pruning")
        if new < old:
            norms = filter_norms([_module_weights(state, name) for name in sources[space]])
            kept[space] = keep_indices(norms, new)
    return kept


def _check_same_structure(arch: Architecture, target: Architecture) -> None:
    prunable = ("out_channels", "expanded_channels", "se_channels", "conv_channels", "hidden_channels")
    changed = [p for p in diff(arch, target) if p.rpartition(".")[2] not in prunable or p == "stem.in_channels"]
    if changed:
        raise ValueError(f"pruning only changes channel counts; the architectures also differ at {', '.join(changed)}")


def shrink_state_dict(arch: Architecture, state: Mapping[str, torch.Tensor], target: Architecture) -> dict[str, torch.Tensor]:
    """The weights of ``arch`` sliced to the narrower ``target`` (same block structure).

    Returns a new state dict (tensors copied) with exactly the keys of a model built from
    ``target``.
    """
    _check_same_structure(arch, target)
    kept = kept_channels(arch, state, target)
    layout = channel_layout(arch)
    result: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        module, _, field = key.rpartition(".")
        value = tensor
        spec = layout.get(module)
        if spec is not None and field != "num_batches_tracked" and value.dim() >= 1:
            if spec.out_space in kept:
                value = value.index_select(0, kept[spec.out_space].to(value.device))
            if value.dim() >= 2 and not spec.depthwise and spec.in_space in kept:
                value = value.index_select(1, kept[spec.in_space].to(value.device))
        result[key] = value.detach().clone()
    return result


def shrink_model(model: Network, target: Architecture, input_size: int | None = None) -> Network:
    """A new module for ``target`` carrying ``model``'s surviving filters.

    ``model`` is a module built by :func:`mobilenas.space.build_model`; ``input_size`` (the
    training resolution) is passed on to the builder so the same stride adaptation applies.
    """
    new_model = build_model(target, input_size=input_size)
    # Both modules hold the architecture they were built from, after the same stride adaptation
    # (it depends on strides only, which pruning does not touch).
    state = shrink_state_dict(model.arch, model.state_dict(), new_model.arch)
    new_model.load_state_dict(state)
    new_model.train(model.training)
    return new_model

