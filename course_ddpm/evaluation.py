"""Offline evaluation of generated MNIST digits: MNIST-FID, digit histogram, bits/dim.

Three questions about a diffusion model, each answered without network access:

1. Do samples look like MNIST? **MNIST-FID** against the MNIST test images, read against
   its floor and ceiling at the same N (:mod:`course_ddpm.fid`).
2. Are all digits there, in equal measure? The **digit histogram** of the classifier's
   predictions, its KL divergence from uniform (0 when balanced, log 10 = 2.303 nats
   when every sample is the same digit) and the mean classifier confidence. A
   classifier is often sure of itself on images that are no digits at all, so read
   the confidence together with the FID, never alone.
3. What likelihood does the model give real data? **Bits/dim** on MNIST test images from
   the variational bound (Ho et al. 2020, arXiv:2006.11239, eq. 5), summed over all T
   steps (no sampling of t) and split into prior, decoder and diffusion terms.

:func:`evaluate` draws the samples with :func:`course_ddpm.sampling.generate` and runs
all three; :func:`format_report` turns its dict into a table.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch
from torch import nn

from course_ddpm.checkpoints import state_dict_sha256
from course_ddpm.fid import (
    classifier_outputs,
    default_classifier,
    fid_reference_points,
    frechet_distance,
    mnist_test_outputs,
)
from course_ddpm.reverse import VarianceType
from course_ddpm.validation import check_count

if TYPE_CHECKING:
    from course_ddpm.sampling import SamplerName
    from course_ddpm.schedules import Schedule

NUM_DIGITS = 10


# ------------------------------------------------------------------ digit histogram
def _histogram(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    counts = torch.bincount(probs.argmax(dim=1), minlength=NUM_DIGITS)  # (10,)
    return counts, counts.double() / counts.sum()


def digit_histogram(
    samples: torch.Tensor, *, classifier: nn.Module | None = None, batch_size: int = 500
) -> tuple[torch.Tensor, torch.Tensor]:
    """How many samples the classifier assigns to each digit.

    Args:
        samples: ``(N, 1, 28, 28)`` in [-1, 1].
    Returns:
        counts ``(10,)`` int64 and fractions ``(10,)`` float64 (counts / N).
    """
    _, probs = classifier_outputs(samples, classifier, batch_size=batch_size)
    return _histogram(probs)


def kl_from_uniform(fractions: torch.Tensor) -> float:
    """KL(p || uniform) in nats for a histogram p ``(K,)``: sum_k p_k log(K p_k), 0 log 0 = 0.

    0 for a balanced histogram, log K when all mass is on one class.
    """
    p = torch.as_tensor(fractions.cpu() if isinstance(fractions, torch.Tensor) else fractions, dtype=torch.float64)
    if p.ndim != 1 or (p < 0).any() or not math.isclose(float(p.sum()), 1.0, abs_tol=1e-6):
        raise ValueError("fractions must be a (K,) probability vector (non-negative, summing to 1)")
    K = p.shape[0]
    terms = torch.where(p > 0, p * torch.log(K * p.clamp_min(1e-300)), torch.zeros_like(p))
    return float(terms.sum())


def mean_confidence(samples: torch.Tensor, *, classifier: nn.Module | None = None, batch_size: int = 500) -> float:
    """Mean over samples of the classifier's top probability max_k p(k | x) (1 = sure of every digit)."""
    _, probs = classifier_outputs(samples, classifier, batch_size=batch_size)
    return float(probs.max(dim=1).values.mean())


