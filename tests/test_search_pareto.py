from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobilenas.search.pareto import hypervolume, pareto_mask


def test_front_by_hand() -> None:
    acc = [0.5, 0.6, 0.55, 0.7, 0.7, 0.4]
    lat = [10, 12, 11, 20, 25, 9]
    # (9, .4) (10, .5) (11, .55) (12, .6) (20, .7) are on the front; (25, .7) is dominated.
    assert pareto_mask(acc, lat).tolist() == [True, True, True, True, False, True]


def test_nan_is_never_on_the_front() -> None:
    assert pareto_mask([0.9, float("nan")], [1.0, 0.5]).tolist() == [True, False]


def test_hypervolume_by_hand() -> None:
    # reference (0.0, 30 ms); front (10, .5), (20, .7): 10*0.5 + 10*0.7 = 12
    assert hypervolume([0.5, 0.7, 0.4], [10, 20, 25], (0.0, 30.0)) == pytest.approx(10 * 0.5 + 10 * 0.7)
    assert hypervolume([0.5], [40], (0.0, 30.0)) == 0.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0.1, 100)), min_size=1, max_size=30))
def test_front_points_are_not_dominated(points) -> None:
    acc = np.array([p[0] for p in points])
    lat = np.array([p[1] for p in points])
    mask = pareto_mask(acc, lat)
    assert mask.any()
    for i in np.flatnonzero(mask):
        dominated = (acc >= acc[i]) & (lat <= lat[i]) & ((acc > acc[i]) | (lat < lat[i]))
        assert not dominated.any()
    for i in np.flatnonzero(~mask):
        at_least = (acc >= acc[i]) & (lat <= lat[i]) & mask
        assert at_least.any()
