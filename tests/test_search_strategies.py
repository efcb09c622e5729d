from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenas.errors import SpecError
from mobilenas.search.base import STATUS_INFEASIBLE, Observation, Strategy
from mobilenas.search.contract import (
    StrategyContract,
    drive,
    good_option,
    save_and_load,
    toy_observation,
)
from mobilenas.search.strategies import (
    NSGA2,
    STRATEGIES,
    TPE,
    EvolutionConfig,
    NSGA2Config,
    PPOConfig,
    PPOController,
    RandomConfig,
    RandomSearch,
    RegularizedEvolution,
    Reinforce,
    ReinforceConfig,
    TPEConfig,
    config_from_dict,
    config_to_dict,
    default_config,
    make_strategy,
    parse_options,
)

# --------------------------------------------------------------------------- the contract, per strategy


class TestRandomContract(StrategyContract):
    learns = False

    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        return make_strategy("random", num_options, seed)


class TestEvolutionContract(StrategyContract):
    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        return make_strategy("evolution", num_options, seed)


class TestReinforceContract(StrategyContract):
    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        return make_strategy("reinforce", num_options, seed)


class TestPPOContract(StrategyContract):
    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        return make_strategy("ppo", num_options, seed)


class TestTPEContract(StrategyContract):
    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        return make_strategy("tpe", num_options, seed)


class TestNSGA2Contract(StrategyContract):
    def make(self, num_options: Sequence[int], seed: int) -> Strategy:
        # A small population so that 150 evaluations make several generations.
        return make_strategy("nsga2", num_options, seed, NSGA2Config(population_size=10))


# --------------------------------------------------------------------------- registry and configs


def test_registry_builds_every_strategy_with_its_defaults() -> None:
    assert list(STRATEGIES) == ["ppo", "reinforce", "evolution", "random", "tpe", "nsga2"]
    for name, info in STRATEGIES.items():
        strategy = make_strategy(name, (2, 3), seed=0)
        assert isinstance(strategy, Strategy) and strategy.name == name
        assert strategy.config == info.config_cls() == default_config(name)  # type: ignore[attr-defined]


def test_registry_errors_name_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown strategy 'ppo2' \(did you mean 'ppo'\?\): choose one of ppo, reinforce, evolution, random, tpe, nsga2"):
        make_strategy("ppo2", (2,), 0)
    with pytest.raises(ValueError, match="strategy 'ppo' takes a PPOConfig, got ReinforceConfig"):
        make_strategy("ppo", (2,), 0, ReinforceConfig())
    with pytest.raises(ValueError, match="at least one option"):
        make_strategy("random", (2, 0), 0)


