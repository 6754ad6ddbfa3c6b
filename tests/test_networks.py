"""Tests for course_ddpm.networks: the registry and the inspection tools, on every model.

Shapes, config round trips, input errors (course_ddpm.validation), the block summary, and
the FLOP counter against the convolution formula.
"""

import json

import pytest
import torch
from torch import nn

from course_ddpm.networks import (
    block_summary,
    build_model,
    count_parameters,
    flops_per_image,
    model_from_config_dict,
    model_to_config_dict,
)
from course_ddpm.unet import UNet, UNetConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # many small forward passes (tests/conftest.py)

SMALL_UNET = dict(base_channels=16, num_res_blocks=1)  # keeps the tests fast


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", ["simple_unet", "unet"])
def test_output_shape(name, in_channels):
    kwargs = SMALL_UNET if name == "unet" else {}
    model = build_model(name, in_channels=in_channels, **kwargs)
    x_t = torch.randn(2, in_channels, 28, 28)
    eps_pred = model(x_t, torch.tensor([0, 299]))
    assert eps_pred.shape == x_t.shape and eps_pred.dtype == x_t.dtype
    assert torch.isfinite(eps_pred).all()


@pytest.mark.parametrize("name", ["simple_unet", "unet"])
def test_time_changes_output(name):
    torch.manual_seed(0)
    model = build_model(name, **(SMALL_UNET if name == "unet" else {}))
    x_t = torch.randn(1, 1, 28, 28).repeat(2, 1, 1, 1)
    eps_pred = model(x_t, torch.tensor([0, 200]))
    assert (eps_pred[0] - eps_pred[1]).abs().max() > 1e-4


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
    with pytest.raises(ValueError, match="t has batch size 3"):
        model(x_t, torch.tensor([1, 2, 3]))  # batch mismatch
    with pytest.raises(ValueError, match="t must"):
        model(x_t, torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="y was given"):
        model(x_t, t, torch.tensor([0, 1]))  # unconditional model


class OneConv(nn.Module):
    def __init__(self, c_in, c_out, k):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, padding=k // 2)

    def forward(self, x_t, t):
        return self.conv(x_t)


@pytest.mark.parametrize("c_in,c_out,k,hw", [(1, 64, 3, 28), (3, 5, 5, 14)])
def test_flop_counter_matches_conv_formula(c_in, c_out, k, hw):
    assert flops_per_image(OneConv(c_in, c_out, k), (c_in, hw, hw)) == 2 * c_in * c_out * k * k * hw * hw


def test_flops_per_image_restores_the_mode():
    model = UNet()
    model.train()
    flops_per_image(model)
    assert model.training
    flops_per_image(model.eval())
    assert not model.training
