"""Pareto fronts of accuracy (up) against latency (down), and their hypervolume.

Used by the search to write ``pareto.csv`` and by :mod:`mobilenas.results` for plots and
comparisons across runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pareto_mask(accuracy: Sequence[float] | np.ndarray, latency_ms: Sequence[float] | np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated points (higher accuracy, lower latency are better).

    A point is dominated when another is at least as good in both and better in one. Of exact
    duplicates, the first is kept. NaNs are never on the front.
    """
    acc = np.asarray(accuracy, dtype=float)
    lat = np.asarray(latency_ms, dtype=float)
    if acc.shape != lat.shape:
        raise ValueError(f"accuracy and latency differ in length ({acc.shape} vs {lat.shape})")
    valid = np.isfinite(acc) & np.isfinite(lat)
    mask = np.zeros(acc.shape, dtype=bool)
    # Sort by latency ascending, then accuracy descending; sweep keeping the best accuracy so far.
    order = np.lexsort((-acc, lat))
    best = -np.inf
    for i in order:
        if not valid[i]:
            continue
        if acc[i] > best:
            mask[i] = True
            best = acc[i]
    return mask


def hypervolume(accuracy: Sequence[float], latency_ms: Sequence[float], reference: tuple[float, float]) -> float:
    """Area dominated by the front and bounded by ``reference = (accuracy_ref, latency_ref_ms)``.

    Only points better than the reference in both objectives count (accuracy above, latency
    below). Units: accuracy times milliseconds.
    """
    acc_ref, lat_ref = reference
    acc = np.asarray(accuracy, dtype=float)
    lat = np.asarray(latency_ms, dtype=float)
    keep = pareto_mask(acc, lat) & (acc > acc_ref) & (lat < lat_ref)
    points = sorted(zip(lat[keep], acc[keep], strict=True))  # latency ascending, accuracy ascending
    area = 0.0
    for i, (latency, accuracy_i) in enumerate(points):
        next_latency = points[i + 1][0] if i + 1 < len(points) else lat_ref
        area += (next_latency - latency) * (accuracy_i - acc_ref)
    return float(area)
