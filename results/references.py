"""Reference networks (MobileNetV2, MnasNet, MobileNetV3, at several widths) on a run's axes.

A reference's *latency* comes from the run's own lookup table and correction
(:class:`mobilenas.results.measured.RunLatency`), so it sits on exactly the axis the run's
candidates were scored on. The reference is first given the run's class count and input
channels (``arch.with_num_classes``), like for like with the searched networks. When the table
lacks some of a reference's ops, its latency is left unknown (``missing_ops`` says how many)
unless ``measure_missing=True`` measures them on this machine (the table's device) and appends
them to the table, as any prediction with ``measure_missing`` does.

A reference's *accuracy* is not known unless it is trained on the run's data. It is, in order:

1. ``accuracies`` given by the user (``{"mobilenetv2": 0.72}``; ``--reference-accuracy
   mobilenetv2=0.72``): ``accuracy_source = "given"``;
2. the cached result of :func:`train_references` (``nas-results references RUN --train``): the
   reference trained with the search's own proxy task (same data, split, subsets, steps and
   optimiser as every candidate, seed ``seed x 100003`` like the run's trial 0), stored in the run
   directory's ``references.json`` keyed by name and reused while the architecture, the proxy
   settings and the data set are unchanged: ``accuracy_source = "proxy"``;
3. otherwise unknown (``NaN``): plots draw the reference as a latency marker on the x axis.

Reference networks need a network run (a search over an architecture space, or NetAdapt); a
tabular run's cells have no such counterparts. Proxy training needs a network *search* run
(NetAdapt's manifest records its own training, not a proxy task).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mobilenas.errors import did_you_mean
from mobilenas.results.common import read_json_object
from mobilenas.results.load import RunResults
from mobilenas.results.measured import RunLatency, open_run_latency
from mobilenas.results.search_run import SearchResults
from mobilenas.runs import atomic_write_json, now_iso

DEFAULT_REFERENCES = (
    "mobilenetv2@0.5",
    "mobilenetv2@0.75",
    "mobilenetv2",
    "mnasnet-a1",
    "mnasnet-b1@0.5",
    "mnasnet-b1",
    "mobilenetv3-small@0.75",
    "mobilenetv3-small",
    "mobilenetv3-large@0.75",
    "mobilenetv3-large",
)
REFERENCES_JSON = "references.json"
COLUMNS = (
    "name", "family", "width_multiplier", "latency_ms", "accuracy", "accuracy_source", "missing_ops", "params", "macs",
    "fingerprint", "notation",
)


def parse_names(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Reference names from ``"mobilenetv2,mnasnet-a1@0.75"`` (or a list); ``"all"``/``None`` is the default set, ``"none"`` none.

    Every name is checked (a typo raises ``ValueError`` listing the known references).
    """
    from mobilenas.space.references import REFERENCES, reference

    if text is None:
        return DEFAULT_REFERENCES
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if items == ["none"]:
        return ()
    if items == ["all"]:
        return DEFAULT_REFERENCES
    for name in items:
        if name.split("@")[0] not in REFERENCES:
            raise ValueError(f"unknown reference network {name!r}{did_you_mean(name.split('@')[0], REFERENCES)}: choose from {', '.join(REFERENCES)} (add @0.75 for a width multiplier), or all, or none")
        reference(name)  # checks the width multiplier
    return tuple(dict.fromkeys(items))


def parse_accuracies(items: Sequence[str] | Mapping[str, float] | None) -> dict[str, float]:
    """``["mobilenetv2=0.72", ...]`` (or a mapping) -> ``{name: accuracy}``, accuracies as fractions."""
    if items is None:
        return {}
    pairs = list(items.items()) if isinstance(items, Mapping) else []
    if not isinstance(items, Mapping):
        for item in items:
            name, sep, value = str(item).partition("=")
            if not sep or not name.strip():
                raise ValueError(f"a reference accuracy is NAME=ACCURACY (like mobilenetv2=0.72), got {item!r}")
            try:
                pairs.append((name.strip(), float(value)))
            except ValueError:
                raise ValueError(f"the accuracy in {item!r} is not a number (a fraction like 0.72)") from None
    result: dict[str, float] = {}
    for name, accuracy in pairs:
        parse_names([name])
        if not (math.isfinite(accuracy) and 0 <= accuracy <= 1):
            raise ValueError(f"the accuracy of {name} must be a fraction in [0, 1] (0.72, not 72), got {accuracy}")
        result[name] = float(accuracy)
    return result


