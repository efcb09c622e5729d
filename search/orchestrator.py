"""One search: the only piece that sees the strategy, the space, the latency and the results.

:class:`SearchRun` owns a run directory (:class:`mobilenas.runs.RunDir`) and a wrapped strategy.
Executors drive it through two calls: :meth:`SearchRun.next_submission` (ask the strategy for
the next architecture worth evaluating; journal it; checkpoint the strategy) and
:meth:`SearchRun.record` (compute the reward of a finished evaluation; journal it; tell the
strategy; rewrite the trials table, the Pareto front and ``best.json``).

The run directory is the single source of truth:

``manifest.json``   resolved configuration, versions, seed, space, latency table fingerprint
``events.jsonl``    append-only, fsynced: one ``proposal`` line per proposal and one ``result``
                    line per result (duplicates and latency rejections included, with their
                    ``source``, in the compact form :mod:`mobilenas.search.journal` reads back
                    whole), plus ``abandoned`` lines for proposals lost to a kill before
                    they were submitted (the strategy asks them again, under the same number,
                    journaled anew below that line)
``strategy.pt``     the strategy's state and how many journal events it reflects
``trials.csv``      one row per result
``pareto.csv``      the non-dominated trained trials (accuracy up, table latency down)
``best.json``       the best trained trial by reward
``weights/``        the weights of the best trial (others are deleted as they are beaten)

Resuming (:meth:`SearchRun.resume`) loads ``strategy.pt`` and replays the results journaled after
it; proposals that were submitted but had no result when the process died are submitted again
with their own numbers. A proposal is journaled and checkpointed before it is submitted, and a
result is journaled before it is told, so no completed trial is lost or repeated.
"""

from __future__ import annotations

import copyreg
import csv
import functools
import io
import math
import pickle
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from mobilenas.errors import FolderGone
from mobilenas.runs import (
    RunDir,
    TimeLimit,
    atomic_write_bytes,
    atomic_write_text,
    now_iso,
    read_json,
)
from mobilenas.search.base import (
    STATUS_FAILED,
    STATUS_INFEASIBLE,
    STATUS_OK,
    EvalResult,
    Observation,
    Strategy,
)
from mobilenas.search.journal import (
    TRIAL_COLUMNS,
    compact_proposal,
    compact_result,
    void_before,
    whole_events,
)
from mobilenas.search.pareto import pareto_mask
from mobilenas.search.rewards import RewardSpec, ZeroAccuracyPenalty
from mobilenas.search.wrappers import (
    LatencyFilter,
    SearchStopped,
    StrategyBug,
    StrategyWrapper,
    WrapperEvent,
)
from mobilenas.units import listed

CHECKPOINT = "strategy.pt"


class Problem:
    """What is searched: decodes index vectors into candidates and knows their latency.

    ``NetworkProblem`` (an :class:`Architecture` space with a latency table) and
    ``TabularProblem`` (a cell space with a tabular benchmark) implement it.
    """

    kind: str = ""
    space: Any

    def decode(self, indices: Sequence[int]) -> Any:
        return self.space.decode(tuple(indices))

    def key(self, indices: Sequence[int]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def latency_ms(self, indices: Sequence[int]) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self, candidate: Any) -> str:
        """A one-line human form of a candidate (block notation, cell string)."""
        return str(candidate)

    def to_json(self, candidate: Any) -> Any:
        """The ``architecture`` value written to ``best.json``."""
        return candidate.to_dict() if hasattr(candidate, "to_dict") else candidate


@dataclass
class Submission:
    """A proposal to evaluate: its number, indices and the candidate they build."""

    number: int
    indices: tuple[int, ...]
    candidate: Any
    latency_ms: float
    key: str
    resubmitted: bool = False


@dataclass
class Trial:
    """One result, as written to ``trials.csv``."""

    number: int
    source: str  # trained | duplicate | reused | rejected
    status: str
    accuracy: float | None
    latency_ms: float | None
    reward: float
    key: str
    architecture: str
    final_accuracy: float | None = None
    latency_ratio: float | None = None
    factor: float | None = None
    wall_time_s: float | None = None
    images_per_s: float | None = None
    duplicate_of: int | None = None
    error: str | None = None
    finished: str = ""
    weights: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in TRIAL_COLUMNS}


