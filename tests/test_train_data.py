"""Data sets: every kind from tiny generated files, the synthetic set, and the split rules."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mobilenas.train.data import load_dataset, stratified_split
from mobilenas.train.synthetic import CLASS_NAMES, make_synthetic

# --------------------------------------------------------------------------- helpers


def indexed_images(n: int, channels: int, size: int, offset: int = 0) -> np.ndarray:
    """``uint8`` (n, C, S, S) images whose first two pixels spell their index, so they can be traced."""
    rng = np.random.default_rng(offset)
    images = rng.integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)
    index = np.arange(offset, offset + n)
    images[:, 0, 0, 0] = index // 256
    images[:, 0, 0, 1] = index % 256
    return images


def identities(images: torch.Tensor) -> set[int]:
    return {int(a) * 256 + int(b) for a, b in zip(images[:, 0, 0, 0], images[:, 0, 0, 1], strict=True)}


def write_cifar(root: Path, per_batch: int = 20) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    all_images, all_labels = [], []
    for b in range(6):
        images = indexed_images(per_batch, 3, 32, offset=b * per_batch)
        labels = np.arange(per_batch) % 10
        name = f"data_batch_{b + 1}" if b < 5 else "test_batch"
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": images.reshape(per_batch, -1), "labels": labels.tolist(), "batch_label": name, "filenames": []}, handle)
        all_images.append(images)
        all_labels.append(labels)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch}, handle)
    return np.concatenate(all_images), np.concatenate(all_labels)


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_balanced_and_prefix_stable() -> None:
    a_images, a_labels = make_synthetic(1200, seed=3)
    b_images, b_labels = make_synthetic(1200, seed=3)
    assert a_images.shape == (1200, 3, 32, 32) and a_images.dtype == np.uint8
    assert np.array_equal(a_images, b_images) and np.array_equal(a_labels, b_labels)
    other, _ = make_synthetic(1200, seed=4)
    assert not np.array_equal(a_images, other)
    prefix, prefix_labels = make_synthetic(300, seed=3)
    assert np.array_equal(prefix, a_images[:300]) and np.array_equal(prefix_labels, a_labels[:300])
    counts = np.bincount(a_labels[:1000], minlength=len(CLASS_NAMES))
    assert (counts == 100).all()
    # Images are not constant and use the whole range: something is drawn on every one.
    assert (a_images.reshape(1200, -1).std(axis=1) > 3).all()


def test_synthetic_splits_sizes_and_disjoint_test_stream() -> None:
    data = load_dataset("synthetic", train_size=300, val_size=100, test_size=50, seed=1)
    assert data.sizes() == {"train": 300, "val": 100, "test": 50}
    assert (data.num_classes, data.input_size, data.in_channels) == (10, 32, 3)
    assert data.class_names == CLASS_NAMES and "procedural" in data.description
    combined = torch.bincount(torch.cat([data.train.labels, data.val.labels]), minlength=10)
    val_counts = torch.bincount(data.val.labels, minlength=10)
    assert ((val_counts - combined * 100 / 400).abs() < 1).all()  # stratified
    again = load_dataset("synthetic", train_size=300, val_size=100, test_size=80, seed=1)
    # Changing the test size leaves the training and validation images untouched.
    assert torch.equal(again.train.images, data.train.images) and torch.equal(again.val.images, data.val.images)
    small = load_dataset("synthetic", train_size=100, val_size=20, test_size=20, image_size=16)
    assert small.input_size == 16



def test_synthetic_validation_images_do_not_follow_the_training_size() -> None:
    """A search (default --train-size) and a nas-train or netadapt run with another --train-size
    validate on the same images, and neither trains on the other's validation images."""

    def rows(images: torch.Tensor) -> set[bytes]:
        return {bytes(row) for row in images.reshape(len(images), -1).numpy()}

    sizes = {"val_size": 100, "test_size": 10, "image_size": 8, "seed": 2}
    default = load_dataset("synthetic", **sizes)
    val = rows(default.val.images)
    for train_size in (150, 4000, 4500):
        other = load_dataset("synthetic", train_size=train_size, **sizes)
        assert len(other.train) == train_size
        assert torch.equal(other.val.images, default.val.images)
        assert not rows(other.train.images) & val
    fewer = load_dataset("synthetic", train_size=150, **sizes)
    assert rows(fewer.train.images) <= rows(default.train.images)  # a subset of the default training images
    assert (torch.bincount(fewer.train.labels, minlength=10) == 15).all()  # and a stratified one

