"""Which data a run's result, or a weights file, was trained and validated on.

``nas-train`` and ``netadapt refine`` of a search's ``best.json`` (or a NetAdapt run's
``refined.json``) load the data that run loaded, where no data option was typed
(:func:`take_data_options`), so that they validate on the images the run held out and never on
images its weights were trained on. Where typed options (or ``--weights`` that ``nas-train``
trained, its ``.metrics.json`` beside them) would still put such images in this run's validation
split, the split the weights came from is loaded again and the images are counted
(:func:`trained_on_validation`): the note says how many, and nothing is said where there are none
(another ``--image-size``, or a ``--val-size`` that carves the same split).

Weights also carry the per-channel mean and standard deviation their data were normalised with
(:func:`weights_normalisation`): a run that fine-tunes or validates them normalises its images the
same way (:func:`normalise_like_weights`), whatever its own training split's statistics are (they
follow ``--train-size``), so the same weights score the same on the same images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mobilenas.errors import UsageError
from mobilenas.runs import DATA_OPTIONS, option_text, read_json, run_data_options, run_of
from mobilenas.space.io import is_path, result_file

if TYPE_CHECKING:
    from mobilenas.train.data import DataSplits

#: The options that decide which images are in which split (the image size and channels do not).
SPLIT_OPTIONS = ("dataset", "data_dir", "seed", "val_size", "test_size")


@dataclass(frozen=True)
class TakenData:
    """What :func:`take_data_options` did: the run's ``kind`` and its data options (``recorded``,
    defaults where it had none), the options taken (those not at their defaults) and the typed
    ones that are not the run's, ``{key: (typed, run's)}``."""

    kind: str
    recorded: dict[str, Any]
    taken: dict[str, Any]
    differing: dict[str, tuple[Any, Any]]

    @property
    def who(self) -> str:
        return "search" if self.kind == "search" else "NetAdapt run"

    def taken_line(self, subject: str) -> str | None:
        """``data as the search that wrote INPUT loaded them: --dataset cifar10 ...``; None if none was taken."""
        if not self.taken:
            return None
        return (f"data as the {self.who} that wrote {subject} loaded them: {' '.join(option_text(k, v) for k, v in self.taken.items())}"
                " (type any of these to choose otherwise)")

    def split_note(self, subject: str, use: str, data: DataSplits) -> str | None:
        """The note for typed options that put images the run's own weights were trained on into
        this run's validation split (``data``), or that name other data; ``use`` says what this
        command does with the data (``fine-tunes and validates on``). None where none do."""
        # --test-size changes the validation images only where the test split is carved from the training data
        changed = {k: v for k, v in self.differing.items() if k in SPLIT_OPTIONS and (k != "test_size" or data.test_carved)}
        if not changed:
            return None
        said = ", ".join(
            f"{option_text(k, mine)} where the {self.who} had {option_text(k, theirs).removeprefix('no ')}" if theirs is not None
            else f"{option_text(k, mine)} where the {self.who} had the default"
            for k, (mine, theirs) in changed.items()
        )
        if not same_files(data.source, self.recorded):
            return f"note: {said}: {subject}'s weights were trained on other data than this run {use}"
        seen = trained_on_validation(data, self.recorded)
        if not seen:
            return None
        return (f"note: {said}: {seen:,} of this run's {len(data.val):,} validation images were in the training split of the run that wrote {subject},"
                " which its weights were trained on, so validation accuracies read high; leave these options out to use that run's split")


def take_data_options(spec: str, values: dict[str, Any], typed: list[str], defaults: dict[str, Any]) -> TakenData | None:
    """Give ``values`` the data options (:data:`mobilenas.runs.DATA_OPTIONS`) of the run that wrote
    ``spec`` (a search's best.json, a NetAdapt run's refined.json, or their folder) where the user
    typed none (those not in ``typed``); ``None`` where ``spec`` is no such run's."""
    if not is_path(spec.strip()):
        return None
    path = Path(spec.strip()).expanduser()
    found = run_data_options(path)
    if found is None:
        return None
    kind, options = found
    recorded = {key: options.get(key, defaults.get(key)) for key in DATA_OPTIONS}
    # The data set and its folder go together: a typed --dataset takes none of the run's folder,
    # and a typed --data-dir goes with the run's data set only where the run named it by kind and
    # folder (a run that named a file or the built-in set has no kind for another folder).
    kept = set(typed)
    if "dataset" in kept:
        kept.add("data_dir")
    elif "data_dir" in kept and recorded["data_dir"] is None:
        raise UsageError(
            f"--data-dir goes with --dataset cifar10, imagefolder or npz, and the {kind} run that wrote {path} loaded {recorded['dataset']!r},"
            " which takes none; give --dataset too (a kind with --data-dir, or a path alone)"
        )
    taken: dict[str, Any] = {}
    differing: dict[str, tuple[Any, Any]] = {}
    for key, value in recorded.items():
        if key in typed:
            if values[key] != value:
                differing[key] = (values[key], value)
        elif key not in kept:
            values[key] = value
            if value != defaults.get(key):
                taken[key] = value
    return TakenData(kind, recorded, taken, differing)


