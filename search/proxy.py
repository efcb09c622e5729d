"""Proxy-training evaluation of candidate networks (MnasNet: a short training, a held-out reward set).

:func:`run_proxy_trial` is what one trial runs, in a Ray worker or in this process: build the
architecture for the data set, train it with :func:`mobilenas.train.train_proxy`, save its
weights atomically when asked, and return plain metrics. It never raises for the candidate's
sake: a diverged training comes back with ``status="failed"`` and its error.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilenas.runs import atomic_write_bytes
from mobilenas.search.base import STATUS_FAILED, EvalResult
from mobilenas.search.orchestrator import SearchRun, Submission
from mobilenas.space.arch import Architecture
from mobilenas.train.data import DataSplits
from mobilenas.train.proxy import ProxyConfig, train_proxy

WEIGHTS_DIR = "weights"


@dataclass(frozen=True)
class ProxySettings:
    """How every trial of a search trains: the proxy config, and whether to keep weights."""

    config: ProxyConfig
    run_root: str
    keep_weights: bool = True
    early_stopping: bool = False
    train_images: int = 0

    @property
    def total_steps(self) -> int:
        return self.config.total_steps(self.train_images or (self.config.train_subset or 1))

    def trial_config(self, submission: Submission, search: SearchRun) -> dict[str, Any]:
        weights = f"{WEIGHTS_DIR}/trial-{submission.number:05d}.pt" if self.keep_weights else None
        return {
            "number": submission.number,
            "architecture": submission.candidate.to_dict(),
            "seed": search.seed * 100_003 + submission.number,
            "weights": weights,
        }


def run_proxy_trial(config: dict[str, Any], data: DataSplits, settings: ProxySettings, on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train one candidate; returns plain metrics (``status``, ``accuracy``, ``weights``, ...)."""
    start = time.perf_counter()
    try:
        arch = Architecture.from_dict(config["architecture"])
        proxy_config = dataclasses.replace(settings.config, seed=int(config["seed"]))
        result = train_proxy(arch, data, proxy_config, keep_weights=bool(config.get("weights")), on_step=on_step)
    except Exception as error:  # a bug or an impossible network: report it with the trial
        return {"status": STATUS_FAILED, "accuracy": 0.0, "error": f"{type(error).__name__}: {error}", "wall_time_s": time.perf_counter() - start}
    outcome: dict[str, Any] = {
        "status": result.status,
        "accuracy": result.accuracy if result.ok else 0.0,
        "loss": result.loss if math.isfinite(result.loss) else None,
        "train_loss": result.train_loss if math.isfinite(result.train_loss) else None,
        "wall_time_s": result.wall_time_s,
        "images_per_s": result.images_per_s,
        "steps": result.steps,
        "params": result.params,
        "adaptation": ", ".join(result.adaptation),  # a string: Tune's loggers take scalars only
        "seed": result.seed,
        "error": result.error or "",
        "weights": "",
    }
    # A run folder deleted while this training went on (a search killed, its folder removed, its
    # Ray worker not yet stopped) is not made again just to hold these weights.
    if result.ok and config.get("weights") and result.state_dict is not None and Path(settings.run_root).is_dir():
        import torch

        buffer = io.BytesIO()
        torch.save(result.state_dict, buffer)
        atomic_write_bytes(Path(settings.run_root) / config["weights"], buffer.getvalue())
        outcome["weights"] = config["weights"]
    return outcome


def evaluate_inline(submission: Submission, search: SearchRun, data: DataSplits, settings: ProxySettings) -> tuple[EvalResult, str | None]:
    """The in-process path (``--workers 1 --executor inline``): one proxy training here."""
    outcome = run_proxy_trial(settings.trial_config(submission, search), data, settings)
    result = EvalResult(
        accuracy=float(outcome["accuracy"]),
        wall_time_s=float(outcome["wall_time_s"]),
        status=str(outcome["status"]),
        error=outcome.get("error") or None,
        info={k: outcome[k] for k in ("loss", "train_loss", "images_per_s", "steps", "params", "adaptation", "seed") if k in outcome},
    )
    return result, outcome.get("weights") or None
