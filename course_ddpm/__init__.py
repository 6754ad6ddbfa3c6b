"""course_ddpm: the tested code behind the diffusion-model course notebooks.

One concept per module: ``schedules`` (beta, alpha_bar, ...), ``forward`` (q(x_t | x_0)
and its posterior), ``reverse`` (p_theta(x_{t-1} | x_t)), ``losses`` (L_simple and the
variational bound), ``ddpm`` and ``ddim`` (one sampler step each), ``guidance``
(classifier-free guidance), ``sampling`` (the sampling loop and the batched generator),
``toy`` (distributions with a known density and optimal denoiser), ``data`` (MNIST in
[-1, 1]), ``networks``, ``training``, ``checkpoints``, ``fid`` (MNIST-FID),
``evaluation`` (digit histogram, bits/dim, the report), ``plotting``, ``widgets``,
``validation`` (the input checks all of them share) and ``cli``.
"""

from course_ddpm.schedules import Schedule, cosine_schedule, linear_schedule, make_schedule

__version__ = "0.1.0"

__all__ = ["Schedule", "linear_schedule", "cosine_schedule", "make_schedule", "load_pretrained"]


def __getattr__(name: str):
    # Lazy, so that `import course_ddpm` stays light (no networks or safetensors import).
    if name == "load_pretrained":
        from course_ddpm.pretrained import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'course_ddpm' has no attribute {name!r}")
