"""The built-in procedural data set ("synthetic"): ten shape classes drawn on noisy backgrounds.

Nothing is downloaded or cached: every image is drawn from a seed with NumPy, vectorised, so a
few thousand images take a fraction of a second (about 0.1 s per 1,000 images on one core; the
default 7,000 of ``load_dataset("synthetic")`` took 0.7-0.9 s on a busy 2-core machine).

What it draws (32x32 RGB, ``uint8``), one shape per image, the class being the shape:

====  ===============  ===================================================================
 0    disk             a filled circle
 1    ring             an annulus (circle outline)
 2    square           a filled square
 3    frame            a square outline
 4    triangle         a filled equilateral triangle
 5    cross            a plus sign (an "x" once rotated)
 6    ellipse          a filled ellipse with aspect ratio 2.2-3
 7    pair             two small disks side by side
 8    half-disk        a filled half circle
 9    striped disk     a disk filled with parallel stripes
====  ===============  ===================================================================

Every class concept is invariant to rotation and mirroring, so random flips are a valid
augmentation. Nuisances make it learnable but not trivial: random position (the shape's centre
anywhere in the middle 60%), size (radius 6-12 px), rotation (up to 30 degrees either way), mirroring,
mild anisotropic stretch (0.8-1.25), random colours (a light shape, each channel 0.55-1, on a
dark background, each channel 0-0.45, at least 0.4 apart), a random linear background gradient,
up to two distractor dots of random colour (radius 1-2.2 px, each present with probability 0.4,
which resemble a small disk or a pair), and Gaussian pixel noise (sigma 3-12 of 255). Small
sizes make square/disk/triangle and ring/frame hard to tell apart, so no network reaches 100%
quickly.

Accuracy the reference networks reach on it (``benchmarks/train_synthetic.md``, validation, 4,000
training images, AdamW, one thread): after the default proxy (20 steps of 32 images) 0.195-0.215
(mobilenetv2, mnasnet-a1/b1, mobilenetv3-large/small; chance is 0.10), after 40 steps 0.29-0.40,
after 200 steps 0.80-0.90 (mobilenetv2 0.896, mobilenetv3-large 0.881, mnasnet-a1 0.870,
mobilenetv3-small 0.806, mnasnet-b1 0.801).
"""

from __future__ import annotations

import numpy as np

