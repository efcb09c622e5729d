from __future__ import annotations

import json
import warnings

import pytest
from hypothesis import given, settings

from mobilenas.latency import (
    Correction,
    DeviceMismatchError,
    LookupTable,
    Method,
    MissingEntryError,
    OnnxRuntimeBackend,
    OpSignature,
    architecture_signatures,
)
from mobilenas.latency.build import default_table_path
from mobilenas.latency.table import Entry
from mobilenas.space import Architecture, Block, Head, Stem
from mobilenas.space.builder import adapt_for_input_size

from helpers import tiny_arch, tiny_space
from strategies import arbitrary_architectures

FAST = Method(name="in-context", cold_cache=False, warmup=1, repeats=3)


def two_block_arch() -> Architecture:
    return Architecture(
        stem=Stem(8, "relu"),
        stages=((Block("ir", 3, 2, 16, "relu", expanded_channels=24), Block("ds", 5, 1, 16, "hswish", skip=True)),),
        head=Head(32, 10, "relu", dropout=0.0),
    )


def entry(signature: OpSignature, ms: float) -> Entry:
    return Entry(signature, ms, 0.0, 1, "2025-01-01T00:00:00+00:00", ms)


def test_signatures_of_a_two_block_network_by_hand() -> None:
    placed = architecture_signatures(two_block_arch(), 32)
    assert [p.path for p in placed] == ["stem", "stages[0].blocks[0]", "stages[0].blocks[1]", "head"]
    stem, first, second, head = (p.signature for p in placed)
    assert stem == OpSignature("stem", 32, 32, 3, 8, 3, 2, activation="relu")
    assert first == OpSignature("ir", 16, 16, 8, 16, 3, 2, expanded_channels=24, activation="relu")
    assert second == OpSignature("ds", 8, 8, 16, 16, 5, 1, activation="hswish", skip=True)
    assert head == OpSignature("head", 8, 8, 16, 32, activation="relu", num_classes=10)
    assert first.key == "ir_h16w16_i8_x24_o16_k3_s2_nre"
    assert second.key == "ds_h8w8_i16_o16_k5_s1_nhs_skip"
    assert head.key == "head_h8w8_i16_c32_o10_nre"


def test_signatures_carry_shapes_not_names() -> None:
    arch = tiny_arch()
    placed = architecture_signatures(arch, 32)
    sig = placed[2].signature  # the SE inverted residual
    assert sig.se_channels == 8 and sig.se_gate == "sigmoid" and sig.expanded_channels == 24
    assert "stages" not in sig.key
    # The same block placed elsewhere with the same input has the same signature.
    assert OpSignature.of_block(arch.stages[1][0], 8, 16, "sigmoid") == sig
    assert OpSignature.from_dict(sig.to_dict()) == sig
    with pytest.raises(ValueError, match="unknown keys name"):
        OpSignature.from_dict({**sig.to_dict(), "name": "stages.1.0"})


def hand_table(tmp_path, correction: Correction) -> LookupTable:
    table = LookupTable.create(tmp_path / "t.jsonl", backend=OnnxRuntimeBackend(), input_size=32, method=FAST)
    stem, first, second, head = (p.signature for p in architecture_signatures(two_block_arch(), 32))
    for signature, ms in ((stem, 0.5), (first, 1.25), (second, 2.0), (head, 0.75)):
        table.add_entry(entry(signature, ms))
    table.set_correction(correction)
    return table


def test_sum_plus_correction_by_hand_on_a_two_block_network(tmp_path) -> None:
    table = hand_table(tmp_path, Correction(a=1.1, b=0.3, points=5, fitted=True))
    arch = two_block_arch()
    assert table.predict_sum(arch) == pytest.approx(0.5 + 1.25 + 2.0 + 0.75)
    assert table.predict(arch) == pytest.approx(1.1 * 4.5 + 0.3)  # 5.25 ms
    rows = table.predict_breakdown(arch)
    assert [(r.path, r.latency_ms) for r in rows] == [("stem", 0.5), ("stages[0].blocks[0]", 1.25), ("stages[0].blocks[1]", 2.0), ("head", 0.75)]
    # The file says so too: reloading gives the same prediction.
    assert LookupTable.load(table.path).predict(arch) == pytest.approx(5.25)