# --------------------------------------------------------------------------- stratified splits


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=2, max_size=6),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 1000),
)
def test_stratified_split_partitions_and_keeps_proportions(counts: list[int], fraction: float, seed: int) -> None:
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(labels)
    total = len(labels)
    count = max(1, min(total - 1, round(fraction * total)))
    picked, rest = stratified_split(labels, count, seed)
    assert len(picked) == count
    assert sorted(np.concatenate([picked, rest]).tolist()) == list(range(total))
    for cls, n in enumerate(counts):
        got = int((labels[picked] == cls).sum())
        assert abs(got - n * count / total) < 1.0 + 1e-9
    again, _ = stratified_split(labels, count, seed)
    assert np.array_equal(picked, again)


def test_validation_is_carved_from_training_without_overlap(tmp_path: Path) -> None:
    images = indexed_images(200, 3, 16)
    labels = np.arange(200) % 4
    np.savez(tmp_path / "d.npz", x_train=images, y_train=labels, x_test=indexed_images(40, 3, 16, offset=500), y_test=np.arange(40) % 4)
    data = load_dataset(tmp_path / "d.npz", val_size=0.25, seed=7)
    train_ids, val_ids = identities(data.train.images), identities(data.val.images)
    assert len(val_ids) == 50 and len(train_ids) == 150
    assert not train_ids & val_ids and train_ids | val_ids == set(range(200))
    assert sorted(torch.bincount(data.val.labels).tolist()) == [12, 12, 13, 13]
    assert identities(data.test.images) == set(range(500, 540))
    same = load_dataset(tmp_path / "d.npz", val_size=0.25, seed=7)
    assert torch.equal(same.val.images, data.val.images)
    other = load_dataset(tmp_path / "d.npz", val_size=0.25, seed=8)
    assert identities(other.val.images) != val_ids
    subset = load_dataset(tmp_path / "d.npz", val_size=50, train_size=60, test_size=20, seed=7)
    assert subset.sizes() == {"train": 60, "val": 50, "test": 20}
    assert identities(subset.val.images) == val_ids  # subsetting the rest never moves the validation split


# --------------------------------------------------------------------------- CIFAR-10 layout


def test_cifar10_layout(tmp_path: Path) -> None:
    images, labels = write_cifar(tmp_path)
    for spec in (("cifar10", tmp_path), ("cifar10", tmp_path / "cifar-10-batches-py"), (str(tmp_path), None)):
        data = load_dataset(spec[0], data_dir=spec[1], val_size=20)
        assert data.name == "cifar10"
        assert data.sizes() == {"train": 80, "val": 20, "test": 20}
        assert data.class_names == tuple(f"class{i}" for i in range(10))
        assert (data.input_size, data.in_channels) == (32, 3)
    test_ids = identities(data.test.images)
    assert test_ids == set(range(100, 120))
    # Pixels arrive exactly as stored in the channel-planar rows.
    row = next(i for i in range(len(data.test)) if identities(data.test.images[i : i + 1]) == {105})
    assert torch.equal(data.test.images[row], torch.from_numpy(images[105]))
    assert int(data.test.labels[row]) == int(labels[105])
    # its own size only: another --image-size was ignored (the images stayed 32x32)
    assert load_dataset("cifar10", data_dir=tmp_path, val_size=20, image_size=32).input_size == 32
    with pytest.raises(ValueError, match=r"cifar10 is read at its own 32x32 .*--image-size resizes image folders"):
        load_dataset("cifar10", data_dir=tmp_path, val_size=20, image_size=64)


