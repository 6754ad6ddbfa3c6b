"""The exercise checks: the reference passes, every catalogued mistake fails with its own hint,
and broken answers (exceptions, None, NaN, wrong shape or dtype) get a clear one-line message."""

from __future__ import annotations

import pytest
import torch

from course_ddpm import exercises
from course_ddpm.exercises import CheckResult, all_exercises
from course_ddpm.exercises._check import FAIL, PASS, TODO

EXERCISES = [ex for group in all_exercises().values() for ex in group]
MISTAKES = [(ex, k) for ex in EXERCISES for k in range(len(ex.mistakes))]


def test_enough_exercises_per_notebook():
    groups = all_exercises()
    assert sum(len(g) for g in groups.values()) >= 14
    # 3-5 in each notebook of issue 13's list; the playground's two are the whole step and sampler
    assert [k for k, g in groups.items() if 3 <= len(g) <= 5] == ["01", "02", "03", "04"], groups
    assert len(groups["07"]) == 2
    names = [ex.name for ex in EXERCISES]
    assert len(set(names)) == len(names)
    for ex in EXERCISES:
        assert getattr(exercises, "check_" + ex.name.removeprefix("my_")) == ex.check


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.name)
def test_reference_passes(ex, capsys):
    result = ex.check(ex.reference)
    assert isinstance(result, CheckResult)
    assert result.passed, result.message
    assert result.message.startswith(PASS)
    assert capsys.readouterr().out.strip() == result.message  # it also prints


@pytest.mark.parametrize("ex, k", MISTAKES, ids=lambda v: v.name if hasattr(v, "name") else str(v))
def test_each_mistake_fails_with_its_hint(ex, k):
    mistake = ex.mistakes[k]
    result = ex.check(mistake.fn, verbose=False)
    assert not result.passed
    assert result.message.startswith(f"{FAIL} {ex.name}: {mistake.hint}"), result.message


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.name)
def test_hints_are_distinct(ex):
    hints = [m.hint for m in ex.mistakes]
    assert len(set(hints)) == len(hints) and len(hints) >= 3


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.name)
def test_not_done_yet(ex):
    def stub(*args):
        raise NotImplementedError()

    result = ex.check(stub, verbose=False)
    assert not result.passed and result.message.startswith(f"{TODO} {ex.name}: not done yet")


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.name)
def test_exception_in_student_code_is_one_clear_line(ex):
    def broken(*args):
        values = [1, 2]
        return values[5]  # IndexError here

    result = ex.check(broken, verbose=False)
    assert not result.passed
    assert "raised IndexError: list index out of range" in result.message
    assert "in broken, line" in result.message and "return values[5]" in result.message
    assert "Traceback" not in result.message and "\n" not in result.message


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.name)
def test_forgotten_return(ex):
    result = ex.check(lambda *args: None, verbose=False)
    assert not result.passed
    if ex.name != "my_ema_update":  # in place: returning None is right there
        assert "None (did you forget `return`?)" in result.message, result.message


def test_wrong_shape_dtype_nan_and_not_callable():
    schedule_args = exercises.ex02_forward._q_sample_cases()[0].args

    def scalar(s, x0, t, eps):
        return exercises.ex02_forward.q_sample(s, x0, t, eps).sum()

    def float64(s, x0, t, eps):
        return exercises.ex02_forward.q_sample(s, x0, t, eps).double()

    def nan(s, x0, t, eps):
        return exercises.ex02_forward.q_sample(s, x0, t, eps) * float("nan")

    def plain_wrong(s, x0, t, eps):
        return x0 + 1.0

    assert len(schedule_args) == 4
    msg = exercises.check_q_sample(scalar, verbose=False).message
    assert "shape () , expected (4, 1, 5, 5)".replace(" ,", ",") in msg, msg
    msg = exercises.check_q_sample(float64, verbose=False).message
    assert "dtype torch.float64, expected torch.float32" in msg, msg
    msg = exercises.check_q_sample(nan, verbose=False).message
    assert "100 of 100 entries are NaN or infinite" in msg, msg
    msg = exercises.check_q_sample(plain_wrong, verbose=False).message
    assert msg.startswith(f"{FAIL} my_q_sample: on a random batch of (4, 1, 5, 5) images: values differ"), msg
    msg = exercises.check_q_sample("not a function", verbose=False).message
    assert "expected your function my_q_sample, got str" in msg


def test_tuple_outputs_are_named():
    def one_output(s, x0, x_t, t):
        return exercises.ex01_elbo.q_posterior(s, x0, x_t, t)[0]

    def bad_variance(s, x0, x_t, t):
        mu, var = exercises.ex01_elbo.q_posterior(s, x0, x_t, t)
        return mu, var + 1

    assert "it should return 2 values (mu_tilde, beta_tilde), got a tensor" in exercises.check_q_posterior(
        one_output, verbose=False).message
    assert "beta_tilde: values differ" in exercises.check_q_posterior(bad_variance, verbose=False).message


def test_variance_may_be_given_full_size():
    def full_variance(s, x0, x_t, t):
        mu, var = exercises.ex01_elbo.q_posterior(s, x0, x_t, t)
        return mu, var.expand_as(mu).clone()

    assert exercises.check_q_posterior(full_variance, verbose=False).passed


def test_result_shows_nothing_as_a_cell_value():
    result = CheckResult(True, "x")
    assert result._ipython_display_() is None


def test_check_leaves_the_global_random_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    exercises.check_ema_update(exercises.ex03_training.ema_update, verbose=False)
    assert torch.equal(torch.rand(3), expected)


def test_yours_if_correct_uses_a_passing_answer_and_falls_back_otherwise(capsys):
    from course_ddpm.exercises import ex07_playground
    from course_ddpm.training_step import train_step

    def wrong(state, batch, schedule, config):
        raise NotImplementedError()

    assert exercises.yours_if_correct(train_step, exercises.check_training_step_2d) is train_step
    assert "using your my_training_step_2d (its check passed)" in capsys.readouterr().out
    assert exercises.yours_if_correct(wrong, exercises.check_training_step_2d) is train_step
    assert "using course_ddpm.training_step.train_step: my_training_step_2d has not passed" in capsys.readouterr().out
    chosen = exercises.yours_if_correct(ex07_playground.SAMPLER_2D.mistakes[1].fn, exercises.check_sampler_2d)
    assert chosen is ex07_playground.SAMPLER_2D.reference
    with pytest.raises(TypeError, match="check functions"):
        exercises.yours_if_correct(train_step, print)


def test_the_playground_trains_the_same_with_a_student_step_written_out():
    """A step written out from Algorithm 1 (as notebook 07's solution) gives the package's run, to round-off."""
    import dataclasses

    from course_ddpm import playground
    from course_ddpm.exercises import ex07_playground

    config = dataclasses.replace(playground.PLAYGROUND_CONFIG, steps=30)
    x0 = playground.playground_data(n_train=500, n_samples=10, n_reference=10).train
    ours = playground.train(x0, config)
    theirs = playground.train(x0, config, step=ex07_playground._step)
    assert max(abs(a - b) for a, b in zip(ours.losses, theirs.losses)) < 1e-5
    for p, q in zip(ours.state.ema_model.parameters(), theirs.state.ema_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    samples = playground.draw(ours.state.ema_model, ours.schedule, 7, seed=3)
    torch.testing.assert_close(ex07_playground._sampler(ours.state.ema_model, ours.schedule, 7, 3), samples)
