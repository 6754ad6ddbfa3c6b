"""Tests for course_ddpm.networks: shapes, parameter and FLOP hand counts, receptive
fields, conditioning, config round trips, input errors."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_ddpm.networks import (
    receptive_field,
    SelfAttention,
    SimpleUNet,
    SimpleUNetConfig,
    UNet,
    UNetConfig,
    block_summary,
    build_model,
    count_parameters,
    flops_per_image,
    model_from_config_dict,
    model_to_config_dict,
    sinusoidal_embedding,
)

torch.set_num_threads(1)

SMALL_UNET = dict(base_channels=16, num_res_blocks=1)  # keeps the tests fast


def conv_params(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def input_grad(model: nn.Module, x: torch.Tensor, t: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """The package's receptive_field; the tests compare it with windows counted by hand."""
    return receptive_field(model, x, t, (i, j))


# ---------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", ["simple_unet", "unet"])
def test_output_shape(name, in_channels):
    kwargs = SMALL_UNET if name == "unet" else {}
    model = build_model(name, in_channels=in_channels, **kwargs)
    x_t = torch.randn(2, in_channels, 28, 28)
    eps_pred = model(x_t, torch.tensor([0, 299]))
    assert eps_pred.shape == x_t.shape and eps_pred.dtype == x_t.dtype
    assert torch.isfinite(eps_pred).all()


def test_unet_other_sizes_and_levels():
    model = build_model("unet", base_channels=8, channel_mults=(1, 2, 2, 4), num_res_blocks=1, groups=4)
    x_t = torch.randn(1, 1, 32, 32)
    assert model(x_t, torch.tensor([5])).shape == x_t.shape


# ------------------------------------------------------------------ parameter counts
@pytest.mark.parametrize("c", [1, 3])
def test_simple_unet_parameter_count_by_hand(c):
    expected = (
        conv_params(c, 64, 3) + conv_params(64, 128, 3) + linear_params(1, 128) + linear_params(128, 128)
        + conv_params(128, 64, 3) + conv_params(64, c, 3)
    )
    assert count_parameters(SimpleUNet(SimpleUNetConfig(in_channels=c))) == expected
    if c == 1:
        assert expected == 165_633  # the seed lecture's "166k"


def test_unet_parameter_counts_in_expected_range():
    n_default = count_parameters(UNet())
    assert 0.2e6 < n_default < 3e6
    n16, n32 = (count_parameters(build_model("unet", base_channels=b, num_res_blocks=1)) for b in (16, 32))
    assert 3.5 < n32 / n16 < 4.5  # conv weights dominate and scale as width^2
    n_cond = count_parameters(build_model("unet", num_classes=10))
    assert n_cond - n_default == 11 * 4 * UNetConfig().base_channels  # one (num_classes+1, 4 base) embedding


# ---------------------------------------------------------------- receptive fields
def test_simple_unet_receptive_field_is_9x9():
    torch.manual_seed(0)
    model = SimpleUNet().double()
    x = torch.randn(1, 1, 28, 28, dtype=torch.float64)
    g = input_grad(model, x, torch.tensor([10]), 14, 14)
    expected = torch.zeros(28, 28, dtype=torch.bool)
    expected[10:19, 10:19] = True  # 4 layers of 3x3: 14 +- 4
    assert torch.equal(g > 0, expected)
    g_corner = input_grad(model, x, torch.tensor([10]), 0, 0)
    expected = torch.zeros(28, 28, dtype=torch.bool)
    expected[:5, :5] = True
    assert torch.equal(g_corner > 0, expected)


def test_unet_sees_whole_image():
    torch.manual_seed(0)
    model = build_model("unet", **SMALL_UNET).double()
    x = torch.randn(1, 1, 28, 28, dtype=torch.float64)
    assert (input_grad(model, x, torch.tensor([10]), 0, 0) > 0).all()


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
    assert (input_grad(model, x, torch.tensor([10]), 14, 14) > 0).all()


# ------------------------------------------------------------------ block summary
@pytest.mark.parametrize("num_classes", [None, 10])
def test_block_summary_shapes_and_parameters_add_up(num_classes):
    unet = build_model("unet", num_classes=num_classes)  # the default: base 16, mults (1, 2, 2)
    rows = block_summary(unet)
    names = [r.name for r in rows]
    assert names[:2] == ["time_mlp", "conv_in"] and names[-1] == "out" and names.count("mid1") == 1
    assert len(rows) == 2 + len(unet.down) + 2 + len(unet.up) + 1
    by_name = {r.name: r for r in rows}
    assert by_name["time_mlp"].output_shape == (64,)  # emb_dim = 4 * base
    assert by_name["conv_in"].output_shape == (16, 28, 28)
    assert by_name["mid1"].output_shape == (32, 7, 7) and by_name["mid1"].kind == "ResAttnBlock +attn"
    assert by_name["out"].output_shape == (1, 28, 28)
    # the resolutions 28 -> 14 -> 7 and back, and attention exactly at 7x7
    assert [r.output_shape[1] for r in rows if r.name.startswith("down")] == [28, 14, 14, 7, 7]
    assert all(("+attn" in r.kind) == (r.output_shape[1:] == (7, 7) and "ResAttn" in r.kind) for r in rows[1:])
    class_emb = 0 if unet.class_emb is None else count_parameters(unet.class_emb)
    assert sum(r.parameters for r in rows) + class_emb == count_parameters(unet)