# ------------------------------------------------------------------------- bits/dim
def bits_per_dim(
    model: nn.Module,
    schedule: Schedule,
    *,
    n: int,
    batch_size: int = 250,
    variance_type: VarianceType = "fixed_small",
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """Bits/dim of the first ``n`` MNIST test images under the variational bound.

    total = prior + decoder + diffusion, averaged over images, where (Ho et al. 2020,
    eq. 5, in bits per dimension) prior = L_T = KL(q(x_T|x_0) || N(0, I)), decoder =
    L_0 = -log p(x_0 | x_1) and diffusion = sum_{t=2..T} L_{t-1} (all T steps, no
    Monte Carlo over t; the x_t of each term is drawn once). See
    :func:`course_ddpm.bound.variational_bound`. A class-conditional model is given
    each image's true label, so it reports the bound on -log p(x_0 | y).

    Returns:
        ``{"total": ..., "prior": ..., "decoder": ..., "diffusion": ..., "decoder_floor": ..., "n": n,
        "conditional": bool}``; ``decoder_floor`` is :func:`decoder_floor_bpd` of the same images.
    """
    from course_ddpm.data import load_mnist
    from course_ddpm.bound import variational_bound

    x_test, y_test = load_mnist(train=False)
    check_count("n", n, 1, len(x_test))
    conditional = _num_classes(model) is not None
    generator = _generator(device, seed)
    sums = {"total": 0.0, "prior": 0.0, "decoder": 0.0, "diffusion": 0.0}
    for x0, y in zip(x_test[:n].split(batch_size), y_test[:n].split(batch_size)):
        y = y.to(device) if conditional else None
        vb = variational_bound(
            model, schedule, x0.to(device), variance_type=variance_type, generator=generator, progress=progress, y=y
        )
        # summed in float64 on the CPU (MPS has no float64)
        sums["total"] += float(vb.total_bpd.cpu().double().sum())
        sums["prior"] += float(vb.prior_bpd.cpu().double().sum())
        sums["decoder"] += float(vb.decoder_bpd.cpu().double().sum())
        sums["diffusion"] += float(vb.terms_bpd[:, 1:].cpu().double().sum())  # L_1 .. L_{T-1}
    floor = decoder_floor_bpd(schedule, x_test[:n], variance_type=variance_type, seed=seed)  # what a perfect model pays in L_0
    return {**{k: v / n for k, v in sums.items()}, "decoder_floor": floor, "n": n, "conditional": conditional}


def decoder_floor_bpd(
    schedule: Schedule,
    x0: torch.Tensor,
    *,
    variance_type: VarianceType = "fixed_small",
    seed: int = 0,
) -> float:
    """The decoder term L_0 (bits/dim) that even a perfect noise predictor pays, averaged over ``x0``.

    With eps_pred = eps, the decoder mean mu_theta(x_1, 1) = (x_1 - beta_1 / sqrt(1 - alpha_bar_1)
    eps) / sqrt(alpha_1) equals x_0 exactly (alpha_bar_1 = alpha_1), so what is left of
    L_0 = -log p(x_0 | x_1) (Ho et al. 2020, eq. 13) is the cost of the *fixed* decoder
    variance: each pixel's bin of width 2/255 holds only part of N(x_0, sigma_1^2). It is what a
    perfect noise predictor pays in L_0 with that variance, not a bound for every model: the two
    outer bins reach -inf and +inf, so a mean that overshoots the outer levels (below -1 on a
    black background) pays less (:func:`course_ddpm.bound.decoder_floor_closed_form`; notebook 5).

    Args:
        x0: ``(B, C, H, W)`` images on the 256-level grid of [-1, 1].
    """
    from course_ddpm.forward import q_sample
    from course_ddpm.bound import vb_term_bpd

    x0 = x0.cpu().double()  # float64 on the CPU, whatever device x0 came from
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    t = torch.zeros(len(x0), dtype=torch.long)
    x_1 = q_sample(schedule, x0, t, eps)  # paper x_1, code t = 0
    return float(vb_term_bpd(schedule, x0, x_1, t, eps, variance_type=variance_type).mean())


# ------------------------------------------------------------------------- evaluate
def _num_classes(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "num_classes", None)


def _generator(device: str | torch.device, seed: int) -> torch.Generator:
    """A seeded generator on ``device``, where the noise is drawn."""
    return torch.Generator(device=device).manual_seed(seed)


def evaluate(
    model: nn.Module,
    schedule: Schedule,
    *,
    n: int = 1000,
    sampler: SamplerName = "ddim",
    num_inference_steps: int | None = None,
    eta: float = 0.0,
    seed: int = 0,
    batch_size: int = 250,
    device: str | torch.device = "cpu",
    bpd_subset: int = 0,
    guidance_scale: float | None = None,
    classifier: nn.Module | None = None,
    progress: bool = True,
) -> dict:
    """Sample ``n`` digits and measure them; optionally bits/dim on ``bpd_subset`` test images.

    The samples come from :func:`course_ddpm.sampling.generate` with the same sampler
    defaults (DDIM, 50 steps, eta = 0). A class-conditional model (``model.config.num_classes``
    set) is asked for the labels 0, 1, ..., 9, 0, 1, ... in turn, so every digit is
    requested equally often, with classifier-free guidance ``guidance_scale``.

    Args:
        classifier: the classifier behind FID and histogram; default the shipped one.

    Returns a JSON-safe dict with keys ``n, sampler, steps`` (the number of steps run),
    ``eta, seed, guidance_scale``; ``fid`` and ``fid_floor``/``fid_ceiling``
    (:func:`~course_ddpm.fid.fid_reference_points` at the same n);
    ``digit_counts``/``digit_fractions`` (lists of 10), ``kl_from_uniform`` (nats),
    ``mean_confidence`` and, for comparison, ``mean_confidence_test`` of the MNIST test
    images; ``class_accuracy`` (fraction of samples classified as the label they were
    generated for; conditional models only, else None) and ``class_accuracy_per_label`` (the
    same per requested label, a list); ``bpd`` (:func:`bits_per_dim`, or None when
    ``bpd_subset`` is 0); ``model_tensors_sha256`` and ``classifier_tensors_sha256``
    (:func:`~course_ddpm.checkpoints.state_dict_sha256`: which weights were measured,
    whatever file they came from); ``seconds``.
    """
    from course_ddpm.sampling import generate, num_steps

    check_count("n", n, 2)
    start = time.perf_counter()
    classifier = default_classifier() if classifier is None else classifier
    num_classes = _num_classes(model)
    labels = None if num_classes is None else torch.arange(n) % num_classes
    samples = generate(
        model, schedule, n, labels=labels, guidance_scale=guidance_scale, sampler=sampler,
        num_inference_steps=num_inference_steps, eta=eta, seed=seed, batch_size=batch_size, device=device,
        progress=progress,
    )  # fmt: skip
    features, probs = classifier_outputs(samples, classifier)
    counts, fractions = _histogram(probs)
    reference = fid_reference_points(n, classifier=classifier, seed=seed)
    test_features, test_probs = mnist_test_outputs(classifier)
    correct = None if labels is None else probs.argmax(dim=1) == labels  # (n,) bool
    result = {
        "n": n,
        "sampler": sampler,
        "steps": num_steps(sampler, num_inference_steps, schedule.T),
        "eta": eta,
        "seed": seed,
        "guidance_scale": guidance_scale,
        "fid": frechet_distance(features, test_features),
        "fid_floor": reference["floor"],
        "fid_ceiling": reference["ceiling"],
        "digit_counts": [int(c) for c in counts],
        "digit_fractions": [float(f) for f in fractions],
        "kl_from_uniform": kl_from_uniform(fractions),
        "mean_confidence": float(probs.max(dim=1).values.mean()),
        "mean_confidence_test": float(test_probs.max(dim=1).values.mean()),
        "class_accuracy": None if labels is None else float(correct.double().mean()),
        "class_accuracy_per_label": None if labels is None else [
            float(correct[labels == k].double().mean()) for k in range(num_classes)
        ],
        "bpd": None,
        "model_tensors_sha256": state_dict_sha256(model),
        "classifier_tensors_sha256": state_dict_sha256(classifier),
    }
    if bpd_subset:
        result["bpd"] = bits_per_dim(
            model, schedule, n=bpd_subset, batch_size=batch_size, seed=seed, device=device, progress=progress
        )
    result["seconds"] = time.perf_counter() - start
    return result


def format_report(d: dict) -> str:
    """A plain-text table of what :func:`evaluate` returned."""
    steps = "all" if d["steps"] is None else d["steps"]
    lines = [
        f"MNIST evaluation: {d['n']} samples, {d['sampler']} sampler, {steps} steps, eta {d['eta']}, seed {d['seed']}",
        "",
        f"{'metric':<26}{'value':>10}   reference",
        f"{'MNIST-FID (classifier)':<26}{d['fid']:>10.3f}   floor {d['fid_floor']:.3f} (real train images), "
        f"ceiling {d['fid_ceiling']:.1f} (uniform noise), same n",
        f"{'digit KL from uniform':<26}{d['kl_from_uniform']:>10.4f}   "
        f"nats; 0 = balanced, {math.log(NUM_DIGITS):.3f} = one digit",
        f"{'mean confidence':<26}{d['mean_confidence']:>10.4f}   "
        f"top class probability; MNIST test images {d['mean_confidence_test']:.4f}",
    ]
    if d.get("class_accuracy") is not None:
        guidance = "" if d.get("guidance_scale") is None else f" (guidance scale {d['guidance_scale']})"
        accuracy = d["class_accuracy"]
        lines.append(f"{'class accuracy':<26}{accuracy:>10.4f}   samples classified as the label asked for{guidance}")
    lines += [
        "",
        "digit    " + "".join(f"{k:>7}" for k in range(NUM_DIGITS)),
        "count    " + "".join(f"{c:>7}" for c in d["digit_counts"]),
        "fraction " + "".join(f"{f:>7.3f}" for f in d["digit_fractions"]),
    ]
    if d.get("bpd"):
        b = d["bpd"]
        lines += [
            "",
            f"bits/dim on {b['n']} MNIST test images (variational bound, all T steps"
            + (", given their true labels)" if b.get("conditional") else ")"),
            f"{'total':>10}{'prior':>10}{'decoder':>10}{'diffusion':>11}",
            f"{b['total']:>10.4f}{b['prior']:>10.4f}{b['decoder']:>10.4f}{b['diffusion']:>11.4f}",
        ]
        if b.get("decoder_floor") is not None:
            lines.append(f"decoder term of a perfect noise predictor (fixed variance sigma_1^2): {b['decoder_floor']:.4f}")
    if "seconds" in d:
        lines += ["", f"({d['seconds']:.1f} s)"]
    return "\n".join(lines)
