"""Runtime failures of a pretraining run that the command line reports as one line."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """A training step's loss or gradients were NaN or infinite more often than allowed.

    Raised before the optimiser step, so the weights and the checkpoints on disk stay finite;
    the message is one line naming the step, the loss components and the last good checkpoint.
    """
