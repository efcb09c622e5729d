"""Latency-aware rewards: pure functions of (accuracy, latency_ms, target_latency_ms).

MnasNet (Tan et al. 2019, Eq. 2)::

    reward = ACC x (LAT / T) ** w,   w = alpha if LAT <= T else beta

* ``soft``: alpha = beta = -0.07 (MnasNet's choice: a 2x slower model must be ~5% more accurate);
* ``hard``: alpha = 0, beta = -1 (no bonus for being faster than the target, a sharp penalty
  beyond it: the natural reward for a constrained search);
* ``custom``: any exponent ``w`` for both sides (MobileNetV3-Small used w = -0.15), or an explicit
  ``alpha``/``beta`` pair.

TuNAS (Bender et al. 2020, Eq. 1), the *absolute* reward::

    reward = ACC + beta x |LAT / T - 1|,   beta = -0.1 by default

Accuracy is a fraction in [0, 1]; latencies are in milliseconds and must be positive. Every
function returns a :class:`RewardBreakdown`, which the orchestrator stores with each trial.
:class:`RewardSpec` is the serialisable choice of reward made on the command line.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass
from typing import Any

from mobilenas.errors import SpecError

SOFT_EXPONENT = -0.07
HARD_ALPHA = 0.0
HARD_BETA = -1.0
ABSOLUTE_BETA = -0.1
STEEPEST = -10.0  # the lowest exponent (and absolute beta) accepted: beyond it rewards are meaningless, then overflow
REWARD_KINDS = ("soft", "hard", "custom", "absolute")
REWARD_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RewardBreakdown:
    """One reward and how it was made.

    ``factor`` is MnasNet's multiplicative term ``(LAT/T)**w`` (``None`` for the absolute reward);
    ``penalty`` is TuNAS's additive term ``beta x |LAT/T - 1|`` (``None`` for MnasNet rewards);
    ``exponent`` is the ``w`` that applied (``None`` for the absolute reward).
    """

    kind: str
    reward: float
    accuracy: float
    latency_ms: float
    target_latency_ms: float
    latency_ratio: float
    factor: float | None = None
    exponent: float | None = None
    penalty: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_inputs(accuracy: float, latency_ms: float, target_latency_ms: float) -> None:
    if isinstance(accuracy, bool) or not math.isfinite(accuracy) or not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy!r} (divide percentages by 100)")
    if isinstance(latency_ms, bool) or not math.isfinite(latency_ms) or latency_ms <= 0:
        raise ValueError(f"latency_ms must be a positive number of milliseconds, got {latency_ms!r}")
    if isinstance(target_latency_ms, bool) or not math.isfinite(target_latency_ms) or target_latency_ms <= 0:
        raise ValueError(f"target_latency_ms must be a positive number of milliseconds, got {target_latency_ms!r}")


def mnasnet_reward(accuracy: float, latency_ms: float, target_latency_ms: float, alpha: float, beta: float, kind: str = "custom") -> RewardBreakdown:
    """``ACC x (LAT/T)**w`` with ``w = alpha`` when ``LAT <= T``, else ``beta``."""
    _check_inputs(accuracy, latency_ms, target_latency_ms)
    ratio = latency_ms / target_latency_ms
    exponent = alpha if latency_ms <= target_latency_ms else beta
    try:
        factor = ratio**exponent
    except OverflowError:  # a target absurdly far from the latency (1e30 ms): the largest float, not a crash mid-search
        factor = sys.float_info.max
    return RewardBreakdown(kind, accuracy * factor, accuracy, latency_ms, target_latency_ms, ratio, factor=factor, exponent=exponent)


def soft_reward(accuracy: float, latency_ms: float, target_latency_ms: float) -> RewardBreakdown:
    """MnasNet's soft constraint: alpha = beta = -0.07."""
    return mnasnet_reward(accuracy, latency_ms, target_latency_ms, SOFT_EXPONENT, SOFT_EXPONENT, kind="soft")


def hard_reward(accuracy: float, latency_ms: float, target_latency_ms: float) -> RewardBreakdown:
    """MnasNet's hard constraint: alpha = 0, beta = -1."""
    return mnasnet_reward(accuracy, latency_ms, target_latency_ms, HARD_ALPHA, HARD_BETA, kind="hard")


