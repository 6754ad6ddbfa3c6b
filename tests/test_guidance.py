"""Tests for course_ddpm.guidance: classifier-free guidance (Ho & Salimans 2022).

A conditional "model" built from exact denoisers of toy data (course_ddpm.toy) gives known
answers: s = 0 must sample the unconditional model, s = 1 the conditional one.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_ddpm.guidance import conditioning, predict_eps
from course_ddpm.sampling import sample
from course_ddpm.schedules import linear_schedule
from course_ddpm.toy import GaussianMixture

pytestmark = pytest.mark.usefixtures("one_thread")

SCHED = linear_schedule(250, rescale=True)


def _sample(model, shape, seed=0, **kw):
    return sample(model, SCHED, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64,
                  clip_x0=False, progress=False, **kw)  # fmt: skip


class CountingConditionalModel(nn.Module):
    """eps of N(-1, 0.3^2) for y = 0, N(+1, 0.3^2) for y = 1, and their mixture for the null label 2."""

    def __init__(self):
        super().__init__()
        self.config = type("Config", (), {"num_classes": 2})()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.per_class = [
            GaussianMixture.gaussian(-1.0, 0.3).eps_model(SCHED),
            GaussianMixture.gaussian(1.0, 0.3).eps_model(SCHED),
            GaussianMixture((0.5, 0.5), (-1.0, 1.0), (0.3, 0.3)).eps_model(SCHED),
        ]
        self.batch_sizes, self.modes, self.grad_enabled = [], [], []

    def forward(self, x_t, t, y=None):
        self.batch_sizes.append(x_t.shape[0])
        self.modes.append(self.training)
        self.grad_enabled.append(torch.is_grad_enabled())
        y = torch.full_like(t, 2) if y is None else y
        eps = [f(x_t, t) for f in self.per_class]
        mask = [(y == k).to(x_t.dtype).unsqueeze(1) for k in range(3)]
        return sum(m * e for m, e in zip(mask, eps))


@pytest.mark.parametrize(
    "kw", [dict(sampler="ddpm"), dict(sampler="ddim", num_inference_steps=25, eta=1.0)], ids=["ddpm", "ddim"]
)
def test_guidance_scale_0_is_unconditional_and_1_is_conditional(kw):
    model = CountingConditionalModel()
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    shape = (6, 1)
    uncond = _sample(model, shape, seed=1, y=torch.full_like(y, 2), **kw).samples
    cond = _sample(model, shape, seed=1, y=y, **kw).samples
    model.batch_sizes.clear()
    g0 = _sample(model, shape, seed=1, y=y, guidance_scale=0.0, **kw).samples
    assert set(model.batch_sizes) == {12}  # cond and uncond in one forward pass of 2B
    g1 = _sample(model, shape, seed=1, y=y, guidance_scale=1.0, null_label=2, **kw).samples
    torch.testing.assert_close(g0, uncond, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g1, cond, rtol=1e-10, atol=1e-10)
    g3 = _sample(model, shape, seed=1, y=y, guidance_scale=3.0, **kw).samples
    assert not torch.allclose(g3, cond)


def test_predict_eps_is_the_guidance_formula():
    model = CountingConditionalModel()
    x_t = torch.randn(4, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t, y = torch.tensor([10, 50, 100, 200]), torch.tensor([0, 1, 1, 0])
    eps_cond, eps_uncond = model(x_t, t, y), model(x_t, t, torch.full_like(y, 2))
    guided = predict_eps(model, x_t, t, y, guidance_scale=2.5, null_label=2)
    torch.testing.assert_close(guided, eps_uncond + 2.5 * (eps_cond - eps_uncond))
    torch.testing.assert_close(predict_eps(model, x_t, t, y), eps_cond)


def test_model_errors_restore_training_mode():
    class Broken(CountingConditionalModel):
        def forward(self, x_t, t, y=None):
            return x_t[:1]

    model = Broken().train()
    with pytest.raises(ValueError, match="eps_pred of shape"):
        _sample(model, (2, 1), sampler="ddim", num_inference_steps=3)
    assert model.training


def test_conditioning_checks_and_defaults():
    model = CountingConditionalModel()
    y, null_label = conditioning(model, torch.tensor([0, 1], dtype=torch.int32), 2.0, None, 2, "cpu")
    assert y.dtype == torch.long and null_label == 2  # the null label from model.config.num_classes
    assert conditioning(model, None, None, None, 2, "cpu") == (None, None)
    with pytest.raises(ValueError, match="needs class labels y"):
        conditioning(model, None, 2.0, None, 2, "cpu")
    with pytest.raises(ValueError, match="y must have shape"):
        conditioning(model, torch.tensor([0, 1, 0]), None, None, 2, "cpu")
    with pytest.raises(TypeError, match="guidance_scale"):
        conditioning(model, torch.tensor([0, 1]), "2", None, 2, "cpu")
    with pytest.raises(ValueError, match="null_label"):  # a plain function: no model.config
        conditioning(GaussianMixture.gaussian().eps_model(SCHED), torch.tensor([0, 1]), 2.0, None, 2, "cpu")


def test_bad_labels_are_refused_before_sampling_starts():
    from course_ddpm.networks import build_model

    model = CountingConditionalModel()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\] \(or 2, the null label\), got \[0, 3\]"):
        _sample(model, (2, 1), y=torch.tensor([0, 3]), guidance_scale=2.0)
    with pytest.raises(ValueError, match="got \\[-1, 1\\]"):
        _sample(model, (2, 1), y=torch.tensor([-1, 1]))
    with pytest.raises(ValueError, match=r"y must have shape \(B,\) = \(2,\)"):
        _sample(model, (2, 1), y=torch.tensor([0, 1, 1]))
    assert model.batch_sizes == []  # the model was never called
    unconditional = build_model("unet", base_channels=8, channel_mults=(1,), num_res_blocks=1, attention=False)
    with pytest.raises(ValueError, match="labels y were given but the model is unconditional"):
        sample(unconditional, SCHED, (1, 1, 28, 28), y=torch.tensor([3]), progress=False)


def test_toy_guidance_follows_the_noised_tilted_density():
    """With exact class denoisers, the guided eps is -sqrt(1 - alpha_bar) times the score of
    q_t(x | y)^s q_t(x)^(1 - s) (Ho & Salimans 2022, eq. 6), checked by autograd."""
    mixture = GaussianMixture((0.3, 0.7), (-0.8, 0.6), (0.2, 0.3))
    model = mixture.conditional_eps_model(SCHED)
    x_t = torch.linspace(-2, 2, 6, dtype=torch.float64).reshape(6, 1).requires_grad_()
    t = torch.tensor([5, 40, 80, 120, 200, 249])
    for s in (0.0, 1.0, 2.5):
        log_tilted = s * mixture.component(0).noised_log_prob(SCHED, x_t, t) + (1 - s) * mixture.noised_log_prob(
            SCHED, x_t, t
        )
        (score,) = torch.autograd.grad(log_tilted.sum(), x_t)
        expected = -(1 - SCHED.alpha_bar[t]).sqrt().reshape(6, 1) * score
        guided = predict_eps(model, x_t.detach(), t, torch.zeros(6, dtype=torch.long), guidance_scale=s)
        torch.testing.assert_close(guided, expected)


def test_shipped_conditional_model_guides_with_its_ema_weights_in_both_passes():
    """One set of weights (the EMA ones, those evaluated on the card) serves eps_cond and eps_uncond;
    s = 0 and s = 1 equal the unconditional and the plain conditional prediction to float precision."""
    from course_ddpm.checkpoints import state_dict_sha256
    from course_ddpm.pretrained import list_pretrained, load_pretrained

    if "unet_cond" not in list_pretrained():
        pytest.fail("the conditional weights are committed; their absence is a defect")
    model, card = load_pretrained("unet_cond")
    assert card["weights"] == "ema" and card["evaluation"]["model_tensors_sha256"] == state_dict_sha256(model)
    g = torch.Generator().manual_seed(0)
    x_t, t, y = torch.randn(4, 1, 28, 28, generator=g), torch.tensor([999, 600, 300, 50]), torch.tensor([1, 4, 7, 9])
    with torch.no_grad():
        eps_cond, eps_uncond = model(x_t, t, y), model(x_t, t, torch.full_like(y, 10))
        for s in (0.0, 1.0, 3.0):
            torch.testing.assert_close(
                predict_eps(model, x_t, t, y, guidance_scale=s), eps_uncond + s * (eps_cond - eps_uncond),
                rtol=1e-4, atol=1e-5,
            )  # fmt: skip
    assert not torch.allclose(eps_cond, eps_uncond, atol=1e-3)  # the label matters
