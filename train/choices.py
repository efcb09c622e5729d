"""What the training commands offer on their command lines: optimisers and data sets.

Kept free of torch, so that ``nas-train --help`` and ``netadapt --help`` answer at once;
:mod:`.engine` and :mod:`.data` use these names.
"""

from __future__ import annotations

OPTIMIZERS = ("sgd", "rmsprop", "adamw")

#: A search's proxy training (:class:`mobilenas.train.proxy.ProxyConfig`): this many steps of this
#: many images, drawn from a subset of this many training images, scored on this many validation
#: images. ``benchmarks/train_proxy_fidelity.md`` gives the reasons for the budget.
PROXY_STEPS = 20
PROXY_BATCH_SIZE = 32
PROXY_TRAIN_SUBSET = 4000
PROXY_VAL_SUBSET = 1000

KINDS = ("synthetic", "cifar10", "imagefolder", "npz")
CIFAR10_LAYOUT = (
    "the CIFAR-10 python layout: a folder cifar-10-batches-py/ holding data_batch_1 ... data_batch_5, "
    "test_batch and batches.meta (as torchvision stores it); give that folder or the folder holding it"
)
IMAGEFOLDER_LAYOUT = "an image folder: ROOT/<class>/<image> (or ROOT/train/<class>/..., with ROOT/test/<class>/... or ROOT/val/<class>/...)"
NPZ_LAYOUT = "a .npz file with x_train, y_train (and optionally x_test, y_test): images (N,H,W), (N,H,W,C) or (N,C,H,W) with C in 1 or 3"


def describe_kinds() -> str:
    """One line per kind, for ``--help``."""
    return "; ".join([
        "synthetic (built in)",
        "cifar10 --data-dir DIR (" + CIFAR10_LAYOUT.split(":")[0] + ")",
        "imagefolder --data-dir ROOT (ROOT/<class>/<image>)",
        "npz --data-dir FILE.npz (x_train, y_train[, x_test, y_test])",
        "or a path to any of these",
    ])
