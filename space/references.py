"""Reference architectures as values, one named row per block, each citing what it transcribes.

Golden parameter counts (1000 classes), checked in the tests against the built module:
MobileNetV2 1.0 = 3,504,872; MNASNet 1.0 (MnasNet-B1) = 4,383,312; MobileNetV3-Large =
5,483,032; MobileNetV3-Small = 2,542,856 (torchvision's published counts). MnasNet-A1 has no
torchvision model; the paper reports 3.9M parameters and timm's ``mnasnet_a1`` 3.89M, which the
tests check to within 0.5%.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mobilenas.space.arch import (
    MAX_WIDTH_MULTIPLIER,
    Architecture,
    Block,
    Head,
    Stem,
    as_architecture,
    make_divisible,
)

# ---------------------------------------------------------------- helpers


def _ir(k: int, s: int, in_channels: int, expanded: int, out: int, act: str, se: int = 0) -> Block:
    skip = s == 1 and in_channels == out
    return Block("ir", k, s, out, act, expanded_channels=expanded, se_channels=se, skip=skip)


def _ds(k: int, s: int, in_channels: int, out: int, act: str, se: int = 0) -> Block:
    return Block("ds", k, s, out, act, se_channels=se, skip=s == 1 and in_channels == out)


def _mbv3_se(expanded: int) -> int:
    # torchvision MobileNetV3: SqueezeExcitation(expanded, _make_divisible(expanded // 4, 8))
    return make_divisible(expanded // 4, 8)


# ---------------------------------------------------------------- MobileNetV2


def mobilenetv2(num_classes: int = 1000) -> Architecture:
    """MobileNetV2 1.0 (Sandler et al. 2018, Table 2): t, c, n, s rows; ReLU6 everywhere."""
    act = "relu6"
    rows = [  # (expansion t, out channels c, repeats n, stride s)  -- Table 2
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    in_channels = 32
    stages = []
    for t, c, n, s in rows:
        blocks = []
        for i in range(n):
            stride = s if i == 0 else 1
            if t == 1:
                blocks.append(_ds(3, stride, in_channels, c, act))
            else:
                blocks.append(_ir(3, stride, in_channels, in_channels * t, c, act))
            in_channels = c
        stages.append(tuple(blocks))
    return Architecture(
        stem=Stem(32, act),
        stages=tuple(stages),
        head=Head(1280, num_classes, act, dropout=0.2),
        se_gate="sigmoid",
    )


# ---------------------------------------------------------------- MnasNet


def _mnasnet(rows: list[tuple[str, int, int, int, int, int, float]], num_classes: int) -> Architecture:
    """rows: (op, kernel, expansion, out, repeats, stride, se_ratio); SE width from the block input."""
    act = "relu"
    in_channels = 32
    stages = []
    for op, k, e, c, n, s, se_ratio in rows:
        blocks = []
        for i in range(n):
            stride = s if i == 0 else 1
            # MnasNet's official code: num_reduced_filters = max(1, int(input_filters * se_ratio))
            se = max(1, int(in_channels * se_ratio)) if se_ratio else 0
            if op == "ds":
                blocks.append(_ds(k, stride, in_channels, c, act, se))
            else:
                blocks.append(_ir(k, stride, in_channels, in_channels * e, c, act, se))
            in_channels = c
        stages.append(tuple(blocks))
    return Architecture(
        stem=Stem(32, act),
        stages=tuple(stages),
        head=Head(1280, num_classes, act, dropout=0.2),
        se_gate="sigmoid",
    )


def mnasnet_a1(num_classes: int = 1000) -> Architecture:
    """MnasNet-A1 (Tan et al. 2019, Figure 7(a)); SE ratio 0.25 of the block input."""
    return _mnasnet(
        [  # (op, kernel, expansion, out, repeats, stride, se_ratio)
            ("ds", 3, 1, 16, 1, 1, 0.0),  # SepConv (k3x3)
            ("ir", 3, 6, 24, 2, 2, 0.0),  # MBConv6 (k3x3) x2
            ("ir", 5, 3, 40, 3, 2, 0.25),  # MBConv3 (k5x5), SE x3
            ("ir", 3, 6, 80, 4, 2, 0.0),  # MBConv6 (k3x3) x4
            ("ir", 3, 6, 112, 2, 1, 0.25),  # MBConv6 (k3x3), SE x2
            ("ir", 5, 6, 160, 3, 2, 0.25),  # MBConv6 (k5x5), SE x3
            ("ir", 3, 6, 320, 1, 1, 0.0),  # MBConv6 (k3x3) x1
        ],
        num_classes,
    )


def mnasnet_b1(num_classes: int = 1000) -> Architecture:
    """MnasNet-B1 as torchvision's MNASNet 1.0 (Tan et al. 2019, Figure 7 / Appendix, no SE)."""
    return _mnasnet(
        [  # (op, kernel, expansion, out, repeats, stride, se_ratio) -- torchvision _stack() calls
            ("ds", 3, 1, 16, 1, 1, 0.0),
            ("ir", 3, 3, 24, 3, 2, 0.0),
            ("ir", 5, 3, 40, 3, 2, 0.0),
            ("ir", 5, 6, 80, 3, 2, 0.0),
            ("ir", 3, 6, 96, 2, 1, 0.0),
            ("ir", 5, 6, 192, 4, 2, 0.0),
            ("ir", 3, 6, 320, 1, 1, 0.0),
        ],
        num_classes,
    )


