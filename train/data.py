"""Data sets held in memory: the built-in synthetic set, CIFAR-10, image folders and ``.npz`` arrays.

Nothing is ever downloaded. :func:`load_dataset` returns a :class:`DataSplits` of three
:class:`Split` values (train, val, test) whose images are ``uint8`` tensors (N, C, S, S) and are
normalised batch by batch (per-channel mean and standard deviation of the training split), so
even all of CIFAR-10 takes 180 MB.

Kinds (``name_or_path``):

``synthetic``   the built-in procedural set (:mod:`mobilenas.train.synthetic`), drawn from the seed;
                default sizes 4,000 train + 1,000 val + 2,000 test.
``cifar10``     CIFAR-10 in its standard python layout: ``data_dir`` is the
                ``cifar-10-batches-py`` folder itself or the folder holding it (torchvision's root).
``imagefolder`` ``data_dir/<class>/<image>`` (any format Pillow reads, any size); or
                ``data_dir/train/<class>/...``, with ``data_dir/test/<class>/...`` or
                ``data_dir/val/<class>/...`` (ImageNet's layout) as the test split. Images are
                resized (shorter side) and centre-cropped to ``image_size``, by default the median
                shorter side, at most 224.
``npz``         a ``.npz`` file with ``x_train``, ``y_train`` and optionally ``x_test``,
                ``y_test`` (and ``classes``): images (N, H, W) grayscale, (N, H, W, C) or
                (N, C, H, W) with C 1 or 3; ``uint8``, or floats in [0, 1]. Non-square images are
                centre-cropped to a square; ``image_size`` resizes.
a path          the kind is recognised: a ``.npz`` file, a folder with ``cifar-10-batches-py``
                (or ``data_batch_1``), otherwise an image folder.

Splits: the validation split is carved from the training data, stratified by class and seeded
(``seed``); it serves every reward and fine-tune decision. It depends on the seed and
``val_size`` only, never on ``train_size``, so commands that differ in ``train_size`` never train
on one another's validation images. The test split is only for final
reporting; where a data set has none (an image folder without ``test/`` or ``val/``, an ``.npz`` without
``x_test``) one is carved the same way (``test_size``, default 20%). ``train_size``,
``val_size`` and ``test_size`` accept a count or a fraction in (0, 1); subsets are stratified.

Grayscale data stay one channel (``in_channels == 1``); the trainers give the network a
one-channel stem (``arch.with_in_channels(1)``, recorded in the result's ``adaptation``), so the
exported model takes the data as they are. ``channels=3`` replicates gray to three channels
instead (e.g. to keep a searched architecture's stem exactly as it is).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilenas.errors import did_you_mean
from mobilenas.runs import absolute_path
from mobilenas.train import synthetic
from mobilenas.train.choices import CIFAR10_LAYOUT, IMAGEFOLDER_LAYOUT, KINDS, NPZ_LAYOUT

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SYNTHETIC_DEFAULT_SIZES = (4000, 1000, 2000)  # train, val, test
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.2
MAX_DEFAULT_IMAGE_SIZE = 224


def absolute_dataset(name: str) -> str:
    """A built-in data set's name as it is; a path (``data.npz``, ``~/images``) made absolute.

    What a run records, so that ``--resume`` finds the data from any folder.
    """
    if name in KINDS or not Path(name).expanduser().exists():
        return name
    return absolute_path(name)


SizeSpec = int | float | None


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, eq=False)
class Split:
    """One split: ``images`` ``uint8`` (N, C, S, S), ``labels`` ``int64`` (N,).

    ``mean`` and ``std`` (per channel, in 0..1 pixel units) are those of the training split, so
    every split of a data set is normalised the same way.
    """

    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        assert self.images.dtype == torch.uint8 and self.images.ndim == 4, (self.images.dtype, self.images.shape)
        assert self.labels.dtype == torch.int64 and self.labels.shape == (self.images.shape[0],)
        assert len(self.mean) == len(self.std) == self.images.shape[1]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def input_size(self) -> int:
        return int(self.images.shape[2])

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """``uint8`` (B, C, S, S) -> normalised ``float32``."""
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std

    def select(self, index: torch.Tensor | np.ndarray | Sequence[int]) -> Split:
        index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        return dataclasses.replace(self, images=self.images[index], labels=self.labels[index])

    def subset(self, size: SizeSpec, seed: int = 0) -> Split:
        """A stratified, seeded subset of ``size`` images (a count or a fraction); ``None`` = all."""
        if size is None:
            return self
        count = resolve_size(size, len(self), "subset size")
        if count >= len(self):
            return self
        keep, _ = stratified_split(self.labels.numpy(), count, seed)
        return self.select(np.sort(keep))

    def batches(self, batch_size: int, *, order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised ``(images, labels)`` batches in ``order`` (default: as stored)."""
        n = len(self)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
            yield self.normalise(self.images[index]), self.labels[index]


