from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from mobilenas.latency import (
    Correction,
    LookupTable,
    Method,
    MissingEntryError,
    OnnxRuntimeBackend,
    architecture_signatures,
    build_table,
    default_table_path,
    ensure_correction,
    fastest_latency,
    open_or_create_table,
    slowest_latency,
    space_signatures,
)
from mobilenas.latency.table import Entry
from mobilenas.space import get_space, reference
from mobilenas.space.search_space import all_index_vectors

from helpers import tiny_space

FAST = Method(name="in-context", cold_cache=False, warmup=1, repeats=3)
SIZE = 32


def every_architecture(space):
    return [space.decode(indices) for indices in all_index_vectors(space)]


def test_space_signatures_are_exactly_those_of_its_architectures() -> None:
    space = tiny_space()
    found: set = set()
    for arch in every_architecture(space):
        found.update(p.signature for p in architecture_signatures(arch, SIZE))
    enumerated = space_signatures(space, SIZE)
    assert len(enumerated) == len(set(enumerated))
    assert set(enumerated) == found


def test_space_signatures_follow_the_input_size_adaptation() -> None:
    # At 16x16 the builder removes the stem's stride; the enumeration must agree.
    space = tiny_space()
    found: set = set()
    for arch in every_architecture(space)[:50]:
        found.update(p.signature for p in architecture_signatures(arch, 16))
    assert found <= set(space_signatures(space, 16))
    assert space_signatures(space, 16)[0].stride == 1


def test_real_spaces_enumerate_per_stage_quickly() -> None:
    signatures = space_signatures(get_space("mobilenetv3"), 224)
    assert 3000 < len(signatures) < 3500  # ~1e13 architectures, a few thousand ops
    assert {s.op for s in signatures} == {"stem", "ir", "ds", "head"}
    assert sum(s.op == "head" for s in signatures) == 3  # one per width of the last stage


def test_an_interrupted_build_resumes_with_only_the_rest(tmp_path) -> None:
    space, path = tiny_space(), tmp_path / "tiny.jsonl"
    backend = OnnxRuntimeBackend(warmup=1, repeats=3)
    total = len(space_signatures(space, SIZE))
    first = build_table(space, path=path, input_size=SIZE, backend=backend, progress=False, correction_samples=0, method=FAST, limit=7)
    assert (first.measured, first.reused, first.entries) == (7, 0, 7)
    on_disk = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert len(on_disk) == 7  # every entry was appended as it was measured
    second = build_table(space, path=path, input_size=SIZE, backend=backend, progress=False, correction_samples=2, method=FAST)
    assert (second.measured, second.reused, second.entries) == (total - 7, 7, total)
    keys = [json.loads(line)["key"] for line in path.read_text().splitlines()[1:] if '"kind": "op"' in line]
    assert len(keys) == len(set(keys)) == total  # nothing measured twice
    table = LookupTable.load(path)
    assert table.correction.fitted and table.correction.points == 2
    assert all(not table.missing(arch) for arch in every_architecture(space)[::37])
    # Resuming with another method is refused rather than mixing two protocols in one table.
    with pytest.raises(ValueError, match=r"was measured with method in-context \(3 timed runs per entry, 1 warm-up\); resume it without --method and --repeats"):
        build_table(space, path=path, input_size=SIZE, backend=backend, progress=False, method=Method(repeats=4))
    with pytest.raises(ValueError, match="32x32 inputs, not 64x64"):
        build_table(space, path=path, input_size=64, backend=backend, progress=False)


def synthetic_table(tmp_path, space, values, se_ms: float = 0.0) -> LookupTable:
    """Every signature of the space with a value from ``values(signature)``: no measuring."""
    table = LookupTable.create(tmp_path / "synthetic.jsonl", backend=OnnxRuntimeBackend(), input_size=SIZE, method=FAST)
    for signature in space_signatures(space, SIZE):
        ms = values(signature)
        table.add_entry(Entry(signature, ms, 0.0, 1, "", ms))
    table.set_correction(Correction(a=1.3, b=0.2, points=2, fitted=True, se_ms=se_ms))
    return table


