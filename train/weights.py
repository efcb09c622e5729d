"""Weights files: write a state dict atomically, read one back from the files people have, and
load one into a model strictly with an error that names what does not fit.

``nas-train --weights`` starts a training from such a file; NetAdapt reads its input's weights and
writes every checkpoint with these functions.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from mobilenas.runs import atomic_write_bytes
from mobilenas.space.io import result_file
from mobilenas.units import listed

StateDict = dict[str, torch.Tensor]

# Keys under which training scripts commonly keep the model's state dict inside a checkpoint.
WRAPPER_KEYS = ("state_dict", "model", "model_state", "weights")


def save_weights(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """``torch.save`` of a state dict (on the CPU), written atomically."""
    buffer = io.BytesIO()
    torch.save({name: tensor.detach().cpu() for name, tensor in state.items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_weights(path: str | Path) -> StateDict:
    """A state dict from a file: a plain state dict, or a checkpoint holding one.

    Accepted wrappers: ``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_state": ...}``,
    ``{"weights": ...}`` (what training scripts commonly write).
    """
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.pt"))
        named = f" (it holds {listed(inside, 3)})" if inside else ""
        raise IsADirectoryError(f"{path} is a folder, not a weights file; give the .pt file inside it{named}")
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with warnings.catch_warnings():  # torch warns of a pickle protocol it may not read, then refuses it in its error
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: {_unreadable(error)}") from None
    if isinstance(data, dict):
        for key in WRAPPER_KEYS:
            if key in data and isinstance(data[key], dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path}: expected a state dict (parameter name -> tensor), or a checkpoint holding one under "
                         f"{', '.join(repr(k) for k in WRAPPER_KEYS)}; {_holds(data)}")
    return data


def _unreadable(error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in one clause (torch's own message
    is paragraphs long and advises unpickling, which mobilenas does not do)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    pickled = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if pickled:
        return (f"holds a pickled {pickled.group(1)} object, not only tensors (a whole model saved with torch.save(model)?); "
                "save model.state_dict() instead: mobilenas reads only tensors, since unpickling objects can run code")
    if "Weights only load failed" in text or "central directory" in text:
        return "not a torch weights file (written by torch.save), or a damaged or truncated one"
    if isinstance(error, OSError) and error.strerror:  # the file is there but cannot be read
        return f"cannot be read ({error.strerror})"
    # what torch's unpickler says of another kind of file ("pop from empty list") means nothing to its reader
    return "not a torch weights file (written by torch.save), or a damaged or truncated one"


def _holds(data: object) -> str:
    """What a loaded file holds instead of a state dict, for the error message."""
    if isinstance(data, dict):
        return f"it holds a dict with keys {listed([repr(str(k)) for k in data], 10)}" if data else "it holds an empty dict"
    return f"it holds a {type(data).__name__}"


def architecture_beside(weights_file: Path, state: Mapping[str, torch.Tensor]) -> Path | None:
    """The file beside ``weights_file`` whose architecture ``state`` fits (names and shapes):
    NetAdapt's ``refined.json`` beside ``refined.pt``, ``nas-train``'s ``<prefix>.metrics.json``
    beside ``<prefix>.pt``; ``None`` when there is none."""
    from mobilenas.space import Architecture
    from mobilenas.space.builder import build_model

    for candidate in (weights_file.with_suffix(".json"), weights_file.with_name(weights_file.stem + ".metrics.json")):
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
            expected = build_model(Architecture.from_dict(data["architecture"])).state_dict()
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if set(expected) == set(state) and all(tuple(expected[k].shape) == tuple(state[k].shape) for k in expected):
            return candidate
    return None


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], where: str = "the weights", *, weights_file: Path | None = None) -> None:
    """``model.load_state_dict(state)`` with every name and shape checked first; a ValueError
    names the first mismatched shape, missing and unexpected entry (``where`` says whose) and, where
    ``weights_file`` has the architecture it was saved with beside it, that file."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        details = []
        if mismatched:
            k = mismatched[0]
            details.append(f"{k} has shape {tuple(state[k].shape)}, the architecture needs {tuple(expected[k].shape)}")
        if missing:
            details.append(f"missing {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        if unexpected:
            details.append(f"unexpected {unexpected[0]}" + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))
        beside = architecture_beside(weights_file, state) if weights_file is not None else None
        hint = f"; they fit the architecture in {beside}, beside them: give that file as the architecture" if beside is not None else ""
        raise ValueError(f"{where} do not fit the architecture: {'; '.join(details)}{hint}")
    model.load_state_dict(state)


def locate_weights(given: Path, folder: Path) -> Path:
    """A result file's weights path: as written (absolute or relative to the working directory),
    relative to the result's folder, or inside that folder when the path names the run directory
    (nas-search writes ``results/runs/RUN/weights/...``, relative to where it ran). A file found is
    returned as an absolute path, so that a run recording it can resume from any folder."""
    if given.is_absolute() or given.exists():
        return given.absolute()
    if (folder / given).exists():
        return (folder / given).absolute()
    parts = given.parts
    if folder.name in parts:
        inside = folder.joinpath(*parts[len(parts) - parts[::-1].index(folder.name):])
        if inside.exists():
            return inside.absolute()
    return given


def result_weights(spec: str) -> Path | None:
    """The weights a result file names (a search's ``best.json``, NetAdapt's ``refined.json``, or
    the run folder holding one), located as :func:`locate_weights` does; ``None`` for any other input
    or a result without weights."""
    path = Path(spec).expanduser()
    try:  # OSError: a name no file system takes (block notation longer than a file name)
        if "|" in spec or not path.exists():
            return None
        path = result_file(path)
        if not (path.is_file() and path.suffix == ".json"):
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and "architecture" in data and isinstance(data.get("weights"), str) and data["weights"]):
        return None
    given = Path(data["weights"]).expanduser()
    recorded_run = data.get("run")
    if isinstance(recorded_run, str) and given.is_absolute() and given.is_relative_to(recorded_run):
        # the run's own weights, named where the run was: a run folder moved or copied since has them in it
        inside = path.parent / given.relative_to(recorded_run)
        if inside.is_file():
            return inside.absolute()
    return locate_weights(given, path.parent)
