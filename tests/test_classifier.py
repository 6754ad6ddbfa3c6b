"""Tests for course_ddpm.classifier: shapes, the shift augmentation, training, and its model file."""

from __future__ import annotations

import json

import pytest
import torch

from course_ddpm.checkpoints import MODEL_FORMAT, CheckpointError, load_model, read_card, save_model
from course_ddpm.classifier import (
    ClassifierConfig,
    MNISTClassifier,
    accuracy,
    main,
    random_shift,
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


def test_the_classifier_is_saved_and_loaded_as_any_model_of_the_package(tmp_path):
    torch.manual_seed(0)
    model = MNISTClassifier(ClassifierConfig(channels=(4, 8), hidden=16)).eval()
    model.conv1[1].running_mean.uniform_()  # buffers must travel too
    save_model(tmp_path / "clf.safetensors", model, {"epochs": 1})
    card = json.loads((tmp_path / "clf.json").read_text())
    assert card["format"] == MODEL_FORMAT and card["epochs"] == 1
    assert card["model"] == {"name": "mnist_classifier", "channels": [4, 8], "hidden": 16, "dropout": 0.25, "num_classes": 10}
    loaded, card2 = load_model(tmp_path / "clf.json")
    assert card2 == card and not loaded.training and loaded.config == model.config
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_a_tampered_classifier_file_is_refused(tmp_path):
    save_model(tmp_path / "clf.safetensors", MNISTClassifier(ClassifierConfig(channels=(4, 8), hidden=16)), {})
    data = bytearray((tmp_path / "clf.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "clf.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(tmp_path / "clf.safetensors")


def test_main_trains_and_writes_the_model_file_with_its_reproduce_command(tmp_path, monkeypatch):
    """``python -m course_ddpm.classifier`` writes the one model format, its card holding the command."""
    import course_ddpm.classifier as classifier

    x, y = _synthetic_digits(64, seed=2)
    tiny = ClassifierConfig(channels=(4, 8), hidden=16)

    def train_tiny(epochs, seed, config, progress):
        assert config == ClassifierConfig(channels=(4, 8), hidden=16)  # from --channels and --hidden
        return train_classifier(epochs, seed, config=config, batch_size=32, data=(x, y, x, y), progress=progress)

    monkeypatch.setattr(classifier, "train_classifier", train_tiny)
    threads = torch.get_num_threads()
    try:
        card = main(["--epochs", "1", "--seed", "3", "--channels", "4", "8", "--hidden", "16", "--out",
                     str(tmp_path / "clf"), "--no-progress"])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert card == read_card(tmp_path / "clf.safetensors")
    assert card["model"]["name"] == "mnist_classifier" and card["epochs"] == 1 and card["seed"] == 3
    assert card["command"] == (f"python -m course_ddpm.classifier --epochs 1 --seed 3 --channels 4 8 --hidden 16 "
                               f"--out {tmp_path / 'clf'} --no-progress")  # fmt: skip
    assert card["model"]["channels"] == [4, 8] and card["model"]["hidden"] == 16
    model, _ = load_model(tmp_path / "clf.safetensors")
    assert card["test_accuracy"] == accuracy(model, x, y)