def test_correction_fit_recovers_a_line_and_degrades_gracefully() -> None:
    sums = [2.0, 4.0, 8.0, 10.0]
    fitted = Correction.fit(sums, [1.2 * s + 0.5 for s in sums])
    assert fitted.a == pytest.approx(1.2) and fitted.b == pytest.approx(0.5)
    assert fitted.fitted and fitted.points == 4 and fitted.rmse_ms == pytest.approx(0.0, abs=1e-9)
    single = Correction.fit([4.0], [5.0])
    assert (single.a, single.b, single.points) == (pytest.approx(1.25), 0.0, 1)
    assert Correction.fit([], []) == Correction()  # identity, not fitted


def test_correction_fits_an_se_term_from_eight_points_and_only_when_positive() -> None:
    sums = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0]
    se_blocks = [0, 3, 1, 4, 2, 0, 5, 1]
    measured = [1.2 * s + 0.5 + 0.07 * k for s, k in zip(sums, se_blocks, strict=True)]
    fitted = Correction.fit(sums, measured, se_blocks)
    assert (fitted.a, fitted.b, fitted.se_ms) == (pytest.approx(1.2), pytest.approx(0.5), pytest.approx(0.07))
    assert fitted.rmse_ms == pytest.approx(0.0, abs=1e-9)
    assert fitted.apply(4.0, 2) == pytest.approx(1.2 * 4.0 + 0.5 + 0.14)
    assert Correction.from_dict(fitted.to_dict()) == fitted
    assert "+0.0700 ms per SE block" in fitted.describe()
    # Seven points: too few for three parameters, so a plain line.
    seven = Correction.fit(sums[:7], measured[:7], se_blocks[:7])
    assert seven.se_ms == 0.0 and seven.points == 7
    # An SE block that made networks faster would be a fit of noise: the term is dropped.
    faster = Correction.fit(sums, [1.2 * s + 0.5 - 0.07 * k for s, k in zip(sums, se_blocks, strict=True)], se_blocks)
    assert faster.se_ms == 0.0 and faster.a > 0
    # Without counts (or with constant counts) there is nothing to fit the term on.
    assert Correction.fit(sums, measured).se_ms == 0.0
    assert Correction.fit(sums, measured, [2] * len(sums)).se_ms == 0.0
    # Tables written before the term existed load with se_ms = 0.
    assert Correction.from_dict({"a": 1.1, "b": 0.2, "points": 3, "fitted": True}).se_ms == 0.0


def test_the_se_term_is_charged_per_se_block_by_hand(tmp_path) -> None:
    arch = tiny_arch()  # SE in the inverted residual and in the regular convolution: 2 SE blocks
    table = LookupTable.create(tmp_path / "se.jsonl", backend=OnnxRuntimeBackend(), input_size=32, method=FAST)
    for k, placed in enumerate(architecture_signatures(arch, 32)):
        table.add_entry(entry(placed.signature, 0.25 * (k + 1)))  # 0.25 + 0.5 + 0.75 + 1.0 + 1.25
    table.set_correction(Correction(a=1.1, b=0.3, points=9, fitted=True, se_ms=0.05))
    assert table.se_blocks(arch) == 2
    assert table.se_blocks(two_block_arch()) == 0
    assert table.predict(arch) == pytest.approx(1.1 * 3.75 + 0.3 + 2 * 0.05)
    assert LookupTable.load(table.path).predict(arch) == pytest.approx(1.1 * 3.75 + 0.3 + 0.1)
    # Another correction (a run's frozen one) goes through the same arithmetic.
    assert table.predict(arch, correction=Correction(a=2.0, b=0.0, se_ms=0.5)) == pytest.approx(2.0 * 3.75 + 1.0)
    # fit_on fits from the table's sums and SE counts without touching the table's own correction.
    refit = table.fit_on([arch], [5.0])
    assert (refit.a, refit.b, refit.points) == (pytest.approx(5.0 / 3.75), 0.0, 1)
    assert table.correction.a == 1.1 and table.correction.se_ms == 0.05


