"""Which data a run's result, or a weights file, was trained and validated on.

``nas-train`` and ``netadapt refine`` of a search's ``best.json`` (or a NetAdapt run's
``refined.json``) load the data that run loaded, where no data option was typed
(:func:`take_data_options`), so that they validate on the images the run held out and never on
images its weights were trained on. Typed options that change that split, and ``--weights`` that
``nas-train`` trained on another split (its ``.metrics.json`` says which), get a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilenas.runs import option_text, read_json, run_data_options, run_of, take_run_data_options
from mobilenas.space.io import is_path


@dataclass(frozen=True)
class TakenData:
    """What :func:`take_data_options` did: the run's ``kind``, the options it took (those not at
    their defaults) and the typed ones that are not the run's, ``{key: (typed, run's)}``."""

    kind: str
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

    def split_note(self, subject: str, use: str) -> str | None:
        """The note for typed options that differ from the run's, where the run's own weights are
        the start; ``use`` says what this command does with the data (``fine-tunes and validates on``)."""
        if not self.differing:
            return None
        said = ", ".join(
            f"{option_text(k, mine)} where the {self.who} had {option_text(k, theirs).removeprefix('no ')}" if theirs is not None
            else f"{option_text(k, mine)} where the {self.who} had none"
            for k, (mine, theirs) in self.differing.items()
        )
        if "dataset" in self.differing or "data_dir" in self.differing:
            why = f"{subject}'s weights were trained on other data than this run {use}"
        else:
            why = (f"this run's validation images are not the ones the run that wrote {subject} held out, and its weights were trained on some "
                   "of them, so validation accuracies read high; leave these options out to use that run's split")
        return f"note: {said}: {why}"


def take_data_options(spec: str, values: dict[str, Any], typed: list[str], defaults: dict[str, Any]) -> TakenData | None:
    """Give ``values`` the data options of the run that wrote ``spec`` (a search's best.json, a
    NetAdapt run's refined.json, or their folder) where none was typed
    (:func:`mobilenas.runs.take_run_data_options`); ``None`` where ``spec`` is no such run's.
    A typed data set that names the run's files another way does not count as differing."""
    if not is_path(spec.strip()):
        return None
    path = Path(spec.strip()).expanduser()
    found = take_run_data_options(path, values, typed, defaults)
    if found is None:
        return None
    kind, taken, differing = found
    if {"dataset", "data_dir"} & set(differing) and _same_files(values, run_data_options(path)):
        differing = {k: v for k, v in differing.items() if k not in ("dataset", "data_dir")}
    return TakenData(kind, taken, differing)


def _same_files(values: dict[str, Any], run: tuple[str, dict[str, Any]] | None) -> bool:
    """Whether ``values``' data set and ``run``'s are the same files: ``cifar10 --data-dir ~/data``
    and ``~/data/cifar-10-batches-py``."""
    from mobilenas.train.data import data_location

    if run is None:
        return False
    try:
        return data_location(values["dataset"], values["data_dir"]) == data_location(run[1]["dataset"], run[1]["data_dir"])
    except ValueError:  # one of them names nothing that is there
        return False


def in_run(weights: str | Path | None, spec: str) -> bool:
    """Whether ``weights`` lie in the folder of the run that wrote ``spec``: the run's own weights
    (a search's trial weights, a NetAdapt run's refined.pt), trained on its split."""
    if weights is None or not is_path(spec.strip()):
        return False
    found = run_of(Path(spec.strip()).expanduser())
    if found is None:
        return False
    return Path(weights).expanduser().resolve().is_relative_to(found[0].resolve())


def weights_data_note(weights: Path, summary: dict[str, Any], use: str) -> str | None:
    """A note when ``weights`` are a nas-train result (its ``.metrics.json`` beside them) trained on
    other data, or on another validation split, than ``summary`` (:meth:`DataSplits.summary`) of the
    data this run ``use``s: its decisions would rest on accuracies of images the weights were
    trained on (or of another task). ``None`` where they match or nothing is known of them."""
    if not weights.name.endswith(".pt"):
        return None
    try:
        trained = read_json(weights.with_name(weights.name[: -len(".pt")] + ".metrics.json"))
        theirs = trained["dataset"]
        split = (theirs["description"], theirs["seed"], theirs["sizes"]["val"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not a nas-train result (or no longer readable)
    ours = (summary["description"], summary["seed"], summary["sizes"]["val"])
    if split == ours:
        return None
    if split[0] != ours[0]:
        return f"note: the weights {weights} were trained on other data ({theirs['name']}, by nas-train) than this run {use} ({summary['name']})"
    return (f"note: the weights {weights} were trained by nas-train with --seed {split[1]} and {split[2]:,} validation images; this run validates on another split"
            f" (--seed {ours[1]}, {ours[2]:,} images), part of which those weights were trained on, so validation accuracies read high; give --seed {split[1]}"
            f" and --val-size {split[2]} for theirs")
