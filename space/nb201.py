"""The NAS-Bench-201 cell space (Dong & Yang 2020): a DAG of 4 nodes, one operation per edge.

Node ``j`` sums one operation applied to every earlier node ``i < j``; node 0 is the cell input
and the last node its output. With 4 nodes there are 6 edges, decided in the order of the
NAS-Bench-201 string, each among 5 operations::

    |op~0|+|op~0|op~1|+|op~0|op~1|op~2|
     1<-0   2<-0  2<-1   3<-0  3<-1  3<-2

``op~i`` on the ``j``-th group is the operation on the edge from node ``i`` into node ``j``. The
decision paths are ``edge_1<-0``, ``edge_2<-0``, ... in that order. An architecture is its string
(the key of the tabular benchmarks); :class:`CellSpace` has the duck-typed interface of
:class:`mobilenas.space.SearchSpace` where it makes sense (``decisions``, ``size``, ``sample``,
``encode``/``decode``, ``neighbours``, ``validate``, JSON and a fingerprint), with strings in
place of :class:`~mobilenas.space.Architecture` values.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobilenas.errors import SpecError
from mobilenas.space.search_space import Decision, check_index_vector, check_rng

NB201_OPERATIONS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
CELL_SCHEMA_VERSION = 1
CELL_KIND = "cell"
_OPERATION_NAME = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class CellSpace:
    """A cell space: ``num_nodes`` nodes, one operation from ``operations`` per edge ``j<-i``.

    The defaults are NAS-Bench-201's (4 nodes, 6 edges, 5 operations, 15,625 cells). The
    operation ``none`` (a zero) is what lets a cell drop edges; a cell whose output cannot be
    reached from its input through non-``none`` edges is still a member (tabular benchmarks list
    it) and :meth:`is_connected` tells them apart.
    """

    name: str = "nb201"
    operations: tuple[str, ...] = NB201_OPERATIONS
    num_nodes: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "operations", tuple(self.operations))
        if not isinstance(self.name, str) or not self.name:
            raise SpecError("name", "expected a non-empty string")
        if isinstance(self.num_nodes, bool) or not isinstance(self.num_nodes, int) or self.num_nodes < 2:
            raise SpecError("num_nodes", f"a cell needs a whole number >= 2 of nodes, got {self.num_nodes!r}")
        if not self.operations:
            raise SpecError("operations", "a cell space needs at least one operation")
        for i, operation in enumerate(self.operations):
            if not isinstance(operation, str) or not _OPERATION_NAME.match(operation):
                raise SpecError(f"operations[{i}]", f"an operation name is letters, digits and '_', got {operation!r}")
        if len(set(self.operations)) != len(self.operations):
            raise SpecError("operations", "operation names must be distinct")
        edges = tuple((j, i) for j in range(1, self.num_nodes) for i in range(j))
        object.__setattr__(self, "_edges", edges)
        object.__setattr__(self, "_decisions", tuple(Decision(f"edge_{j}<-{i}", self.operations) for j, i in edges))

    # ----------------------------------------------------------------- decisions

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """``(to_node, from_node)`` per decision, in string order."""
        return self._edges  # type: ignore[attr-defined]

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """One decision per edge, in string order."""
        return self._decisions  # type: ignore[attr-defined]

    def paths(self) -> list[str]:
        """Every decision's path (``edge_1<-0``...), in string order."""
        return [d.path for d in self.decisions]

    def size(self) -> int:
        """Number of cells (``len(operations) ** num_edges``)."""
        return math.prod(len(d.options) for d in self.decisions)

    def check_indices(self, indices: Sequence[int]) -> tuple[int, ...]:
        """``indices`` as ints, one in range per edge (as :meth:`mobilenas.space.SearchSpace.check_indices`)."""
        values = check_index_vector(indices, self.decisions)
        if len(values) != len(self.decisions):
            raise SpecError("indices", f"expected {len(self.decisions)} indices for space {self.name!r}, got {len(values)}")
        for decision, index in zip(self.decisions, values, strict=True):
            if not 0 <= index < len(decision.options):
                raise SpecError(decision.path, f"index {index} out of range 0..{len(decision.options) - 1}")
        return values

    def values(self, indices: Sequence[int]) -> dict[str, str]:
        """Decision path -> chosen operation."""
        return {d.path: d.options[i] for d, i in zip(self.decisions, self.check_indices(indices), strict=True)}

    # ----------------------------------------------------------------- strings

    def decode(self, indices: Sequence[int]) -> str:
        """The cell string (NAS-Bench-201 notation) of one operation index per edge."""
        chosen = self.check_indices(indices)
        groups: list[list[str]] = [[] for _ in range(self.num_nodes - 1)]
        for (j, i), index in zip(self.edges, chosen, strict=True):
            groups[j - 1].append(f"{self.operations[index]}~{i}")
        return "+".join("|" + "|".join(group) + "|" for group in groups)

    def encode(self, arch: str) -> tuple[int, ...]:
        """One operation index per edge; raises ``SpecError`` naming the edge that is wrong."""
        if not isinstance(arch, str):
            raise SpecError("arch", f"expected a cell string like {self.decode([0] * len(self.decisions))!r}, got {type(arch).__name__}")
        text = arch.strip()
        groups = text.split("+")
        if len(groups) != self.num_nodes - 1:
            raise SpecError("arch", f"expected {self.num_nodes - 1} '+'-separated node groups, got {len(groups)} in {arch!r}")
        indices = []
        for j, group in enumerate(groups, start=1):
            if len(group) < 2 or not group.startswith("|") or not group.endswith("|"):
                raise SpecError(f"node_{j}", f"a node group is written |op~0|op~1|...|, got {group!r}")
            tokens = group[1:-1].split("|")
            if len(tokens) != j:
                raise SpecError(f"node_{j}", f"node {j} has {j} incoming edges, got {len(tokens)} in {group!r}")
            for i, token in enumerate(tokens):
                path = f"edge_{j}<-{i}"
                operation, tilde, source = token.partition("~")
                if not tilde or source != str(i):
                    raise SpecError(path, f"expected '<operation>~{i}', got {token!r}")
                if operation not in self.operations:
                    raise SpecError(path, f"{operation!r} is not one of {', '.join(self.operations)}")
                indices.append(self.operations.index(operation))
        return tuple(indices)

    def normalise(self, arch: str) -> str:
        """The canonical string of ``arch`` (validated; surrounding whitespace removed)."""
        return self.decode(self.encode(arch))

    def validate(self, arch: str) -> None:
        """Raise ``SpecError`` (naming the edge) unless ``arch`` is in the space."""
        self.encode(arch)

    def contains(self, arch: str) -> bool:
        """Whether ``arch`` is a cell string of this space (:meth:`validate` says what is wrong)."""
        try:
            self.encode(arch)
        except SpecError:
            return False
        return True

    def fingerprint_of(self, arch: str) -> str:
        """The key that identifies a cell (its canonical string): what de-duplication compares."""
        return self.normalise(arch)

    # ----------------------------------------------------------------- sampling and neighbours

    def sample_indices(self, rng: np.random.Generator) -> tuple[int, ...]:
        """One uniformly random operation index per edge, drawn from ``rng`` (a numpy Generator)."""
        check_rng(rng)
        return tuple(int(rng.integers(len(d.options))) for d in self.decisions)

    def sample(self, rng: np.random.Generator) -> str:
        """A uniformly random cell."""
        return self.decode(self.sample_indices(rng))

    def neighbour_indices(self, indices: Sequence[int]) -> Iterator[tuple[int, ...]]:
        """Index vectors that differ from ``indices`` on exactly one edge."""
        chosen = self.check_indices(indices)
        for d, decision in enumerate(self.decisions):
            for option in range(len(decision.options)):
                if option != chosen[d]:
                    yield (*chosen[:d], option, *chosen[d + 1:])

    def neighbours(self, arch: str) -> list[str]:
        """Cells that differ from ``arch`` in the operation of exactly one edge."""
        return [self.decode(indices) for indices in self.neighbour_indices(self.encode(arch))]

    def all_indices(self) -> Iterator[tuple[int, ...]]:
        """Every index vector, in lexicographic order."""
        return itertools.product(*(range(len(d.options)) for d in self.decisions))

    def is_connected(self, arch: str, empty_operations: Sequence[str] = ("none",)) -> bool:
        """Whether the output node is reachable from the input through non-empty operations."""
        indices = self.encode(arch)
        reached = {0}
        for (j, i), index in sorted(zip(self.edges, indices, strict=True)):
            if i in reached and self.operations[index] not in empty_operations:
                reached.add(j)
        return self.num_nodes - 1 in reached

    def extremes(self) -> tuple[str, str]:
        """The cells made of every edge's first operation and of every edge's last operation."""
        return (self.decode([0] * len(self.decisions)), self.decode([len(self.operations) - 1] * len(self.decisions)))

    # ----------------------------------------------------------------- serialisation

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``kind: cell``), which :meth:`from_dict` reads back."""
        return {"schema_version": CELL_SCHEMA_VERSION, "kind": CELL_KIND, "name": self.name, "operations": list(self.operations), "num_nodes": self.num_nodes}

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    def fingerprint(self) -> str:
        """A stable 16-hex-digit identity of the space (sha256 of its canonical JSON)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]

    def layout_fingerprint(self) -> str:
        """:meth:`fingerprint` (a cell's networks have no class count or input channels to leave
        out, as :meth:`mobilenas.space.SearchSpace.layout_fingerprint` does)."""
        return self.fingerprint()

    def is_builtin(self) -> bool:
        """Whether this is NAS-Bench-201's space unchanged (as :meth:`mobilenas.space.SearchSpace.is_builtin`)."""
        return self == CellSpace()

    def describe_name(self) -> str:
        """The name, and ``(edited copy 3f2a9c1e)`` (the start of its fingerprint) for an edited ``nb201``."""
        return f"{self.name} (edited copy {self.fingerprint()[:8]})" if self.name == "nb201" and not self.is_builtin() else self.name

    @classmethod
    def from_dict(cls, data: Any) -> CellSpace:
        """Parse :meth:`to_dict`'s form, rejecting unknown keys; a :class:`SpecError` names the key."""
        if not isinstance(data, dict):
            raise SpecError("", f"expected a mapping, got {type(data).__name__}")
        known = ("schema_version", "kind", "name", "operations", "num_nodes")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise SpecError(unknown[0], f"unknown key (known: {', '.join(known)})")
        missing = [key for key in known if key not in data]
        if missing:
            raise SpecError(missing[0], "missing")
        if data["schema_version"] != CELL_SCHEMA_VERSION:
            raise SpecError("schema_version", f"this mobilenas reads cell space schema version {CELL_SCHEMA_VERSION}, got {data['schema_version']!r}")
        if data["kind"] != CELL_KIND:
            raise SpecError("kind", f"expected {CELL_KIND!r}, got {data['kind']!r}")
        if not isinstance(data["operations"], list):
            raise SpecError("operations", "expected a list of operation names")
        return cls(name=data["name"], operations=tuple(data["operations"]), num_nodes=data["num_nodes"])

    @classmethod
    def from_json(cls, text: str) -> CellSpace:
        """Parse :meth:`to_json`'s text (read ``show --space nb201 --json`` output with
        :func:`mobilenas.space.load_space`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError("", f"not valid JSON ({error.msg} at line {error.lineno})") from None
        return cls.from_dict(data)


def nb201_space() -> CellSpace:
    """NAS-Bench-201's space: 4 nodes, 6 edges, 5 operations (15,625 cells)."""
    return CellSpace()
