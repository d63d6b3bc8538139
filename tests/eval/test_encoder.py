"""Loading encoders: checkpoints rebuild exactly; bad files fail with one line naming them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contrastkit.eval import EvaluationError, load_encoder

from .conftest import tiny_checkpoint


def _saved(checkpoint: Path) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)


def test_a_checkpoint_loads_its_trained_weights_in_eval_mode(checkpoint: Path) -> None:
    encoder = load_encoder(str(checkpoint))
    state = _saved(checkpoint)["state_dict"]
    for name, value in encoder.backbone.state_dict().items():
        assert torch.equal(value, state[f"method.backbone.{name}"]), name
    for name, value in encoder.projector.state_dict().items():
        assert torch.equal(value, state[f"method.projector.{name}"]), name
    assert not encoder.backbone.training and not encoder.projector.training
    assert (encoder.dataset, encoder.channels, encoder.image_size) == ("digits", 1, 8)
    assert (encoder.num_classes, encoder.method, encoder.checkpoint) == (10, "simclr", checkpoint)


def test_random_encoders_are_seeded_untrained_backbones() -> None:
    first = load_encoder("random:small-cnn")
    again = load_encoder("random:small-cnn")
    other = load_encoder("random:small-cnn", seed=1)
    weight = "body.block1.0.weight"
    assert torch.equal(first.backbone.state_dict()[weight], again.backbone.state_dict()[weight])
    assert not torch.equal(first.backbone.state_dict()[weight], other.backbone.state_dict()[weight])
    assert first.projector is None and first.method is None and first.checkpoint is None
    assert (first.dataset, first.channels, first.image_size, first.num_classes) == (
        "digits",
        1,
        8,
        10,
    )


def test_a_supervised_checkpoint_has_no_projector(tmp_path: Path) -> None:
    encoder = load_encoder(str(tiny_checkpoint(tmp_path, "supervised")))
    assert encoder.method == "supervised" and encoder.projector is None


def _assert_one_line_naming(error: pytest.ExceptionInfo, path: Path, problem: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert problem in message


def test_a_missing_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "last.ckpt"
    with pytest.raises(EvaluationError) as error:
        load_encoder(str(path))
    _assert_one_line_naming(error, path, "no such checkpoint file")


def test_a_file_that_is_no_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.ckpt"
    path.write_text("these are not weights\n" * 3)
    with pytest.raises(EvaluationError) as error:
        load_encoder(str(path))
    _assert_one_line_naming(error, path, "not a readable checkpoint")


def test_a_torch_file_without_contrastkit_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, path)
    with pytest.raises(EvaluationError) as error:
        load_encoder(str(path))
    _assert_one_line_naming(error, path, "not a contrastkit checkpoint")


def test_a_checkpoint_whose_config_names_another_backbone(checkpoint: Path, tmp_path: Path) -> None:
    saved = _saved(checkpoint)
    saved["contrastkit"]["config"]["backbone"] = "resnet18"
    path = tmp_path / "edited.ckpt"
    torch.save(saved, path)
    with pytest.raises(EvaluationError) as error:
        load_encoder(str(path))
    _assert_one_line_naming(error, path, "weights do not fit a resnet18 simclr model")


def test_a_checkpoint_with_a_truncated_weight(checkpoint: Path, tmp_path: Path) -> None:
    saved = _saved(checkpoint)
    name = "method.backbone.body.block2.0.weight"
    saved["state_dict"][name] = saved["state_dict"][name][:10]
    path = tmp_path / "truncated.ckpt"
    torch.save(saved, path)
    with pytest.raises(EvaluationError) as error:
        load_encoder(str(path))
    _assert_one_line_naming(error, path, "backbone.body.block2.0.weight is (10, 32, 3, 3)")


def test_a_checkpoint_with_missing_weights(checkpoint: Path, tmp_path: Path) -> None:
    saved = _saved(checkpoint)
    del saved["state_dict"]["method.projector.0.weight"]
    path = tmp_path / "partial.ckpt"
    torch.save(saved, path)
    with pytest.raises(EvaluationError) as error:
        load_encoder(str(path))
    _assert_one_line_naming(error, path, "1 missing, e.g. projector.0.weight")


def test_an_unknown_random_backbone() -> None:
    with pytest.raises(EvaluationError, match="random:vit: unknown backbone 'vit'"):
        load_encoder("random:vit")


def test_another_dataset_without_its_data(checkpoint: Path) -> None:
    with pytest.raises(EvaluationError, match="cifar10 needs a data directory"):
        load_encoder(str(checkpoint), dataset="cifar10")


def test_another_dataset_with_other_channels(checkpoint: Path, image_folder: Path) -> None:
    with pytest.raises(EvaluationError) as error:
        load_encoder(str(checkpoint), dataset="imagefolder", data_dir=str(image_folder))
    _assert_one_line_naming(error, checkpoint, "1-channel images, imagefolder has 3 channels")
