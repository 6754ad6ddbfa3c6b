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
    assert [r["fid"] for r in card["learning_curve"]] == [r["fid"] for r in curve if r["step"] <= card["step"]]
    # the learning curve's last point and the sampler study's DDIM-50 eta-0 row: same weights, sampler, N and
    # seed, so the same samples and the same FID
    study = {r["name"]: r for r in results.load_result("sampler_study")["results"]}
    assert curve[-1]["step"] == card["step"]
    assert study["ddim50_eta0"]["fid"] == pytest.approx(curve[-1]["fid"], rel=1e-6)