def _family(name: str) -> tuple[str, float]:
    base, _, width = name.partition("@")
    return base, float(width) if width else 1.0


def _prepare(run: RunResults, name: str) -> Any:
    """The reference as the run's networks are: its classes and input channels."""
    from mobilenas.space.arch import Architecture
    from mobilenas.space.references import reference

    arch: Architecture = reference(name)
    classes = run.num_classes
    if classes is not None:
        arch = arch.with_num_classes(classes)
    channels = _in_channels(run)
    if channels is not None and channels != arch.stem.in_channels:
        arch = arch.with_in_channels(channels)
    return arch


def _in_channels(run: RunResults) -> int | None:
    if isinstance(run, SearchResults):
        space = run.manifest.get("space")
        stem = space.get("stem") if isinstance(space, dict) else None
    else:
        data = run.manifest.get("input")
        arch = data.get("architecture") if isinstance(data, dict) else None
        stem = arch.get("stem") if isinstance(arch, dict) else None
    value = stem.get("in_channels") if isinstance(stem, dict) else None
    return int(value) if isinstance(value, int) else None


def _require_network(run: RunResults) -> None:
    if isinstance(run, SearchResults) and run.problem != "network":
        raise ValueError(f"run {run.path} is a {run.problem} search ({run.space_name}); reference networks need a network run with a latency table")


