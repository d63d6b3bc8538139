"""Suite-wide settings."""

import torch

# Training flushes denormals to zero on CPU (see contrastkit.train.run); the tests that train do
# the same, or denormal arithmetic in the small CNN makes their steps an order slower.
torch.set_flush_denormal(True)
