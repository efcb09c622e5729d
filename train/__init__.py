"""mobilenas.train: data sets, proxy-task training that ranks architectures, and full training.

Data (:mod:`mobilenas.train.data`; nothing is ever downloaded)::

    load_dataset(name_or_path, *, data_dir=None, seed=0, train_size=None, val_size=None,
                 test_size=None, image_size=None, channels=None) -> DataSplits

``name_or_path``: ``"synthetic"`` (built in, procedural, 10 classes, 32x32 RGB, 4,000 train /
1,000 val / 2,000 test by default; see :mod:`mobilenas.train.synthetic`), ``"cifar10"`` (with
``data_dir`` = the ``cifar-10-batches-py`` folder or its parent), ``"imagefolder"`` (``data_dir``
= ``root/<class>/<image>``), ``"npz"`` (``data_dir`` = a file with ``x_train``, ``y_train``,
``x_test``, ``y_test``), or a path whose kind is recognised. Sizes are counts or fractions.
The validation split is carved from the training data (stratified, seeded) and serves every
reward and fine-tune decision; the test split is for final reporting only. A missing or
malformed path raises ``ValueError`` naming the layout expected.

``DataSplits``: ``train``, ``val``, ``test`` (:class:`Split`: ``images`` ``uint8`` (N, C, S, S),
``labels`` ``int64``, ``mean``/``std`` of the training data, ``batches()``, ``subset()``),
``num_classes``, ``input_size`` (square), ``in_channels``, ``name``, ``description``,
``class_names``, ``seed``, ``summary()``. Grayscale data stay one channel; the trainers then
give the network a one-channel stem (``arch.with_in_channels(1)``, recorded in
``adaptation``); ``channels=3`` replicates gray to RGB instead.

Proxy training (:mod:`mobilenas.train.proxy`)::

    ProxyConfig(optimizer="adamw", learning_rate=0.002, momentum=0.9, nesterov=True,
                weight_decay=4e-5, label_smoothing=0.1, warmup_fraction=0.1,
                final_lr_fraction=0.0, batch_size=32, steps=20, epochs=None,
                train_subset=4000, val_subset=1000, eval_batch_size=250,
                bn_recalibration_images=500, grad_clip_norm=5.0, augment=False,
                channels_last=True, threads=1, device="cpu", seed=0)
    train_proxy(arch, data, config=None, *, progress=False, keep_weights=False) -> ProxyResult
    train_model(model, data, config, *, steps=None, epochs=None, progress=False) -> TrainResult
    evaluate(model, split_or_tensors_or_batches, batch_size=250, *, channels_last=True,
             device=None) -> (accuracy, loss)
    prepare_architecture(arch, data) -> (arch, changes)   # classes and stem channels of the data
    build_for_data(arch, data) -> Network                  # + the builder's input-size adaptation

``ProxyResult``: ``status`` (``"ok"``/``"failed"``), ``accuracy`` (validation, 0..1; 0.0 when
failed), ``loss`` (validation), ``train_loss``, ``wall_time_s``, ``train_time_s``,
``eval_time_s``, ``images_per_s`` (training), ``steps``, ``images_seen``, ``epochs``,
``params``, ``adaptation`` (e.g. ``("head.num_classes=10", "stem.stride",
"stages[1].blocks[0].stride")``), ``seed``, ``error``, ``state_dict`` (with
``keep_weights=True``), ``ok``, ``to_dict()``. A NaN or exploding loss gives
``status="failed"``; it never raises. Deterministic for a seed and a thread count; the thread
count is set for the call and restored, the global generator is forked, the working directory
is untouched (safe in Ray workers). Silent unless ``progress=True``.

The default budget (20 steps of 32 images, then batch-norm recalibration on 500 images and
evaluation on 1,000 validation images) was chosen with ``benchmarks/train_proxy_fidelity.py``
(CIFAR-10, 20 mobilenetv3-space architectures: Kendall tau 0.42 against a 5x longer training;
see ``benchmarks/train_proxy_fidelity.md`` for why not the 10-step budget) and
``benchmarks/train_synthetic.py`` (about 20-30 s a trial on one thread; reference accuracies on
the synthetic set).

Full training (:mod:`mobilenas.train.full`, command ``nas-train`` / ``mobilenas train``)::

    FullTrainConfig(epochs=30, optimizer="sgd", learning_rate=0.1, ..., ema_decay=None,
                    patience=None, seed=0)
    train_full(arch, data, config, TrainOutputs.at(folder, prefix), *, resume=False,
               export_onnx=True, progress=False, source=None) -> FullTrainResult
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenas.lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use (mobilenas.lazy), so --help does not load torch
    from mobilenas.train.data import DataSplits, Split, load_dataset, stratified_split
    from mobilenas.train.full import FullTrainConfig, FullTrainResult, TrainOutputs, train_full
    from mobilenas.train.proxy import (
        STATUS_FAILED,
        STATUS_OK,
        ProxyConfig,
        ProxyResult,
        TrainResult,
        build_for_data,
        evaluate,
        prepare_architecture,
        train_model,
        train_proxy,
    )

__all__ = [
    "STATUS_FAILED",
    "STATUS_OK",
    "DataSplits",
    "FullTrainConfig",
    "FullTrainResult",
    "ProxyConfig",
    "ProxyResult",
    "Split",
    "TrainOutputs",
    "TrainResult",
    "build_for_data",
    "evaluate",
    "load_dataset",
    "prepare_architecture",
    "stratified_split",
    "train_full",
    "train_model",
    "train_proxy",
]

lazy_exports(__name__, __file__)
