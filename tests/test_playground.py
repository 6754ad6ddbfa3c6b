"""course_ddpm.playground: a short run learns (its samples beat the untrained model's by far),
it is seeded, it takes a student's step, and the failure modes score worse than the good run."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from course_ddpm import playground
from course_ddpm.failure_modes import alpha_for_alpha_bar, variance_for_std
from course_ddpm.mlp import MLPConfig
from course_ddpm.training_step import train_step

SMALL = dataclasses.replace(playground.PLAYGROUND_CONFIG, T=50, steps=600, warmup_steps=50, batch_size=128)
SMALL_MLP = MLPConfig(hidden=64, depth=2)


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = playground.playground_data(n_train=4000, n_samples=500, n_reference=5000)
    untrained = playground.start(data.train, SMALL, mlp_config=SMALL_MLP)
    run = playground.train(data.train, SMALL, mlp_config=SMALL_MLP)
    yield data, untrained, run
    torch.set_num_threads(threads)


def test_a_short_run_brings_the_samples_close_to_the_data(trained):
    data, untrained, run = trained
    _, before = playground.evaluate(untrained.state.ema_model, untrained.schedule, data)
    samples, after = playground.evaluate(run.state.ema_model, run.schedule, data)
    assert before.swd > 3 * after.swd  # untrained: a blob far from the ring
    assert after.swd < 2.5 * after.swd_floor
    assert after.log_likelihood > before.log_likelihood + 3
    assert samples.abs().max() > 1.2  # the ring has radius 1.4: samples are not clipped to [-1, 1]
    assert sum(run.losses[-100:]) < sum(run.losses[:100])


def test_the_failure_modes_score_worse_than_the_good_run(trained):
    data, _, run = trained
    model, schedule = run.state.ema_model, run.schedule
    good = playground.evaluate(model, schedule, data)[1].swd
    assert playground.evaluate(model, variance_for_std(schedule), data)[1].swd > 1.3 * good
    assert playground.evaluate(alpha_for_alpha_bar(model, schedule), schedule, data)[1].swd > 1.3 * good


def test_training_is_seeded_and_takes_any_step():
    data = playground.playground_data(n_train=300, n_samples=10, n_reference=10)
    config = dataclasses.replace(SMALL, steps=5)
    a = playground.train(data.train, config, mlp_config=SMALL_MLP)
    calls = []

    def student_step(state, batch, schedule, config):
        calls.append((batch.x0.shape, batch.t.shape, schedule.T))
        return train_step(state, batch, schedule, config)

    b = playground.train(data.train, config, mlp_config=SMALL_MLP, step=student_step)
    assert calls == [((128, 2), (128,), 50)] * 5
    assert a.losses == b.losses
    for p, q in zip(a.state.ema_model.parameters(), b.state.ema_model.parameters()):
        assert torch.equal(p, q)


def test_draw_is_seeded_and_float64(trained):
    _, _, run = trained
    a = playground.draw(run.state.ema_model, run.schedule, 7, seed=3)
    assert a.dtype == torch.float64 and a.shape == (7, 2)
    assert torch.equal(a, playground.draw(run.state.ema_model, run.schedule, 7, seed=3))


def test_score_of_true_data_is_its_floor_and_nan_samples_score_inf():
    data = playground.playground_data(n_train=10, n_samples=100, n_reference=1000)
    s = playground.score(data.true_draw, data.reference, data.true_draw, data.density)
    assert s.swd == s.swd_floor and s.log_likelihood == s.log_likelihood_true
    bad = playground.score(torch.full((100, 2), float("nan")), data.reference, data.true_draw, data.density)
    assert bad.swd == float("inf") and "true data" in str(bad)


def test_a_schedule_that_does_not_fit_the_config_is_refused():
    from course_ddpm.schedules import linear_schedule

    with pytest.raises(ValueError, match="config.T"):
        playground.start(torch.zeros(10, 2), SMALL, schedule=linear_schedule(60, warn=False))