def test_an_uncorrected_table_warns_once(tmp_path) -> None:
    table = hand_table(tmp_path, Correction())
    with pytest.warns(UserWarning, match="no fitted correction"):
        assert table.predict(two_block_arch()) == pytest.approx(4.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table.predict(two_block_arch())


def test_the_table_file_round_trips(tmp_path) -> None:
    table = LookupTable.create(tmp_path / "t.jsonl", backend=OnnxRuntimeBackend(), input_size=32, method=FAST)
    arch = tiny_arch()
    assert table.ensure(arch) == 5  # stem, three blocks, head, measured for real
    table.set_correction(Correction(a=0.9, b=0.1, points=3, fitted=True))
    loaded = LookupTable.load(tmp_path / "t.jsonl")
    assert loaded.header == table.header
    assert {e.signature: e.latency_ms for e in loaded.entries()} == {e.signature: e.latency_ms for e in table.entries()}
    assert loaded.predict(arch) == pytest.approx(table.predict(arch))
    header = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    for key in ("device", "runtime", "runtime_version", "threads", "batch_size", "input_size", "units", "created", "versions", "correction", "method"):
        assert key in header
    assert header["units"] == "ms" and header["input_size"] == 32 and header["device"]["cpu_model"]
    assert "date" not in header["device"] and "input_shape" not in header["device"]  # a measurement's, blank here: they had read "" and []
    assert header["created"][:4].isdigit()
    # save() to another path writes the same table.
    copy = loaded.save(tmp_path / "copy.jsonl")
    assert LookupTable.load(copy).predict(arch) == pytest.approx(table.predict(arch))


def test_a_torn_last_line_is_skipped(tmp_path) -> None:
    table = hand_table(tmp_path, Correction(a=1.0, b=0.0, points=2, fitted=True))
    with open(table.path, "a") as handle:
        handle.write('{"kind": "op", "key": "ir_h8w8')  # a writer killed mid-line
    loaded = LookupTable.load(table.path)
    assert loaded.skipped_lines == 1 and len(loaded) == 4
    # The next append starts on a fresh line, so nothing else is lost.
    extra = OpSignature("ds", 8, 8, 16, 16, 3, 1, activation="relu", skip=True)
    loaded.add_entry(entry(extra, 0.25))
    again = LookupTable.load(table.path)
    assert len(again) == 5 and again.get(extra) is not None


def _retarget(path, **device_fields) -> None:
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["device"].update(device_fields)
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")


def test_a_table_from_another_device_is_refused_unless_forced(tmp_path) -> None:
    table = hand_table(tmp_path, Correction(a=1.0, b=0.0, points=2, fitted=True))
    _retarget(table.path, cpu_model="Snapdragon 855 (Kryo 485)")
    with pytest.raises(DeviceMismatchError, match=r"another device.*cpu_model 'Snapdragon 855.*--force-device"):
        LookupTable.load(table.path)
    with pytest.warns(UserWarning, match="because it was forced"):
        forced = LookupTable.load(table.path, force=True)
    assert forced.predict(two_block_arch()) == pytest.approx(4.5)
    # read, but never written into: this device's timings of what it lacks would sit among the other's, unmarked
    wider = two_block_arch().with_num_classes(7)
    with pytest.raises(DeviceMismatchError, match=r"read with --force-device\), and 1 entries it lacks would be measured here"):
        forced.predict(wider, measure_missing=True)
    with pytest.warns(UserWarning, match="because it was forced"):
        assert len(LookupTable.load(table.path, force=True)) == len(forced)  # nothing appended
    forced.measure_into_forced = True  # what nas-latency build --force-device asks for: resume that table here
    assert forced.predict(wider, measure_missing=True) > 0 and len(forced) == 5


def test_a_table_with_another_thread_count_is_refused(tmp_path) -> None:
    table = hand_table(tmp_path, Correction(a=1.0, b=0.0, points=2, fitted=True))
    with pytest.raises(DeviceMismatchError, match="threads 1 vs 4"):
        LookupTable.load(table.path, backend=OnnxRuntimeBackend(threads=4))


def test_a_missing_entry_is_an_error_naming_it(tmp_path) -> None:
    table = hand_table(tmp_path, Correction(a=1.0, b=0.0, points=2, fitted=True))
    arch = two_block_arch().replace_block(0, 1, Block("ds", 3, 1, 16, "hswish", skip=True))
    assert table.missing(arch) == [OpSignature("ds", 8, 8, 16, 16, 3, 1, activation="hswish", skip=True)]
    with pytest.raises(MissingEntryError, match=r"no entry for ds_h8w8_i16_o16_k3_s1_nhs_skip \(at stages\[0\]\.blocks\[1\]\).*measure_missing=True") as error:
        table.predict(arch)
    assert error.value.signatures == tuple(table.missing(arch))


def test_a_missing_entry_is_measured_on_demand_and_kept(tmp_path) -> None:
    table = hand_table(tmp_path, Correction(a=1.0, b=0.0, points=2, fitted=True))
    arch = two_block_arch().replace_block(0, 1, Block("ds", 3, 1, 16, "hswish", skip=True))
    predicted = table.predict(arch, measure_missing=True)
    new = table.get(OpSignature("ds", 8, 8, 16, 16, 3, 1, activation="hswish", skip=True))
    assert new is not None and new.latency_ms >= 0 and new.runs == FAST.repeats
    assert new.op_ms > 0 and new.baseline_ms > 0  # timed behind the feeder, feeder subtracted
    assert predicted == pytest.approx(0.5 + 1.25 + new.latency_ms + 0.75)
    assert table.missing(arch) == []
    assert LookupTable.load(table.path).get(new.signature) == new  # appended to the file


def test_end_to_end_points_refit_the_correction(tmp_path) -> None:
    from mobilenas.latency import Measurement, Spread

    table = hand_table(tmp_path, Correction())
    arch = two_block_arch()
    device = table.device.with_shape((1, 3, 32, 32))
    table.record_end_to_end(arch, Measurement(5.0, Spread.of([5.0]), 1, device))
    assert table.correction.fitted and table.correction.points == 1
    assert table.predict(arch) == pytest.approx(5.0)  # one point: a pure scale
    reloaded = LookupTable.load(table.path)
    assert reloaded.correction == table.correction and len(reloaded.end_to_end_points()) == 1


@settings(max_examples=60, deadline=None)
@given(arbitrary_architectures(), arbitrary_architectures())
def test_signatures_round_trip_and_keys_are_unique(first: Architecture, second: Architecture) -> None:
    placed = architecture_signatures(first, 64) + architecture_signatures(second, 64)
    by_key: dict[str, OpSignature] = {}
    for item in placed:
        signature = item.signature
        assert OpSignature.from_dict(signature.to_dict()) == signature
        assert by_key.setdefault(signature.key, signature) == signature  # one key, one signature
    assert len(architecture_signatures(first, 64)) == first.num_blocks + 2
    adapted, _ = adapt_for_input_size(first, 64)
    blocks = [b for _, _, b in adapted.blocks()]
    assert [p.signature.block() for p in architecture_signatures(first, 64)[1:-1]] == blocks


def test_end_to_end_points_can_be_dropped_for_a_refit(tmp_path) -> None:
    from mobilenas.latency import Measurement, Spread

    table = hand_table(tmp_path, Correction())
    device = table.device.with_shape((1, 3, 32, 32))
    table.record_end_to_end(two_block_arch(), Measurement(5.0, Spread.of([5.0]), 1, device))
    assert table.drop_end_to_end() == 1
    assert table.correction == Correction() and table.end_to_end_points() == []
    reloaded = LookupTable.load(table.path)
    assert reloaded.end_to_end_points() == [] and len(reloaded) == 4 and not reloaded.correction.fitted


def test_end_to_end_points_are_dropped_past_a_torn_line(tmp_path) -> None:
    # a torn line (which load skips) made drop_end_to_end, and so `nas-latency build
    # --refit-correction`, fail on json.loads for good
    from mobilenas.latency import Measurement, Spread

    table = hand_table(tmp_path, Correction())
    table.record_end_to_end(two_block_arch(), Measurement(5.0, Spread.of([5.0]), 1, table.device.with_shape((1, 3, 32, 32))))
    with open(table.path, "a") as handle:
        handle.write('[]\n{"kind": "op", "key": "ir_h8w8')  # a line of another kind, and a writer killed mid-line
    loaded = LookupTable.load(table.path)
    assert loaded.drop_end_to_end() == 1
    again = LookupTable.load(table.path)
    assert again.end_to_end_points() == [] and len(again) == 4


@pytest.mark.parametrize(
    ("field", "value"),
    [("device", None), ("device", ["cpu"]), ("input_size", None), ("input_size", 0), ("space", "mobilenetv3"), ("versions", ["torch"])],
)
def test_a_damaged_header_is_an_error_naming_the_file(tmp_path, field: str, value: object) -> None:
    table = hand_table(tmp_path, Correction())
    lines = table.path.read_text().splitlines()
    header = json.loads(lines[0])
    header[field] = value
    table.path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"t\.jsonl: the header \(its first line\) is damaged .*; rebuild the table, or restore the file"):
        LookupTable.load(table.path)