def absolute_reward(accuracy: float, latency_ms: float, target_latency_ms: float, beta: float = ABSOLUTE_BETA) -> RewardBreakdown:
    """TuNAS's absolute reward ``ACC + beta x |LAT/T - 1|``."""
    _check_inputs(accuracy, latency_ms, target_latency_ms)
    ratio = latency_ms / target_latency_ms
    penalty = beta * abs(ratio - 1.0)
    return RewardBreakdown("absolute", accuracy + penalty, accuracy, latency_ms, target_latency_ms, ratio, penalty=penalty)


def _check_exponent(name: str, value: float, *, penalty: bool = False) -> float:
    """An exponent of the MnasNet reward, or (``penalty``) the absolute reward's beta: both <= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(name, f"expected a finite number, got {value!r}")
    if value > 0:
        why = "a positive penalty would reward missing the target" if penalty else "a positive exponent would reward slower models"
        raise SpecError(name, f"must be <= 0 ({why}), got {value!r}")
    if value < STEEPEST:
        why = ("at -10 missing the target by its own length costs ten times the whole accuracy range; TuNAS used -0.1" if penalty else
               "at -10 a 2x slower model already scores 1024x lower, and steeper ones overflow; MnasNet used -0.07, MobileNetV3-Small -0.15, the hard reward -1")
        raise SpecError(name, f"must be >= {STEEPEST:g} ({why}), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RewardSpec:
    """The reward chosen for a run: a kind and its parameters.

    ``alpha``/``beta`` are MnasNet's exponents for ``soft``, ``hard`` and ``custom``; for
    ``absolute`` only ``beta`` (the weight of ``|LAT/T - 1|``) is used and ``alpha`` is ``None``.
    Build it from command-line options with :meth:`from_options`; it is callable as
    ``spec(accuracy, latency_ms, target_latency_ms) -> RewardBreakdown``.
    """

    kind: str = "soft"
    alpha: float | None = SOFT_EXPONENT
    beta: float = SOFT_EXPONENT

    def __post_init__(self) -> None:
        if self.kind not in REWARD_KINDS:
            raise SpecError("kind", f"{self.kind!r} is not one of {', '.join(REWARD_KINDS)}")
        object.__setattr__(self, "beta", _check_exponent("beta", self.beta, penalty=self.kind == "absolute"))
        if self.kind == "absolute":
            if self.alpha is not None:
                raise SpecError("alpha", "the absolute reward has no alpha (only beta)")
            return
        if self.alpha is None:
            raise SpecError("alpha", f"the {self.kind} reward needs alpha")
        object.__setattr__(self, "alpha", _check_exponent("alpha", self.alpha))
        presets = {"soft": (SOFT_EXPONENT, SOFT_EXPONENT), "hard": (HARD_ALPHA, HARD_BETA)}
        if self.kind in presets and (self.alpha, self.beta) != presets[self.kind]:
            raise SpecError("kind", f"the {self.kind} reward is alpha={presets[self.kind][0]:g}, beta={presets[self.kind][1]:g}; use kind 'custom' for other exponents")

    @classmethod
    def from_options(cls, kind: str, w: float | None = None, alpha: float | None = None, beta: float | None = None) -> RewardSpec:
        """From ``--reward KIND`` plus ``--w``, or ``--alpha``/``--beta``.

        * ``soft``, ``hard``: no parameters;
        * ``custom``: ``w`` (used on both sides of the target), or both ``alpha`` and ``beta``;
        * ``absolute``: optional ``beta`` (default -0.1).
        """
        if kind not in REWARD_KINDS:
            raise SpecError("--reward", f"{kind!r} is not one of {', '.join(REWARD_KINDS)}")
        given = [name for name, value in (("--w", w), ("--alpha", alpha), ("--beta", beta)) if value is not None]
        if kind in ("custom", "absolute"):
            # Checked here too so that the message names the option the user typed.
            for name, value in (("--w", w), ("--alpha", alpha), ("--beta", beta)):
                if value is not None:
                    _check_exponent(name, value, penalty=kind == "absolute")
        if kind in ("soft", "hard"):
            if given:
                raise SpecError(given[0], f"the {kind} reward has fixed exponents; use --reward custom to choose them")
            return cls.soft() if kind == "soft" else cls.hard()
        if kind == "absolute":
            if w is not None or alpha is not None:
                raise SpecError("--w" if w is not None else "--alpha", "the absolute reward takes only --beta")
            return cls.absolute(ABSOLUTE_BETA if beta is None else beta)
        if w is not None:
            if alpha is not None or beta is not None:
                raise SpecError("--w", "give either --w or both --alpha and --beta, not both")
            return cls.custom(w)
        if alpha is None or beta is None:
            raise SpecError("--w", "the custom reward needs --w (e.g. --w -0.15), or both --alpha and --beta")
        return cls("custom", alpha, beta)

    @classmethod
    def soft(cls) -> RewardSpec:
        return cls("soft", SOFT_EXPONENT, SOFT_EXPONENT)

    @classmethod
    def hard(cls) -> RewardSpec:
        return cls("hard", HARD_ALPHA, HARD_BETA)

    @classmethod
    def custom(cls, w: float) -> RewardSpec:
        return cls("custom", w, w)

    @classmethod
    def absolute(cls, beta: float = ABSOLUTE_BETA) -> RewardSpec:
        return cls("absolute", None, beta)

    def __call__(self, accuracy: float, latency_ms: float, target_latency_ms: float) -> RewardBreakdown:
        if self.kind == "absolute":
            return absolute_reward(accuracy, latency_ms, target_latency_ms, self.beta)
        assert self.alpha is not None
        return mnasnet_reward(accuracy, latency_ms, target_latency_ms, self.alpha, self.beta, kind=self.kind)

    @property
    def target_changes_ranking(self) -> bool:
        """Whether the target can change which of two architectures scores higher.

        It cannot for MnasNet's reward with one exponent on both sides (``soft``, ``custom --w``):
        ``ACC x (LAT/T)**w = T**-w x ACC x LAT**w``, so T scales every reward by the same factor and
        the ranking is that of ``ACC x LAT**w`` whatever the target. The exponent sets the
        trade-off (soft's -0.07: each 2x in latency costs 4.7% relative accuracy); the target is
        then no limit, only where ``LAT/T = 1`` in the reports. ``hard`` (alpha != beta) and
        ``absolute`` depend on T.
        """
        return self.kind == "absolute" or self.alpha != self.beta

    def describe(self) -> str:
        """One line for logs and reports."""
        if self.kind == "absolute":
            return f"absolute: ACC + {self.beta:g} x |LAT/T - 1|"
        if self.alpha == self.beta:
            return f"{self.kind}: ACC x (LAT/T)^{self.beta:g}"
        return f"{self.kind}: ACC x (LAT/T)^w, w = {self.alpha:g} if LAT <= T else {self.beta:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": REWARD_SCHEMA_VERSION, "kind": self.kind, "alpha": self.alpha, "beta": self.beta}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> RewardSpec:
        if not isinstance(data, dict):
            raise SpecError("reward", f"expected a mapping, got {type(data).__name__}")
        known = ("schema_version", "kind", "alpha", "beta")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SpecError(f"reward.{unknown[0]}", f"unknown key (known: {', '.join(known)})")
        missing = [k for k in known if k not in data]
        if missing:
            raise SpecError(f"reward.{missing[0]}", "missing")
        if data["schema_version"] != REWARD_SCHEMA_VERSION:
            raise SpecError("reward.schema_version", f"this mobilenas reads version {REWARD_SCHEMA_VERSION}, got {data['schema_version']!r}")
        try:
            return cls(data["kind"], data["alpha"], data["beta"])
        except SpecError as error:
            raise error.under("reward") from None

    @classmethod
    def from_json(cls, text: str) -> RewardSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError("reward", f"not valid JSON ({error.msg})") from None
        return cls.from_dict(data)


@dataclass(frozen=True)
class ZeroAccuracyPenalty:
    """What a failed or rejected architecture is told: the reward of accuracy 0 at its latency.

    It is below the reward of every trained architecture of that latency, whatever the reward:
    0 for MnasNet's (accuracy times a positive factor), ``beta x |LAT/T - 1|`` for TuNAS's
    absolute reward, which is negative away from the target (a constant 0 there would rate a
    crash above a slow architecture that trained). Where the latency is unknown: 0.
    """

    reward: RewardSpec
    target_latency_ms: float

    def __call__(self, latency_ms: float | None) -> float:
        if latency_ms is None or not math.isfinite(latency_ms) or latency_ms <= 0:
            return 0.0
        return self.reward(0.0, latency_ms, self.target_latency_ms).reward
