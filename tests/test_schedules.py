"""Tests for course_ddpm.schedules: golden values, identities and input validation."""

import math
import warnings

import pytest
import torch

from course_ddpm.schedules import (
    Schedule,
    TerminalSignalWarning,
    broadcast,
    cosine_schedule,
    linear_schedule,
    make_schedule,
)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TerminalSignalWarning)
        return fn(*args, **kwargs)


@pytest.mark.parametrize(
    "schedule, field, index, golden",
    [
        (lambda: linear_schedule(1000), "alpha_bar", -1, 4.03583e-05),
        (lambda: cosine_schedule(1000), "alpha_bar", -1, 2.42877e-09),
        (lambda: cosine_schedule(1000), "beta", 0, 4.12842e-05),
        (lambda: quiet(linear_schedule, 300), "alpha_bar", -1, 0.0480584),
        (lambda: linear_schedule(300, rescale=True), "alpha_bar", -1, 3.42615e-05),
    ],
)
def test_golden_values(schedule, field, index, golden):
    value = getattr(schedule(), field)[index].item()
    assert value == pytest.approx(golden, rel=1e-5)


@pytest.mark.parametrize("make", [lambda: linear_schedule(1000), lambda: cosine_schedule(1000),
                                  lambda: linear_schedule(300, rescale=True)])
def test_derived_quantities(make):
    s = make()
    assert s.beta.dtype == torch.float64 and s.T == s.beta.shape[0]
    # alpha_bar strictly decreasing inside (0, 1)
    assert bool((s.alpha_bar > 0).all() and (s.alpha_bar < 1).all())
    assert bool((s.alpha_bar[1:] < s.alpha_bar[:-1]).all())
    # alpha_bar is the running product of alpha, computed independently in a Python loop
    prod, expected = 1.0, []
    for a in s.alpha.tolist():
        prod *= a
        expected.append(prod)
    torch.testing.assert_close(s.alpha_bar, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(s.alpha_bar_prev[1:], s.alpha_bar[:-1])
    assert s.alpha_bar_prev[0].item() == 1.0
    # beta_tilde <= beta (posterior narrower than the forward step), 0 at t = 0
    assert s.beta_tilde[0].item() == 0.0
    assert bool((s.beta_tilde <= s.beta + 1e-15).all())
    torch.testing.assert_close(s.snr, s.alpha_bar / (1 - s.alpha_bar))


def test_cosine_matches_its_definition():
    """alpha_bar_t = f(t)/f(0) with f the squared cosine, as long as beta is not capped."""
    T, s_ = 1000, 0.008
    sched = cosine_schedule(T)
    t = torch.arange(1, T + 1, dtype=torch.float64)
    f = lambda u: torch.cos((u / T + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
    ab = f(t) / f(torch.zeros(1, dtype=torch.float64))
    uncapped = sched.beta < 0.999
    torch.testing.assert_close(sched.alpha_bar[uncapped][:-1], ab[uncapped][:-1], rtol=1e-9, atol=1e-15)
    assert sched.beta.max().item() == pytest.approx(0.999)


def test_terminal_signal_warning_and_fix():
    with pytest.warns(TerminalSignalWarning, match="22% of the signal"):
        lecture = linear_schedule(300)
    assert math.sqrt(lecture.alpha_bar[-1].item()) == pytest.approx(0.2192, abs=1e-4)
    # worst-case prior KL per pixel: -0.5 log(1 - alpha_bar_T) at |x0| = 1
    assert lecture.prior_kl_per_dim() == pytest.approx(-0.5 * math.log(1 - 0.0480584), rel=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TerminalSignalWarning)
        fixed = linear_schedule(300, rescale=True)
        cosine_schedule(300)
    assert fixed.prior_kl_per_dim() < 1e-4 < lecture.prior_kl_per_dim()
    assert fixed.to_dict()["T"] == 300


def test_make_schedule_by_name():
    torch.testing.assert_close(make_schedule("cosine", 50).beta, cosine_schedule(50).beta)
    torch.testing.assert_close(make_schedule("linear", 50, rescale=True).beta,
                               linear_schedule(50, rescale=True).beta)
    with pytest.raises(ValueError, match="kind"):
        make_schedule("sigmoid", 10)
    with pytest.raises(ValueError, match="rescale"):
        make_schedule("cosine", 10, rescale=True)


@pytest.mark.parametrize(
    "beta, error, match",
    [
        (torch.tensor([0.1, 1.0]), ValueError, r"\(0, 1\)"),
        (torch.tensor([0.0, 0.1]), ValueError, r"\(0, 1\)"),
        (torch.tensor([1, 2]), TypeError, "float"),
        (torch.zeros(0), ValueError, "T >= 1"),
        ([0.1, 0.2], TypeError, "torch.Tensor"),
    ],
)
def test_bad_betas(beta, error, match):
    with pytest.raises(error, match=match):
        Schedule.from_beta(beta)


def test_rescale_needs_a_long_enough_chain():
    with pytest.raises(ValueError, match="use T > 20"):
        linear_schedule(20, rescale=True)
    assert linear_schedule(21, rescale=True).beta[-1].item() < 1


def test_bad_T():
    with pytest.raises(ValueError, match="T must be >= 1"):
        linear_schedule(0)
    with pytest.raises(TypeError, match="T must be an int"):
        cosine_schedule(10.0)


def test_broadcast_shapes_and_checks():
    s = linear_schedule(1000)
    x = torch.zeros(3, 1, 28, 28, dtype=torch.float32)
    t = torch.tensor([0, 10, 999])
    out = broadcast(s.alpha_bar, t, x)
    assert out.shape == (3, 1, 1, 1) and out.dtype == torch.float32
    torch.testing.assert_close(out.flatten(), s.alpha_bar[t].float())
    with pytest.raises(ValueError, match=r"\[0, T\)"):
        broadcast(s.alpha_bar, torch.tensor([0, 1, 1000]), x)
    with pytest.raises(ValueError, match=r"\[0, T\)"):
        broadcast(s.alpha_bar, torch.tensor([-1, 1, 2]), x)
    with pytest.raises(ValueError, match="batch size"):
        broadcast(s.alpha_bar, torch.tensor([0, 1]), x)
    with pytest.raises(TypeError, match="integer"):
        broadcast(s.alpha_bar, torch.tensor([0.0, 1.0, 2.0]), x)
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        broadcast(s.alpha_bar, torch.zeros(3, 1, dtype=torch.long), x)


def test_first_step_below_against_a_plain_loop():
    from course_ddpm.schedules import first_step_below

    def loop(schedule, fraction):
        for t in range(schedule.T):
            if math.sqrt(schedule.alpha_bar[t].item()) < fraction:
                return t
        return None

    cases = [(linear_schedule(1000), 0.01), (linear_schedule(300, rescale=True), 0.01), (cosine_schedule(1000), 0.1),
             (linear_schedule(1000), 1.0)]
    for schedule, fraction in cases:
        t = first_step_below(schedule, fraction)
        assert t == loop(schedule, fraction) and t is not None
        assert schedule.alpha_bar[t].sqrt() < fraction and (t == 0 or schedule.alpha_bar[t - 1].sqrt() >= fraction)
    assert first_step_below(linear_schedule(300, warn=False), 0.01) is None  # 22 % of the signal left at T
    with pytest.raises(ValueError, match="fraction"):
        first_step_below(linear_schedule(10, warn=False), 0.0)