# ---------------------------------------------------------------- MobileNetV3


def _mobilenetv3(stage_rows: list[list[tuple[int, int, int, bool, str, int]]], head_conv: int, hidden: int, num_classes: int) -> Architecture:
    """stage_rows: per stage (kernel, expanded, out, se, activation, stride) as in the paper's tables."""
    in_channels = 16
    stages = []
    for rows in stage_rows:
        blocks = []
        for k, expanded, out, se, act_code, s in rows:
            act = "hswish" if act_code == "HS" else "relu"
            se_channels = _mbv3_se(expanded) if se else 0
            if expanded == in_channels:  # torchvision: no expand conv when exp size == input
                blocks.append(_ds(k, s, in_channels, out, act, se_channels))
            else:
                blocks.append(_ir(k, s, in_channels, expanded, out, act, se_channels))
            in_channels = out
        stages.append(tuple(blocks))
    return Architecture(
        stem=Stem(16, "hswish"),
        stages=tuple(stages),
        head=Head(head_conv, num_classes, "hswish", hidden_channels=hidden, dropout=0.2),
        se_gate="hardsigmoid",
    )


def mobilenetv3_large(num_classes: int = 1000) -> Architecture:
    """MobileNetV3-Large (Howard et al. 2019, Table 1): kernel, exp size, out, SE, NL, stride."""
    return _mobilenetv3(
        [
            [(3, 16, 16, False, "RE", 1)],
            [(3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1)],
            [(5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1)],
            [(3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1)],
            [(3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1)],
            [(5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1)],
        ],
        head_conv=960,
        hidden=1280,
        num_classes=num_classes,
    )


def mobilenetv3_small(num_classes: int = 1000) -> Architecture:
    """MobileNetV3-Small (Howard et al. 2019, Table 2): kernel, exp size, out, SE, NL, stride."""
    return _mobilenetv3(
        [
            [(3, 16, 16, True, "RE", 2)],
            [(3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1)],
            [(5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1)],
            [(5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1)],
            [(5, 288, 96, True, "HS", 2), (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1)],
        ],
        head_conv=576,
        hidden=1024,
        num_classes=num_classes,
    )


REFERENCES: dict[str, Callable[..., Architecture]] = {
    "mobilenetv2": mobilenetv2,
    "mnasnet-a1": mnasnet_a1,
    "mnasnet-b1": mnasnet_b1,
    "mobilenetv3-large": mobilenetv3_large,
    "mobilenetv3-small": mobilenetv3_small,
}

PUBLISHED_PARAMS = {
    "mobilenetv2": 3_504_872,
    "mnasnet-b1": 4_383_312,
    "mobilenetv3-large": 5_483_032,
    "mobilenetv3-small": 2_542_856,
}


