from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobilenas.errors import SpecError
from mobilenas.space import Architecture, Block, block_contexts, diff, make_divisible, reference
from mobilenas.space.references import REFERENCES

from strategies import SPACES, arbitrary_architectures, space_members

any_member = st.sampled_from(list(SPACES.values())).flatmap(space_members)


@settings(max_examples=60, deadline=None)
@given(st.one_of(any_member, arbitrary_architectures()))
def test_json_round_trip(arch: Architecture) -> None:
    assert Architecture.from_json(arch.to_json()) == arch
    assert Architecture.from_dict(json.loads(arch.to_json(indent=None))).fingerprint() == arch.fingerprint()


@settings(max_examples=60, deadline=None)
@given(st.one_of(any_member, arbitrary_architectures()))
def test_notation_round_trip(arch: Architecture) -> None:
    text = arch.to_notation()
    assert Architecture.from_notation(text) == arch
    assert "\n" not in text


@pytest.mark.parametrize("name", list(REFERENCES))
def test_reference_round_trips(name: str) -> None:
    arch = reference(name)
    assert Architecture.from_notation(arch.to_notation()) == arch
    assert Architecture.from_json(arch.to_json()) == arch


def test_notation_reads_timm_style_tokens() -> None:
    arch = Architecture.from_notation("stem_k3_s2_c32_nre | ds_k3_s1_c16_nre | ir_r2_k3_s2_e6_c24_se0.25_nre | head_c1280_o1000_nre_d0.2_gsig")
    first, second = arch.stages[1]
    assert (first.stride, first.expanded_channels, first.skip) == (2, 96, False)
    assert (second.stride, second.expanded_channels, second.skip) == (1, 144, True)
    assert second.se_channels == make_divisible(144 * 0.25, 8) == 40
    assert arch.stages[0][0].skip is False  # 32 -> 16 channels: no residual possible


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("stem_k3_s2_c32_nre | ir_k3_s1_e6_c16_nre_foo7 | head_c8_o10_nre_d0_gsig", "unknown part 'foo7'"),
        ("stem_k3_s2_c32_nre | zz_k3_s1_c16_nre | head_c8_o10_nre_d0_gsig", "block type 'zz'"),
        ("stem_k3_s2_c32_nre | ir_k3_s1_c16_nre | head_c8_o10_nre_d0_gsig", "needs its expansion"),
        ("stem_k3_s2_c32_nre | ds_k4_s1_c16_nre | head_c8_o10_nre_d0_gsig", "kernel_size: 4 is not one of 3, 5, 7"),
        ("stem_k3_s2_c32_nre | ds_k3_s1_c16_nxx | head_c8_o10_nre_d0_gsig", "activation 'nxx'"),
        ("stem_k3_s2_c32_nre | ds_k3_s1_c16_nre | ds_k3_s1_c16_nre", "the last part must be the head"),
        ("stem_k3_s2_c32_nre | head_c8_o10_nre_d0_gsig", "at least one stage"),
        ("", "empty notation"),
    ],
)
def test_notation_rejects_what_it_does_not_understand(text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        Architecture.from_notation(text)


def _mbv2_dict() -> dict:
    return json.loads(reference("mobilenetv2").to_json())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["stages"][3]["blocks"][1].update(kernel_size=4), "stages[3].blocks[1].kernel_size: 4 is not one of 3, 5, 7"),
        (lambda d: d["stages"][0]["blocks"][0].pop("out_channels"), "stages[0].blocks[0]: missing key 'out_channels'"),
        (lambda d: d["stages"][1]["blocks"][0].update(out_channels=0), "stages[1].blocks[0].out_channels: must be >= 1, got 0"),
        (lambda d: d["stages"][1]["blocks"][0].update(out_channels=-3), "stages[1].blocks[0].out_channels: must be >= 1"),
        (lambda d: d["stages"][1]["blocks"][0].update(stride=3), "stages[1].blocks[0].stride: 3 is not one of 1, 2"),
        (lambda d: d["stages"][1]["blocks"][0].update(kernel_size="3"), "stages[1].blocks[0].kernel_size: '3' is not one of 3, 5, 7"),
        (lambda d: d["stages"][1]["blocks"][0].update(expanded_channels=1.5), "expanded_channels: expected a whole number"),
        (lambda d: d["stages"][1]["blocks"][0].update(skip=True), "stages[1].blocks[0].skip: an identity skip needs stride 1"),
        (lambda d: d["stages"][1]["blocks"][0].update(colour="red"), "stages[1].blocks[0]: unknown key 'colour'"),
        (lambda d: d["stem"].update(activation="gelu"), "stem.activation: 'gelu' is not one of relu, relu6, hswish"),
        (lambda d: d["head"].update(dropout=1.5), "head.dropout: must be in [0, 1)"),
        (lambda d: d.update(schema_version=99), "schema_version: this mobilenas reads schema version 1"),
        (lambda d: d.update(stages=[]), "stages: an architecture needs at least one stage"),
        (lambda d: d.update(stages="abc"), "stages: expected a list of stages"),
        (lambda d: d.pop("head"), "missing key 'head'"),
        (lambda d: d["stages"][0]["blocks"][0].update(expanded_channels=64), "stages[0].blocks[0].expanded_channels: only 'ir' blocks expand"),
        (lambda d: d["stages"][1]["blocks"][0].update(expanded_channels=None), "stages[1].blocks[0].expanded_channels: an 'ir' block needs"),
        # sizes no network has: a 10^12-channel stem had asked nas-train for 108 TB ("a smaller batch needs less")
        (lambda d: d["stem"].update(out_channels=10**12), "stem.out_channels: must be at most 65536, got 1000000000000"),
        (lambda d: d["stages"][1]["blocks"][0].update(expanded_channels=70000), "stages[1].blocks[0].expanded_channels: must be at most 65536"),
        (lambda d: d["stages"][2]["blocks"][0].update(se_channels=10**6), "stages[2].blocks[0].se_channels: must be at most 65536"),
        (lambda d: d["head"].update(conv_channels=2**20), "head.conv_channels: must be at most 65536"),
        (lambda d: d["head"].update(hidden_channels=2**20), "head.hidden_channels: must be at most 65536"),
        (lambda d: d["head"].update(num_classes=10**10), "head.num_classes: must be at most 1048576"),
        (lambda d: d.update(stages=d["stages"] * 10), "stages: at most 64 stages, got 70"),
        (lambda d: d["stages"][1].update(blocks=d["stages"][1]["blocks"] * 40), "stages[1].blocks: at most 64 blocks a stage, got 80"),
    ],
)
def test_bad_json_gets_a_clear_error(mutate, message: str) -> None:
    data = _mbv2_dict()
    mutate(data)
    with pytest.raises(SpecError) as info:
        Architecture.from_dict(data)
    assert message in str(info.value)


