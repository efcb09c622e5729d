"""Rules of a search's journal (``events.jsonl``) that the orchestrator and nas-results share.

Kept free of torch and pandas, so that :mod:`mobilenas.results` reads a run by the same rule the
orchestrator replays it with (see :mod:`mobilenas.search.orchestrator` for the format).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def void_before(events: Sequence[dict[str, Any]]) -> dict[int, int]:
    """``{number: position}`` of each proposal number's last ``abandoned`` line.

    A proposal lost to a kill before its checkpoint is asked again under the same number, and
    journaled anew below that line: the line voids only the lines of its number above it.
    """
    return {int(e["number"]): position for position, e in enumerate(events) if e.get("type") == "abandoned" and e.get("number") is not None}


# --------------------------------------------------------------------------- compact lines
#
# A converged strategy re-proposes known architectures many times for each new one (a 1000-sample
# tabular PPO search journaled 51,734 duplicates beside its 1000 trials). The lines the wrappers
# make (``duplicate``, ``reused``, ``rejected``) are therefore journaled compactly, and readers make
# them whole again with :func:`whole_events`:
#
# * a result line leaves out the fields that are ``None`` (``{}`` for ``info``), and ``finished``,
#   which is the line's ``time`` (a line with ``finished`` is whole and read as it is);
# * a result line with ``duplicate_of`` leaves out each of :data:`INHERITED` that equals the value
#   in its twin's result line (the last ``trained`` result of that number above it); a field it
#   leaves out is the twin's. Without a twin line, a missing one is ``None``, except
#   ``architecture``, which is then the ``key`` (a cell space's architecture string is its key);
# * a proposal line of those sources leaves out ``key``: its result line, of the same number and
#   source, has it.
#
# Lines journaled before these rules have every field, so that they read as they always did.

#: The columns of ``trials.csv``: a result line's fields, but its ``weights`` and ``info``.
TRIAL_COLUMNS = (
    "number", "source", "status", "accuracy", "final_accuracy", "latency_ms", "reward", "latency_ratio",
    "factor", "wall_time_s", "images_per_s", "duplicate_of", "key", "architecture", "error", "finished",
)
#: The fields of a whole result line (besides ``type`` and ``time``).
RESULT_FIELDS = (*TRIAL_COLUMNS, "weights", "info")
#: Fields a duplicate's result line takes from its twin's result line where it leaves them out.
INHERITED = ("status", "accuracy", "final_accuracy", "latency_ms", "reward", "latency_ratio", "factor", "key", "architecture")
#: Sources of the lines the wrappers make, journaled compactly.
COMPACT_SOURCES = ("duplicate", "reused", "rejected")


def _same(value: Any, other: Any) -> bool:
    return type(value) is type(other) and value == other


def compact_result(fields: dict[str, Any], twin: dict[str, Any] | None) -> dict[str, Any]:
    """The journaled form of a result line made by a wrapper (see the rules above).

    ``fields``: the whole line, without ``type`` and ``time``; ``twin``: the whole result line of
    the trial numbered ``fields['duplicate_of']`` as journaled, or ``None`` if there is none.
    """
    if fields.get("duplicate_of") is None:
        twin = None
    line: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "finished":
            continue
        if twin is not None and name in INHERITED:
            if name in twin and _same(value, twin[name]):
                continue
        elif name == "architecture":
            if value == fields.get("key"):
                continue
        elif value is None or (name == "info" and value == {}):
            continue
        line[name] = value
    return line


def compact_proposal(event: dict[str, Any]) -> dict[str, Any]:
    """The journaled form of a proposal line (``key`` left out for :data:`COMPACT_SOURCES`)."""
    if event.get("source") in COMPACT_SOURCES:
        return {k: v for k, v in event.items() if k != "key"}
    return event


def whole_events(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` with every compact line made whole (new dicts; whole lines are passed through).

    Result lines get every field (``None`` where unknown, ``{}`` for ``info``); proposal lines of
    :data:`COMPACT_SOURCES` get their ``key`` from the result line of their number and source.
    """
    twins: dict[int, dict[str, Any]] = {}
    keys: dict[tuple[int, str], Any] = {}
    whole: list[dict[str, Any]] = []
    for event in events:
        if event.get("type") == "result" and event.get("number") is not None:
            event = _whole_result(event, twins)
            number, source = int(event["number"]), str(event.get("source", ""))
            if source == "trained":
                twins[number] = event
            keys[(number, source)] = event.get("key")
        whole.append(event)
    for position, event in enumerate(whole):
        if event.get("type") == "proposal" and "key" not in event and event.get("number") is not None:
            whole[position] = {**event, "key": keys.get((int(event["number"]), str(event.get("source", ""))))}
    return whole


def _whole_result(event: dict[str, Any], twins: dict[int, dict[str, Any]]) -> dict[str, Any]:
    if "finished" in event:  # which a compact line leaves out
        return event  # journaled whole (every trained line; every line before the compact rules)
    line = dict(event)
    twin_number = line.get("duplicate_of")
    twin = twins.get(int(twin_number)) if isinstance(twin_number, int) else None
    for name in INHERITED:
        if name not in line:
            line[name] = twin.get(name) if twin is not None else None
    if "architecture" not in event and twin is None:
        line["architecture"] = line.get("key")
    line.setdefault("finished", line.get("time", ""))
    line.setdefault("info", {})
    for name in RESULT_FIELDS:
        line.setdefault(name, None)
    return line
