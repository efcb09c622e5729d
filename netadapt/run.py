"""NetAdapt on an :class:`~mobilenas.space.Architecture`: the orchestrator, its run directory, resume.

One orchestrator per job. It sees everything: the latency model (the lookup table, measuring
missing entries on demand), the trainer (short fine-tunes, evaluation on the held-out validation
split), the run directory. The algorithm itself is :mod:`mobilenas.netadapt.core`.

Run directory (``mobilenas.runs.RunDir``, kind ``netadapt``):

``manifest.json``    resolved arguments and settings, versions, seed, the table's fingerprint,
                     the starting and budget latencies
``history.jsonl``    append-only, one line per iteration (0 = the starting network): target,
                     chosen proposal, every group's width, table and measured latency, accuracy
                     before and after fine-tuning, every proposal's scores. A line is the commit
                     point of its iteration.
``events.jsonl``     finer events: each iteration's plan and each proposal's result as it lands,
                     so a killed iteration keeps the proposals it finished
``checkpoints/iteration-NNN.pt``  the current network's weights after iteration NNN (atomic); a
                     resume needs only the last committed one, the others are the trajectory
``checkpoints/pretrain-training.pt``, ``checkpoints/final-training.pt``  while the starting
                     network is trained from scratch, and while the final network is fine-tuned
                     or retrained: that training's state after each finished epoch (deleted once
                     what it was for is recorded)
``proposals/iteration-NNN/``      fine-tuned proposals of the iteration in progress
``refined.json``     ``architecture``, ``accuracy``, ``latency_ms``, ``measured_latency_ms``,
                     ``weights`` (as nas-search's ``best.json``), plus test accuracy and more;
                     ``side_by_side``: the start and the result timed again at the end,
                     interleaved (``start_ms``, ``refined_ms``, ``ratio``): the measured speed-up
``refined.pt``, ``refined.onnx``, ``trajectory.png``

Resume (``--resume DIR``) reloads the run's own arguments from the manifest, continues from the
last committed iteration, reuses the plan and the finished proposals of an interrupted one, and
continues an interrupted long training (training from scratch, final fine-tune or retraining) from
its last finished epoch, with the same weights as if it had not been interrupted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from mobilenas.netadapt.choices import FINAL_MODES, refined_label
from mobilenas.netadapt.core import (
    SELECTION_RULES,
    Candidate,
    Outcome,
    Point,
    Schedule,
    iterate,
    minimum_width,
    smallest_reachable,
)
from mobilenas.netadapt.groups import (
    ArchitectureDescription,
    granularity_problem,
    group_widths,
    prunable_groups,
)
from mobilenas.netadapt.pruning import shrink_model
from mobilenas.runs import Journal, RunDir, TimeLimit, atomic_write_bytes, now_iso, read_json
from mobilenas.space.arch import Architecture
from mobilenas.space.builder import Network, build_model
from mobilenas.torchutil import torch_threads
from mobilenas.train.engine import seeded
from mobilenas.train.proxy import TrainingCheckpoint
from mobilenas.train.weights import StateDict, load_strict, load_weights, save_weights
from mobilenas.units import counted, format_duration, format_ms

RUN_KIND = "netadapt"
HISTORY = "history.jsonl"
CHECKPOINTS = "checkpoints"
PROPOSALS = "proposals"
PRETRAIN_TRAINING = "pretrain-training.pt"  # in CHECKPOINTS: the starting network's training from scratch, epoch by epoch
FINAL_TRAINING = "final-training.pt"  # in CHECKPOINTS: the final fine-tune's or retraining's, epoch by epoch
REFINED_JSON = "refined.json"
REFINED_WEIGHTS = "refined.pt"
REFINED_ONNX = "refined.onnx"
TRAJECTORY_PNG = "trajectory.png"
STATUS_OK = "ok"
STATUS_FAILED = "failed"


# --------------------------------------------------------------------------- seams


@dataclass(frozen=True)
class TrainResult:
    """What a training call reports (the model is trained in place)."""

    status: str = STATUS_OK
    error: str | None = None
    wall_time_s: float = 0.0
    steps: int = 0


class Trainer(Protocol):
    """Training and evaluation on one data set, held in memory (picklable, for Ray workers).

    Accuracies are fractions in [0, 1]. ``evaluate`` uses the held-out validation split (every
    decision); ``test`` the test split (final reporting only).
    """

    @property
    def input_size(self) -> int: ...

    def fine_tune(self, model: Network, steps: int, seed: int) -> TrainResult: ...

    def train(
        self, model: Network, epochs: int, seed: int, progress: bool = False, *, from_scratch: bool = False, checkpoint: TrainingCheckpoint | None = None
    ) -> TrainResult:
        """``epochs`` passes over the training split; ``from_scratch`` selects the training learning
        rate; ``checkpoint``: where to keep every finished epoch, and continue from (a long training)."""
        ...

    def evaluate(self, model: Network) -> float: ...

    def test(self, model: Network) -> float: ...


class LatencyModel(Protocol):
    """Latency of architectures on the target device, in milliseconds."""

    @property
    def input_size(self) -> int:
        """The deployment resolution the table was built for."""
        ...

    def predict(self, arch: Architecture) -> float:
        """By the lookup table (missing entries measured on demand and added to it)."""
        ...

    def measure(self, arch: Architecture, predicted: float | None = None) -> float | None:
        """End to end on the device (``None`` where that cannot be done); timed again where far
        from ``predicted`` (the table's latency)."""
        ...

    def measure_side_by_side(self, archs: list[Architecture]) -> list[float | None]:
        """End to end, interleaved (so that the machine's drift weighs on all alike)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Plain data for the manifest: table path, fingerprint, device, backend."""
        ...

    @property
    def measured_entries(self) -> int:
        """How many table entries were measured on demand so far (for progress messages)."""
        ...


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Everything that decides what a run computes (recorded in the manifest, reloaded on resume)."""

    budget_ms: float
    start_latency_ms: float
    schedule: Schedule = dataclasses.field(default_factory=Schedule)
    selection: str = "accuracy-per-latency"
    granularity: int = 8
    finetune_steps: int = 100
    final: str = "finetune"
    final_epochs: int = 10
    pretrain_epochs: int = 10
    max_iterations: int | None = None
    workers: int = 1
    ray_address: str | None = None
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.selection not in SELECTION_RULES:
            raise ValueError(f"selection rule {self.selection!r} is not one of {', '.join(SELECTION_RULES)}")
        if self.final not in FINAL_MODES:
            raise ValueError(f"final {self.final!r} is not one of {', '.join(FINAL_MODES)}")
        for name in ("granularity", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("finetune_steps", "final_epochs", "pretrain_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.budget_ms > 0 and math.isfinite(self.budget_ms)):
            raise ValueError(f"the latency budget must be a positive number of ms, got {self.budget_ms}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["schedule"] = self.schedule.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"the run's settings have unknown keys {sorted(unknown)}; was it written by a newer mobilenas?")
        values = dict(data)
        values["schedule"] = Schedule(**values["schedule"])
        return cls(**values)


def derive_seed(seed: int, *parts: object) -> int:
    """A seed for one piece of work that does not depend on execution order or parallelism."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


# --------------------------------------------------------------------------- weights


def load_into(arch: Architecture, state: StateDict, input_size: int, where: str = "the weights") -> Network:
    """Build ``arch`` at ``input_size`` and load ``state`` strictly, with a readable error."""
    model = build_model(arch, input_size=input_size)
    load_strict(model, state, where)
    return model


# --------------------------------------------------------------------------- proposals


@dataclass(frozen=True)
class ProposalJob:
    """Shrink ``weights`` of ``source`` to ``target``, fine-tune ``steps`` steps, evaluate."""

    iteration: int
    index: int
    group: str
    source: Architecture
    target: Architecture
    weights: StateDict
    steps: int
    seed: int
    threads: int | None = None


@dataclass(frozen=True)
class ProposalResult:
    accuracy_before: float
    accuracy: float
    weights: StateDict | None
    status: str = STATUS_OK
    error: str | None = None
    wall_time_s: float = 0.0


class ProposalWorker:
    """Evaluates :class:`ProposalJob` s; picklable (it carries the trainer and its data) for Ray."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def __call__(self, job: ProposalJob) -> ProposalResult:
        with torch_threads(job.threads):
            return self._evaluate(job)

    def _evaluate(self, job: ProposalJob) -> ProposalResult:
        start = time.perf_counter()
        size = self.trainer.input_size
        model = load_into(job.source, job.weights, size)
        small = shrink_model(model, job.target, input_size=size)
        del model
        before = self.trainer.evaluate(small)
        result = self.trainer.fine_tune(small, job.steps, job.seed) if job.steps else TrainResult()
        if result.status != STATUS_OK:
            return ProposalResult(before, math.nan, None, STATUS_FAILED, result.error or "fine-tuning failed", time.perf_counter() - start)
        after = self.trainer.evaluate(small)
        weights = {name: value.detach().to("cpu", memory_format=torch.contiguous_format) for name, value in small.state_dict().items()}
        return ProposalResult(before, after, weights, STATUS_OK, None, time.perf_counter() - start)


def run_jobs(
    worker: Callable[[ProposalJob], ProposalResult],
    jobs: Sequence[ProposalJob],
    *,
    workers: int,
    ray_address: str | None,
    threads: int | None,
    on_done: Callable[[int, ProposalResult], None],
    stop: Callable[[], bool] | None = None,
) -> dict[int, ProposalResult]:
    """Evaluate ``jobs``: in this process when ``workers`` is 1, else one Ray task per proposal.

    ``on_done(index, result)`` runs in this process as each job lands. A job that raises becomes
    a failed result carrying the error. ``stop()`` is asked before each job starts: once it is
    true no more start, and the jobs never started are missing from the results.
    """
    from mobilenas.search.execution import map_parallel

    indexed = {i: job for i, job in enumerate(jobs)}
    results: dict[int, ProposalResult] = {}

    def landed(outcome: Any) -> None:
        result = outcome.value if outcome.ok else ProposalResult(math.nan, math.nan, None, STATUS_FAILED, outcome.error, outcome.wall_time_s)
        results[outcome.index] = result
        on_done(outcome.index, result)

    cpus = float(threads or 1)
    map_parallel(worker, list(indexed.values()), workers=workers, ray_address=ray_address, cpus_per_task=cpus, on_done=landed, stop=stop)
    return results


# --------------------------------------------------------------------------- the run


class _PlanningProgress:
    """A progress bar over the groups an iteration plans, shown from the first lookup-table entry
    measured on the way (planning is otherwise instant: the entries are already in the table)."""

    def __init__(self, desc: str, groups: int, enabled: bool, measured: Callable[[], int]) -> None:
        self.desc, self.total, self.enabled, self.measured = desc, groups, enabled, measured
        self.bar: Any = None
        self.done = 0

    def wrap(self, resource: Callable[[Architecture], float]) -> Callable[[Architecture], float]:
        def shown(arch: Architecture) -> float:
            value = resource(arch)
            entries = self.measured()
            if entries and self.enabled and self.bar is None:
                from mobilenas.cliutil import progress

                self.bar = progress(total=self.total, initial=self.done, desc=self.desc, unit="group")
            if self.bar is not None:
                self.bar.set_postfix(entries=entries, refresh=False)
            return value

        return shown

    def group_planned(self, done: int, total: int) -> None:
        self.done = done
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _TimeLimitPassed(Exception):
    """Raised out of an iteration whose proposals the time limit left unstarted."""


def _iteration_name(iteration: int) -> str:
    return f"iteration-{iteration:03d}"


def history_lines(history: Journal) -> list[dict[str, Any]]:
    """Committed history lines, one per iteration, in order (duplicates from a replay ignored)."""
    seen: dict[int, dict[str, Any]] = {}
    for line in history.read():
        if line.get("type") == "iteration" and isinstance(line.get("iteration"), int):
            seen.setdefault(line["iteration"], line)
    return [seen[i] for i in sorted(seen)]


def check_history(run: RunDir) -> None:
    """Refuse a run whose history.jsonl lags its checkpoints by more than the one iteration a kill
    can leave (each checkpoint is written just before its history line): the history was cut or
    replaced from outside, and resuming would prune the network again from an earlier iteration."""
    iterations = [line["iteration"] for line in history_lines(Journal(run.path(HISTORY)))]
    recorded = max(iterations, default=-1)
    numbers = [int(number) for path in run.path(CHECKPOINTS).glob("iteration-*.pt") if (number := path.stem.split("-", 1)[1]).isdigit()]
    if numbers and max(numbers) > recorded + 1:
        raise ValueError(
            f"{run.path(HISTORY)} records {counted(len(iterations), 'iteration')} but {CHECKPOINTS}/ holds {_iteration_name(max(numbers))}.pt: "
            f"the history was cut short or replaced; put the whole {HISTORY} back to resume"
        )


class Refinement:
    """A NetAdapt run in its run directory: a new one from :meth:`create`, or an existing one
    (to resume) from the constructor with the settings its manifest records."""

    def __init__(self, run: RunDir, settings: Settings, trainer: Trainer, latency: LatencyModel, log: Callable[[str], None] | None = None, progress: bool = False) -> None:
        self.run = run
        self.settings = settings
        self.trainer = trainer
        self.latency = latency
        self.history = Journal(run.path(HISTORY))
        self.log = log or (lambda message: None)
        self.progress = progress
        self.description = ArchitectureDescription()
        self.time_limit = TimeLimit()  # see set_time_limit
        #: told what an interrupt keeps, as a long training starts and ends (the CLI's Ctrl-C message)
        self.interrupt_note: Callable[[str], None] = lambda note: None

    # ----------------------------------------------------------------- creating

    @classmethod
    def create(
        cls,
        out: str | Path,
        manifest: dict[str, Any],
        settings: Settings,
        trainer: Trainer,
        latency: LatencyModel,
        log: Callable[[str], None] | None = None,
        progress: bool = False,
    ) -> Refinement:
        run = RunDir.create(out, {"kind": RUN_KIND, **manifest, "settings": settings.to_dict(), "latency": latency.describe()})
        return cls(run, settings, trainer, latency, log, progress)

    def record_start(self, arch: Architecture, weights: StateDict | None) -> None:
        """Iteration 0: the starting network (trained first when ``weights`` is ``None``)."""
        size = self.trainer.input_size
        trained_here = weights is None
        if weights is None:
            seed = derive_seed(self.settings.seed, "pretrain")
            with seeded(seed):
                model = build_model(arch, input_size=size)
            epochs = self.settings.pretrain_epochs
            if epochs:
                self.log(f"no weights given: training the starting network from scratch for {counted(epochs, 'epoch')} first")
            else:
                self.log("no weights given and --pretrain-epochs 0: pruning the untrained network (its accuracies are near chance, and so are the choices made on them)")
            identity = {"purpose": "pretrain", "architecture": arch.fingerprint(), "input_size": size}
            result = self._long_training(model, epochs, seed, PRETRAIN_TRAINING, "the training of the starting network", identity, from_scratch=True)
            if result.status != STATUS_OK:
                raise RuntimeError(f"training the starting network failed: {result.error}")
            weights = model.state_dict()
        else:
            model = load_into(arch, weights, size)
        accuracy = self.trainer.evaluate(model)
        latency_ms = self.latency.predict(arch)
        measured = self.latency.measure(arch, latency_ms)
        checkpoint = self._save_checkpoint(0, model.state_dict())
        self.history.append({
            "type": "iteration",
            "iteration": 0,
            "time": now_iso(),
            "target_latency_ms": None,
            "chosen": None,
            "widths": group_widths(arch),
            "architecture": arch.to_dict(),
            "notation": arch.to_notation(),
            "latency_ms": latency_ms,
            "measured_latency_ms": measured,
            "accuracy_before_finetune": accuracy,
            "accuracy": accuracy,
            "previous_accuracy": None,
            "target_met": latency_ms <= self.settings.budget_ms,
            "proposals": [],
            "checkpoint": checkpoint,
            "trained_from_scratch": trained_here,
        })
        self._long_training_recorded(PRETRAIN_TRAINING)
        self.log(
            f"start: {arch.num_blocks} blocks, latency {format_ms(latency_ms)} by the table (measured {format_ms(measured)}), "
            f"validation accuracy {accuracy:.4f}; budget {format_ms(self.settings.budget_ms)}{self._iterations_note(latency_ms)}"
        )

    def _iterations_note(self, latency_ms: float) -> str:
        """'; at most N iterations ...' (the schedule's bound or --max-iterations), to plan a long run by."""
        if latency_ms <= self.settings.budget_ms:
            return ""
        bound = self.settings.schedule.iterations_to(self.settings.start_latency_ms, self.settings.budget_ms)
        limit = self.settings.max_iterations
        if limit is not None and (bound is None or limit < bound):
            return f"; at most {limit} iteration{'s' if limit != 1 else ''} (--max-iterations)"
        if bound is None:
            return "; the schedule's shrinking steps add up to less than the budget asks, so it bounds no iteration count (each step still prunes at least one channel group)"
        return f"; at most {bound} iteration{'s' if bound != 1 else ''} by the schedule (fewer when steps overshoot)"

    def _remaining_note(self, done: int, latency_ms: float, seconds: float, resumed: bool) -> str:
        """'; at most N more iterations, about T at this one's pace' (NetAdapt runs for hours on a CPU)."""
        settings = self.settings
        if latency_ms <= settings.budget_ms:
            return ""
        left = settings.schedule.iterations_to(settings.start_latency_ms, settings.budget_ms, current=latency_ms, done=done)
        why, limit = "the schedule", settings.max_iterations
        if limit is not None and (left is None or limit - done < left):
            left, why = max(limit - done, 0), "--max-iterations"
        if left is None:
            return "; the schedule bounds no iteration count from here"
        if left == 0:
            return ""
        note = f"; at most {left} more iteration{'s' if left != 1 else ''} by {why}"
        if not resumed:  # a resumed iteration's time is only its remainder: no pace to go by
            then = "" if settings.final == "none" or settings.final_epochs == 0 else ", then the final training"
            note += f", about {format_duration(left * seconds)} at this one's pace{then}"
        return note

    def _long_training(
        self, model: Network, epochs: int, seed: int, file: str, name: str, identity: dict[str, Any], *, from_scratch: bool = False
    ) -> TrainResult:
        """Train ``model`` for ``epochs`` keeping every finished epoch in ``checkpoints/<file>``
        (continued from there when a kill interrupted the same training: ``identity`` with the seed
        and epochs says which, the trainer adds its settings); ``name`` names it in log lines."""
        path = self.run.path(f"{CHECKPOINTS}/{file}")
        checkpoint = TrainingCheckpoint(path, {**identity, "seed": seed, "epochs": epochs}, name=name, log=self.log)
        if epochs:
            self.interrupt_note(f"completed work is saved, the finished epochs of {name} included ({path})")
        return self.trainer.train(model, epochs, seed, progress=self.progress, from_scratch=from_scratch, checkpoint=checkpoint)

    def _long_training_recorded(self, file: str) -> None:
        """What the training in ``checkpoints/<file>`` was for is saved: its checkpoint goes."""
        self.run.path(f"{CHECKPOINTS}/{file}").unlink(missing_ok=True)
        self.interrupt_note("completed work is saved")

    def _save_checkpoint(self, iteration: int, state: StateDict) -> str:
        relative = f"{CHECKPOINTS}/{_iteration_name(iteration)}.pt"
        save_weights(self.run.path(relative), state)
        return relative

    # ----------------------------------------------------------------- state

    def lines(self) -> list[dict[str, Any]]:
        """Committed history lines, one per iteration, in order (see :func:`history_lines`)."""
        return history_lines(self.history)

    def current_point(self) -> Point[Architecture, StateDict]:
        lines = self.lines()
        if not lines:
            raise ValueError(f"{self.run.root} has no starting network yet")
        last = lines[-1]
        arch = Architecture.from_dict(last["architecture"])
        weights = self.run.path(last["checkpoint"])
        if not weights.is_file():  # deleted, or the run folder copied without it: a bare path said too little
            raise ValueError(
                f"{weights}, the weights of the run's network after iteration {int(last['iteration'])}, is missing, so the run cannot go on from it;"
                f" put the file back, or start a new run (netadapt refine INPUT --out ANOTHER)"
            )
        state = load_weights(weights)
        return Point(int(last["iteration"]), arch, state, float(last["accuracy"]), float(last["latency_ms"]))

    def _events_for(self, iteration: int) -> tuple[dict[str, Any] | None, dict[int, dict[str, Any]]]:
        plan: dict[str, Any] | None = None
        proposals: dict[int, dict[str, Any]] = {}
        for event in self.run.events.read():
            if event.get("iteration") != iteration:
                continue
            if event.get("type") == "plan":
                plan, proposals = event, {}  # a newer plan replaces an older one
            elif event.get("type") == "proposal" and plan is not None:
                proposals[int(event["index"])] = event
        return plan, proposals

    # ----------------------------------------------------------------- iterating

    def extend(self, limit: int) -> None:
        """Let a run stopped by ``max_iterations`` (or one still going) go on to ``limit`` iterations:
        recorded in the manifest, so a later resume keeps it; :meth:`finish` then trains the network
        the run ends with again. Refused for a run that met its budget or has done ``limit`` already."""
        lines = self.lines()
        done = int(lines[-1]["iteration"]) if lines else 0
        budget = self.settings.budget_ms
        if lines and float(lines[-1]["latency_ms"]) <= budget:
            raise ValueError(
                f"{self.run.root} met its budget ({format_ms(budget)}) at iteration {done}: --max-iterations cannot take it further; "
                "drop it, or refine the run's refined.json with a smaller budget"
            )
        if limit <= done:
            raise ValueError(f"--max-iterations {limit} is not more than the {counted(done, 'iteration')} {self.run.root} has done; give more to extend the run, or drop --max-iterations")
        was = self.settings.max_iterations
        if limit != was:
            self.log(f"--max-iterations {limit}: the run now stops after at most {counted(limit, 'iteration')} (it was {'no limit' if was is None else was})")
            self.settings = dataclasses.replace(self.settings, max_iterations=limit)
            manifest = self.run.manifest()
            self.run.update_manifest(settings=self.settings.to_dict(), arguments={**manifest.get("arguments", {}), "max_iterations": limit})

    def set_time_limit(self, seconds: float | None, *, since: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """Start no new iteration or proposal ``seconds`` after ``since`` (a reading of ``clock``;
        default: now); ``None``: no limit. Proposals under way finish; an iteration left unfinished
        is not committed (its plan and finished proposals stay in the event log, so a resume
        completes it as if it had never stopped); :meth:`finish` then trains the network of the last
        committed iteration, as after ``max_iterations``."""
        self.time_limit = TimeLimit(seconds, since=since, clock=clock)

    @property
    def time_limit_reached(self) -> bool:
        return self.time_limit.was_reached

    def _out_of_time(self, point: Point[Architecture, StateDict]) -> bool:
        return self.time_limit.reached(
            lambda: self.run.events.append({"type": "time_limit", "iteration": point.iteration, "seconds": self.time_limit.seconds, "time": now_iso()})
        )

    def done_iterating(self, point: Point[Architecture, StateDict]) -> bool:
        if point.resource <= self.settings.budget_ms:
            return True
        limit = self.settings.max_iterations
        return limit is not None and point.iteration >= limit

    def iterate_until_budget(self) -> Point[Architecture, StateDict]:
        point = self.current_point()
        parallel = self.settings.workers > 1 or self.settings.ray_address is not None
        if self.done_iterating(point) or self._out_of_time(point):
            return point
        from mobilenas.search.execution import ray_session

        with ray_session(self.settings.ray_address) if parallel else nullcontext():
            while not self.done_iterating(point) and not self._out_of_time(point):
                try:
                    point = self.step(point)
                except _TimeLimitPassed:
                    break  # the iteration under way stays unfinished; a resume completes it
        return point

    def step(self, point: Point[Architecture, StateDict]) -> Point[Architecture, StateDict]:
        """One iteration from ``point``, committed to the history before returning."""
        started = time.perf_counter()
        entries_before = self.latency.measured_entries
        number = point.iteration + 1
        plan_event, finished = self._events_for(number)
        planned = None
        if plan_event is not None:
            planned = [
                Candidate(p["group"], int(p["width"]), int(p["previous_width"]), Architecture.from_dict(p["architecture"]), float(p["latency_ms"]), bool(p["target_met"]))
                for p in plan_event["proposals"]
            ]
            self.log(f"iteration {number}: resuming its {counted(len(planned), 'proposal')} ({len(finished)} already fine-tuned)")
        results: dict[int, ProposalResult] = {}
        start_latency = self.settings.start_latency_ms
        planning = _PlanningProgress(
            f"iteration {number}: measuring table entries to plan its proposals", len(prunable_groups(point.definition)), self.progress,
            lambda: self.latency.measured_entries - entries_before,
        )

        def evaluate(source: Point[Architecture, StateDict], candidates: Sequence[Candidate[Architecture]]) -> list[Outcome[StateDict]]:
            planning.close()
            new_entries = self.latency.measured_entries - entries_before
            if new_entries:
                self.log(f"iteration {number}: measured {counted(new_entries, 'new lookup-table entry', 'new lookup-table entries')} to plan {counted(len(candidates), 'proposal')}")
            if plan_event is None:
                if candidates and not any(c.target_met for c in candidates):
                    self.log(
                        f"iteration {number}: no single group can meet the target on its own, so every group proposes its narrowest width; "
                        "a smaller --initial-reduction keeps NetAdapt's steps gentle"
                    )
                self.run.events.append({
                    "type": "plan",
                    "iteration": number,
                    "time": now_iso(),
                    "target_latency_ms": self.settings.schedule.target(number, source.resource, start_latency, self.settings.budget_ms),
                    "proposals": [
                        {"index": i, "group": c.group, "width": c.width, "previous_width": c.previous_width, "latency_ms": c.resource, "target_met": c.target_met, "architecture": c.definition.to_dict()}
                        for i, c in enumerate(candidates)
                    ],
                })
            results.update(self._reuse(number, finished))
            pending = [i for i in range(len(candidates)) if i not in results]
            jobs = [
                ProposalJob(number, i, candidates[i].group, source.definition, candidates[i].definition, source.state, self.settings.finetune_steps, derive_seed(self.settings.seed, number, candidates[i].group), self.settings.threads)
                for i in pending
            ]
            from mobilenas.cliutil import progress

            bar = progress(total=len(candidates), desc=f"iteration {number}", enabled=self.progress, unit="proposal", initial=len(candidates) - len(pending))

            def show_time_left() -> None:
                left = self.time_limit.left_text()
                if left is not None:
                    bar.set_postfix(time_left=left, refresh=False)

            def landed(position: int, result: ProposalResult) -> None:
                index = pending[position]
                results[index] = result
                self._record_proposal(number, index, candidates[index], result)
                show_time_left()
                bar.update(1)

            show_time_left()

            try:
                if jobs:
                    run_jobs(
                        ProposalWorker(self.trainer), jobs, workers=self.settings.workers, ray_address=self.settings.ray_address, threads=self.settings.threads,
                        on_done=landed, stop=lambda: self._out_of_time(source),
                    )
            finally:
                bar.close()
            if len(results) < len(candidates):  # the time limit passed before every proposal started
                self.log(
                    f"iteration {number}: the time limit passed after {len(results)} of its {counted(len(candidates), 'proposal')}; "
                    "the iteration is left unfinished, its finished proposals kept for a resume"
                )
                raise _TimeLimitPassed
            if all(results[i].status != STATUS_OK for i in range(len(candidates))):
                first = next(r.error for r in results.values() if r.error)
                raise RuntimeError(f"iteration {number}: every proposal failed; the first error: {first}")
            return [Outcome(results[i].accuracy, results[i].weights or {}, results[i].accuracy_before) for i in range(len(candidates))]

        try:
            step = iterate(
                point,
                start_resource=start_latency,
                budget=self.settings.budget_ms,
                schedule=self.settings.schedule,
                rule=self.settings.selection,
                granularity=self.settings.granularity,
                description=self.description,
                resource=planning.wrap(self.latency.predict),
                evaluate=evaluate,
                planned=planned,
                on_group=planning.group_planned,
            )
        finally:
            planning.close()
        new = step.point
        measured = self.latency.measure(new.definition, new.resource)
        checkpoint = self._save_checkpoint(number, new.state)
        winner = step.winner
        chosen_result = results[step.chosen]
        line = {
            "type": "iteration",
            "iteration": number,
            "time": now_iso(),
            "target_latency_ms": step.target,
            "chosen": {"index": step.chosen, "group": winner.group, "width": winner.width, "previous_width": winner.previous_width},
            "widths": group_widths(new.definition),
            "architecture": new.definition.to_dict(),
            "notation": new.definition.to_notation(),
            "latency_ms": new.resource,
            "measured_latency_ms": measured,
            "accuracy_before_finetune": chosen_result.accuracy_before,
            "accuracy": new.accuracy,
            "previous_accuracy": point.accuracy,
            "target_met": winner.target_met,
            "proposals": [
                {
                    "group": c.group, "width": c.width, "previous_width": c.previous_width, "latency_ms": c.resource, "target_met": c.target_met,
                    "accuracy_before_finetune": _finite_or_none(results[i].accuracy_before), "accuracy": _finite_or_none(results[i].accuracy),
                    "score": _finite_or_none(step.scores[i]), "dominated": step.dominated[i], "status": results[i].status, "error": results[i].error, "wall_time_s": results[i].wall_time_s,
                }
                for i, c in enumerate(step.candidates)
            ],
            "checkpoint": checkpoint,
            "wall_time_s": time.perf_counter() - started,
        }
        self.history.append(line)
        shutil.rmtree(self.run.path(f"{PROPOSALS}/{_iteration_name(number)}"), ignore_errors=True)
        self.log(
            f"iteration {number}: target {format_ms(step.target)}; {winner.group} {winner.previous_width}->{winner.width}; "
            f"latency {format_ms(new.resource)} (measured {format_ms(measured)}); accuracy {point.accuracy:.4f} -> "
            f"{chosen_result.accuracy_before:.4f} pruned -> {new.accuracy:.4f} fine-tuned; {counted(len(step.candidates), 'proposal')} in {time.perf_counter() - started:.0f} s"
            + self._remaining_note(number, new.resource, time.perf_counter() - started, resumed=planned is not None)
        )
        return Point(number, new.definition, new.state, new.accuracy, new.resource)

    def _record_proposal(self, iteration: int, index: int, candidate: Candidate[Architecture], result: ProposalResult) -> None:
        weights = None
        if result.weights is not None:
            weights = f"{PROPOSALS}/{_iteration_name(iteration)}/{index:03d}.pt"
            save_weights(self.run.path(weights), result.weights)
        self.run.events.append({
            "type": "proposal", "iteration": iteration, "index": index, "group": candidate.group, "width": candidate.width,
            "latency_ms": candidate.resource, "accuracy_before_finetune": _finite_or_none(result.accuracy_before),
            "accuracy": _finite_or_none(result.accuracy), "status": result.status, "error": result.error,
            "wall_time_s": result.wall_time_s, "weights": weights, "time": now_iso(),
        })

    def _reuse(self, iteration: int, finished: dict[int, dict[str, Any]]) -> dict[int, ProposalResult]:
        reused: dict[int, ProposalResult] = {}
        for index, event in finished.items():
            weights = None
            if event.get("status") == STATUS_OK:
                path = event.get("weights")
                if not path or not self.run.path(path).is_file():
                    continue  # its weights did not reach the disk: evaluate it again
                weights = load_weights(self.run.path(path))
            reused[index] = ProposalResult(
                _nan_if_none(event.get("accuracy_before_finetune")), _nan_if_none(event.get("accuracy")), weights,
                str(event.get("status")), event.get("error"), float(event.get("wall_time_s") or 0.0),
            )
        return reused

    # ----------------------------------------------------------------- finishing

    def final_event(self) -> dict[str, Any] | None:
        events = [e for e in self.run.events.read() if e.get("type") == "final"]
        return events[-1] if events and self.run.path(REFINED_WEIGHTS).is_file() else None

    def finish(self, point: Point[Architecture, StateDict]) -> dict[str, Any]:
        """The long fine-tune (or retraining), final evaluation and the refined.* files."""
        done = self.final_event()
        if done is not None and done["refined"].get("iterations") == point.iteration:
            # (one for an earlier point was made before the run was extended)
            self._long_training_recorded(FINAL_TRAINING)  # a kill may have come just after the final event
            return self._refined_as_recorded(dict(done["refined"]))
        settings = self.settings
        size = self.trainer.input_size
        seed = derive_seed(settings.seed, "final")
        result = TrainResult()
        # the iteration and architecture: an extended run's final training never continues an earlier network's
        identity = {"purpose": f"final {settings.final}", "iteration": point.iteration, "architecture": point.definition.fingerprint(), "input_size": size}
        if point.iteration == 0:
            if self.time_limit_reached and point.resource > settings.budget_ms:
                self.log("no iteration finished within the time limit: the starting network is the result (no final training)")
            else:
                self.log("no iteration was needed: the starting network is the result (no final training)")
            model = load_into(point.definition, point.state, size)
        elif settings.final == "retrain":
            with seeded(seed):
                model = build_model(point.definition, input_size=size)
            self.log(f"retraining the final network from scratch for {counted(settings.final_epochs, 'epoch')}")
            result = self._long_training(model, settings.final_epochs, seed, FINAL_TRAINING, "the final retraining", identity, from_scratch=True)
        else:
            model = load_into(point.definition, point.state, size)
            if settings.final == "finetune" and settings.final_epochs:
                self.log(f"long fine-tune of the final network: {counted(settings.final_epochs, 'epoch')}")
                result = self._long_training(model, settings.final_epochs, seed, FINAL_TRAINING, "the final fine-tune", identity)
        if result.status != STATUS_OK:
            raise RuntimeError(f"the final {settings.final} failed: {result.error}")
        accuracy = self.trainer.evaluate(model)
        test_accuracy = self.trainer.test(model)
        lines = self.lines()
        start = lines[0]
        start_test = test_accuracy if not point.iteration else self._start_test_accuracy(start)
        save_weights(self.run.path(REFINED_WEIGHTS), model.state_dict())
        deployable = load_into(point.definition, model.state_dict(), self.latency.input_size, where="the refined weights")
        from mobilenas.space.export import export_onnx

        export_onnx(deployable, self.run.path(REFINED_ONNX), input_size=self.latency.input_size)
        latency_ms = self.latency.predict(point.definition)
        # The start and the result timed again, interleaved: their ratio is the speed-up, free of
        # the drift between the start of the run and now (minutes to hours apart).
        if point.iteration:
            start_now, measured = self.latency.measure_side_by_side([Architecture.from_dict(start["architecture"]), point.definition])
        else:  # nothing was pruned: the result is the start
            start_now = measured = self.latency.measure(point.definition)
        refined = {
            "architecture": point.definition.to_dict(),
            "accuracy": accuracy,
            "latency_ms": latency_ms,
            "measured_latency_ms": measured,
            "weights": str(self.run.path(REFINED_WEIGHTS).resolve()),
            "onnx": str(self.run.path(REFINED_ONNX).resolve()),
            "target_latency_ms": settings.budget_ms,
            "test_accuracy": test_accuracy,
            "accuracy_before_final": point.accuracy,
            "final": settings.final if point.iteration else "none",
            "final_epochs": settings.final_epochs if point.iteration else 0,
            "iterations": point.iteration,
            "start": {
                "accuracy": start["accuracy"],
                "test_accuracy": start_test,  # on the same test images as the result's: the honest before/after
                "latency_ms": start["latency_ms"],
                "measured_latency_ms": start["measured_latency_ms"],
                "notation": start["notation"],
            },
            "side_by_side": {  # measured at the end, interleaved
                "start_ms": start_now,
                "refined_ms": measured,
                "ratio": measured / start_now if measured and start_now else None,
            },
            "notation": point.definition.to_notation(),
            "widths": group_widths(point.definition),
            "run": str(self.run.root.resolve()),
        }
        data = self.run.manifest().get("data")
        if isinstance(data, dict) and {"mean", "std", "in_channels"} <= set(data):  # what refined.onnx expects of its input
            from mobilenas.space.builder import adapt_for_input_size
            from mobilenas.train.data import preprocessing

            _, adaptation = adapt_for_input_size(point.definition, size)
            prepared = preprocessing(data, self.latency.input_size, adaptation=adaptation)
            refined["preprocessing"] = prepared
            elsewhere = prepared.get("trained_at")
            if elsewhere:
                self.log(f"note: {REFINED_ONNX} is the {self.latency.input_size} px network whose latency was measured; {elsewhere['note']}")
        self.run.write_json(REFINED_JSON, refined)
        try:
            plot_trajectory(lines, refined, self.run.path(TRAJECTORY_PNG))
        except Exception as error:  # a plot is a convenience; never lose the run over it
            self.log(f"could not draw {TRAJECTORY_PNG}: {error}")
        self.run.events.append({"type": "final", "time": now_iso(), "refined": refined, "wall_time_s": result.wall_time_s})
        self._long_training_recorded(FINAL_TRAINING)
        return refined


    def _start_test_accuracy(self, start: dict[str, Any]) -> float | None:
        """The starting network's test accuracy, from its iteration-0 checkpoint (``None`` where
        that file is gone): the validation figures chose every step, the test ones never did."""
        path = self.run.path(str(start.get("checkpoint") or ""))
        if not start.get("checkpoint") or not path.is_file():
            self.log(f"note: {path} is missing, so the starting network's test accuracy is not reported")
            return None
        model = load_into(Architecture.from_dict(start["architecture"]), load_weights(path), self.trainer.input_size)
        return self.trainer.test(model)

    def _refined_as_recorded(self, refined: dict[str, Any]) -> dict[str, Any]:
        return refined_as_recorded(self.run, refined, self.log)


def refined_as_recorded(run: RunDir, refined: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """A finished run's result as its final event recorded it, with its files in this run folder
    (it may have been moved or copied since); refined.json written again where it is missing or
    unreadable (the event log holds all of it)."""
    root = run.root.resolve()
    refined["run"] = str(root)
    for key, name in (("weights", REFINED_WEIGHTS), ("onnx", REFINED_ONNX)):
        if refined.get(key) and (root / name).is_file():
            refined[key] = str(root / name)
    path = run.path(REFINED_JSON)
    existed = path.exists()
    try:
        data = read_json(path)
        readable = isinstance(data, dict) and isinstance(data.get("architecture"), dict)  # ({} is no result)
    except (OSError, ValueError):
        readable = False
    if not readable:
        run.write_json(REFINED_JSON, refined)
        log(f"{REFINED_JSON} was {'unreadable' if existed else 'missing'}: written again from the run's event log")
    return refined


def finished_result(run: RunDir, settings: Settings) -> tuple[dict[str, Any], str] | None:
    """``(refined, why)`` of a run with nothing left to do: its final training is recorded for its
    last committed iteration, which met the budget (``why`` is ``budget``) or the run's
    ``max_iterations`` (``max_iterations``). ``None`` for any other run, one stopped by its time
    limit included (a resume goes on iterating)."""
    lines = history_lines(Journal(run.path(HISTORY)))
    finals = [e for e in run.events.read() if e.get("type") == "final" and isinstance(e.get("refined"), dict)]
    if not lines or not finals or not run.path(REFINED_WEIGHTS).is_file():
        return None
    last, refined = lines[-1], finals[-1]["refined"]
    if refined.get("iterations") != last["iteration"]:
        return None
    if float(last["latency_ms"]) <= settings.budget_ms:
        return dict(refined), "budget"
    if settings.max_iterations is not None and last["iteration"] >= settings.max_iterations:
        return dict(refined), "max_iterations"
    return None


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else float(value)


# --------------------------------------------------------------------------- budget


def smallest_reachable_latency(arch: Architecture, granularity: int, predict: Callable[[Architecture], float]) -> tuple[Architecture, float]:
    """The smallest network NetAdapt can reach from ``arch`` and its latency by the table."""
    smallest = smallest_reachable(arch, granularity, ArchitectureDescription())
    return smallest, predict(smallest)


def check_budget(arch: Architecture, budget_ms: float, granularity: int, predict: Callable[[Architecture], float]) -> float:
    """Refuse a budget below the smallest reachable network; returns that network's latency."""
    _, floor_ms = smallest_reachable_latency(arch, granularity, predict)
    if budget_ms < floor_ms:
        problem = granularity_problem(arch, granularity)
        groups = prunable_groups(arch)
        if problem is not None and all(g.width <= granularity for g in groups):
            raise ValueError(problem)
        narrowest = ", ".join(str(width) for width in sorted({minimum_width(g.width, granularity) for g in groups}))
        raise ValueError(
            f"the latency budget {format_ms(budget_ms)} is below the smallest network NetAdapt can reach from this "
            f"architecture: {format_ms(floor_ms)} by the table (every group at its narrowest width, {narrowest} channels, "
            f"at granularity {granularity}){'; ' + problem if problem else ''}; raise the budget, lower --granularity, or start from a smaller architecture"
        )
    return floor_ms


# --------------------------------------------------------------------------- plot


def plot_trajectory(lines: Sequence[dict[str, Any]], refined: dict[str, Any], path: Path) -> None:
    """Validation accuracy against latency along the run, with the budget and the final network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    latencies = [line["latency_ms"] for line in lines]
    accuracies = [line["accuracy"] for line in lines]
    axis.plot(latencies, accuracies, "o-", color="tab:blue", label="after short fine-tune (table latency)")
    measured = [(line["measured_latency_ms"], line["accuracy"]) for line in lines if line.get("measured_latency_ms")]
    if measured:
        axis.plot(*zip(*measured, strict=True), "x", color="tab:gray", label="same, measured latency")
    axis.axvline(refined["target_latency_ms"], color="tab:red", linestyle="--", label="budget")
    axis.plot([refined["latency_ms"]], [refined["accuracy"]], "*", markersize=14, color="tab:green", label=refined_label(refined))
    for line in lines[1:]:
        axis.annotate(str(line["iteration"]), (line["latency_ms"], line["accuracy"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axis.set_xlabel("latency (ms)")
    axis.set_ylabel("validation accuracy")
    # latency grows to the right, as on every other front figure (nas-results, the notebooks)
    axis.set_title("NetAdapt trajectory (iterations run right to left)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
