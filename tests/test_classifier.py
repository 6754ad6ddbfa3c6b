"""Tests for course_ddpm.classifier: shapes, the shift augmentation, training, save/load."""

from __future__ import annotations

import json

import pytest
import torch

from course_ddpm.checkpoints import CheckpointError
from course_ddpm.classifier import (
    CARD_FORMAT,
    ClassifierConfig,
    MNISTClassifier,
    accuracy,
    load_classifier,
    random_shift,
    save_classifier,
    train_classifier,
)


def test_shapes_and_features_are_the_penultimate_layer():
    torch.manual_seed(0)
    model = MNISTClassifier().eval()
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    h = model.features(x)
    assert h.shape == (5, model.num_features) == (5, 128)
    assert (h >= 0).all()  # after the ReLU
    logits = model(x)
    assert logits.shape == (5, 10)
    # forward = fc2(features) in eval mode (dropout off): recompute by hand.
    torch.testing.assert_close(logits, h @ model.fc2.weight.T + model.fc2.bias)


@pytest.mark.parametrize("shape", [(5, 28, 28), (5, 3, 28, 28), (5, 1, 32, 32)])
def test_bad_input_shape_is_rejected(shape):
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        MNISTClassifier()(torch.zeros(shape))


def test_random_shift_is_a_translation_by_at_most_max_shift():
    # Content inside the central 20x20 stays inside the image for shifts up to 4, so every
    # output must equal torch.roll of the input by one of the allowed offsets.
    gen = torch.Generator().manual_seed(0)
    x = -torch.ones(64, 1, 28, 28)
    x[:, :, 4:24, 4:24] = torch.rand(64, 1, 20, 20, generator=gen) * 2 - 1
    out = random_shift(x, 2, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    seen = set()
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(out[i], torch.roll(x[i], shifts=(dy, dx), dims=(1, 2)))
        ]
        assert len(matches) == 1, f"image {i} is not a single shift of its input"
        seen.add(matches[0])
    assert len(seen) > 15  # the 25 offsets are all drawn (64 draws: ~24 expected)
    assert torch.equal(random_shift(x, 0), x)


def test_random_shift_fills_with_background():
    x = torch.ones(200, 1, 28, 28)  # all-white: any shift brings in -1 pixels on an edge
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) <= {-1.0, 1.0}
    moved = (out == -1).flatten(1).any(1)
    assert moved.float().mean() > 0.9  # only offset (0, 0) leaves it unchanged: 1/25


def _synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten easy classes: class k is a bright 6x6 square at position k of a 2x5 grid, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=gen)
    x = -torch.ones(n, 1, 28, 28) + 0.2 * torch.rand(n, 1, 28, 28, generator=gen)
    for k in range(10):
        r, c = 4 + 12 * (k // 5), 1 + 5 * (k % 5)
        x[y == k, :, r : r + 6, c : c + 5] = 1.0
    return x, y


def test_training_learns_a_separable_task():
    x_train, y_train = _synthetic_digits(768, seed=0)
    x_test, y_test = _synthetic_digits(300, seed=1)
    model, result = train_classifier(
        epochs=3,
        seed=0,
        config=ClassifierConfig(channels=(8, 16), hidden=32),
        batch_size=64,
        max_shift=1,
        data=(x_train, y_train, x_test, y_test),
        progress=False,
    )
    assert not model.training
    assert result.epochs == 3 and len(result.train_loss) == 3
    assert result.train_loss[-1] < result.train_loss[0]
    assert result.test_accuracy == accuracy(model, x_test, y_test) > 0.95
    assert result.cpu_minutes > 0


def test_training_rejects_bad_epochs():
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(epochs=0, data=(torch.zeros(1, 1, 28, 28),) * 4)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MNISTClassifier(ClassifierConfig(channels=(4, 8), hidden=16)).eval()
    model.conv1[1].running_mean.uniform_()  # buffers must travel too
    card = save_classifier(tmp_path / "clf", model, {"epochs": 1})
    assert card["format"] == CARD_FORMAT and card["epochs"] == 1
    assert json.loads((tmp_path / "clf.json").read_text()) == card
    loaded, card2 = load_classifier(tmp_path / "clf.safetensors")
    assert card2 == card and not loaded.training and loaded.config == model.config
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_load_refuses_tampered_weights_and_foreign_cards(tmp_path):
    model = MNISTClassifier(ClassifierConfig(channels=(4, 8), hidden=16))
    save_classifier(tmp_path / "clf", model, {})
    data = bytearray((tmp_path / "clf.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "clf.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_classifier(tmp_path / "clf")
    (tmp_path / "clf.json").write_text(json.dumps({"format": "course_ddpm.model/1"}))
    with pytest.raises(CheckpointError, match="not a classifier card"):
        load_classifier(tmp_path / "clf")
