"""Resolve what a user typed into an :class:`Architecture`.

Accepted everywhere an architecture is asked for (``mobilenas show``, ``nas-latency measure``,
``nas-train``, ``netadapt refine``):

* a reference name, optionally with a width multiplier: ``mobilenetv2``, ``mobilenetv3-small@0.75``;
* a JSON file holding an architecture, or a result file (``best.json``, ``refined.json``) with an
  ``architecture`` key;
* the one-line block notation (``stem_k3_s2_c16_nhs | ... | head_...``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mobilenas.errors import SpecError, did_you_mean
from mobilenas.space.arch import Architecture
from mobilenas.space.references import REFERENCES, reference

# A NAS-Bench-201 cell string, "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|": a row of a tabular benchmark.
_CELL = re.compile(r"(\|[^|~\s]+~\d+)+\|(\+(\|[^|~\s]+~\d+)+\|)*")


def _from_notation(text: str, where: str) -> Architecture:
    if _CELL.fullmatch(text.strip()):
        raise ValueError(
            f"{where}{text.strip()!r} is a cell of a tabular benchmark (NAS-Bench-201), not a network mobilenas "
            "can build, train, measure or prune; use the best.json of a network search"
        )
    return Architecture.from_notation(text)


def architecture_from_obj(data: Any, where: str) -> Architecture:
    """An architecture from parsed JSON: the architecture itself or a result with ``architecture``."""
    if isinstance(data, dict) and "architecture" in data and "stem" not in data:
        inner = data["architecture"]
        if isinstance(inner, str):
            if "|" in inner:
                return _from_notation(inner, f"{where}: its architecture ")
            raise ValueError(f"{where}: its architecture {inner!r} is a cell of a tabular space, not a network mobilenas can build")
        if not isinstance(inner, dict):
            raise SpecError(f"{where}: architecture", f"expected an object (stem, stages, head) or a notation string, got {type(inner).__name__}")
        data = inner
    elif _holds_space(data):
        raise SpecError(where, "a search space (or a file that holds one), not an architecture: show its decisions with mobilenas show --space FILE")
    elif isinstance(data, dict) and not {"schema_version", "stem", "stages", "head"} & set(data):
        keys = ", ".join(repr(k) for k in list(data)[:6]) or "none"
        raise SpecError(where, f"neither an architecture nor a result that holds one (a best.json or refined.json has 'architecture'); its keys: {keys}")
    if not isinstance(data, dict):
        raise SpecError(where, f"expected an architecture (an object with stem, stages and head) or a result holding one, got a JSON {type(data).__name__}")
    try:
        return Architecture.from_dict(data)
    except SpecError as error:
        raise SpecError(f"{where}: {error.path}" if error.path else where, error.message) from None


def _json_of_weights(path: Path) -> str:
    """Where the architecture of the weights or model at ``path`` is: only files that are there."""
    trial = re.fullmatch(r"trial-(\d+)", path.stem)
    if trial and path.parent.name == "weights":  # a search run's trial: best.json only if it is the best's
        run = path.parent.parent
        try:
            best = json.loads((run / "best.json").read_text()).get("number")
        except (OSError, ValueError, AttributeError):
            best = None
        if best != int(trial.group(1)):
            return f"trial {int(trial.group(1))}'s architecture is the notation in its row of {run / 'trials.csv'} (give that, quoted)"
    candidates = [path.with_suffix(".json")] + [folder / name for folder in (path.parent, path.parent.parent) for name in RESULT_FILES]
    found = list(dict.fromkeys(str(c) for c in candidates if c.is_file()))
    return f"give the architecture JSON it belongs to ({', '.join(found) if found else 'a best.json, refined.json or the .json its training wrote'})"


def _holds_space(data: Any) -> bool:
    """A search space's JSON, ``mobilenas show --space NAME --json`` output or a search run's
    manifest.json (the last two hold the space under ``space``)."""
    if isinstance(data, dict) and isinstance(data.get("space"), dict) and "architecture" not in data:
        data = data["space"]
    stages = data.get("stages") if isinstance(data, dict) else None
    return isinstance(stages, list) and bool(stages) and isinstance(stages[0], dict) and "base_channels" in stages[0]


def is_path(spec: str | Path) -> bool:
    """Whether ``spec`` names an existing file or folder, not block notation or a reference name.

    Notation (it has ``|``) is never a path, and text too long for a file name is none either.
    """
    text = str(spec).strip()
    if "|" in text:
        return False
    try:
        return Path(text).expanduser().exists()
    except OSError:  # e.g. ENAMETOOLONG
        return False


RESULT_FILES = ("best.json", "refined.json")


def read_text_file(path: Path, what: str, hint: Callable[[], str] | None = None) -> str:
    """The text of a JSON file the user named; a one-line ``ValueError`` naming ``path`` where it is
    not text (an .onnx, a .pt, an image), read as text it was "'utf-8' codec can't decode byte
    0xb6". ``what`` says what it should have been (``a space JSON file``); ``hint()``, if given,
    adds where the right file may be."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        beside = f"; {hint()}" if hint is not None else ""
        raise ValueError(f"{path}: not {what} (it is not text){beside}") from None


