"""Heads: exact layer layout of every preset, the general MLP, overrides and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastkit.models import HEAD_PRESETS, head_preset, projection_mlp
from contrastkit.models import heads as heads_module
from contrastkit.models.heads import DINOHead, NormalizedLinear

Layer = tuple[object, ...]


def layout(head: nn.Module) -> list[Layer]:
    """One tuple per layer: ("linear", in, out, has_bias), ("bn", features, affine), ("relu",),
    ("gelu",), ("normalized", in, out) (a DINO head's last layer)."""
    described: list[Layer] = []
    layers = [*head.mlp, head.last_layer] if isinstance(head, DINOHead) else head
    for layer in layers:
        if isinstance(layer, NormalizedLinear):
            described.append(("normalized", layer.weight.shape[1], layer.weight.shape[0]))
        elif isinstance(layer, nn.GELU):
            described.append(("gelu",))
        elif isinstance(layer, nn.Linear):
            described.append(
                ("linear", layer.in_features, layer.out_features, layer.bias is not None)
            )
        elif isinstance(layer, nn.BatchNorm1d):
            described.append(("bn", layer.num_features, layer.affine))
        elif isinstance(layer, nn.ReLU):
            described.append(("relu",))
        else:
            raise AssertionError(f"unexpected layer {layer}")
    return described


def hidden(in_dim: int, out_dim: int) -> list[Layer]:
    """A Linear-BN-ReLU hidden layer (no Linear bias: the BN cancels it)."""
    return [("linear", in_dim, out_dim, False), ("bn", out_dim, True), ("relu",)]


SIMCLR = [*hidden(512, 2048), ("linear", 2048, 128, True)]
EXPECTED = {
    "simclr": (512, SIMCLR),
    "dcl": (512, SIMCLR),
    "dhel": (512, SIMCLR),
    "barlow_twins": (
        2048,
        [*hidden(2048, 8192), *hidden(8192, 8192), ("linear", 8192, 8192, True)],
    ),
    "vicreg": (2048, [*hidden(2048, 8192), *hidden(8192, 8192), ("linear", 8192, 8192, True)]),
    "simsiam": (
        512,
        [
            *hidden(512, 2048),
            *hidden(2048, 2048),
            ("linear", 2048, 2048, False),
            ("bn", 2048, False),
        ],
    ),
    "simsiam_predictor": (2048, [*hidden(2048, 512), ("linear", 512, 2048, True)]),
    "sigmoid": (2048, [*hidden(2048, 512), ("linear", 512, 64, True)]),
    "supcon": (
        512,
        [("linear", 512, 512, True), ("relu",), ("linear", 512, 128, True)],
    ),
    "byol": (512, [*hidden(512, 4096), ("linear", 4096, 256, True)]),
    "byol_predictor": (256, [*hidden(256, 4096), ("linear", 4096, 256, True)]),
    "moco_v2": (512, [("linear", 512, 2048, True), ("relu",), ("linear", 2048, 128, True)]),
    "moco_v3": (
        512,
        [*hidden(512, 4096), *hidden(4096, 4096), ("linear", 4096, 256, False), ("bn", 256, False)],
    ),
    "moco_v3_predictor": (
        256,
        [*hidden(256, 4096), ("linear", 4096, 256, False), ("bn", 256, False)],
    ),
    "nnclr": (
        512,
        [*hidden(512, 2048), *hidden(2048, 2048), ("linear", 2048, 256, False), ("bn", 256, False)],
    ),
    "nnclr_predictor": (256, [*hidden(256, 4096), ("linear", 4096, 256, True)]),
    "lejepa": (512, [*hidden(512, 2048), *hidden(2048, 2048), ("linear", 2048, 128, True)]),
    "dino": (
        512,
        [
            ("linear", 512, 2048, True),
            ("gelu",),
            ("linear", 2048, 2048, True),
            ("gelu",),
            ("linear", 2048, 256, True),
            ("normalized", 256, 65536),
        ],
    ),
    "swav": (512, SIMCLR),
}


def test_every_preset_is_tested_and_documented() -> None:
    assert set(HEAD_PRESETS) == set(EXPECTED)
    doc = heads_module.__doc__ or ""
    assert all(name in doc for name in HEAD_PRESETS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_layout(name: str) -> None:
    in_dim, expected = EXPECTED[name]
    with torch.device("meta"):  # no memory or init cost for the 8192-wide layers
        head = head_preset(name, in_dim)
    assert layout(head) == expected


def test_supcon_hidden_width_follows_the_feature_dim() -> None:
    with torch.device("meta"):
        head = head_preset("supcon", 2048)
    assert layout(head)[0] == ("linear", 2048, 2048, True)


def test_simsiam_predictor_is_a_512_bottleneck() -> None:
    with torch.device("meta"):
        head = head_preset("simsiam_predictor", 2048)
    widths = [layer.out_features for layer in head if isinstance(layer, nn.Linear)]
    assert widths == [512, 2048]


def test_overrides_replace_preset_fields() -> None:
    head = head_preset("simclr", 32, hidden_dim=16, out_dim=8, num_layers=3)
    assert layout(head) == [*hidden(32, 16), *hidden(16, 16), ("linear", 16, 8, True)]


def test_unknown_override_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="hidden_width"):
        head_preset("simclr", 32, hidden_width=16)


def test_dino_head_overrides_and_refusals() -> None:
    head = head_preset("dino", 32, hidden_dim=16, out_dim=10, bottleneck_dim=8, num_layers=2)
    assert layout(head) == [
        ("linear", 32, 16, True),
        ("gelu",),
        ("linear", 16, 8, True),
        ("normalized", 8, 10),
    ]
    assert head_preset("dino", 32, freeze_steps=5).last_layer.freeze_steps == 5
    with pytest.raises(TypeError, match="dino head has no option out_bn; valid: hidden_dim"):
        head_preset("dino", 32, out_bn="affine")
    with pytest.raises(TypeError, match="simclr head has no option bottleneck_dim"):
        head_preset("simclr", 32, bottleneck_dim=8)


def test_unknown_preset_names_the_value_and_the_valid_names() -> None:
    with pytest.raises(ValueError, match="'swav_v9'") as error:
        head_preset("swav_v9", 32)
    assert all(name in str(error.value) for name in HEAD_PRESETS)


def test_mlp_without_batch_norm_keeps_biases() -> None:
    head = projection_mlp(8, 16, 4, num_layers=2, batch_norm=False)
    assert layout(head) == [("linear", 8, 16, True), ("relu",), ("linear", 16, 4, True)]


def test_single_layer_mlp_is_one_linear_with_optional_output_bn() -> None:
    assert layout(projection_mlp(8, 16, 4, num_layers=1)) == [("linear", 8, 4, True)]
    assert layout(projection_mlp(8, 16, 4, num_layers=1, last_bn=True)) == [
        ("linear", 8, 4, False),
        ("bn", 4, False),
    ]


def test_mlp_maps_features_to_out_dim() -> None:
    head = projection_mlp(8, 16, 4, num_layers=3, last_bn=True)
    out = head(torch.randn(5, 8))
    assert out.shape == (5, 4)
    # The affine-free output BN standardises each dimension over the batch in training.
    torch.testing.assert_close(out.mean(dim=0), torch.zeros(4), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "value"),
    [
        ({"num_layers": 0}, "0"),
        ({"num_layers": 2, "hidden_dim": 0}, "hidden_dim"),
        ({"num_layers": 2, "out_dim": -1}, "out_dim"),
    ],
)
def test_bad_dimensions_are_rejected(kwargs: dict[str, int], value: str) -> None:
    arguments = {"in_dim": 8, "hidden_dim": 16, "out_dim": 4} | kwargs
    with pytest.raises(ValueError, match=value):
        projection_mlp(**arguments)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # Seed 000's projector: BN + ReLU on the hidden layers and an affine BN on the output.
        (
            {"num_layers": 3, "hidden_dim": 2048, "out_dim": 2048, "out_bn": "affine"},
            [
                *hidden(512, 2048),
                *hidden(2048, 2048),
                ("linear", 2048, 2048, False),
                ("bn", 2048, True),
            ],
        ),
        # Seed 002's SimCLR projector: Linear-ReLU-Linear with biases, no BN.
        (
            {"hidden_dim": 2048, "out_dim": 128, "batch_norm": False},
            [("linear", 512, 2048, True), ("relu",), ("linear", 2048, 128, True)],
        ),
        # Seed 004's projector: no bias anywhere, BN on the hidden layer only.
        (
            {"hidden_dim": 512, "out_dim": 64, "bias": False},
            [*hidden(512, 512), ("linear", 512, 64, False)],
        ),
        # solo-learn keeps Linear biases before its BNs.
        (
            {"num_layers": 2, "out_bn": "nonaffine", "bias": True},
            [
                ("linear", 512, 2048, True),
                ("bn", 2048, True),
                ("relu",),
                ("linear", 2048, 128, True),
                ("bn", 128, False),
            ],
        ),
        ({"num_layers": 1, "out_dim": 32}, [("linear", 512, 32, True)]),
    ],
)
def test_head_options_build_the_layers_they_name(options: dict, expected: list[Layer]) -> None:
    with torch.device("meta"):
        head = head_preset("simclr", 512, **options)
    assert layout(head) == expected


