"""Reading a ``netadapt refine`` run directory into DataFrames (the only module that knows its files).

A NetAdapt run (:mod:`mobilenas.netadapt.run`) commits one line per iteration to
``history.jsonl`` (iteration 0 is the starting network); ``refined.json`` appears when the run
has finished. The history is read with :meth:`mobilenas.runs.Journal.read` (a torn last line
is skipped) and, as :meth:`mobilenas.netadapt.run.Refinement.lines` does, the first line of each
iteration wins. A run still in progress reads fine: it has no ``refined``.

DataFrames of a :class:`NetAdaptResults`:

``iterations``  one row per iteration: ``run``, ``iteration``, ``target_latency_ms`` (that
                iteration's target; empty for 0), ``chosen_group``, ``previous_width``, ``width``
                (the pruned group, its width before and after), ``latency_ms`` (lookup table,
                the run's frozen correction), ``measured_latency_ms`` (end to end),
                ``accuracy_before_finetune`` (right after pruning), ``accuracy`` (after the
                short fine-tune), ``previous_accuracy``, ``target_met``, ``proposals`` (how many
                were tried), ``wall_time_s``, ``notation``.
``widths``      one row per iteration, one column per prunable group in network order
                (``stem``, ``stages[s].blocks[b].out``, ``...expanded``, ``head.conv``, ...).
``proposals``   one row per proposal of every iteration: ``iteration``, ``group``,
                ``previous_width``, ``width``, ``latency_ms``, ``target_met``,
                ``accuracy_before_finetune``, ``accuracy``, ``score``, ``dominated`` (another
                proposal was as accurate or more and as fast or faster: not eligible under
                ``accuracy-per-latency``), ``status``, ``chosen``, ``committed`` (False for the
                finished proposals of an iteration in progress or interrupted: no score yet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from mobilenas.results.common import RunBase, number_or_nan, read_json_object
from mobilenas.runs import EVENTS, Journal

KIND = "netadapt"
HISTORY = "history.jsonl"
REFINED_JSON = "refined.json"

ITERATION_COLUMNS = (
    "run", "iteration", "target_latency_ms", "chosen_group", "previous_width", "width", "latency_ms", "measured_latency_ms",
    "accuracy_before_finetune", "accuracy", "previous_accuracy", "target_met", "proposals", "wall_time_s", "notation",
)
PROPOSAL_COLUMNS = (
    "iteration", "group", "previous_width", "width", "latency_ms", "target_met", "accuracy_before_finetune", "accuracy",
    "score", "dominated", "status", "chosen", "committed",
)
_FLOATS = ("target_latency_ms", "latency_ms", "measured_latency_ms", "accuracy_before_finetune", "accuracy", "previous_accuracy", "wall_time_s")


@dataclass(frozen=True)
class NetAdaptResults(RunBase):
    """A NetAdapt run, read (see the module docstring for the frames' columns)."""

    iterations: pd.DataFrame
    widths: pd.DataFrame
    proposals: pd.DataFrame
    refined: dict[str, Any] | None

    kind = KIND

    @property
    def target_latency_ms(self) -> float:
        """The latency budget (ms, by the lookup table)."""
        return float(self.manifest.get("budget_ms", self.manifest.get("settings", {}).get("budget_ms", math.nan)))

    @property
    def start_latency_ms(self) -> float:
        return float(self.manifest.get("start_latency_ms", math.nan))

    @property
    def strategy(self) -> str:
        """``netadapt`` (so NetAdapt runs group apart from search strategies in comparisons)."""
        return KIND

    @property
    def selection(self) -> str:
        return str(self.manifest.get("settings", {}).get("selection", "?"))

    @property
    def finished(self) -> bool:
        return self.refined is not None

    @property
    def extended(self) -> bool:
        """Finished once, then taken further (``netadapt refine --resume RUN --max-iterations N``) and
        not finished again: its ``refined.json`` is an earlier iteration's, so :attr:`refined` is None."""
        return self.refined is None and _read_refined(self.path) is not None

    @property
    def refined_unreadable(self) -> bool:
        """Its ``refined.json`` is there but cannot be read (``netadapt refine --resume`` writes a
        finished run's again from its event log)."""
        return self.refined is None and (self.path / REFINED_JSON).is_file() and _read_refined(self.path) is None

    @property
    def last_iteration(self) -> int:
        """The last iteration committed to the history (0: the start only)."""
        return int(self.iterations["iteration"].max()) if len(self.iterations) else 0

    @cached_property
    def _events(self) -> list[dict]:
        """The run's event log, read once for the properties below (a run is read anew to see more)."""
        return Journal(self.path / EVENTS).read()

    @property
    def time_limit_s(self) -> float | None:
        """The --time-limit (seconds) that stopped the run at its last iteration; None if none did."""
        last = self.last_iteration
        for event in reversed(self._events):
            if event.get("type") == "time_limit":
                seconds = event.get("seconds")
                if event.get("iteration") != last:
                    return None  # an earlier session's limit: the run went on after it
                return float(seconds) if isinstance(seconds, int | float) else math.nan
        return None

    @property
    def unfinished_iteration(self) -> tuple[int, int, int] | None:
        """``(iteration, proposals finished, proposals planned)`` of an iteration begun after the
        last committed one and not committed (killed, or stopped by --time-limit: a resume goes on
        from its finished proposals); None if there is none."""
        begun = _iteration_in_progress(self._events, self.last_iteration)
        return None if begun is None else (self.last_iteration + 1, len(begun[1]), len(begun[0]))

    @property
    def long_training_in_progress(self) -> tuple[str, int, int] | None:
        """``(what, epochs finished, epochs)`` of a long training (the starting network's training
        from scratch, or the final fine-tune or retraining) that a kill interrupted: its finished
        epochs are kept in its checkpoint for the resume. None for a finished run, or none begun."""
        if self.finished:
            return None
        import torch

        from mobilenas.netadapt.run import CHECKPOINTS, FINAL_TRAINING, PRETRAIN_TRAINING
        from mobilenas.train.engine import steps_per_epoch

        names = {"pretrain": "the training of the starting network", "final finetune": "the final fine-tune", "final retrain": "the final retraining"}
        for file in (FINAL_TRAINING, PRETRAIN_TRAINING):
            path = self.path / CHECKPOINTS / file
            if not path.is_file():
                continue
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                identity, step = state["identity"], int(state["step"])
                training = identity["training"]
                per_epoch = steps_per_epoch(int(training["train_images"]), int(training["batch_size"]))
                return str(names.get(identity["purpose"], identity["purpose"])), min(step // per_epoch, int(identity["epochs"])), int(identity["epochs"])
            except Exception:  # being written, or damaged: the resume starts that training over (and says so)
                continue
        return None

    @property
    def source(self) -> str:
        """What was refined: a best.json, an architecture, a reference name."""
        data = self.manifest.get("input")
        return str(data.get("source", "?")) if isinstance(data, dict) else "?"

    @property
    def num_classes(self) -> int | None:
        data = self.manifest.get("input")
        if isinstance(data, dict) and isinstance(data.get("architecture"), dict):
            head = data["architecture"].get("head")
            if isinstance(head, dict) and isinstance(head.get("num_classes"), int):
                return int(head["num_classes"])
        return None

    def latency_table(self) -> dict[str, Any]:
        """The manifest's latency record: ``table`` (path), ``correction`` (frozen for the run), device."""
        data = self.manifest.get("latency")
        return data if isinstance(data, dict) else {}

    def candidates(self) -> pd.DataFrame:
        """The networks the run went through (after each short fine-tune) and the refined one.

        Columns as a search run's trials where they apply: ``run``, ``number`` (the iteration;
        the refined network repeats the last), ``source`` (``iteration`` | ``refined``),
        ``accuracy``, ``latency_ms``, ``measured_latency_ms``, ``architecture`` (notation),
        ``target_latency_ms``.
        """
        frame = self.iterations
        rows = pd.DataFrame({
            "run": self.label,
            "number": frame["iteration"],
            "source": "iteration",
            "accuracy": frame["accuracy"],
            "latency_ms": frame["latency_ms"],
            "measured_latency_ms": frame["measured_latency_ms"],
            "architecture": frame["notation"],
            "target_latency_ms": self.target_latency_ms,
        })
        if self.refined is not None:
            refined = self.refined
            final = pd.DataFrame([{
                "run": self.label,
                "number": int(refined.get("iterations", len(frame) - 1)),
                "source": "refined",
                "accuracy": number_or_nan(refined.get("accuracy")),
                "latency_ms": number_or_nan(refined.get("latency_ms")),
                "measured_latency_ms": number_or_nan(refined.get("measured_latency_ms")),
                "architecture": refined.get("notation"),
                "target_latency_ms": self.target_latency_ms,
            }])
            rows = pd.concat([rows, final], ignore_index=True) if len(rows) else final
        keep = rows["accuracy"].notna() & rows["latency_ms"].notna()
        return rows[keep].reset_index(drop=True)

    def widths_before_after(self) -> pd.DataFrame:
        """Each prunable group's width at the start and at the end: ``group``, ``start``, ``end``, ``kept`` (fraction)."""
        if self.widths.empty:
            return pd.DataFrame(columns=["group", "start", "end", "kept"])
        start = self.widths.iloc[0]
        end = self.widths.iloc[-1]
        if self.refined is not None and isinstance(self.refined.get("widths"), dict):
            end = pd.Series(self.refined["widths"]).reindex(self.widths.columns).fillna(end)
        frame = pd.DataFrame({"group": list(self.widths.columns), "start": start.to_numpy(dtype=float), "end": end.to_numpy(dtype=float)})
        frame["kept"] = frame["end"] / frame["start"]
        return frame


def is_netadapt_manifest(manifest: dict[str, Any]) -> bool:
    return manifest.get("kind") == KIND


def read_netadapt_run(path: Path, manifest: dict[str, Any], label: str) -> NetAdaptResults:
    """Read the run at ``path`` (already known to be a NetAdapt run by its ``manifest``)."""
    lines = _history_lines(path / HISTORY)
    iteration_rows = []
    width_rows = []
    proposal_rows = []
    for line in lines:
        chosen_value, proposals_value, widths_value = line.get("chosen"), line.get("proposals"), line.get("widths")
        chosen: dict[str, Any] | None = chosen_value if isinstance(chosen_value, dict) else None
        proposals: list[Any] = proposals_value if isinstance(proposals_value, list) else []
        widths: dict[str, Any] = widths_value if isinstance(widths_value, dict) else {}
        iteration = int(line["iteration"])
        iteration_rows.append({
            "run": label,
            "iteration": iteration,
            "target_latency_ms": line.get("target_latency_ms"),
            "chosen_group": chosen.get("group") if chosen else None,
            "previous_width": chosen.get("previous_width") if chosen else None,
            "width": chosen.get("width") if chosen else None,
            "latency_ms": line.get("latency_ms"),
            "measured_latency_ms": line.get("measured_latency_ms"),
            "accuracy_before_finetune": line.get("accuracy_before_finetune"),
            "accuracy": line.get("accuracy"),
            "previous_accuracy": line.get("previous_accuracy"),
            "target_met": line.get("target_met"),
            "proposals": len(proposals),
            "wall_time_s": line.get("wall_time_s"),
            "notation": line.get("notation"),
        })
        width_rows.append({"iteration": iteration, **{str(k): v for k, v in widths.items()}})
        chosen_index = chosen.get("index") if chosen else None
        for index, proposal in enumerate(proposals):
            if not isinstance(proposal, dict):
                continue
            proposal_rows.append({
                "iteration": iteration,
                "group": proposal.get("group"),
                "previous_width": proposal.get("previous_width"),
                "width": proposal.get("width"),
                "latency_ms": proposal.get("latency_ms"),
                "target_met": proposal.get("target_met"),
                "accuracy_before_finetune": proposal.get("accuracy_before_finetune"),
                "accuracy": proposal.get("accuracy"),
                "score": proposal.get("score"),
                "dominated": bool(proposal.get("dominated", False)),  # runs before the rule have no flag
                "status": proposal.get("status"),
                "chosen": index == chosen_index,
                "committed": True,
            })
    last = int(lines[-1]["iteration"]) if lines else None
    proposal_rows += _proposals_in_progress(path, last) if last is not None else []
    iterations = pd.DataFrame(iteration_rows, columns=list(ITERATION_COLUMNS))
    for column in _FLOATS:
        iterations[column] = pd.to_numeric(iterations[column], errors="coerce").astype(float)
    width_frame = pd.DataFrame(width_rows)
    if width_frame.empty:
        width_frame = pd.DataFrame(index=pd.Index([], name="iteration"))
    else:
        # Groups in network order, as the first line lists them (later lines never add groups).
        order = [c for c in width_rows[0] if c != "iteration"]
        width_frame = width_frame.set_index("iteration")[order]
    proposals_frame = pd.DataFrame(proposal_rows, columns=list(PROPOSAL_COLUMNS))
    for column in ("latency_ms", "accuracy_before_finetune", "accuracy", "score"):
        proposals_frame[column] = pd.to_numeric(proposals_frame[column], errors="coerce").astype(float)
    refined = _read_refined(path)
    if refined is not None and isinstance(refined.get("iterations"), int) and len(iterations) and refined["iterations"] < int(iterations["iteration"].max()):
        refined = None  # made before the run was extended (netadapt refine --resume --max-iterations): in progress again
    return NetAdaptResults(
        path=path,
        label=label,
        manifest=manifest,
        iterations=iterations,
        widths=width_frame,
        proposals=proposals_frame,
        refined=refined,
    )


def _read_refined(run: Path) -> dict[str, Any] | None:
    """The run's refined.json, or None where it is absent, unreadable or holds no result (``{}``)."""
    refined = read_json_object(run / REFINED_JSON)
    return refined if refined is not None and isinstance(refined.get("architecture"), dict) else None


def _iteration_in_progress(events: list[dict[str, Any]], last: int) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]] | None:
    """The plan (proposals by index) and the finished proposals (events by index) of an iteration
    begun after the ``last`` committed one (killed, or stopped by --time-limit: a resume goes on
    from its finished proposals); None if there is none. A newer plan replaces an older one."""
    begun: tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]] | None = None
    for event in events:
        if event.get("iteration") != last + 1:
            continue
        if event.get("type") == "plan":
            begun = ({int(p.get("index", -1)): p for p in event.get("proposals") or [] if isinstance(p, dict)}, {})
        elif event.get("type") == "proposal" and begun is not None:
            begun[1][int(event.get("index", -1))] = event
    return begun


