"""The MnasNet controller: an LSTM policy over the decisions, trained with PPO.

Policy (Tan et al. 2019, Section 3, following Zoph et al. 2018): a one-layer LSTM with
``hidden_size`` units (100 in MnasNet) unrolled once per decision. Its first input is a learned
start token; decision ``d`` has its own softmax head on the LSTM output, and the embedding of
the option chosen for ``d`` is the input of step ``d + 1``, so later decisions condition on
earlier ones.

Training: Proximal Policy Optimization (Schulman et al. 2017), as MnasNet. Each proposal keeps
the log-probability it had under the policy that sampled it (stored at ask time, so proposals
asked under an older policy and told late are handled by PPO's ratio). Each told reward gives
the advantage ``reward - baseline`` against an exponential moving average of rewards (decay
``baseline_decay``). Every ``batch_size`` tells the policy is updated for ``epochs`` passes over
that batch with the clipped surrogate objective::

    ratio = pi(a) / pi_old(a)
    loss  = -mean(min(ratio x A, clip(ratio, 1 - clip, 1 + clip) x A)) - entropy_weight x H

with Adam and gradient-norm clipping. The whole state (weights, optimizer, baseline, random
generator, pending proposals, unfinished batch) is in :meth:`state_dict`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mobilenas.search.base import Observation
from mobilenas.search.strategies._common import (
    BookkeepingStrategy,
    check_fraction,
    check_positive,
    check_whole,
    clone_state,
    init_uniform_,
    torch_generator,
)


@dataclass(frozen=True)
class PPOConfig:
    """The MnasNet controller's options.

    * ``hidden_size``: LSTM units (MnasNet: 100); option embeddings have the same width.
    * ``learning_rate``: Adam's step size.
    * ``batch_size``: told proposals per PPO update; ``epochs``: passes over each batch.
    * ``clip``: PPO's epsilon (ratio clipped to [1 - clip, 1 + clip]).
    * ``entropy_weight``: entropy bonus (per decision, in nats) against early collapse.
    * ``baseline_decay``: weight of the old baseline in the moving average of rewards.
    * ``normalize_advantages``: divide each batch's advantages by their standard deviation
      (rewards of nearby architectures differ by fractions of a percent; this makes the step
      size independent of the reward's scale).
    * ``center_advantages``: also subtract the batch's mean advantage (the usual PPO
      normalisation): each batch then pushes towards its better half and away from its worse
      half even when the moving-average baseline lags behind an improving policy.
    * ``risk_seeking``: None (the default), or a fraction epsilon in (0, 1]: each batch is trained
      on only its best epsilon share, against the batch's (1 - epsilon) reward quantile instead
      of the moving average (the risk-seeking policy gradient of Petersen et al. 2021, "Deep
      symbolic regression", ICLR). It optimises the best case rather than the mean reward, which
      is what a search that keeps its best architecture needs; the worse proposals of a batch
      then neither push nor pull. ``center_advantages`` does not apply then. On NAS-Bench-201's
      tuning seeds it did no better than the defaults (``benchmarks/strategies_nb201.tuning-ppo2.md``).
    * ``learn_from_repeats``: whether an architecture told again (a re-proposed one, answered from
      memory by the de-duplication wrapper) joins a batch again. True (the default) trains on every
      sample as a policy gradient does; False trains on each distinct architecture once, so batches
      hold only new information and a known mode is not reinforced over and over. On NAS-Bench-201's
      tuning seeds false did no better (``benchmarks/strategies_nb201.tuning-ppo3.md``).
    * ``max_grad_norm``: gradient-norm clipping.
    * ``init_range``: parameters start uniform in [-init_range, init_range] (a near-uniform policy).
    * ``temperature`` and ``tanh_constant``: each head's logits become
      ``tanh_constant x tanh(logits / temperature)`` (without the tanh when ``tanh_constant`` is
      None), the bounded logits of the NASNet/ENAS controllers (they used 2.5 and 5). A bound
      caps how peaked each decision can get (5 options, bound 2.0, the default: at most 93% on
      one option), so the policy keeps proposing new neighbours of its mode instead of collapsing
      onto it (on the tuning seeds, unbounded PPO stopped finding new architectures after about
      100 of 300 queries; see ``benchmarks/strategies_nb201.tuning.md``).

    Defaults are tuned on the NAS-Bench-201 benchmark (``benchmarks/strategies_nb201.md``) for
    searches of a few hundred evaluations.
    """

    hidden_size: int = 100
    learning_rate: float = 0.01
    batch_size: int = 10
    epochs: int = 4
    clip: float = 0.2
    entropy_weight: float = 0.0
    baseline_decay: float = 0.9
    normalize_advantages: bool = True
    center_advantages: bool = False
    risk_seeking: float | None = None
    learn_from_repeats: bool = True
    max_grad_norm: float = 1.0
    init_range: float = 0.1
    temperature: float = 1.0
    tanh_constant: float | None = 2.0

    def __post_init__(self) -> None:
        check_whole("ppo", "hidden_size", self.hidden_size)
        check_positive("ppo", "learning_rate", self.learning_rate)
        check_whole("ppo", "batch_size", self.batch_size)
        check_whole("ppo", "epochs", self.epochs)
        check_fraction("ppo", "clip", self.clip, open_low=True, open_high=True)
        check_positive("ppo", "entropy_weight", self.entropy_weight, allow_zero=True)
        check_fraction("ppo", "baseline_decay", self.baseline_decay, open_high=True)
        if not isinstance(self.normalize_advantages, bool):
            raise ValueError(f"ppo.normalize_advantages must be true or false, got {self.normalize_advantages!r}")
        if not isinstance(self.center_advantages, bool):
            raise ValueError(f"ppo.center_advantages must be true or false, got {self.center_advantages!r}")
        if not isinstance(self.learn_from_repeats, bool):
            raise ValueError(f"ppo.learn_from_repeats must be true or false, got {self.learn_from_repeats!r}")
        if self.risk_seeking is not None:
            check_fraction("ppo", "risk_seeking", self.risk_seeking, open_low=True)
        check_positive("ppo", "max_grad_norm", self.max_grad_norm)
        check_positive("ppo", "init_range", self.init_range)
        check_positive("ppo", "temperature", self.temperature)
        if self.tanh_constant is not None:
            check_positive("ppo", "tanh_constant", self.tanh_constant)


class LSTMPolicy(nn.Module):
    """Autoregressive policy: start token -> LSTM -> head_0 -> embed(choice_0) -> LSTM -> head_1 ..."""

    def __init__(self, num_options: Sequence[int], hidden_size: int, temperature: float = 1.0, tanh_constant: float | None = None) -> None:
        super().__init__()
        self.num_options = tuple(num_options)
        self.hidden_size = hidden_size
        self.temperature = temperature
        self.tanh_constant = tanh_constant
        self.start = nn.Parameter(torch.zeros(1, hidden_size))
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in self.num_options)
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden_size) for n in self.num_options)

    def logits(self, head: nn.Module, output: torch.Tensor) -> torch.Tensor:
        logits = head(output) / self.temperature
        return logits if self.tanh_constant is None else self.tanh_constant * torch.tanh(logits)

    def forward(self, actions: torch.Tensor | None = None, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities and entropies of ``actions`` ([batch, decisions]), or of a sample.

        Returns ``(actions, log_prob, entropy)``: the actions ([batch, decisions]), the sum of
        their log-probabilities ([batch]) and the sum of the per-step entropies ([batch]).
        With ``actions=None`` one sequence is sampled with ``generator``.
        """
        batch = 1 if actions is None else actions.shape[0]
        inputs = self.start.expand(batch, -1)
        state: tuple[torch.Tensor, torch.Tensor] | None = None
        chosen, log_prob, entropy = [], torch.zeros(batch), torch.zeros(batch)
        for d, (head, embedding) in enumerate(zip(self.heads, self.embeddings, strict=True)):
            state = self.cell(inputs, state)
            step_log_probs = torch.log_softmax(self.logits(head, state[0]), dim=-1)
            if actions is None:
                action = torch.multinomial(step_log_probs.exp(), 1, generator=generator).squeeze(1)
            else:
                action = actions[:, d]
            chosen.append(action)
            log_prob = log_prob + step_log_probs.gather(1, action.unsqueeze(1)).squeeze(1)
            entropy = entropy - (step_log_probs.exp() * step_log_probs).sum(dim=-1)
            inputs = embedding(action)
        return torch.stack(chosen, dim=1), log_prob, entropy

    def greedy(self) -> tuple[int, ...]:
        """The most likely option at every step (following the argmax path)."""
        with torch.no_grad():
            inputs, state, result = self.start, None, []
            for head, embedding in zip(self.heads, self.embeddings, strict=True):
                state = self.cell(inputs, state)
                action = self.logits(head, state[0]).argmax(dim=-1)
                result.append(int(action))
                inputs = embedding(action)
        return tuple(result)


class PPOController(BookkeepingStrategy):
    """MnasNet's RL controller: an LSTM policy trained with PPO (see the module docstring)."""

    name = "ppo"

    def __init__(self, num_options: Sequence[int], seed: int = 0, config: PPOConfig | None = None) -> None:
        super().__init__(num_options, seed)
        self.config = config or PPOConfig()
        self._generator = torch_generator(self.seed)
        self.policy = LSTMPolicy(self.num_options, self.config.hidden_size, self.config.temperature, self.config.tanh_constant)
        init_uniform_(self.policy, self.config.init_range, self._generator)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.config.learning_rate)
        self._baseline: float | None = None
        # (indices, log-prob at ask time, advantage, reward) of told proposals not yet trained on.
        self._buffer: list[tuple[tuple[int, ...], float, float, float]] = []
        self._recent: deque[float] = deque(maxlen=max(50, self.config.batch_size))
        self._recent_entropy: deque[float] = deque(maxlen=max(50, self.config.batch_size))
        self._updates = 0
        self._told = 0
        self._learned: set[tuple[int, ...]] = set()  # architectures trained on (learn_from_repeats=False)
        self._last: dict[str, float] = {}

    def _propose(self, number: int) -> tuple[tuple[int, ...], Any]:
        with torch.no_grad():
            actions, log_prob, entropy = self.policy(generator=self._generator)
        self._recent_entropy.append(float(entropy[0]) / len(self.num_options))
        return tuple(int(i) for i in actions[0]), float(log_prob[0])

    def _observe(self, number: int, indices: tuple[int, ...], note: Any, observation: Observation) -> None:
        reward = float(observation.reward)
        self._told += 1
        self._recent.append(reward)
        if not self.config.learn_from_repeats:
            if indices in self._learned:
                return
            self._learned.add(indices)
        if self._baseline is None:
            self._baseline = reward
        advantage = reward - self._baseline
        self._baseline = self.config.baseline_decay * self._baseline + (1.0 - self.config.baseline_decay) * reward
        self._buffer.append((indices, float(note), advantage, reward))
        if len(self._buffer) >= self.config.batch_size:
            self._update()

    def _update(self) -> None:
        config = self.config
        actions = torch.tensor([ix for ix, _, _, _ in self._buffer], dtype=torch.long)
        old_log_prob = torch.tensor([lp for _, lp, _, _ in self._buffer])
        advantages = torch.tensor([a for _, _, a, _ in self._buffer])
        if config.risk_seeking is not None:
            rewards = torch.tensor([r for *_, r in self._buffer], dtype=torch.float64)
            threshold = torch.quantile(rewards, 1.0 - config.risk_seeking)
            advantages = torch.where(rewards >= threshold, rewards - threshold, 0.0).to(advantages.dtype)
        elif config.center_advantages and len(self._buffer) > 1:
            advantages = advantages - advantages.mean()
        if config.normalize_advantages and len(self._buffer) > 1:
            spread = float(advantages.std())
            if spread > 1e-8:
                advantages = advantages / spread
        clipped_fraction, kl, loss_value = 0.0, 0.0, 0.0
        for _ in range(config.epochs):
            _, log_prob, entropy = self.policy(actions)
            ratio = torch.exp(log_prob - old_log_prob)
            surrogate = torch.minimum(ratio * advantages, torch.clamp(ratio, 1 - config.clip, 1 + config.clip) * advantages)
            loss = -surrogate.mean() - config.entropy_weight * entropy.mean() / len(self.num_options)
            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.policy.parameters(), config.max_grad_norm)
            self.optimizer.step()
            with torch.no_grad():
                clipped_fraction = float(((ratio - 1).abs() > config.clip).float().mean())
                kl = float((old_log_prob - log_prob).mean())
                loss_value = float(loss)
        self._last = {"loss": loss_value, "approx_kl": kl, "clip_fraction": clipped_fraction, "batch_mean_reward": float(np.mean([r for *_, r in self._buffer]))}
        self._buffer = []
        self._updates += 1

    def most_likely(self) -> tuple[int, ...]:
        """The greedy architecture of the current policy."""
        return self.policy.greedy()

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._bookkeeping_state(),
            "policy": clone_state(self.policy.state_dict()),
            "optimizer": clone_state(self.optimizer.state_dict()),
            "generator": self._generator.get_state(),
            "baseline": self._baseline,
            "buffer": [[list(ix), lp, a, r] for ix, lp, a, r in self._buffer],
            "recent_rewards": list(self._recent),
            "recent_entropy": list(self._recent_entropy),
            "updates": self._updates,
            "told": self._told,
            "learned": [list(ix) for ix in sorted(self._learned)],
            "last_update": dict(self._last),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_bookkeeping(state)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(clone_state(state["optimizer"]))
        self._generator.set_state(state["generator"])
        self._baseline = None if state["baseline"] is None else float(state["baseline"])
        self._buffer = [(tuple(int(i) for i in ix), float(lp), float(a), float(r)) for ix, lp, a, r in state["buffer"]]
        self._recent = deque((float(r) for r in state["recent_rewards"]), maxlen=self._recent.maxlen)
        self._recent_entropy = deque((float(e) for e in state["recent_entropy"]), maxlen=self._recent_entropy.maxlen)
        self._updates = int(state["updates"])
        self._told = int(state["told"])
        self._learned = {tuple(int(i) for i in ix) for ix in state.get("learned", [])}
        self._last = {str(k): float(v) for k, v in state["last_update"].items()}

    def summary(self) -> dict[str, float]:
        uniform = float(np.mean([math.log(n) for n in self.num_options]))
        entropy = float(np.mean(self._recent_entropy)) if self._recent_entropy else uniform
        return {
            "entropy": entropy,
            "entropy_fraction": entropy / uniform if uniform > 0 else 0.0,
            "baseline": float("nan") if self._baseline is None else self._baseline,
            "recent_mean_reward": float(np.mean(self._recent)) if self._recent else float("nan"),
            "updates": float(self._updates),
            "told": float(self._told),
            **self._last,
        }