def test_a_table_file_deleted_while_in_use_is_written_again_with_its_header(tmp_path) -> None:
    # the advice for a table in the way is to delete it; a process still holding it appended
    # headerless lines, and the file could no longer be loaded or opened
    table = hand_table(tmp_path, Correction())
    table.path.unlink()
    extra = OpSignature("ds", 8, 8, 16, 16, 3, 1, activation="relu", skip=True)
    table.add_entry(entry(extra, 0.25))
    loaded = LookupTable.load(table.path)
    assert loaded.header == table.header and loaded.get(extra) is not None and len(loaded) == 1


def test_processes_sharing_a_table_agree_on_each_op_and_fit_on_every_point(tmp_path) -> None:
    # Two searches on one machine share a table. Each kept the value it measured for an op both
    # measured (a fresh load read the first), and each refitted the correction on its own points only.
    from mobilenas.latency import Measurement, Spread

    hand_table(tmp_path, Correction())
    first, second = LookupTable.load(tmp_path / "t.jsonl"), LookupTable.load(tmp_path / "t.jsonl")
    extra = OpSignature("ds", 8, 8, 16, 16, 3, 1, activation="relu", skip=True)
    first.add_entry(entry(extra, 0.25))
    second.add_entry(entry(extra, 0.5))  # measured meanwhile: the file's first value wins, in both
    assert second.get(extra).latency_ms == 0.25
    assert sum('"key": "ds_h8w8_i16_o16_k3_s1_nre_skip"' in line for line in (tmp_path / "t.jsonl").read_text().splitlines()) == 1
    wide = OpSignature("ds", 8, 8, 16, 16, 5, 1, activation="relu", skip=True)
    first.add_entry(entry(wide, 0.75))
    assert second.ensure_signatures([wide]) == 0 and second.get(wide).latency_ms == 0.75  # taken from the file, not measured again (nor counted as measured)
    device = first.device.with_shape((1, 3, 32, 32))
    first.record_end_to_end(two_block_arch(), Measurement(5.0, Spread.of([5.0]), 1, device), refit=False)
    other = two_block_arch().replace_block(0, 1, Block("ds", 3, 1, 16, "relu", skip=True))
    correction = second.record_end_to_end(other, Measurement(4.0, Spread.of([4.0]), 1, device)) and second.correction
    assert correction.points == 2 and len(second.end_to_end_points()) == 2
    assert LookupTable.load(tmp_path / "t.jsonl").correction == correction  # the header rests on both


