"""Tests for course_ddpm.simple_unet: the seed lecture's network, counted by hand.

Its parameters, FLOPs and 9x9 receptive field are each compared with a count made from
its four 3x3 convolutions and its time MLP.
"""

import pytest
import torch

from course_ddpm.networks import count_parameters, flops_per_image, receptive_field
from course_ddpm.simple_unet import SimpleUNet, SimpleUNetConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # many small forward passes (tests/conftest.py)


def conv_params(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


@pytest.mark.parametrize("c", [1, 3])
def test_simple_unet_parameter_count_by_hand(c):
    expected = (
        conv_params(c, 64, 3) + conv_params(64, 128, 3) + linear_params(1, 128) + linear_params(128, 128)
        + conv_params(128, 64, 3) + conv_params(64, c, 3)
    )
    assert count_parameters(SimpleUNet(SimpleUNetConfig(in_channels=c))) == expected
    if c == 1:
        assert expected == 165_633  # the seed lecture's "166k"


def test_simple_unet_receptive_field_is_9x9():
    torch.manual_seed(0)
    model = SimpleUNet().double()
    x = torch.randn(1, 1, 28, 28, dtype=torch.float64)
    g = receptive_field(model, x, torch.tensor([10]), (14, 14))
    expected = torch.zeros(28, 28, dtype=torch.bool)
    expected[10:19, 10:19] = True  # 4 layers of 3x3: 14 +- 4
    assert torch.equal(g > 0, expected)
    g_corner = receptive_field(model, x, torch.tensor([10]), (0, 0))
    expected = torch.zeros(28, 28, dtype=torch.bool)
    expected[:5, :5] = True
    assert torch.equal(g_corner > 0, expected)


def test_simple_unet_flops_by_hand():
    hw = 28 * 28
    convs = 2 * 9 * hw * (1 * 64 + 64 * 128 + 128 * 64 + 64 * 1)
    mlp = 2 * (1 * 128 + 128 * 128)
    assert flops_per_image(SimpleUNet()) == convs + mlp


def test_simple_unet_config_is_validated_and_t_must_be_below_its_T():
    with pytest.raises(ValueError, match="T"):
        SimpleUNetConfig(T=0)
    with pytest.raises(ValueError, match="t must lie in"):
        SimpleUNet(SimpleUNetConfig(T=300))(torch.randn(1, 1, 28, 28), torch.tensor([300]))
