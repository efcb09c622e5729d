from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobilenas.errors import SpecError
from mobilenas.space import SearchSpace, get_space, mnasnet_space, mobilenetv3_space, reference
from mobilenas.space.search_space import all_index_vectors

from helpers import tiny_space
from strategies import SPACES, index_vectors


@pytest.mark.parametrize("name", list(SPACES))
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_decode_encode_round_trip(name: str, data: st.DataObject) -> None:
    space = SPACES[name]
    indices = data.draw(index_vectors(space))
    arch = space.decode(indices)
    encoded = space.encode(arch)
    assert space.decode(encoded) == arch
    # encode picks an index vector that decodes identically; where options alias (a width that
    # rounds to the same channels) it may differ from the drawn one, but only at aliased options.
    for decision, a, b in zip(space.decisions, indices, encoded, strict=True):
        if a != b:
            assert decision.path.endswith(("width_multiplier", "skip", "se_ratio", "conv_op")), decision.path


@pytest.mark.parametrize("name", list(SPACES))
def test_space_json_round_trip(name: str) -> None:
    space = SPACES[name]
    again = SearchSpace.from_json(space.to_json())
    assert again == space
    assert again.fingerprint() == space.fingerprint()
    assert [d.path for d in again.decisions] == [d.path for d in space.decisions]


def test_decisions_have_readable_stable_paths() -> None:
    space = mnasnet_space()
    paths = space.paths()
    assert paths[:6] == ["stage1.conv_op", "stage1.kernel_size", "stage1.se_ratio", "stage1.skip", "stage1.width_multiplier", "stage1.num_layers"]
    assert len(paths) == 42 and paths[-1] == "stage7.num_layers"
    assert dict((d.path, d.options) for d in space.decisions)["stage3.num_layers"] == (2, 3, 4)
    assert dict((d.path, d.options) for d in space.decisions)["stage1.num_layers"] == (1, 2)
    v3 = dict((d.path, d.options) for d in mobilenetv3_space().decisions)
    assert v3["stage4.kernel_size"] == (3, 5, 7)
    assert v3["stage4.expansion_ratio"] == (1, 3, 4, 6)
    assert v3["stage4.activation"] == ("relu", "hswish")


def test_size_is_the_product_of_option_counts() -> None:
    # mnasnet: per stage 4*2*2*2*3 * layers(2 or 3): stages 1 and 7 have two layer options.
    assert mnasnet_space().size() == (4 * 2 * 2 * 2 * 3) ** 7 * 2 * 3**5 * 2
    assert mobilenetv3_space().size() == (4 * 3 * 2 * 2 * 3) ** 7 * 2 * 3**5 * 2
    assert tiny_space().size() == len(list(all_index_vectors(tiny_space())))


def test_mobilenetv2_lies_in_the_mnasnet_space() -> None:
    space = get_space("mnasnet-relu6")
    mbv2 = reference("mobilenetv2")
    assert space.decode(space.encode(mbv2)) == mbv2
    values = space.values(space.encode(mbv2))
    assert values["stage1.conv_op"] == "ds" and values["stage2.conv_op"] == "ir_e6"
    assert values["stage4.num_layers"] == 4 and values["stage4.width_multiplier"] == 1.0


