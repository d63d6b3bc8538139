"""The one error type of evaluation, so the command line can report it as a single line."""

from ..errors import ContrastkitError


class EvaluationError(ContrastkitError, ValueError):
    """An evaluation cannot run: a bad checkpoint, spec, protocol or option; one-line message."""
