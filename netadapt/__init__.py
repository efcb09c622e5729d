"""mobilenas.netadapt: NetAdapt (Yang et al., ECCV 2018) as MobileNetV3 used it after the search.

Prune a trained network's channels, one group per iteration, until its latency by the device's
lookup table meets a budget; each iteration fine-tunes one proposal per prunable group briefly,
evaluates it on the held-out validation split and keeps the best; then a long fine-tune (or a
retraining from scratch). The architecture is rewritten (smaller channel counts), the model
rebuilt and the surviving filters (largest L2 norm) copied; no masks.

Command line: ``netadapt refine INPUT --target-latency 10ms`` (or ``--budget-ratio 0.5``), also
``mobilenas netadapt``; ``netadapt describe INPUT`` lists the prunable groups.

Modules, by the official code's verbs:

:mod:`.core`       the algorithm over any network description: :class:`Schedule` (the
                   reduction per iteration), :func:`shrink_to_target` (the widest setting of a
                   group meeting a target), :func:`plan_iteration`, :func:`select` /
                   :func:`selection_score` (``accuracy-per-latency`` or ``accuracy``),
                   :func:`iterate` / :func:`adapt` (the loop), :func:`smallest_reachable`.
:mod:`.groups`     *describe the network*: the prunable groups of an Architecture
                   (:func:`prunable_groups`: expanded widths, residual-tied output widths, stem,
                   head), :func:`set_group_width`, :func:`channel_layout` (which channel space
                   indexes each dimension of each module).
:mod:`.pruning`    *choose filters by L2 norm* and copy them: :func:`shrink_state_dict`,
                   :func:`shrink_model`.
:mod:`.run`        the orchestrator: :class:`Refinement` (run directory, history, checkpoints,
                   resume, final fine-tune, ``refined.json``), :class:`Settings`,
                   :func:`check_budget`; the seams :class:`Trainer` and :class:`LatencyModel`.
:mod:`.training`   :class:`DataTrainer`, the trainer on top of :mod:`mobilenas.train`.
:mod:`.latency_model`  :class:`TableLatency`, the lookup table of :mod:`mobilenas.latency`
                   with entries measured on demand and a correction frozen for the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenas.lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use (mobilenas.lazy), so --help does not load torch
    from mobilenas.netadapt.core import (
        SCHEDULES,
        SELECTION_RULES,
        Candidate,
        Group,
        Iteration,
        Outcome,
        Point,
        Schedule,
        adapt,
        dominated,
        iterate,
        plan_iteration,
        select,
        selection_score,
        shrink_to_target,
        smallest_reachable,
    )
    from mobilenas.netadapt.groups import (
        ArchitectureDescription,
        channel_layout,
        prunable_groups,
        set_group_width,
    )
    from mobilenas.netadapt.pruning import shrink_model, shrink_state_dict

__all__ = [
    "SCHEDULES",
    "SELECTION_RULES",
    "ArchitectureDescription",
    "Candidate",
    "Group",
    "Iteration",
    "Outcome",
    "Point",
    "Schedule",
    "adapt",
    "channel_layout",
    "dominated",
    "iterate",
    "plan_iteration",
    "prunable_groups",
    "select",
    "selection_score",
    "set_group_width",
    "shrink_model",
    "shrink_state_dict",
    "shrink_to_target",
    "smallest_reachable",
]

lazy_exports(__name__, __file__)