@pytest.mark.parametrize(
    ("arch_name", "space_name", "message"),
    [
        ("mnasnet-a1", "mnasnet", "stages[4].blocks[0].out_channels: 112 is not a width of stage5 (72, 96, 120)"),
        ("mobilenetv2", "mnasnet", "stem: differs"),
        ("mobilenetv3-large", "mobilenetv3", "space 'mobilenetv3' has 7 stages, got 6"),
    ],
)
def test_references_outside_a_space_say_where(arch_name: str, space_name: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        get_space(space_name).encode(reference(arch_name))
    assert message in str(info.value)
    assert not get_space(space_name).contains(reference(arch_name))


def test_tiny_space_enumerates_distinct_members() -> None:
    space = tiny_space()
    archs = [space.decode(i) for i in all_index_vectors(space)]
    for arch in archs:
        assert space.decode(space.encode(arch)) == arch
    # no option of the tiny space aliases another, so every index vector is a different network
    assert len({a.fingerprint() for a in archs}) == len(archs) == 384


def test_expansion_one_builds_a_depthwise_separable_block() -> None:
    space = tiny_space()
    values = [0] * len(space.decisions)
    arch = space.decode(values)
    assert arch.stages[1][0].type == "ds"  # stage2.expansion_ratio = 1


def test_neighbours_differ_in_one_decision() -> None:
    space = mobilenetv3_space()
    arch = space.sample(np.random.default_rng(3))
    neighbours = space.neighbours(arch)
    base = space.encode(arch)
    assert arch not in neighbours
    assert len({n.fingerprint() for n in neighbours}) == len(neighbours)
    for other in neighbours[:40]:
        assert sum(a != b for a, b in zip(base, space.encode(other), strict=True)) == 1 or space.decode(space.encode(other)) == other


def test_sampling_is_deterministic_for_a_seed() -> None:
    space = mnasnet_space()
    a = [space.sample(np.random.default_rng(7)).fingerprint() for _ in range(2)]
    b = space.sample(np.random.default_rng(8)).fingerprint()
    assert a[0] == a[1] != b


def test_bad_indices_and_bad_space_json() -> None:
    space = tiny_space()
    with pytest.raises(SpecError, match="expected 8 indices"):
        space.decode([0, 0])
    with pytest.raises(SpecError, match=r"stage1.kernel_size: index 5 out of range 0..1"):
        space.decode([0, 5] + [0] * 6)
    data = json.loads(space.to_json())
    data["stages"][0]["choices"]["kernel_size"] = [3, 4]
    with pytest.raises(SpecError, match=r"stages\[0\]\.kernel_size\[1\]: 4 is not one of 3, 5, 7"):
        SearchSpace.from_dict(data)
    data = json.loads(space.to_json())
    data["stages"][0]["choices"]["kernel_size"] = [3, 5, 3.0]  # 3 would be drawn twice as often as 5
    with pytest.raises(SpecError, match=r"stages\[0\]\.kernel_size\[2\]: 3.0 is listed twice; give each option once"):
        SearchSpace.from_dict(data)
    data = json.loads(space.to_json())
    data["stages"][0]["choices"]["colour"] = ["red"]
    with pytest.raises(SpecError, match="colour: unknown stage field"):
        SearchSpace.from_dict(data)
    for divisor in (0, -8, "8", 2.5, True):  # channel counts are rounded to multiples of it (0 divided by zero)
        data = json.loads(space.to_json())
        data["divisor"] = divisor
        with pytest.raises(SpecError, match=r"divisor: channel counts are rounded to a multiple of it: expected a whole number >= 1"):
            SearchSpace.from_dict(data)
    with pytest.raises(ValueError, match="unknown search space 'nope'"):
        get_space("nope")


def test_a_space_whose_widest_choices_multiply_past_any_network_is_refused() -> None:
    # each value is within its own bound; their product (16384 x 16 channels) is not
    data = json.loads(tiny_space().to_json())
    data["stages"][1]["base_channels"] = 16384
    data["stages"][1]["choices"]["width_multiplier"] = [0.5, 16]
    data["stages"][1]["choices"]["expansion_ratio"] = [1]
    with pytest.raises(SpecError, match=r"stages\[1\]: its widest choices give a layer 262144 channels \(at most 65536\): lower base_channels"):
        SearchSpace.from_dict(data)
    # or through the expansion of what the stage before gives it
    data = json.loads(tiny_space().to_json())
    data["stem"]["out_channels"] = 4096
    data["stages"][0]["choices"]["conv_op"] = ["ds", "ir_e32"]
    with pytest.raises(SpecError, match=r"stages\[0\]: its widest choices give a layer 131072 channels"):
        SearchSpace.from_dict(data)
    data = json.loads(tiny_space().to_json())
    data["stages"] = data["stages"][:1] * 65
    with pytest.raises(SpecError, match=r"^stages: at most 64 stages, got 65"):
        SearchSpace.from_dict(data)
    # the widest space we ship passes
    assert mnasnet_space().stages and mobilenetv3_space().stages


@pytest.mark.parametrize(("where", "value", "message"), [
    # JSON's parser reads NaN and Infinity: they had passed (NaN <= 0 is false) and failed later
    (("fixed", "width_multiplier"), "NaN", r"stages\[0\]\.width_multiplier: a width multiplier must be a positive number up to 16, got nan"),
    (("fixed", "width_multiplier"), "1e6", r"width_multiplier: a width multiplier must be a positive number up to 16, got 1000000.0"),
    (("fixed", "num_layers"), "1000", r"num_layers: a layer count must be a whole number from 1 to 64, got 1000"),
    (("choices", "conv_op"), '["ir_einf"]', r"conv_op\[0\]: 'ir_einf' is not a conv op; use conv, ds or ir_e<ratio> with a ratio up to 32"),
    (("choices", "conv_op"), '["ir_e100"]', r"'ir_e100' is not a conv op"),
    (("base_channels",), "1000000", r"stages\[0\]\.base_channels: expected a whole number from 1 to 16384, got 1000000"),
    (("fixed", "se_ratio"), "NaN", r"se_ratio: an SE ratio must be a number in \[0, 1\], got nan"),
])
def test_a_space_json_with_values_no_network_could_have_is_refused(where: tuple[str, ...], value: str, message: str) -> None:
    data = json.loads(tiny_space().to_json())
    holder = data["stages"][0]
    for key in where[:-1]:
        holder = holder[key]
    holder[where[-1]] = json.loads(value)
    with pytest.raises(SpecError, match=message):
        SearchSpace.from_dict(data)


def test_custom_space_from_a_json_file(tmp_path) -> None:
    path = tmp_path / "space.json"
    path.write_text(tiny_space().to_json())
    assert get_space(str(path), num_classes=10) == tiny_space(10)
    # what the README points to for a starting point, saved whole: 'mobilenas show --space NAME --json > my_space.json'
    shown = subprocess.run([sys.executable, "-m", "mobilenas.cli", "show", "--space", "mnasnet", "--json"], capture_output=True, text=True, timeout=120, check=True).stdout
    (tmp_path / "shown.json").write_text(shown)
    assert get_space(str(tmp_path / "shown.json")) == get_space("mnasnet")
    # a search run's manifest.json holds its space the same way
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "search", "space": tiny_space().to_dict(), "space_name": "tiny"}))
    assert get_space(str(tmp_path / "manifest.json"), num_classes=10) == tiny_space(10)
    # a broken file is named in the error, with where inside it
    broken = tmp_path / "broken.json"
    data = json.loads(tiny_space().to_json())
    del data["stages"][0]["base_layers"]
    broken.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=r"broken.json: stages\[0\]: missing key 'base_layers'"):
        get_space(str(broken))
    broken.write_text("{not json")
    with pytest.raises(SpecError, match=r"broken.json: not valid JSON"):
        get_space(str(broken))
    # a file that is not there, or a folder, is said to be (not "unknown search space 'x.json'")
    with pytest.raises(ValueError, match=r"^search space .*missing.json: no such file; give a space .json file"):
        get_space(str(tmp_path / "missing.json"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match=r"^search space .* is a folder; give a space .json file in it, a search run's folder"):
        get_space(str(tmp_path / "folder"))
    # a search run's folder is its manifest's space; its best.json or a NetAdapt manifest is said to be no space
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"kind": "search", "space": tiny_space().to_dict()}))
    assert get_space(str(run), num_classes=10) == tiny_space(10)
    (run / "best.json").write_text(json.dumps({"architecture": {}, "accuracy": 0.5}))
    with pytest.raises(SpecError, match=r"best.json: holds an architecture \(a search or NetAdapt result\), not a search space; give its run's folder or manifest.json"):
        get_space(str(run / "best.json"))
    (run / "manifest.json").write_text(json.dumps({"kind": "netadapt", "settings": {}}))
    with pytest.raises(SpecError, match=r"manifest.json: is a NetAdapt run's manifest, which holds no search space"):
        get_space(str(run))
