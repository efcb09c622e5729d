"""Findings of a user review of the space package (the report's numbers), each checked here.

Every test failed on the code before the fix; the networks are tiny and the inputs small.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mobilenas.space as space_package
from mobilenas.cli import main as umbrella
from mobilenas.errors import SpecError
from mobilenas.space import (
    Architecture,
    SearchSpace,
    count_macs,
    count_params,
    get_space,
    load_space,
    mnasnet_space,
    nb201_space,
    reference,
    scale_width,
)
from mobilenas.space.arch import adapt_for_input_size
from mobilenas.space.builder import build_model
from mobilenas.space.cli import main as show
from mobilenas.space.cost import architecture_cost

from helpers import tiny_arch, tiny_space


def built_macs(model: torch.nn.Module, input_size: int) -> int:
    """MACs of the convolutions and linear layers a forward pass runs (hooks: the oracle)."""
    total = 0

    def conv(module: torch.nn.Conv2d, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * (module.in_channels // module.groups) * module.kernel_size[0] * module.kernel_size[1]

    def linear(module: torch.nn.Linear, _inputs: object, _output: torch.Tensor) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(conv)
        elif isinstance(module, torch.nn.Linear):
            module.register_forward_hook(linear)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, input_size, input_size))
    return total


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------ 1, 2: the network of that size


def test_count_macs_and_show_count_the_network_built_at_that_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch = tiny_arch()  # total stride 4: at 8 px the stem's stride goes (features 4x4, not 2x2)
    assert adapt_for_input_size(arch, 8)[1] == ("stem.stride",)
    from mobilenas.space import builder

    assert builder.adapt_for_input_size is adapt_for_input_size  # torch-free now, still importable from the builder
    built = built_macs(build_model(arch, input_size=8), 8)
    assert count_macs(arch, 8) == built != architecture_cost(arch, 8).macs  # it counted the 2x2 network
    assert count_macs(arch, 224) == architecture_cost(arch, 224).macs  # nothing adapted at 224
    path = tmp_path / "tiny.json"
    path.write_text(arch.to_json())
    assert show([str(path), "--input-size", "8", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["macs"] == built and payload["adaptation"] == ["stem.stride"]
    assert payload["notation"] == arch.to_notation()  # of the network as given
    assert show([str(path), "--input-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "at 8x8 the network is adapted to the small input" in out and "stride 1 at stem" in out
    stem_row = next(line for line in out.splitlines() if line.startswith("stem "))
    assert stem_row.split()[3] == "1"  # the table's stride column: the built network's
    assert show([str(path)]) == 0
    assert "adapted" not in capsys.readouterr().out


def test_export_onnx_of_an_architecture_is_the_network_built_at_that_size() -> None:
    import onnx

    model = onnx.load_from_string(space_package.export_onnx(tiny_arch(), input_size=8))
    first_conv = next(node for node in model.graph.node if node.op_type == "Conv")
    strides = next(list(attribute.ints) for attribute in first_conv.attribute if attribute.name == "strides")
    assert strides == [1, 1]  # as build_model(arch, input_size=8) builds it: it exported stride 2


# ------------------------------------------------------------------ 3, 6, 7: types at load time


def test_whole_numbers_written_as_floats_are_read_as_ints() -> None:
    arch = tiny_arch()
    data = arch.to_dict()
    data["stem"].update(kernel_size=3.0, stride=2.0, out_channels=8.0)
    data["stages"][1]["blocks"][0].update(kernel_size=5.0, expanded_channels=24.0)
    data["head"]["dropout"] = 0  # and 0 is 0.0
    floaty = Architecture.from_dict(data)
    assert floaty == arch and floaty.fingerprint() == arch.fingerprint()
    assert floaty.to_notation() == arch.to_notation()
    assert Architecture.from_notation(floaty.to_notation()) == arch
    assert type(floaty.stem.kernel_size) is int and type(floaty.head.dropout) is float
    build_model(floaty)  # torch refused a float kernel size


@pytest.mark.parametrize(("where", "value", "message"), [
    (("stem", "kernel_size"), 3.5, r"^stem\.kernel_size: expected a whole number \(one of 3, 5, 7\), got 3\.5$"),
    (("stem", "stride"), True, r"^stem\.stride: True is not one of 1, 2$"),
    (("stem", "out_channels"), 8.5, r"^stem\.out_channels: expected a whole number, got 8\.5$"),
    (("head", "num_classes"), True, r"^head\.num_classes: expected a whole number, got True$"),
])
def test_fractions_and_bools_are_refused_naming_the_field(where: tuple[str, str], value: object, message: str) -> None:
    data = tiny_arch().to_dict()
    data[where[0]][where[1]] = value
    with pytest.raises(SpecError, match=message):
        Architecture.from_dict(data)


def test_a_space_stage_is_typed_strictly_at_load_time(tmp_path: Path) -> None:
    data = tiny_space().to_dict()
    data["stages"][0]["stride"] = True
    path = tmp_path / "stride_true.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=r"stride_true\.json: stages\[0\]\.stride: expected 1 or 2, got True"):
        get_space(str(path))  # it loaded, and sampling failed without naming the file or the stage
    data["stages"][0]["stride"] = 1.0
    data["stages"][0]["base_channels"] = 8.0
    data["stages"][0]["choices"]["kernel_size"] = [3.0, 5]
    read = SearchSpace.from_dict(data)
    assert read == tiny_space() and read.fingerprint() == tiny_space().fingerprint()
    assert type(read.stages[0].stride) is int and read.decisions[1].options == (3, 5)
    read.sample(np.random.default_rng(0))
    data["stages"][0]["base_layers"] = True
    with pytest.raises(SpecError, match=r"stages\[0\]\.base_layers: expected a whole number"):
        SearchSpace.from_dict(data)


@pytest.mark.parametrize(("options", "message"), [
    (["ds", "ir_e0.01"], r"stages\[0\]\.conv_op\[1\]: 'ir_e0\.01': an MBConv's expansion ratio is at least 1"),
    (["ir_e6", "ir_e6.0"], r"stages\[0\]\.conv_op\[1\]: 'ir_e6\.0' is listed twice"),
    (["ds", "ir_e 6"], r"stages\[0\]\.conv_op\[1\]: 'ir_e 6' is not a conv op"),
])
def test_conv_op_ratios_below_one_and_duplicates_are_refused(options: list[str], message: str) -> None:
    data = tiny_space().to_dict()
    data["stages"][0]["choices"]["conv_op"] = options
    with pytest.raises(SpecError, match=message):
        SearchSpace.from_dict(data)


# ------------------------------------------------------------------ 5: decisions are derived


def _shown(capsys: pytest.CaptureFixture[str], name: str) -> dict:
    assert show(["--space", name, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_edited_decisions_are_refused_an_edited_space_is_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shown = _shown(capsys, "mnasnet")
    path = tmp_path / "my_space.json"
    path.write_text(json.dumps(shown))
    assert get_space(str(path)) == mnasnet_space()  # the round trip
    edited = json.loads(json.dumps(shown))
    edited["decisions"][1]["options"] = [3]
    path.write_text(json.dumps(edited))
    with pytest.raises(SpecError, match=r"my_space\.json: decisions\[1\]: stage1\.kernel_size: 3 differs from what \"space\" gives .*edit the option lists in space\.stages\[i\]\.choices"):
        get_space(str(path))  # it searched the whole space without a word
    assert show(["--space", str(path)]) == 2
    assert "decisions and size are derived from \"space\"" in one_error_line(capsys)
    edited = json.loads(json.dumps(shown))
    edited["size"] = 10
    path.write_text(json.dumps(edited))
    with pytest.raises(SpecError, match=r"size: 10, but \"space\" gives"):
        get_space(str(path))
    # the README's way: edit the choices; the lists beside them are left as show wrote them
    edited = json.loads(json.dumps(shown))
    edited["space"]["stages"][0]["choices"]["kernel_size"] = [3]
    path.write_text(json.dumps(edited))
    assert get_space(str(path)).decisions[1].options == (3,)
    del edited["space_fingerprint"]  # a file written before show wrote it: the built-in's lists are stale ones
    path.write_text(json.dumps(edited))
    assert get_space(str(path)).decisions[1].options == (3,)


# ------------------------------------------------------------------ 8, 9: files


def test_a_binary_space_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match=r"binary\.json: not a space JSON file \(it is not text\)$"):
        get_space(str(path))
    assert show(["--space", str(path)]) == 2
    assert one_error_line(capsys).endswith("binary.json: not a space JSON file (it is not text)")


def test_the_cell_space_round_trips_and_a_tabular_run_is_its_space(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nb.json"
    path.write_text(json.dumps(_shown(capsys, "nb201")))
    assert load_space(str(path)) == nb201_space()
    assert show(["--space", str(path)]) == 0  # it said "nb.json: missing key 'stem'"
    assert capsys.readouterr().out.startswith("space nb201: 6 decisions, 15,625 index vectors")
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"kind": "search", "problem": "tabular", "space": nb201_space().to_dict()}))
    assert show(["--space", str(run)]) == 0
    assert capsys.readouterr().out.startswith("space nb201:")
    with pytest.raises(ValueError, match=r"run: holds the NAS-Bench-201 cell space of tabular searches .*not a network space"):
        get_space(str(run))


# ------------------------------------------------------------------ 10, 11: the Python API


def test_public_functions_refuse_wrong_arguments_clearly() -> None:
    arch = reference("mobilenetv2")
    relu6 = get_space("mnasnet-relu6")
    assert relu6.encode("mobilenetv2") == relu6.encode(arch)  # a reference name is an architecture
    assert count_params("mobilenetv2") == 3_504_872
    with pytest.raises(TypeError, match=r"arch: expected an Architecture"):
        relu6.contains(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"rng: expected a numpy.random.Generator"):
        relu6.sample(0)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"stages\[99\]: no such stage"):
        arch.replace_block(99, 0, arch.stages[0][0])
    with pytest.raises(TypeError, match=r"multiplier: expected a number"):
        scale_width(arch, "0.5")  # type: ignore[arg-type]
    zeros = [0] * len(relu6.decisions)
    with pytest.raises(SpecError, match=r"stage1\.conv_op: index 1\.7 is not a whole number"):
        relu6.decode([1.7, *zeros[1:]])  # it read 1
    with pytest.raises(TypeError, match=r"indices\[0\] \(stage1\.conv_op\): expected an int, got str"):
        relu6.decode(["a", *zeros[1:]])
    assert relu6.decode([1.0, *zeros[1:]]) == relu6.decode([1, *zeros[1:]]) == relu6.decode(np.array([1, *zeros[1:]]))
    for size, error in ((0, ValueError), (-5, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="input_size"):
            count_macs(arch, size)  # type: ignore[arg-type]


def test_encoding_a_network_of_another_class_count_says_how() -> None:
    with pytest.raises(SpecError, match=r"only the class count differs \(10 vs 1000\): pass num_classes=10 to get_space"):
        mnasnet_space().encode(mnasnet_space(10).sample(np.random.default_rng(0)))


# ------------------------------------------------------------------ 4: an edited copy of a built-in space


def test_a_space_says_whether_it_is_the_built_in_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mnasnet_space().is_builtin() and mnasnet_space().for_data(10, 1).is_builtin()
    assert not tiny_space().is_builtin() and nb201_space().is_builtin()
    data = mnasnet_space().to_dict()
    data["stages"][0]["choices"]["kernel_size"] = [3]
    edited = SearchSpace.from_dict(data)
    label = f"mnasnet (edited copy {edited.layout_fingerprint()[:8]})"
    assert not edited.is_builtin() and edited.describe_name() == label
    path = tmp_path / "small.json"
    path.write_text(json.dumps(data))
    assert show(["--space", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"space {label}: 42 decisions")


# ------------------------------------------------------------------ 12, 13: exports and docs


def test_the_builder_and_export_are_exported_without_importing_torch_eagerly() -> None:
    from mobilenas.space import build_model as exported
    from mobilenas.space import export_onnx

    assert exported is build_model and export_onnx.__module__ == "mobilenas.space.export"
    assert set(space_package.__all__) <= set(dir(space_package))
    child = "import sys, mobilenas.space; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60, check=True).stdout.strip() == "False"


def test_docstrings_name_the_three_spaces_and_every_public_function_has_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert "mnasnet-relu6" in (space_package.__doc__ or "") and "two search spaces" not in (space_package.__doc__ or "")
    assert show(["--help"]) == 0
    assert "mnasnet, mobilenetv3, mnasnet-relu6, a space .json" in " ".join(capsys.readouterr().out.split())
    documented = [count_macs, count_params, Architecture.to_notation, Architecture.from_notation, Architecture.to_json,
                  Architecture.from_json, Architecture.with_num_classes, SearchSpace.contains, SearchSpace.paths,
                  SearchSpace.check_indices, SearchSpace.from_dict, SearchSpace.fingerprint, SearchSpace.to_dict]
    assert [f.__qualname__ for f in documented if not f.__doc__] == []


# ------------------------------------------------------------------ D: the show command's polish


@pytest.mark.parametrize(("argv", "fragment"), [
    (["mobilenetv2@"], "'mobilenetv2@': nothing after '@'"),  # it showed the 1.0 network
    (["--space", "mnasnet", "--input-size", "64"], "--input-size does nothing with --space alone"),
    (["--space", "nb201", "--num-classes", "10"], "--num-classes does nothing for the nb201 cell space"),
    (["--space", "NB201"], "unknown search space 'NB201' (did you mean 'nb201'?); choose one of mnasnet, mobilenetv3, mnasnet-relu6, nb201"),
    (["nosuch.json"], "nosuch.json: no such file"),
])
def test_show_refuses_what_it_would_have_ignored(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert show(argv) == 2
    assert fragment in one_error_line(capsys)


def test_show_space_applies_num_classes(capsys: pytest.CaptureFixture[str]) -> None:
    assert show(["--space", "mnasnet", "--json", "--num-classes", "10"]) == 0
    assert json.loads(capsys.readouterr().out)["space"]["head"]["num_classes"] == 10


@pytest.mark.parametrize(("command", "script", "first"), [("latency", "nas-latency", "measure"), ("results", "nas-results", "show"), ("netadapt", "netadapt", "refine")])
def test_a_command_without_its_subcommand_is_a_usage_error_on_stderr(command: str, script: str, first: str, capsys: pytest.CaptureFixture[str]) -> None:
    """It printed the whole help on stdout, and nothing on stderr, with exit code 2."""
    import importlib

    module = {"latency": "mobilenas.latency.cli", "results": "mobilenas.results.cli", "netadapt": "mobilenas.netadapt.cli"}[command]
    for run, prog in ((lambda: umbrella([command]), f"mobilenas {command}"), (lambda: importlib.import_module(module).main([]), script)):
        assert run() == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.strip().splitlines() == [captured.err.strip()]  # one line
        assert captured.err.startswith(f"{prog}: error: give a command: {first}, ") and f"(see {prog} --help)" in captured.err
