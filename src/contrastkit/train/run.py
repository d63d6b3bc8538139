"""Assemble and run a pretraining: data, backbone, method, Lightning Trainer, checkpoints, logs."""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.plugins import LayerSync
from torch import nn

from ..models.library_backbones import BackboneNameError, check_runs_on
from ..models.sync_batchnorm import convert_sync_batchnorm
from .backbone_config import load_initial_weights
from .checkpoint_io import AtomicCheckpointIO
from .compat import check_resumable, check_weights_fit
from .config import ConfigError, PretrainConfig
from .config_file import write_run_config
from .data import load_pretrain_data
from .factory import method_from_config
from .heap import keep_freed_host_memory
from .interrupt import SaveOnInterrupt
from .logs import ContinuingCSVLogger, FlushLogs
from .module import PretrainModule
from .preflight import check_free_space, check_output_folder, check_run_folder
from .progress import StepFiguresBar
from .resume import checkpoint_to_resume
from .spectrum import spectrum_monitor

_PRECISION = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}


@dataclass
class PretrainResult:
    """Where a finished run left its checkpoint and logs, and its last logged figures."""

    checkpoint: Path
    log_dirs: dict[str, Path]
    metrics: dict[str, float]
    is_main: bool


def build_module(config: PretrainConfig) -> PretrainModule:
    """The LightningModule for `config`: loads the data and builds backbone and method."""
    data = load_pretrain_data(config)
    try:
        method = method_from_config(config, data.image_size, data.channels, data.num_classes)
        module = PretrainModule(config, method, data)
        # The backbone was checked at the data's size; views of other sizes (local crops) too,
        # before compiling (a probe forward would compile it).
        for size in {spec.hw for spec in module.augment.views}:
            if size != (data.image_size, data.image_size):
                check_runs_on(method.backbone, config.backbone, data.channels, size)
    except BackboneNameError as error:  # a model that does not fit these images
        raise ConfigError(str(error)) from None
    if config.init_from is not None:
        load_initial_weights(method.backbone, config.init_from)
    if config.compile:
        method.backbone.compile()
    return module


def _accelerator(config: PretrainConfig) -> str:
    if config.accelerator != "auto":
        return config.accelerator
    return "gpu" if torch.cuda.is_available() else "cpu"


class CPUSyncBatchNorm(LayerSync):
    """Lightning plugin that swaps batch norms for contrastkit's all-device SyncBatchNorm."""

    def apply(self, model: nn.Module) -> nn.Module:
        return convert_sync_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        return model  # the layer equals BatchNorm outside distributed training


def _precision(config: PretrainConfig) -> str:
    """The run's precision: `auto` is bf16 on a GPU and 32 elsewhere."""
    if config.precision != "auto":
        return config.precision
    return "bf16" if _accelerator(config) in ("gpu", "cuda") else "32"


def _check_precision(config: PretrainConfig) -> None:
    if _accelerator(config) == "cpu" and _precision(config) != "32":
        raise ConfigError(
            f"precision={config.precision}: mixed precision runs only on a GPU "
            "(bf16 on CPU is about 20x slower than fp32); use precision=32"
        )


def _loggers(config: PretrainConfig, keep_before: int | None = None) -> list[Logger]:
    """The configured loggers; a resumed run's CSV log keeps its rows before `keep_before`."""
    out = str(config.out_dir)
    loggers: list[Logger] = []
    for name in config.loggers.split(","):
        if name == "csv":
            loggers.append(ContinuingCSVLogger(out, keep_before))
        elif name == "tensorboard":
            loggers.append(TensorBoardLogger(out, name="", version="tensorboard"))
        elif name == "wandb":
            if importlib.util.find_spec("wandb") is None:
                raise ConfigError("loggers=wandb: wandb is not installed (pip install wandb)")
            from lightning.pytorch.loggers import WandbLogger

            loggers.append(WandbLogger(save_dir=out, project="contrastkit"))
    for logger in loggers:  # hparams.yaml, TensorBoard's and wandb's hyperparameters
        logger.log_hyperparams(config.to_dict())
    return loggers


