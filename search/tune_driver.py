"""Run a search's proxy trainings on Ray Tune.

Our strategy is plugged into Tune as a ``Searcher`` (:class:`_Bridge`): Tune asks it for a
configuration whenever one of the ``workers`` slots is free (so the controller keeps proposing
while earlier trials train: MnasNet's asynchronous workers), and tells it when a trial ends.
Tune restarts a crashed or killed trial up to ``retries`` times (``FailureConfig``), after which
the trial is recorded as failed with its error and the search goes on. With ``early_stopping``
an ASHA scheduler stops trainings whose running loss is hopeless compared with their peers.

Tune's own experiment state lives in a scratch folder inside the run directory (``.tune``) and
is thrown away: the run directory's journal is authoritative, and resuming starts a fresh Tuner
from it. Inside the run, what a killed run leaves there is removed when it resumes (a folder
under the system's temporary directory would be left behind by every killed run).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from mobilenas.search.base import EARLY_STOPPED, STATUS_FAILED, EvalResult
from mobilenas.search.execution import joins_cluster, ray_session
from mobilenas.search.orchestrator import SearchRun
from mobilenas.search.proxy import ProxySettings, run_proxy_trial

# Tune's experiment state, inside the run directory; deleted when the trainings end.
TUNE_SCRATCH = ".tune"


def _trainable(config: dict[str, Any], data: Any = None, settings: ProxySettings | None = None) -> None:
    from ray import tune

    assert settings is not None

    def report_progress(step: int, loss: float) -> None:
        tune.report({"step": step, "train_loss": loss})

    outcome = run_proxy_trial(config, data, settings, report_progress if settings.early_stopping else None)
    tune.report({**outcome, "step": outcome.get("steps", 0), "done": True})


def _not_restorable() -> None:
    """What an unpickled searcher or callback becomes: nothing (see ``Bridge.__reduce__``)."""
    return None


class _Bridge:
    """Adapts a :class:`SearchRun` to Ray Tune's ``Searcher`` interface."""

    def __init__(self, search: SearchRun, settings: ProxySettings) -> None:
        from ray.tune.search import Searcher

        class Bridge(Searcher):  # defined here so importing this module does not import Ray
            def __init__(inner) -> None:
                # No metric: our journal scores trials; Tune must not insist on one in every report.
                super().__init__(metric=None, mode=None)

            def suggest(inner, trial_id: str) -> dict[str, Any] | None:
                submission = search.next_submission()
                if submission is None:
                    # Searcher.FINISHED is a string marker Ray's own annotation leaves out.
                    return Searcher.FINISHED if search.finished_asking and not search._resubmit else None  # type: ignore[return-value]
                self.trial_numbers[trial_id] = submission.number
                self.started[submission.number] = time.time()
                return settings.trial_config(submission, search)

            def on_trial_result(inner, trial_id: str, result: dict[str, Any]) -> None:
                number = self.trial_numbers.get(trial_id)
                if number is not None and "train_loss" in result:
                    self.last_loss[number] = float(result["train_loss"])

            def on_trial_complete(inner, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
                number = self.trial_numbers.pop(trial_id, None)
                if number is None or number not in search.in_flight:
                    return
                self.finish(number, result, error, trial_id)

            def save(inner, checkpoint_path: str) -> None:  # our journal is the state
                return None

            def restore(inner, checkpoint_path: str) -> None:
                return None

            def __reduce__(inner) -> tuple[Any, tuple[()]]:
                # Tune pickles its config, this searcher with it, into tuner.pkl for Tuner.restore,
                # which we never use (the journal is the state). Pickled whole, the searcher took the
                # search run and its strategy along: NSGA-II's Optuna sampler holds a lock and
                # cannot be pickled (every run ended in a TypeError), and any run paid for copying
                # its de-duplication memory.
                return _not_restorable, ()

        self.search = search
        self.settings = settings
        self.searcher = Bridge()
        self.trial_numbers: dict[str, int] = {}
        self.started: dict[int, float] = {}
        self.last_loss: dict[int, float] = {}
        self.trials: dict[str, Any] = {}  # Tune's trial objects, to read a failed trial's error

    def _error_of(self, trial_id: str | None) -> str:
        text = ""
        trial = self.trials.pop(trial_id, None) if trial_id else None
        if trial is not None:
            # Tune writes the error into the trial's local staging folder before it tells the
            # searcher, and copies it to storage_path only later: read the local file first.
            try:
                local = trial.error_file
                if local and Path(local).is_file():
                    text = Path(local).read_text(errors="replace")
                if not text.strip():
                    text = str(trial.get_error() or "")
            except Exception:  # Tune could not read its own error file: keep the generic message
                text = ""
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        return lines[-1] if lines else "the trial crashed after its retries"

    def finish(self, number: int, result: dict[str, Any] | None, error: bool, trial_id: str | None = None) -> None:
        wall = time.time() - self.started.pop(number, time.time())
        if error or not result or "status" not in result:
            stopped_early = bool(result) and not error and "status" not in (result or {})
            message = EARLY_STOPPED if stopped_early else self._error_of(trial_id)
            evaluation = EvalResult(accuracy=0.0, wall_time_s=wall, status=STATUS_FAILED, error=message, info={"early_stopped": stopped_early})
            self.search.record(number, evaluation, None)
            return
        evaluation = EvalResult(
            accuracy=float(result["accuracy"]) if result.get("accuracy") is not None else math.nan,
            wall_time_s=float(result.get("wall_time_s", wall)),
            status=str(result["status"]),
            error=result.get("error") or None,
            info={k: result[k] for k in ("loss", "train_loss", "images_per_s", "steps", "params", "adaptation", "seed") if k in result},
        )
        self.search.record(number, evaluation, result.get("weights") or None)


class _OneLineTrialErrors(logging.Filter):
    """A crashed or killed trial is one line on stderr (Tune logged the whole traceback of its
    actor's death, 25 lines in the middle of the progress bar); its error is in the trial's record.
    Tune's closing list of the trials it did not complete is dropped: the run's summary counts them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Trials did not complete"):
            return False
        if message.startswith("Trial task failed for trial") and record.exc_info:
            error = record.exc_info[1]
            first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
            record.msg = f"{message}: {type(error).__name__}{': ' + first if first else ''} (Ray runs it again, up to --retries times, before it is recorded as failed)"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def _trial_name(trial: Any) -> str:
    return f"trial-{trial.config.get('number', 'x')}-{trial.trial_id}"


def _trial_tracker(bridge: _Bridge) -> Any:
    from ray.tune import Callback

    class TrackTrials(Callback):
        """Keeps Tune's trial objects so that a failed trial's error can be read when it ends."""

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            bridge.trials[trial.trial_id] = trial

        def __reduce__(self) -> tuple[Any, tuple[()]]:  # into tuner.pkl without the bridge (see Bridge.__reduce__)
            return _not_restorable, ()

    return TrackTrials()


def run_on_tune(
    search: SearchRun,
    data: Any,
    settings: ProxySettings,
    *,
    workers: int,
    cpus_per_trial: float = 1.0,
    ray_address: str | None = None,
    retries: int = 2,
    trainable: Any = None,
) -> None:
    """Evaluate the search's proposals on Ray Tune until the search is done.

    ``trainable`` replaces the proxy-training function (``config, data, settings`` -> reports);
    the tests use it to crash workers on purpose.
    """
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    # Tune snapshots its own experiment state (and copies it to storage_path) while trials run; a
    # copy racing a file Tune is rewriting logs a traceback. Nothing here reads that state (the
    # journal is the run's state; the scratch folder is deleted at the end), so its errors are noise.
    logging.getLogger("ray.tune.execution.experiment_state").setLevel(logging.CRITICAL)
    for name in ("ray.tune.execution.tune_controller", "ray.tune.tune"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OneLineTrialErrors) for f in logger.filters):
            logger.addFilter(_OneLineTrialErrors())
    num_cpus = None if joins_cluster(ray_address) else max(1, math.ceil(workers * cpus_per_trial))
    scratch = search.run.path(TUNE_SCRATCH).resolve()
    shutil.rmtree(scratch, ignore_errors=True)  # a killed run's
    scratch.mkdir(parents=True)
    try:
        with ray_session(ray_address, num_cpus=num_cpus):
            bridge = _Bridge(search, settings)
            scheduler: Any = FIFOScheduler()
            if settings.early_stopping:
                scheduler = ASHAScheduler(
                    time_attr="step", metric="train_loss", mode="min",
                    max_t=max(2, settings.total_steps), grace_period=max(1, settings.total_steps // 4), reduction_factor=2,
                )
            function = tune.with_resources(tune.with_parameters(trainable or _trainable, data=data, settings=settings), {"cpu": cpus_per_trial})
            tuner = tune.Tuner(
                function,
                tune_config=tune.TuneConfig(
                    search_alg=bridge.searcher, scheduler=scheduler, num_samples=-1, max_concurrent_trials=workers, reuse_actors=True,
                    # The config holds a whole architecture: keep it out of directory names.
                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
                ),
                run_config=tune.RunConfig(
                    name="trials", storage_path=str(scratch), verbose=0,
                    failure_config=tune.FailureConfig(max_failures=retries),
                    callbacks=[_trial_tracker(bridge)],
                ),
            )
            tuner.fit()
            # Trials Tune dropped without telling the searcher (should not happen) end as failed.
            for number in list(search.in_flight):
                search.record(number, EvalResult(accuracy=0.0, status=STATUS_FAILED, error="lost by Ray Tune"), None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