F = TypeVar("F", bound=Callable[..., Any])


def _in_run_folder(method: F) -> F:
    """A :class:`SearchRun` method that writes in the run's folder: where the folder was deleted or
    moved, :class:`FolderGone`, before the write (which would have made it again, half empty,
    without its manifest) or from it (gone meanwhile)."""

    @functools.wraps(method)
    def writing(self: SearchRun, *args: Any, **kwargs: Any) -> Any:
        if not self.run.root.is_dir():
            raise FolderGone(self.run.root)
        try:
            return method(self, *args, **kwargs)
        except FileNotFoundError:
            if not self.run.root.is_dir():
                raise FolderGone(self.run.root) from None
            raise

    return writing  # type: ignore[return-value]


class SearchRun:
    """A search in progress (see the module docstring)."""

    def __init__(
        self,
        run: RunDir,
        problem: Problem,
        strategy: Strategy,
        reward: RewardSpec,
        target_latency_ms: float,
        samples: int,
        *,
        seed: int = 0,
        keep_weights: str = "best",
        on_update: Callable[[SearchRun], None] | None = None,
        preprocessing: dict[str, Any] | None = None,
    ) -> None:
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.run = run
        self.problem = problem
        self.strategy = strategy
        self.reward = reward
        self.target_latency_ms = float(target_latency_ms)
        self.samples = int(samples)
        self.seed = int(seed)
        self.keep_weights = keep_weights
        self.on_update = on_update
        wrapper = strategy
        while isinstance(wrapper, StrategyWrapper):  # a latency filter rejecting many in a row: the bar's count moves
            if isinstance(wrapper, LatencyFilter):
                wrapper.on_rejections = self._notify
            wrapper = wrapper.inner
        self.preprocessing = preprocessing  # what the best network expects of its input (network searches)
        self.trials: list[Trial] = []
        self.in_flight: dict[int, Submission] = {}
        self.submitted = 0  # proposals handed to an executor (trained or training), this run and before
        self.stopped: str | None = None  # why asking stopped early (converged, no feasible proposal)
        self.started = time.time()
        self._events_seen = len(run.events.read())
        self._last_event: list[Any] | None = None  # event_mark of the last event journaled (see _checkpoint)
        self._logged: set[tuple[str, int, str]] = set()
        self._held: list[dict[str, Any]] = []  # journal events not written yet (see _log)
        self._resubmit: list[Submission] = []
        self._twins: dict[int, dict[str, Any]] = {}  # number -> its trained result line, as journaled
        self._best: Trial | None = None
        self._last_summary: dict[str, Any] | None = None  # the strategy's summary() last journaled
        self._start_counting()
        self.time_limit = TimeLimit()  # see set_time_limit

    # ----------------------------------------------------------------- journal & checkpoint

    def _log(self, event: dict[str, Any], *, hold: bool = False) -> None:
        """Journal ``event`` (fsynced), or with ``hold`` keep it for the next :meth:`_flush`."""
        mark = (str(event["type"]), int(event["number"]), str(event.get("source", "")))
        if mark in self._logged:
            return
        self._logged.add(mark)
        self._held.append({**event, "time": event.get("time") or now_iso()})
        self._last_event = event_mark(self._held[-1])
        self._events_seen += 1
        if not hold:
            self._flush()

    @_in_run_folder
    def _flush(self) -> None:
        """Write the held events, in one fsync (a converged strategy's ask can journal hundreds of
        duplicates; one fsync each made them most of a long tabular search's time)."""
        if self._held:
            self.run.events.extend(self._held)
            self._held = []

    @_in_run_folder
    def _checkpoint(self) -> None:
        self._flush()  # the journal never lags a checkpoint (resume relies on it)
        state = {"events": self._events_seen, "last_event": self._last_event, "submitted": self.submitted, "stopped": self.stopped, "state": self.strategy.state_dict()}
        try:
            saved = dump_state(state)
        except (pickle.PicklingError, TypeError, AttributeError) as error:  # the wrappers' own state is plain data
            strategy = self.strategy.unwrap() if isinstance(self.strategy, StrategyWrapper) else self.strategy
            raise StrategyBug(
                f"state_dict() returned what cannot be saved ({type(error).__name__}: {error}); return plain data: numbers, strings, lists, dicts, numpy arrays and tensors",
                type(strategy),
            ) from error
        atomic_write_bytes(self.run.path(CHECKPOINT), saved)

    def _drain(self) -> None:
        if not isinstance(self.strategy, StrategyWrapper):
            return
        told = None  # the number of the last result the wrappers told the strategy without a training
        for event in self.strategy.drain_events():
            self._log_wrapper_event(event)
            if event.kind in ("duplicate", "reused", "rejected"):
                told = event.number
        if told is not None:
            # A converged strategy learns from duplicates too (most of a long tabular search's
            # results): its summary, where they changed it, is journaled with the last of them, so
            # that the convergence figure runs to the last result, not the last training.
            summary = self.strategy.summary()
            if summary and summary != self._last_summary:
                self._log({"type": "strategy", "number": told, "source": "summary", "summary": summary}, hold=True)
                self._last_summary = summary
        self._flush()

    def _log_wrapper_event(self, event: WrapperEvent) -> None:
        if event.kind == "waiting":
            self._log({"type": "proposal", "number": event.number, "indices": list(event.indices), "key": event.key, "source": "waiting", "twin": event.twin}, hold=True)
            return
        if event.kind == "failed":
            return  # the trial's own result line already says it failed
        observation = event.observation
        assert observation is not None
        source = {"duplicate": "duplicate", "reused": "reused", "rejected": "rejected"}[event.kind]
        candidate = self.problem.decode(event.indices)
        key = event.key or self.problem.key(event.indices)
        if event.kind != "reused":
            proposal = {"type": "proposal", "number": event.number, "indices": list(event.indices), "key": key, "source": source}
            self._log(compact_proposal(proposal), hold=True)
        twin = self._twins.get(event.twin) if event.twin is not None else None
        trial = Trial(
            number=event.number, source=source, status=observation.status, accuracy=observation.accuracy,
            latency_ms=observation.latency_ms, reward=observation.reward, key=key,
            architecture=self.problem.describe(candidate), duplicate_of=event.twin, finished=now_iso(),
            final_accuracy=twin.get("final_accuracy") if twin is not None and event.kind != "rejected" else None,  # a tabular benchmark's
        )
        if observation.accuracy is not None and observation.latency_ms is not None and observation.status == STATUS_OK:
            breakdown = self.reward(observation.accuracy, observation.latency_ms, self.target_latency_ms)
            trial.latency_ratio, trial.factor = breakdown.latency_ratio, breakdown.factor
        # Compact (search.journal): the journal of a converged strategy is mostly such lines.
        self._log({"type": "result", **compact_result(self._result_fields(trial), twin), "time": trial.finished}, hold=True)
        self.trials.append(trial)

    @staticmethod
    def _result_fields(trial: Trial) -> dict[str, Any]:
        fields = trial.row()
        fields.update({"weights": trial.weights, "info": trial.info})
        return fields

    # ----------------------------------------------------------------- the two calls

    @property
    def finished_asking(self) -> bool:
        return self.stopped is not None or self.submitted >= self.samples or self._out_of_time()

    def set_time_limit(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        """Propose nothing new ``seconds`` from now (``None``: no limit). Evaluations already running
        finish and are recorded; the run is then whole, as one that ran its samples, and a resume
        goes on from there. The limit is this process's: it is not checkpointed."""
        self.time_limit = TimeLimit(seconds, clock=clock)

    @property
    def time_limit_reached(self) -> bool:
        return self.time_limit.was_reached

    def _out_of_time(self) -> bool:
        # journaled, so that nas-results tells a run ended by its limit from one interrupted
        return self.time_limit.reached(lambda: self._log({"type": "time_limit", "number": self.submitted, "source": "search", "seconds": self.time_limit.seconds}))

    @property
    def done(self) -> bool:
        return self.finished_asking and not self.in_flight and not self._resubmit

    def next_submission(self) -> Submission | None:
        """The next candidate to evaluate, or ``None`` when asking is over (see :attr:`done`)."""
        if self._resubmit:
            submission = self._resubmit.pop(0)
            self.in_flight[submission.number] = submission
            self._notify()  # the progress bar's running count
            return submission
        if self.finished_asking:
            return None
        try:
            proposal = self.strategy.ask()
        except SearchStopped as reason:
            self.stopped = str(reason)
            self._drain()
            self._write_tables()  # the duplicates just drained: no result follows to write them
            # journaled (nas-results tells a run that stopped early from one cut short), then checkpointed
            self._log({"type": "stopped", "number": self.submitted, "source": "strategy", "reason": self.stopped})
            self._checkpoint()
            self._notify()
            return None
        self._drain()
        candidate = self.problem.decode(proposal.indices)
        key = self.problem.key(proposal.indices)
        latency = float(self.problem.latency_ms(proposal.indices))
        submission = Submission(proposal.number, proposal.indices, candidate, latency, key)
        self._log({
            "type": "proposal", "number": proposal.number, "indices": list(proposal.indices), "key": key,
            "source": "trained", "latency_ms": latency, "architecture": self.problem.describe(candidate),
        })
        self.submitted += 1
        self.in_flight[proposal.number] = submission
        self._checkpoint()
        self._notify()
        return submission

    def record(self, number: int, result: EvalResult, weights: str | None = None) -> Trial:
        """Score a finished evaluation of proposal ``number`` and tell the strategy."""
        submission = self.in_flight.pop(number, None)
        if submission is None:
            raise ValueError(f"proposal {number} is not in flight")
        latency = result.latency_ms if result.latency_ms is not None else submission.latency_ms
        status = result.status
        ratio = factor = None
        if status == STATUS_OK and not (math.isfinite(result.accuracy) and math.isfinite(latency)):
            status = STATUS_FAILED
        if status == STATUS_OK:
            breakdown = self.reward(result.accuracy, latency, self.target_latency_ms)
            reward, ratio, factor = breakdown.reward, breakdown.latency_ratio, breakdown.factor
        else:  # recorded as the failure wrapper tells it to the strategy: the reward of accuracy 0 here
            reward = ZeroAccuracyPenalty(self.reward, self.target_latency_ms)(latency)
        trial = Trial(
            number=number, source="trained", status=status,
            accuracy=result.accuracy if status == STATUS_OK else None, latency_ms=latency, reward=reward,
            key=submission.key, architecture=self.problem.describe(submission.candidate),
            final_accuracy=result.final_accuracy, latency_ratio=ratio, factor=factor,
            wall_time_s=result.wall_time_s, images_per_s=result.info.get("images_per_s"),
            error=result.error, finished=now_iso(), weights=weights if status == STATUS_OK else None,
            info={k: v for k, v in result.info.items() if isinstance(v, str | int | float | bool | type(None) | list)},
        )
        fields = self._result_fields(trial)
        self._log({"type": "result", **fields})
        self._twins[number] = fields  # what the compact lines of its duplicates leave out
        self.trials.append(trial)
        observation = Observation(reward, trial.accuracy, latency, status, {"number": number})
        self.strategy.tell(number, observation)
        self._drain()
        summary = self.strategy.summary()
        if summary:
            self._log({"type": "strategy", "number": number, "source": "summary", "summary": summary})
            self._last_summary = summary
        # No checkpoint here: the next proposal makes one, and results journaled after the last one
        # are told again on resume (the strategy's state for a table lookup was written twice a trial).
        self._update_best(trial)
        self._write_tables()
        self._notify()
        return trial

    # ----------------------------------------------------------------- outputs

    def _notify(self) -> None:
        if self.on_update is not None:
            self.on_update(self)

    @property
    def trained(self) -> list[Trial]:
        return [t for t in self.trials if t.source == "trained"]

    @property
    def trained_count(self) -> int:
        """``len(self.trained)``, kept up to date (the progress bar asks after every step)."""
        self._catch_up()
        return self._trained_count

    def _start_counting(self) -> None:
        """Forget what was derived from ``self.trials`` (made anew, or rebuilt by a resume). Kept up to
        date as trials come instead of recomputed from all of them, so that a long tabular search
        stays linear in time."""
        self._counted = 0  # self.trials[:self._counted] are in the two below
        self._trained_count = 0
        self._front: list[Trial] = []  # their Pareto front, in trial order
        self._rows_written = 0  # rows of self.trials already in trials.csv (0: write it whole)
        self._front_written: list[int] | None = None  # the numbers pareto.csv holds

    def _catch_up(self) -> None:
        """Take the trials added since the last call into the count and the front. The front of all
        trials is the front of (the front so far + the new ones): a point dominated by a trial off the
        front is dominated by one on it. In trial order, so that of exact duplicates the first stays,
        as pareto_mask keeps it."""
        new = self.trials[self._counted:]
        self._counted = len(self.trials)
        self._trained_count += sum(1 for t in new if t.source == "trained")
        scored = [t for t in new if _is_scored(t)]
        if scored:
            candidates = self._front + scored
            mask = pareto_mask([t.accuracy for t in candidates], [t.latency_ms for t in candidates])  # type: ignore[misc]
            self._front = [t for t, keep in zip(candidates, mask, strict=True) if keep]

    @property
    def best(self) -> Trial | None:
        return self._best

    def _update_best(self, trial: Trial) -> None:
        if trial.source != "trained" or trial.status != STATUS_OK:
            self._discard_weights(trial)
            return
        if _beats(trial, self._best):
            if self._best is not None:
                self._discard_weights(self._best)
            self._best = trial
            self.write_best()
        else:
            self._discard_weights(trial)

    def _discard_weights(self, trial: Trial) -> None:
        if self.keep_weights == "all" or not trial.weights:
            return
        path = self.run.root / trial.weights
        if path.exists():
            path.unlink()
        trial.weights = None

    def best_payload(self, measured_latency_ms: float | None = None) -> dict[str, Any] | None:
        best = self._best
        if best is None:
            return None
        candidate = self.problem.decode(self._indices_of(best.number))
        root = self.run.root.resolve()  # scripts read best.json from anywhere (refined.json's paths are absolute too)
        return {
            "architecture": self.problem.to_json(candidate),
            "accuracy": best.accuracy,
            "latency_ms": best.latency_ms,
            "measured_latency_ms": measured_latency_ms,
            "target_latency_ms": self.target_latency_ms,
            "reward": best.reward,
            "weights": str(root / best.weights) if best.weights else None,
            "final_accuracy": best.final_accuracy,
            "notation": best.architecture,
            "number": best.number,
            "fingerprint": best.key,
            "latency_ratio": best.latency_ratio,
            "reward_kind": self.reward.describe(),
            "run": str(root),
            "info": best.info,
            **({"preprocessing": self._preprocessing_of(best)} if self.preprocessing else {}),
        }

    def _preprocessing_of(self, best: Trial) -> dict[str, Any]:
        """The run's preprocessing, its ``trained_at`` (where the proxies trained at another size
        than the table's) naming the strides the builder set to 1 for this network: the run's own
        says only "each network's earliest stride-2 layers", not knowing which network wins."""
        assert self.preprocessing is not None
        trained_at = self.preprocessing.get("trained_at")
        adaptation = (best.info or {}).get("adaptation")
        if not isinstance(trained_at, dict) or trained_at.get("adaptation") is not None or not isinstance(adaptation, str):
            return self.preprocessing
        from mobilenas.train.data import trained_elsewhere

        strides = [path for path in adaptation.split(", ") if path]  # joined for Tune's loggers (search/proxy.py)
        deployed = int(self.preprocessing["input_shape"][-1])
        return {**self.preprocessing, "trained_at": trained_elsewhere(int(trained_at["input_size"]), deployed, strides)}

    @_in_run_folder
    def write_best(self, measured_latency_ms: float | None = None) -> None:
        """Write ``best.json`` for the best trial; without ``measured_latency_ms``, the measurement
        best.json already holds for that same trial is kept (a resumed run rewrites it)."""
        if measured_latency_ms is None:
            measured_latency_ms = self.recorded_measurement()
        payload = self.best_payload(measured_latency_ms)
        if payload is not None:
            self.run.write_json("best.json", payload)

    def recorded_measurement(self) -> float | None:
        """The end-to-end latency ``best.json`` records for the current best trial, if any (the
        command measures the best once, when the search ends)."""
        if self._best is None:
            return None
        try:
            written = read_json(self.run.path("best.json"))
        except (OSError, ValueError):  # none yet, or not readable: measure again
            return None
        value = written.get("measured_latency_ms") if isinstance(written, dict) else None
        same = isinstance(written, dict) and written.get("fingerprint") == self._best.key and written.get("number") == self._best.number
        return float(value) if same and isinstance(value, int | float) and math.isfinite(value) else None

    def _indices_of(self, number: int) -> tuple[int, ...]:
        """The indices trial ``number`` was evaluated with: its number's last proposal line (a
        proposal lost to a kill is asked again under its number, after an ``abandoned`` line, and
        the strategy, changed meanwhile, may then propose something else)."""
        found = None
        for event in self.run.events.read():
            if event.get("type") == "proposal" and event.get("number") == number:
                found = event["indices"]
        if found is None:
            raise KeyError(number)
        return tuple(int(i) for i in found)

    def most_accurate_within_target(self) -> Trial | None:
        """The successful trial of highest accuracy whose table latency meets the target (the
        faster of equals), or None. The reward's best need not be it: the soft reward pays for
        speed under the target, and the hard one may prefer an accurate network a little over it."""
        feasible = [t for t in self._scored() if (t.latency_ms or 0.0) <= self.target_latency_ms]
        return max(feasible, key=lambda t: (t.accuracy, -(t.latency_ms or 0.0)), default=None)

    def _scored(self) -> list[Trial]:
        """Trained, successful trials with an accuracy and a latency."""
        return [t for t in self.trials if _is_scored(t)]

    def pareto(self) -> list[Trial]:
        """Trained, successful trials on the accuracy/latency front, fastest first."""
        self._catch_up()
        return sorted(self._front, key=lambda t: t.latency_ms or 0.0)

    @_in_run_folder
    def _write_tables(self) -> None:
        # trials.csv: rows are final once written, so new ones are appended (rewriting it whole after
        # each trial made a long tabular search quadratic); written whole at the start and on resume.
        path = self.run.path("trials.csv")
        if self._rows_written == 0 or not path.exists():
            atomic_write_text(path, _csv([t.row() for t in self.trials], TRIAL_COLUMNS))
        elif self._rows_written < len(self.trials):
            with open(path, "a") as handle:  # one call; a torn last row after a kill is rewritten on resume
                handle.write(_csv([t.row() for t in self.trials[self._rows_written:]], TRIAL_COLUMNS, header=False))
        self._rows_written = len(self.trials)
        front = self.pareto()
        if self._front_written != [t.number for t in front] or not self.run.path("pareto.csv").exists():
            columns = ("number", "accuracy", "latency_ms", "reward", "final_accuracy", "key", "architecture")
            atomic_write_text(self.run.path("pareto.csv"), _csv([{c: getattr(t, c) for c in columns} for t in front], columns))
            self._front_written = [t.number for t in front]

    # ----------------------------------------------------------------- resume

    def resume(self) -> None:
        """Restore the strategy from ``strategy.pt`` and the trials from the journal."""
        journaled = self.run.events.read()
        events = whole_events(journaled)  # (one to one: a line each)
        self._events_seen = len(events)
        self._last_event = event_mark(journaled[-1]) if journaled else None
        applied = 0
        checkpoint_path = self.run.path(CHECKPOINT)
        lost = "the strategy cannot continue, but every finished trial is in events.jsonl (nas-results show reads it): start a new run"
        if not checkpoint_path.exists() and any(e.get("type") == "result" and e.get("source") == "trained" for e in events):
            # a trial is only submitted after a checkpoint: results without one mean it was removed
            raise ValueError(f"{checkpoint_path} is missing; {lost}")
        if checkpoint_path.exists():
            try:
                checkpoint = read_checkpoint(checkpoint_path)
            except (EOFError, RuntimeError, OSError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, ImportError) as error:  # written atomically: damaged from outside
                reason = str(error).strip().splitlines()[0] if str(error).strip() else "damaged"
                raise ValueError(f"{checkpoint_path} cannot be read ({type(error).__name__}: {reason}); {lost}") from None
            applied = int(checkpoint["events"])
            # The journal is fsynced before each checkpoint, so it never lags one: it was cut, replaced
            # or damaged from outside. Resuming would rewrite trials.csv, pareto.csv and best.json from
            # what is left (and a lost line mid-file shifted every later one against the checkpoint).
            mismatch = _journal_mismatch(self.run, journaled, checkpoint)
            if mismatch:
                raise ValueError(mismatch)
            self.strategy.load_state_dict(checkpoint["state"])
            self.submitted = int(checkpoint["submitted"])
            self.stopped = checkpoint.get("stopped")
        void = void_before(events)  # an abandoned line voids only its number's lines above it
        proposals: dict[int, dict[str, Any]] = {}
        trials: dict[tuple[int, str], Trial] = {}
        for position, event in enumerate(events):
            kind, number = event.get("type"), event.get("number")
            if number is None or kind == "abandoned":
                continue
            number = int(number)
            if position < void.get(number, -1):
                continue
            source = str(event.get("source", ""))
            after_checkpoint = position >= applied
            if kind == "proposal" and source == "trained" and after_checkpoint:
                # Journaled, but the process died before the checkpoint: it was never submitted.
                # Not marked as logged: the proposal the strategy makes again is journaled anew.
                void[number] = len(events)
                self._log({"type": "abandoned", "number": number, "source": "resume"})
                continue
            self._logged.add((str(kind), number, source))
            if kind == "proposal" and source == "trained":
                proposals[number] = event
            elif kind == "result":
                if after_checkpoint and source != "trained":
                    # Made inside an ask the checkpoint does not reflect; the strategy makes it again.
                    self._logged.discard((str(kind), number, source))
                    continue
                trial = _trial_from_event(event)
                trials[(number, source)] = trial
                if source == "trained":
                    self._twins[number] = {k: v for k, v in event.items() if k not in ("type", "time")}
                if after_checkpoint:
                    # Journaled after the checkpoint: the strategy has not been told yet.
                    self.strategy.tell(number, Observation(trial.reward, trial.accuracy, trial.latency_ms, trial.status, {"number": number}))
                    self._drain()
        self.trials = sorted(trials.values(), key=lambda t: (t.finished, t.number)) + self.trials
        finished = {t.number for t in self.trials if t.source == "trained"}
        for number, event in sorted(proposals.items()):
            if number not in finished:
                indices = tuple(int(i) for i in event["indices"])
                self._resubmit.append(Submission(number, indices, self.problem.decode(indices), float(event["latency_ms"]), str(event["key"]), resubmitted=True))
        for trial in self.trials:
            if trial.source == "trained" and trial.status == STATUS_OK and _beats(trial, self._best):
                self._best = trial
        # The journal keeps the weights path each result was recorded with; those of trials beaten
        # since were deleted (--keep-weights best), or a kill came between a new best and the
        # deletion: no trial names a file that is not there, and only the best keeps one.
        for trial in self.trials:
            if trial.weights and trial is not self._best:
                self._discard_weights(trial)
            if trial.weights and not (self.run.root / trial.weights).exists():
                trial.weights = None
        self._checkpoint()
        self._start_counting()  # self.trials was rebuilt
        self._write_tables()
        if self._best is not None:
            self.write_best()


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A search checkpoint (pickle, or torch.save before pickle was used); raises what reading raises."""
    if zipfile.is_zipfile(path):
        return dict(torch.load(path, map_location="cpu", weights_only=False))
    return dict(pickle.loads(path.read_bytes()))


def event_mark(event: dict[str, Any]) -> list[Any]:
    """What tells one journal event from another: type, number, source and time."""
    return [event.get("type"), event.get("number"), event.get("source"), event.get("time")]


def _journal_mismatch(run: RunDir, events: list[dict[str, Any]], checkpoint: dict[str, Any]) -> str | None:
    """Why the journal's ``events`` (as read) are not the ones ``checkpoint`` followed, or None: fewer
    than it reflects (cut short), or another event where its last one was (a line lost or changed
    mid-file; checkpoints before this check have no last event to compare)."""
    applied = int(checkpoint["events"])
    keep = "put the whole events.jsonl back to resume (trials.csv and best.json are left as they were)"
    skipped = run.events.skipped
    damaged = ""
    if skipped:
        lines = listed([str(line) for line in skipped], 5)
        damaged = f"; line {lines} is not a whole event" if len(skipped) == 1 else f"; lines {lines} are not whole events"
    if applied > len(events) and not run.events.path.exists():
        return f"{run.events.path} is missing ({CHECKPOINT} reflects {applied} events); {keep}"
    if applied > len(events):
        return f"{run.events.path} holds {len(events)} events but {CHECKPOINT} reflects {applied}: the journal was cut short, replaced or damaged{damaged}; {keep}"
    last = checkpoint.get("last_event")
    if last is not None and applied and event_mark(events[applied - 1]) != list(last):
        return f"{run.events.path} does not match {CHECKPOINT}: event {applied} is not the one it reflects, so a line before it was lost or changed{damaged}; {keep}"
    return None


def journal_cut_short(run: RunDir) -> str | None:
    """Why ``--resume`` would refuse ``run`` for an events.jsonl that lags its checkpoint or does
    not match it, or None.

    For ``nas-results show``, which would otherwise send the user to a resume that refuses. A
    checkpoint that cannot be read here (damaged, or a plugin strategy's class) gives None: the
    resume names that itself.
    """
    path = run.path(CHECKPOINT)
    if not path.is_file():
        return None
    try:
        checkpoint = read_checkpoint(path)
        int(checkpoint["events"])
    except Exception:  # whatever it is, the resume reports it
        return None
    return _journal_mismatch(run, run.events.read(), checkpoint)


def dump_state(state: Any) -> bytes:
    """Pickle a checkpoint: plain data, and tensors as numpy arrays.

    Not torch.save: a strategy's state is mostly plain data (the de-duplication's memory grows with
    the run), which torch.save pickles through a Python hook per object, and each tensor's storage
    is a torch.save of its own under plain pickle; a PPO controller's state took 12 ms this way, 3 ms
    here. :meth:`SearchRun.resume` still reads checkpoints torch.save wrote.
    """
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, torch.Tensor: _reduce_tensor}
    pickler.dump(state)
    return buffer.getvalue()


def _reduce_tensor(tensor: torch.Tensor) -> Any:
    try:
        return _tensor_from_numpy, (tensor.detach().cpu().numpy(),)
    except (TypeError, RuntimeError):  # a dtype numpy lacks (bfloat16), or a lazy conjugate: pickled as torch does
        return tensor.__reduce_ex__(pickle.HIGHEST_PROTOCOL)


def _tensor_from_numpy(array: Any) -> torch.Tensor:
    return torch.from_numpy(array)


def _beats(trial: Trial, best: Trial | None) -> bool:
    """Whether ``trial`` is a better best than ``best``: a higher reward, or the same reward at a
    lower latency (equal rewards are common on a tabular benchmark, whose isomorphic cells share an
    accuracy, and under the hard constraint below the target; the slower of two would be dominated,
    off the run's own Pareto front). Of exact equals the earlier stays."""
    if best is None:
        return True
    if trial.reward != best.reward:
        return trial.reward > best.reward
    return trial.latency_ms is not None and best.latency_ms is not None and trial.latency_ms < best.latency_ms


def _is_scored(trial: Trial) -> bool:
    """Whether a trial was trained, successfully, with an accuracy and a latency (the front's kind)."""
    return trial.source == "trained" and trial.status == STATUS_OK and trial.accuracy is not None and trial.latency_ms is not None


def _trial_from_event(event: dict[str, Any]) -> Trial:
    known = {name for name in Trial.__dataclass_fields__}
    values = {k: v for k, v in event.items() if k in known}
    values.setdefault("info", {})
    return Trial(**values)


def _csv(rows: list[dict[str, Any]], columns: Sequence[str], *, header: bool = True) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


def run_inline(search: SearchRun, evaluate: Callable[[Submission], tuple[EvalResult, str | None]]) -> None:
    """Drive a search in this process, one evaluation at a time (cheap evaluators)."""
    while not search.done:
        submission = search.next_submission()
        if submission is None:
            break
        try:
            result, weights = evaluate(submission)
        except Exception as error:  # an evaluator bug must not lose the run: record and go on
            result, weights = EvalResult(accuracy=0.0, status=STATUS_FAILED, error=f"{type(error).__name__}: {error}"), None
        search.record(submission.number, result, weights)


def relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


__all__ = ["STATUS_INFEASIBLE", "Problem", "SearchRun", "Submission", "Trial", "run_inline"]
