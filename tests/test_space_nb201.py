from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobilenas.errors import SpecError
from mobilenas.space.nb201 import NB201_OPERATIONS, CellSpace, nb201_space

SPACE = nb201_space()
# Row 1 of nb201_cifar10_dev.csv.gz, as NAS-Bench-201 writes it.
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def index_vectors(space: CellSpace) -> st.SearchStrategy[tuple[int, ...]]:
    return st.tuples(*(st.integers(0, len(d.options) - 1) for d in space.decisions))


def test_decisions_are_the_six_edges_in_string_order() -> None:
    assert SPACE.paths() == ["edge_1<-0", "edge_2<-0", "edge_2<-1", "edge_3<-0", "edge_3<-1", "edge_3<-2"]
    assert all(d.options == NB201_OPERATIONS for d in SPACE.decisions)
    assert NB201_OPERATIONS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert SPACE.size() == 5**6 == 15625
    assert SPACE.edges == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def test_decode_writes_nas_bench_201_notation() -> None:
    indices = SPACE.encode(EXAMPLE)
    assert indices == (3, 3, 4, 1, 3, 1)
    assert SPACE.decode(indices) == EXAMPLE
    assert SPACE.values(indices)["edge_2<-1"] == "avg_pool_3x3"
    assert SPACE.decode([0] * 6) == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert SPACE.extremes() == ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|")


@settings(max_examples=100, deadline=None)
@given(index_vectors(SPACE))
def test_encode_decode_round_trip(indices: tuple[int, ...]) -> None:
    arch = SPACE.decode(indices)
    assert SPACE.encode(arch) == indices
    assert SPACE.contains(arch) and SPACE.normalise(f"  {arch}\n") == arch


@settings(max_examples=30, deadline=None)
@given(index_vectors(SPACE))
def test_neighbours_differ_in_exactly_one_edge(indices: tuple[int, ...]) -> None:
    arch = SPACE.decode(indices)
    neighbours = SPACE.neighbours(arch)
    assert len(neighbours) == len(set(neighbours)) == 6 * 4
    for neighbour in neighbours:
        assert sum(a != b for a, b in zip(SPACE.encode(neighbour), indices, strict=True)) == 1


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("|nor_conv_3x3~0|+|none~0|none~1|", "arch: expected 3 '\\+'-separated node groups, got 2"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "edge_1<-0: 'conv' is not one of none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3"),
        ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", "edge_2<-1: expected '<operation>~1', got 'none~2'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node_2: node 2 has 2 incoming edges, got 1"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node_1: a node group is written"),
        ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", "edge_1<-0: expected '<operation>~0', got 'none'"),
    ],
)
def test_bad_strings_name_the_edge(arch: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        SPACE.validate(arch)
    assert not SPACE.contains(arch)


def test_bad_indices_name_the_edge() -> None:
    with pytest.raises(SpecError, match=r"edge_2<-1: index 5 out of range 0..4"):
        SPACE.decode((0, 0, 5, 0, 0, 0))
    with pytest.raises(SpecError, match="expected 6 indices"):
        SPACE.decode((0, 0))
    with pytest.raises(SpecError, match="expected a cell string"):
        SPACE.encode(3)  # type: ignore[arg-type]


def test_sampling_is_seeded_and_uniform() -> None:
    first = [SPACE.sample(np.random.default_rng(0)) for _ in range(3)]
    assert first == [SPACE.sample(np.random.default_rng(0)) for _ in range(3)]
    rng = np.random.default_rng(1)
    counts = np.zeros((6, 5))
    for _ in range(3000):
        for d, i in enumerate(SPACE.sample_indices(rng)):
            counts[d, i] += 1
    assert np.all(np.abs(counts / 3000 - 0.2) < 0.03)


def test_connectivity() -> None:
    assert SPACE.is_connected(EXAMPLE)
    assert not SPACE.is_connected(SPACE.decode([0] * 6))
    # Only the direct edge 3<-0 carries anything.
    assert SPACE.is_connected("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    # 0 -> 1 -> 3.
    assert SPACE.is_connected("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|avg_pool_3x3~1|none~2|")
    # 0 -> 1 -> 2, but node 3 listens to nothing.
    assert not SPACE.is_connected("|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|none~1|none~2|")
    # Closed form: connected iff one of the four input-output paths (3<-0; 1<-0,3<-1; 2<-0,3<-2;
    # 1<-0,2<-1,3<-2) has no 'none' edge. NAS-Bench-201 has 341 cells without such a path.
    disconnected = [ix for ix in SPACE.all_indices() if not SPACE.is_connected(SPACE.decode(ix))]
    assert disconnected == [
        ix for ix in SPACE.all_indices() if not (ix[3] or (ix[0] and ix[4]) or (ix[1] and ix[5]) or (ix[0] and ix[2] and ix[5]))
    ]
    assert len(disconnected) == 341


def test_json_round_trip_and_fingerprint() -> None:
    again = CellSpace.from_json(SPACE.to_json())
    assert again == SPACE and again.fingerprint() == SPACE.fingerprint()
    small = CellSpace(name="tiny-cell", operations=("none", "skip_connect", "nor_conv_3x3"), num_nodes=3)
    assert small.size() == 27 and small.paths() == ["edge_1<-0", "edge_2<-0", "edge_2<-1"]
    assert small.fingerprint() != SPACE.fingerprint()
    assert CellSpace.from_dict(small.to_dict()) == small
    assert small.decode((2, 0, 1)) == "|nor_conv_3x3~0|+|none~0|skip_connect~1|"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"schema_version": 1, "kind": "cell", "name": "x", "operations": ["none"], "num_nodes": 4, "extra": 1}, "extra: unknown key"),
        ({"schema_version": 1, "kind": "cell", "name": "x", "operations": ["none"]}, "num_nodes: missing"),
        ({"schema_version": 2, "kind": "cell", "name": "x", "operations": ["none"], "num_nodes": 4}, "schema_version: this mobilenas reads"),
        ({"schema_version": 1, "kind": "stages", "name": "x", "operations": ["none"], "num_nodes": 4}, "kind: expected 'cell'"),
        ({"schema_version": 1, "kind": "cell", "name": "x", "operations": ["a~b"], "num_nodes": 4}, r"operations\[0\]: an operation name is"),
        ({"schema_version": 1, "kind": "cell", "name": "x", "operations": ["a", "a"], "num_nodes": 4}, "operation names must be distinct"),
        ({"schema_version": 1, "kind": "cell", "name": "x", "operations": ["a"], "num_nodes": 1}, "num_nodes: a cell needs"),
    ],
)
def test_bad_space_json(data: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        CellSpace.from_dict(data)
