"""The MoCo v3 ViT-S/16 ImageNet-100 preset equals its source's settings key by key.

The table is transcribed from facebookresearch/moco-v3: CONFIG.md's "ViT-Small, 1-node (8-GPU),
1024-batch pre-training" command, main_moco.py's defaults and its lr and momentum schedules, and
vits.py's vit_small; the dataset and heads are also those of solo-learn's
scripts/pretrain/imagenet-100/mocov3_vit.yaml.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from contrastkit.cli import main
from contrastkit.methods.spec import METHODS
from contrastkit.models.library_backbones import build_library_model
from contrastkit.train.config import build_config, load_preset
from contrastkit.train.optim import schedule_from_config

from .test_seed_presets import _same

PRESETS = Path(__file__).resolve().parents[2] / "src" / "contrastkit" / "presets"
NAME = "imagenet100_moco_v3_vit_small"

BYOL_COLOUR = {  # both sources' flip, ColorJitter(0.4, 0.4, 0.2, 0.1), grayscale and blur
    "flip_p": 0.5,
    "jitter_p": 0.8,
    "brightness": 0.4,
    "contrast": 0.4,
    "saturation": 0.2,
    "hue": 0.1,
    "grayscale_p": 0.2,
    "blur_sigma": [0.1, 2.0],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}

MOCO_V3_VIT_SMALL = {
    "method": "moco_v3",
    "dataset": "imagenet100",  # solo-learn's mocov3_vit.yaml; MoCo v3 itself: ImageNet-1k
    "image_size": 224,  # RandomResizedCrop(224, ...)
    "augment": "byol",  # augmentation1/2: BYOL's asymmetric blur and solarisation
    "backbone": "timm/vit_small_patch16_224",  # -a vit_small: patch 16, width 384, depth 12
    "backbone_options": {"num_heads": 12, "drop_path_rate": 0.0},  # vits.py; timm's default 0
    "projector_layers": 3,  # MoCo_ViT: _build_mlp(3, ...)
    "projector_hidden_dim": 4096,  # --moco-mlp-dim
    "projector_out_dim": 256,  # --moco-dim
    "predictor_layers": 2,  # _build_mlp(2, dim, mlp_dim, dim)
    "predictor_hidden_dim": 4096,
    "temperature": 0.2,  # --moco-t=.2
    "ema_base": 0.99,  # --moco-m default
    "ema_final": 1.0,  # --moco-m-cos: half-cycle cosine to 1
    "ema_schedule": "cosine",
    "epochs": 300,  # --epochs=300
    "batch_size": 1024,  # -b 1024
    "optimizer": "adamw",  # --optimizer=adamw
    "lr": 1.5e-4 * 1024 / 256,  # --lr=1.5e-4, times batch / 256 in main_worker
    "weight_decay": 0.1,  # --weight-decay=.1
    "exclude_bias_norm": False,  # AdamW(model.parameters(), ...): decay on every parameter
    "schedule": "cosine",  # adjust_learning_rate: half-cycle cosine to 0
    "schedule_interval": "step",  # called every iteration with a fractional epoch
    "warmup_epochs": 40,  # --warmup-epochs=40
    "warmup_start_lr": 0.0,  # lr · epoch / warmup_epochs from epoch 0
    "warmup_ends_at_peak": False,  # the peak is reached at epoch 40, the first after warm-up
    "precision": "auto",  # MoCo v3: fp16 autocast with a grad scaler
    "workers": 8,
}


def test_the_preset_resolves_with_print_config_to_the_same_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Resolved, the augmentation is main_moco.py's augmentation1 and augmentation2, and the
    heads are _build_mlp's: BN after every hidden layer, an affine-free output BN, no biases."""
    assert main(["pretrain", "--config", NAME, "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for key, value in MOCO_V3_VIT_SMALL.items():
        if key != "augment":
            assert _same(printed[key], value), (key, printed[key], value)
    assert printed["loss"] == "moco_v3" and printed["pair_reduction"] is None
    assert METHODS["moco_v3"].pair_reduction == "sum"  # the method's: q1·k2 + q2·k1
    assert printed["grad_clip"] is None and printed["weight_decay_final"] is None
    for head in ("projector", "predictor"):
        assert printed[f"{head}_out_bn"] == "nonaffine" and printed[f"{head}_bias"] in (None, False)
    assert printed["projector_hidden_bn"] is True
    both = {
        "crop_size": 224,
        "scale": [0.08, 1.0],  # --crop-min 0.08
        **BYOL_COLOUR,
    }
    views = {
        "view1": {"blur_p": 1.0, "solarize_p": 0.0},
        "view2": {"blur_p": 0.1, "solarize_p": 0.2},
    }
    assert set(printed["augment"]) == set(views)
    for view, own in views.items():
        for key, value in {**both, **own}.items():
            assert _same(printed["augment"][view][key], value), (view, key)


def test_the_backbone_is_moco_v3s_vit_small_with_12_heads() -> None:
    """Built on the meta device: timm's ViT-S with vits.py's 12 heads of width 32."""
    config = build_config([load_preset(PRESETS / f"{NAME}.yaml")])
    with torch.device("meta"):
        model = build_library_model(config.backbone, 3, config.backbone_options)
    assert model.feature_dim == 384
    blocks = model.body.blocks
    assert len(blocks) == 12
    assert all(block.attn.num_heads == 12 and block.attn.head_dim == 32 for block in blocks)
    assert model.body.patch_embed.patch_size == (16, 16)
    assert all(type(block.drop_path1).__name__ == "Identity" for block in blocks)


def _moco_v3_lr(epoch: float, lr: float, warmup_epochs: int, epochs: int) -> float:
    """MoCo v3's lr at a fractional epoch (main_moco.py `adjust_learning_rate`, set every
    iteration): lr·epoch/warmup during the warm-up, then a half cosine from lr to 0."""
    if epoch >= warmup_epochs:
        progress = (epoch - warmup_epochs) / (epochs - warmup_epochs)
        return lr * (1 + math.cos(math.pi * progress)) / 2
    return lr * epoch / warmup_epochs


def test_the_lr_of_every_step_is_moco_v3s_adjust_learning_rate() -> None:
    """ImageNet-100: 126,689 images, 123 batches of 1024 per epoch (drop_last)."""
    config = build_config([load_preset(PRESETS / f"{NAME}.yaml")])
    per_epoch = 123
    schedule, per_unit = schedule_from_config(config, total_steps=per_epoch * 300)
    assert per_unit == 1
    for step in range(0, per_epoch * 300, 7):
        expected = _moco_v3_lr(step / per_epoch, config.lr, 40, 300)
        assert config.lr * schedule(step) == pytest.approx(expected, rel=1e-9, abs=1e-15)


DINO_NAME = "imagenet100_dino_vit_small"
DINO_VIT_SMALL = {
    "method": "dino",
    "dataset": "imagenet100",
    "image_size": 224,  # global_crops: RandomResizedCrop(224, ...)
    "backbone": "timm/vit_small_patch16_224",  # --arch vit_small --patch_size 16
    "backbone_options": {"drop_path_rate": 0.1},  # --drop_path_rate 0.1 (student)
    "projector_layers": 3,  # DINOHead nlayers=3
    "projector_hidden_dim": 2048,  # hidden_dim=2048
    "projector_bottleneck_dim": 256,  # bottleneck_dim=256
    "projector_out_dim": 65536,  # --out_dim 65536
    "loss_options": {"student_temp": 0.1, "teacher_temp": 0.04},  # DINOLoss; --teacher_temp
    "teacher_temp_start": 0.04,  # --warmup_teacher_temp 0.04
    "teacher_temp_warmup_epochs": 0,  # --warmup_teacher_temp_epochs 0
    "center_momentum": 0.9,  # DINOLoss center_momentum=0.9
    "freeze_last_layer_steps": 126_689 // 512,  # --freeze_last_layer 1 (epoch), drop_last
    "ema_base": 0.996,  # --momentum_teacher 0.996
    "ema_final": 1.0,  # cosine_scheduler(momentum_teacher, 1, ...)
    "ema_schedule": "cosine",
    "n_global": 2,  # two global crops
    "n_local": 8,  # --local_crops_number 8
    "local_size": 96,  # local crops: RandomResizedCrop(96, ...)
    "augment": {
        "recipe": "byol",  # DataAugmentationDINO: BYOL's jitter, blur and solarisation
        "global": {"scale": [0.4, 1.0]},  # --global_crops_scale 0.4 1.
        "local": {"scale": [0.05, 0.4]},  # --local_crops_scale 0.05 0.4
    },
    "epochs": 100,  # --epochs 100
    "batch_size": 512,  # --batch_size_per_gpu 64 on 8 GPUs
    "optimizer": "adamw",  # --optimizer adamw
    "lr": 0.0005 * 512 / 256,  # --lr 0.0005, times batch / 256
    "lr_final": 1e-6,  # --min_lr 1e-6
    "weight_decay": 0.04,  # --weight_decay 0.04
    "weight_decay_final": 0.4,  # --weight_decay_end 0.4
    "exclude_bias_norm": True,  # get_params_groups: no decay on biases and 1-d parameters
    "grad_clip": 3.0,  # --clip_grad 3.0
    "grad_clip_mode": "per_parameter",  # utils.clip_gradients: each parameter on its own
    "schedule": "cosine",
    "schedule_interval": "step",  # the schedules hold one value per iteration
    "warmup_epochs": 10,  # --warmup_epochs 10
    "warmup_start_lr": 0.0,  # np.linspace(0, base_value, warmup_iters)
    "warmup_ends_at_peak": True,  # linspace's last warm-up value is the peak
    "precision": "auto",  # --use_fp16 true
    "workers": 10,  # --num_workers 10
}


def test_the_dino_preset_resolves_to_data_augmentation_dino(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Resolved, the ten views are DataAugmentationDINO's two global and eight local crops."""
    assert main(["pretrain", "--config", DINO_NAME, "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for key, value in DINO_VIT_SMALL.items():
        if key != "augment":
            assert _same(printed[key], value), (key, printed[key], value)
    global_crop = {"crop_size": 224, "scale": [0.4, 1.0]}
    local_crop = {"crop_size": 96, "scale": [0.05, 0.4], "blur_p": 0.5, "solarize_p": 0.0}
    views = {
        "view1": {**global_crop, "blur_p": 1.0, "solarize_p": 0.0},
        "view2": {**global_crop, "blur_p": 0.1, "solarize_p": 0.2},
        **{f"view{i}": local_crop for i in range(3, 11)},
    }
    assert set(printed["augment"]) == set(views)
    for view, own in views.items():
        for key, value in {**BYOL_COLOUR, **own}.items():
            assert _same(printed["augment"][view][key], value), (view, key)


def _dino_cosine(base: float, final: float, epochs: int, per_epoch: int, warmup_epochs: int):
    """DINO's utils.cosine_scheduler, written from its formula: a linear warm-up from 0 over
    `warmup_epochs` (np.linspace, ending at `base`), then base → final by a half cosine."""
    warmup = warmup_epochs * per_epoch
    values = [base * i / (warmup - 1) for i in range(warmup)] if warmup else []
    rest = epochs * per_epoch - warmup
    values += [
        final + 0.5 * (base - final) * (1 + math.cos(math.pi * i / rest)) for i in range(rest)
    ]
    return values


def test_the_lr_of_every_step_is_dinos_cosine_scheduler() -> None:
    config = build_config([load_preset(PRESETS / f"{DINO_NAME}.yaml")])
    per_epoch = 126_689 // 512
    expected = _dino_cosine(config.lr, 1e-6, 100, per_epoch, 10)
    schedule, per_unit = schedule_from_config(config, total_steps=per_epoch * 100)
    assert per_unit == 1
    for step in range(0, per_epoch * 100, 13):
        assert config.lr * schedule(step) == pytest.approx(expected[step], rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(
    ("name", "source"),
    [(NAME, MOCO_V3_VIT_SMALL), (DINO_NAME, DINO_VIT_SMALL)],
    ids=["moco_v3", "dino"],
)
def test_the_preset_equals_its_sources_settings_key_by_key(name: str, source: dict) -> None:
    raw = load_preset(PRESETS / f"{name}.yaml")
    assert raw.keys() == source.keys(), set(raw) ^ set(source)
    for key, value in source.items():
        assert _same(raw[key], value), (key, raw[key], value)
