"""Progress of a comparison: one line per entry with elapsed time and an estimate of the rest,
and Lightning's per-run banners (GPU/TPU available, tips) silenced, since every entry repeats them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")


def duration(seconds: float) -> str:
    """`1h02m`, `3m05s` or `42s`."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class EntryProgress:
    """Log `entry K of N (name), elapsed T, ETA E` as each of `total` entries starts.

    The estimate is the mean time of the entries done so far times the entries left.
    """

    def __init__(
        self, total: int, log: Callable[[str], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total, self.log, self.clock = total, log, clock
        self.started = clock()
        self.done = -1

    def start(self, name: str) -> None:
        self.done += 1
        elapsed = self.clock() - self.started
        eta = duration(elapsed / self.done * (self.total - self.done)) if self.done else "unknown"
        self.log(
            f"entry {self.done + 1} of {self.total} ({name}), "
            f"elapsed {duration(elapsed)}, ETA {eta}"
        )

    def finish(self) -> None:
        self.log(f"{self.total} entries done in {duration(self.clock() - self.started)}")


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's informational lines off (warnings and errors still show), then restored."""
    import lightning.pytorch  # noqa: F401  its import sets these levels, which would undo ours

    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