def test_configs_from_strings_and_back() -> None:
    config = parse_options("ppo", ["learning_rate=0.02", "batch_size=5", "normalize_advantages=false"])
    assert config == PPOConfig(learning_rate=0.02, batch_size=5, normalize_advantages=False)
    assert config_from_dict("ppo", config_to_dict(config)) == config
    assert config_from_dict("nsga2", {"mutation_prob": "none"}) == NSGA2Config(mutation_prob=None)
    assert config_from_dict("random", None) == RandomConfig()
    with pytest.raises(SpecError, match=r"ppo.lr: unknown option \(known: hidden_size, learning_rate"):
        parse_options("ppo", ["lr=0.1"])
    with pytest.raises(SpecError, match=r"ppo\.batch_size: expected a whole number, got 'ten'"):
        parse_options("ppo", ["batch_size=ten"])
    with pytest.raises(ValueError, match="not key=value"):
        parse_options("ppo", ["learning_rate"])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PPOConfig(learning_rate=0), "ppo.learning_rate: must be a number > 0, got 0"),
        (lambda: PPOConfig(clip=1.5), r"ppo.clip: must be a number in \(0, 1\), got 1.5"),
        (lambda: PPOConfig(baseline_decay=1.0), r"ppo.baseline_decay: must be a number in \[0, 1\), got 1.0"),
        (lambda: PPOConfig(epochs=0), "ppo.epochs: must be a whole number >= 1, got 0"),
        (lambda: PPOConfig(learn_from_repeats="no"), "ppo.learn_from_repeats must be true or false, got 'no'"),
        (lambda: PPOConfig(risk_seeking=0.0), r"ppo.risk_seeking: must be a number in \(0, 1\], got 0.0"),
        (lambda: PPOConfig(risk_seeking=1.5), r"ppo.risk_seeking: must be a number in \(0, 1\], got 1.5"),
        (lambda: ReinforceConfig(entropy_weight=-1), "reinforce.entropy_weight: must be a number >= 0"),
        (lambda: EvolutionConfig(population_size=5, tournament_size=6), "tournament_size .6. must be at most population_size .5."),
        (lambda: TPEConfig(n_ei_candidates=0), "tpe.n_ei_candidates: must be a whole number >= 1"),
        (lambda: NSGA2Config(population_size=1), "nsga2.population_size: must be a whole number >= 2"),
    ],
)
def test_config_values_are_checked(build, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        build()


# --------------------------------------------------------------------------- PPO controller


def test_ppo_policy_is_the_mnasnet_lstm() -> None:
    strategy = make_strategy("ppo", (4, 2, 3), seed=0)
    assert isinstance(strategy, PPOController)
    policy = strategy.policy
    assert policy.cell.hidden_size == 100 and policy.start.shape == (1, 100)
    assert [head.out_features for head in policy.heads] == [4, 2, 3]
    assert [emb.num_embeddings for emb in policy.embeddings] == [4, 2, 3]


def test_ppo_log_prob_stored_at_ask_is_the_policy_log_prob() -> None:
    strategy = make_strategy("ppo", (4, 2, 3, 5), seed=0)
    assert isinstance(strategy, PPOController)
    proposal = strategy.ask()
    stored = strategy._pending[proposal.number][1]
    with torch.no_grad():
        _, log_prob, entropy = strategy.policy(torch.tensor([proposal.indices]))
    assert stored == pytest.approx(float(log_prob[0]), abs=1e-6)
    # A fresh policy is near uniform: entropy near the sum of log(n).
    assert float(entropy[0]) == pytest.approx(sum(np.log(n) for n in (4, 2, 3, 5)), rel=0.02)


def test_ppo_trains_on_proposals_asked_under_an_older_policy() -> None:
    config = PPOConfig(batch_size=4, learning_rate=0.05)
    strategy = make_strategy("ppo", (3, 3, 3), seed=1, config=config)
    assert isinstance(strategy, PPOController)
    stale = strategy.ask()
    stale_log_prob = strategy._pending[stale.number][1]
    for _ in range(4):  # a whole batch told while ``stale`` is still in flight
        proposal = strategy.ask()
        strategy.tell(proposal.number, toy_observation(proposal.indices, strategy.num_options))
    assert strategy.summary()["updates"] == 1.0
    with torch.no_grad():
        _, now, _ = strategy.policy(torch.tensor([stale.indices]))
    assert float(now[0]) != pytest.approx(stale_log_prob, abs=1e-6)  # the policy moved
    strategy.tell(stale.number, toy_observation(stale.indices, strategy.num_options))
    assert strategy._buffer[0][1] == stale_log_prob  # PPO's ratio uses the log-prob at ask time


def test_ppo_update_uses_the_clipped_objective_and_entropy() -> None:
    config = PPOConfig(batch_size=8, epochs=10, learning_rate=0.2, clip=0.1)
    strategy = make_strategy("ppo", (4, 4, 4), seed=2, config=config)
    drive(strategy, 8, order_seed=0, max_pending=1)
    summary = strategy.summary()
    assert summary["updates"] == 1.0
    # A large step over many epochs pushes ratios out of [0.9, 1.1]: the clip is active.
    assert summary["clip_fraction"] > 0
    assert {"entropy", "entropy_fraction", "baseline", "recent_mean_reward", "loss", "approx_kl"} <= set(summary)
    assert 0.9 < summary["entropy_fraction"] <= 1.0


def test_ppo_learns_the_good_architecture_and_its_mode() -> None:
    num_options = (5, 5, 5, 5)
    strategy = make_strategy("ppo", num_options, seed=3)
    assert isinstance(strategy, PPOController)
    drive(strategy, 200, order_seed=1, max_pending=1)
    assert strategy.most_likely() == tuple(good_option(d, n) for d, n in enumerate(num_options))
    assert strategy.summary()["entropy_fraction"] < 0.5


def test_ppo_checkpoint_has_weights_optimizer_baseline_and_generator(tmp_path: Path) -> None:
    strategy = make_strategy("ppo", (3, 3), seed=0, config=PPOConfig(batch_size=3))
    drive(strategy, 7, order_seed=0, max_pending=1, finish=False)
    state = save_and_load(strategy.state_dict(), tmp_path)
    assert {"policy", "optimizer", "baseline", "generator", "pending", "buffer"} <= set(state)
    assert state["optimizer"]["state"], "Adam's moments are saved"
    assert isinstance(state["generator"], torch.Tensor)
    assert len(state["buffer"]) == 1 and isinstance(state["baseline"], float)


# --------------------------------------------------------------------------- REINFORCE


def test_reinforce_starts_uniform_and_follows_the_advantage() -> None:
    strategy = make_strategy("reinforce", (3, 2), seed=0, config=ReinforceConfig(learning_rate=0.1))
    assert isinstance(strategy, Reinforce)
    assert strategy.probabilities() == [pytest.approx([1 / 3] * 3), pytest.approx([0.5, 0.5])]
    first = strategy.ask()
    strategy.tell(first.number, Observation(0.5))  # sets the baseline
    for _ in range(10):
        proposal = strategy.ask()
        strategy.tell(proposal.number, Observation(1.0 if proposal.indices[0] == 2 else 0.0))
    assert strategy.probabilities()[0][2] > 0.5
    assert strategy.most_likely()[0] == 2


# --------------------------------------------------------------------------- evolution


def test_evolution_mutates_tournament_winners_and_ages_out_the_oldest() -> None:
    config = EvolutionConfig(population_size=6, tournament_size=3)
    strategy = make_strategy("evolution", (4, 4, 4, 4), seed=0, config=config)
    assert isinstance(strategy, RegularizedEvolution)
    for number in range(30):
        members = {tuple(ix) for _, ix, _ in strategy.population}
        proposal = strategy.ask()
        assert proposal.number == number
        if number >= 6:
            # A child differs from some current member in exactly one decision.
            assert any(sum(a != b for a, b in zip(proposal.indices, m, strict=True)) == 1 for m in members)
        strategy.tell(proposal.number, toy_observation(proposal.indices, strategy.num_options))
        assert [n for n, _, _ in strategy.population] == list(range(max(0, number - 5), number + 1))


def test_evolution_picks_the_best_of_the_tournament() -> None:
    config = EvolutionConfig(population_size=3, tournament_size=3, tournament_replacement=False)  # the tournament: the whole population
    strategy = make_strategy("evolution", (5, 5), seed=0, config=config)
    assert isinstance(strategy, RegularizedEvolution)
    rewards = {}
    for reward in (0.1, 0.9, 0.2):
        proposal = strategy.ask()
        rewards[proposal.indices] = reward
        strategy.tell(proposal.number, Observation(reward))
    best = max(rewards, key=lambda ix: rewards[ix])
    child = strategy.ask()
    assert sum(a != b for a, b in zip(child.indices, best, strict=True)) == 1


@pytest.mark.parametrize(("replacement", "share"), [(True, 1 - (2 / 3) ** 3), (False, 1.0)])
def test_evolution_draws_tournaments_with_replacement_as_the_reference_code(replacement: bool, share: float) -> None:
    # Real et al.'s code (and NAS-Bench-201's REA) draws each tournament member with
    # random.choice from the population: with S = P = 3 the best is in the tournament, and so the
    # parent, in 1 - (2/3)^3 = 70% of draws; without replacement, in all of them
    strategy = make_strategy("evolution", (3, 3, 3), seed=0, config=EvolutionConfig(population_size=3, tournament_size=3, tournament_replacement=replacement))
    assert isinstance(strategy, RegularizedEvolution)
    members = [(0, 0, 0), (1, 1, 1), (2, 2, 2)]  # a child (one decision changed) is next to one member only
    for indices, reward in zip(members, (0.9, 0.2, 0.1), strict=True):
        proposal = strategy.ask()
        strategy.tell(proposal.number, Observation(reward))
        strategy._population[-1] = (proposal.number, indices, reward)
    children = [strategy.ask().indices for _ in range(3000)]
    parents = [next(m for m in members if sum(a != b for a, b in zip(child, m, strict=True)) == 1) for child in children]
    assert abs(parents.count((0, 0, 0)) / len(parents) - share) < 0.03


# --------------------------------------------------------------------------- Optuna


def test_tpe_state_rebuilds_the_study_from_plain_trials(tmp_path: Path) -> None:
    strategy = make_strategy("tpe", (3, 4), seed=0)
    assert isinstance(strategy, TPE)
    drive(strategy, 15, order_seed=0, finish=False)
    state = save_and_load(strategy.state_dict(), tmp_path)
    restored = make_strategy("tpe", (3, 4), seed=0)
    assert isinstance(restored, TPE)
    restored.load_state_dict(state)
    original_trials = [(t.number, t.state, t.params, t.values) for t in strategy.study.trials]
    assert [(t.number, t.state, t.params, t.values) for t in restored.study.trials] == original_trials
    assert {t["state"] for t in state["trials"]} == {"COMPLETE", "RUNNING"}


def test_nsga2_ranks_penalised_trials_below_feasible_ones() -> None:
    strategy = make_strategy("nsga2", (4, 4), seed=0, config=NSGA2Config(population_size=4))
    assert isinstance(strategy, NSGA2)
    told = []
    for number in range(8):
        proposal = strategy.ask()
        if number % 2:
            strategy.tell(proposal.number, Observation(0.0, None, 9.0, STATUS_INFEASIBLE))
        else:
            accuracy = 0.5 + 0.05 * number
            strategy.tell(proposal.number, Observation(accuracy, accuracy, 10.0 - number))
            told.append(proposal.number)
    front = strategy.pareto_front()
    assert front and {number for number, *_ in front} <= set(told)
    assert [accuracy for *_, accuracy, _ in front] == [pytest.approx(0.8)]  # most accurate and fastest: dominates


def test_nsga2_needs_accuracy_and_latency() -> None:
    strategy = make_strategy("nsga2", (2, 2), seed=0)
    proposal = strategy.ask()
    with pytest.raises(ValueError, match="nsga2 needs accuracy and latency_ms"):
        strategy.tell(proposal.number, Observation(0.5))
    strategy.tell(proposal.number, Observation(0.5, 0.5, 3.0))  # the rejected tell can be corrected


def test_random_search_is_uniform() -> None:
    strategy = make_strategy("random", (4,), seed=0)
    assert isinstance(strategy, RandomSearch)
    counts = np.bincount([strategy.ask().indices[0] for _ in range(4000)], minlength=4)
    assert np.all(np.abs(counts / 4000 - 0.25) < 0.03), counts


def test_ppo_bounded_logits_cap_how_peaked_a_decision_gets() -> None:
    # Bound 1.0 on 5 options: at most 1 / (1 + 4 exp(-2)) = 64.9% on one option, however long it learns.
    config = PPOConfig(tanh_constant=1.0, learning_rate=0.05, batch_size=5)
    strategy = make_strategy("ppo", (5, 5), seed=0, config=config)
    assert isinstance(strategy, PPOController)
    drive(strategy, 150, order_seed=0, max_pending=1)
    cap = 1 / (1 + 4 * np.exp(-2.0))
    with torch.no_grad():
        state = strategy.policy.cell(strategy.policy.start, None)
        probs = torch.softmax(strategy.policy.logits(strategy.policy.heads[0], state[0]), dim=-1)
    assert float(probs.max()) <= cap + 1e-6
    assert float(probs.max()) > 0.5  # it did learn, up to the cap
    assert strategy.most_likely()[0] == good_option(0, 5)


def log_prob_of(strategy: PPOController, indices: tuple[int, ...]) -> float:
    with torch.no_grad():
        _, log_prob, _ = strategy.policy(torch.tensor([indices]))
    return float(log_prob[0])


def update_deltas(center: bool) -> tuple[float, float]:
    """Log-probability changes of two proposals after one update on advantages [0, +]."""
    config = PPOConfig(batch_size=2, epochs=1, learning_rate=0.05, center_advantages=center)
    strategy = make_strategy("ppo", (5, 5, 5), seed=0, config=config)
    assert isinstance(strategy, PPOController)
    first, second = strategy.ask(), strategy.ask()
    assert first.indices != second.indices
    before = (log_prob_of(strategy, first.indices), log_prob_of(strategy, second.indices))
    # The first tell sets the moving baseline (advantage 0); the second is above it.
    strategy.tell(first.number, Observation(0.5, 0.5, 1.0))
    strategy.tell(second.number, Observation(0.6, 0.6, 1.0))
    assert strategy.summary()["updates"] == 1.0
    return log_prob_of(strategy, first.indices) - before[0], log_prob_of(strategy, second.indices) - before[1]


def test_ppo_centred_advantages_push_the_worse_half_of_a_batch_down() -> None:
    plain_worse, plain_better = update_deltas(center=False)
    centred_worse, centred_better = update_deltas(center=True)
    assert plain_better > 0 and centred_better > 0  # the better proposal is made likelier either way
    # Uncentred, the worse one (advantage 0) only loses the mass the better one gains; centred,
    # its advantage is negative and it is pushed down several times as hard.
    assert centred_worse < 2 * plain_worse < 0


def policy_after_one_batch(rewards: Sequence[float], risk_seeking: float | None) -> tuple[list[torch.Tensor], list[tuple[int, ...]]]:
    """The policy's parameters after one PPO update on four proposals told ``rewards``."""
    config = PPOConfig(batch_size=4, epochs=2, learning_rate=0.05, risk_seeking=risk_seeking)
    strategy = make_strategy("ppo", (5, 5, 5), seed=3, config=config)
    assert isinstance(strategy, PPOController)
    proposals = [strategy.ask() for _ in rewards]
    for proposal, reward in zip(proposals, rewards, strict=True):
        strategy.tell(proposal.number, Observation(reward, reward, 1.0))
    assert strategy.summary()["updates"] == 1.0
    return [p.detach().clone() for p in strategy.policy.parameters()], [p.indices for p in proposals]


def test_ppo_risk_seeking_trains_on_the_best_share_of_a_batch_only() -> None:
    # epsilon = 0.25 of 4 proposals: the threshold is the batch's 0.75 quantile, which depends on
    # the two best rewards only, and the two worst have zero advantage.
    base, indices = policy_after_one_batch([0.10, 0.20, 0.50, 0.60], risk_seeking=0.25)
    moved, _ = policy_after_one_batch([0.05, 0.30, 0.50, 0.60], risk_seeking=0.25)
    assert all(torch.equal(a, b) for a, b in zip(base, moved, strict=True))  # the worse ones neither push nor pull
    plain, _ = policy_after_one_batch([0.10, 0.20, 0.50, 0.60], risk_seeking=None)
    plain_moved, _ = policy_after_one_batch([0.05, 0.30, 0.50, 0.60], risk_seeking=None)
    assert not all(torch.equal(a, b) for a, b in zip(plain, plain_moved, strict=True))  # they do with the moving baseline
    # The best proposal is made likelier.
    fresh = make_strategy("ppo", (5, 5, 5), seed=3, config=PPOConfig(batch_size=4, epochs=2, learning_rate=0.05, risk_seeking=0.25))
    assert isinstance(fresh, PPOController)
    before = log_prob_of(fresh, indices[3])
    with torch.no_grad():
        for parameter, trained in zip(fresh.policy.parameters(), base, strict=True):
            parameter.copy_(trained)
    assert log_prob_of(fresh, indices[3]) > before


def test_ppo_risk_seeking_ignores_a_batch_of_equal_rewards() -> None:
    before = make_strategy("ppo", (5, 5, 5), seed=3, config=PPOConfig(batch_size=4, risk_seeking=0.5))
    assert isinstance(before, PPOController)
    after, _ = policy_after_one_batch([0.4, 0.4, 0.4, 0.4], risk_seeking=0.5)
    assert all(torch.equal(a, b) for a, b in zip(before.policy.parameters(), after, strict=True))


def trained_samples(strategy: PPOController) -> int:
    return int(strategy.summary()["updates"]) * strategy.config.batch_size + len(strategy._buffer)


@pytest.mark.parametrize("learn_from_repeats", [True, False])
def test_ppo_learn_from_repeats_decides_whether_a_repeat_joins_a_batch(learn_from_repeats: bool, tmp_path: Path) -> None:
    config = PPOConfig(batch_size=3, learn_from_repeats=learn_from_repeats)
    strategy = make_strategy("ppo", (2, 2), seed=1, config=config)
    assert isinstance(strategy, PPOController)
    proposals = [strategy.ask() for _ in range(12)]  # 12 proposals of 4 architectures: repeats certain
    for proposal in proposals[:6]:
        strategy.tell(proposal.number, Observation(0.1 * sum(proposal.indices), 0.5, 1.0))
    # The state keeps what was learned from: a restored controller skips the same repeats.
    restored = make_strategy("ppo", (2, 2), seed=1, config=config)
    assert isinstance(restored, PPOController)
    restored.load_state_dict(save_and_load(strategy.state_dict(), tmp_path))
    for proposal in proposals[6:]:
        restored.tell(proposal.number, Observation(0.1 * sum(proposal.indices), 0.5, 1.0))
    assert restored.summary()["told"] == 12
    distinct = len({p.indices for p in proposals})
    assert distinct < 12
    assert trained_samples(restored) == (12 if learn_from_repeats else distinct)