@dataclass(frozen=True, eq=False)
class DataSplits:
    """A loaded data set: train / val / test splits and what describes them."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    class_names: tuple[str, ...]
    description: str
    seed: int = 0
    #: how :func:`load_dataset` was asked for it (``dataset`` and ``data_dir`` absolute, ``val_size``,
    #: ``test_size``): what loads the same splits again (:mod:`mobilenas.train.provenance`)
    source: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: whether the test split was carved from the training data (an image folder without test/, an
    #: .npz without x_test): only then does ``test_size`` change which images are left for validation
    test_carved: bool = False

    @property
    def input_size(self) -> int:
        """Square input resolution (pixels)."""
        return self.train.input_size

    @property
    def in_channels(self) -> int:
        return self.train.in_channels

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def normalised_with(self, mean: Sequence[float], std: Sequence[float]) -> DataSplits:
        """The same splits, normalised with ``mean`` and ``std`` (per channel, 0..1 units) instead of
        their training split's: those that weights were trained with (:mod:`mobilenas.train.provenance`)."""
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if len(mean) != self.in_channels or len(std) != self.in_channels or min(std) <= 0:
            raise ValueError(f"normalisation for {len(mean)} channels (std {list(std)}) does not fit {self.name}'s {self.in_channels}")
        return dataclasses.replace(self, **{name: dataclasses.replace(getattr(self, name), mean=mean, std=std) for name in ("train", "val", "test")})

    def summary(self) -> dict[str, object]:
        """Plain data describing the data set (for manifests and metrics files)."""
        return {
            "name": self.name,
            "description": self.description,
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "in_channels": self.in_channels,
            "sizes": self.sizes(),
            "seed": self.seed,
            "mean": list(self.train.mean),
            "std": list(self.train.std),
            "source": dict(self.source),
        }


def preprocessing(
    summary: Mapping[str, Any], input_size: int, *, batch: int | str = 1, adaptation: Sequence[str] | None = None,
    timed: bool = True, deployed_adaptation: Sequence[str] = (),
) -> dict[str, Any]:
    """How to feed a trained network: what a deployed model expects of its input.

    ``summary`` is :meth:`DataSplits.summary` (the training data's per-channel mean and std);
    ``input_size`` the resolution the model is exported or timed at; ``batch`` the first dimension
    (``"N"`` for an export with a dynamic batch). Pixels are scaled to [0, 1], then normalised per
    channel with the training data's statistics, in NCHW layout. Where the data are of another size
    than ``input_size``, ``trained_at`` says so (:func:`trained_elsewhere`, with ``adaptation``,
    ``timed`` and ``deployed_adaptation``).
    """
    channels = int(summary["in_channels"])
    result: dict[str, Any] = {
        "scale": "pixels / 255",
        "mean": [float(v) for v in summary["mean"]],
        "std": [float(v) for v in summary["std"]],
        "layout": "NCHW",
        "input_shape": [batch, channels, int(input_size), int(input_size)],
    }
    trained = summary.get("input_size")
    if isinstance(trained, int) and trained != int(input_size):
        result["trained_at"] = trained_elsewhere(trained, int(input_size), adaptation, timed=timed, deployed_adaptation=deployed_adaptation)
    return result


def trained_elsewhere(
    trained: int, deployed: int, adaptation: Sequence[str] | None = None, *, timed: bool = True, deployed_adaptation: Sequence[str] = (),
) -> dict[str, Any]:
    """What a result's ``preprocessing`` says where its accuracy was measured at another input size
    than the one its exported model is for.

    ``timed``: ``deployed`` is the size a search or NetAdapt run timed the network at, so the
    accuracy is of a proxy task (CIFAR-10 at 32 px for a 224 px deployment, as MnasNet's own CIFAR
    experiments) that does not carry over, and the note says what to do. Otherwise (a size chosen
    for an architecture no run timed) it states only the two sizes and the strides that differ
    between the network trained (``adaptation``: the strides the builder set to 1 for ``trained``)
    and the one exported (``deployed_adaptation``: those set to 1 for ``deployed``).
    """
    if not timed:
        only_trained = [path for path in adaptation or () if path not in deployed_adaptation]
        only_deployed = [path for path in deployed_adaptation if path not in (adaptation or ())]
        strides = f", with {', '.join(only_trained)} set to 1 for that size (2 at {deployed}x{deployed})" if only_trained else ""
        strides += f"; at {deployed}x{deployed} {', '.join(only_deployed)} {'is' if len(only_deployed) == 1 else 'are'} set to 1" if only_deployed else ""
        return {
            "input_size": trained,
            "adaptation": list(adaptation or ()),
            "note": f"the weights were trained and validated at {trained}x{trained}{strides}; their accuracy at {deployed}x{deployed} was not measured",
        }
    if adaptation is None:  # not known here (a search's networks differ): the builder's rule
        changed = " (each network's earliest stride-2 layers set to 1 where that size needs it)"
    else:
        changed = f" with {', '.join(adaptation)} set to 1 for it" if adaptation else " (the same layers, on images of another scale)"
    return {
        "input_size": trained,
        "adaptation": None if adaptation is None else list(adaptation),
        "note": (
            f"the accuracies were measured at {trained}x{trained}{changed}; at {deployed}x{deployed}, the size the latency is of, the weights were"
            f" never trained, so they do not give those accuracies: train the network on images of {deployed} px (nas-train --image-size {deployed},"
            f" from an image folder or .npz) before shipping it, or search and prune with --input-size {trained} to deploy at {trained} px"
        ),
    }


