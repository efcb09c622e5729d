"""A tabular benchmark as an evaluator: every architecture's scores looked up in a CSV.

The format is that of NAS-Bench-201 exports such as ``nb201_cifar10_dev.csv.gz``: one row per
architecture, a column with the architecture string (``arch_str``), accuracy columns in percent
(``val_acc_12ep``, ``test_acc_12ep``, ``test_acc_200ep``) and latency columns, one per device
(``latency_ms_<device>``). The file may be gzipped. The user names:

* the *reward* column, the accuracy a search selects by (default ``val_acc_12ep``, a cheap
  12-epoch proxy);
* the *final* column, reported only, never used for selection (default ``test_acc_200ep``);
* the *latency* column, i.e. the device (required when the file has several).

Accuracies are converted to fractions (``accuracy_unit="percent"``, the default) so they feed
the rewards of :mod:`mobilenas.search.rewards` directly. Look-ups are exact string matches after
stripping whitespace; use :class:`mobilenas.space.nb201.CellSpace` to build canonical strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mobilenas.errors import did_you_mean
from mobilenas.search.base import STATUS_FAILED, EvalResult, Evaluator
from mobilenas.units import listed

ACCURACY_UNITS = ("percent", "fraction")
DEFAULT_REWARD_COLUMN = "val_acc_12ep"
DEFAULT_FINAL_COLUMN = "test_acc_200ep"
MAX_COLUMNS_SHOWN = 20  # an error message lists at most this many of a table's columns
DEFAULT_ARCH_COLUMN = "arch_str"
LATENCY_PREFIX = "latency_ms"


@dataclass(frozen=True)
class TableEntry:
    """One architecture of the table; accuracies are fractions, ``None`` where the cell is empty."""

    arch: str
    row: int
    accuracy: float | None
    final_accuracy: float | None
    latency_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "row": self.row, "accuracy": self.accuracy, "final_accuracy": self.final_accuracy, "latency_ms": self.latency_ms}


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


class TabularEvaluator(Evaluator):
    """Looks candidates up in a tabular benchmark (cheap: runs in-process).

    ``evaluate(arch_str)`` returns the reward column as ``accuracy``, the final column as
    ``final_accuracy`` and the latency column as ``latency_ms``; an architecture with an empty
    reward or latency cell comes back with ``status='failed'``. An architecture that is not in
    the table at all raises ``ValueError`` (the table and the space do not match: a user error).
    """

    cheap = True

    def __init__(
        self,
        path: str | Path,
        reward_column: str = DEFAULT_REWARD_COLUMN,
        final_column: str = DEFAULT_FINAL_COLUMN,
        latency_column: str | None = None,
        arch_column: str = DEFAULT_ARCH_COLUMN,
        accuracy_unit: str = "percent",
    ) -> None:
        import pandas as pd

        self.path = Path(path)
        if accuracy_unit not in ACCURACY_UNITS:
            raise ValueError(f"accuracy_unit {accuracy_unit!r} is not one of {', '.join(ACCURACY_UNITS)}")
        if not self.path.exists():
            raise FileNotFoundError(f"tabular benchmark {self.path} does not exist (give the path of a CSV such as nb201_cifar10_dev.csv.gz)")
        if self.path.is_dir():
            raise IsADirectoryError(f"tabular benchmark {self.path} is a directory; give the CSV file inside it")
        try:
            frame = pd.read_csv(self.path, compression="infer")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"cannot read tabular benchmark {self.path} as CSV: {first}") from None
        columns = [str(c) for c in frame.columns]
        available = listed([c if len(c) <= 40 else c[:37] + "..." for c in columns], MAX_COLUMNS_SHOWN)
        if arch_column not in columns:
            raise ValueError(
                f"{self.path.name} is not a NAS-Bench-201-style table: it has no architecture column {arch_column!r} "
                f"(columns: {available}); give a CSV with arch_str, accuracy and latency_ms_* columns"
            )
        latency_columns = [c for c in columns if c.startswith(LATENCY_PREFIX)]
        if latency_column is None:
            if len(latency_columns) != 1:
                found = f"{len(latency_columns)} latency columns (devices): {', '.join(latency_columns)}" if latency_columns else f"no column named {LATENCY_PREFIX}*; columns: {available}"
                raise ValueError(f"choose the latency column (the device) of {self.path.name} with --latency-column (latency_column= from Python); it has {found}")
            latency_column = latency_columns[0]
        for role, column in (("architecture", arch_column), ("reward", reward_column), ("final", final_column), ("latency", latency_column)):
            if column not in columns:
                raise ValueError(f"{role} column {column!r} is not in {self.path.name}{did_you_mean(str(column), columns)}; available columns: {available}")
        # a device's latencies read as accuracies, or accuracies as milliseconds, give nonsense that runs
        # (a latency column of another name, a device of one's own, is the user's to name)
        for role, column in (("reward", reward_column), ("final", final_column)):
            if column.startswith(LATENCY_PREFIX):
                raise ValueError(f"{role} column {column!r} of {self.path.name} holds latencies, not accuracies: choose an accuracy column, e.g. {DEFAULT_REWARD_COLUMN} or {DEFAULT_FINAL_COLUMN}")
            if column == latency_column:
                devices = f"choose a device among {', '.join(latency_columns)}" if latency_columns else "choose the column of the device's latencies"
                raise ValueError(f"the latency column and the {role} column are both {column!r}: a column is latencies or accuracies; {devices}")
        self.arch_column = arch_column
        self.reward_column = reward_column
        self.final_column = final_column
        self.latency_column = latency_column
        self.accuracy_unit = accuracy_unit
        self.columns = tuple(columns)
        if len(frame) == 0:
            raise ValueError(f"tabular benchmark {self.path} has no rows")

        archs = frame[arch_column]
        if archs.isna().any():
            row = int(np.flatnonzero(archs.isna().to_numpy())[0])
            raise ValueError(f"{self.path.name}: row {row} has no architecture in column {arch_column!r}")
        self._archs = [str(a).strip() for a in archs]
        self._row_of: dict[str, int] = {}
        for row, arch in enumerate(self._archs):
            if arch in self._row_of:
                raise ValueError(f"{self.path.name}: architecture {arch!r} appears twice (rows {self._row_of[arch]} and {row})")
            self._row_of[arch] = row

        scale = 100.0 if accuracy_unit == "percent" else 1.0
        self._accuracy = self._numeric(frame, reward_column, scale)
        self._final = self._numeric(frame, final_column, scale)
        self._latency_ms = self._numeric(frame, latency_column, 1.0)
        for column, values in ((reward_column, self._accuracy), (final_column, self._final)):
            finite = values[~np.isnan(values)]
            if not finite.size:
                continue
            if finite.min() < 0 or finite.max() > 1:
                hint = ": are they percentages? use accuracy_unit='percent' (nas-search --accuracy-unit percent)" if accuracy_unit == "fraction" else ""
                raise ValueError(f"column {column!r} of {self.path.name} has accuracies outside 0..{int(scale)} {accuracy_unit}{hint}")
            if accuracy_unit == "percent" and finite.max() <= 0.01:
                # every accuracy at most 1%: fractions read as percent would silently be 100x too small
                raise ValueError(
                    f"column {column!r} of {self.path.name} holds fractions (all values <= 1), not percent: "
                    "use accuracy_unit='fraction' (nas-search --accuracy-unit fraction)"
                )
        finite_latency = self._latency_ms[~np.isnan(self._latency_ms)]
        if finite_latency.size and finite_latency.min() <= 0:
            raise ValueError(f"latency column {latency_column!r} of {self.path.name} has latencies <= 0 ms")

    def _numeric(self, frame: Any, column: str, scale: float) -> np.ndarray:
        import pandas as pd

        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"column {column!r} of {self.path.name} is not numeric (row {row}: {frame[column].iloc[row]!r})")
        return np.asarray(values.to_numpy(dtype=float) / scale, dtype=float)

    # ----------------------------------------------------------------- look-ups

    def __len__(self) -> int:
        return len(self._archs)

    def __contains__(self, arch: object) -> bool:
        return isinstance(arch, str) and arch.strip() in self._row_of

    def architectures(self) -> list[str]:
        """Every architecture string, in file order."""
        return list(self._archs)

    def row(self, arch: str) -> int:
        """The row of ``arch``; ``ValueError`` if the table does not list it."""
        key = arch.strip() if isinstance(arch, str) else arch
        try:
            return self._row_of[key]
        except (KeyError, TypeError):
            raise ValueError(
                f"architecture {arch!r} is not in {self.path.name} ({len(self)} architectures); check that the search space matches the table"
            ) from None

    def entry(self, arch: str) -> TableEntry:
        row = self.row(arch)
        return TableEntry(self._archs[row], row, _optional(self._accuracy[row]), _optional(self._final[row]), _optional(self._latency_ms[row]))

    def latency_ms(self, arch: str) -> float:
        """The latency column's value for ``arch`` (``ValueError`` if the cell is empty)."""
        value = self._latency_ms[self.row(arch)]
        if math.isnan(value):
            raise ValueError(f"architecture {arch!r} has no latency in column {self.latency_column!r}")
        return float(value)

    def evaluate(self, candidate: Any, seed: int = 0) -> EvalResult:
        """Look ``candidate`` (an architecture string) up; ``seed`` is ignored (one value per cell)."""
        entry = self.entry(candidate)
        info = {"row": entry.row, "table": self.path.name}
        if entry.accuracy is None or entry.latency_ms is None:
            missing = self.reward_column if entry.accuracy is None else self.latency_column
            return EvalResult(
                accuracy=0.0, final_accuracy=entry.final_accuracy, latency_ms=entry.latency_ms,
                status=STATUS_FAILED, error=f"no value in column {missing!r} for this architecture", info=info,
            )
        return EvalResult(accuracy=entry.accuracy, final_accuracy=entry.final_accuracy, latency_ms=entry.latency_ms, info=info)

    # ----------------------------------------------------------------- summaries for regret

    def _complete(self) -> np.ndarray:
        return ~np.isnan(self._accuracy) & ~np.isnan(self._latency_ms)

    def _latencies(self) -> np.ndarray:
        values = self._latency_ms[~np.isnan(self._latency_ms)]
        if not values.size:
            raise ValueError(f"latency column {self.latency_column!r} of {self.path.name} is empty")
        return values

    def fastest_latency_ms(self) -> float:
        """The lowest latency in the table (the tightest target a search can meet)."""
        return float(self._latencies().min())

    def fastest_scored_latency_ms(self) -> float:
        """The lowest latency among rows that also have a reward accuracy (infinity if none has):
        a target below it is met only by rows a search can but fail on."""
        complete = self._complete()
        return float(self._latency_ms[complete].min()) if complete.any() else math.inf

    def poor_within(self, target_latency_ms: float, share: float = 0.5) -> tuple[float, float, float] | None:
        """Where every row within the target has a reward accuracy below ``share`` of the table's
        best (cells that barely learn, as NAS-Bench-201's all-pooling or disconnected ones):
        ``(best within, best overall, the lowest latency of a row that reaches the share)``."""
        complete = self._complete()
        if not complete.any():
            return None
        accuracy, latency = self._accuracy[complete], self._latency_ms[complete]
        within = latency <= target_latency_ms
        top = float(accuracy.max())
        if not within.any() or float(accuracy[within].max()) >= share * top:
            return None
        return float(accuracy[within].max()), top, float(latency[accuracy >= share * top].min())

    def slowest_latency_ms(self) -> float:
        """The highest latency in the table (a target at or above it constrains nothing)."""
        return float(self._latencies().max())

    def latency_quantile(self, quantile: float) -> float:
        """A quantile of the latency column (0.25: a quarter of the architectures are at most this fast)."""
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"a quantile is in [0, 1], got {quantile!r}")
        values = self._latency_ms[~np.isnan(self._latency_ms)]
        return float(np.quantile(values, quantile))

    def best_feasible(self, target_latency_ms: float, by: str = "final") -> TableEntry | None:
        """The architecture with the highest ``final`` (or ``reward``) accuracy within the target.

        Only rows with a latency and both accuracies count; ``None`` when none meets the target.
        This is the oracle for regret: ``best_feasible(T).final_accuracy - chosen.final_accuracy``.
        """
        if by not in ("final", "reward"):
            raise ValueError(f"by {by!r} is not one of final, reward")
        values = self._final if by == "final" else self._accuracy
        mask = self._complete() & ~np.isnan(self._final) & (self._latency_ms <= target_latency_ms)
        if not mask.any():
            return None
        candidates = np.flatnonzero(mask)
        # Ties broken by the lower latency, then by file order, so the oracle is unique.
        order = np.lexsort((candidates, self._latency_ms[candidates], -values[candidates]))
        return self.entry(self._archs[int(candidates[order[0]])])

    def best_feasible_final_accuracy(self, target_latency_ms: float) -> float | None:
        """The best final accuracy (fraction) reachable within the target; ``None`` if none is."""
        best = self.best_feasible(target_latency_ms)
        return None if best is None else best.final_accuracy

    def fingerprint(self) -> str:
        """SHA-256 (first 16 hex digits) of the file's bytes, for the run manifest."""
        import hashlib

        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the table."""
        return {
            "path": str(self.path), "fingerprint": self.fingerprint(), "rows": len(self), "arch_column": self.arch_column, "reward_column": self.reward_column,
            "final_column": self.final_column, "latency_column": self.latency_column, "accuracy_unit": self.accuracy_unit,
        }
