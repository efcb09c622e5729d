from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobilenas.errors import SpecError
from mobilenas.search.rewards import (
    RewardBreakdown,
    RewardSpec,
    absolute_reward,
    hard_reward,
    mnasnet_reward,
    soft_reward,
)

# --------------------------------------------------------------------------- closed-form oracles


def test_soft_reward_matches_mnasnet_equation() -> None:
    # Twice the target: 0.75 * 2**-0.07; half the target: 0.75 * 0.5**-0.07 (a bonus).
    slow = soft_reward(0.75, 20.0, 10.0)
    assert slow.reward == pytest.approx(0.75 / 2**0.07, rel=1e-12)
    assert slow.latency_ratio == 2.0 and slow.exponent == -0.07
    assert slow.factor == pytest.approx(math.exp(-0.07 * math.log(2)), rel=1e-12)
    fast = soft_reward(0.75, 5.0, 10.0)
    assert fast.reward == pytest.approx(0.75 * 2**0.07, rel=1e-12)
    # MnasNet's reading of w = -0.07: a 2x slower model needs ~5% more accuracy for the same reward.
    assert soft_reward(0.75 * 2**0.07, 20.0, 10.0).reward == pytest.approx(0.75, rel=1e-12)


def test_hard_reward_is_accuracy_within_target_and_scaled_beyond() -> None:
    assert hard_reward(0.75, 5.0, 10.0).reward == 0.75
    assert hard_reward(0.75, 10.0, 10.0).reward == 0.75  # at the target: alpha applies
    assert hard_reward(0.75, 10.0, 10.0).exponent == 0.0
    assert hard_reward(0.75, 20.0, 10.0).reward == pytest.approx(0.375, rel=1e-12)
    assert hard_reward(0.8, 12.5, 10.0).reward == pytest.approx(0.64, rel=1e-12)
    assert hard_reward(0.8, 12.5, 10.0).exponent == -1.0


def test_custom_exponent_mobilenetv3_small() -> None:
    result = mnasnet_reward(0.6, 30.0, 15.0, -0.15, -0.15)
    assert result.reward == pytest.approx(0.6 * 2**-0.15, rel=1e-12)
    asymmetric = mnasnet_reward(0.6, 7.5, 15.0, -0.05, -0.5)
    assert asymmetric.reward == pytest.approx(0.6 * 0.5**-0.05, rel=1e-12) and asymmetric.exponent == -0.05


def test_absolute_reward_matches_tunas() -> None:
    assert absolute_reward(0.75, 20.0, 10.0).reward == pytest.approx(0.65, rel=1e-12)
    assert absolute_reward(0.75, 5.0, 10.0).reward == pytest.approx(0.70, rel=1e-12)  # faster is penalised too
    assert absolute_reward(0.75, 10.0, 10.0).reward == 0.75
    assert absolute_reward(0.75, 15.0, 10.0, beta=-0.5).penalty == pytest.approx(-0.25, rel=1e-12)


def test_breakdown_fields_and_dict() -> None:
    result = hard_reward(0.5, 20.0, 10.0)
    assert isinstance(result, RewardBreakdown)
    assert result.to_dict() == {
        "kind": "hard", "reward": 0.25, "accuracy": 0.5, "latency_ms": 20.0, "target_latency_ms": 10.0,
        "latency_ratio": 2.0, "factor": 0.5, "exponent": -1.0, "penalty": None,
    }
    absolute = absolute_reward(0.5, 20.0, 10.0).to_dict()
    assert absolute["factor"] is None and absolute["exponent"] is None and absolute["penalty"] == pytest.approx(-0.1)


@pytest.mark.parametrize(
    ("accuracy", "latency_ms", "target_ms", "message"),
    [
        (75.0, 10.0, 10.0, "accuracy must be a fraction in \\[0, 1\\], got 75.0 \\(divide percentages by 100\\)"),
        (-0.1, 10.0, 10.0, "accuracy must be a fraction"),
        (float("nan"), 10.0, 10.0, "accuracy must be a fraction"),
        (0.5, 0.0, 10.0, "latency_ms must be a positive number of milliseconds, got 0.0"),
        (0.5, float("inf"), 10.0, "latency_ms must be a positive"),
        (0.5, 10.0, -1.0, "target_latency_ms must be a positive number of milliseconds, got -1.0"),
    ],
)
def test_bad_inputs_are_rejected(accuracy: float, latency_ms: float, target_ms: float, message: str) -> None:
    for function in (soft_reward, hard_reward, absolute_reward):
        with pytest.raises(ValueError, match=message):
            function(accuracy, latency_ms, target_ms)