# --------------------------------------------------------------------------- splitting


def resolve_size(size: int | float, total: int, what: str) -> int:
    """A count from a count or a fraction of ``total``."""
    if isinstance(size, bool):
        raise ValueError(f"{what} must be a count or a fraction in (0, 1), got {size!r}")
    if isinstance(size, float) and not size.is_integer():
        if not 0.0 < size < 1.0:
            raise ValueError(f"{what} must be a count >= 1 or a fraction in (0, 1), got {size}")
        return max(1, round(size * total))
    count = int(size)
    if count < 1:
        raise ValueError(f"{what} must be a count >= 1 or a fraction in (0, 1), got {size}")
    return count


def stratified_split(labels: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``count`` indices with the class proportions of ``labels``; return ``(picked, rest)``.

    Per-class quotas follow the largest-remainder rule, so each class gets its share within one
    image; which images are picked is a seeded permutation within each class.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if not 0 <= count <= total:
        raise ValueError(f"cannot pick {count} of {total} images")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B117]))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (count / total) if total else counts * 0.0
    quota = np.floor(exact).astype(np.int64)
    remainder = count - int(quota.sum())
    if remainder:
        # Largest fractional parts first; ties broken by class order (stable sort).
        order = np.argsort(-(exact - quota), kind="stable")
        quota[order[:remainder]] += 1
    picked_parts = []
    for cls, q in zip(classes, quota, strict=True):
        members = np.nonzero(labels == cls)[0]
        picked_parts.append(rng.permutation(members)[:q])
    picked = np.sort(np.concatenate(picked_parts)) if picked_parts else np.zeros(0, dtype=np.int64)
    mask = np.ones(total, dtype=bool)
    mask[picked] = False
    return picked.astype(np.int64), np.nonzero(mask)[0].astype(np.int64)


# --------------------------------------------------------------------------- loading


def load_dataset(
    name_or_path: str | Path,
    *,
    data_dir: str | Path | None = None,
    seed: int = 0,
    train_size: SizeSpec = None,
    val_size: SizeSpec = None,
    test_size: SizeSpec = None,
    image_size: int | None = None,
    channels: int | None = None,
) -> DataSplits:
    """Load a data set into memory (see the module docstring for the kinds and the split rules).

    ``seed`` fixes the synthetic images and every split and subset. ``val_size`` defaults to 10%
    of the training data (1,000 images for ``synthetic``); ``train_size``/``test_size`` default to
    everything that is left (4,000 / 2,000 for ``synthetic``). ``image_size`` resizes (image folders
    and ``.npz``; the synthetic set is drawn at that size). ``channels`` (1 or 3) converts RGB to
    gray or gray to RGB. Raises ``ValueError`` naming the expected layout when a path is missing
    or malformed.
    """
    source = {"dataset": absolute_dataset(str(name_or_path)), "data_dir": absolute_path(data_dir) if data_dir is not None else None,
              "val_size": val_size, "test_size": test_size}
    return dataclasses.replace(_load(name_or_path, data_dir, seed, train_size, val_size, test_size, image_size, channels), source=source)


