"""REINFORCE with independent per-decision logits, as TuNAS (Bender et al. 2020, Section 3.3).

The policy is one vector of logits per decision (initialised to zero: uniform), so decisions are
sampled independently. Each told reward gives the advantage ``reward - baseline`` against an
exponential moving average of rewards, and every ``batch_size`` tells Adam takes one step on

    loss = -mean(advantage x log pi(indices)) - entropy_weight x entropy(pi)

The log-probability is that of the current policy at tell time (REINFORCE is on-policy; with
asynchronous tells the policy may have moved a little since the ask, which a small learning
rate tolerates; PPO's ratio is the principled fix, see :mod:`.ppo`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mobilenas.search.base import Observation
from mobilenas.search.strategies._common import (
    BookkeepingStrategy,
    check_fraction,
    check_positive,
    check_whole,
    clone_state,
    torch_generator,
)


@dataclass(frozen=True)
class ReinforceConfig:
    """REINFORCE's options.

    ``learning_rate``: Adam's step size on the logits; ``baseline_decay``: weight of the old
    baseline in the moving average (TuNAS: 0.95); ``batch_size``: tells per Adam step (TuNAS: 1);
    ``entropy_weight``: bonus that keeps the policy from collapsing too early (0: none). The
    learning rate is tuned on the NAS-Bench-201 benchmark (``benchmarks/strategies_nb201.md``)
    for searches of a few hundred evaluations.
    """

    learning_rate: float = 0.05
    baseline_decay: float = 0.95
    batch_size: int = 1
    entropy_weight: float = 0.0

    def __post_init__(self) -> None:
        check_positive("reinforce", "learning_rate", self.learning_rate)
        check_fraction("reinforce", "baseline_decay", self.baseline_decay, open_high=True)
        check_whole("reinforce", "batch_size", self.batch_size)
        check_positive("reinforce", "entropy_weight", self.entropy_weight, allow_zero=True)


class Reinforce(BookkeepingStrategy):
    """Independent categorical logits trained by REINFORCE with a moving-average baseline."""

    name = "reinforce"

    def __init__(self, num_options: Sequence[int], seed: int = 0, config: ReinforceConfig | None = None) -> None:
        super().__init__(num_options, seed)
        self.config = config or ReinforceConfig()
        width = max(self.num_options)
        # One row of logits per decision, padded to the widest; padding is masked to -inf.
        self._mask = torch.tensor([[j < n for j in range(width)] for n in self.num_options])
        self.logits = torch.zeros(len(self.num_options), width, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.logits], lr=self.config.learning_rate)
        self._generator = torch_generator(self.seed)
        self._baseline: float | None = None
        self._buffer: list[tuple[tuple[int, ...], float]] = []
        self._recent: deque[float] = deque(maxlen=50)
        self._updates = 0
        self._told = 0

    def _log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self.logits.masked_fill(~self._mask, float("-inf")), dim=1)

    def probabilities(self) -> list[list[float]]:
        """The current policy: one probability per option, per decision."""
        with torch.no_grad():
            probs = self._log_probs().exp()
        return [probs[d, :n].tolist() for d, n in enumerate(self.num_options)]

    def most_likely(self) -> tuple[int, ...]:
        """The policy's mode (the architecture it would pick now)."""
        with torch.no_grad():
            return tuple(int(i) for i in self._log_probs().argmax(dim=1))

    def _entropy(self, log_probs: torch.Tensor) -> torch.Tensor:
        probs = log_probs.exp()
        return -(probs * log_probs.masked_fill(~self._mask, 0.0)).sum()

    def _propose(self, number: int) -> tuple[tuple[int, ...], Any]:
        with torch.no_grad():
            probs = self._log_probs().exp()
        sample = torch.multinomial(probs, 1, generator=self._generator).squeeze(1)
        return tuple(int(i) for i in sample), None

    def _observe(self, number: int, indices: tuple[int, ...], note: Any, observation: Observation) -> None:
        reward = float(observation.reward)
        self._told += 1
        self._recent.append(reward)
        if self._baseline is None:
            self._baseline = reward
        advantage = reward - self._baseline
        self._baseline = self.config.baseline_decay * self._baseline + (1.0 - self.config.baseline_decay) * reward
        self._buffer.append((indices, advantage))
        if len(self._buffer) >= self.config.batch_size:
            self._update()

    def _update(self) -> None:
        log_probs = self._log_probs()
        rows = torch.arange(len(self.num_options))
        chosen = torch.stack([log_probs[rows, torch.tensor(ix)].sum() for ix, _ in self._buffer])
        advantages = torch.tensor([a for _, a in self._buffer])
        loss = -(advantages * chosen).mean() - self.config.entropy_weight * self._entropy(log_probs)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self._buffer = []
        self._updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._bookkeeping_state(),
            "logits": self.logits.detach().clone(),
            "optimizer": clone_state(self.optimizer.state_dict()),
            "generator": self._generator.get_state(),
            "baseline": self._baseline,
            "buffer": [[list(ix), a] for ix, a in self._buffer],
            "recent_rewards": list(self._recent),
            "updates": self._updates,
            "told": self._told,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_bookkeeping(state)
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        self.optimizer.load_state_dict(clone_state(state["optimizer"]))
        self._generator.set_state(state["generator"])
        self._baseline = None if state["baseline"] is None else float(state["baseline"])
        self._buffer = [(tuple(int(i) for i in ix), float(a)) for ix, a in state["buffer"]]
        self._recent = deque((float(r) for r in state["recent_rewards"]), maxlen=self._recent.maxlen)
        self._updates = int(state["updates"])
        self._told = int(state["told"])

    def summary(self) -> dict[str, float]:
        with torch.no_grad():
            log_probs = self._log_probs()
            entropy = float(self._entropy(log_probs)) / len(self.num_options)
        uniform = float(np.mean([np.log(n) for n in self.num_options]))
        return {
            "entropy": entropy,
            "entropy_fraction": entropy / uniform if uniform > 0 else 0.0,
            "baseline": float("nan") if self._baseline is None else self._baseline,
            "recent_mean_reward": float(np.mean(self._recent)) if self._recent else float("nan"),
            "updates": float(self._updates),
            "told": float(self._told),
        }
