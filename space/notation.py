"""The one-line, human-readable block notation, both ways.

timm-style tokens (``ir_r2_k3_s2_e6_c24_se0.25_nre``); unlike timm's decoder ours round-trips
exactly and rejects any key it does not understand. A whole network is written as::

    stem_k3_s2_c32_nr6 | ds_k3_s1_c16_nr6 | ir_r2_k3_s2_e6_c24_nr6 | ... | head_c1280_o1000_nr6_d0.2_gsig

``|`` separates the stem, each stage, and the head; ``,`` separates block groups in a stage.

Block keys (first part is the type: ``ir`` inverted residual, ``ds`` depthwise-separable,
``cn`` regular conv):

=========  ===========================================================================
``r{n}``   repeat the block n times; the stride applies to the first repeat only
``k{n}``   kernel size
``s{n}``   stride
``e{x}``   expansion ratio: expanded = round(input channels * x) (for each repeat)
``x{n}``   explicit expanded channels (used when no short ratio reproduces the width)
``c{n}``   output channels
``se{x}``  squeeze-and-excitation ratio: squeeze = make_divisible(channels * x, 8), where
           channels are those the SE acts on (MobileNetV3's rule)
``sq{n}``  explicit squeeze channels (used when the ratio rule does not reproduce them)
``n{a}``   activation: ``re`` ReLU, ``r6`` ReLU6, ``hs`` hard-swish (required)
``noskip`` no identity residual although shapes allow one (default: a residual wherever
           stride is 1 and input and output channels match)
=========  ===========================================================================

Stem keys: ``k``, ``s``, ``c``, ``n``, and ``i{n}`` input channels (default 3). Head keys:
``c`` 1x1 conv channels, ``h`` hidden linear width (optional), ``o`` classes, ``n``
activation, ``d`` dropout, ``g`` SE gate (``sig`` sigmoid, ``hsig`` hard-sigmoid).
"""

from __future__ import annotations

import re
from typing import Any

from mobilenas.errors import SpecError
from mobilenas.space.arch import Architecture, Block, Head, Stem, make_divisible

ACT_CODES = {"re": "relu", "r6": "relu6", "hs": "hswish"}
ACT_NAMES = {v: k for k, v in ACT_CODES.items()}
GATE_CODES = {"sig": "sigmoid", "hsig": "hardsigmoid"}
GATE_NAMES = {v: k for k, v in GATE_CODES.items()}
TYPE_CODES = {"ir": "ir", "ds": "ds", "cn": "conv"}
TYPE_NAMES = {v: k for k, v in TYPE_CODES.items()}

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
_INT = r"([0-9]+)"
# Multi-letter keys first so that "se0.25" is not read as stride "e0.25".
_BLOCK_KEYS = [("noskip", r"noskip()"), ("se", "se" + _NUMBER), ("sq", "sq" + _INT), ("r", "r" + _INT), ("k", "k" + _INT),
               ("s", "s" + _INT), ("e", "e" + _NUMBER), ("x", "x" + _INT), ("c", "c" + _INT), ("n", "n([a-z0-9]+)")]
_STEM_KEYS = [("k", "k" + _INT), ("s", "s" + _INT), ("c", "c" + _INT), ("n", "n([a-z0-9]+)"), ("i", "i" + _INT)]
_HEAD_KEYS = [("c", "c" + _INT), ("h", "h" + _INT), ("o", "o" + _INT), ("n", "n([a-z0-9]+)"), ("d", "d" + _NUMBER), ("g", "g([a-z]+)")]


def _fmt(value: float) -> str:
    return f"{value:g}"


