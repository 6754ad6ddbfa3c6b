"""course_ddpm.results: the shipped results load by name, agree with each other and with the card."""

from __future__ import annotations

import json

import pytest

from course_ddpm import results
from course_ddpm.pretrained import weights_dir


def test_every_result_is_shipped_and_loads():
    files = sorted(p.stem for p in results.results_dir().glob("*.json"))
    assert files == sorted(results.RESULTS)
    for name in results.RESULTS:
        assert isinstance(results.load_result(name), dict)


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="sampler_study"):
        results.load_result("sampler-study")


def test_missing_file_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(results, "results_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="installed without its results"):
        results.load_result("budget_study")


def test_results_agree_with_the_model_card():
    """The card's evaluation and learning curve are the shipped result files, number for number."""
    card = json.loads((weights_dir() / "ddpm_unet.json").read_text())
    evaluation = results.load_result("evaluation_10000")
    assert card["evaluation"]["fid"] == evaluation["fid"] and card["evaluation"]["n"] == evaluation["n"] == 10_000
    curve = results.load_result("learning_curve")["rows"]
    # the card's curve was measured on the original snapshots when the weights were shipped, on another CPU;
    # the committed one on a bit-identical rerun's: every step both have must give the same FID
    measured_then = {r["step"]: r["fid"] for r in card["learning_curve"]}
    common = [r for r in curve if r["step"] in measured_then]
    assert common and common[-1]["step"] == card["step"]
    assert all(r["fid"] == pytest.approx(measured_then[r["step"]], rel=1e-9) for r in common), common
    # the learning curve's last point and the sampler study's DDIM-50 eta-0 row: same weights, sampler, N and
    # seed, so the same samples and the same FID
    study = {r["name"]: r for r in results.load_result("sampler_study")["results"]}
    assert curve[-1]["step"] == card["step"]
    assert study["ddim50_eta0"]["fid"] == pytest.approx(curve[-1]["fid"], rel=1e-6)


def test_images_round_trip_through_json_as_8_bit_pixels():
    import torch

    x = torch.linspace(-1.2, 1.2, 2 * 1 * 3 * 4).reshape(2, 1, 3, 4)
    d = json.loads(json.dumps(results.images_to_json(x)))
    back = results.images_from_json(d)
    assert d["shape"] == [2, 1, 3, 4] and back.dtype == torch.float32
    expected = torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1  # clamped, then 256 levels
    torch.testing.assert_close(back, expected, rtol=0, atol=1e-6)
    assert back.min() == -1 and back.max() == 1
    with pytest.raises(ValueError, match="images"):
        results.images_to_json(torch.zeros(3, 4))


def test_learning_curve_keeps_samples_of_every_snapshot():
    curve = results.load_result("learning_curve")
    for row in curve["rows"]:
        images = results.images_from_json(row["samples"])
        assert images.shape == (16, 1, 28, 28) and -1 <= images.min() < images.max() <= 1
