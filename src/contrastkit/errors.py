"""The one base of every error contrastkit reports as a single line, with its exit code.

Each error names the offending value and what would be valid; the command line prints its
message as one line and exits with `exit_code`: 2 for bad input (arguments, configuration,
data on disk), 1 for a valid run that failed, 130 for an interrupted one. The subclasses live
beside the code that raises them and keep their names there.
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


class ContrastkitError(Exception):
    """An error with a one-line message; `exit_code` says what kind (bad input by default)."""

    exit_code: int = EXIT_BAD_INPUT


class DataError(ContrastkitError, ValueError):
    """A dataset on disk cannot be used as it is; the message names the file or class."""


class TrainingInterruptedError(ContrastkitError):
    """A run stopped by Ctrl-C after saving `last.ckpt` at the interrupted step."""

    exit_code = EXIT_INTERRUPTED
