"""Error types shared by every mobilenas package.

User mistakes raise :class:`SpecError` (a ``ValueError``) whose message names the offending
path and the allowed values; command-line entry points turn them into a one-line message and
exit code 2. ``assert`` is reserved for internal invariants.
"""

from __future__ import annotations

from collections.abc import Iterable


class SpecError(ValueError):
    """A value supplied by a user is invalid; ``path`` says where (``stages[3].blocks[1].kernel_size``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def under(self, prefix: str) -> SpecError:
        """The same error, with ``prefix`` prepended to its path."""
        if not prefix:
            return self
        path = f"{prefix}.{self.path}" if self.path and not self.path.startswith("[") else f"{prefix}{self.path}"
        return SpecError(path, self.message)


class UsageError(ValueError):
    """A command-line usage mistake (bad option value, missing file); exit code 2."""


class FolderGone(FileNotFoundError):
    """A run's folder deleted or moved while the command wrote in it; exit code 1, no resume hint
    (there is nothing left to resume)."""

    def __init__(self, folder: object) -> None:
        super().__init__(f"the folder {folder} is gone (deleted or moved while this ran): nothing more is written; what was in it went with it")


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate a misspelt ``word`` most likely meant, or None when none is close."""
    import difflib

    options = list(candidates)
    by_case = {option.lower(): option for option in options}
    if word.lower() in by_case:  # the right word in other case (CIFAR10, NB201)
        return by_case[word.lower()]
    found = difflib.get_close_matches(word.lower(), list(by_case), n=1, cutoff=0.75)
    return by_case[found[0]] if found else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a message about ``word``, or nothing when no candidate is close."""
    close = closest(word, candidates)
    return f" (did you mean {close!r}?)" if close else ""