CLASS_NAMES = (
    "disk",
    "ring",
    "square",
    "frame",
    "triangle",
    "cross",
    "ellipse",
    "pair",
    "half-disk",
    "striped-disk",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 32
IN_CHANNELS = 3
CHUNK = 1000  # images drawn per generator; a multiple of NUM_CLASSES keeps every chunk balanced
MIN_CONTRAST = 0.4  # minimum L2 distance between foreground and background colour (RGB in [0, 1])
MAX_ROTATION = np.pi / 6  # radians either way
# Shapes are light on a dark background (per-channel ranges, in 0..1): with free polarity a
# short training learns far less (mobilenetv3-small, 40 steps of 32: 20% instead of 30%).
FOREGROUND_RANGE = (0.55, 1.0)
BACKGROUND_RANGE = (0.0, 0.45)


def _signed_distance(label: int, u: np.ndarray, v: np.ndarray, radius: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Approximate signed distance (pixels, negative inside) of class ``label`` in shape coordinates.

    ``u``, ``v``: (n, H, W) coordinates relative to the shape centre, already rotated/stretched.
    ``radius``: (n, 1, 1) the shape's size.
    """
    n = u.shape[0]
    r = np.sqrt(u * u + v * v)
    if label == 0:  # disk
        return r - radius
    if label == 1:  # ring
        width = np.maximum(1.0, 0.22 * radius)
        return np.abs(r - 0.8 * radius) - width
    if label == 2:  # square: side about 1.6 radius, so its area is close to the disk's
        half = 0.85 * radius
        return np.maximum(np.abs(u), np.abs(v)) - half
    if label == 3:  # frame
        half = 0.85 * radius
        width = np.maximum(1.0, 0.2 * radius)
        return np.abs(np.maximum(np.abs(u), np.abs(v)) - 0.85 * half) - width
    if label == 4:  # equilateral triangle: intersection of three half planes
        inradius = 0.55 * radius
        d = v - inradius  # bottom edge at v = inradius (v grows downwards)
        for angle in (2.0 * np.pi / 3.0, 4.0 * np.pi / 3.0):
            d = np.maximum(d, np.sin(angle) * u + np.cos(angle) * v - inradius)
        return d
    if label == 5:  # cross
        arm = np.maximum(1.2, 0.28 * radius)
        bar_h = np.maximum(np.abs(u) - radius, np.abs(v) - arm)
        bar_v = np.maximum(np.abs(v) - radius, np.abs(u) - arm)
        return np.minimum(bar_h, bar_v)
    if label == 6:  # ellipse: distance approximated by scaling the normalised radius
        aspect = rng.uniform(2.2, 3.0, size=(n, 1, 1))
        a = radius
        b = radius / aspect
        return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * b
    if label == 7:  # pair of disks
        small = 0.45 * radius
        offset = 0.75 * radius
        left = np.sqrt((u + offset) ** 2 + v * v) - small
        right = np.sqrt((u - offset) ** 2 + v * v) - small
        return np.minimum(left, right)
    if label == 8:  # half-disk, flat side through the centre
        return np.maximum(r - radius, v - 0.0)
    if label == 9:  # striped disk: the stripes are gaps of background inside the disk
        period = np.maximum(3.0, 0.55 * radius)
        phase = rng.uniform(0.0, 1.0, size=(n, 1, 1))
        stripe = np.abs(((u / period + phase) % 1.0) - 0.5) * period - 0.25 * period
        return np.maximum(r - radius, -stripe)
    raise AssertionError(label)


def _blend(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> None:
    """In place: ``image = image * (1 - alpha) + colour * alpha`` (alpha (n, H, W), image (n, 3, H, W))."""
    delta = colour - image
    delta *= alpha[:, None]
    image += delta


def _draw_chunk(num_images: int, rng: np.random.Generator, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    scale = image_size / IMAGE_SIZE
    labels = np.arange(num_images, dtype=np.int64) % NUM_CLASSES
    rng.shuffle(labels)
    n = num_images
    s = image_size

    centre = rng.uniform(0.2 * s, 0.8 * s, size=(n, 2)).astype(np.float32)
    radius = rng.uniform(6.0, 12.0, size=n).astype(np.float32) * scale
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION, size=n).astype(np.float32)
    stretch = np.exp(rng.uniform(np.log(0.8), np.log(1.25), size=n)).astype(np.float32)
    mirror = rng.random(n) < 0.5

    foreground = FOREGROUND_RANGE[0] + (FOREGROUND_RANGE[1] - FOREGROUND_RANGE[0]) * rng.random((n, 3), dtype=np.float32)
    background = BACKGROUND_RANGE[0] + (BACKGROUND_RANGE[1] - BACKGROUND_RANGE[0]) * rng.random((n, 3), dtype=np.float32)
    # Push colours apart where they are too close, so the shape is always visible.
    gap = foreground - background
    distance = np.linalg.norm(gap, axis=1, keepdims=True)
    direction = np.where(distance > 1e-3, gap / np.maximum(distance, 1e-6), np.float32(1.0 / np.sqrt(3.0)))
    push = np.maximum(0.0, MIN_CONTRAST - distance)
    foreground = np.clip(foreground + 0.5 * push * direction, 0.0, 1.0)
    background = np.clip(background - 0.5 * push * direction, 0.0, 1.0)

    coords = np.arange(s, dtype=np.float32) + 0.5
    y = np.broadcast_to(coords[None, :, None], (n, s, s))
    x = np.broadcast_to(coords[None, None, :], (n, s, s))
    dx = x - centre[:, 0, None, None]
    dy = y - centre[:, 1, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (cos * dx + sin * dy) * stretch[:, None, None]
    v = (-sin * dx + cos * dy) / stretch[:, None, None]
    u = np.where(mirror[:, None, None], -u, u)

    distance_field = np.empty((n, s, s), dtype=np.float32)
    for label in range(NUM_CLASSES):
        index = np.nonzero(labels == label)[0]
        if index.size:
            distance_field[index] = _signed_distance(label, u[index], v[index], radius[index, None, None], rng)
    # Anti-aliased coverage: one pixel of linear ramp across the edge.
    alpha = np.clip(0.5 - distance_field / max(scale, 1.0), 0.0, 1.0)

    gradient = rng.uniform(-0.25, 0.25, size=(n, 2, 1, 1)).astype(np.float32)
    ramp = gradient[:, 0] * (x / s - 0.5) + gradient[:, 1] * (y / s - 0.5)
    image = background[:, :, None, None] + ramp[:, None]

    # Distractor dots: up to two small blobs of random colours on the background.
    for _dot in range(2):
        present = rng.random(n) < 0.4
        dot_centre = rng.uniform(0.05 * s, 0.95 * s, size=(n, 2)).astype(np.float32)
        dot_radius = rng.uniform(1.0, 2.2, size=n).astype(np.float32) * scale
        dot = np.sqrt((x - dot_centre[:, 0, None, None]) ** 2 + (y - dot_centre[:, 1, None, None]) ** 2) - dot_radius[:, None, None]
        dot_alpha = np.clip(0.5 - dot, 0.0, 1.0) * present[:, None, None]
        dot_colour = rng.random((n, 3), dtype=np.float32)[:, :, None, None]
        _blend(image, dot_colour, dot_alpha)

    _blend(image, foreground[:, :, None, None], alpha)
    noise_sigma = rng.uniform(3.0, 12.0, size=(n, 1, 1, 1)).astype(np.float32) / 255.0
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    noise *= noise_sigma
    image += noise
    image *= 255.0
    pixels = np.clip(np.rint(image, out=image), 0, 255, out=image).astype(np.uint8)
    return pixels, labels


def make_synthetic(num_images: int, seed: int = 0, *, image_size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``num_images`` images, classes balanced.

    Returns ``(images, labels)``: ``uint8`` array of shape (N, 3, S, S) and ``int64`` (N,), all
    determined by ``seed``. Images are drawn in chunks of 1,000 (each class 100 times, shuffled)
    from generators seeded by ``(seed, chunk)``, so the first ``k`` images do not depend on
    ``num_images`` and the working memory stays small. ``image_size`` scales every geometric
    quantity, so larger images show the same scenes at a finer resolution.
    """
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    images = np.empty((num_images, IN_CHANNELS, image_size, image_size), dtype=np.uint8)
    labels = np.empty(num_images, dtype=np.int64)
    for chunk, start in enumerate(range(0, num_images, CHUNK)):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED, chunk]))
        stop = min(num_images, start + CHUNK)
        # Always draw a whole chunk so a prefix is the same whatever num_images is.
        chunk_images, chunk_labels = _draw_chunk(CHUNK, rng, image_size)
        images[start:stop] = chunk_images[: stop - start]
        labels[start:stop] = chunk_labels[: stop - start]
    return images, labels


DESCRIPTION = (
    "synthetic: built-in procedural shapes (disk, ring, square, frame, triangle, cross, ellipse, pair, "
    "half-disk, striped disk) at random position, size, rotation and colours, with distractor dots, "
    "background gradients and pixel noise; 10 classes, 32x32 RGB, drawn from the seed"
)
