"""What ``netadapt refine`` offers on its command line: the final step and the training defaults.

Kept free of torch, so that ``netadapt --help`` answers at once; :mod:`.run` and :mod:`.training`
use these names.
"""

from __future__ import annotations

from mobilenas.units import counted

#: After the budget is met: a long fine-tune, a retraining from scratch (as MobileNetV3), or nothing.
FINAL_MODES = ("finetune", "retrain", "none")

#: The optimiser of every NetAdapt training. AdamW trains these networks fastest in the few
#: hundred CPU steps a proxy or a fine-tune gets (the proxy trainer's measured default).
DEFAULT_OPTIMIZER = "adamw"
#: Training from scratch (a network given without weights, ``--final retrain``).
DEFAULT_TRAIN_LR = 0.002
#: Fine-tunes start from trained weights, so they take a smaller step (the official NetAdapt
#: code fine-tunes with 1e-3, by SGD on ImageNet).
DEFAULT_FINETUNE_LR = 0.001


def final_training(final: object, epochs: object) -> str | None:
    """What a finished run's last training was, for its summaries: ``the final fine-tune (1 epoch)``,
    ``retraining from scratch (10 epochs)``, or None where there was none (``--final none``, or no
    iteration was needed)."""
    what = {"finetune": "the final fine-tune", "retrain": "retraining from scratch"}.get(str(final))
    if what is None or not isinstance(epochs, int) or epochs <= 0:
        return None
    return f"{what} ({counted(epochs, 'epoch')})"


def after_final(refined: dict[str, object]) -> str:
    """What follows a refined network's accuracy in a summary: `` after the final fine-tune (1 epoch)``,
    `` after retraining from scratch (10 epochs)`` or `` (no final training)``."""
    final = final_training(refined.get("final"), refined.get("final_epochs"))
    return f" after {final}" if final else " (no final training)"


def refined_label(refined: dict[str, object]) -> str:
    """A refined network's name in a legend: ``refined after the final fine-tune (1 epoch)``,
    ``refined after retraining from scratch (10 epochs)`` or ``refined (no final training)``."""
    return "refined" + after_final(refined)
