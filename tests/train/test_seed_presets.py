"""Each seed preset equals its run's settings in shared/reference/seed_recipes.md, key by key.

The table below is transcribed from seed_recipes.md (and the seeds' code it cites). Keys that
another part of the project adds (`augment`, `stem`, `image_size` on in-memory datasets,
`precision: auto`) are compared as written but left out of validation until the config knows
them.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from contrastkit.train.config import build_config, load_preset
from contrastkit.train.optim import schedule_from_config

PRESETS = Path(__file__).resolve().parents[2] / "src" / "contrastkit" / "presets"

SEED000 = {
    "dataset": "cifar100",
    "backbone": "resnet18",
    "image_size": 224,
    "stem": "imagenet",
    "augment": "seed000",
    "projector_layers": 3,
    "projector_hidden_dim": 2048,
    "projector_out_dim": 2048,
    "projector_hidden_bn": True,
    "projector_out_bn": "affine",
    "optimizer": "adamw",
    "lr": 1e-3,
    "adam_eps": 1e-6,
    "weight_decay": 0.01,
    "exclude_bias_norm": False,
    "schedule": "cosine",
    "schedule_interval": "step",
    "warmup_epochs": 10,  # 5% of 200 epochs' steps
    "warmup_start_lr": 0.0,
    "warmup_ends_at_peak": False,
    "cosine_cycles": 0.3,
    "epochs": 200,
    "batch_size": 128,
    "val_fraction": 0,
    "precision": "auto",
}
SEED002 = {
    "dataset": "imagenet100",
    "backbone": "resnet18",
    "image_size": 224,
    "optimizer": "lars",
    "lars_clip": True,
    "lars_eta": 0.02,
    "lr": 0.3,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "exclude_bias_norm": False,
    "schedule": "cosine",
    "schedule_interval": "epoch",
    "warmup_epochs": 10,
    "warmup_start_lr": 0.003,
    "epochs": 100,
    "batch_size": 256,
    "sync_batchnorm": True,
    "val_fraction": 0,
    "precision": "auto",
    "workers": 8,
    "probe_lr": 0.3,
    "augment": "seed002",
}
SIMCLR_002_HEAD = {
    "projector_layers": 2,
    "projector_hidden_dim": 2048,
    "projector_out_dim": 128,
    "projector_hidden_bn": False,
    "views_in_one_batch": True,
}
SEED004 = {
    "method": "relic",
    "augment": "seed004",
    "n_global": 2,
    "n_local": 4,
    "projector_layers": 2,
    "projector_hidden_dim": 512,
    "projector_out_dim": 64,
    "projector_hidden_bn": True,
    "projector_out_bn": "none",
    "projector_bias": False,
    "loss_options": {
        "init_scale": 5.0,
        "init_bias": -5.0,
        "max_scale": 5.0,
        "gamma": 1.0,
        "kl_weight": 1.0,
    },
    "ema_base": 0.99,
    "ema_final": 1.0,
    "ema_update_after_step": 1,
    "ema_buffers": "average",
    "optimizer": "adam",
    "lr": 3e-4,
    "weight_decay": 1e-5,
    "exclude_bias_norm": False,
    "schedule": "constant",
    "warmup_epochs": 0,
    "epochs": 100,
    "batch_size": 256,
    "val_fraction": 0,
    "precision": "auto",
}

EXPECTED: dict[str, dict] = {
    **{
        f"seed000/{loss}": {**SEED000, "method": "simclr", "loss": loss, "temperature": 0.07}
        for loss in ("info_nce", "nt_xent", "dcl", "dcl_symmetric", "dhel")
    },
    # VICReg 25/25/1 with the variance hinges summed, not halved: var_weight 50 in our terms.
    "seed000/vicreg": {**SEED000, "method": "vicreg", "loss_options": {"var_weight": 50.0}},
    "seed002/simclr": {
        **SEED002,
        **SIMCLR_002_HEAD,
        "method": "simclr",
        "loss": "nt_xent",
        "temperature": 0.2,
    },
    "seed002/simclr_multicrop": {
        **SEED002,
        **SIMCLR_002_HEAD,
        "method": "simclr_multicrop",
        "temperature": 0.1,
        "augment": "seed002_multicrop",
        "n_global": 2,
        "n_local": 6,
        "local_size": 96,
    },
    "seed002/barlow_twins": {
        **SEED002,
        "method": "barlow_twins",
        "loss_options": {"lambd": 5e-3},
        "projector_layers": 3,
        "projector_hidden_dim": 2048,
        "projector_out_dim": 2048,
        "projector_hidden_bn": True,
        "projector_out_bn": "none",
        "projector_bias": True,
        "views_in_one_batch": True,
    },
    "seed002/simsiam": {
        **{k: v for k, v in SEED002.items() if k not in ("lars_clip", "lars_eta")},
        "method": "simsiam",
        "optimizer": "sgd",
        "zero_init_residual": True,
        "projector_layers": 3,
        "projector_hidden_dim": 2048,
        "projector_out_dim": 512,
        "projector_hidden_bn": True,
        "projector_out_bn": "affine",
        "projector_bias": True,
        "predictor_layers": 2,
        "predictor_hidden_dim": 128,
        "predictor_hidden_bn": True,
        "predictor_bias": True,
        "fixed_predictor_lr": True,
        "views_in_one_batch": False,
        "probe_lr": 30.0,
    },
    "seed002/supcon": {
        **SEED002,
        **SIMCLR_002_HEAD,
        "method": "supcon",
        "loss": "nt_xent_multicrop",
        "temperature": 0.1,
        "augment": "seed002_multicrop",
        "n_global": 2,
        "n_local": 6,
        "local_size": 96,
    },
    "seed003/stl10_simclr": {
        "method": "simclr",
        "loss": "nt_xent",
        "temperature": 0.07,
        "dataset": "stl10",
        "stl10_split": "unlabeled",
        "backbone": "resnet18",
        "augment": "seed003_stl10",
        "projector_layers": 2,
        "projector_hidden_dim": 512,
        "projector_out_dim": 128,
        "projector_hidden_bn": False,
        "views_in_one_batch": True,
        "optimizer": "adamw",
        "lr": 5e-4,
        "weight_decay": 1e-4,
        "exclude_bias_norm": False,
        "schedule": "cosine",
        "schedule_interval": "epoch",
        "warmup_epochs": 0,
        "lr_final_ratio": 1 / 50,
        "epochs": 500,
        "batch_size": 256,
        "val_fraction": 0,
        "precision": "auto",
    },
    "seed003/cifar10_supcon": {
        "method": "supcon",
        "temperature": 0.1,
        "loss_options": {"base_temperature": 0.07},
        "dataset": "cifar10",
        "backbone": "resnet50",
        "augment": "seed003_supcon",
        "projector_layers": 2,
        "projector_hidden_dim": 2048,
        "projector_out_dim": 128,
        "projector_hidden_bn": False,
        "views_in_one_batch": True,
        "optimizer": "sgd",
        "lr": 0.5,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "exclude_bias_norm": False,
        "schedule": "cosine",
        "schedule_interval": "epoch",
        "warmup_epochs": 10,
        "warmup_start_lr": 0.01,
        "warmup_ends_at_peak": False,
        "lr_final_ratio": 1e-3,
        "epochs": 100,
        "batch_size": 1024,
        "val_fraction": 0,
        "precision": "auto",
    },
    "seed004/stl10_relic": {
        **SEED004,
        "dataset": "stl10",
        "stl10_split": "unlabeled",
        "backbone": "resnet50",
        "local_size": 41,
        "gamma_decay_steps": 20000,
    },
    "seed004/cifar10_relic": {
        **SEED004,
        "dataset": "cifar10",
        "backbone": "resnet18",
        "local_size": 13,
        "gamma_decay_steps": 0,
    },
}


def _path(name: str) -> Path:
    return PRESETS / f"{name}.yaml"


def _same(actual: object, expected: object) -> bool:
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(_same(actual[k], v) for k, v in expected.items())
        )
    if isinstance(expected, float) or isinstance(actual, float):
        return math.isclose(float(actual), float(expected), rel_tol=1e-12)
    return actual == expected


def test_every_seed_run_has_a_preset() -> None:
    found = {str(p.relative_to(PRESETS).with_suffix("")) for p in PRESETS.glob("seed*/*.yaml")}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_equals_the_seeds_settings_key_by_key(name: str) -> None:
    raw = load_preset(_path(name))
    expected = EXPECTED[name]
    assert raw.keys() == expected.keys(), set(raw) ^ set(expected)
    for key, value in expected.items():
        assert _same(raw[key], value), (key, raw[key], value)
    config = build_config([raw])
    for key, value in expected.items():
        if key == "loss_options":
            assert _same(config.loss_options, value)
        elif key == "temperature":
            assert _same(config.temperature, value)
        elif key == "augment":  # a recipe name is held as the mapping {recipe: name}
            assert config.augment == {"recipe": value}, config.augment
        else:
            assert _same(getattr(config, key), value), key


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_has_a_header_naming_what_still_differs(name: str) -> None:
    text = _path(name).read_text()
    assert text.startswith("# Seed 00") and "Still differs" in text


def test_seed000_schedule_ends_at_345_percent_of_its_peak() -> None:
    """391 steps per epoch (50,000 images, batch 128, last batch kept), 200 epochs."""
    raw = load_preset(_path("seed000/dhel"))
    config = build_config([raw])
    schedule, per_unit = schedule_from_config(config, total_steps=391 * 200)
    assert per_unit == 1 and schedule.warmup == int(0.05 * 391 * 200)
    assert schedule(0) == 0.0 and schedule(schedule.warmup) == 1.0
    assert schedule(391 * 200) == pytest.approx(0.3455, abs=1e-4)


def test_seed002_schedule_is_pl_bolts_warmup_cosine_per_epoch() -> None:
    raw = load_preset(_path("seed002/simclr"))
    config = build_config([raw])
    schedule, per_unit = schedule_from_config(config, total_steps=100 * 495)
    assert per_unit == 495 and schedule.total == 100
    assert 0.3 * schedule(0) == pytest.approx(0.003) and schedule(9) == schedule(10) == 1.0
    assert 0.3 * schedule(55) == pytest.approx(0.15)
