"""Progress of the long parts of an evaluation (feature extraction, classifier epochs).

Off unless `evaluate(..., progress=True)` (the command line) turns it on for its duration. On a
terminal it is a bar redrawn in place; otherwise (a log file, a pipe) a plain line at most every
`interval` seconds and one when the part ends, so a log shows the run is alive.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

_ENABLED: contextvars.ContextVar[bool] = contextvars.ContextVar("eval_progress", default=False)
_BAR = 30


@contextlib.contextmanager
def reporting(enabled: bool = True) -> Iterator[None]:
    """Show progress (or not) inside the block."""
    token = _ENABLED.set(enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """`label`'s progress through `total` units (batches, epochs); silent unless reporting."""

    def __init__(
        self,
        label: str,
        total: int,
        stream: TextIO | None = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.interval, self.clock = label, max(total, 1), interval, clock
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _ENABLED.get()
        self.tty = self.enabled and self.stream.isatty()
        self.done = 0
        self.started = self.last = clock()

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = self.clock()
        if self.tty:
            filled = _BAR * self.done // self.total
            bar = "#" * filled + "." * (_BAR - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
            self.stream.flush()
        elif now - self.last >= self.interval and self.done < self.total:
            self.last = now
            percent = 100 * self.done // self.total
            self.stream.write(
                f"{self.label}: {self.done}/{self.total} ({percent}%), "
                f"elapsed {_duration(now - self.started)}\n"
            )
            self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        elapsed = _duration(self.clock() - self.started)
        self.stream.write(f"{chr(13) if self.tty else ''}{self.label}: done in {elapsed}\n")
        self.stream.flush()