def test_a_table_made_before_layout_fingerprints_is_matched_by_its_default_name(tmp_path) -> None:
    """Tables made before recorded the space's whole fingerprint (class count included); one
    under its default name (which carries the layout's fingerprint) is this space's table for a
    search with another class count, and one under another name still gets the note."""
    space = tiny_space().for_data(10, 3)
    default = default_table_path(space, OnnxRuntimeBackend(threads=1), input_size=32)
    for folder, name, expected in ((tmp_path / "a", default.name, None), (tmp_path / "b", "mine.jsonl", f"another definition of space {space.name}")):
        folder.mkdir()
        table = LookupTable.create(folder / name, backend=OnnxRuntimeBackend(threads=1), input_size=32, space_name=space.name, space_fingerprint=space.fingerprint())
        assert table.built_for_another(space) is None  # the same space and class count
        assert LookupTable.load(folder / name).built_for_another(space.for_data(1000, 3)) == expected


def test_end_to_end_points_measured_after_the_fit_are_told_apart(tmp_path) -> None:
    # nas-results calibration called every point of the table "the correction's own fit points",
    # also those a NetAdapt run measured after the fit (out of its sample)
    from mobilenas.latency import Measurement, Spread
    from mobilenas.results.calibration import TABLE_AFTER_FIT, TABLE_FIT, _table_points
    from mobilenas.results.measured import RunLatency

    table = hand_table(tmp_path, Correction())
    table.record_end_to_end(two_block_arch(), Measurement(5.0, Spread.of([5.0]), 1, table.device.with_shape((1, 3, 32, 32))), refit=False)
    for fitted_at, source in (("2020-01-01T00:00:00+00:00", TABLE_AFTER_FIT), ("2999-01-01T00:00:00+00:00", TABLE_FIT)):
        correction = Correction(a=1.0, b=0.0, points=1, fitted=True, fitted_at=fitted_at)
        points = _table_points(RunLatency(table, correction, table.path), set())
        assert list(points["source"]) == [source]


