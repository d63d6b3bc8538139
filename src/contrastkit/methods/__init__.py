"""Methods: a backbone, heads and a loss, and which views meet which, as data."""

from .method import Embeddings, Method, StepOutput, build_method
from .spec import CONTRASTIVE_LOSSES, METHODS, MethodSpec, method_for_loss

__all__ = [
    "CONTRASTIVE_LOSSES",
    "METHODS",
    "Embeddings",
    "Method",
    "MethodSpec",
    "StepOutput",
    "build_method",
    "method_for_loss",
]
