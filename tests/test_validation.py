"""Tests for course_ddpm.validation: the input checks every module shares.

Each check is tested once here, with the messages the package's users see; the modules'
own tests check that they call them (a bad argument to a public function raises).
"""

from __future__ import annotations

import pytest
import torch

from course_ddpm.validation import (
    check_choice,
    check_count,
    check_eps_pred,
    check_eta,
    check_float,
    check_guidance_scale,
    check_labels,
    check_null_label,
    check_num_inference_steps,
    check_same_shape,
    check_shape,
    check_T,
    check_t,
    check_t_pair,
)


def test_check_float_and_same_shape():
    x = torch.zeros(2, 3)
    assert check_float("x", x) is x
    with pytest.raises(TypeError, match="x must be a float tensor, got dtype torch.int64"):
        check_float("x", torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        check_float("x", [1.0])
    check_same_shape(a=x, b=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"shape mismatch: a \(2, 3\), b \(3, 2\)"):
        check_same_shape(a=x, b=x.T)


def test_check_t_tensors_ints_and_ranges():
    t = check_t(torch.tensor([0, 9], dtype=torch.int32), 10)
    assert t.dtype == torch.long and t.tolist() == [0, 9]
    assert check_t(4, 10, batch=3).tolist() == [4, 4, 4]  # an int needs the batch size
    assert check_t(torch.tensor(4), 10, batch=2).tolist() == [4, 4]
    assert check_t(-1, 10, batch=1, low=-1).tolist() == [-1]  # -1: the clean data x_0
    with pytest.raises(TypeError, match="torch.Tensor of integer time indices"):
        check_t(4, 10)
    with pytest.raises(TypeError, match="got bool"):
        check_t(True, 10, batch=1)
    with pytest.raises(TypeError, match="t must hold integer time indices"):
        check_t(torch.tensor([1.0]), 10)
    with pytest.raises(ValueError, match=r"must have shape \(B,\)"):
        check_t(torch.zeros(2, 2, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="batch size 2 but the data has batch size 3"):
        check_t(torch.tensor([1, 2]), 10, batch=3)
    with pytest.raises(ValueError, match=r"t must lie in \[0, T\) = \[0, 10\), got values in \[0, 10\]"):
        check_t(torch.tensor([0, 10]), 10)
    with pytest.raises(ValueError, match=r"t_prev must lie in \[-1, T\)"):
        check_t(-2, 10, batch=1, low=-1, name="t_prev")
    meta = torch.tensor([99], device="meta")  # values on a device are not read
    assert check_t(meta, 10).device.type == "meta"


def test_check_t_pair():
    t, t_prev = check_t_pair(5, -1, 10)
    assert t.tolist() == [5] and t_prev.tolist() == [-1]
    t, t_prev = check_t_pair(torch.tensor([5, 7]), 3, 10)
    assert t_prev.tolist() == [3, 3]
    with pytest.raises(ValueError, match="t_prev must be smaller than t"):
        check_t_pair(4, 4, 10)
    with pytest.raises(ValueError, match="t must be smaller than t_next"):
        check_t_pair(3, 6, 10, names=("t_next", "t"))


def test_scalar_options():
    assert check_T(3) == 3 and check_eta(0.5) == 0.5 and check_num_inference_steps(7, 10) == 7
    for bad, err in ((0, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(err, match="T must"):
            check_T(bad)
    for bad, err in ((-0.1, ValueError), (1.1, ValueError), ("0", TypeError)):
        with pytest.raises(err, match="eta"):
            check_eta(bad)
    for bad, err in ((0, ValueError), (11, ValueError), (2.0, TypeError)):
        with pytest.raises(err, match=r"num_inference_steps"):
            check_num_inference_steps(bad, 10)
    assert check_choice("spacing", "leading", ("leading", "trailing")) == "leading"
    with pytest.raises(ValueError, match=r"spacing must be one of \('leading', 'trailing'\), got 'uniform'"):
        check_choice("spacing", "uniform", ("leading", "trailing"))


def test_shapes_and_model_output():
    assert check_shape([2, 1, 28, 28]) == (2, 1, 28, 28) and check_shape(torch.Size([3])) == (3,)
    with pytest.raises(TypeError, match="non-empty tuple"):
        check_shape(())
    with pytest.raises(ValueError, match="positive ints"):
        check_shape((2, 0))
    eps = torch.zeros(2, 3)
    assert check_eps_pred(eps, (2, 3)) is eps
    with pytest.raises(ValueError, match=r"model returned eps_pred of shape \(2, 3\), expected \(2, 4\)"):
        check_eps_pred(eps, (2, 4))
    with pytest.raises(TypeError, match="model must return a tensor"):
        check_eps_pred((eps,), (2, 3))


def test_labels_and_guidance():
    assert check_labels(torch.tensor([1, 2]), 2).tolist() == [1, 2]
    with pytest.raises(TypeError, match="integer tensor of class labels"):
        check_labels(torch.tensor([1.0, 2.0]), 2)
    with pytest.raises(ValueError, match=r"y must have shape \(B,\) = \(3,\)"):
        check_labels(torch.tensor([1, 2]), 3)
    assert check_guidance_scale(3) == 3 and check_null_label(10) == 10
    with pytest.raises(ValueError, match="finite"):
        check_guidance_scale(float("inf"))
    with pytest.raises(TypeError, match="guidance_scale must be a float"):
        check_guidance_scale(True)
    with pytest.raises(ValueError, match="null_label"):
        check_null_label(-1)


def test_check_count():
    assert check_count("n", 5) == 5 and check_count("n", 2, 2, 60_000) == 2
    with pytest.raises(ValueError, match=r"n must be an int >= 1, got 0"):
        check_count("n", 0)
    with pytest.raises(ValueError, match=r"n must be an int in \[2, 10\], got 11"):
        check_count("n", 11, 2, 10)
    with pytest.raises(TypeError, match="batch_size must be an int, got float"):
        check_count("batch_size", 2.0)