def _load(
    name_or_path: str | Path, data_dir: str | Path | None, seed: int, train_size: SizeSpec, val_size: SizeSpec,
    test_size: SizeSpec, image_size: int | None, channels: int | None,
) -> DataSplits:
    kind, path = _resolve_kind(str(name_or_path), data_dir)
    if image_size is not None and image_size < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    test: tuple[np.ndarray, np.ndarray] | None
    class_names: tuple[str, ...]
    if kind == "synthetic":
        return _load_synthetic(seed, train_size, val_size, test_size, image_size, channels)
    if kind == "cifar10":
        assert path is not None
        if image_size not in (None, 32):  # it was ignored: the images stayed 32x32
            raise ValueError(f"cifar10 is read at its own 32x32 (all of it at {image_size}x{image_size} would not fit in memory); --image-size resizes image folders, .npz files and the synthetic set")
        train, test, class_names = _read_cifar10(path)
        name = "cifar10"
    elif kind == "npz":
        assert path is not None
        train, test, class_names = _read_npz(path, image_size)
        name = path.stem
    else:
        assert path is not None
        train, test, class_names = _read_image_folder(path, image_size)
        name = path.name or "imagefolder"
    return _assemble(name, f"{kind} from {path}", train, test, class_names, seed, train_size, val_size, test_size, channels)


def data_location(name: str | Path, data_dir: str | Path | None = None) -> tuple[str, Path | None]:
    """``(kind, file or folder)`` of a data set named as :func:`load_dataset` takes it, the path
    resolved (CIFAR-10's the ``cifar-10-batches-py`` folder itself): two namings of the same files
    give the same. Raises ``ValueError`` as :func:`load_dataset` would."""
    kind, path = _resolve_kind(str(name), data_dir)
    if path is None:
        return kind, None
    path = path.resolve()
    if kind == "cifar10" and (path / "cifar-10-batches-py").is_dir():
        path = path / "cifar-10-batches-py"
    return kind, path


def _resolve_kind(name: str, data_dir: str | Path | None) -> tuple[str, Path | None]:
    if name == "synthetic":
        if data_dir is not None:
            raise ValueError(f"--data-dir {data_dir}: the synthetic data set (the default) is built in and reads no files; for the data in"
                             f" {data_dir}, give its kind too (--dataset cifar10, imagefolder or npz), or the path alone (--dataset {data_dir})")
        return "synthetic", None
    if name in ("cifar10", "imagefolder", "npz"):
        if data_dir is None:
            expected = {"cifar10": CIFAR10_LAYOUT, "imagefolder": IMAGEFOLDER_LAYOUT, "npz": NPZ_LAYOUT}[name]
            raise ValueError(f"the {name} data set needs a data directory or file (--data-dir): {expected}")
        return name, Path(data_dir).expanduser()
    path = Path(name).expanduser()
    if data_dir is not None:
        if not path.exists() and not path.suffix and "/" not in name and "\\" not in name:  # a kind mistyped, not a path
            raise ValueError(f"unknown data set {name!r}{did_you_mean(name, ('cifar10', 'imagefolder', 'npz'))}: with --data-dir, give the kind of"
                             f" the data in it (cifar10, imagefolder or npz)")
        raise ValueError(f"give either a data set kind with --data-dir, or a path; got the path {name!r} and --data-dir {data_dir}")
    if not path.exists():
        raise ValueError(
            f"unknown data set {name!r}{did_you_mean(name, KINDS)}: choose one of {', '.join(KINDS)} (cifar10/imagefolder/npz with --data-dir) "
            "or give an existing .npz file or data folder"
        )
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return "npz", path
        raise ValueError(f"{path}: a data file must be {NPZ_LAYOUT}")
    if (path / "cifar-10-batches-py").is_dir() or (path / "data_batch_1").is_file():
        return "cifar10", path
    return "imagefolder", path


def check_fits_in_memory(count: int, channels: int, size: int, what: str, memory_bytes: int | None = None,
                         fewer: str = "fewer images (--train-size, --val-size, --test-size)") -> None:
    """Refuse, before allocating, a data set whose images (held as bytes) would take more than
    80% of the memory this process may use (``--image-size 5000`` had ended in "Unable to allocate
    349 GiB"). ``fewer``: how to ask for fewer images, for the message."""
    need = count * channels * size * size
    memory_bytes = memory_bytes if memory_bytes is not None else usable_memory()
    if memory_bytes is not None and need > 0.8 * memory_bytes:
        raise ValueError(
            f"{what} at {size}x{size} would take {need / 2**30:,.1f} GiB of memory ({count:,} images), more than the "
            f"{memory_bytes / 2**30:,.1f} GiB here allow; give a smaller --image-size, or {fewer}"
        )