def test_not_json_at_all() -> None:
    with pytest.raises(SpecError, match="not valid JSON"):
        Architecture.from_json("{nope")


def test_fingerprint_is_stable_and_sensitive() -> None:
    arch = reference("mobilenetv2")
    assert arch.fingerprint() == reference("mobilenetv2").fingerprint()
    # A pinned value: the fingerprint must not drift between releases (it keys caches and journals).
    assert arch.fingerprint() == "e7d153ce7668afb6"
    changed = arch.replace_block(2, 1, dataclasses.replace(arch.stages[2][1], kernel_size=5))
    assert changed.fingerprint() != arch.fingerprint()
    assert diff(arch, changed) == ["stages[2].blocks[1].kernel_size"]


def test_values_are_immutable() -> None:
    arch = reference("mobilenetv3-small")
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.stages[0][0].kernel_size = 5  # type: ignore[misc]
    assert isinstance(arch.stages, tuple) and isinstance(arch.stages[0], tuple)
    assert hash(arch) == hash(reference("mobilenetv3-small"))


def test_block_contexts_thread_channels_and_sizes() -> None:
    contexts = block_contexts(reference("mobilenetv2"), 224)
    assert [c.in_channels for c in contexts[:3]] == [32, 16, 24]
    assert [c.in_size for c in contexts[:3]] == [112, 112, 56]
    assert contexts[-1].out_size == 7
    assert contexts[4].path == "stages[2].blocks[1]"


def test_make_divisible_matches_torchvision_rule() -> None:
    assert make_divisible(32 * 0.75) == 24
    assert make_divisible(16 * 0.75) == 16  # 12 rounds up: never more than 10% below
    assert make_divisible(18) == 24  # 16 would be 11% below 18
    assert make_divisible(200) == 200
    assert make_divisible(3, 8) == 8


def test_block_checks_its_own_fields() -> None:
    with pytest.raises(SpecError, match="type: 'mb' is not one of ir, ds, conv"):
        Block("mb", 3, 1, 8, "relu")
    with pytest.raises(SpecError, match="se_channels: must be >= 0"):
        Block("ds", 3, 1, 8, "relu", se_channels=-1)