def brute_force(space, table, pick=min):
    return pick(((table.predict(arch), arch) for arch in every_architecture(space)), key=lambda item: item[0])


@pytest.mark.parametrize("se_ms", [0.0, 0.6])
@pytest.mark.parametrize(("extreme", "pick"), [(fastest_latency, min), (slowest_latency, max)])
def test_fastest_and_slowest_latency_are_exact_on_a_full_table(tmp_path, se_ms, extreme, pick) -> None:
    space = tiny_space()
    rng = np.random.default_rng(0)
    noise = {s: float(rng.uniform(0.1, 2.0)) for s in space_signatures(space, SIZE)}  # no order at all
    table = synthetic_table(tmp_path, space, noise.__getitem__, se_ms)
    latency, arch = extreme(space, table)
    best_latency, best = brute_force(space, table, pick)
    assert latency == pytest.approx(best_latency)
    assert table.predict(arch) == pytest.approx(latency)
    assert space.contains(arch)
    assert best == arch or table.predict(best) == pytest.approx(latency)


def macs_like(signature) -> float:
    """A latency that grows with kernel, width, expansion, SE, as the pruning assumes."""
    mid = signature.expanded_channels or signature.in_channels
    work = signature.in_height * signature.in_width * (signature.in_channels * mid + mid * signature.kernel_size**2 + mid * signature.out_channels)
    return 1e-5 * work + 0.01 * (signature.se_channels > 0) + 0.003 * (signature.activation == "hswish") + 0.05


@pytest.mark.parametrize("extreme", [fastest_latency, slowest_latency])
def test_pruned_search_agrees_with_the_exhaustive_one_on_monotone_latencies(tmp_path, extreme) -> None:
    space = tiny_space()
    table = synthetic_table(tmp_path, space, macs_like)
    exact, exact_arch = extreme(space, table, exhaustive=True)
    pruned, pruned_arch = extreme(space, table, exhaustive=False)
    assert pruned == pytest.approx(exact)
    assert table.predict(pruned_arch) == pytest.approx(table.predict(exact_arch))  # ties may differ


def test_fastest_latency_on_a_lazy_table_measures_only_what_it_needs(tmp_path) -> None:
    space = tiny_space()
    table = LookupTable.create(tmp_path / "lazy.jsonl", backend=OnnxRuntimeBackend(warmup=1, repeats=3), input_size=SIZE, method=FAST)
    with pytest.raises(MissingEntryError, match="has no entry for stem_h32w32") as raised:
        fastest_latency(space, table)
    assert "nas-latency build --space SPACE --input-size 32 --table" in str(raised.value)  # a space of one's own: its .json
    mbv3 = LookupTable.create(tmp_path / "mbv3.jsonl", backend=OnnxRuntimeBackend(warmup=1, repeats=3), input_size=SIZE, method=FAST, space_name="mobilenetv3")
    with pytest.raises(MissingEntryError, match=r"fill the table with nas-latency build --space mobilenetv3 --input-size 32 --table \S+mbv3\.jsonl$"):
        mbv3.predict(get_space("mobilenetv3").sample(np.random.default_rng(0)))
    # ops the table's space does not have: a build would measure none of them
    with pytest.raises(MissingEntryError, match=r"and space mobilenetv3, which the table was built for, has no such ops: nas-latency build would not"
                       r" measure them; measure them on demand \(nas-latency predict --measure-missing; measure_missing=True in Python\)$"):
        mbv3.predict(reference("mobilenetv3-small"))
    latency, arch = fastest_latency(space, table, measure_missing=True)
    assert 0 < len(table) < len(space_signatures(space, SIZE)) // 2
    assert latency == pytest.approx(table.predict_sum(arch))  # identity correction so far
    assert arch.stages[1][0].type == "ds" and len(arch.stages[1]) == 1  # expansion 1, one layer


