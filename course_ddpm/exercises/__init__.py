"""Exercises with automatic checks, one module per notebook (01-04, 07).

A notebook's exercise cell defines a function (``my_q_sample``, ...) and the next cell calls
its check, e.g. ``exercises.check_q_sample(my_q_sample)``: it runs the function on random and
edge-case inputs, compares with the package's reference, prints ✓ or the mistake it
recognised, and returns a :class:`CheckResult` (``passed``, ``message``). The checker is
:mod:`course_ddpm.exercises._check`. Notebook 07 trains and samples with the student's functions
once they pass: :func:`yours_if_correct`.
"""

from course_ddpm.exercises._check import CheckResult, Exercise, Mistake, yours_if_correct
from course_ddpm.exercises.ex01_elbo import (check_denoising_term, check_eps_mse_weight, check_gaussian_kl,
                                             check_q_posterior)
from course_ddpm.exercises.ex02_forward import (check_alpha_bar, check_cosine_beta, check_first_step_below,
                                                check_q_sample, check_snr)
from course_ddpm.exercises.ex03_training import (check_ema_update, check_time_embedding, check_to_model_range,
                                                 check_training_loss)
from course_ddpm.exercises.ex04_sampling import check_ddim_step, check_ddpm_step, check_slerp, check_x0_from_eps
from course_ddpm.exercises.ex07_playground import check_sampler_2d, check_training_step_2d


def all_exercises() -> dict[str, tuple[Exercise, ...]]:
    """Every exercise, by notebook, in the order the notebooks teach them."""
    from course_ddpm.exercises import ex01_elbo, ex02_forward, ex03_training, ex04_sampling, ex07_playground

    return {"01": ex01_elbo.EXERCISES, "02": ex02_forward.EXERCISES, "03": ex03_training.EXERCISES,
            "04": ex04_sampling.EXERCISES, "07": ex07_playground.EXERCISES}


__all__ = [
    "CheckResult", "Exercise", "Mistake", "all_exercises", "yours_if_correct",
    "check_gaussian_kl", "check_q_posterior", "check_eps_mse_weight", "check_denoising_term",
    "check_alpha_bar", "check_q_sample", "check_snr", "check_cosine_beta", "check_first_step_below",
    "check_to_model_range", "check_training_loss", "check_ema_update", "check_time_embedding",
    "check_x0_from_eps", "check_ddpm_step", "check_ddim_step", "check_slerp",
    "check_training_step_2d", "check_sampler_2d",
]
