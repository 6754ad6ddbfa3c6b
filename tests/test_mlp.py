"""course_ddpm.mlp: shapes, the time embedding, and the checks at its boundary."""

from __future__ import annotations

import pytest
import torch

from course_ddpm.mlp import MLP, MLPConfig
from course_ddpm.unet import sinusoidal_embedding


def test_output_has_the_shape_of_x_t():
    for dim in (2, 5):
        model = MLP(MLPConfig(dim=dim, hidden=16, depth=2))
        assert model(torch.randn(7, dim), torch.arange(7)).shape == (7, dim)


def test_time_changes_the_output_through_the_sinusoidal_embedding():
    torch.manual_seed(0)
    model = MLP(MLPConfig(hidden=16, depth=1, time_dim=8))
    x = torch.randn(1, 2).expand(2, 2)
    out = model(x, torch.tensor([0, 5]))
    assert not torch.allclose(out[0], out[1])
    # by hand: the same layers applied to the package's embedding
    emb = model.time_mlp(sinusoidal_embedding(torch.tensor([5]), 8))
    h = torch.nn.functional.silu(model.hidden[0](model.inp(x[:1]) + emb))
    torch.testing.assert_close(model.out(h), out[1:])


def test_parameter_count_matches_the_layers():
    c = MLPConfig(dim=2, hidden=32, depth=3, time_dim=8)
    expected = (8 * 32 + 32) + (32 * 32 + 32) + (2 * 32 + 32) + 3 * (32 * 32 + 32) + (32 * 2 + 2)
    assert sum(p.numel() for p in MLP(c).parameters()) == expected


@pytest.mark.parametrize(
    "x_t, t, y, error",
    [(torch.randn(3, 3), torch.arange(3), None, ValueError), (torch.randn(3, 2), torch.arange(2), None, ValueError),
     (torch.randn(3, 2), torch.zeros(3), None, TypeError),
     (torch.randn(3, 2), torch.arange(3), torch.arange(3), ValueError)],
)  # fmt: skip
def test_bad_inputs_are_clear_errors(x_t, t, y, error):
    with pytest.raises(error):
        MLP()(x_t, t, y)


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        MLPConfig(time_dim=3)