def test_out_bn_none_removes_a_presets_output_bn_and_bad_values_are_refused() -> None:
    with torch.device("meta"):
        head = head_preset("simsiam", 512, out_bn="none")
    assert layout(head)[-1] == ("linear", 2048, 2048, True)
    with pytest.raises(ValueError, match="'batch'"):
        projection_mlp(8, 16, 4, num_layers=2, out_bn="batch")


def test_config_head_keys_reach_the_projector_and_predictor() -> None:
    """Every projector_* / predictor_* key changes the built method's heads."""
    from contrastkit.train.config import build_config
    from contrastkit.train.factory import method_from_config

    config = build_config(
        [
            {
                "method": "simsiam",
                "projector_layers": 2,
                "projector_hidden_dim": 64,
                "projector_out_dim": 32,
                "projector_hidden_bn": False,
                "projector_out_bn": "affine",
                "projector_bias": True,
                "predictor_layers": 3,
                "predictor_hidden_dim": 8,
                "predictor_hidden_bn": False,
                "predictor_out_bn": "nonaffine",
                "predictor_bias": False,
            }
        ]
    )
    method = method_from_config(config, 8, 1, 10)
    assert layout(method.projector) == [
        ("linear", 256, 64, True),
        ("relu",),
        ("linear", 64, 32, True),
        ("bn", 32, True),
    ]
    assert layout(method.predictor) == [
        ("linear", 32, 8, False),
        ("relu",),
        ("linear", 8, 8, False),
        ("relu",),
        ("linear", 8, 32, False),
        ("bn", 32, False),
    ]


def test_the_word_none_turns_a_presets_output_bn_off_from_the_config() -> None:
    """`projector_out_bn=none` is a value (no output BN), not "unset" like null."""
    from contrastkit.train.config import build_config
    from contrastkit.train.factory import method_from_config

    config = build_config([{"method": "simsiam", "projector_out_bn": "none"}])
    assert config.projector_out_bn == "none"
    assert isinstance(method_from_config(config, 8, 1, 10).projector[-1], nn.Linear)
    unset = build_config([{"method": "simsiam", "projector_out_bn": "null"}])
    assert isinstance(method_from_config(unset, 8, 1, 10).projector[-1], nn.BatchNorm1d)