def build_trainer(
    config: PretrainConfig, callbacks: Sequence[Callback] = (), keep_logs_before: int | None = None
) -> L.Trainer:
    """A Lightning Trainer with atomic checkpoints every epoch, `last.ckpt`, and the loggers
    (a resumed run's CSV log keeps the rows before step `keep_logs_before`)."""
    accelerator = _accelerator(config)
    _check_precision(config)
    ranks = config.devices * config.num_nodes
    checkpoints = ModelCheckpoint(
        dirpath=config.out_dir,
        filename="epoch{epoch:03d}",
        auto_insert_metric_name=False,
        save_last=True,
        save_top_k=2,  # the two newest epochs, so a damaged file still leaves a good one
        monitor="step",
        mode="max",
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        # Overwrite (atomically) rather than write last-v1.ckpt beside an existing last.ckpt: a
        # resume from a moved folder or past a damaged file must update the names it reads.
        enable_version_counter=False,
    )
    return L.Trainer(
        max_epochs=config.epochs,
        accelerator=accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy="ddp" if ranks > 1 else "auto",
        # torch's SyncBatchNorm is CUDA-only; CPU ranks get ours through a LayerSync plugin.
        sync_batchnorm=config.sync_batchnorm and accelerator != "cpu",
        precision=_PRECISION[_precision(config)],
        logger=_loggers(config, keep_logs_before),
        callbacks=[
            checkpoints,
            FlushLogs(),
            *([StepFiguresBar()] if config.progress else []),
            *spectrum_monitor(config),
            *callbacks,
        ],
        plugins=[
            AtomicCheckpointIO(),
            *([CPUSyncBatchNorm()] if config.sync_batchnorm and accelerator == "cpu" else []),
        ],
        use_distributed_sampler=False,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        log_every_n_steps=1,
        deterministic=accelerator == "cpu",
    )


# Lightning notices that say nothing about the run: our loggers write into the checkpoint
# folder, and a dependency deprecation inside Lightning itself.
_QUIET = ("Checkpoint directory .* exists and is not empty", ".*LeafSpec.* is deprecated")


def pretrain(config: PretrainConfig, callbacks: Sequence[Callback] = ()) -> PretrainResult:
    """Train as `config` says; with `resume`, continue from the newest good checkpoint in `out`.

    The output folder is checked for writes and free space before any training.
    """
    last = config.out_dir / "last.ckpt"
    check_run_folder(config.out_dir, config.resume, config.overwrite)
    resume_from = checkpoint_to_resume(config.out_dir) if config.resume else None
    if resume_from is not None:
        check_resumable(config, resume_from)
    check_output_folder(config.out_dir)
    for message in _QUIET:
        warnings.filterwarnings("ignore", message=message)
    L.seed_everything(config.seed, workers=True, verbose=False)
    # Denormal floats appear in the small CNN's activations and gradients on digits and made
    # each CPU step about 15x slower (1.4 s against 0.09 s at batch 256, measured); flushing
    # them to zero changes nothing above 1e-38.
    torch.set_flush_denormal(True)
    if config.keep_host_memory:
        keep_freed_host_memory()
    _check_precision(config)
    module = build_module(config)  # data errors surface before Lightning starts printing
    if resume_from is not None:
        check_weights_fit(module, resume_from)
    write_run_config(config)  # once the run can start: a refused resume keeps the folder's own
    check_free_space(config.out_dir, module)
    interrupt = SaveOnInterrupt(last)
    logged = _logged_steps(resume_from) if resume_from is not None else None
    trainer = build_trainer(config, [*callbacks, interrupt], logged)
    with interrupt.listening():
        trainer.fit(module, ckpt_path=resume_from)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    folders = {"csv": "logs", "tensorboard": "tensorboard", "wandb": "wandb"}
    logs = {name: config.out_dir / folders[name] for name in config.loggers.split(",")}
    return PretrainResult(last, logs, metrics, trainer.is_global_zero)


def _logged_steps(checkpoint: Path) -> int:
    """The logging step a checkpoint resumes at: its rows before it stay in the CSV log.

    Lightning counts the batch a checkpoint saved at a batch's end (a Ctrl-C) only on restart.
    """
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    loop = saved.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    steps = int(loop.get("_batches_that_stepped", saved.get("global_step", 0)))
    return steps + 1 if "epoch_position" in saved else steps
