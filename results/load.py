"""Opening run directories: which kind of run a directory holds, and a clear error when it holds none.

``load_run(path)`` returns a :class:`~mobilenas.results.search_run.SearchResults` (kind
``search``, written by ``nas-search``) or a :class:`~mobilenas.results.netadapt_run.NetAdaptResults`
(kind ``netadapt``, written by ``netadapt refine``). A path that is not a run raises
:class:`NotARunError` (a ``ValueError``: one line, exit code 2 from ``nas-results``) naming the
path and what was expected. A file inside a run (``best.json``, ``manifest.json``, ...) stands
for its run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mobilenas.results.netadapt_run import NetAdaptResults, is_netadapt_manifest, read_netadapt_run
from mobilenas.results.search_run import SearchResults, is_search_manifest, read_search_run
from mobilenas.runs import MANIFEST, RunDir, read_json

RunResults = SearchResults | NetAdaptResults
RUN_KINDS = ("search", "netadapt")
# Files a user may name instead of their run directory.
_RUN_FILES = ("manifest.json", "best.json", "refined.json", "events.jsonl", "history.jsonl", "trials.csv", "pareto.csv")


class NotARunError(ValueError):
    """The path is not a ``nas-search`` or ``netadapt`` run directory."""


def run_directory(path: str | Path) -> Path:
    """The run directory ``path`` names (itself, or the run holding the named file); raises :class:`NotARunError`."""
    root = Path(path).expanduser()
    if not root.exists():
        raise NotARunError(f"{root} does not exist; give a run directory written by nas-search or netadapt refine")
    if root.is_file():
        if root.name in _RUN_FILES and (root.parent / MANIFEST).is_file():
            return root.parent
        raise NotARunError(f"{root} is a file, not a run directory; give the directory that holds manifest.json")
    if not (root / MANIFEST).is_file():
        inside = find_runs(root, depth=2)
        hint = f"; it holds {len(inside)} run director{'y' if len(inside) == 1 else 'ies'} (give them instead), e.g. {inside[0]}" if inside else ""
        raise NotARunError(f"{root} is not a mobilenas run directory (no {MANIFEST}){hint}")
    return root


def resolve_run(path: str | Path) -> Path:
    """``path`` as a notebook's parameters name a run: a relative path that does not exist here is
    looked for from the folders above, nearest first. A notebook's kernel runs in the notebook's
    folder (``results/``), while ``MOBILENAS_RUN=results/runs/RUN jupyter lab`` was typed in the
    project's root. Elsewhere, or where nothing is found, ``path`` as it is (:func:`load_run` then
    says what is wrong with it)."""
    given = Path(path).expanduser()
    if given.is_absolute() or given.exists():
        return given
    for base in Path.cwd().parents:
        if (base / given).exists():
            return base / given
    return given


def printable(name: str) -> str:
    """``name`` with what the file system gave as undecodable bytes (surrogates) shown as U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def read_manifest(root: Path) -> dict[str, object]:
    path = root / MANIFEST
    try:
        data = RunDir(root).manifest()
    except ValueError as error:  # not JSON, not text, not an object
        raise NotARunError(str(error)) from None
    kind = data.get("kind")
    if kind not in RUN_KINDS:
        raise NotARunError(f"{path} has kind {kind!r}; nas-results reads runs of kind {' or '.join(map(repr, RUN_KINDS))}")
    return data


def load_run(path: str | Path, *, label: str | None = None) -> RunResults:
    """Read one run directory (search or NetAdapt) into DataFrames.

    ``label`` names the run in tables and legends (default: the directory's name). Latencies
    measured end to end (the run's latency table's end-to-end points, ``nas-results measure``'s
    cache, ``best.json``) fill the ``measured_latency_ms`` column of a search run's trials.
    """
    root = run_directory(path)
    manifest = read_manifest(root)
    # shown in tables and written into JSON and data frames: a folder name of bytes that are not
    # UTF-8 (os.fsdecode's surrogates) is shown with the replacement character
    name = printable(label if label is not None else root.resolve().name)
    if is_netadapt_manifest(manifest):
        return read_netadapt_run(root, manifest, name)
    assert is_search_manifest(manifest)
    from mobilenas.results.measured import known_measurements

    return read_search_run(root, manifest, name, known_measurements(root, manifest))


