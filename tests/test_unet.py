"""Tests for course_ddpm.unet: the course's U-Net and its blocks.

Pinned figures the README quotes (parameters, MFLOP per image), blocks against independent
implementations (torch's scaled_dot_product_attention, the sinusoid's closed form), the
receptive field, conditioning and config errors.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_ddpm.networks import build_model, count_parameters, flops_per_image, receptive_field
from course_ddpm.unet import SelfAttention, UNet, UNetConfig, sinusoidal_embedding

pytestmark = pytest.mark.usefixtures("one_thread")  # many small forward passes (tests/conftest.py)

SMALL_UNET = dict(base_channels=16, num_res_blocks=1)  # keeps the tests fast


def test_unet_other_sizes_and_levels():
    model = build_model("unet", base_channels=8, channel_mults=(1, 2, 2, 4), num_res_blocks=1, groups=4)
    x_t = torch.randn(1, 1, 32, 32)
    assert model(x_t, torch.tensor([5])).shape == x_t.shape


def test_default_unet_has_the_parameters_and_flops_the_readme_quotes():
    """The README quotes the default UNet (UNetConfig()) as 280,177 parameters and 96 MFLOP per image."""
    model = UNet()
    assert count_parameters(model) == 280_177
    assert flops_per_image(model) == 95_860_224 and round(flops_per_image(model) / 1e6) == 96


def test_unet_parameters_scale_with_width_and_the_class_embedding():
    n_default = count_parameters(UNet())
    n16, n32 = (count_parameters(build_model("unet", base_channels=b, num_res_blocks=1)) for b in (16, 32))
    assert 3.5 < n32 / n16 < 4.5  # conv weights dominate and scale as width^2
    n_cond = count_parameters(build_model("unet", num_classes=10))
    assert n_cond - n_default == 11 * 4 * UNetConfig().base_channels  # one (num_classes+1, 4 base) embedding


def test_unet_flops_scale_with_width():
    f16, f32 = (flops_per_image(build_model("unet", base_channels=b, num_res_blocks=1)) for b in (16, 32))
    assert 3.5 < f32 / f16 < 4.5  # conv FLOPs scale as width^2


def test_unet_sees_whole_image():
    torch.manual_seed(0)
    model = build_model("unet", **SMALL_UNET).double()
    x = torch.randn(1, 1, 28, 28, dtype=torch.float64)
    assert (receptive_field(model, x, torch.tensor([10]), (0, 0)) > 0).all()


def test_unet_conv_path_alone_sees_whole_image():
    """GroupNorm statistics and attention mix the whole image anyway; remove both and
    the convolutions (3x3 at 28, 14 and 7 pixels) still reach every input pixel."""
    torch.manual_seed(0)
    model = build_model("unet", attention=False, **SMALL_UNET).double()
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.GroupNorm):
                setattr(module, child_name, nn.Identity())
    assert not any(isinstance(m, (nn.GroupNorm, SelfAttention)) for m in model.modules())
    x = torch.randn(1, 1, 28, 28, dtype=torch.float64)
    assert (receptive_field(model, x, torch.tensor([10]), (14, 14)) > 0).all()


def test_class_conditioning_and_null_label():
    torch.manual_seed(0)
    model = build_model("unet", num_classes=10, **SMALL_UNET)
    x_t = torch.randn(1, 1, 28, 28).repeat(3, 1, 1, 1)
    t = torch.full((3,), 100)
    eps_pred = model(x_t, t, torch.tensor([3, 7, 10]))
    assert (eps_pred[0] - eps_pred[1]).abs().max() > 1e-4  # labels matter
    eps_null = model(x_t, t, None)  # y=None on a conditional model = null label
    torch.testing.assert_close(eps_null[2], eps_pred[2])
    assert (eps_null[0] - eps_pred[0]).abs().max() > 1e-4


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = build_model("unet", num_classes=10, **SMALL_UNET)
    model(torch.randn(4, 1, 28, 28), torch.randint(0, 1000, (4,)), torch.tensor([0, 1, 2, 3])).square().mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert unused == []


def test_sinusoidal_embedding_closed_form():
    t = torch.tensor([0, 1, 37, 999])
    emb = sinusoidal_embedding(t, 16)
    assert emb.shape == (4, 16)
    torch.testing.assert_close(emb[:, 0], torch.sin(t.float()))  # w_0 = 1
    torch.testing.assert_close(emb[:, 8], torch.cos(t.float()))
    torch.testing.assert_close(emb[:, 1], torch.sin(t.float() * 10000 ** (-1 / 8)))
    torch.testing.assert_close(emb.norm(dim=1), torch.full((4,), math.sqrt(8)))  # sin^2 + cos^2 = 1 per pair
    with pytest.raises(ValueError, match="even"):
        sinusoidal_embedding(t, 7)


def test_self_attention_matches_torch_sdpa():
    torch.manual_seed(0)
    attn = SelfAttention(16, groups=4)
    x = torch.randn(2, 16, 7, 7)
    q, k, v = attn.qkv(attn.norm(x)).reshape(2, 3, 16, 49).transpose(2, 3).unbind(1)  # (B, HW, C)
    h = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C), independent implementation
    expected = x + attn.proj(h.transpose(1, 2).reshape(2, 16, 7, 7))
    torch.testing.assert_close(attn(x), expected)


def test_unet_config_is_frozen_and_validated():
    with pytest.raises(Exception):
        UNetConfig().base_channels = 64  # frozen
    with pytest.raises(ValueError, match="groups"):
        UNetConfig(base_channels=12, groups=8)
    with pytest.raises(ValueError, match="num_classes"):
        UNetConfig(num_classes=0)
    with pytest.raises(ValueError, match="even"):
        UNetConfig(base_channels=9, groups=1)


def test_unet_errors_on_size_and_labels():
    unet = build_model("unet", num_classes=10, **SMALL_UNET)
    x_t, t = torch.randn(2, 1, 28, 28), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="divisible"):
        unet(torch.randn(2, 1, 30, 30), t)
    with pytest.raises(ValueError, match="y must lie"):
        unet(x_t, t, torch.tensor([0, 11]))  # 10 is the null label, 11 is out of range
    with pytest.raises(TypeError, match="y must"):
        unet(x_t, t, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="y must"):
        unet(x_t, t, torch.tensor([0]))  # batch mismatch
