"""The NetAdapt algorithm (Yang et al., ECCV 2018), independent of what a network is.

The verbs are the official code's: *describe* the network (its prunable groups), *shrink* one
group to meet a target, *fine-tune* and *evaluate* each proposal, *compute the resource*. This
module holds only the arithmetic and the choices, over any network *definition* ``D`` (an
:class:`~mobilenas.space.Architecture`, or the 4-layer tuple of the official "hello world"):

* :class:`Schedule`: the per-iteration resource reduction. Iteration ``i`` (from 1) aims at
  ``target_i = max(R_{i-1} - R_0 * max(r * d**(i-1), m), budget)`` where ``R_0`` is the starting
  resource, ``r`` the initial reduction, ``d`` the decay and ``m`` a floor (MobileNetV3 used a
  constant 1% of the seed latency per step). Never aiming below the budget avoids a last step
  that overshoots it for nothing (the official code does not clamp; it only stops afterwards).
* :func:`shrink_to_target`: the widest setting of one group, in steps of the granularity, whose
  resource meets the target. The official code tries multiples of the granularity strictly below
  the current width (every width when the granularity is 1), widest first.
* :func:`plan_iteration`: one proposal per prunable group. If no group can meet the target on
  its own, each group proposes its narrowest setting instead (``target_met`` false), so a run
  always progresses towards the smallest reachable network, whose resource the caller checked
  against the budget before starting (:func:`smallest_reachable`).
* :func:`selection_score` / :func:`select`: highest accuracy (the NetAdapt paper) or the largest
  accuracy change per resource change (MobileNetV3; the official code's ``_find_best_model``,
  including its epsilons, so a proposal that loses no accuracy still ranks by its saving).

The orchestration (fine-tuning, run directories, resume) lives in :mod:`mobilenas.netadapt.run`;
what is prunable in an Architecture and how weights are copied lives in
:mod:`mobilenas.netadapt.groups` and :mod:`mobilenas.netadapt.pruning`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

D = TypeVar("D")

SELECTION_RULES = ("accuracy-per-latency", "accuracy")
DEFAULT_SELECTION = "accuracy-per-latency"

# The official code's epsilons in (acc_0 - acc + 1e-6) / (res_0 - res + 1e-5).
_ACCURACY_EPSILON = 1e-6
_RESOURCE_EPSILON = 1e-5


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Schedule:
    """Resource reduction per iteration, as fractions of the starting resource.

    ``initial_reduction`` r and ``decay`` d: the official code's ``--init_resource_reduction_ratio``
    (0.025) and ``--resource_reduction_decay`` (0.96). ``min_reduction`` m is a floor on every
    step (MobileNetV3: at least 0.01 of the seed latency).
    """

    initial_reduction: float = 0.025
    decay: float = 0.96
    min_reduction: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_reduction) and 0.0 < self.initial_reduction < 1.0):
            raise ValueError(f"initial reduction must be a fraction in (0, 1) of the starting latency, got {self.initial_reduction}")
        if not (math.isfinite(self.decay) and 0.0 < self.decay <= 1.0):
            raise ValueError(f"reduction decay must be in (0, 1], got {self.decay}")
        if not (math.isfinite(self.min_reduction) and 0.0 <= self.min_reduction < 1.0):
            raise ValueError(f"minimum reduction must be a fraction in [0, 1) of the starting latency, got {self.min_reduction}")

    def reduction(self, iteration: int, start_resource: float) -> float:
        """How much iteration ``iteration`` (from 1) removes, in resource units."""
        if iteration < 1:
            raise ValueError(f"iterations are numbered from 1, got {iteration}")
        fraction = max(self.initial_reduction * self.decay ** (iteration - 1), self.min_reduction)
        return start_resource * fraction

    def target(self, iteration: int, current_resource: float, start_resource: float, budget: float) -> float:
        """The resource iteration ``iteration`` must reach (never below ``budget``)."""
        return max(current_resource - self.reduction(iteration, start_resource), budget)

    def iterations_to(self, start_resource: float, budget: float, limit: int = 100_000, *, current: float | None = None, done: int = 0) -> int | None:
        """How many iterations reach ``budget`` if each removes exactly its reduction.

        An upper bound on a run's iterations: a step's proposal must reach its target, so it never
        removes less (it often removes more, a whole channel group at a time). ``None`` when the
        shrinking reductions never add up to ``start_resource - budget`` (decay below 1 and no floor).
        From the middle of a run: ``done`` iterations made, now at ``current``; the count is of the
        iterations still to come.
        """
        current = start_resource if current is None else current
        iterations = 0
        while current - budget > 1e-9 * start_resource:
            iterations += 1
            if iterations > limit:
                return None
            current -= self.reduction(done + iterations, start_resource)
        return iterations

    def to_dict(self) -> dict[str, float]:
        return {"initial_reduction": self.initial_reduction, "decay": self.decay, "min_reduction": self.min_reduction}


#: Named schedules: the official NetAdapt code's defaults, and MobileNetV3's "at least 1% of the
#: seed latency per step" (constant steps, so fewer iterations).
SCHEDULES: dict[str, Schedule] = {
    "netadapt": Schedule(initial_reduction=0.025, decay=0.96, min_reduction=0.0),
    "mobilenetv3": Schedule(initial_reduction=0.01, decay=1.0, min_reduction=0.01),
}


# --------------------------------------------------------------------------- describing


@dataclass(frozen=True)
class Group:
    """A prunable group of a network: channels that are removed together.

    ``name`` is stable across iterations (``stages[2].blocks[0].expanded``, ``stem``,
    ``head.conv``); ``width`` is its current channel count; ``kind`` says what it is.
    """

    name: str
    width: int
    kind: str


class Description(Protocol[D]):
    """What the algorithm needs to know about a kind of network (the official ``network_utils``)."""

    def groups(self, definition: D) -> tuple[Group, ...]:
        """The prunable groups of ``definition``, in network order."""
        ...

    def with_width(self, definition: D, group: str, width: int) -> D:
        """A new definition with ``group`` set to ``width`` channels (everything tied follows)."""
        ...


def candidate_widths(width: int, granularity: int) -> list[int]:
    """Widths a group of ``width`` channels may shrink to, widest first.

    Multiples of ``granularity`` strictly below ``width`` (the official code's rule; with
    granularity 1, every width down to 1). Empty when the group cannot shrink.
    """
    if granularity < 1:
        raise ValueError(f"granularity must be >= 1 channel, got {granularity}")
    top = (width - 1) // granularity * granularity
    return list(range(top, 0, -granularity))


def minimum_width(width: int, granularity: int) -> int:
    """The narrowest width a group of ``width`` channels can reach."""
    widths = candidate_widths(width, granularity)
    return widths[-1] if widths else width


@dataclass(frozen=True)
class Candidate(Generic[D]):
    """One proposal of an iteration: ``group`` shrunk to ``width`` giving ``definition``."""

    group: str
    width: int
    previous_width: int
    definition: D
    resource: float
    target_met: bool


def shrink_to_target(
    definition: D,
    group: Group,
    target: float,
    granularity: int,
    description: Description[D],
    resource: Callable[[D], float],
) -> Candidate[D] | None:
    """The widest setting of ``group`` whose resource is at most ``target``.

    When even the narrowest setting misses the target, that narrowest setting is returned with
    ``target_met`` false; ``None`` when the group cannot shrink at all.
    """
    last: Candidate[D] | None = None
    for width in candidate_widths(group.width, granularity):
        shrunk = description.with_width(definition, group.name, width)
        value = resource(shrunk)
        last = Candidate(group.name, width, group.width, shrunk, value, value <= target)
        if last.target_met:
            return last
    return last


def plan_iteration(
    definition: D,
    target: float,
    current_resource: float,
    granularity: int,
    description: Description[D],
    resource: Callable[[D], float],
    on_group: Callable[[int, int], None] | None = None,
) -> list[Candidate[D]]:
    """One proposal per prunable group that meets ``target`` (see the module docstring).

    ``on_group(done, total)`` is called as each group is planned (for a progress display: the
    resource of a width never asked before may take long to compute)."""
    groups = description.groups(definition)
    shrunk = []
    for done, group in enumerate(groups, 1):
        shrunk.append(shrink_to_target(definition, group, target, granularity, description, resource))
        if on_group is not None:
            on_group(done, len(groups))
    found = [c for c in shrunk if c is not None]
    meeting = [c for c in found if c.target_met]
    if meeting:
        return meeting
    return [c for c in found if c.resource < current_resource]


def smallest_reachable(definition: D, granularity: int, description: Description[D]) -> D:
    """Every group at its narrowest width: the smallest network NetAdapt can reach."""
    for group in description.groups(definition):
        narrowest = minimum_width(group.width, granularity)
        if narrowest < group.width:
            definition = description.with_width(definition, group.name, narrowest)
    return definition


# --------------------------------------------------------------------------- choosing


def selection_score(rule: str, accuracy: float, resource: float, current_accuracy: float, current_resource: float) -> float:
    """The score a proposal is ranked by (higher is better)."""
    if rule == "accuracy":
        return accuracy
    if rule == "accuracy-per-latency":
        return (accuracy - current_accuracy - _ACCURACY_EPSILON) / (current_resource - resource + _RESOURCE_EPSILON)
    raise ValueError(f"selection rule {rule!r} is not one of {', '.join(SELECTION_RULES)}")


def dominated(accuracies: Sequence[float], resources: Sequence[float], current_resource: float) -> list[bool]:
    """Which eligible proposals another eligible one beats on both counts (as accurate or more, and
    as small or smaller, better on at least one); ineligible ones (no saving, failed) are ``False``."""
    eligible = [value < current_resource and math.isfinite(accuracy) for accuracy, value in zip(accuracies, resources, strict=True)]
    return [
        eligible[i]
        and any(
            eligible[j] and accuracies[j] >= accuracies[i] and resources[j] <= resources[i] and (accuracies[j] > accuracies[i] or resources[j] < resources[i])
            for j in range(len(accuracies))
        )
        for i in range(len(accuracies))
    ]


def ruled_out(rule: str, accuracies: Sequence[float], resources: Sequence[float], current_resource: float) -> list[bool]:
    """The proposals ``rule`` does not consider: the dominated ones under ``accuracy-per-latency``
    (see :func:`select`), none under ``accuracy``."""
    return dominated(accuracies, resources, current_resource) if rule == "accuracy-per-latency" else [False] * len(accuracies)


def select(rule: str, accuracies: Sequence[float], resources: Sequence[float], current_accuracy: float, current_resource: float) -> int:
    """Index of the winning proposal; the first one wins ties (the official code's strict ``<``).

    Only proposals that reduce the resource are eligible. Raises ``ValueError`` if none does.

    ``accuracy-per-latency`` (MobileNetV3) ranks by accuracy change per resource saved, a rule made
    for changes that are losses. When fine-tuning gains accuracy (a start that was not trained to
    convergence, such as a search's proxy-trained winner), the ratio favours the proposal that
    saves least, even over one that is both more accurate and smaller. So a proposal that another
    beats on both counts is never chosen; where every change is a loss, the ratio never prefers
    such a proposal anyway, and the rule is MobileNetV3's unchanged.
    """
    beaten = ruled_out(rule, accuracies, resources, current_resource)
    best, best_score = -1, -math.inf
    for index, (accuracy, value) in enumerate(zip(accuracies, resources, strict=True)):
        if not value < current_resource or not math.isfinite(accuracy) or beaten[index]:
            continue
        score = selection_score(rule, accuracy, value, current_accuracy, current_resource)
        if score > best_score:
            best, best_score = index, score
    if best < 0:
        raise ValueError("no proposal reduces the resource; the network cannot shrink further")
    return best


# --------------------------------------------------------------------------- iterating

S = TypeVar("S")


@dataclass(frozen=True)
class Point(Generic[D, S]):
    """Where a run stands after ``iteration`` iterations (0: the starting network).

    ``state`` is whatever carries the weights (a module, a state dict, a file path).
    """

    iteration: int
    definition: D
    state: S
    accuracy: float
    resource: float


@dataclass(frozen=True)
class Outcome(Generic[S]):
    """A proposal after shrinking and fine-tuning: its accuracy before and after fine-tuning."""

    accuracy: float
    state: S
    accuracy_before: float | None = None


@dataclass(frozen=True)
class Iteration(Generic[D, S]):
    """One finished iteration: every proposal, what it scored, and the winner as the new point."""

    iteration: int
    target: float
    candidates: tuple[Candidate[D], ...]
    outcomes: tuple[Outcome[S], ...]
    scores: tuple[float, ...]
    chosen: int
    point: Point[D, S]
    #: per proposal: beaten by another on accuracy and resource both, so not eligible (accuracy-per-latency)
    dominated: tuple[bool, ...]

    @property
    def winner(self) -> Candidate[D]:
        return self.candidates[self.chosen]


def iterate(
    point: Point[D, S],
    *,
    start_resource: float,
    budget: float,
    schedule: Schedule,
    rule: str,
    granularity: int,
    description: Description[D],
    resource: Callable[[D], float],
    evaluate: Callable[[Point[D, S], Sequence[Candidate[D]]], Sequence[Outcome[S]]],
    planned: Sequence[Candidate[D]] | None = None,
    on_group: Callable[[int, int], None] | None = None,
) -> Iteration[D, S]:
    """Run one NetAdapt iteration from ``point``.

    ``evaluate(point, candidates)`` shrinks the point's weights to each candidate, fine-tunes and
    evaluates them (in any order, in parallel if it likes) and returns one outcome per candidate;
    an outcome whose accuracy is not finite (a failed fine-tune) is never chosen. ``planned``
    replays the proposals of an interrupted iteration instead of planning again. ``on_group``: see
    :func:`plan_iteration`.
    """
    number = point.iteration + 1
    target = schedule.target(number, point.resource, start_resource, budget)
    if planned is not None:
        candidates = list(planned)
    else:
        candidates = plan_iteration(point.definition, target, point.resource, granularity, description, resource, on_group)
    if not candidates:
        raise ValueError(f"iteration {number}: no group can shrink any further (resource {point.resource:g})")
    outcomes = tuple(evaluate(point, candidates))
    if len(outcomes) != len(candidates):
        raise RuntimeError(f"evaluate returned {len(outcomes)} outcomes for {len(candidates)} proposals")
    accuracies = [o.accuracy for o in outcomes]
    resources = [c.resource for c in candidates]
    chosen = select(rule, accuracies, resources, point.accuracy, point.resource)
    scores = tuple(selection_score(rule, a, r, point.accuracy, point.resource) for a, r in zip(accuracies, resources, strict=True))
    beaten = tuple(ruled_out(rule, accuracies, resources, point.resource))
    winner = candidates[chosen]
    new_point = Point(number, winner.definition, outcomes[chosen].state, outcomes[chosen].accuracy, winner.resource)
    return Iteration(number, target, tuple(candidates), outcomes, scores, chosen, new_point, beaten)


def adapt(
    start: Point[D, S],
    *,
    budget: float,
    schedule: Schedule,
    rule: str,
    granularity: int,
    description: Description[D],
    resource: Callable[[D], float],
    evaluate: Callable[[Point[D, S], Sequence[Candidate[D]]], Sequence[Outcome[S]]],
    max_iterations: int | None = None,
    start_resource: float | None = None,
    on_iteration: Callable[[Iteration[D, S]], None] | None = None,
) -> list[Iteration[D, S]]:
    """Iterate from ``start`` until the resource is within ``budget`` (or ``max_iterations``).

    ``start_resource`` is R_0 of the schedule (defaults to ``start.resource``; give it when
    continuing a run from a later point).
    """
    origin = start.resource if start_resource is None else start_resource
    history: list[Iteration[D, S]] = []
    point = start
    while point.resource > budget and (max_iterations is None or point.iteration < max_iterations):
        step = iterate(
            point, start_resource=origin, budget=budget, schedule=schedule, rule=rule, granularity=granularity,
            description=description, resource=resource, evaluate=evaluate,
        )
        history.append(step)
        if on_iteration is not None:
            on_iteration(step)
        point = step.point
    return history
