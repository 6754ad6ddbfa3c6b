"""Tests for course_ddpm.training_config: the run's config, its checks, JSON round trip and resume rule."""

from __future__ import annotations

import json

import pytest

from course_ddpm.training_config import RESUMABLE_CHANGES, TrainConfig, check_resumable


def test_config_json_round_trip_and_hashable():
    config = TrainConfig(model_kwargs={"channel_mults": [1, 2], "base_channels": 8}, grad_clip=None, conditional=True)
    again = TrainConfig.from_json(config.to_json())
    assert again == config and hash(again) == hash(config)
    assert config.model_kwargs == (("base_channels", 8), ("channel_mults", (1, 2)))
    assert json.loads(config.to_json())["model_kwargs"] == {"base_channels": 8, "channel_mults": [1, 2]}
    assert config.model_config_kwargs()["num_classes"] == 10  # conditional on MNIST by default


@pytest.mark.parametrize(
    "field, value",
    [("lr", 0.0), ("batch_size", 0), ("ema_decay", 1.0), ("label_dropout", 1.0), ("precision", "fp16"),
     ("device", "tpu"), ("grad_clip", -1.0), ("steps", 2.5), ("model", "transformer")],
)  # fmt: skip
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_config_rejects_unknown_fields_and_inconsistent_labels():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_json('{"learning_rate": 0.1}')
    with pytest.raises(ValueError, match="conditional"):
        TrainConfig(model_kwargs={"num_classes": 10})


def test_check_resumable_names_each_changed_field_outside_the_resumable_ones():
    saved = TrainConfig(steps=100, lr=1e-3).to_dict()
    check_resumable(saved, TrainConfig(steps=200, lr=1e-3, out_dir="elsewhere", num_threads=1))  # all resumable
    with pytest.raises(ValueError, match=r"lr: 0\.001 -> 0\.002.*seed: 0 -> 1"):
        check_resumable(saved, TrainConfig(steps=100, lr=2e-3, seed=1))
    maths = {"model", "model_kwargs", "schedule", "T", "batch_size", "lr", "seed", "ema_decay", "conditional"}
    assert not maths & RESUMABLE_CHANGES  # a field that changes the maths may never change on resume
