"""Unreadable image files met while training: skipped, counted, named once, and bounded.

A folder of a million images usually holds a few broken files; stopping a run at the first one
wastes it, and skipping them silently hides a broken copy. So each is logged once by name, kept
for the checkpoint's metadata, and the run stops with one line when more than
``max_fraction`` of the dataset is unreadable.
"""

from __future__ import annotations

import logging

from ..errors import DataError

__all__ = ["DEFAULT_MAX_BAD_FRACTION", "BadFiles", "TooManyBadFilesError"]

DEFAULT_MAX_BAD_FRACTION = 0.01  # as PretrainConfig.max_bad_fraction's default

_log = logging.getLogger(__name__)


class TooManyBadFilesError(DataError):
    """More than the allowed fraction of a dataset's files cannot be read; one line."""


class BadFiles:
    """The unreadable files of a dataset of ``total`` files, each counted once."""

    def __init__(self, total: int, max_fraction: float) -> None:
        self.total = total
        self.max_fraction = max_fraction
        self.reasons: dict[str, str] = {}  # path -> why it could not be read

    def __len__(self) -> int:
        return len(self.reasons)

    def add(self, path: str, reason: str) -> None:
        """Record an unreadable file; raise TooManyBadFilesError past the allowed fraction."""
        if path in self.reasons:
            return
        self.reasons[path] = reason
        _log.warning("skipped unreadable file %s (%s); %d so far", path, reason, len(self))
        if len(self) > self.max_fraction * self.total:
            raise TooManyBadFilesError(
                f"{len(self)} of {self.total} training files are unreadable, more than "
                f"max_bad_fraction={self.max_fraction:g} allows (latest: {path}: {reason}); "
                "list them all with `contrastkit prepare DIR --check`, or raise max_bad_fraction"
            )

    def as_list(self) -> list[tuple[str, str]]:
        """(path, reason) pairs in the order met: plain strings, for a checkpoint."""
        return list(self.reasons.items())

    def restore(self, pairs: list[tuple[str, str]]) -> None:
        """Continue counting from a checkpoint's ``as_list()``, without logging again."""
        self.reasons.update((str(path), str(reason)) for path, reason in pairs)
