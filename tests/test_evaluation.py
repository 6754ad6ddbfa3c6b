"""Tests for course_ddpm.evaluation: digit histogram, bits/dim, evaluate and its report.

Each measure is checked against something that does not share its code: a hand-built
classifier whose softmax is known in closed form, a perfect noise predictor whose
variational bound has a known value in every term, and the normal CDF for the decoder.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from course_ddpm import evaluation
from course_ddpm.checkpoints import state_dict_sha256
from course_ddpm.classifier import ClassifierConfig, MNISTClassifier
from course_ddpm.evaluation import digit_histogram, kl_from_uniform, mean_confidence

needs_classifier = pytest.mark.usefixtures("shipped_classifier")  # skipped without its weights; failed in CI


def _fixed_logits_classifier(logits: torch.Tensor) -> MNISTClassifier:
    """A tiny classifier whose logits are ``logits`` (10,) for every image: softmax known in closed form."""
    model = MNISTClassifier(ClassifierConfig(channels=(4, 8), hidden=16)).eval()
    with torch.no_grad():
        model.fc2.weight.zero_()
        model.fc2.bias.copy_(logits)
    return model


def _biased_classifier(digit: int) -> MNISTClassifier:
    """Logits that favour ``digit`` by 100: every image is that digit, with confidence 1."""
    logits = torch.zeros(10)
    logits[digit] = 100.0
    return _fixed_logits_classifier(logits)


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
    model = _fixed_logits_classifier(torch.zeros(10))
    assert mean_confidence(torch.zeros(4, 1, 28, 28), classifier=model) == pytest.approx(0.1)


def test_kl_from_uniform_closed_forms():
    assert kl_from_uniform(torch.full((10,), 0.1, dtype=torch.float64)) == pytest.approx(0.0, abs=1e-12)
    two = torch.tensor([0.5, 0.5] + [0.0] * 8)
    assert kl_from_uniform(two) == pytest.approx(math.log(5))  # sum 0.5 log(0.5 * 10)
    p = torch.tensor([0.7, 0.2, 0.1])
    assert kl_from_uniform(p) == pytest.approx(float((p * torch.log(3 * p)).sum()))
    with pytest.raises(ValueError, match="probability"):
        kl_from_uniform(torch.tensor([0.5, 0.6]))


@pytest.mark.mnist
def test_histogram_of_real_test_digits_follows_their_labels(shipped_classifier):
    from course_ddpm.data import load_mnist

    x, y = load_mnist(train=False)
    threes = x[y == 3][:300]
    counts, fractions = digit_histogram(threes)
    assert counts.sum() == 300 and fractions[3] > 0.97
    assert kl_from_uniform(fractions) > 0.9 * math.log(10)
    assert mean_confidence(threes) > 0.95


class ZeroEps(nn.Module):
    """eps_pred = 0: a "model" that has learnt nothing; it records the labels it is given."""

    def __init__(self, num_classes: int | None = None):
        super().__init__()
        self.config = type("Config", (), {"num_classes": num_classes})()
        self.seen_y = []

    def forward(self, x_t, t, y=None):
        self.seen_y.append(y)
        return torch.zeros_like(x_t)


class PointOracle(nn.Module):
    """The perfect noise predictor for data that is exactly the batch ``x0``:
    eps(x_t, t) = (x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t), so x0_pred = x0."""

    def __init__(self, schedule, x0: torch.Tensor):
        super().__init__()
        self.config = type("Config", (), {"num_classes": None})()
        self.schedule, self.x0 = schedule, x0

    def forward(self, x_t, t, y=None):
        ab = self.schedule.alpha_bar[t].view(-1, 1, 1, 1)  # float64
        return ((x_t.double() - ab.sqrt() * self.x0.double()) / (1 - ab).sqrt()).to(x_t.dtype)


@pytest.mark.mnist
def test_bits_per_dim_of_a_perfect_predictor_is_prior_plus_decoder_floor():
    """Every term in closed form: with x0_pred = x0 the reverse step is the forward posterior, so each
    L_{t-1} (t >= 2) is KL(q || q) = 0; L_0 is the decoder floor; L_T is the Gaussian KL to N(0, I)."""
    from course_ddpm.data import load_mnist
    from course_ddpm.schedules import make_schedule

    schedule = make_schedule("linear", 20, warn=False)
    x_test, _ = load_mnist(train=False)
    x0 = x_test[:4]
    bpd = evaluation.bits_per_dim(PointOracle(schedule, x0), schedule, n=4, batch_size=4, seed=0, progress=False)
    assert bpd["n"] == 4 and bpd["conditional"] is False
    # L_T: KL(N(sqrt(a) x0, 1 - a) || N(0, 1)) = (a x0^2 - a - log(1 - a)) / 2 per pixel, a = alpha_bar_T
    a = schedule.alpha_bar[-1].item()
    prior = (0.5 * (a * x0.double() ** 2 - a - math.log1p(-a))).flatten(1).mean(1) / math.log(2)  # (4,) bits/dim
    assert bpd["prior"] == pytest.approx(float(prior.mean()), rel=1e-5)
    assert abs(bpd["diffusion"]) < 1e-6  # KL(q || q), up to float32 rounding of x0_pred
    assert bpd["decoder"] == pytest.approx(bpd["decoder_floor"], rel=1e-5)
    assert bpd["total"] == pytest.approx(float(prior.mean()) + bpd["decoder_floor"], rel=1e-5)
    # and a worse predictor pays more in the decoder term than the floor
    worse = evaluation.bits_per_dim(ZeroEps(), schedule, n=4, batch_size=4, seed=0, progress=False)
    assert worse["decoder"] > bpd["decoder_floor"] and worse["diffusion"] > 0.1


@pytest.mark.mnist
def test_bits_per_dim_gives_a_conditional_model_the_true_labels():
    from course_ddpm.data import load_mnist
    from course_ddpm.schedules import make_schedule

    model = ZeroEps(num_classes=10)
    evaluation.bits_per_dim(model, make_schedule("linear", 3, warn=False), n=5, batch_size=5, progress=False)
    _, y_test = load_mnist(train=False)
    assert all(torch.equal(y, y_test[:5]) for y in model.seen_y)


@pytest.mark.mnist
def test_evaluate_with_a_classifier_of_known_softmax():
    from course_ddpm.fid import fid_reference_points, mnist_fid
    from course_ddpm.sampling import generate
    from course_ddpm.schedules import make_schedule

    logits = torch.linspace(0.0, 2.7, 10)  # every image: p = softmax(logits), top class 9
    classifier = _fixed_logits_classifier(logits)
    p = torch.softmax(logits.double(), dim=0)
    model = ZeroEps(num_classes=10)
    schedule = make_schedule("linear", 10, warn=False)
    d = evaluation.evaluate(model, schedule, n=30, num_inference_steps=5, batch_size=16, bpd_subset=4,
                            classifier=classifier, progress=False)  # fmt: skip
    json.dumps(d)  # JSON-safe
    assert (d["n"], d["sampler"], d["steps"], d["eta"]) == (30, "ddim", 5, 0.0)
    assert d["digit_counts"] == [0] * 9 + [30] and d["digit_fractions"] == [0.0] * 9 + [1.0]
    assert d["kl_from_uniform"] == pytest.approx(math.log(10))
    assert d["mean_confidence"] == pytest.approx(float(p[9]), rel=1e-12)
    assert d["mean_confidence_test"] == pytest.approx(float(p[9]), rel=1e-12)
    assert d["class_accuracy"] == pytest.approx(3 / 30)  # labels 0..9 three times; all classified 9
    assert d["class_accuracy_per_label"] == [0.0] * 9 + [1.0]  # only the requested 9s are classified right
    assert d["classifier_tensors_sha256"] == state_dict_sha256(classifier)
    assert d["model_tensors_sha256"] == state_dict_sha256(model)
    labels = torch.cat([y for y in model.seen_y[: 2 * 5] if y is not None])  # the sampling calls
    assert torch.equal(labels[:16], torch.arange(16) % 10)
    # the FID and its yardsticks are those of the fid module for the same samples and classifier
    samples = generate(model, schedule, 30, labels=torch.arange(30) % 10, num_inference_steps=5, batch_size=16,
                       progress=False)  # fmt: skip
    assert d["fid"] == pytest.approx(mnist_fid(samples, classifier=classifier), rel=1e-9)
    reference = fid_reference_points(30, classifier=classifier, seed=0)
    assert (d["fid_floor"], d["fid_ceiling"]) == pytest.approx((reference["floor"], reference["ceiling"]), rel=1e-9)
    b = d["bpd"]
    assert b["n"] == 4 and b["conditional"] is True
    report = evaluation.format_report(d)
    for text in ("MNIST-FID", f"{d['fid']:.3f}", "class accuracy", "bits/dim", f"{b['total']:.4f}", "5 steps"):
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