def test_a_tabular_benchmark_cell_is_named_as_such(tmp_path) -> None:
    # A NAS-Bench-201 cell also contains "|": it used to reach the block-notation parser and fail
    # with "the first part must be the stem ..., got ''".
    from mobilenas.space.io import load_architecture

    cell = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"
    with pytest.raises(ValueError, match=r"is a cell of a tabular benchmark \(NAS-Bench-201\)"):
        load_architecture(cell)
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"architecture": cell, "accuracy": 0.9}))
    with pytest.raises(ValueError, match=r"best.json: its architecture .* is a cell of a tabular benchmark"):
        load_architecture(str(best))
    # block notation is still read (its separators are " | ")
    arch = load_architecture("mobilenetv3-small")
    assert load_architecture(arch.to_notation()) == arch


def test_a_run_without_a_result_yet_says_how_to_continue_it(tmp_path) -> None:
    import json

    from mobilenas.space.io import load_architecture

    for kind, command in (("search", "nas-search --resume"), ("netadapt", "netadapt refine --resume")):
        run = tmp_path / kind
        run.mkdir()
        (run / "manifest.json").write_text(json.dumps({"kind": kind}))  # killed before its first result
        with pytest.raises(ValueError, match=rf"is a run without a result yet .* continue it: {command} {run}$"):
            load_architecture(str(run))
    with pytest.raises(ValueError, match=r"is a directory without a best\.json or refined\.json; give an architecture JSON file"):
        load_architecture(str(tmp_path))


def test_a_binary_file_given_as_an_architecture_names_the_json_to_give(tmp_path: Path) -> None:
    """`nas-latency measure refined.onnx` said "'utf-8' codec can't decode byte 0xb6"."""
    from mobilenas.space.io import load_architecture

    onnx = tmp_path / "refined.onnx"
    onnx.write_bytes(b"\x08\x07\xb6\xff\x00binary")
    with pytest.raises(ValueError, match=r"refined.onnx: not an architecture JSON file \(it is not text\); give the architecture JSON it belongs to \(a best.json, refined.json or the .json its training wrote\)$"):
        load_architecture(str(onnx))  # it had named refined.json and best.json, which were not there
    (tmp_path / "refined.json").write_text("{}")
    with pytest.raises(ValueError, match=rf"give the architecture JSON it belongs to \({tmp_path / 'refined.json'}\)$"):
        load_architecture(str(onnx))
    # a search run's trial weights: best.json only when the trial is the best (it had suggested trial-00002.json, never written)
    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    (run / "best.json").write_text(json.dumps({"number": 2}))
    for number in (2, 7):
        (run / "weights" / f"trial-0000{number}.pt").write_bytes(b"\x80\x02\xb6\xff")
    with pytest.raises(ValueError, match=rf"give the architecture JSON it belongs to \({run / 'best.json'}\)$"):
        load_architecture(str(run / "weights" / "trial-00002.pt"))
    with pytest.raises(ValueError, match=rf"trial 7's architecture is the notation in its row of {run / 'trials.csv'} \(give that, quoted\)$"):
        load_architecture(str(run / "weights" / "trial-00007.pt"))


def test_a_json_of_the_wrong_shape_names_where(tmp_path: Path) -> None:
    from mobilenas.space.io import load_architecture

    for name, data, message in (
        ("five.json", {"architecture": 5}, r"five.json: architecture: expected an object \(stem, stages, head\) or a notation string, got int"),
        ("list.json", [1, 2], r"list.json: expected an architecture \(an object with stem, stages and head\) or a result holding one, got a JSON list"),
    ):
        (tmp_path / name).write_text(json.dumps(data))
        with pytest.raises(SpecError, match=message):  # both had been "expected an object, got ..."
            load_architecture(str(tmp_path / name))


def test_what_is_not_an_architecture_is_named_for_what_it_is(tmp_path: Path) -> None:
    from mobilenas.space import get_space
    from mobilenas.space.io import load_architecture

    with pytest.raises(ValueError, match=r"^no architecture given \(an empty name\)"):
        load_architecture("")  # it had said "'' is a directory without a best.json"
    link = tmp_path / "gone.json"
    link.symlink_to(tmp_path / "nowhere.json")
    with pytest.raises(ValueError, match=r"'.*gone.json' is a link to nothing \(it points to .*nowhere.json, which does not exist\)"):
        load_architecture(str(link))
    # a space file, `mobilenas show --space NAME --json` output or a search run's manifest: --space takes them
    space = get_space("mnasnet")
    for name, data in (("space.json", space.to_dict()), ("shown.json", {"space": space.to_dict(), "size": 1}), ("manifest.json", {"kind": "search", "space": space.to_dict()})):
        (tmp_path / name).write_text(json.dumps(data))
        with pytest.raises(SpecError, match=r"a search space \(or a file that holds one\), not an architecture: show its decisions with mobilenas show --space FILE"):
            load_architecture(str(tmp_path / name))
