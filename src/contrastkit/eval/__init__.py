"""Evaluation of pretrained encoders: linear (and a batched lr × weight-decay sweep),
logistic-regression, kNN and fine-tuning protocols, the seeds' protocols as named presets, and
the representation's geometry and label-free metrics, on frozen features extracted once and
cached.

`evaluate(spec, protocol)` runs one protocol on a checkpoint (or `random:<backbone>`) and writes
its JSON record; the pieces below it are public for tests and other tools. Lightning is never
imported here.
"""

from .accuracy import topk_accuracy
from .embedding_map import project_2d, save_embedding_map
from .encoder import RANDOM_PREFIX, Encoder, load_encoder
from .errors import EvaluationError
from .features import FEATURES, cache_path, extract_features
from .finetune import finetune_protocol
from .geometry import alignment_uniformity, effective_rank
from .knn import knn_classify, knn_protocol
from .linear import fit_linear, linear_protocol, train_linear
from .logreg import logreg_protocol, logreg_scores
from .metrics import metrics_protocol
from .options import OPTIONS, PROTOCOLS, protocol_options
from .presets import PRESETS
from .runner import default_out, evaluate
from .sweep import sweep_protocol, train_heads

__all__ = [
    "FEATURES",
    "OPTIONS",
    "PRESETS",
    "PROTOCOLS",
    "RANDOM_PREFIX",
    "Encoder",
    "EvaluationError",
    "alignment_uniformity",
    "cache_path",
    "default_out",
    "effective_rank",
    "evaluate",
    "extract_features",
    "finetune_protocol",
    "fit_linear",
    "knn_classify",
    "knn_protocol",
    "linear_protocol",
    "load_encoder",
    "logreg_protocol",
    "logreg_scores",
    "metrics_protocol",
    "project_2d",
    "protocol_options",
    "save_embedding_map",
    "sweep_protocol",
    "topk_accuracy",
    "train_heads",
    "train_linear",
]