def test_cifar10_missing_or_malformed_names_the_layout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cifar-10-batches-py"):
        load_dataset("cifar10", data_dir=tmp_path / "nowhere")
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ValueError, match=r"missing data_batch_3.*cifar-10-batches-py"):
        load_dataset("cifar10", data_dir=tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"data_batch_3.*CIFAR-10"):
        load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(ValueError, match="needs a data directory"):
        load_dataset("cifar10")


# --------------------------------------------------------------------------- image folders


def write_folder(root: Path, mode: str, sizes: list[tuple[int, int]], per_class: int = 6) -> None:
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog", "emu")):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            width, height = sizes[(c + i) % len(sizes)]
            shape = (height, width) if mode == "L" else (height, width, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(folder / f"{i}.png")


def test_image_folder_rgb_of_mixed_sizes(tmp_path: Path) -> None:
    write_folder(tmp_path / "pets", "RGB", [(40, 30), (24, 24), (20, 36)])
    data = load_dataset("imagefolder", data_dir=tmp_path / "pets", val_size=3, test_size=3)
    assert data.class_names == ("cat", "dog", "emu")
    assert data.in_channels == 3 and data.input_size == 24  # median shorter side
    assert data.sizes() == {"train": 12, "val": 3, "test": 3}
    assert torch.bincount(data.test.labels).tolist() == [1, 1, 1]
    fixed = load_dataset(tmp_path / "pets", image_size=16, val_size=3)
    assert fixed.input_size == 16 and fixed.name == "pets"


def test_image_folder_gray_with_train_and_test_folders(tmp_path: Path) -> None:
    write_folder(tmp_path / "digits" / "train", "L", [(12, 12)], per_class=8)
    write_folder(tmp_path / "digits" / "test", "L", [(12, 12)], per_class=2)
    data = load_dataset(tmp_path / "digits", val_size=6)
    assert data.in_channels == 1 and data.input_size == 12
    assert data.sizes() == {"train": 18, "val": 6, "test": 6}
    rgb = load_dataset(tmp_path / "digits", val_size=6, channels=3)
    assert rgb.in_channels == 3 and torch.equal(rgb.train.images[:, 0], rgb.train.images[:, 2])


def test_image_folder_with_train_alone_or_beside_val(tmp_path: Path) -> None:
    # train/ without test/ was read as one class named 'train' ("found 1 class folder(s)")
    write_folder(tmp_path / "alone" / "train", "RGB", [(12, 12)], per_class=8)
    data = load_dataset(tmp_path / "alone", val_size=3, test_size=6)
    assert data.class_names == ("cat", "dog", "emu") and data.sizes() == {"train": 15, "val": 3, "test": 6}  # test carved
    # ImageNet's layout: train/ and val/, val/ the held-out split
    write_folder(tmp_path / "imagenet" / "train", "RGB", [(12, 12)], per_class=8)
    write_folder(tmp_path / "imagenet" / "val", "RGB", [(12, 12)], per_class=2)
    data = load_dataset(tmp_path / "imagenet", val_size=6)
    assert data.class_names == ("cat", "dog", "emu") and data.sizes() == {"train": 18, "val": 6, "test": 6}
    write_folder(tmp_path / "imagenet" / "test", "RGB", [(12, 12)], per_class=1)
    with pytest.raises(ValueError, match="holds both test/ and val/ beside train/"):
        load_dataset(tmp_path / "imagenet")
    # a class of its own named train, among others, is a class
    write_folder(tmp_path / "classes", "RGB", [(12, 12)], per_class=4)
    write_folder(tmp_path / "classes" / "train" / "x", "RGB", [(12, 12)], per_class=1)
    assert load_dataset(tmp_path / "classes", val_size=4, test_size=4).class_names == ("cat", "dog", "emu", "train")
    # an empty test/ beside train/ made a test split of 0 images, which failed a training at its end
    write_folder(tmp_path / "hollow" / "train", "RGB", [(12, 12)], per_class=8)
    (tmp_path / "hollow" / "test").mkdir()
    with pytest.raises(ValueError, match=r"hollow/test holds no images of the classes in train/; put the held-out images there, or remove the empty folder"):
        load_dataset(tmp_path / "hollow")


def test_a_carved_test_split_is_the_same_for_every_seed(tmp_path: Path) -> None:
    # it followed --seed: the images a search (seed 0) validated on were test images of nas-train --seed 1
    np.savez(tmp_path / "d.npz", x_train=indexed_images(120, 3, 8), y_train=np.arange(120) % 4)
    splits = {seed: load_dataset(tmp_path / "d.npz", seed=seed, val_size=12, test_size=12) for seed in (0, 1, 7)}
    tests = {seed: identities(data.test.images) for seed, data in splits.items()}
    assert tests[0] == tests[1] == tests[7] and len(tests[0]) == 12
    for data in splits.values():
        assert not tests[0] & (identities(data.train.images) | identities(data.val.images))
    assert identities(splits[0].val.images) != identities(splits[1].val.images)  # validation still follows the seed


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "one" / "only").mkdir(parents=True)
    with pytest.raises(ValueError, match="at least 2 classes"):
        load_dataset(tmp_path / "one")
    write_folder(tmp_path / "broken", "RGB", [(8, 8)])
    (tmp_path / "broken" / "cat" / "bad.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"bad.png.*Pillow"):
        load_dataset(tmp_path / "broken")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir(parents=True)
    with pytest.raises(ValueError, match="hold no images"):
        load_dataset("imagefolder", data_dir=tmp_path / "empty")


# --------------------------------------------------------------------------- .npz arrays


def test_npz_grayscale_and_rgb_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (60, 20, 20), dtype=np.uint8)
    np.savez(tmp_path / "gray.npz", x_train=gray, y_train=np.arange(60) % 3 + 5, x_test=gray[:9], y_test=np.arange(9) % 3 + 5)
    data = load_dataset(tmp_path / "gray.npz", val_size=12)
    assert (data.in_channels, data.input_size, data.num_classes) == (1, 20, 3)
    assert data.class_names == ("5", "6", "7") and set(data.train.labels.tolist()) == {0, 1, 2}

    nhwc = rng.integers(0, 256, (30, 10, 14, 3), dtype=np.uint8)  # non-square, channels last
    np.savez(tmp_path / "nhwc.npz", x_train=nhwc, y_train=np.arange(30) % 2)
    data = load_dataset("npz", data_dir=tmp_path / "nhwc.npz", val_size=4, test_size=6)
    assert (data.in_channels, data.input_size) == (3, 10)
    assert data.sizes() == {"train": 20, "val": 4, "test": 6}

    nchw = rng.random((30, 3, 16, 16)).astype(np.float32)  # floats in [0, 1]
    np.savez(tmp_path / "nchw.npz", x_train=nchw, y_train=np.arange(30) % 2, classes=np.array(["no", "yes"]))
    data = load_dataset(tmp_path / "nchw.npz", val_size=4, image_size=8)
    assert (data.in_channels, data.input_size, data.class_names) == (3, 8, ("no", "yes"))
    full = load_dataset(tmp_path / "nchw.npz", val_size=4)
    restored = full.train.images.float() / 255.0
    assert restored.shape[1:] == (3, 16, 16) and float(restored.max()) <= 1.0