# --------------------------------------------------------------------------- properties

fractions = st.floats(0.0, 1.0)
latencies = st.floats(0.01, 1e4)


@given(fractions, latencies, latencies, latencies)
def test_mnasnet_rewards_never_increase_with_latency(accuracy: float, a: float, b: float, target: float) -> None:
    low, high = sorted((a, b))
    for function in (soft_reward, hard_reward):
        assert function(accuracy, high, target).reward <= function(accuracy, low, target).reward + 1e-12


@given(fractions, latencies)
def test_every_reward_is_the_accuracy_at_the_target(accuracy: float, target: float) -> None:
    for spec in (RewardSpec.soft(), RewardSpec.hard(), RewardSpec.custom(-0.15), RewardSpec.absolute()):
        result = spec(accuracy, target, target)
        assert result.reward == pytest.approx(accuracy, abs=1e-12) and result.latency_ratio == 1.0


@given(fractions, latencies, latencies)
def test_spec_calls_the_named_function(accuracy: float, latency: float, target: float) -> None:
    assert RewardSpec.soft()(accuracy, latency, target) == soft_reward(accuracy, latency, target)
    assert RewardSpec.hard()(accuracy, latency, target) == hard_reward(accuracy, latency, target)
    assert RewardSpec.absolute(-0.2)(accuracy, latency, target) == absolute_reward(accuracy, latency, target, -0.2)


exponents = st.sampled_from([-0.07, -0.15, -0.5, -1.0, 0.0])
accuracies = st.one_of(st.just(0.0), st.floats(1e-6, 1.0))  # no subnormals: 5e-324 x 0.5 rounds to 0


@given(exponents, accuracies, latencies, accuracies, latencies, latencies, latencies)
def test_one_exponent_on_both_sides_ranks_alike_under_every_target(w: float, acc_a: float, lat_a: float, acc_b: float, lat_b: float, t1: float, t2: float) -> None:
    # ACC x (LAT/T)^w = T^-w x ACC x LAT^w: the target scales both rewards alike, so which one is
    # higher is the same for every target (what nas-search's note about the target says)
    spec = RewardSpec.soft() if w == -0.07 else RewardSpec.custom(w)
    assert not spec.target_changes_ranking
    gap = acc_a * lat_a**w - acc_b * lat_b**w  # the target-free ranking
    if abs(gap) > 1e-9 * max(acc_a * lat_a**w, acc_b * lat_b**w):  # not a tie to rounding
        for target in (t1, t2):
            assert (spec(acc_a, lat_a, target).reward > spec(acc_b, lat_b, target).reward) == (gap > 0)


def test_the_hard_and_absolute_rewards_rank_by_the_target() -> None:
    # a 0.75-accurate 10 ms model against a 0.7-accurate 5 ms one: the first wins at 20 ms, the second at 5 ms
    for spec in (RewardSpec.hard(), RewardSpec.absolute(), RewardSpec("custom", -0.07, -1.0)):
        assert spec.target_changes_ranking
        assert spec(0.75, 10.0, 20.0).reward > spec(0.7, 5.0, 20.0).reward
        assert spec(0.75, 10.0, 5.0).reward < spec(0.7, 5.0, 5.0).reward



@given(st.sampled_from([-10.0, -1.0, -0.07, 0.0]), fractions, st.floats(1e-3, 1e3), st.floats(1e-300, 1e300))
def test_the_steepest_reward_stays_finite_for_any_target(w: float, accuracy: float, latency: float, target: float) -> None:
    result = RewardSpec("custom", w, w)(accuracy, latency, target)
    assert math.isfinite(result.reward) and result.reward >= 0

# --------------------------------------------------------------------------- RewardSpec


