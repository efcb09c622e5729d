"""The journal's compact lines (search/journal.py): what is left out is what a reader puts back."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mobilenas.runs import dumps
from mobilenas.search.journal import (
    COMPACT_SOURCES,
    RESULT_FIELDS,
    compact_proposal,
    compact_result,
    whole_events,
)

TIME = "2026-12-06T23:41:03+00:00"
KEYS = ["|nor_conv_3x3~0|+|skip_connect~0|none~1|", "|avg_pool_3x3~0|+|none~0|none~1|", "fp-3f2a"]
maybe_number = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=False, width=64), st.integers(-3, 3))


def _whole_result(number: int, source: str, values: dict[str, Any]) -> dict[str, Any]:
    line = {name: None for name in RESULT_FIELDS}
    line.update({"number": number, "source": source, "status": "ok", "info": {}, "finished": TIME})
    line.update(values)
    return line


@st.composite
def journals(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Whole lines as the orchestrator makes them: trained results, and wrapper lines (duplicates of
    them, of numbers never trained here, rejections) whose fields may or may not equal the twin's."""
    lines: list[dict[str, Any]] = []
    trained: dict[int, dict[str, Any]] = {}
    for number in range(draw(st.integers(1, 12))):
        source = "trained" if not trained or draw(st.booleans()) else draw(st.sampled_from(COMPACT_SOURCES))
        key = draw(st.sampled_from(KEYS))
        if source == "trained":
            values = {
                "status": draw(st.sampled_from(["ok", "failed"])), "accuracy": draw(maybe_number), "latency_ms": draw(maybe_number),
                "reward": draw(maybe_number), "latency_ratio": draw(maybe_number), "factor": draw(maybe_number),
                "final_accuracy": draw(maybe_number), "wall_time_s": draw(maybe_number), "key": key,
                "architecture": draw(st.sampled_from([key, "ir_k3_e6 ir_k5_e3"])), "weights": draw(st.sampled_from([None, "weights/3.pt"])),
                "info": draw(st.sampled_from([{}, {"row": 12}])), "error": draw(st.sampled_from([None, "RuntimeError: out of memory"])),
            }
            line = _whole_result(number, source, values)
            trained[number] = line
        else:
            twin_number = draw(st.sampled_from([*trained, 99, None]))  # 99: a twin this journal lacks
            twin = trained.get(twin_number) if twin_number is not None else None
            base = {k: twin[k] for k in ("status", "accuracy", "latency_ms", "reward", "latency_ratio", "factor", "key", "architecture")} if twin else {"key": key, "architecture": key}
            changed = draw(st.dictionaries(st.sampled_from(["status", "accuracy", "reward", "key", "architecture", "final_accuracy", "error"]), maybe_number, max_size=2))
            line = _whole_result(number, source, {**base, **changed, "duplicate_of": twin_number, "finished": TIME})
            if source != "reused":
                lines.append({"type": "proposal", "number": number, "indices": [number % 5, 1], "key": line["key"], "source": source, "time": TIME})
        lines.append({"type": "result", **line, "time": TIME})
    return lines


def _compact(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """As the orchestrator journals them (trained lines whole), through JSON."""
    twins: dict[int, dict[str, Any]] = {}
    out = []
    for line in lines:
        if line["type"] == "proposal":
            out.append(compact_proposal(line))
        elif line["source"] == "trained":
            twins[line["number"]] = {k: v for k, v in line.items() if k not in ("type", "time")}
            out.append(line)
        else:
            fields = {k: v for k, v in line.items() if k not in ("type", "time")}
            twin = twins.get(line["duplicate_of"]) if line["duplicate_of"] is not None else None
            out.append({"type": "result", **compact_result(fields, twin), "time": line["time"]})
    return [json.loads(dumps(line)) for line in out]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(journals())
def test_compact_lines_read_back_whole(lines: list[dict[str, Any]]) -> None:
    read = whole_events(_compact(lines))
    expected = [json.loads(dumps(line)) for line in lines]
    assert len(read) == len(expected)
    for got, want in zip(read, expected, strict=True):
        assert _same(got, want), (got, want)


def test_a_duplicate_line_holds_only_what_differs_from_its_twin() -> None:
    twin = _whole_result(3, "trained", {"accuracy": 0.91, "latency_ms": 12.5, "reward": 0.9, "latency_ratio": 0.8, "factor": 1.0, "key": KEYS[0], "architecture": KEYS[0], "final_accuracy": 0.93, "info": {"row": 7}})
    same = {**twin, "number": 8, "source": "duplicate", "duplicate_of": 3, "info": {}}
    assert compact_result(same, twin) == {"number": 8, "source": "duplicate", "duplicate_of": 3}
    changed = {**same, "reward": 0.5, "accuracy": None}
    assert compact_result(changed, twin) == {"number": 8, "source": "duplicate", "duplicate_of": 3, "reward": 0.5, "accuracy": None}
    rejected = _whole_result(9, "rejected", {"status": "infeasible", "latency_ms": 40.0, "reward": 0.0, "key": KEYS[1], "architecture": KEYS[1]})
    assert compact_result(rejected, None) == {"number": 9, "source": "rejected", "status": "infeasible", "latency_ms": 40.0, "reward": 0.0, "key": KEYS[1]}
    assert "key" not in compact_proposal({"type": "proposal", "number": 8, "indices": [1], "key": KEYS[0], "source": "duplicate"})
    for source in ("trained", "waiting"):  # a trained proposal is the twin's; a waiting one names its twin's key
        assert compact_proposal({"type": "proposal", "number": 8, "indices": [1], "key": KEYS[0], "source": source})["key"] == KEYS[0]


def test_lines_journaled_whole_before_the_compact_rules_read_as_they_are() -> None:
    twin = {"type": "result", **_whole_result(3, "trained", {"accuracy": 0.9, "key": KEYS[0], "architecture": KEYS[0]}), "time": TIME}
    old = {"type": "result", **_whole_result(4, "duplicate", {"accuracy": 0.9, "key": KEYS[0], "architecture": KEYS[0], "duplicate_of": 3}), "time": TIME}
    proposal = {"type": "proposal", "number": 4, "indices": [1], "key": KEYS[0], "source": "duplicate", "time": TIME}
    assert whole_events([twin, proposal, old]) == [twin, proposal, old]