def result_file(path: Path) -> Path:
    """A run folder's result (its ``best.json`` or NetAdapt's ``refined.json``); any other path as given."""
    if path.is_dir():
        return next((path / name for name in RESULT_FILES if (path / name).is_file()), path)
    return path


def result_input_size(spec: str | Path) -> int | None:
    """The input size a search's best.json or a NetAdapt run's refined.json (or the run folder
    holding one) is for, the size its latency is of: the last dimension of its
    ``preprocessing.input_shape``; None for any other architecture."""
    text = str(spec).strip()
    if not is_path(text):
        return None
    try:
        data = json.loads(result_file(Path(text).expanduser()).read_text())
        size = data["preprocessing"]["input_shape"][-1]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def load_architecture(spec: str | Path, *, num_classes: int | None = None) -> Architecture:
    """Resolve a reference name, a JSON file or a notation string (see the module docstring).

    Raises ``ValueError`` (a :class:`SpecError` for a malformed architecture) with a one-line
    message naming what was given; ``TypeError`` for a ``spec`` that is neither text nor a path.
    """
    if not isinstance(spec, str | Path):
        raise TypeError(f"spec: expected a reference name, a notation string or a path, got {type(spec).__name__}")
    text = str(spec).strip()
    if not text:
        raise ValueError("no architecture given (an empty name): give a reference such as mobilenetv3-small, a notation string or an architecture JSON file")
    if "|" in text:
        arch = _from_notation(text, "")
    elif text.split("@")[0] in REFERENCES:
        arch = reference(text)
    else:
        path = Path(text).expanduser()
        if path.is_symlink() and not path.exists():
            raise ValueError(f"{text!r} is a link to nothing (it points to {path.readlink()}, which does not exist); give the architecture JSON file itself")
        if not is_path(text) and (path.suffix.lower() == ".json" or "/" in text or "\\" in text):  # meant as a file
            raise ValueError(f"{text}: no such file (and neither a reference, {', '.join(REFERENCES)}, nor a notation string); give an existing architecture JSON file")
        if not is_path(text):
            raise ValueError(
                f"{text!r} is neither a reference ({', '.join(REFERENCES)}), a notation string, nor an existing JSON file"
                + did_you_mean(text.split("@")[0], REFERENCES)
            )
        path = result_file(path)
        if path.is_dir():
            if (path / "manifest.json").is_file():  # a run that has no result yet
                try:
                    kind = json.loads((path / "manifest.json").read_text()).get("kind")
                except (OSError, ValueError, AttributeError):
                    kind = None
                resume = {"search": "nas-search --resume", "netadapt": "netadapt refine --resume"}.get(str(kind), "--resume")
                raise ValueError(f"{text!r} is a run without a result yet (no best.json or refined.json); let it finish, or continue it: {resume} {text}")
            raise ValueError(f"{text!r} is a directory without a best.json or refined.json; give an architecture JSON file")
        weights = path.suffix in (".onnx", ".pt")
        content = read_text_file(path, "an architecture JSON file", (lambda: _json_of_weights(path)) if weights else None)
        try:
            data = json.loads(content)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
        arch = architecture_from_obj(data, str(path))
    if num_classes is not None and arch.head.num_classes != num_classes:
        arch = arch.with_num_classes(num_classes)
    return arch
