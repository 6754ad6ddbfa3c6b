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
