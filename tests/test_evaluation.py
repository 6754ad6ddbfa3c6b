"""Tests for course_ddpm.evaluation: digit histogram, bits/dim, evaluate and its report."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from course_ddpm import evaluation
from course_ddpm.classifier import ClassifierConfig, MNISTClassifier
from course_ddpm.evaluation import digit_histogram, kl_from_uniform, mean_confidence
from course_ddpm.pretrained import list_pretrained

needs_classifier = pytest.mark.skipif("classifier" not in list_pretrained(), reason="classifier weights not shipped")


def _biased_classifier(digit: int) -> MNISTClassifier:
    """A tiny classifier whose logits always favour ``digit`` by 100 (untrained weights ~ 0)."""
    model = MNISTClassifier(ClassifierConfig(channels=(4, 8), hidden=16)).eval()
    with torch.no_grad():
        model.fc2.weight.zero_()
        model.fc2.bias.zero_()
        model.fc2.bias[digit] = 100.0
    return model


def test_histogram_of_a_one_class_set_puts_all_mass_on_it():
    x = torch.rand(37, 1, 28, 28) * 2 - 1
    counts, fractions = digit_histogram(x, classifier=_biased_classifier(3), batch_size=10)
    expected = torch.zeros(10, dtype=torch.int64)
    expected[3] = 37
    assert torch.equal(counts, expected)
    assert torch.equal(fractions, expected.double() / 37)
    assert kl_from_uniform(fractions) == pytest.approx(math.log(10))
    assert mean_confidence(x, classifier=_biased_classifier(3)) == pytest.approx(1.0)


def test_mean_confidence_of_a_classifier_with_equal_logits_is_one_tenth():
    model = _biased_classifier(0)
    with torch.no_grad():
        model.fc2.bias.zero_()
    assert mean_confidence(torch.zeros(4, 1, 28, 28), classifier=model) == pytest.approx(0.1)


def test_kl_from_uniform_closed_forms():
    assert kl_from_uniform(torch.full((10,), 0.1, dtype=torch.float64)) == pytest.approx(0.0, abs=1e-12)
    two = torch.tensor([0.5, 0.5] + [0.0] * 8)
    assert kl_from_uniform(two) == pytest.approx(math.log(5))  # sum 0.5 log(0.5 * 10)
    p = torch.tensor([0.7, 0.2, 0.1])
    assert kl_from_uniform(p) == pytest.approx(float((p * torch.log(3 * p)).sum()))
    with pytest.raises(ValueError, match="probability"):
        kl_from_uniform(torch.tensor([0.5, 0.6]))


@needs_classifier
@pytest.mark.mnist
def test_histogram_of_real_test_digits_follows_their_labels():
    from course_ddpm.data import load_mnist

    x, y = load_mnist(train=False)
    threes = x[y == 3][:300]
    counts, fractions = digit_histogram(threes)
    assert counts.sum() == 300 and fractions[3] > 0.97
    assert kl_from_uniform(fractions) > 0.9 * math.log(10)
    assert mean_confidence(threes) > 0.95


class ZeroEps(nn.Module):
    """eps_pred = 0: a "model" whose bound has a closed form in every piece we need."""

    def __init__(self, num_classes: int | None = None):
        super().__init__()
        self.config = type("Config", (), {"num_classes": num_classes})()
        self.seen_y = []

    def forward(self, x_t, t, y=None):
        self.seen_y.append(y)
        return torch.zeros_like(x_t)


@pytest.mark.mnist
def test_bits_per_dim_pieces_add_up_to_the_total():
    from course_ddpm.data import load_mnist
    from course_ddpm.losses import variational_bound
    from course_ddpm.schedules import make_schedule

    schedule = make_schedule("linear", 20, warn=False)
    bpd = evaluation.bits_per_dim(ZeroEps(), schedule, n=6, batch_size=4, seed=0, progress=False)
    assert bpd["n"] == 6 and bpd["conditional"] is False
    assert bpd["prior"] + bpd["decoder"] + bpd["diffusion"] == pytest.approx(bpd["total"], rel=1e-6)
    # Independently: the same two batches through variational_bound directly.
    x_test, _ = load_mnist(train=False)
    gen = torch.Generator().manual_seed(0)
    batches = x_test[:6].split(4)
    totals = torch.cat([variational_bound(ZeroEps(), schedule, x, generator=gen).total_bpd for x in batches])
    assert bpd["total"] == pytest.approx(float(totals.mean()), rel=1e-6)
    assert all(v > 0 for k, v in bpd.items() if k in ("total", "prior", "decoder", "diffusion"))
    # a model that predicts eps = 0 pays more in L_0 than the perfect predictor's floor
    assert 0 < bpd["decoder_floor"] < bpd["decoder"]
    assert bpd["decoder_floor"] == evaluation.decoder_floor_bpd(schedule, x_test[:6], seed=0)


@pytest.mark.mnist
def test_bits_per_dim_gives_a_conditional_model_the_true_labels():
    from course_ddpm.data import load_mnist
    from course_ddpm.schedules import make_schedule

    model = ZeroEps(num_classes=10)
    evaluation.bits_per_dim(model, make_schedule("linear", 3, warn=False), n=5, batch_size=5, progress=False)
    _, y_test = load_mnist(train=False)
    assert all(torch.equal(y, y_test[:5]) for y in model.seen_y)


@needs_classifier
@pytest.mark.mnist
def test_evaluate_reports_everything_json_safe():
    from course_ddpm.schedules import make_schedule

    model = ZeroEps(num_classes=10)
    schedule = make_schedule("linear", 10, warn=False)
    d = evaluation.evaluate(model, schedule, n=30, num_inference_steps=5, batch_size=16, bpd_subset=4, progress=False)
    json.dumps(d)  # JSON-safe
    assert d["n"] == 30 and sum(d["digit_counts"]) == 30
    assert sum(d["digit_fractions"]) == pytest.approx(1.0)
    assert d["fid_floor"] < d["fid_ceiling"] and d["fid"] > 0
    assert 0 <= d["kl_from_uniform"] <= math.log(10) + 1e-9
    assert 0.1 <= d["mean_confidence"] <= 1
    assert 0 <= d["class_accuracy"] <= 1  # the model is conditional
    labels = torch.cat([y for y in model.seen_y[: 2 * 5] if y is not None])  # the sampling calls
    assert torch.equal(labels[:16], torch.arange(16) % 10)
    b = d["bpd"]
    assert b["prior"] + b["decoder"] + b["diffusion"] == pytest.approx(b["total"], rel=1e-6)
    report = evaluation.format_report(d)
    for text in ("MNIST-FID", f"{d['fid']:.3f}", "class accuracy", "bits/dim", f"{b['total']:.4f}"):
        assert text in report


def test_decoder_floor_matches_the_gaussian_bin_masses_in_closed_form():
    """Perfect eps: the decoder is N(x0, sigma_1^2) per pixel; its bin mass is a difference of normal CDFs."""
    from course_ddpm.reverse import log_sigma2
    from course_ddpm.schedules import linear_schedule

    schedule = linear_schedule(1000)
    levels = torch.tensor([0, 0, 0, 1, 128, 254, 255, 255], dtype=torch.float64)
    x0 = (levels / 127.5 - 1.0).view(2, 1, 2, 2)  # (B, C, H, W) on the 256-level grid
    sigma = math.exp(0.5 * float(log_sigma2(schedule, "fixed_small")[0]))
    half = 1.0 / 255.0
    cdf = torch.special.ndtr
    upper = torch.where(x0 >= 1.0, torch.ones_like(x0), cdf(torch.full_like(x0, half / sigma)))
    lower = torch.where(x0 <= -1.0, torch.zeros_like(x0), cdf(torch.full_like(x0, -half / sigma)))
    expected = float((-torch.log2(upper - lower)).mean())
    # the package's CDF is the tanh approximation of Ho et al.'s code, good to ~1e-3 here
    assert evaluation.decoder_floor_bpd(schedule, x0) == pytest.approx(expected, rel=2e-3)
    # edge pixels cost less than interior ones: an all-black image is cheaper than a grey one
    black, grey = -torch.ones(1, 1, 2, 2), torch.full((1, 1, 2, 2), 128 / 127.5 - 1.0)
    assert evaluation.decoder_floor_bpd(schedule, black) < 1.0 < evaluation.decoder_floor_bpd(schedule, grey)
