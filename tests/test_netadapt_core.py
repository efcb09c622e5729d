"""The NetAdapt core: the official code's "hello world" trajectory, the schedule, the choice."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import nn

from mobilenas.netadapt.core import (
    SCHEDULES,
    Candidate,
    Group,
    Outcome,
    Point,
    Schedule,
    adapt,
    candidate_widths,
    minimum_width,
    plan_iteration,
    select,
    selection_score,
    shrink_to_target,
    smallest_reachable,
)
from mobilenas.netadapt.pruning import filter_norms, keep_indices

# --------------------------------------------------------------------------- hello world
# The official NetAdapt repository's unit test (unittest/unittest_master_helloworld.py,
# test_master_weights) runs nets/helloworld.py: four 3x3 convolutions 3->16->32->64->10 without
# bias on a 32x32 input, all weights zero; the resource is the number of convolution weights
# (in * out * 3 * 3); the three inner layers are prunable one channel at a time; the short-term
# fine-tune adds the layer index to every weight of each layer once per fine-tune iteration (5);
# the "accuracy" is a fixed function of which layers were pruned. With an initial reduction of
# 0.025, decay 1.0, budget 0.8 and 3 iterations it goes 29232 -> 28476 -> 27531 -> 26181 weights
# with channels [16,32,64,10] -> [16,32,62,10] -> [13,32,62,10] -> [13,30,62,10] and accuracies
# 95, 80, 85, 90, choosing by accuracy change per resource change.

HelloDef = tuple[int, int, int, int]
FINE_TUNE_ITERATIONS = 5


class HelloWorld(nn.Module):
    def __init__(self, channels: HelloDef) -> None:
        super().__init__()
        widths = (3, *channels)
        self.features = nn.Sequential(*[nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, bias=False) for i in range(4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean((2, 3))


class HelloDescription:
    def groups(self, definition: HelloDef) -> tuple[Group, ...]:
        return tuple(Group(f"conv{i + 1}", definition[i], "layer") for i in range(3))  # conv4's outputs are the classes

    def with_width(self, definition: HelloDef, group: str, width: int) -> HelloDef:
        channels = list(definition)
        channels[int(group.removeprefix("conv")) - 1] = width
        return (channels[0], channels[1], channels[2], channels[3])


def hello_weights(definition: HelloDef) -> float:
    widths = (3, *definition)
    return float(sum(widths[i] * widths[i + 1] * 3 * 3 for i in range(4)))


def hello_accuracy(definition: HelloDef) -> float:
    """The official mock accuracy (network_utils_helloworld.evaluate), clause for clause."""
    a, b, c = definition[0] != 16, definition[1] != 32, definition[2] != 64
    if a and not b and not c:
        return 1
    if not a and b and not c:
        return 5
    if not a and not b and c:
        return 80
    if a and not b and c:
        return 85
    if not a and b and c:
        return 10
    if a and b and c:
        return 90
    return 95


def hello_shrink(model: HelloWorld, definition: HelloDef) -> HelloWorld:
    """Keep the largest-L2 filters of each layer and the matching inputs of the next one."""
    small = HelloWorld(definition)
    kept_inputs = torch.arange(3)
    for i in range(4):
        weight = model.features[i].weight.detach()
        outputs = keep_indices(filter_norms([weight]), definition[i]) if i < 3 else torch.arange(weight.shape[0])
        small.features[i].weight.data.copy_(weight[outputs][:, kept_inputs])
        kept_inputs = outputs
    return small


def hello_fine_tune(model: HelloWorld) -> HelloWorld:
    tuned = copy.deepcopy(model)
    for _ in range(FINE_TUNE_ITERATIONS):
        for index, layer in enumerate(tuned.features):
            layer.weight.data += index
    return tuned


def hello_evaluate(point: Point[HelloDef, HelloWorld], candidates: Sequence[Candidate[HelloDef]]) -> list[Outcome[HelloWorld]]:
    outcomes = []
    for candidate in candidates:
        model = hello_fine_tune(hello_shrink(point.state, candidate.definition))
        outcomes.append(Outcome(hello_accuracy(candidate.definition), model))
    return outcomes


def run_hello_world(rule: str) -> list:
    start_def: HelloDef = (16, 32, 64, 10)
    model = HelloWorld(start_def)
    for layer in model.features:
        nn.init.zeros_(layer.weight)
    start = Point(0, start_def, model, hello_accuracy(start_def), hello_weights(start_def))
    return adapt(
        start, budget=0.8 * start.resource, schedule=Schedule(initial_reduction=0.025, decay=1.0), rule=rule, granularity=1,
        description=HelloDescription(), resource=hello_weights, evaluate=hello_evaluate, max_iterations=3,
    )


@pytest.mark.parametrize("rule", ["accuracy-per-latency", "accuracy"])
def test_official_hello_world_trajectory(rule: str) -> None:
    history = run_hello_world(rule)
    assert hello_weights((16, 32, 64, 10)) == 29232
    assert [step.point.resource for step in history] == [28476, 27531, 26181]
    assert [step.point.definition for step in history] == [(16, 32, 62, 10), (13, 32, 62, 10), (13, 30, 62, 10)]
    assert [step.point.accuracy for step in history] == [80, 85, 90]
    assert [step.winner.group for step in history] == ["conv3", "conv1", "conv2"]
    # Every proposal is the widest width meeting the target: 29232 - 730.8 = 28501.2 first.
    assert history[0].target == pytest.approx(29232 * 0.975)
    assert [(c.group, c.width, c.resource) for c in history[0].candidates] == [("conv1", 13, 28287), ("conv2", 30, 27792), ("conv3", 62, 28476)]
    # The weights went through one shrink and fine-tune per iteration (layer index added 5x each).
    final = history[-1].point.state
    for index, layer in enumerate(final.features):
        assert torch.equal(layer.weight, torch.full_like(layer.weight, index * FINE_TUNE_ITERATIONS * 3))


def test_hello_world_ratio_rule_scores() -> None:
    history = run_hello_world("accuracy-per-latency")
    # Iteration 1 from accuracy 95 at 29232: (acc - 95 - 1e-6) / (29232 - res + 1e-5).
    expected = [(1 - 95 - 1e-6) / (945 + 1e-5), (5 - 95 - 1e-6) / (1440 + 1e-5), (80 - 95 - 1e-6) / (756 + 1e-5)]
    assert history[0].scores == pytest.approx(expected)
    assert history[0].chosen == 2


# --------------------------------------------------------------------------- schedule


def test_schedule_arithmetic() -> None:
    schedule = Schedule(initial_reduction=0.025, decay=0.96)
    assert schedule.reduction(1, 100.0) == pytest.approx(2.5)
    assert schedule.reduction(3, 100.0) == pytest.approx(2.5 * 0.96**2)
    assert schedule.target(3, 90.0, 100.0, 10.0) == pytest.approx(90.0 - 2.5 * 0.9216)
    # never below the budget
    assert schedule.target(1, 50.0, 100.0, 49.0) == 49.0
    # MobileNetV3: at least 1% of the seed latency per step
    floor = Schedule(initial_reduction=0.02, decay=0.5, min_reduction=0.01)
    assert [floor.reduction(i, 200.0) for i in (1, 2, 3)] == pytest.approx([4.0, 2.0, 2.0])
    assert SCHEDULES["netadapt"] == Schedule(0.025, 0.96, 0.0)
    assert SCHEDULES["mobilenetv3"].reduction(50, 10.0) == pytest.approx(0.1)


def test_schedule_iteration_bound() -> None:
    # constant steps of 6% from 100 to 60: 7 steps (6 reach 64)
    assert Schedule(0.06, 1.0).iterations_to(100.0, 60.0) == 7
    assert Schedule(0.05, 1.0).iterations_to(100.0, 75.0) == 5  # exactly on the budget, despite rounding
    assert Schedule(0.1, 1.0).iterations_to(100.0, 100.0) == 0
    # the official schedule: 2.5% decaying by 0.96 sums to 62.5% at most
    netadapt = SCHEDULES["netadapt"]
    assert netadapt.iterations_to(4.87, 0.75 * 4.87) == 13  # 1 - 0.96**13 >= 0.4 > 1 - 0.96**12
    assert netadapt.iterations_to(10.0, 3.0) is None
    assert Schedule(0.025, 0.96, 0.01).iterations_to(10.0, 3.0) is not None  # a floor always gets there
    # from the middle of a run: the steps still to come are the later, smaller ones
    assert Schedule(0.06, 1.0).iterations_to(100.0, 60.0, current=82.0, done=3) == 4  # 76, 70, 64, 58
    assert Schedule(0.1, 0.5).iterations_to(100.0, 84.0, current=90.0, done=1) == 2  # 5 then 2.5: 85, 82.5
    assert Schedule(0.1, 0.5).iterations_to(100.0, 84.0, current=90.0) == 1  # as if from the start: 10


def test_schedule_rejects_nonsense() -> None:
    for bad in ({"initial_reduction": 0.0}, {"initial_reduction": 1.5}, {"decay": 0.0}, {"decay": 1.2}, {"min_reduction": -0.1}):
        with pytest.raises(ValueError, match=r"reduction|decay"):
            Schedule(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="numbered from 1"):
        Schedule().reduction(0, 1.0)


def test_candidate_widths_follow_the_granularity() -> None:
    assert candidate_widths(32, 8) == [24, 16, 8]
    assert candidate_widths(30, 8) == [24, 16, 8]
    assert candidate_widths(8, 8) == []
    assert candidate_widths(5, 1) == [4, 3, 2, 1]
    assert minimum_width(30, 8) == 8
    assert minimum_width(6, 8) == 6
    with pytest.raises(ValueError, match="granularity"):
        candidate_widths(8, 0)


def test_shrink_to_target_and_fallback() -> None:
    description = HelloDescription()
    start: HelloDef = (16, 32, 64, 10)
    group = description.groups(start)[2]
    found = shrink_to_target(start, group, 28501.2, 1, description, hello_weights)
    assert found is not None and found.width == 62 and found.target_met
    # Unreachable by one group: its narrowest setting, flagged.
    missed = shrink_to_target(start, group, 1000.0, 8, description, hello_weights)
    assert missed is not None and missed.width == 8 and not missed.target_met
    # The iteration then proposes every group's narrowest setting.
    plan = plan_iteration(start, 1000.0, 29232.0, 8, description, hello_weights)
    assert [(c.group, c.width, c.target_met) for c in plan] == [("conv1", 8, False), ("conv2", 8, False), ("conv3", 8, False)]
    assert smallest_reachable(start, 8, description) == (8, 8, 8, 10)


def test_select_rules() -> None:
    # accuracy-per-latency prefers the cheaper loss per saved unit; accuracy the higher accuracy
    accuracies, resources = [0.70, 0.60], [9.0, 5.0]
    assert select("accuracy", accuracies, resources, 0.8, 10.0) == 0
    assert select("accuracy-per-latency", accuracies, resources, 0.8, 10.0) == 1
    assert selection_score("accuracy-per-latency", 0.6, 5.0, 0.8, 10.0) == pytest.approx((0.6 - 0.8 - 1e-6) / (5 + 1e-5))
    # ties go to the first; proposals that save nothing are not eligible
    assert select("accuracy", [0.5, 0.5], [9.0, 8.0], 0.8, 10.0) == 0
    assert select("accuracy", [0.9, 0.5], [10.0, 8.0], 0.8, 10.0) == 1
    with pytest.raises(ValueError, match="cannot shrink"):
        select("accuracy", [0.9], [10.0], 0.8, 10.0)
    with pytest.raises(ValueError, match="selection rule"):
        selection_score("best", 0.1, 1.0, 0.1, 2.0)


def test_accuracy_per_latency_never_picks_a_proposal_beaten_on_both_counts() -> None:
    from mobilenas.netadapt import dominated

    # Seen on the quickstart's proxy-trained winner: every fine-tune gained accuracy (0.28 -> 0.7x),
    # and the ratio then favoured the proposal that saved least. The stem proposal here is more
    # accurate and smaller than the others, yet scores lowest: (0.81-0.28)/0.43 < (0.76-0.28)/0.20.
    accuracies, resources, current = [0.809, 0.761, 0.744], [7.379, 7.614, 7.505], 7.81
    scores = [selection_score("accuracy-per-latency", a, r, 0.284, current) for a, r in zip(accuracies, resources, strict=True)]
    assert max(scores) == scores[1] and min(scores) == scores[0]
    assert dominated(accuracies, resources, current) == [False, True, True]
    assert select("accuracy-per-latency", accuracies, resources, 0.284, current) == 0
    # Where accuracy is lost, the rule is MobileNetV3's: dominated proposals never scored best anyway.
    rng = np.random.default_rng(0)
    for _ in range(500):
        accuracies = list(rng.uniform(0.5, 0.8, 6))
        resources = list(rng.uniform(5.0, 9.9, 6))
        ratio = max(range(6), key=lambda i: (selection_score("accuracy-per-latency", accuracies[i], resources[i], 0.8, 10.0), -i))
        assert select("accuracy-per-latency", accuracies, resources, 0.8, 10.0) == ratio
    # ineligible proposals (no saving, failed) are neither dominated nor dominating
    assert dominated([0.9, 0.5, float("nan")], [10.0, 9.0, 8.0], 10.0) == [False, False, False]
    # the accuracy rule keeps the official tie-break (the first), dominated or not
    assert select("accuracy", [0.5, 0.5], [9.0, 8.0], 0.8, 10.0) == 0


def test_keep_indices_by_l2_norm() -> None:
    weight = torch.zeros(4, 2, 1, 1)
    weight[:, 0, 0, 0] = torch.tensor([1.0, -3.0, 2.0, 0.5])
    assert keep_indices(filter_norms([weight]), 2).tolist() == [1, 2]
    # jointly over tied producers: channel 0 is large in the second tensor
    other = torch.zeros(4, 3)
    other[0, 0] = 10.0
    assert keep_indices(filter_norms([weight, other]), 2).tolist() == [0, 1]
    assert keep_indices(torch.zeros(5), 3).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="cannot keep"):
        keep_indices(torch.zeros(2), 3)
