"""Reading a ``nas-search`` run directory into DataFrames (the only module that knows its files).

The journal ``events.jsonl`` is the source of truth (``trials.csv``, ``pareto.csv`` and
``best.json`` are derived from it); it is read with :meth:`mobilenas.runs.Journal.read`, which
skips a line torn by a killed writer. Where a run has no journal (someone copied only the CSV
files) or one with no result in it (emptied), ``trials.csv`` is read instead, and
``journal_unread`` says so. Results are replayed as the orchestrator replays them on
resume: one result per ``(number, source)``, the last line winning, none above an ``abandoned``
line of its number (the proposal asked again below it counts).

DataFrames of a :class:`SearchResults`:

``trials``        one row per result, in the order they were journaled (``order`` 0, 1, ...):
                  ``number``, ``source`` (trained | duplicate | reused | rejected), ``status``
                  (ok | failed | infeasible), ``accuracy`` and ``final_accuracy`` (fractions),
                  ``latency_ms`` (the latency table's prediction, or the benchmark's latency for a
                  tabular run), ``measured_latency_ms`` (end to end, where known; see
                  :mod:`mobilenas.results.measured`), ``reward``, ``latency_ratio``, ``factor``,
                  ``wall_time_s``, ``images_per_s``, ``duplicate_of``, ``key``, ``architecture``
                  (block notation or cell string), ``error``, ``finished`` (a timestamp),
                  ``weights``, ``info_*`` (the evaluator's scalar extras: ``info_params``, ...),
                  and the run's ``run``, ``strategy``, ``seed``, ``target_latency_ms``.
``proposals``     one row per proposal line: ``order``, ``number``, ``source`` (trained |
                  waiting | duplicate | rejected), ``key``, ``latency_ms``, ``architecture``,
                  ``indices`` (a tuple).
``strategy_log``  the controller's state after each trained result, and after the duplicates
                  and rejections told to it in a row where they changed it (``strategy`` lines):
                  ``order`` (that result's ``order`` in ``trials``), ``number``, and one column per
                  summary key (``entropy``, ``baseline``, ``recent_mean_reward``, ... for PPO;
                  ``population_mean_reward`` ... for evolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mobilenas.results.common import RunBase, read_json_object
from mobilenas.runs import Journal
from mobilenas.search.base import EARLY_STOPPED, short_strategy_name
from mobilenas.search.journal import void_before, whole_events

KIND = "search"
EVENTS = "events.jsonl"
TRIALS_CSV = "trials.csv"
BEST_JSON = "best.json"

TRIAL_COLUMNS = (
    "run", "order", "number", "source", "status", "accuracy", "final_accuracy", "latency_ms", "measured_latency_ms",
    "reward", "latency_ratio", "factor", "wall_time_s", "images_per_s", "duplicate_of", "key", "architecture", "error",
    "finished", "weights", "strategy", "seed", "target_latency_ms",
)
_NUMERIC = ("accuracy", "final_accuracy", "latency_ms", "measured_latency_ms", "reward", "latency_ratio", "factor", "wall_time_s", "images_per_s")
PROPOSAL_COLUMNS = ("run", "order", "number", "source", "key", "latency_ms", "architecture", "indices")


@dataclass(frozen=True)
class SearchResults(RunBase):
    """A ``nas-search`` run, read (see the module docstring for the frames' columns)."""

    trials: pd.DataFrame
    proposals: pd.DataFrame
    strategy_log: pd.DataFrame
    best: dict[str, Any] | None
    #: why the search stopped before --samples (the strategy converged, ...); None if it did not
    stopped: str | None = None
    #: the --time-limit (seconds) that ended the run's last session before --samples; None if none did
    time_limit_s: float | None = None
    #: why the results were read from trials.csv rather than the journal ("events.jsonl is empty",
    #: "... is missing", "... holds no result"); None when they come from the journal
    journal_unread: str | None = None
    #: why no result could be read although the run has some (best.json is there): "trials.csv is
    #: unreadable (...) and events.jsonl is missing", "trials.csv and events.jsonl are missing";
    #: None when the results were read (or the search has none yet)
    results_unread: str | None = None

    kind = KIND

    # ----------------------------------------------------------------- the manifest, spelt out

    @property
    def target_latency_ms(self) -> float:
        return float(self.manifest.get("target_latency_ms", math.nan))

    @property
    def strategy(self) -> str:
        return _strategy_name(self.manifest)

    @property
    def problem(self) -> str:
        """``network`` (a latency table scores architectures) or ``tabular`` (a benchmark does)."""
        return str(self.manifest.get("problem", "network"))

    @property
    def evaluated_word(self) -> str:
        """How its architectures got their accuracy, in a word: ``trained`` (a network search) or
        ``evaluated`` (a tabular search looks them up in its benchmark)."""
        return "trained" if self.problem == "network" else "evaluated"

    @property
    def space_name(self) -> str:
        return str(self.manifest.get("space_name", self.manifest.get("config", {}).get("space", "?")))

    @property
    def space_identity(self) -> str:
        """The searched space in words that tell spaces apart: its name for a built-in space as it
        ships (whatever the class count and image channels), else the name with what it is and a
        short fingerprint of its networks (``mnasnet (edited copy 3f2a9c1e)``): an edited copy of a
        built-in keeps its name, and two spaces of one name are two problems."""
        name, data = self.space_name, self.manifest.get("space")
        if not isinstance(data, dict):  # an old manifest: the name is all there is
            return name
        from mobilenas.space.search_space import space_from_dict

        try:
            space = space_from_dict(data)  # a network space, or a tabular run's cell space
        except (ValueError, TypeError):  # SpecError included
            return f"{name} (unreadable)"
        if space.is_builtin():
            return name
        edited = space.describe_name()  # "mnasnet (edited copy 3f2a9c1e)", as `mobilenas show` says it
        if edited != space.name:
            return edited
        return f"{name} (from a file {space.layout_fingerprint()[:8]})"

    @property
    def final_column(self) -> str | None:
        """The benchmark column reported as final (tabular runs: e.g. ``test_acc_200ep``), else ``None``."""
        column = self.manifest.get("config", {}).get("final_column")
        return str(column) if column and self.problem == "tabular" else None

    @property
    def samples(self) -> int | None:
        samples = self.manifest.get("config", {}).get("samples")
        return int(samples) if isinstance(samples, int) else None

    @property
    def reward_description(self) -> str:
        spec = self.reward_spec()
        return spec.describe() if spec is not None else "?"

    def reward_spec(self) -> Any:
        """The run's :class:`mobilenas.search.rewards.RewardSpec` (``None`` if the manifest has none)."""
        from mobilenas.search.rewards import RewardSpec

        data = self.manifest.get("reward")
        return RewardSpec.from_dict(data) if isinstance(data, dict) else None

    @property
    def num_classes(self) -> int | None:
        """Classes of the searched networks (network runs; from the space in the manifest)."""
        space = self.manifest.get("space")
        if isinstance(space, dict):
            head = space.get("head")
            if isinstance(head, dict) and isinstance(head.get("num_classes"), int):
                return int(head["num_classes"])
        return None

    def problem_axes(self) -> dict[str, str]:
        """What this run searches, in words (runs compare where these agree).

        ``space``: the search space (:attr:`space_identity`); ``accuracy``: the benchmark and its reward column
        (tabular), or the data set and the proxy training's length (network); ``final`` (tabular
        only): the column reported as final accuracy; ``benchmark`` (tabular only): the benchmark
        file's name and the start of its fingerprint; ``latency``: the benchmark's latency column,
        or the table's device and input size.
        """
        manifest, config = self.manifest, self.manifest.get("config", {})

        def part(key: str) -> dict[str, Any]:
            value = manifest.get(key)
            return value if isinstance(value, dict) else {}

        if self.problem == "tabular":
            bench = part("benchmark")
            name = Path(str(bench.get("path") or config.get("benchmark") or "?")).name
            # two files of one name are two benchmarks: told apart by the fingerprint the manifest records
            fingerprint = bench.get("fingerprint")
            return {
                "space": self.space_identity,
                "benchmark": f"{name} (sha256 {str(fingerprint)[:8]})" if fingerprint else name,
                "accuracy": f"{bench.get('reward_column', config.get('reward_column', '?'))} of {name}",
                "final": f"{bench.get('final_column', config.get('final_column', '?'))} of {name}",
                "latency": f"{bench.get('latency_column', config.get('latency_column', '?'))} of {name}",
            }
        data, proxy, table = part("dataset"), part("proxy"), part("latency_table")
        length = f"{proxy['steps']}-step" if proxy.get("steps") else f"{proxy['epochs']}-epoch" if proxy.get("epochs") else "?"
        return {
            "space": self.space_identity,
            "accuracy": f"{data.get('name', config.get('dataset', '?'))} after a {length} proxy training",
            "latency": f"table of {table.get('device', '?')} at {table.get('input_size', config.get('input_size', '?'))}px",
        }

    # ----------------------------------------------------------------- derived frames

    def candidates(self) -> pd.DataFrame:
        """Trained trials that succeeded, with accuracy and latency: what a Pareto front is made of."""
        frame = self.trials
        keep = (frame["source"] == "trained") & (frame["status"] == "ok") & frame["accuracy"].notna() & frame["latency_ms"].notna()
        return frame[keep].reset_index(drop=True)

    def trained(self) -> pd.DataFrame:
        """Every trained trial (failed ones included), in the order they finished."""
        return self.trials[self.trials["source"] == "trained"].reset_index(drop=True)

    def counts(self) -> dict[str, int]:
        """Results by kind: ``trained``, ``failed``, ``stopped_early`` (by ``--early-stopping``; not
        among ``failed``), ``duplicates``, ``rejected``."""
        trials = self.trials
        trained = trials["source"] == "trained"
        unsuccessful = trained & (trials["status"] != "ok")
        stopped = unsuccessful & (trials["error"] == EARLY_STOPPED)
        return {
            "trained": int(trained.sum()),
            "failed": int((unsuccessful & ~stopped).sum()),
            "stopped_early": int(stopped.sum()),
            "duplicates": int(trials["source"].isin(["duplicate", "reused"]).sum()),
            "rejected": int((trials["source"] == "rejected").sum()),
        }


def is_search_manifest(manifest: dict[str, Any]) -> bool:
    return manifest.get("kind") == KIND


def read_search_run(path: Path, manifest: dict[str, Any], label: str, measured_ms: dict[str, float] | None = None) -> SearchResults:
    """Read the run at ``path`` (already known to be a search run by its ``manifest``).

    ``measured_ms`` maps trial keys (architecture fingerprints) to latencies measured end to end
    (:func:`mobilenas.results.measured.known_measurements`).
    """
    events = whole_events(Journal(path / EVENTS).read())  # compact lines made whole
    best = read_json_object(path / BEST_JSON)
    strategy = _strategy_name(manifest)
    seed = manifest.get("seed")
    target = float(manifest.get("target_latency_ms", math.nan))
    rows = _result_rows(events)
    journal_unread = results_unread = None
    if not rows:
        journal_state = "is missing" if not (path / EVENTS).exists() else "holds no result" if events else "is empty"
        unreadable = None
        if (path / TRIALS_CSV).is_file():
            rows, unreadable = _csv_rows(path / TRIALS_CSV)
        if rows:  # a journal emptied or not copied: said by nas-results, as a resume refuses such a run
            journal_unread = f"{EVENTS} {journal_state}"
        elif unreadable is not None:  # not an empty search: its results are there, but garbled
            results_unread = f"{TRIALS_CSV} {unreadable} and {EVENTS} {journal_state}"
        elif best is not None:  # best.json says results were written; neither file that holds them is here
            results_unread = (f"{TRIALS_CSV} and {EVENTS} are missing" if not (path / TRIALS_CSV).is_file() and not (path / EVENTS).exists()
                              else f"{TRIALS_CSV} {'holds no trial' if (path / TRIALS_CSV).is_file() else 'is missing'} and {EVENTS} {journal_state}")
    trials = pd.DataFrame(rows)
    for column in TRIAL_COLUMNS:
        if column not in trials.columns:
            trials[column] = None
    for column in _NUMERIC:
        trials[column] = pd.to_numeric(trials[column], errors="coerce").astype(float)
    if len(trials):
        trials["number"] = trials["number"].astype(int)
        trials["order"] = range(len(trials))
        trials["finished"] = pd.to_datetime(trials["finished"], errors="coerce", utc=True, format="ISO8601")
    known = dict(measured_ms or {})
    if manifest.get("problem") == "tabular":
        # A tabular benchmark's latency column is itself a measurement on the device.
        trials["measured_latency_ms"] = trials["latency_ms"]
    elif known:
        trials["measured_latency_ms"] = [known.get(str(key), math.nan) for key in trials["key"]]
    trials["run"] = label
    trials["strategy"] = strategy
    trials["seed"] = seed
    trials["target_latency_ms"] = target
    extra = [c for c in trials.columns if c not in TRIAL_COLUMNS]
    trials = trials[[*TRIAL_COLUMNS, *sorted(extra)]]
    return SearchResults(
        path=path,
        label=label,
        manifest=manifest,
        trials=trials.reset_index(drop=True),
        proposals=_proposals(events, label),
        strategy_log=_strategy_log(events, trials),
        best=best,
        stopped=next((str(e.get("reason", "")) for e in reversed(events) if e.get("type") == "stopped"), None),
        time_limit_s=_time_limit_s(events),
        journal_unread=journal_unread,
        results_unread=results_unread,
    )


def _time_limit_s(events: list[dict[str, Any]]) -> float | None:
    """The time limit that ended the last session: a ``time_limit`` event with no proposal after it
    (a resumed run that went on has proposals after it)."""
    for event in reversed(events):
        if event.get("type") == "proposal" and event.get("source") == "trained":
            return None
        if event.get("type") == "time_limit":
            seconds = event.get("seconds")
            return float(seconds) if isinstance(seconds, int | float) else math.nan
    return None


def _strategy_name(manifest: dict[str, Any]) -> str:
    """The strategy's name; one of one's own from a file as ``file.py:Class``, without its folder."""
    strategy = manifest.get("strategy")
    name = str(strategy.get("name", "?")) if isinstance(strategy, dict) else str(strategy or manifest.get("config", {}).get("strategy", "?"))
    return short_strategy_name(name)


def _result_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    void = void_before(events)  # as the orchestrator replays it
    kept: dict[tuple[int, str], tuple[int, dict[str, Any]]] = {}
    for position, event in enumerate(events):
        if event.get("type") != "result" or event.get("number") is None:
            continue
        number = int(event["number"])
        if position < void.get(number, -1):
            continue
        kept[(number, str(event.get("source", "")))] = (position, event)
    rows = []
    for _, event in sorted(kept.values(), key=lambda item: item[0]):
        row = {k: v for k, v in event.items() if k not in ("type", "info", "time")}
        info = event.get("info")
        if isinstance(info, dict):
            for key, value in info.items():
                if isinstance(value, int | float | str | bool) or value is None:
                    row[f"info_{key}"] = value
        rows.append(row)
    return rows


def _csv_rows(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The rows of a run's trials.csv, and why it is unreadable (None if it is not: an empty file
    or a header alone is a search with no result yet)."""
    import io

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        return [], f"is unreadable ({getattr(error, 'strerror', None) or type(error).__name__})"
    if text and not text.endswith("\n"):
        # A last row without its newline was torn by an interrupted copy or write: drop it.
        text = text[: text.rfind("\n") + 1]
    if not text.strip():
        return [], None
    try:
        frame = pd.read_csv(io.StringIO(text), on_bad_lines="skip", dtype={"key": str, "architecture": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError):
        return [], "is unreadable (not a CSV of trials)"
    if "number" not in frame.columns or "source" not in frame.columns:
        return [], "is unreadable (no header with number and source: not a trials.csv of nas-search)"
    numbered = frame[pd.to_numeric(frame["number"], errors="coerce").notna()]
    if numbered.empty and len(frame):
        return [], f"is unreadable (none of its {len(frame)} rows has a trial number)"
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in numbered.to_dict("records")], None


def _proposals(events: list[dict[str, Any]], label: str) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for event in events:
        if event.get("type") != "proposal" or event.get("number") is None:
            continue
        rows.append({
            "run": label,
            "order": len(rows),
            "number": int(event["number"]),
            "source": event.get("source"),
            "key": event.get("key"),
            "latency_ms": event.get("latency_ms"),
            "architecture": event.get("architecture"),
            "indices": tuple(int(i) for i in event.get("indices") or ()),
        })
    frame = pd.DataFrame(rows, columns=list(PROPOSAL_COLUMNS))
    frame["latency_ms"] = pd.to_numeric(frame["latency_ms"], errors="coerce").astype(float)
    return frame


def _strategy_log(events: list[dict[str, Any]], trials: pd.DataFrame) -> pd.DataFrame:
    # A summary follows a trained result, or the last of the duplicates and rejections the wrappers
    # told the strategy in a row (where they changed it): placed at that result.
    order_of: dict[int, int] = {}
    if len(trials):
        trained = trials["source"] == "trained"
        for part in (trials[~trained], trials[trained]):  # a trained result's number wins
            order_of.update(zip(part["number"].astype(int), part["order"].astype(int), strict=True))
    rows = []
    for event in events:
        if event.get("type") != "strategy" or not isinstance(event.get("summary"), dict) or event.get("number") is None:
            continue
        number = int(event["number"])
        if number not in order_of:
            continue
        row: dict[str, Any] = {"order": order_of[number], "number": number}
        for key, value in event["summary"].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                row[str(key)] = float(value)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame({"order": pd.Series(dtype=int), "number": pd.Series(dtype=int)})
    # A resumed run may report a trial's state twice; keep the last report.
    frame = frame.drop_duplicates(subset=["number"], keep="last")
    return frame.sort_values("order").reset_index(drop=True)