def _parse_keys(token: str, parts: list[str], keys: list[tuple[str, str]], where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in parts:
        for name, pattern in keys:
            match = re.fullmatch(pattern, part)
            if match:
                if name in found:
                    raise SpecError(where, f"{token!r} gives key {name!r} twice")
                found[name] = match.group(1)
                break
        else:
            known = ", ".join(n for n, _ in keys)
            raise SpecError(where, f"{token!r} has an unknown part {part!r} (known keys: {known})")
    return found


def _require(found: dict[str, str], key: str, token: str, where: str, meaning: str) -> str:
    if key not in found:
        raise SpecError(where, f"{token!r} is missing {meaning} (key {key!r})")
    return found[key]


def _activation(code: str, token: str, where: str) -> str:
    if code not in ACT_CODES:
        raise SpecError(where, f"{token!r}: activation 'n{code}' is not one of {', '.join('n' + c for c in ACT_CODES)}")
    return ACT_CODES[code]


# --------------------------------------------------------------------------- emit


def _block_token(block: Block, in_channels: int) -> str:
    parts = [TYPE_NAMES[block.type], f"k{block.kernel_size}", f"s{block.stride}"]
    if block.expanded_channels is not None:
        ratio = round(block.expanded_channels / in_channels, 2)
        if ratio > 0 and int(in_channels * ratio + 0.5) == block.expanded_channels:
            parts.append(f"e{_fmt(ratio)}")
        else:
            parts.append(f"x{block.expanded_channels}")
    parts.append(f"c{block.out_channels}")
    if block.se_channels:
        base = block.se_input_channels(in_channels)
        parts.append("se0.25" if make_divisible(base * 0.25, 8) == block.se_channels else f"sq{block.se_channels}")
    parts.append(f"n{ACT_NAMES[block.activation]}")
    if not block.skip and block.stride == 1 and in_channels == block.out_channels:
        parts.append("noskip")
    return "_".join(parts)


def _group(tokens: list[str], blocks: tuple[Block, ...]) -> list[str]:
    """Merge runs of identical blocks into ``r{n}`` groups (stride only on the first)."""
    groups: list[list[Any]] = []  # [token, count]
    for token, block in zip(tokens, blocks, strict=True):
        if groups and block.stride == 1:
            first = groups[-1][0]
            if re.sub(r"_s[0-9]+_", "_s1_", first, count=1) == token:
                groups[-1][1] += 1
                continue
        groups.append([token, 1])
    out = []
    for token, count in groups:
        if count > 1:
            head, _, rest = token.partition("_")
            token = f"{head}_r{count}_{rest}"
        out.append(token)
    return out


def to_notation(arch: Architecture) -> str:
    """The one-line notation; ``from_notation(to_notation(a)) == a`` for every architecture."""
    stem = arch.stem
    stem_parts = ["stem", f"k{stem.kernel_size}", f"s{stem.stride}", f"c{stem.out_channels}", f"n{ACT_NAMES[stem.activation]}"]
    if stem.in_channels != 3:
        stem_parts.append(f"i{stem.in_channels}")
    pieces = ["_".join(stem_parts)]
    in_channels = stem.out_channels
    for stage in arch.stages:
        tokens = []
        for block in stage:
            tokens.append(_block_token(block, in_channels))
            in_channels = block.out_channels
        pieces.append(", ".join(_group(tokens, stage)))
    head = arch.head
    head_parts = ["head", f"c{head.conv_channels}"]
    if head.hidden_channels:
        head_parts.append(f"h{head.hidden_channels}")
    head_parts += [f"o{head.num_classes}", f"n{ACT_NAMES[head.activation]}", f"d{_fmt(float(head.dropout))}", f"g{GATE_NAMES[arch.se_gate]}"]
    pieces.append("_".join(head_parts))
    return " | ".join(pieces)


# --------------------------------------------------------------------------- parse


def _parse_blocks(token: str, in_channels: int, where: str) -> list[Block]:
    code, *parts = token.split("_")
    if code not in TYPE_CODES:
        raise SpecError(where, f"{token!r}: block type {code!r} is not one of {', '.join(TYPE_CODES)}")
    block_type = TYPE_CODES[code]
    found = _parse_keys(token, parts, _BLOCK_KEYS, where)
    repeats = int(found.get("r", "1"))
    if repeats < 1:
        raise SpecError(where, f"{token!r}: r must be >= 1")
    kernel = int(_require(found, "k", token, where, "the kernel size"))
    stride = int(_require(found, "s", token, where, "the stride"))
    out = int(_require(found, "c", token, where, "the output channels"))
    activation = _activation(_require(found, "n", token, where, "the activation"), token, where)
    if block_type == "ir" and "e" not in found and "x" not in found:
        raise SpecError(where, f"{token!r}: an 'ir' block needs its expansion (e{{ratio}} or x{{channels}})")
    if block_type != "ir" and ("e" in found or "x" in found):
        raise SpecError(where, f"{token!r}: only 'ir' blocks take an expansion (e or x)")
    if "e" in found and "x" in found:
        raise SpecError(where, f"{token!r}: give the expansion once, as e{{ratio}} or x{{channels}}")
    if "se" in found and "sq" in found:
        raise SpecError(where, f"{token!r}: give the SE width once, as se{{ratio}} or sq{{channels}}")
    blocks = []
    for i in range(repeats):
        expanded = None
        if "x" in found:
            expanded = int(found["x"])
        elif "e" in found:
            expanded = int(in_channels * float(found["e"]) + 0.5)
        block_stride = stride if i == 0 else 1
        skip = "noskip" not in found and block_stride == 1 and in_channels == out
        try:
            block = Block(block_type, kernel, block_stride, out, activation, expanded_channels=expanded, skip=skip)
            se = 0
            if "sq" in found:
                se = int(found["sq"])
            elif "se" in found and float(found["se"]) > 0:
                se = make_divisible(block.se_input_channels(in_channels) * float(found["se"]), 8)
            blocks.append(Block(block_type, kernel, block_stride, out, activation, expanded_channels=expanded, se_channels=se, skip=skip))
        except SpecError as error:
            raise SpecError(where, f"{token!r}: {error}") from None
        in_channels = out
    return blocks


def from_notation(text: str) -> Architecture:
    """Parse the notation written by :func:`to_notation` (see the module docstring)."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError("notation", "empty notation; expected 'stem_... | <stage> | ... | head_...'")
    pieces = [p.strip() for p in text.split("|")]
    if len(pieces) < 3:
        raise SpecError("notation", "expected 'stem_... | <stage> | ... | head_...' with at least one stage")
    stem_token, *stage_tokens, head_token = pieces
    if not stem_token.startswith("stem_"):
        raise SpecError("notation", f"the first part must be the stem ('stem_k3_s2_c16_nhs'), got {stem_token!r}")
    if not head_token.startswith("head_"):
        raise SpecError("notation", f"the last part must be the head ('head_c1280_o1000_nre_d0.2_gsig'), got {head_token!r}")
    found = _parse_keys(stem_token, stem_token.split("_")[1:], _STEM_KEYS, "stem")
    try:
        stem = Stem(
            out_channels=int(_require(found, "c", stem_token, "stem", "the output channels")),
            activation=_activation(_require(found, "n", stem_token, "stem", "the activation"), stem_token, "stem"),
            kernel_size=int(found.get("k", "3")),
            stride=int(found.get("s", "2")),
            in_channels=int(found.get("i", "3")),
        )
    except SpecError as error:
        raise error.under("stem") from None
    in_channels = stem.out_channels
    stages = []
    for s, stage_token in enumerate(stage_tokens):
        blocks: list[Block] = []
        for token in (t.strip() for t in stage_token.split(",")):
            if not token:
                raise SpecError(f"stages[{s}]", "empty block in the notation (two commas, or a stage with no blocks)")
            new = _parse_blocks(token, in_channels, f"stages[{s}]")
            blocks += new
            in_channels = new[-1].out_channels
        stages.append(tuple(blocks))
    found = _parse_keys(head_token, head_token.split("_")[1:], _HEAD_KEYS, "head")
    gate = found.get("g", "sig")
    if gate not in GATE_CODES:
        raise SpecError("head", f"{head_token!r}: SE gate 'g{gate}' is not one of gsig, ghsig")
    try:
        head = Head(
            conv_channels=int(_require(found, "c", head_token, "head", "the 1x1 conv channels")),
            num_classes=int(_require(found, "o", head_token, "head", "the number of classes")),
            activation=_activation(_require(found, "n", head_token, "head", "the activation"), head_token, "head"),
            hidden_channels=int(found["h"]) if "h" in found else None,
            dropout=float(found.get("d", "0.2")),
        )
    except SpecError as error:
        raise error.under("head") from None
    return Architecture(stem=stem, stages=tuple(stages), head=head, se_gate=GATE_CODES[gate])