def _proposals_in_progress(path: Path, last: int) -> list[dict[str, Any]]:
    """Rows of ``proposals`` for the finished proposals of an iteration in progress or interrupted
    (:func:`_iteration_in_progress`): ``committed`` False, no score yet (that is given when the
    iteration is committed)."""
    begun = _iteration_in_progress(Journal(path / EVENTS).read(), last)
    if begun is None:
        return []
    planned, finished = begun
    rows = []
    for index in sorted(finished):
        event, plan = finished[index], planned.get(index, {})
        rows.append({
            "iteration": last + 1,
            "group": event.get("group", plan.get("group")),
            "previous_width": plan.get("previous_width"),
            "width": event.get("width", plan.get("width")),
            "latency_ms": event.get("latency_ms", plan.get("latency_ms")),
            "target_met": plan.get("target_met"),
            "accuracy_before_finetune": event.get("accuracy_before_finetune"),
            "accuracy": event.get("accuracy"),
            "score": None,
            "dominated": False,
            "status": event.get("status"),
            "chosen": False,
            "committed": False,
        })
    return rows


def _history_lines(path: Path) -> list[dict[str, Any]]:
    seen: dict[int, dict[str, Any]] = {}
    for line in Journal(path).read():
        if line.get("type", "iteration") == "iteration" and isinstance(line.get("iteration"), int):
            seen.setdefault(int(line["iteration"]), line)
    return [seen[i] for i in sorted(seen)]
