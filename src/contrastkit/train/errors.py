"""Runtime failures of a pretraining run that the command line reports as one line."""

from __future__ import annotations

from ..errors import EXIT_FAILURE, ContrastkitError


class NonFiniteLossError(ContrastkitError, RuntimeError):
    """A training step's loss or gradients were NaN or infinite more often than allowed.

    Raised before the optimiser step, so the weights and the checkpoints on disk stay finite;
    the message is one line naming the step, the loss components and the last good checkpoint.
    """

    exit_code = EXIT_FAILURE
