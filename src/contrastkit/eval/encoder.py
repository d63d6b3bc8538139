"""The encoder under evaluation: a pretraining checkpoint's backbone and projector, or a random
backbone, together with the facts of the data it is evaluated on."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data import canonical_name, default_cache_dir, holdout_split
from ..data.datasets import Stats
from ..data.presets import DataRecipe
from ..methods import Method
from ..models.backbones import Backbone, build_backbone
from ..models.weights import weight_mismatch
from ..train.backbone_config import check_backbone
from ..train.config import ConfigError, PretrainConfig
from ..train.factory import method_from_config
from .data import Images, load_split
from .errors import EvaluationError
from .resolution import check_view, resize_center_crop

RANDOM_PREFIX = "random:"
"""`random:<backbone>` specs name an untrained backbone: the floor every method should beat.
The backbone is a built-in name, `timm/<name>` or `torchvision/<name>` (with keyword arguments)."""

_METADATA = ("config", "channels", "image_size", "num_classes")


@dataclass
class Encoder:
    """A backbone, its projector (None for random and supervised encoders), and the data facts.

    `identity` names the weights in the feature cache: the checkpoint's resolved path, mtime and
    size, or `random:<backbone>:<seed>` (and its keyword arguments, if any), and the network and
    view when not the defaults. `resize`
    is the `image_size` to load the data with (as in pretraining; None keeps the stored size).
    `network` is `online` or `target` (the EMA target's backbone and projector); `view` is the
    evaluation images' (resize, centre crop) sides, (0, 0) for the images as trained.
    """

    backbone: Backbone
    projector: nn.Module | None
    spec: str
    checkpoint: Path | None
    identity: str
    method: str | None
    dataset: str
    data_dir: str | None
    cache_dir: Path
    resize: int | None
    image_size: int
    channels: int
    num_classes: int
    # (mean, std) per channel the backbone was trained with or the data's measured ones; None:
    # the dataset preset's
    normalization: tuple[Stats, Stats] | None = None
    holdout: float | None = None  # evaluate on the last fraction of each class of train/
    network: str = "online"
    view: tuple[int, int] = (0, 0)

    def load(self, split: str) -> Images:
        """Split `split` of the evaluation dataset; with `holdout`, "test" is the last
        `holdout` of each class of the training split and "train" the rest."""
        if self.holdout is None:
            return load_split(self.dataset, split, self.data_dir, self.cache_dir, self.resize)
        images = load_split(self.dataset, "train", self.data_dir, self.cache_dir, self.resize)
        kept, held = holdout_split(images.labels, self.holdout)
        return images.subset(held if split == "test" else kept)

    def recipe(self) -> DataRecipe:
        """Pretraining's normalisation (at its image size, with the statistics it trained with
        or the data's measured ones) and augmentation of the dataset."""
        mean, std = self.normalization if self.normalization is not None else (None, None)
        return DataRecipe(self.dataset, self.image_size, self.channels, mean=mean, std=std)

    def prepare(self, images: Tensor, recipe: DataRecipe) -> Tensor:
        """uint8 (B, C, H, W) images on the device, normalised as in training, then resized and
        centre-cropped to `view` when one is set."""
        return resize_center_crop(recipe.normalize(images), *self.view)

    @property
    def input_size(self) -> int:
        """The side the network sees: the centre crop's, or the image size as trained."""
        return self.view[1] or self.image_size

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device


def load_encoder(
    spec: str,
    dataset: str | None = None,
    data_dir: str | None = None,
    *,
    seed: int = 0,
    encoder: str = "online",
    resize: int = 0,
    crop: int = 0,
    backbone_options: Mapping[str, Any] | None = None,
) -> Encoder:
    """The encoder `spec` names: a checkpoint path or `random:<backbone>`, in eval mode.

    `dataset` and `data_dir` default to the checkpoint's pretraining data (digits for random
    backbones, initialised from `seed`; `backbone_options` are a `random:timm/<name>` or
    `random:torchvision/<name>` model's keyword arguments). `encoder="target"` takes the EMA
    target's networks (a method without one is an error); `resize` and `crop` set the evaluation
    view (0: as trained). Raises EvaluationError naming the file and the problem.
    """
    view, network = check_view(resize, crop), encoder
    if network not in ("online", "target"):
        raise EvaluationError(f"encoder={network!r}: valid: online, target")
    options = dict(backbone_options or {})
    if spec.startswith(RANDOM_PREFIX):
        if network == "target":
            raise EvaluationError(f"{spec}: a random backbone has no EMA target; use online")
        loaded = _random_encoder(spec, dataset or "digits", data_dir, seed, options)
    elif options:
        key = next(iter(options))
        raise EvaluationError(
            f"backbone.{key}={options[key]!r}: backbone options apply to random:<backbone> "
            f"encoders; {spec} rebuilds the backbone it was trained with"
        )
    else:
        loaded = _checkpoint_encoder(spec, dataset, data_dir, network)
    if view != (0, 0):
        loaded.view = view
        loaded.identity += f"|view{view[0]}x{view[1]}"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loaded.backbone.to(device).eval()
    if loaded.projector is not None:
        loaded.projector.to(device).eval()
    return loaded


def _random_encoder(
    spec: str, dataset: str, data_dir: str | None, seed: int, options: dict[str, Any]
) -> Encoder:
    name = spec.removeprefix(RANDOM_PREFIX)
    _check_random_backbone(spec, name, options)  # before any data is read
    cache_dir = default_cache_dir()
    image_size, channels, num_classes, normalization = _data_facts(dataset, data_dir, cache_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            backbone = build_backbone(name, image_size, channels, options)
        except ValueError as error:  # keyword arguments that do not fit these images' channels
            raise EvaluationError(f"{spec}: {_one_line(error)}") from None
    arguments = f"|{json.dumps(options, sort_keys=True)}" if options else ""
    return Encoder(
        backbone=backbone,
        projector=None,
        spec=spec,
        checkpoint=None,
        identity=f"{RANDOM_PREFIX}{name}:{seed}{arguments}",
        method=None,
        dataset=canonical_name(dataset),
        data_dir=data_dir,
        cache_dir=cache_dir,
        resize=None,
        image_size=image_size,
        channels=channels,
        num_classes=num_classes,
        normalization=normalization,
    )


def _check_random_backbone(spec: str, name: str, options: dict[str, Any]) -> None:
    """EvaluationError (one line) unless `name` and `options` build a backbone, checked as
    pretraining checks them (library models on the meta device, without weights)."""
    try:
        check_backbone(name, options, init_from=None)
    except ConfigError as error:
        raise EvaluationError(f"{spec}: {error}") from None


def _checkpoint_encoder(
    spec: str, dataset: str | None, data_dir: str | None, network: str
) -> Encoder:
    path = Path(spec).expanduser()
    if not path.is_file():
        raise EvaluationError(f"{path}: no such checkpoint file")
    stat = path.stat()
    checkpoint = _read(path)
    meta = checkpoint["contrastkit"]
    config = _config(path, meta["config"])
    method = _rebuild(path, config, meta)
    _load_weights(path, method, checkpoint["state_dict"], config)
    backbone, projector = method.backbone, method.projector if method.spec.projector else None
    if network == "target":
        backbone, projector = _target(path, method)

    cache_dir = Path(config.cache_dir or default_cache_dir()).expanduser()
    own = dataset is None or canonical_name(dataset) == canonical_name(config.dataset)
    if own:
        name, resize = config.dataset, config.image_size
        data_dir = data_dir if data_dir is not None else config.data_dir
        image_size, channels, num_classes = (
            meta["image_size"],
            meta["channels"],
            meta["num_classes"],
        )
        normalization = meta.get("normalization")  # absent before it was recorded
    else:
        name, resize = dataset, None
        image_size, channels, num_classes, normalization = _data_facts(name, data_dir, cache_dir)
        if channels != meta["channels"]:
            raise EvaluationError(
                f"{path}: its backbone takes {meta['channels']}-channel images, "
                f"{name} has {channels} channels"
            )
    target = "|target" if network == "target" else ""
    return Encoder(
        backbone=backbone,
        projector=projector,
        spec=spec,
        checkpoint=path,
        identity=f"{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}{target}",
        method=config.method,
        dataset=canonical_name(name),
        data_dir=data_dir,
        cache_dir=cache_dir,
        resize=resize,
        image_size=image_size,
        channels=channels,
        num_classes=num_classes,
        normalization=normalization,
        network=network,
    )


def _target(path: Path, method: Method) -> tuple[Backbone, nn.Module | None]:
    """The EMA target's backbone and projector: the target is a copy of (backbone, projector)."""
    ema = getattr(method, "target", None)
    if ema is None:
        raise EvaluationError(
            f"{path}: method {method.spec.name} has no EMA target; use encoder=online"
        )
    backbone, projector = ema.target[0], ema.target[1]
    return backbone, projector if method.spec.projector else None


def _data_facts(
    dataset: str, data_dir: str | None, cache_dir: Path
) -> tuple[int, int, int, tuple[Stats, Stats] | None]:
    """(image size, channels, classes, measured normalisation or None) of a dataset, from its
    training split, whose statistics then normalise every split alike."""
    images = load_split(dataset, "train", data_dir, cache_dir, None)
    sample, _ = images[0]
    mean, std = getattr(images, "mean", None), getattr(images, "std", None)
    normalization = (mean, std) if mean is not None and std is not None else None
    return sample.shape[-1], sample.shape[0], len(images.classes), normalization


def _one_line(error: BaseException, limit: int = 200) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _read(path: Path) -> dict[str, Any]:
    """The checkpoint's contents, checked to hold contrastkit's metadata and a state dict."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types (pickle, zip, EOF, runtime)
        raise EvaluationError(f"{path}: not a readable checkpoint ({_one_line(error)})") from None
    meta = checkpoint.get("contrastkit") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise EvaluationError(
            f"{path}: not a contrastkit checkpoint (no 'contrastkit' metadata and state_dict)"
        )
    missing = [key for key in _METADATA if key not in meta]
    if missing or not isinstance(meta["config"], dict):
        raise EvaluationError(f"{path}: incomplete contrastkit metadata (missing {missing})")
    return checkpoint


def _config(path: Path, saved: dict[str, Any]) -> PretrainConfig:
    try:
        return PretrainConfig(**saved).validate()
    except (TypeError, ValueError) as error:
        raise EvaluationError(f"{path}: unusable saved config ({_one_line(error)})") from None


def _rebuild(path: Path, config: PretrainConfig, meta: dict[str, Any]) -> Method:
    """The method as pretraining built it (mirrors `train.run.build_module`), untrained."""
    try:
        return method_from_config(config, meta["image_size"], meta["channels"], meta["num_classes"])
    except (TypeError, ValueError) as error:
        raise EvaluationError(
            f"{path}: cannot rebuild its {config.backbone} {config.method} model "
            f"({_one_line(error)})"
        ) from None


def _load_weights(
    path: Path, method: Method, state_dict: dict[str, Any], config: PretrainConfig
) -> None:
    """Load the `method.` weights, after checking that every name and shape fits."""
    weights = {
        k.removeprefix("method."): v for k, v in state_dict.items() if k.startswith("method.")
    }
    problems = weight_mismatch(weights, method.state_dict())
    if problems:
        raise EvaluationError(
            f"{path}: weights do not fit a {config.backbone} {config.method} model: "
            + "; ".join(problems)
        )
    method.load_state_dict(weights)
