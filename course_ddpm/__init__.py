"""course_ddpm: the tested code behind the diffusion-model course notebooks.

One concept per module: ``schedules`` (beta, alpha_bar, ...), ``forward`` (q(x_t | x_0)
and its posterior), ``losses`` (L_simple and its weights), ``gaussian`` (KLs and
log-likelihoods), ``bound`` (the variational bound in bits/dim), ``elbo`` (Luo's two ELBO
forms), ``reverse`` (p_theta(x_{t-1} | x_t)), ``ddpm`` and ``ddim`` (one sampler step
each), ``guidance`` (classifier-free guidance), ``sampling`` (the sampling loop and the
batched generator), ``toy`` (distributions with a known density and optimal denoiser),
``data`` (MNIST in [-1, 1]), ``unet`` and ``simple_unet`` (the networks), ``networks``
(their registry and inspection), ``classifier``, ``training_config``, ``training_step``
(Algorithm 1), ``training`` (the run), ``rng``, ``checkpoints``, ``fid`` (MNIST-FID),
``evaluation`` (digit histogram, bits/dim, the report), the 2-D playground (``toy2d``,
``mlp``, ``sliced_wasserstein``, ``playground``, ``failure_modes``), ``plot_images``, ``plot_curves``
and ``plot_points``,
``widgets``, ``notebook`` (what every notebook's first cell calls), ``environment``,
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