def test_npz_errors_name_the_layout(tmp_path: Path) -> None:
    np.savez(tmp_path / "nolabels.npz", x_train=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"missing y_train.*x_train, y_train"):
        load_dataset(tmp_path / "nolabels.npz")
    np.savez(tmp_path / "range.npz", x_train=np.full((4, 8, 8), -3.0), y_train=np.arange(4) % 2)
    with pytest.raises(ValueError, match="uint8 pixels or floats in"):
        load_dataset(tmp_path / "range.npz")
    np.savez(tmp_path / "channels.npz", x_train=np.zeros((4, 8, 8, 5), np.uint8), y_train=np.arange(4) % 2)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        load_dataset(tmp_path / "channels.npz")
    np.savez(tmp_path / "scalar.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4) % 2, classes=np.array("cats"))
    with pytest.raises(ValueError, match=r"'classes' must be a list of class names \(1-D\), got an array of shape \(\)"):
        load_dataset(tmp_path / "scalar.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"cannot be read as a .npz"):
        load_dataset(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="leaves none"):
        np.savez(tmp_path / "tiny.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.arange(4) % 2)
        load_dataset(tmp_path / "tiny.npz", val_size=4)
    # more images than there are: refused by name (they used to be cut down to what there was)
    np.savez(tmp_path / "twenty.npz", x_train=np.zeros((20, 8, 8), np.uint8), y_train=np.arange(20) % 2,
             x_test=np.zeros((6, 8, 8), np.uint8), y_test=np.arange(6) % 2)
    # named as the commands (nas-train, netadapt, nas-search) take them: "train_size 500" was no option's name
    with pytest.raises(ValueError, match=r": --train-size 500 is more than the 18 training images left after the 2-image validation split; give at most 18"):
        load_dataset(tmp_path / "twenty.npz", train_size=500, val_size=2)
    with pytest.raises(ValueError, match=r": --test-size 7 is more than its 6 test images; give at most 6"):
        load_dataset(tmp_path / "twenty.npz", test_size=7)
    with pytest.raises(ValueError, match=r"leaves none of the 20 for training; give a smaller --val-size$"):
        load_dataset(tmp_path / "twenty.npz", val_size=20)
    assert len(load_dataset(tmp_path / "twenty.npz", train_size=18, val_size=2, test_size=6).train) == 18  # all of them is fine


def test_batches_are_normalised_with_training_statistics() -> None:
    data = load_dataset("synthetic", train_size=200, val_size=50, test_size=50)
    images = torch.cat([x for x, _ in data.train.batches(64)])
    assert images.dtype == torch.float32 and images.shape == (200, 3, 32, 32)
    assert torch.allclose(images.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-3)
    assert torch.allclose(images.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2)
    assert data.val.mean == data.train.mean and data.test.std == data.train.std


def test_preprocessing_says_where_the_accuracy_was_measured_at_another_size() -> None:
    """A CIFAR-10 proxy at 32 px for a 224 px deployment: the exported 224 px model is the one the
    latency is of, and its weights were never trained at that size (the shipped file scored near
    chance with the 224 px preprocessing alone)."""
    from mobilenas.train.data import preprocessing

    summary = load_dataset("synthetic", train_size=100, val_size=20, test_size=20).summary()
    assert "trained_at" not in preprocessing(summary, 32)
    deployed = preprocessing(summary, 224, adaptation=("stem.stride", "stages[1].blocks[0].stride"))
    assert deployed["input_shape"] == [1, 3, 224, 224]
    assert deployed["trained_at"]["input_size"] == 32 and deployed["trained_at"]["adaptation"] == ["stem.stride", "stages[1].blocks[0].stride"]
    assert "measured at 32x32 with stem.stride, stages[1].blocks[0].stride set to 1" in deployed["trained_at"]["note"]
    assert "nas-train --image-size 224, from an image folder or .npz" in deployed["trained_at"]["note"]
    assert preprocessing(summary, 224)["trained_at"]["adaptation"] is None  # a search's: each network its own
