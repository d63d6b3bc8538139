"""The torch-free name lists (contrastkit.names) and the registries keyed by them agree."""

import pytest

from contrastkit.methods.spec import METHODS
from contrastkit.models.backbones import build_backbone
from contrastkit.names import BACKBONE_NAMES, LOSS_NAMES, METHOD_NAMES, OPTIMIZER_NAMES
from contrastkit.train.optim import build_optimizer


def test_every_method_name_has_a_spec_and_every_spec_a_name() -> None:
    assert tuple(METHODS) == METHOD_NAMES


def test_the_loss_names_are_the_losses_the_methods_train_with() -> None:
    trained = {loss for spec in METHODS.values() for loss in spec.losses}
    assert sorted(LOSS_NAMES) == sorted(trained)


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_every_backbone_name_builds(name: str) -> None:
    assert build_backbone(name, 32, 3).feature_dim > 0


def test_an_unlisted_backbone_name_is_refused() -> None:
    with pytest.raises(ValueError, match="resnet19"):
        build_backbone("resnet19", 32, 3)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_every_optimizer_name_builds(name: str) -> None:
    import torch

    params = [{"params": [torch.nn.Parameter(torch.zeros(2))]}]
    assert build_optimizer(name, params, 0.1, 0.0, 0.9) is not None
