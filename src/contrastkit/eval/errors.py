"""The one error type of evaluation, so the command line can report it as a single line."""


class EvaluationError(ValueError):
    """An evaluation cannot run: a bad checkpoint, spec, protocol or option; one-line message."""