def test_a_command_tables_missing_entries_ask_for_its_command_in_cli_words(tmp_path) -> None:
    # it said "pass a CommandBackend (the same --command)" to users of the command line
    from mobilenas.latency import CommandBackend

    path = tmp_path / "phone.jsonl"
    LookupTable.create(path, backend=CommandBackend("bench {model} --fast", device_name="pixel 7"), input_size=32)
    table = LookupTable.load(path)
    with pytest.raises(ValueError, match=r"needed again to measure the entries it lacks: give --command 'bench \{model\} --fast' --device-name 'pixel 7' \(in Python: backend=CommandBackend"):
        table.predict(two_block_arch(), measure_missing=True)


def _writes_refused_in(folder, monkeypatch, number: int, words: str) -> None:
    """Make the table module's writes into ``folder`` fail as the file system would (``number``:
    the errno): a read-only mount or a folder of another user, which root in a test cannot have."""
    import builtins
    from pathlib import Path

    import mobilenas.latency.table as table_module

    def refusing(file, mode="r", *args, **kwargs):
        if Path(file).parent == folder and any(c in mode for c in "wa+"):
            raise OSError(number, words, str(file))
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(table_module, "open", refusing, raising=False)


def test_a_table_that_cannot_be_written_says_why_it_must_be(tmp_path, monkeypatch) -> None:
    """A shared table on a read-only mount, lacking entries a search needed: 'Read-only file system'
    alone had not said why a table is written, nor what to do."""
    import errno

    from mobilenas.latency import make_backend

    table = LookupTable.create(tmp_path / "shared.jsonl", backend=make_backend("onnxruntime", threads=1), input_size=32)
    _writes_refused_in(tmp_path, monkeypatch, errno.EROFS, "Read-only file system")
    with pytest.raises(ValueError, match=r"^latency table .*shared.jsonl cannot be written \(Read-only file system\), and the entries it lacks are measured into it as they are needed .*; copy it to a folder you can write and give that --table$"):
        table.predict(tiny_arch(), measure_missing=True)


def test_a_table_that_cannot_be_made_says_so(tmp_path, monkeypatch) -> None:
    """There is nothing to copy yet: the message for a table that exists (copy it) was wrong."""
    import errno

    from mobilenas.latency import make_backend

    _writes_refused_in(tmp_path, monkeypatch, errno.EACCES, "Permission denied")
    with pytest.raises(ValueError, match=r"^latency table .*new.jsonl cannot be made \(Permission denied\); give a --table in a folder you can write$"):
        LookupTable.create(tmp_path / "new.jsonl", backend=make_backend("onnxruntime", threads=1), input_size=32)


def test_a_table_of_a_long_name_is_rewritten(tmp_path) -> None:
    """A name the system allows (up to 255 bytes) failed when its temporary copy's name did not fit."""
    from mobilenas.latency.table import _atomic_write_lines

    path = tmp_path / ("t" * 242 + ".jsonl")
    _atomic_write_lines(path, ['{"a": 1}'])
    assert path.read_text() == '{"a": 1}\n' and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