def usable_memory() -> int | None:
    """This machine's memory, or its container's limit where lower (cgroup v2 or v1); None if unknown."""
    try:
        found = [os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
    except (AttributeError, OSError, ValueError):
        found = []
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            found.append(int(text))
    return min(found) if found else None


def _load_synthetic(seed: int, train_size: SizeSpec, val_size: SizeSpec, test_size: SizeSpec, image_size: int | None, channels: int | None) -> DataSplits:
    sizes = []
    for size, default, what in zip((train_size, val_size, test_size), SYNTHETIC_DEFAULT_SIZES, ("--train-size", "--val-size", "--test-size"), strict=True):
        if size is None:
            sizes.append(default)
        elif isinstance(size, float) and not float(size).is_integer():
            raise ValueError(f"{what} {size:g}: a fraction is of a data set's images, and the synthetic set has no fixed number (it draws as many"
                             f" as asked); give a count (its default is {default:,}: {what} {default // 10} is a tenth of that)")
        else:
            sizes.append(resolve_size(size, default, what))
    train_n, val_n, test_n = sizes
    size = image_size or synthetic.IMAGE_SIZE
    # Train+val come from one stream and test from another, so changing the test size never
    # changes the training images (and vice versa). The validation images are carved from the
    # stream's first DEFAULT_TRAIN + val_n images whatever train_n is, so runs that differ only in
    # --train-size (a search and a nas-train or netadapt run after it) validate on the same images
    # and none of them trains on another's validation images; more training images come after
    # that prefix, fewer are a stratified subset of it. At the default sizes this is the carve
    # the real data sets get (and the one the synthetic set always had).
    default_train = SYNTHETIC_DEFAULT_SIZES[0]
    reserve = default_train + val_n
    fewer = ("a smaller --train-size, --val-size or --test-size" if train_n > default_train else
             f"a smaller --val-size or --test-size (a --train-size below {default_train:,} still draws {default_train:,} training images)")
    check_fits_in_memory(max(train_n, default_train) + val_n + test_n, synthetic.IN_CHANNELS, size, "the synthetic set", fewer=fewer)
    pool_images, pool_labels = synthetic.make_synthetic(max(train_n, default_train) + val_n, seed, image_size=size)
    val_index, rest = stratified_split(pool_labels[:reserve], val_n, seed)
    train_index = np.concatenate([rest, np.arange(reserve, len(pool_labels), dtype=np.int64)])
    if train_n < len(train_index):
        keep, _ = stratified_split(pool_labels[train_index], train_n, seed + 2)
        train_index = train_index[keep]
    test_images, test_labels = synthetic.make_synthetic(test_n, seed + 1_000_003, image_size=size)
    description = synthetic.DESCRIPTION
    if size != synthetic.IMAGE_SIZE:
        description += f" (drawn at {size}x{size})"
    return _assemble(
        "synthetic", description, (pool_images, pool_labels), (test_images, test_labels),
        synthetic.CLASS_NAMES, seed, None, val_n, None, channels, carved=(val_index, train_index),
    )


CARVED_TEST_SEED = 1  # what seed 0 carved with before the test split stopped following --seed


def _assemble(
    name: str,
    description: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray] | None,
    class_names: tuple[str, ...],
    seed: int,
    train_size: SizeSpec,
    val_size: SizeSpec,
    test_size: SizeSpec,
    channels: int | None,
    *,
    carved: tuple[np.ndarray, np.ndarray] | None = None,
) -> DataSplits:
    """The three splits of ``train`` (and ``test``, or a test split carved from ``train``);
    ``carved`` = ``(val_index, train_index)`` into ``train`` where the caller chose them."""
    images, labels = train
    test_carved = test is None
    if test is None:
        count = resolve_size(test_size if test_size is not None else DEFAULT_TEST_FRACTION, len(labels), "--test-size")
        _check_room(count, len(labels), "test", name)
        # the same test images for every --seed: a search's validation images (seed 0) must never be
        # what nas-train --seed 1 reports as test accuracy
        test_index, rest = stratified_split(labels, count, CARVED_TEST_SEED)
        test = (images[test_index], labels[test_index])
        images, labels = images[rest], labels[rest]
        test_size = None
    if carved is not None:
        val_index, train_index = carved
        val_count = len(val_index)
    else:
        val_count = resolve_size(val_size if val_size is not None else DEFAULT_VAL_FRACTION, len(labels), "--val-size")
        _check_room(val_count, len(labels), "validation", name)
        val_index, train_index = stratified_split(labels, val_count, seed)
    if train_size is not None:
        train_count = resolve_size(train_size, len(train_index), "--train-size")
        if train_count > len(train_index):  # a count nobody can have: refused rather than quietly cut down
            raise ValueError(
                f"{name}: --train-size {train_count} is more than the {len(train_index):,} training images left after the"
                f" {val_count:,}-image validation split; give at most {len(train_index)}, or no --train-size for all of them"
            )
        if train_count < len(train_index):
            keep, _ = stratified_split(labels[train_index], train_count, seed + 2)
            train_index = train_index[keep]
    test_images, test_labels = test
    if test_size is not None:
        test_count = resolve_size(test_size, len(test_labels), "--test-size")
        if test_count > len(test_labels):
            raise ValueError(f"{name}: --test-size {test_count} is more than its {len(test_labels):,} test images; give at most {len(test_labels)}, or no --test-size for all of them")
        if test_count < len(test_labels):
            keep, _ = stratified_split(test_labels, test_count, seed + 3)
            test_images, test_labels = test_images[keep], test_labels[keep]
    arrays = [images[train_index], images[val_index], test_images]
    if channels is not None:
        arrays = [_convert_channels(a, channels) for a in arrays]
    train_images = torch.from_numpy(np.ascontiguousarray(arrays[0]))
    if len(train_images) == 0:
        raise ValueError(f"{name}: no training images left after the validation split")
    mean, std = _channel_statistics(train_images)
    splits = [
        Split(tensor, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)), mean, std)
        for tensor, y in (
            (train_images, labels[train_index]),
            (torch.from_numpy(np.ascontiguousarray(arrays[1])), labels[val_index]),
            (torch.from_numpy(np.ascontiguousarray(arrays[2])), test_labels),
        )
    ]
    return DataSplits(
        name=name,
        train=splits[0],
        val=splits[1],
        test=splits[2],
        num_classes=len(class_names),
        class_names=tuple(class_names),
        description=description,
        seed=seed,
        test_carved=test_carved,
    )


