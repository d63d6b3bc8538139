"""The one LightningModule that pretrains any method: augment, step, probe, log.

It never names a loss: the method turns views into a loss and its components.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from .. import __version__
from ..data.bad_files import BadFiles
from ..methods import Method, StepOutput
from ..methods.monitor import FeatureRank
from .clipping import clip_gradients
from .config import ConfigError, PretrainConfig
from .data import EpochBatches, PretrainData, epoch_seed
from .errors import NonFiniteLossError
from .grad_cache import cached_forward
from .optim import optimization_from_config
from .probe import OnlineProbe, topk_correct
from .weight_decay import WeightDecaySchedule, weight_decay_schedule


class PretrainModule(L.LightningModule):
    """Pretraining of `method` on `data` as `config` says, with an online linear probe."""

    def __init__(self, config: PretrainConfig, method: Method, data: PretrainData):
        super().__init__()
        self.automatic_optimization = False  # the step also updates the EMA and the probe
        self.config, self.method, self.data = config, method, data
        self.augment = data.augmentation(config)
        self.probe = (
            OnlineProbe(method.backbone.feature_dim, data.num_classes, config.probe_lr)
            if config.probe and data.num_classes > 1  # 0: unlabelled or a single class
            else None
        )
        self._generator: torch.Generator | None = None
        self._last_log_time: float | None = None  # when step figures were last written
        self._images_since_log = 0
        self.progress_figures: dict[str, float] = {}  # the last step figures, for the progress bar
        self._epoch_start = 0.0
        self._batches_done = 0  # in this epoch; saved by a mid-epoch (Ctrl-C) checkpoint
        self._resume_position: dict[str, Any] | None = None
        self._train_batches: EpochBatches | None = None
        self.skipped_nonfinite = 0  # optimiser steps skipped for a non-finite loss or gradient
        self.feature_rank = FeatureRank()  # collapse monitor over the epoch's probe features
        self.weight_decay_schedule: WeightDecaySchedule | None = None
        self.bad_files = BadFiles(len(data.train), config.max_bad_fraction)  # skipped in training

    # --- data ---------------------------------------------------------------------------

    def _batches(self, images, shuffle: bool) -> EpochBatches:
        """Training batches decode as `decode` says; the probe's evaluation batches always as
        centre crops at the run's size, as evaluation sees images."""
        return EpochBatches(
            images,
            self.config.batch_size,
            self.device,
            seed=self.config.seed,
            epoch=lambda: self.current_epoch,
            rank=self.global_rank,
            world_size=self.trainer.world_size,
            shuffle=shuffle,
            workers=self.config.workers,
            decode=self.config.decode if shuffle else "pil",
            max_side=self.config.max_side or 2 * self.data.image_size,
            bad_files=(
                self.bad_files if shuffle else BadFiles(len(images), self.config.max_bad_fraction)
            ),
        )

    def train_dataloader(self) -> EpochBatches:
        batches = self._batches(self.data.train, shuffle=True)
        if self._resume_position is not None:  # a checkpoint from inside an epoch
            batches.resume(self._resume_position)
        self._train_batches = batches
        return batches

    def val_dataloader(self) -> EpochBatches | list:
        return self._batches(self.data.val, shuffle=False) if self._probing else []

    @property
    def _probing(self) -> bool:
        return self.probe is not None and self.data.val is not None

    # --- optimisation -------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        total_steps = int(self.trainer.estimated_stepping_batches)
        optimizer, scheduler = optimization_from_config(
            self.config,
            self.method.param_groups(self.config.fixed_predictor_lr),
            total_steps,
        )
        self.weight_decay_schedule = weight_decay_schedule(self.config, total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the gradients and set this step's weight decay. Lightning calls this inside
        `optimizer.step()`: after the non-finite check and, under fp16, after the grad scaler
        has unscaled the gradients, so the clip norm is in true units."""
        if self.config.grad_clip is not None:
            clip_gradients(self._gradients(), self.config.grad_clip, self.config.grad_clip_mode)
        if self.weight_decay_schedule is not None:
            self.weight_decay_schedule.apply(optimizer, self.global_step)

    def setup(self, stage: str) -> None:
        # Before DDP wraps the model: its gradient buckets then take the weights' NHWC layout.
        if self.config.channels_last:
            self.method.to(memory_format=torch.channels_last)

    def on_fit_start(self) -> None:
        if self.data.val_note:
            rank_zero_info(f"online probe (val/top1, val/top5): {self.data.val_note}")
        if self.probe is not None:
            self.probe.to(self.device)

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        # Augmentation draws depend only on (seed, epoch, rank): resuming replays them exactly.
        seed = epoch_seed(self.config.seed, self.current_epoch, self.global_rank)
        # On the CPU, so augmentation picks its samples without waiting for the device.
        self._generator = torch.Generator().manual_seed(seed)
        self._batches_done = 0

    def _continue_epoch(self, position: dict[str, Any]) -> None:
        """Resume inside an epoch (Lightning calls no on_train_epoch_start then): the
        augmentation draws continue where the checkpoint left them."""
        self._resume_position = None
        self._epoch_start = time.perf_counter()
        self._batches_done = int(position["batches"])
        self._generator = torch.Generator()
        self._generator.set_state(position["generator"])

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor | None:
        """One step on (images, labels) or, for whole images padded into one batch,
        (images, labels, sizes)."""
        if self._resume_position is not None:
            self._continue_epoch(self._resume_position)
        self._batches_done += 1
        images, labels, *sizes = batch
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        self.method.set_step(
            self.global_step, int(self.trainer.estimated_stepping_batches), self.current_epoch
        )
        views = self.augment(images, generator=self._generator, sizes=sizes[0] if sizes else None)
        if self.config.channels_last:
            views = [v.contiguous(memory_format=torch.channels_last) for v in views]
        out, backward = self._forward(views, labels if self.method.reads_labels else None)
        optimizer.zero_grad(set_to_none=True)
        backward()
        # The step's one host-device synchronisation, before the optimiser step, so a NaN never
        # reaches the weights or a checkpoint.
        if self._nonfinite_anywhere(out.loss):
            return self._skip_nonfinite(out, optimizer)
        self._log_step(out, images.shape[0], optimizer)  # lr of this step
        self.method.before_optimizer_step()
        optimizer.step()
        scheduler.step()
        self.method.after_optimizer_step()
        self.feature_rank.add(out.features)
        if self.probe is not None:
            probe_loss = self.probe.train_step(out.features, labels)
            self.log("probe/loss", probe_loss, on_step=False, on_epoch=True, sync_dist=True)
        return out.loss.detach()

    def _forward(
        self, views: list[Tensor], labels: Tensor | None
    ) -> tuple[StepOutput, Callable[[], None]]:
        """The step's loss, and how to backpropagate it: at once, or micro-batch by micro-batch
        (gradient caching) when `micro_batch_size` is below the batch."""
        micro = self.config.micro_batch_size
        if micro is None or micro >= views[0].shape[0]:
            out = self.method(views, labels)
            return out, lambda: self.manual_backward(out.loss)
        step = cached_forward(self.method, views, labels, micro)
        return step.output, lambda: step.backward(self.manual_backward, self._no_sync)

    def _no_sync(self) -> AbstractContextManager[object]:
        """Inside it, backward passes accumulate gradients without DDP's all-reduce."""
        model = self.trainer.strategy.model
        return model.no_sync() if isinstance(model, DistributedDataParallel) else nullcontext()

    @property
    def _check_gradients(self) -> bool:
        """Whether to check gradients: not under fp16, whose grad scaler skips overflowed steps."""
        return getattr(self.trainer.precision_plugin, "scaler", None) is None

    def _gradients(self) -> list[Tensor]:
        return [p.grad for p in self.method.parameters() if p.grad is not None]

    def _nonfinite_anywhere(self, loss: Tensor) -> bool:
        """Whether the loss or (outside fp16) any gradient holds an inf or NaN, on any rank.

        One flag gathers both checks on the device, so the step reads back one value. All
        ranks get the same answer, so they skip a step together.
        """
        found = (~torch.isfinite(loss.detach())).float().reshape(1)
        if self._check_gradients:
            by_dtype: dict[torch.dtype, list[Tensor]] = {}
            for grad in self._gradients():
                by_dtype.setdefault(grad.dtype, []).append(grad)
            one = torch.ones(1, device=found.device)
            for grads in by_dtype.values():
                # The grad scaler's fused check; scaling by exactly 1 leaves the gradients as is.
                torch._amp_foreach_non_finite_check_and_unscale_(grads, found, one)
        return bool(self.trainer.strategy.reduce(found, reduce_op="sum").item())

    def _skip_nonfinite(self, out: StepOutput, optimizer) -> None:
        """Skip this optimiser step (no update, no EMA, no probe), or raise NonFiniteLossError
        once more than `skip_nonfinite` steps have been skipped."""
        optimizer.zero_grad(set_to_none=True)
        self.skipped_nonfinite += 1
        allowed = self.config.skip_nonfinite
        if self.skipped_nonfinite <= allowed:
            return
        what = "gradients" if bool(torch.isfinite(out.loss.detach())) else "loss"
        values = {"loss": out.loss, **out.components}
        shown = ", ".join(f"{name}={float(v.detach()):.4g}" for name, v in values.items())
        budget = f"; {self.skipped_nonfinite} such steps exceed skip_nonfinite={allowed}"
        last = getattr(self.trainer.checkpoint_callback, "last_model_path", "")  # this run's
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint yet"
        raise NonFiniteLossError(
            f"non-finite {what} at step {self.global_step} (epoch {self.current_epoch}): "
            f"{shown}{budget if allowed else ''}; {kept}"
        )

    def _log_step(self, out: StepOutput, batch: int, optimizer) -> None:
        """Epoch means accumulate on the device and are read back once, at the epoch's end; the
        step's own figures are read back and written only every `log_every_n_steps` steps, so
        the other steps never wait for the device."""
        loss = out.loss.detach()
        self.log(
            "train/loss_epoch", loss, prog_bar=True, on_step=False, on_epoch=True, sync_dist=True
        )
        for name, value in out.components.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, sync_dist=True)
        self._images_since_log += batch * self.trainer.world_size
        if self.global_step % self.config.log_every_n_steps:
            return
        now = time.perf_counter()
        figures = {
            "train/loss_step": loss.item(),
            "train/lr": optimizer.param_groups[0]["lr"],
            "epoch": self.current_epoch,
        }
        if self._last_log_time is not None:
            figures["img/s"] = self._images_since_log / max(now - self._last_log_time, 1e-9)
        self._last_log_time, self._images_since_log = now, 0
        for logger in self.loggers:
            logger.log_metrics(figures, step=self.global_step)
            logger.save()
        self.progress_figures = {
            name: figures[name] for name in ("train/loss_step", "img/s") if name in figures
        }

    def on_train_epoch_end(self) -> None:
        self._batches_done = 0  # the epoch's checkpoint, saved next, resumes at the next epoch
        self._last_log_time = None  # do not count validation time as step time
        self._images_since_log = 0
        seconds = time.perf_counter() - self._epoch_start
        self.log("time/epoch_s", seconds, on_epoch=True, sync_dist=True)
        rank = self.feature_rank.effective_rank()
        if rank is not None:
            self.log("train/feature_rank", rank, on_epoch=True, sync_dist=True)
        self.feature_rank.reset()
        self.log(
            "train/skipped_nonfinite", float(self.skipped_nonfinite), on_epoch=True, sync_dist=True
        )
        self.method.end_epoch(self.current_epoch)
        self.log(
            "train/bad_files",
            float(len(self.bad_files)),
            on_epoch=True,
            sync_dist=True,
            reduce_fx="sum",
        )

    # --- online probe evaluation -------------------------------------------------------

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        inputs = self.data.normalize(images)
        logits = self.probe.predict(self.method.backbone(inputs))
        n = labels.shape[0]
        for k in (1, 5):
            correct = topk_correct(logits, labels, k).float() / n
            self.log(f"val/top{k}", correct, prog_bar=k == 1, batch_size=n, sync_dist=True)

    # --- checkpoints --------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["contrastkit"] = {
            "version": __version__,
            "config": self.config.to_dict(),
            "backbone": self.method.backbone.name,
            "feature_dim": self.method.backbone.feature_dim,
            "num_classes": self.data.num_classes,
            "channels": self.data.channels,
            "image_size": self.data.image_size,
            "normalization": self.data.mean_std(),  # (mean, std) per channel, as trained
            "bad_files": self.bad_files.as_list(),  # (path, reason) skipped as unreadable
        }
        if self.probe is not None:
            checkpoint["probe"] = self.probe.state_dict()
        checkpoint["skipped_nonfinite"] = self.skipped_nonfinite
        if self._batches_done and self._generator is not None:
            checkpoint["epoch_position"] = self._every_rank(
                {
                    "batches": self._batches_done,
                    "generator": self._generator.get_state(),
                    **self._train_batches.position(self._batches_done),
                }
            )
        # Plain tensors and tuples only, so the checkpoint loads with weights_only=True.
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
            "python": random.getstate(),
        }

    def _every_rank(self, position: dict[str, Any]) -> dict[str, Any]:
        """A rank's position inside the epoch, with every rank's (in rank order) under DDP: one
        rank writes the checkpoint, and each resumes its own augmentation draws and loader."""
        world = self.trainer.world_size
        if world == 1:
            return position
        ranks: list[Any] = [None] * world
        torch.distributed.all_gather_object(ranks, position)
        return {**position, "ranks": ranks}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.probe is not None and "probe" in checkpoint:
            self.probe.load_state_dict(checkpoint["probe"])
        self.skipped_nonfinite = int(checkpoint.get("skipped_nonfinite", 0))
        self.bad_files.restore(checkpoint.get("contrastkit", {}).get("bad_files", []))
        position = checkpoint.get("epoch_position")
        if position is not None and "ranks" in position:  # saved by several ranks: ours
            ranks, world = len(position["ranks"]), self.trainer.world_size
            if ranks != world:
                raise ConfigError(
                    f"resume=true: the checkpoint was saved inside an epoch by {ranks} ranks, "
                    f"this run has {world}; valid: resume on {ranks} ranks (devices x num_nodes)"
                )
            position = position["ranks"][self.global_rank]
        self._resume_position = position
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            kind, keys, position, has_gauss, gauss = rng["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
            random.setstate(rng["python"])