def test_block_summary_removes_its_hooks_and_rejects_other_models():
    unet = build_model("unet", **SMALL_UNET)
    block_summary(unet)
    assert all(not m._forward_hooks for m in unet.modules())
    with pytest.raises(TypeError, match="needs a UNet"):
        block_summary(build_model("simple_unet"))


# ---------------------------------------------------------------------- conditioning
@pytest.mark.parametrize("name", ["simple_unet", "unet"])
def test_time_changes_output(name):
    torch.manual_seed(0)
    model = build_model(name, **(SMALL_UNET if name == "unet" else {}))
    x_t = torch.randn(1, 1, 28, 28).repeat(2, 1, 1, 1)
    eps_pred = model(x_t, torch.tensor([0, 200]))
    assert (eps_pred[0] - eps_pred[1]).abs().max() > 1e-4


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


# ------------------------------------------------------------------ building blocks
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


# --------------------------------------------------------------- config round trip
@pytest.mark.parametrize(
    "name,kwargs",
    [("simple_unet", {"T": 1000}), ("unet", dict(num_classes=10, channel_mults=(1, 2, 2), **SMALL_UNET))],
)
def test_config_dict_round_trip(name, kwargs):
    torch.manual_seed(0)
    model = build_model(name, **kwargs).eval()
    d = model_to_config_dict(model)
    assert d["name"] == name
    d2 = json.loads(json.dumps(d))  # JSON-safe
    clone = model_from_config_dict(d2).eval()
    assert clone.config == model.config and type(clone) is type(model)
    clone.load_state_dict(model.state_dict())
    x_t, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 250])
    assert torch.equal(clone(x_t, t), model(x_t, t))


def test_model_to_config_dict_lists_and_errors():
    d = model_to_config_dict(UNet())
    assert d["channel_mults"] == list(UNetConfig().channel_mults)
    with pytest.raises(TypeError, match="model"):
        model_to_config_dict(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="name"):
        build_model("resnet")
    with pytest.raises(ValueError, match="name"):
        model_from_config_dict({"base_channels": 16})


def test_configs_are_frozen_and_validated():
    with pytest.raises(Exception):
        UNetConfig().base_channels = 64  # frozen
    with pytest.raises(ValueError, match="groups"):
        UNetConfig(base_channels=12, groups=8)
    with pytest.raises(ValueError, match="num_classes"):
        UNetConfig(num_classes=0)
    with pytest.raises(ValueError, match="even"):
        UNetConfig(base_channels=9, groups=1)
    with pytest.raises(ValueError, match="T"):
        SimpleUNetConfig(T=0)


# ---------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("name", ["simple_unet", "unet"])
def test_clear_errors_on_bad_input(name):
    model = build_model(name, **(SMALL_UNET if name == "unet" else {}))
    x_t, t = torch.randn(2, 1, 28, 28), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="x_t"):
        model(torch.randn(2, 3, 28, 28), t)  # wrong channel count
    with pytest.raises(ValueError, match="x_t"):
        model(torch.randn(1, 28, 28), t[:1])  # not 4-D
    with pytest.raises(TypeError, match="x_t"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.long), t)
    with pytest.raises(TypeError, match="t must"):
        model(x_t, t.float())
    with pytest.raises(ValueError, match="t must"):
        model(x_t, t[:, None])  # (B, 1) instead of (B,)
    with pytest.raises(ValueError, match="t must"):
        model(x_t, torch.tensor([1, 2, 3]))  # batch mismatch
    with pytest.raises(ValueError, match="t must"):
        model(x_t, torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="y was given"):
        model(x_t, t, torch.tensor([0, 1]))  # unconditional model


def test_clear_errors_specific_to_each_model():
    with pytest.raises(ValueError, match="t must lie in"):
        SimpleUNet(SimpleUNetConfig(T=300))(torch.randn(1, 1, 28, 28), torch.tensor([300]))
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


# --------------------------------------------------------------------------- FLOPs
class OneConv(nn.Module):
    def __init__(self, c_in, c_out, k):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, padding=k // 2)

    def forward(self, x_t, t):
        return self.conv(x_t)


@pytest.mark.parametrize("c_in,c_out,k,hw", [(1, 64, 3, 28), (3, 5, 5, 14)])
def test_flop_counter_matches_conv_formula(c_in, c_out, k, hw):
    assert flops_per_image(OneConv(c_in, c_out, k), (c_in, hw, hw)) == 2 * c_in * c_out * k * k * hw * hw


def test_simple_unet_flops_by_hand():
    hw = 28 * 28
    convs = 2 * 9 * hw * (1 * 64 + 64 * 128 + 128 * 64 + 64 * 1)
    mlp = 2 * (1 * 128 + 128 * 128)
    assert flops_per_image(SimpleUNet()) == convs + mlp


def test_unet_flops_positive_and_scale_with_width():
    f16, f32 = (flops_per_image(build_model("unet", base_channels=b, num_res_blocks=1)) for b in (16, 32))
    assert f16 > 0
    assert 3.5 < f32 / f16 < 4.5  # conv FLOPs scale as width^2
    model = UNet()
    model.train()
    flops_per_image(model)
    assert model.training  # mode restored