def load_runs(paths: Sequence[str | Path], *, labels: Sequence[str] | None = None) -> list[RunResults]:
    """Read several runs; labels default to directory names, made unique with their parents when they clash."""
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"got {len(labels)} labels for {len(paths)} runs; give one label per run")
    roots = [run_directory(p) for p in paths]
    seen: dict[Path, str] = {}
    for given, root in zip(paths, roots, strict=True):
        if root.resolve() in seen:  # it would count twice in every mean and standard deviation
            raise ValueError(f"run {given} is given twice (also as {seen[root.resolve()]}); give each run once")
        seen[root.resolve()] = str(given)
    names = list(labels) if labels is not None else unique_labels(roots)
    return [load_run(root, label=name) for root, name in zip(roots, names, strict=True)]


def unique_labels(roots: Sequence[Path]) -> list[str]:
    """Directory names, with as many parent folders as it takes to tell them apart."""
    resolved = [r.resolve() for r in roots]
    for depth in range(1, 8):
        names = ["/".join(r.parts[-depth:]) for r in resolved]
        if len(set(names)) == len(names):
            return names
    return [str(r) for r in resolved]


def find_runs(root: str | Path, *, depth: int = 3) -> list[Path]:
    """Run directories (folders with a ``manifest.json`` of a known kind) under ``root``, sorted."""
    base = Path(root)
    found: list[Path] = []
    frontier = [base]
    for _ in range(depth):
        next_frontier = []
        for folder in frontier:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            for child in children:
                manifest = child / MANIFEST
                if manifest.is_file():
                    try:
                        data = read_json(manifest)
                    except (json.JSONDecodeError, OSError):
                        continue
                    if isinstance(data, dict) and data.get("kind") in RUN_KINDS:
                        found.append(child)
                        continue
                next_frontier.append(child)
        frontier = next_frontier
    return sorted(found)


#: where the notebooks look for runs when none is named: from results/ (a notebook's own folder,
#: Jupyter's working directory) and from the project's root (nas-search's default output)
DEFAULT_RUN_ROOTS = ("runs", "results/runs")


def latest_run(kind: str | None = None, roots: Sequence[str | Path] = DEFAULT_RUN_ROOTS) -> Path | None:
    """The most recently created run of ``kind`` (``"search"``, ``"netadapt"``, None: either) under ``roots``."""
    if kind is not None and kind not in RUN_KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(RUN_KINDS)}")
    newest: tuple[str, float, Path] | None = None
    for root in roots:
        for run in find_runs(root, depth=1):
            try:
                manifest = read_json(run / MANIFEST)
            except (json.JSONDecodeError, OSError):
                continue
            if kind is not None and manifest.get("kind") != kind:
                continue
            key = (str(manifest.get("created", "")), (run / MANIFEST).stat().st_mtime, run)
            if newest is None or key[:2] > newest[:2]:
                newest = key
    return None if newest is None else newest[2]


def candidates_frame(runs: Sequence[RunResults]) -> pd.DataFrame:
    """The candidates (successful trials, NetAdapt iterations) of several runs in one frame.

    Columns: ``run``, ``kind``, ``strategy``, ``seed``, ``target_latency_ms``, ``number``,
    ``source``, ``accuracy``, ``latency_ms``, ``measured_latency_ms``, ``architecture`` and, for
    search runs, ``reward``.
    """
    frames = []
    for run in runs:
        frame = run.candidates().copy()
        frame["run"] = run.label
        frame["kind"] = run.kind
        frame["strategy"] = run.strategy
        frame["seed"] = run.seed
        frame["target_latency_ms"] = run.target_latency_ms
        frames.append(frame)
    columns = ["run", "kind", "strategy", "seed", "target_latency_ms", "number", "source", "accuracy", "latency_ms", "measured_latency_ms", "reward", "architecture"]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=columns)
    combined = pd.concat(frames, ignore_index=True)
    for column in columns:
        if column not in combined.columns:
            combined[column] = None
    return combined[columns]


def trials_frame(runs: Sequence[RunResults]) -> pd.DataFrame:
    """Every result of several search runs in one frame (NetAdapt runs contribute their iterations)."""
    frames = []
    for run in runs:
        if isinstance(run, SearchResults):
            frames.append(run.trials.assign(kind=run.kind))
        else:
            frames.append(run.candidates().assign(kind=run.kind, status="ok", strategy=run.strategy, seed=run.seed))
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
