"""``mobilenas show NAME_OR_PATH``: an architecture's blocks, parameters, MACs and notation."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from mobilenas.cliutil import (
    ArgumentParser,
    KeepLinesFormatter,
    add_json_flag,
    add_version_flag,
    examples,
    positive_int,
    print_json,
    run_main,
)
from mobilenas.space.arch import (
    Architecture,
    adapt_for_input_size,
    block_contexts,
    conv_output_size,
)
from mobilenas.space.cost import architecture_cost, block_cost, head_cost, stem_cost
from mobilenas.space.io import load_architecture
from mobilenas.space.nb201 import CellSpace
from mobilenas.space.references import REFERENCES
from mobilenas.space.search_space import SPACES, SearchSpace, get_space, load_space, shown_json

DEFAULT_INPUT_SIZE = 224


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="Print an architecture's blocks, parameters, MACs and block notation.",
        epilog=(
            textwrap.fill(
                f"NAME_OR_PATH is a reference ({', '.join(REFERENCES)}; add @0.75 for a width multiplier), "
                "an architecture JSON file, a best.json/refined.json, or a notation string. "
                f"'mobilenas show --space {'|'.join([*SPACES, 'nb201'])}' lists a search space's decisions.", 79
            ) + "\n\n"
            + examples(f"{prog} mobilenetv3-small@0.75", f"{prog} results/runs/RUN/best.json --input-size 64",
                       f"{prog} 'stem_k3_s2_c16_nhs | ir_k3_s2_e3_c24_nre | head_c576_h1024_o1000_nhs_d0.2_ghsig'",
                       f"{prog} --space mobilenetv3   # the space's decisions")
        ),
        formatter_class=KeepLinesFormatter,
    )
    add_version_flag(parser)
    parser.add_argument("arch", nargs="?", metavar="NAME_OR_PATH", help="the architecture to show")
    parser.add_argument("--input-size", type=positive_int, default=None,
                        help=f"square input resolution for MACs (default: {DEFAULT_INPUT_SIZE}); below 97 px the network counted is the one "
                             "built, trained and timed at that size (strides adapted to small inputs), as the output notes")
    parser.add_argument("--num-classes", type=positive_int, default=None, help="replace the classifier's class count (of the architecture, or of the space listed by --space alone)")
    parser.add_argument("--space", default=None, help=f"also show the architecture's decisions in this space ({', '.join(SPACES)}, a space .json or a search run's folder); alone, list the space's decisions (also nb201)")
    add_json_flag(parser)
    return parser


def summary(arch: Architecture, input_size: int = DEFAULT_INPUT_SIZE) -> dict[str, Any]:
    """The ``--json`` payload: ``architecture``, ``notation``, ``params``, ``macs`` (+ details).

    ``macs`` are of the network built, trained and timed at ``input_size``
    (``build_model(arch, input_size=...)``); ``adaptation`` lists the strides that network sets to
    1 for a small input (``["stem.stride"]`` at 64 px; empty at 224). ``architecture``,
    ``notation`` and ``fingerprint`` are of ``arch`` as given.
    """
    adapted, adaptation = adapt_for_input_size(arch, input_size)
    cost = architecture_cost(adapted, input_size)
    return {
        "architecture": arch.to_dict(),
        "notation": arch.to_notation(),
        "params": cost.params,
        "macs": cost.macs,
        "input_size": input_size,
        "adaptation": list(adaptation),
        "fingerprint": arch.fingerprint(),
    }


def adaptation_note(adaptation: Sequence[str], input_size: int) -> str:
    """One line saying which strides the network built at ``input_size`` sets to 1."""
    return (f"at {input_size}x{input_size} the network is adapted to the small input, as mobilenas builds, trains and times it: "
            f"stride 1 at {', '.join(path.removesuffix('.stride') for path in adaptation)} "
            "(the table and MACs are of that network; parameters are unchanged)")


def _format_count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def block_table(arch: Architecture, input_size: int) -> list[str]:
    """The per-layer table of ``arch`` exactly as given (adapt it first for a small input)."""
    rows = [("layer", "type", "k", "s", "in", "exp", "out", "se", "act", "skip", "size", "params", "MACs")]
    stem = arch.stem
    stem_size = conv_output_size(input_size, stem.stride)
    c = stem_cost(arch, input_size)
    rows.append(("stem", "conv", str(stem.kernel_size), str(stem.stride), str(stem.in_channels), "-", str(stem.out_channels), "-", stem.activation, "-", f"{stem_size}", _format_count(c.params), _format_count(c.macs)))
    contexts = block_contexts(arch, input_size)
    for ctx in contexts:
        b = ctx.block
        c = block_cost(b, ctx.in_channels, ctx.in_size)
        rows.append((
            f"stages[{ctx.stage}][{ctx.index}]", b.type, str(b.kernel_size), str(b.stride), str(ctx.in_channels),
            str(b.expanded_channels or "-"), str(b.out_channels), str(b.se_channels or "-"), b.activation,
            "yes" if b.skip else "-", f"{ctx.out_size}", _format_count(c.params), _format_count(c.macs),
        ))
    h = arch.head
    c = head_cost(arch, contexts[-1].out_size)
    hidden = f"->{h.hidden_channels}" if h.hidden_channels else ""
    rows.append(("head", "conv+fc", "1", "1", str(arch.last_channels), "-", f"{h.conv_channels}{hidden}->{h.num_classes}", "-", h.activation, "-", "1", _format_count(c.params), _format_count(c.macs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) if i >= 2 else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True))) for r in rows]


def main(argv: Sequence[str] | None = None, prog: str = "mobilenas show") -> int:
    return run_main(lambda a: _main(a, prog), argv, prog)


def _count(size: int) -> str:
    """``15,625``, or ``2.844e+111`` for a count too large to read (and past what a float holds)."""
    if size < 10**7:
        return f"{size:,}"
    try:
        return f"{size:.3e}"
    except OverflowError:  # over 1.8e308: the leading digits, unrounded
        digits = str(size)
        return f"{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"


def _main(argv: Sequence[str] | None, prog: str) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.arch is None:
        if args.space is None:
            parser.error("give an architecture (NAME_OR_PATH) or --space NAME")
        if args.input_size is not None:
            parser.error("--input-size does nothing with --space alone (a space's decisions do not depend on it); "
                         "give an architecture too to count its MACs at that size")
        space: SearchSpace | CellSpace = load_space(args.space, num_classes=args.num_classes)
        if isinstance(space, CellSpace) and args.num_classes is not None:
            parser.error("--num-classes does nothing for the nb201 cell space (its cells have no classifier)")
        if args.json:
            print_json(shown_json(space))
            return 0
        size = space.size()
        print(f"space {space.describe_name()}: {len(space.decisions)} decisions, {_count(size)} index vectors")
        for d in space.decisions:
            print(f"  {d.path:<26} {', '.join(map(str, d.options))}")
        if isinstance(space, CellSpace):
            print("a tabular benchmark's cell space: searched with nas-search --benchmark CSV (accuracy and latency are the table's)")
        return 0
    arch = load_architecture(args.arch, num_classes=args.num_classes)
    input_size = DEFAULT_INPUT_SIZE if args.input_size is None else args.input_size
    payload = summary(arch, input_size)
    encoding = None
    if args.space:
        space = get_space(args.space, num_classes=arch.head.num_classes)
        try:
            encoding = dict(zip(space.paths(), (space.decisions[i].options[j] for i, j in enumerate(space.encode(arch))), strict=True))
            payload["space"] = {"name": space.name, "builtin": space.is_builtin(), "decisions": encoding}
        except ValueError as error:
            payload["space"] = {"name": space.name, "builtin": space.is_builtin(), "error": str(error)}
    if args.json:
        print_json(payload)
        return 0
    print(f"{args.arch}  (fingerprint {payload['fingerprint']})")
    print(f"parameters {payload['params']:,}   MACs {payload['macs'] / 1e6:.1f}M at {input_size}x{input_size}   blocks {arch.num_blocks}")
    if payload["adaptation"]:
        print(adaptation_note(payload["adaptation"], input_size))
    print()
    for line in block_table(adapt_for_input_size(arch, input_size)[0], input_size):
        print(line)
    print()
    print(f"notation: {payload['notation']}")
    if args.space:
        print()
        label = args.space if args.space == space.name else f"{args.space} (space {space.describe_name()})"
        if encoding is None:
            print(f"not in space {label}: {payload['space']['error']}")
        else:
            print(f"in space {label}:")
            for path, value in encoding.items():
                print(f"  {path:<26} {value}")
    return 0