def test_spec_from_options() -> None:
    assert RewardSpec.from_options("soft") == RewardSpec("soft", -0.07, -0.07)
    assert RewardSpec.from_options("hard") == RewardSpec("hard", 0.0, -1.0)
    assert RewardSpec.from_options("custom", w=-0.15) == RewardSpec("custom", -0.15, -0.15)
    assert RewardSpec.from_options("custom", alpha=0.0, beta=-0.5) == RewardSpec("custom", 0.0, -0.5)
    assert RewardSpec.from_options("absolute") == RewardSpec("absolute", None, -0.1)
    assert RewardSpec.from_options("absolute", beta=-0.3).beta == -0.3
    assert RewardSpec() == RewardSpec.soft()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "mnas"}, "--reward: 'mnas' is not one of soft, hard, custom, absolute"),
        ({"kind": "custom"}, "--w: the custom reward needs --w"),
        ({"kind": "custom", "alpha": -0.1}, "the custom reward needs --w"),
        ({"kind": "custom", "w": 0.1}, "--w: must be <= 0 .a positive exponent would reward slower models., got 0.1"),
        ({"kind": "custom", "w": -0.1, "beta": -1.0}, "give either --w or both --alpha and --beta"),
        ({"kind": "soft", "w": -0.1}, "--w: the soft reward has fixed exponents; use --reward custom"),
        ({"kind": "hard", "beta": -2.0}, "--beta: the hard reward has fixed exponents"),
        ({"kind": "absolute", "w": -0.1}, "--w: the absolute reward takes only --beta"),
        ({"kind": "absolute", "beta": 0.5}, "--beta: must be <= 0 .a positive penalty would reward missing the target., got 0.5"),
        ({"kind": "custom", "w": float("nan")}, "expected a finite number"),
        # a search with --w -1000 died mid-way on (LAT/T)^w overflowing, and again on every resume
        ({"kind": "custom", "w": -1000.0}, "--w: must be >= -10 .at -10 a 2x slower model already scores 1024x lower, and steeper ones overflow; MnasNet used -0.07"),
        ({"kind": "absolute", "beta": -11.0}, "--beta: must be >= -10 .at -10 missing the target by its own length costs ten times the whole accuracy range; TuNAS used -0.1., got -11.0"),
    ],
)
def test_spec_option_errors_say_what_to_do(options: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        RewardSpec.from_options(**options)


def test_presets_cannot_be_given_other_exponents() -> None:
    with pytest.raises(SpecError, match="the hard reward is alpha=0, beta=-1; use kind 'custom'"):
        RewardSpec("hard", -0.07, -0.07)
    with pytest.raises(SpecError, match="the absolute reward has no alpha"):
        RewardSpec("absolute", -0.1, -0.1)


@pytest.mark.parametrize("spec", [RewardSpec.soft(), RewardSpec.hard(), RewardSpec.custom(-0.15), RewardSpec("custom", 0.0, -0.3), RewardSpec.absolute(-0.25)])
def test_spec_json_round_trip(spec: RewardSpec) -> None:
    assert RewardSpec.from_json(spec.to_json()) == spec
    assert RewardSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["kind"] == spec.kind and spec.describe().startswith(spec.kind)


def test_spec_from_bad_json() -> None:
    with pytest.raises(SpecError, match=r"reward.w: unknown key"):
        RewardSpec.from_dict({"schema_version": 1, "kind": "soft", "alpha": -0.07, "beta": -0.07, "w": 1})
    with pytest.raises(SpecError, match=r"reward.beta: missing"):
        RewardSpec.from_dict({"schema_version": 1, "kind": "soft", "alpha": -0.07})
    with pytest.raises(SpecError, match=r"reward.kind: 'x' is not one of"):
        RewardSpec.from_dict({"schema_version": 1, "kind": "x", "alpha": -0.07, "beta": -0.07})
    with pytest.raises(SpecError, match="not valid JSON"):
        RewardSpec.from_json("{")


def test_describe() -> None:
    assert RewardSpec.hard().describe() == "hard: ACC x (LAT/T)^w, w = 0 if LAT <= T else -1"
    assert RewardSpec.soft().describe() == "soft: ACC x (LAT/T)^-0.07"
    assert RewardSpec.absolute().describe() == "absolute: ACC + -0.1 x |LAT/T - 1|"