def _check_room(count: int, total: int, what: str, name: str) -> None:
    if count >= total:
        raise ValueError(f"{name}: a {what} split of {count} images leaves none of the {total} for training; give a smaller {'--test-size' if what == 'test' else '--val-size'}")


def _channel_statistics(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation in 0..1 units (from at most 10,000 images)."""
    sample = images[:: max(1, len(images) // 10_000)].double() / 255.0
    mean = sample.mean(dim=(0, 2, 3))
    std = sample.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def _convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=1)
    # ITU-R 601 luma, as Pillow's convert("L").
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(1, 3, 1, 1)
    gray = (images.astype(np.float32) * weights).sum(axis=1, keepdims=True)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- CIFAR-10


def _read_cifar10(path: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], tuple[str, ...]]:
    if not path.exists():
        raise ValueError(f"{path} does not exist; expected {CIFAR10_LAYOUT}")
    root = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
    names = [f"data_batch_{i}" for i in range(1, 6)]
    missing = [n for n in [*names, "test_batch"] if not (root / n).is_file()]
    if missing:
        raise ValueError(f"{root}: missing {', '.join(missing)}; expected {CIFAR10_LAYOUT}")
    train_parts = [_read_cifar_batch(root / n) for n in names]
    train_images = np.concatenate([p[0] for p in train_parts])
    train_labels = np.concatenate([p[1] for p in train_parts])
    test = _read_cifar_batch(root / "test_batch")
    class_names: tuple[str, ...] = tuple(str(i) for i in range(10))
    meta = root / "batches.meta"
    if meta.is_file():
        data = _unpickle(meta)
        label_names = data.get("label_names") if isinstance(data, dict) else None
        if isinstance(label_names, list) and len(label_names) == 10:
            class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in label_names)
    return (train_images, train_labels), test, class_names


def _unpickle(path: Path) -> object:
    try:
        with open(path, "rb") as handle:
            # latin1 is how torchvision reads these files (they were pickled by Python 2).
            return pickle.load(handle, encoding="latin1")
    except Exception as error:
        raise ValueError(f"{path}: cannot be read as a CIFAR-10 batch ({type(error).__name__}); expected {CIFAR10_LAYOUT}") from None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = _unpickle(path)
    if not isinstance(data, dict) or "data" not in data or ("labels" not in data and "fine_labels" not in data):
        raise ValueError(f"{path}: not a CIFAR-10 batch (a pickled dict with 'data' and 'labels'); expected {CIFAR10_LAYOUT}")
    images = np.asarray(data["data"], dtype=np.uint8)
    labels = np.asarray(data.get("labels", data.get("fine_labels")), dtype=np.int64)
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or len(labels) != len(images):
        raise ValueError(f"{path}: 'data' must be (N, 3072) uint8 with N labels, got {images.shape} and {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels must be 0..9 for CIFAR-10")
    return images.reshape(-1, 3, 32, 32), labels


# --------------------------------------------------------------------------- .npz arrays


def _read_npz(path: Path, image_size: int | None) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None, tuple[str, ...]]:
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ValueError(f"{path} {what}; expected {NPZ_LAYOUT}")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:
        raise ValueError(f"{path}: cannot be read as a .npz ({type(error).__name__}); expected {NPZ_LAYOUT}") from None
    with archive:
        keys = set(archive.files)
        missing = [k for k in ("x_train", "y_train") if k not in keys]
        if missing:
            raise ValueError(f"{path}: missing {', '.join(missing)} (has {', '.join(sorted(keys)) or 'nothing'}); expected {NPZ_LAYOUT}")
        if ("x_test" in keys) != ("y_test" in keys):
            raise ValueError(f"{path}: x_test and y_test come together; expected {NPZ_LAYOUT}")
        x_train = _npz_images(path, "x_train", archive["x_train"], image_size)
        raw_train_labels = _npz_labels(path, "y_train", archive["y_train"], len(x_train))
        test_raw = None
        if "x_test" in keys:
            x_test = _npz_images(path, "x_test", archive["x_test"], image_size or x_train.shape[2])
            if x_test.shape[1:] != x_train.shape[1:]:
                raise ValueError(f"{path}: x_test images {x_test.shape[1:]} differ from x_train images {x_train.shape[1:]}")
            test_raw = (x_test, _npz_labels(path, "y_test", archive["y_test"], len(x_test)))
        names_in_file = None
        if "classes" in keys:
            if archive["classes"].ndim != 1:
                raise ValueError(f"{path}: 'classes' must be a list of class names (1-D), got an array of shape {archive['classes'].shape}")
            names_in_file = [str(c) for c in archive["classes"]]
    values = np.unique(raw_train_labels)
    if len(values) < 2:
        raise ValueError(f"{path}: y_train holds {len(values)} class; a classifier needs at least 2")
    train_labels = np.searchsorted(values, raw_train_labels).astype(np.int64)
    test = None
    if test_raw is not None:
        unknown = sorted(set(np.unique(test_raw[1]).tolist()) - set(values.tolist()))
        if unknown:
            raise ValueError(f"{path}: y_test has labels {unknown[:5]} that y_train never uses")
        test = (test_raw[0], np.searchsorted(values, test_raw[1]).astype(np.int64))
    if names_in_file is not None and len(names_in_file) == int(values.max()) + 1 and values.min() >= 0:
        class_names = tuple(names_in_file[int(v)] for v in values)
    else:
        class_names = tuple(str(int(v)) for v in values)
    return (x_train, train_labels), test, class_names


def _npz_labels(path: Path, key: str, labels: np.ndarray, count: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != count:
        raise ValueError(f"{path}: {key} must be ({count},) integer class labels, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.equal(np.mod(labels, 1), 0)):
            return labels.astype(np.int64)
        raise ValueError(f"{path}: {key} must hold integer class labels, got {labels.dtype}")
    return labels.astype(np.int64)


def _npz_images(path: Path, key: str, array: np.ndarray, image_size: int | None) -> np.ndarray:
    """Any accepted image array -> ``uint8`` (N, C, S, S)."""
    x = np.asarray(array)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3):  # channels last (NumPy / Keras convention), preferred when ambiguous
            x = x.transpose(0, 3, 1, 2)
        elif x.shape[1] not in (1, 3):
            raise ValueError(f"{path}: {key} has shape {x.shape}; images must have 1 or 3 channels; expected {NPZ_LAYOUT}")
    else:
        raise ValueError(f"{path}: {key} has shape {x.shape}; expected {NPZ_LAYOUT}")
    if len(x) == 0:
        raise ValueError(f"{path}: {key} holds no images")
    if x.dtype == np.uint8:
        pixels = x
    elif np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer):
        low, high = float(x.min()), float(x.max())
        if low >= 0.0 and high <= 1.0 and np.issubdtype(x.dtype, np.floating):
            pixels = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        elif low >= 0.0 and high <= 255.0:
            pixels = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        else:
            raise ValueError(f"{path}: {key} values span [{low:g}, {high:g}]; store uint8 pixels or floats in [0, 1]")
    else:
        raise ValueError(f"{path}: {key} has dtype {x.dtype}; store uint8 pixels or floats in [0, 1]")
    height, width = pixels.shape[2], pixels.shape[3]
    side = min(height, width)
    target = image_size or side
    if (height, width) == (target, target):
        return np.ascontiguousarray(pixels)
    from PIL import Image

    check_fits_in_memory(len(pixels), pixels.shape[1], target, f"{path}'s {key}")
    resized = np.empty((len(pixels), pixels.shape[1], target, target), dtype=np.uint8)
    for i, image in enumerate(pixels):
        planes = [np.asarray(_square(Image.fromarray(plane), target)) for plane in image]
        resized[i] = np.stack(planes)
    return resized


def _square(image: object, size: int) -> object:
    """Resize the shorter side to ``size`` (bilinear, antialiased) and centre-crop a square."""
    from PIL import Image

    assert isinstance(image, Image.Image)
    width, height = image.size
    scale = size / min(width, height)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_width, new_height) != (width, height):
        image = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
    left, top = (new_width - size) // 2, (new_height - size) // 2
    return image.crop((left, top, left + size, top + size))


# --------------------------------------------------------------------------- image folders


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _read_image_folder(path: Path, image_size: int | None) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None, tuple[str, ...]]:
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder; expected {IMAGEFOLDER_LAYOUT}")
    train_root, test_root = _split_folders(path)
    class_dirs = _class_folders(train_root)
    if len(class_dirs) < 2:
        raise ValueError(
            f"{train_root}: found {len(class_dirs)} class folder(s); expected {IMAGEFOLDER_LAYOUT} with at least 2 classes "
            "(or a CIFAR-10 folder holding cifar-10-batches-py/)"
        )
    class_names = tuple(d.name for d in class_dirs)
    train_files = _labelled_files(train_root, class_names)
    test_files = _labelled_files(test_root, class_names) if test_root is not None else None
    if test_files == []:  # a test split of 0 images failed a whole training at its end
        assert test_root is not None
        raise ValueError(f"{test_root} holds no images of the classes in {train_root.name}/; put the held-out images there, or remove the empty folder to carve a test split from {train_root.name}/")
    all_files = [f for f, _ in train_files] + ([f for f, _ in test_files] if test_files else [])
    size = image_size or _default_image_size(all_files)
    check_fits_in_memory(len(all_files), 3, size, f"the images of {path}")
    train_images, train_labels, train_gray = _decode_images(train_files, size)
    test = None
    all_gray = train_gray
    if test_files is not None:
        test_images, test_labels, test_gray = _decode_images(test_files, size)
        all_gray = all_gray and test_gray
    if all_gray:
        # Every image is grayscale: keep one channel (see the module docstring).
        train_images = np.ascontiguousarray(train_images[:, :1])
        if test_files is not None:
            test_images = np.ascontiguousarray(test_images[:, :1])
    if test_files is not None:
        test = (test_images, test_labels)
    return (train_images, train_labels), test, class_names


TEST_FOLDERS = ("test", "val")  # the held-out split's folder beside train/ (val/: ImageNet's layout)


def _split_folders(path: Path) -> tuple[Path, Path | None]:
    """The training folder and the held-out one of an image folder: ``path/train`` and
    ``path/test`` (or ``path/val``, or none) when ``path`` holds ``train/`` and nothing else but
    those; otherwise ``path`` itself holds the class folders."""
    folders = {p.name for p in _class_folders(path)}
    if "train" not in folders or not folders <= {"train", *TEST_FOLDERS}:
        return path, None
    held_out = [name for name in TEST_FOLDERS if name in folders]
    if len(held_out) > 1:
        raise ValueError(f"{path}: holds both test/ and val/ beside train/; keep one as the held-out split (the other is carved from train/)")
    return path / "train", (path / held_out[0]) if held_out else None


def _labelled_files(root: Path, class_names: tuple[str, ...]) -> list[tuple[Path, int]]:
    found = {d.name: d for d in _class_folders(root)}
    extra = sorted(set(found) - set(class_names))
    if extra:
        raise ValueError(f"{root}: class folders {extra} do not appear in the training folder")
    files: list[tuple[Path, int]] = []
    empty = []
    for label, name in enumerate(class_names):
        members = _image_files(found[name]) if name in found else []
        if not members and name in found:
            empty.append(name)
        files.extend((f, label) for f in members)
    if empty:
        raise ValueError(f"{root}: class folder(s) {', '.join(empty)} hold no images ({', '.join(IMAGE_EXTENSIONS)}); expected {IMAGEFOLDER_LAYOUT}")
    return files


def _default_image_size(files: list[Path]) -> int:
    from PIL import Image, UnidentifiedImageError

    sides = []
    for f in files:
        try:
            with Image.open(f) as image:  # reads the header only
                sides.append(min(image.size))
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{f}: not an image Pillow can read ({error}); remove or replace it") from None
    return int(min(MAX_DEFAULT_IMAGE_SIZE, np.median(sides)))


def _decode_images(files: list[tuple[Path, int]], size: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """RGB ``uint8`` (N, 3, S, S), labels, and whether every image was grayscale."""
    from PIL import Image, UnidentifiedImageError

    images = np.empty((len(files), 3, size, size), dtype=np.uint8)
    labels = np.empty(len(files), dtype=np.int64)
    gray = True
    for i, (f, label) in enumerate(files):
        try:
            with Image.open(f) as image:
                mode = image.mode
                rgb = image.convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{f}: not an image Pillow can read ({error}); remove or replace it") from None
        gray = gray and mode in ("L", "1", "I", "I;16", "LA", "F")
        images[i] = np.asarray(_square(rgb, size)).transpose(2, 0, 1)
        labels[i] = label
    return images, labels, gray