def same_files(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Whether two data sets (``dataset`` and ``data_dir`` as the commands take them) are the same
    files: ``cifar10 --data-dir ~/data`` and ``~/data/cifar-10-batches-py`` are."""
    from mobilenas.train.data import data_location

    try:
        return data_location(ours.get("dataset", "synthetic"), ours.get("data_dir")) == data_location(theirs.get("dataset", "synthetic"), theirs.get("data_dir"))
    except ValueError:  # one of them names nothing that is there
        return False


def trained_on_validation(data: DataSplits, theirs: dict[str, Any]) -> int:
    """How many of ``data``'s validation images are in the training split of the same data set
    loaded with ``theirs`` options (``seed``, ``val_size``, ``test_size`` and, where the weights
    were trained on a subset, ``train_size``: the images they were trained on; at ``data``'s image
    size and channels). The images are compared by content, so a split that comes out the same (a
    ``--val-size`` of the default's count) counts none."""
    from mobilenas.train.data import load_dataset

    source = data.source
    if (theirs.get("seed", 0), theirs.get("val_size"), theirs.get("test_size")) == (data.seed, source.get("val_size"), source.get("test_size")):
        return 0  # asked for alike: the same split
    try:
        other = load_dataset(
            source.get("dataset", "synthetic"), data_dir=source.get("data_dir"), seed=theirs.get("seed", 0), train_size=theirs.get("train_size"),
            val_size=theirs.get("val_size"), test_size=theirs.get("test_size"), image_size=data.input_size, channels=data.in_channels,
        )
    except ValueError:  # sizes that do not fit this data set: nothing to compare
        return 0
    trained = {_digest(row) for row in other.train.images.numpy()}
    return sum(_digest(row) in trained for row in data.val.images.numpy())


def _digest(image: Any) -> bytes:
    return hashlib.blake2b(image.tobytes(), digest_size=16).digest()


def in_run(weights: str | Path | None, spec: str) -> bool:
    """Whether ``weights`` are the run's own: in the folder of the run that wrote ``spec`` (a
    search's trial weights, a NetAdapt run's refined.pt), and not a nas-train result kept there
    (its ``.metrics.json`` beside it: :func:`weights_data_note` speaks of those)."""
    metrics = None if weights is None else _metrics_of(Path(weights))
    if weights is None or not is_path(spec.strip()) or (metrics is not None and metrics.is_file()):
        return False
    found = run_of(Path(spec.strip()).expanduser())
    if found is None:
        return False
    return Path(weights).expanduser().resolve().is_relative_to(found[0].resolve())


def _metrics_of(weights: Path) -> Path | None:
    """The metrics file nas-train writes beside ``weights`` (:class:`TrainOutputs`); None for a file
    it cannot have written."""
    from mobilenas.train.full import TrainOutputs

    return TrainOutputs.at(weights.parent, weights.name.removesuffix(".pt")).metrics if weights.name.endswith(".pt") else None


def weights_data_note(weights: Path, data: DataSplits, use: str) -> str | None:
    """A note when ``weights`` are a nas-train result (its ``.metrics.json`` beside them) trained on
    other data than ``data``, which this run ``use``s, or on a split whose training images are
    among ``data``'s validation images: this run's decisions would rest on accuracies of images the
    weights were trained on. ``None`` where neither, or where nothing is known of the weights."""
    try:
        metrics = _metrics_of(weights)
        if metrics is None:
            return None
        trained = read_json(metrics)
        theirs = trained["dataset"]
        seed, val, name = int(theirs["seed"]), int(theirs["sizes"]["val"]), str(theirs["name"])
        source = theirs.get("source")
        train_size = theirs["sizes"].get("train")  # the subset they were trained on (--train-size), not the whole pool
        train_size = int(train_size) if isinstance(train_size, int) and not isinstance(train_size, bool) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not a nas-train result (or no longer readable)
    seen: int | None
    if isinstance(source, dict):
        if not same_files(data.source, source):
            return f"note: the weights {weights} were trained on other data ({name}, by nas-train) than this run {use} ({data.name})"
        seen = trained_on_validation(data, {**source, "seed": seed, "train_size": train_size})
    elif theirs.get("description") != data.description:  # written before metrics said how the data were loaded
        return f"note: the weights {weights} were trained on other data ({name}, by nas-train) than this run {use} ({data.name})"
    else:
        seen = 0 if (seed, val) == (data.seed, len(data.val)) else None
    if seen == 0:
        return None
    # without their training split's size (metrics of before it was recorded) the whole pool they were drawn from is counted: a bound
    bound = "up to " if train_size is None else ""
    counted = f"{bound}{seen:,} of this run's {len(data.val):,} validation images were" if seen else "this run's validation images may have been"
    return (f"note: the weights {weights} were trained by nas-train with --seed {seed} and {val:,} validation images: {counted} among their"
            f" training images, so validation accuracies read high; give --seed {seed} and --val-size {val} for their split")


def weights_normalisation(weights: str | Path | None, spec: str) -> tuple[list[float], list[float], str] | None:
    """``(mean, std, where)``: the normalisation ``weights`` were trained with, from the
    ``.metrics.json`` nas-train wrote beside them, or, for the weights of the run that wrote
    ``spec`` (:func:`in_run`), from ``spec``'s ``preprocessing`` (best.json, refined.json).
    None where nothing is known of them."""
    if weights is None:
        return None
    metrics = _metrics_of(Path(weights))
    try:
        if metrics is not None and metrics.is_file():
            recorded, where = read_json(metrics)["dataset"], metrics
        elif in_run(weights, spec):
            where = result_file(Path(spec.strip()).expanduser())
            recorded = read_json(where)["preprocessing"]
        else:
            return None
        mean, std = [float(v) for v in recorded["mean"]], [float(v) for v in recorded["std"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # written before the statistics were recorded, or no longer readable
    return mean, std, str(where)


def normalise_like_weights(data: DataSplits, weights: str | Path | None, spec: str, log: Callable[[str], None] | None = None) -> DataSplits:
    """``data`` normalised as ``weights`` were trained (:func:`weights_normalisation`) where that is
    known and differs from ``data``'s own statistics; ``log`` says so in one line."""
    found = weights_normalisation(weights, spec)
    if found is None:
        return data
    mean, std, where = found
    if len(mean) != data.in_channels or _same_statistics(data, mean, std):
        return data  # other channels: the weights are refused by their shapes anyway
    if log:
        shown = ", ".join(f"{m:.4f}/{s:.4f}" for m, s in zip(mean, std, strict=True))
        log(f"note: images normalised as the weights were trained (mean/std per channel {shown}, from {where}), not with this run's training split's statistics")
    return data.normalised_with(mean, std)


def normalised_as_recorded(data: DataSplits, summary: dict[str, Any]) -> DataSplits:
    """``data`` normalised as a run's manifest recorded (``summary``: :meth:`DataSplits.summary`):
    a resumed run normalises as it began (:func:`normalise_like_weights` may have chosen)."""
    mean, std = summary.get("mean"), summary.get("std")
    if mean is None or std is None or _same_statistics(data, mean, std):
        return data
    return data.normalised_with(mean, std)


def _same_statistics(data: DataSplits, mean: Any, std: Any) -> bool:
    return bool(np.allclose(mean, data.train.mean, rtol=0, atol=1e-6) and np.allclose(std, data.train.std, rtol=0, atol=1e-6))
