"""Probability-flow ODE on the shipped U-Net: exact bits/dim beside the ELBO, and NFE against MNIST-FID.

Two measurements, both on ``load_pretrained("unet")``:

* **Likelihood.** Bits/dim of the first ``--n-bpd`` MNIST test digits by the ODE
  (:func:`course_ddpm.likelihood.ode_bits_per_dim`: uniform dequantisation into the bins of
  width 2/255 the ELBO's decoder uses, Hutchinson's divergence with one Rademacher probe
  per image, RK45 at rtol = atol = 1e-5 from t = 1e-5), with the standard error over
  images, beside the ELBO bound of :func:`course_ddpm.evaluation.bits_per_dim` on the same
  digits (all T terms). Song et al. 2021 (arXiv:2011.13456, Table 2) find the ODE value
  below the bound on CIFAR-10; this checks it on MNIST.
* **Sampling.** ``--n-fid`` samples from the ODE sampler (:func:`course_ddpm.ode.ode_sample`)
  at several tolerances (NFE = network calls per image) and from DDIM (eta = 0) at several
  step counts, all from the same x_T, each scored by MNIST-FID with the floor at the same N
  (:func:`course_ddpm.fid.fid_reference_points`).

The committed run (one thread, about 15 minutes):

  python benchmarks/ode_likelihood.py --threads 1 --json course_ddpm/measurements/ode_likelihood.json

Smoke run (seconds): ``--n-bpd 2 --n-fid 20 --tols 1e-2 --ddim-steps 5``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_info import report, run_meta  # noqa: E402

from course_ddpm.checkpoints import schedule_from_card, state_dict_sha256  # noqa: E402
from course_ddpm.evaluation import bits_per_dim  # noqa: E402
from course_ddpm.fid import fid_reference_points, mnist_fid  # noqa: E402
from course_ddpm.likelihood import mnist_ode_bits_per_dim  # noqa: E402
from course_ddpm.ode import ode_generate  # noqa: E402
from course_ddpm.pretrained import load_pretrained  # noqa: E402
from course_ddpm.sampling import sample  # noqa: E402
from course_ddpm.sde import VPSDE  # noqa: E402


def likelihood(model, schedule, sde, n: int, batch_size: int, seed: int, rtol: float) -> dict:
    """ODE bits/dim (mean, standard error, per image) and the ELBO on the same first n test digits."""
    ode = mnist_ode_bits_per_dim(model, sde, n, batch_size=batch_size, seed=seed, rtol=rtol)
    elbo = bits_per_dim(model, schedule, n=n, batch_size=batch_size, seed=seed, progress=False)
    return {
        "n": n,
        "ode_bpd": ode["bpd"],
        "ode_bpd_stderr": ode["stderr"],
        "ode_bpd_per_image": [round(b, 5) for b in ode["per_image"]],
        "ode_nfe_per_batch": ode["nfe"],
        "batch_size": batch_size,
        "rtol": rtol,
        "atol": rtol,
        "t_start": ode["t_start"],
        "elbo_bpd": elbo["total"],
        "elbo": elbo,
    }


def sampling(model, sde, n: int, batch_size: int, seed: int, tols: list[float], ddim_steps: list[int]) -> dict:
    """FID and NFE of the ODE sampler at each tolerance and of DDIM at each step count, same x_T."""
    x_T = torch.randn((n, 1, 28, 28), generator=torch.Generator().manual_seed(seed))
    rows = []
    for tol in tols:
        start = time.perf_counter()
        samples, nfe = ode_generate(model, sde, n, rtol=tol, seed=seed, batch_size=batch_size)  # the same x_T
        rows.append({"sampler": "ode", "tol": tol, "nfe": nfe, "fid": mnist_fid(samples),
                     "seconds": time.perf_counter() - start})  # fmt: skip
    for steps in ddim_steps:
        start = time.perf_counter()
        samples = torch.cat([
            sample(model, sde.schedule, x.shape, sampler="ddim", num_inference_steps=steps, x_T=x, progress=False).samples
            for x in x_T.split(batch_size)
        ])  # fmt: skip
        rows.append({"sampler": "ddim", "steps": steps, "nfe": steps, "fid": mnist_fid(samples),
                     "seconds": time.perf_counter() - start})  # fmt: skip
    return {"n": n, "batch_size": batch_size, "seed": seed, "rows": rows, "fid_reference": fid_reference_points(n, seed=seed)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-bpd", type=int, default=50, help="MNIST test digits for bits/dim (default 50)")
    parser.add_argument("--n-fid", type=int, default=300, help="samples per sampler for FID (default 300)")
    parser.add_argument("--batch-size", type=int, default=10, help="images per ODE solve for bits/dim (default 10)")
    parser.add_argument("--fid-batch-size", type=int, default=100, help="images per ODE solve for sampling (default 100)")
    parser.add_argument("--rtol", type=float, default=1e-5, help="likelihood solver tolerance (default 1e-5)")
    parser.add_argument("--tols", default="1e-2,1e-3,1e-4", help="ODE sampler tolerances (comma-separated)")
    parser.add_argument("--ddim-steps", default="10,20,50,100", help="DDIM step counts (comma-separated)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, card = load_pretrained("unet")
    schedule = schedule_from_card(card)
    sde = VPSDE.from_schedule(schedule)
    result = {
        "model": "pretrained:unet",
        "model_tensors_sha256": state_dict_sha256(model),
        "likelihood": likelihood(model, schedule, sde, args.n_bpd, args.batch_size, args.seed, args.rtol),
        "sampling": sampling(
            model, sde, args.n_fid, args.fid_batch_size, args.seed,
            [float(t) for t in args.tols.split(",")], [int(k) for k in args.ddim_steps.split(",")],
        ),  # fmt: skip
    }
    result["run"] = run_meta(argv, start)
    lk = result["likelihood"]
    lines = [f"bits/dim on {lk['n']} MNIST test digits: ODE {lk['ode_bpd']:.3f} +- {lk['ode_bpd_stderr']:.3f}, "
             f"ELBO {lk['elbo_bpd']:.3f}", f"samplers (n = {args.n_fid}; FID floor "
             f"{result['sampling']['fid_reference']['floor']:.2f}):"]  # fmt: skip
    for row in result["sampling"]["rows"]:
        lines.append(f"  {row['sampler']:<5} {row.get('tol', row.get('steps'))!s:<8} NFE {row['nfe']:7.1f}  FID {row['fid']:7.2f}")
    return report(result, args.json, "\n".join(lines))


if __name__ == "__main__":
    main()