def reference_points(
    run: RunResults,
    names: str | Sequence[str] = DEFAULT_REFERENCES,
    *,
    accuracies: Mapping[str, float] | None = None,
    table: str | Path | None = None,
    measure_missing: bool = False,
    latency: RunLatency | None = None,
) -> pd.DataFrame:
    """The references on the run's latency axis (see the module docstring), one row each.

    Columns: ``name``, ``family`` (the name without ``@``), ``width_multiplier``,
    ``latency_ms`` (NaN while ops are missing), ``accuracy`` (NaN unless given or proxy-trained),
    ``accuracy_source`` (``given`` | ``proxy`` | empty), ``missing_ops``, ``params``, ``macs``
    (at the table's input size), ``fingerprint``, ``notation``.
    """
    from mobilenas.space.arch import adapt_for_input_size
    from mobilenas.space.cost import architecture_cost

    _require_network(run)
    names = parse_names(names)
    given = parse_accuracies(accuracies)
    latency = latency or open_run_latency(run.path, run.manifest, table)
    if latency is None:
        raise ValueError(f"run {run.path} has no latency table; reference networks cannot be placed on its axis")
    trained = cached_reference_accuracies(run) if isinstance(run, SearchResults) else {}
    rows = []
    for name in names:
        arch = _prepare(run, name)
        family, width = _family(name)
        missing = latency.missing(arch)
        latency_ms = math.nan
        if missing == 0 or measure_missing:
            latency_ms = latency.predict(arch, measure_missing=measure_missing)
            missing = 0
        fingerprint = arch.fingerprint()
        accuracy, source = math.nan, ""
        if name in given:
            accuracy, source = given[name], "given"
        elif name in trained and trained[name]["fingerprint"] == fingerprint:
            accuracy, source = float(trained[name]["accuracy"]), "proxy"
        # of the network timed at the table's size (adapted below 97 px, as the table's entries are)
        cost = architecture_cost(adapt_for_input_size(arch, latency.input_size)[0], latency.input_size)
        rows.append({
            "name": name, "family": family, "width_multiplier": width, "latency_ms": latency_ms, "accuracy": accuracy,
            "accuracy_source": source, "missing_ops": missing, "params": cost.params, "macs": cost.macs,
            "fingerprint": fingerprint, "notation": arch.to_notation(),
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


# --------------------------------------------------------------------------- proxy training


def _proxy_context(run: SearchResults) -> dict[str, Any]:
    """What a cached proxy accuracy depends on besides the architecture."""
    return {"proxy": run.manifest.get("proxy"), "dataset": run.manifest.get("dataset"), "seed": run.seed}


def cached_reference_accuracies(run: SearchResults) -> dict[str, dict[str, Any]]:
    """``references.json`` entries still valid for the run's proxy task: name -> entry."""
    data = read_json_object(run.path / REFERENCES_JSON)
    entries = data.get("references") if data is not None else None
    if not isinstance(entries, dict):
        return {}
    context = json.loads(json.dumps(_proxy_context(run)))  # as stored in JSON
    return {name: entry for name, entry in entries.items() if isinstance(entry, dict) and entry.get("context") == context and isinstance(entry.get("accuracy"), int | float)}


def train_references(
    run: RunResults,
    names: str | Sequence[str] = DEFAULT_REFERENCES,
    *,
    retrain: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Proxy-train references with the search's own proxy task and cache them in ``references.json``.

    Already cached (same architecture, proxy settings, data set and seed) references are not
    trained again unless ``retrain``. Returns ``name``, ``accuracy``, ``status``,
    ``wall_time_s``, ``cached`` (bool) per reference. A training that fails is reported with its
    error and not cached.
    """
    if not isinstance(run, SearchResults) or run.problem != "network":
        kind = run.kind if not isinstance(run, SearchResults) else f"{run.problem} search"
        raise ValueError(f"run {run.path} is a {kind} run; references are proxy-trained only for network searches, whose manifest records the proxy task")
    if not isinstance(run.manifest.get("proxy"), dict):
        raise ValueError(f"run {run.path} has no proxy settings in its manifest; cannot train references like its candidates")
    names = parse_names(names)
    from mobilenas.cliutil import progress as progress_bar

    cached = {} if retrain else cached_reference_accuracies(run)
    todo = [n for n in names if not (n in cached and cached[n]["fingerprint"] == _prepare(run, n).fingerprint())]
    rows = [{"name": n, "accuracy": float(cached[n]["accuracy"]), "status": "ok", "wall_time_s": float(cached[n].get("wall_time_s", 0.0)), "cached": True} for n in names if n not in todo]
    if todo:
        data, config = _proxy_task(run)
        from mobilenas.train.proxy import train_proxy

        bar = progress_bar(total=len(todo), desc="training references", enabled=progress, unit="net")
        try:
            for name in todo:
                arch = _prepare(run, name)
                started = time.perf_counter()
                result = train_proxy(arch, data, config)
                wall = time.perf_counter() - started
                rows.append({"name": name, "accuracy": float(result.accuracy) if result.ok else math.nan, "status": result.status, "wall_time_s": wall, "cached": False, "error": result.error})
                if result.ok:
                    _store(run, name, {
                        "fingerprint": arch.fingerprint(), "notation": arch.to_notation(), "accuracy": float(result.accuracy),
                        "loss": float(result.loss), "params": int(result.params), "steps": int(result.steps), "wall_time_s": wall,
                        "adaptation": list(result.adaptation), "trained": now_iso(), "context": _proxy_context(run),
                    })
                bar.update(1)
        finally:
            bar.close()
    order = {n: i for i, n in enumerate(names)}
    frame = pd.DataFrame(rows)
    return frame.sort_values("name", key=lambda s: s.map(order)).reset_index(drop=True)


def _proxy_task(run: SearchResults) -> tuple[Any, Any]:
    """The run's data set and proxy configuration, loaded as ``nas-search`` loaded them."""
    import dataclasses

    from mobilenas.train.data import load_dataset
    from mobilenas.train.proxy import ProxyConfig

    config = run.manifest.get("config", {})
    data = load_dataset(config.get("dataset", "synthetic"), data_dir=config.get("data_dir"), seed=int(config.get("seed", 0)), val_size=config.get("val_size"))
    proxy = ProxyConfig.from_dict(run.manifest["proxy"])
    # Seeded like the run's trial 0 (nas-search gives trial n the seed ``seed * 100003 + n``).
    return data, dataclasses.replace(proxy, seed=int(run.seed or 0) * 100_003)


def _store(run: SearchResults, name: str, entry: dict[str, Any]) -> None:
    path = run.path / REFERENCES_JSON
    loaded = read_json_object(path)
    # An unreadable cache is rebuilt, never trusted.
    data: dict[str, Any] = loaded if loaded is not None and isinstance(loaded.get("references"), dict) else {"references": {}}
    data["references"][name] = entry
    atomic_write_json(path, data)