# How each family's released models apply a width multiplier (see :func:`published_width`).
WIDTH_RULES: dict[str, str] = {
    "mobilenetv2": "mobilenetv2",
    "mnasnet-a1": "mnasnet",
    "mnasnet-b1": "mnasnet",
    "mobilenetv3-large": "mobilenetv3",
    "mobilenetv3-small": "mobilenetv3",
}


def reference(name: str, num_classes: int = 1000) -> Architecture:
    """A reference architecture by name (``mobilenetv2``, ``mnasnet-a1``, ...).

    A width multiplier may follow ``@``: ``mobilenetv2@0.75`` is the family's own published
    network at that width (:func:`published_width`), as its papers and released models define it.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a reference name such as 'mobilenetv2' or 'mobilenetv2@0.75', got {type(name).__name__}")
    base, at, width = name.partition("@")
    if base not in REFERENCES:
        raise ValueError(f"unknown reference {base!r}; choose one of {', '.join(REFERENCES)}")
    if at and not width.strip():
        raise ValueError(f"{name!r}: nothing after '@'; give a width multiplier, like {base}@0.75, or leave out the '@' for the network at width 1")
    arch = REFERENCES[base](num_classes)
    if width:
        try:
            multiplier = float(width)
        except ValueError:
            raise ValueError(f"{name!r}: the width multiplier after '@' must be a number, like mobilenetv2@0.75") from None
        try:
            arch = published_width(arch, multiplier, WIDTH_RULES[base])
        except ValueError as error:
            raise ValueError(f"{name!r}: {error}") from None
    return arch


def published_width(arch: Architecture | str | Path, multiplier: float, rule: str, divisor: int = 8) -> Architecture:
    """``arch`` at a width ``multiplier`` by the rule of its family's released models.

    Stem and block outputs scale (:func:`make_divisible`); a block's expansion is its own
    ratio times its *scaled* input, as the official code computes it (so it is not rounded twice
    away from the published network). Per ``rule``:

    * ``mobilenetv2`` (Sandler et al. 2018; TF-slim and torchvision): expansion ``t x input``;
      the last 1280 channels scale only up (``1280 x max(1, multiplier)``). Reproduces 0.75: 209M
      MACs, 0.5: 97M, 0.35: 59M, 1.4: 582M.
    * ``mnasnet`` (MnasNet's TF code and torchvision's ``MNASNet``): expansion ``t x input``, SE
      ``int(input x ratio)``, head 1280 whatever the width. Reproduces torchvision's mnasnet0_5,
      mnasnet0_75 and mnasnet1_3 parameter counts exactly.
    * ``mobilenetv3`` (Howard et al. 2019, TF-slim's ``finegrain_classification_mode``): expansion
      ``make_divisible(ratio x input)``, SE a quarter of the expansion, the head's 1x1 conv
      scales, its hidden layer only up. Reproduces Large 0.75: 155M MACs, 4.0M parameters, and
      Small 0.75: 44M, 2.0M (the paper's Table 3).

    :func:`scale_width` is the plain rule for any architecture (every width scaled on its own).
    """
    if rule not in ("mobilenetv2", "mnasnet", "mobilenetv3"):
        raise ValueError(f"unknown width rule {rule!r}: mobilenetv2, mnasnet or mobilenetv3")
    arch = as_architecture(arch)
    multiplier = _multiplier(multiplier)

    def inner(block: Block, old_in: int, new_in: int) -> tuple[int | None, int]:
        expanded = None
        if block.expanded_channels:
            ratio = block.expanded_channels / old_in
            expanded = make_divisible(new_in * ratio, divisor) if rule == "mobilenetv3" else new_in * round(ratio)
        if not block.se_channels:
            return expanded, 0
        if rule == "mnasnet":
            return expanded, max(1, int(new_in * block.se_channels / old_in))
        return expanded, make_divisible((expanded or new_in) // 4, divisor)

    arch = _rescaled(arch, multiplier, divisor, inner)
    head, up = arch.head, max(1.0, multiplier)
    if rule == "mobilenetv2":
        head = dataclasses.replace(head, conv_channels=make_divisible(head.conv_channels * up, divisor))
    elif rule == "mobilenetv3":
        hidden = make_divisible(head.hidden_channels * up, divisor) if head.hidden_channels else None
        head = dataclasses.replace(head, conv_channels=make_divisible(head.conv_channels * multiplier, divisor), hidden_channels=hidden)
    return dataclasses.replace(arch, head=head)


def scale_width(arch: Architecture | str | Path, multiplier: float, divisor: int = 8) -> Architecture:
    """Scale every channel count by ``multiplier``, rounded with :func:`make_divisible`.

    Stem, expanded, output and SE widths all scale, each on its own; the head's 1x1 conv and
    hidden layer scale only up, never down (MobileNetV2's rule for its last 1280 channels, which
    keeps the classifier wide for small multipliers). Identity skips stay where shapes still
    allow them. This is the plain rule for any architecture (a searched one, for instance); the
    reference networks' ``name@multiplier`` follow their own families' published rules instead
    (:func:`published_width`), which this one misses by up to 11% in MACs.

    ``arch`` may also be a reference name, notation string or JSON path; a ``multiplier`` that is
    not a number raises ``TypeError``, one outside (0, 16] ``ValueError``.
    """
    arch = as_architecture(arch)
    multiplier = _multiplier(multiplier)

    def inner(block: Block, old_in: int, new_in: int) -> tuple[int | None, int]:
        expanded = make_divisible(block.expanded_channels * multiplier, divisor) if block.expanded_channels else None
        return expanded, make_divisible(block.se_channels * multiplier, divisor) if block.se_channels else 0

    arch = _rescaled(arch, multiplier, divisor, inner)
    up = max(1.0, multiplier)
    head = dataclasses.replace(
        arch.head,
        conv_channels=make_divisible(arch.head.conv_channels * up, divisor),
        hidden_channels=make_divisible(arch.head.hidden_channels * up, divisor) if arch.head.hidden_channels else None,
    )
    return dataclasses.replace(arch, head=head)


def _multiplier(value: Any) -> float:
    """A width multiplier: a real number in (0, MAX_WIDTH_MULTIPLIER]; TypeError or ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"multiplier: expected a number such as 0.75, got {value!r}")
    multiplier = float(value)
    if not (math.isfinite(multiplier) and 0 < multiplier <= MAX_WIDTH_MULTIPLIER):
        raise ValueError(f"width multiplier must be a positive number up to {MAX_WIDTH_MULTIPLIER}, got {multiplier:g}")
    return multiplier


def _rescaled(arch: Architecture, multiplier: float, divisor: int, inner: Callable[[Block, int, int], tuple[int | None, int]]) -> Architecture:
    """``arch`` with its stem and block outputs scaled by ``multiplier`` (:func:`make_divisible`),
    each block's expanded and SE widths from ``inner(block, old input, new input)``, identity
    skips kept where shapes still allow them; the head as it was."""
    if not 0 < multiplier <= MAX_WIDTH_MULTIPLIER:  # also NaN and infinity
        raise ValueError(f"width multiplier must be a positive number up to {MAX_WIDTH_MULTIPLIER}, got {multiplier:g}")
    old_in, new_in = arch.stem.out_channels, make_divisible(arch.stem.out_channels * multiplier, divisor)
    stem = dataclasses.replace(arch.stem, out_channels=new_in)
    stages = []
    for stage in arch.stages:
        blocks = []
        for block in stage:
            out = make_divisible(block.out_channels * multiplier, divisor)
            expanded, se = inner(block, old_in, new_in)
            skip = block.skip and block.stride == 1 and new_in == out
            blocks.append(dataclasses.replace(block, out_channels=out, expanded_channels=expanded, se_channels=se, skip=skip))
            old_in, new_in = block.out_channels, out
        stages.append(tuple(blocks))
    return dataclasses.replace(arch, stem=stem, stages=tuple(stages))