def test_default_table_path_lives_under_mobilenas_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MOBILENAS_HOME", str(tmp_path / "home"))
    space = tiny_space()
    path = default_table_path(space, OnnxRuntimeBackend(), SIZE)
    assert path.parent == tmp_path / "home" / "tables"
    assert path.name.startswith("tiny-") and "32px-onnxruntime-1t" in path.name and path.suffix == ".jsonl"
    assert default_table_path(space, OnnxRuntimeBackend(threads=2), SIZE) != path
    assert default_table_path(space, OnnxRuntimeBackend(), 64) != path
    assert default_table_path(tiny_space(num_classes=1000), OnnxRuntimeBackend(), SIZE) == path  # class count shares


def test_open_or_create_table_is_lazy_and_fits_its_correction(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MOBILENAS_HOME", str(tmp_path / "home"))
    space = tiny_space()
    backend = OnnxRuntimeBackend(warmup=1, repeats=3)
    table = open_or_create_table(space, input_size=SIZE, backend=backend, correction_samples=0)
    assert table.path == default_table_path(space, backend, SIZE) and table.path.is_file()
    assert len(table) == 0 and not table.correction.fitted  # header only
    correction = ensure_correction(table, space, samples=2, seed=0)
    assert correction.fitted and correction.points == 2 and correction.a > 0
    again = open_or_create_table(space, input_size=SIZE, backend=backend, correction_samples=2)
    assert again.correction == correction and len(again) == len(table)  # nothing re-measured


def test_a_table_created_meanwhile_by_another_process_is_opened_not_refused(tmp_path, monkeypatch) -> None:
    # Searches of several seeds started at once on a machine without the table: each saw no file,
    # and all but the first to write its header failed ("already exists; load it ...").
    from mobilenas.latency.table import TableExistsError

    space, backend, path = tiny_space(), OnnxRuntimeBackend(threads=1, warmup=0, repeats=2), tmp_path / "t.jsonl"
    real_create = LookupTable.create.__func__  # type: ignore[attr-defined]

    def create_after_another(cls, target, **kwargs):  # the other process writes its header first
        real_create(cls, target, **kwargs)
        return real_create(cls, target, **kwargs)

    monkeypatch.setattr(LookupTable, "create", classmethod(create_after_another))
    table = open_or_create_table(space, path, input_size=SIZE, backend=backend, correction_samples=0)
    assert table.path == path and table.input_size == SIZE
    assert len(path.read_text().splitlines()) == 1  # one header, not two
    # NetAdapt opens its table the same way (two refines started at once)
    from mobilenas.netadapt.latency_model import open_latency_model

    other = tmp_path / "netadapt.jsonl"
    model = open_latency_model(table=str(other), backend="onnxruntime", threads=1, input_size=SIZE)
    assert model.input_size == SIZE and len(other.read_text().splitlines()) == 1
    monkeypatch.undo()
    with pytest.raises(TableExistsError, match="already exists"):
        LookupTable.create(path, backend=backend, input_size=SIZE)


def test_processes_that_open_a_missing_table_at_once_all_get_it(tmp_path) -> None:
    import subprocess
    import sys
    import time

    path, start = tmp_path / "t.jsonl", time.time() + 3
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[3])\n"
        "from helpers import tiny_space\n"
        "from mobilenas.latency import OnnxRuntimeBackend, open_or_create_table\n"
        "backend = OnnxRuntimeBackend(threads=1, warmup=0, repeats=2)\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "print(open_or_create_table(tiny_space(), sys.argv[1], input_size=32, backend=backend, correction_samples=0).input_size)\n"
    )
    tests = str(Path(__file__).parent)
    processes = [subprocess.Popen([sys.executable, "-c", code, str(path), str(start), tests], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, [err for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["32"] * 4
    header = json.loads(path.read_text().splitlines()[0])
    assert header["input_size"] == 32 and len(path.read_text().splitlines()) == 1


def test_an_architecture_of_another_space_is_said_to_be(tmp_path) -> None:
    # predict mnasnet-a1 --table <a tiny-space table> sent the user to a build of the tiny space
    space = tiny_space()
    table = LookupTable.create(tmp_path / "tiny.jsonl", backend=OnnxRuntimeBackend(), input_size=SIZE, method=FAST, space_name="tiny", space_fingerprint=space.layout_fingerprint())
    for signature in space_signatures(space, SIZE):
        table.add_entry(Entry(signature, 0.1, 0.0, 1, "", 0.1))
    with pytest.raises(MissingEntryError, match=r"the table is for space tiny, and this architecture is not of it \(its stem is another\); give the table of") as raised:
        table.predict(reference("mobilenetv3-large"))  # a hard-swish stem
    assert "nas-latency build" not in str(raised.value) and "--measure-missing" in str(raised.value)
    # a stem of the space's kind, only narrower or wider (NetAdapt prunes it), is the space's: here
    # the table holds the stem at another width than the architecture's
    wider = LookupTable.create(tmp_path / "wider.jsonl", backend=OnnxRuntimeBackend(), input_size=SIZE, method=FAST, space_name="tiny", space_fingerprint=space.layout_fingerprint())
    for signature in space_signatures(space, SIZE):
        wider.add_entry(Entry(dataclasses.replace(signature, out_channels=signature.out_channels + 8) if signature.op == "stem" else signature, 0.1, 0.0, 1, "", 0.1))
    with pytest.raises(MissingEntryError) as raised:
        wider.predict(space.sample(np.random.default_rng(0)))
    assert "is not of it" not in str(raised.value) and "stem" in str(raised.value)


def _fake_measurements(table, values):
    from mobilenas.latency import Measurement, Spread

    device = table.device.with_shape((1, 3, SIZE, SIZE))
    return [Measurement(ms, Spread.of([ms]), 1, device) for ms in values]


def test_an_interrupted_refit_keeps_the_tables_points_and_correction(tmp_path, monkeypatch) -> None:
    # build --refit-correction dropped the points (rewriting the file) before measuring new ones:
    # Ctrl-C during the end-to-end bar left the table with no points and the identity correction
    space = tiny_space()
    table = synthetic_table(tmp_path, space, macs_like)
    rng = np.random.default_rng(0)
    old = [space.sample(rng) for _ in range(3)]
    for arch, measurement in zip(old, _fake_measurements(table, [1.0, 2.0, 3.5]), strict=True):
        table.record_end_to_end(arch, measurement, refit=False)
    before = table.fit_correction()
    path = table.path
    backend = OnnxRuntimeBackend(warmup=1, repeats=3)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("mobilenas.latency.build.measure_architectures", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_table(space, path=path, input_size=SIZE, backend=backend, progress=False, correction_samples=2, refit_correction=True)
    kept = LookupTable.load(path)
    assert [p.notation for p in kept.end_to_end_points()] == [a.to_notation() for a in old]
    assert kept.correction == before

    measured: list = []

    def timed(archs, *args, **kwargs):
        measured.extend(archs)
        return _fake_measurements(table, [0.5 + i for i in range(len(archs))])

    monkeypatch.setattr("mobilenas.latency.build.measure_architectures", timed)
    result = build_table(space, path=path, input_size=SIZE, backend=backend, progress=False, correction_samples=2, refit_correction=True)
    refitted = LookupTable.load(path)
    assert [p.notation for p in refitted.end_to_end_points()] == [a.to_notation() for a in measured] and len(measured) == 2  # the new ones alone
    assert refitted.correction == result.correction and refitted.correction.points == 2 and refitted.correction != before
    assert len(refitted) == len(space_signatures(space, SIZE))  # every op kept
