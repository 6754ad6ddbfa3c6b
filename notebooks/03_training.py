# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3 · Training a noise predictor
#
# **Runtime:** about 35 s on 2 CPU cores (measured with `jupyter nbconvert --execute`; most of it is
# the short training run of section 5; several times longer when other programs compete for the cores).
#
# A diffusion model is trained by a strikingly simple recipe: noise a real image to a random step
# $t$, and ask a network to tell which noise was added. This notebook
#
# 1. states the recipe (Ho et al. 2020, Algorithm 1) and its loss $L_\text{simple}$,
# 2. shows why the data must be scaled to $[-1, 1]$,
# 3. measures why the seed lecture's `SimpleUNet` cannot work well,
# 4. looks inside the course's `UNet`,
# 5. trains it for a few steps right here,
# 6. reads how the shipped weights were trained, and how to train your own.
#
# *Time index.* The papers count $t = 1,\dots,T$; the code counts `t = 0..T-1`, so code `t`
# is paper $t+1$ (see `course_ddpm.schedules`). Every `t` printed below is a code index.

# %%
import shutil
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from course_ddpm import (exercises, forward, load_pretrained, losses, networks, plot_curves, plot_images, results, sampling,
                         training, training_step)
from course_ddpm.checkpoints import schedule_from_card
from course_ddpm.data import load_mnist, to_pixels
from course_ddpm.notebook import agree, setup, show_code
from course_ddpm.pretrained import weights_dir
from course_ddpm.schedules import broadcast, linear_schedule
from course_ddpm.simple_unet import SimpleUNet
from course_ddpm.training_config import TrainConfig
from course_ddpm.unet import UNet

setup(seed=0)  # torch threads and seed (course_ddpm.notebook.setup)

# %% [markdown]
# ## 1. The recipe: Algorithm 1 and $L_\text{simple}$
#
# One training example is a triple: a clean digit $x_0$, a time $t$ drawn uniformly, and a noise
# image $\epsilon\sim\mathcal N(0, I)$. The forward process (notebook 2) mixes them into $x_t$ in one
# jump. The network sees only $x_t$ and $t$, and must output $\epsilon$. Six such triples:

# %%
x_train, y_train = load_mnist(train=True)  # (60000, 1, 28, 28) in [-1, 1]
schedule = linear_schedule(1000)  # the schedule of the shipped model (Ho et al. 2020, section 4)

t_demo = torch.tensor([10, 100, 250, 500, 750, 999])
x0_demo = x_train[:6]  # (6, 1, 28, 28)
eps_demo = torch.randn(x0_demo.shape, generator=torch.Generator().manual_seed(0))
x_t_demo = forward.q_sample(schedule, x0_demo, t_demo, eps_demo)
titles = ["x0"] * 6 + [f"x_t, t={t}" for t in t_demo.tolist()] + ["target: eps"] * 6
plot_images.image_grid(torch.cat([x0_demo, x_t_demo, eps_demo]), ncols=6, titles=titles, size=1.3)
plt.show()

# %% [markdown]
# At $t = 10$ the noise is barely visible in $x_t$ and yet must be recovered exactly; at $t = 999$ the
# digit is gone and $x_t$ nearly *is* the noise. Algorithm 1 of Ho et al. (2020):
#
# > **repeat**  
# > $\quad x_0\sim q(x_0)$, $\quad t\sim\mathrm{Uniform}\{1,\dots,T\}$, $\quad \epsilon\sim\mathcal N(0, I)$  
# > $\quad$ take a gradient step on $\nabla_\theta\,\big\|\epsilon-\epsilon_\theta\big(\sqrt{\bar\alpha_t}\,x_0+\sqrt{1-\bar\alpha_t}\,\epsilon,\ t\big)\big\|^2$  
# > **until** converged
#
# The loss averaged over $t$, $x_0$ and $\epsilon$ is $L_\text{simple}$ (Ho et al. eq. 14): the
# variational bound of notebook 1 with every per-step weight set to 1. The trainer computes it in
# `training_step.diffusion_loss`, with the mean squared error of `losses.l_simple`:

# %% [markdown] tags=["exercise"]
# **Exercise 3.1 · One training loss.** Before reading the package's version below, write `my_training_loss(model, schedule, x0, t, eps)`: from
# clean images `x0` `(B, C, H, W)`, code indices `t` `(B,)` and noise `eps` like `x0`, form $x_t$, ask
# `model(x_t, t)` for $\epsilon_\theta$ and return $L_\text{simple}$, the mean over all entries of
# $(\epsilon - \epsilon_\theta)^2$, a scalar tensor. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_training_loss(model, schedule, x0, t, eps):
    """L_simple on one batch (Ho et al. Algorithm 1, eq. 14)."""
    ### BEGIN SOLUTION
    alpha_bar = broadcast(schedule.alpha_bar, t, x0)  # (B, 1, 1, 1)
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    eps_pred = model(x_t, t)
    return ((eps - eps_pred) ** 2).mean()
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_training_loss(my_training_loss)

# %%
show_code(training_step.diffusion_loss, losses.l_simple)

# %% [markdown]
# A batch is drawn exactly as the trainer draws it (`training_step.draw_batch`: 128 digits, a $t$ and an
# $\epsilon$ for each). Two reference points for the loss: a network that always answers
# $\epsilon_\theta = 0$ scores $\mathbb E\|\epsilon\|^2/D = 1$, and a freshly initialised `UNet` does
# worse, because its random outputs add their own variance.

# %%
config = TrainConfig()  # batch_size 128, T 1000, linear schedule
batch = training_step.draw_batch(x_train, None, training_step.EpochSampler(len(x_train), seed=0),
                                 torch.Generator().manual_seed(0), config, null_label=None)
untrained = UNet().eval()


def predict_zero(x_t, t, y=None):
    return torch.zeros_like(x_t)


with torch.no_grad():
    print(f"batch: x0 {tuple(batch.x0.shape)}, t from {batch.t.min().item()} to {batch.t.max().item()}")
    print(f"L_simple of eps_pred = 0:       {training_step.diffusion_loss(predict_zero, schedule, batch).item():.3f}")
    print(f"L_simple of the untrained UNet: {training_step.diffusion_loss(untrained, schedule, batch).item():.3f}")

# %% [markdown]
# ## 2. Scale the data to $[-1, 1]$
#
# Ho et al. (section 3.3) scale pixel values linearly to $[-1, 1]$, so that the reverse process
# "operates on consistently scaled inputs starting from the standard normal prior". `load_mnist`
# does it ($x_0 = 2p - 1$); `to_pixels` undoes it. A common bug is to train on the $[0, 1]$ pixels of
# `torchvision.transforms.ToTensor()` instead. What does that change? Here are the mean and standard
# deviation of $x_t$ for 256 digits, scaled both ways, with the same noise:

# %% [markdown] tags=["exercise"]
# **Exercise 3.2 · Pixels to $[-1, 1]$.** Write `my_to_model_range(pixels)`: uint8 pixel levels 0..255 (any shape) to float32 in $[-1, 1]$, with 0
# going to $-1$ and 255 to $1$. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_to_model_range(pixels):
    """uint8 levels 0..255 -> float32 in [-1, 1] (Ho et al. section 3.3)."""
    ### BEGIN SOLUTION
    return pixels.to(torch.float32) / 127.5 - 1
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_to_model_range(my_to_model_range)

# %%
right = x_train[:256]  # [-1, 1]: background -1, ink +1
wrong = to_pixels(right)  # [0, 1]: what ToTensor() gives
eps = torch.randn(right.shape, generator=torch.Generator().manual_seed(1))
print(f"{'t':>4} | {'x0 in [-1, 1]: mean':>19} {'std':>6} | {'x0 in [0, 1]: mean':>18} {'std':>6} | sqrt(alpha_bar_t)")
for t in (0, 100, 300, 600, 999):
    t_batch = torch.full((256,), t)
    a = forward.q_sample(schedule, right, t_batch, eps)
    b = forward.q_sample(schedule, wrong, t_batch, eps)
    print(f"{t:4d} | {a.mean():+19.3f} {a.std():6.3f} | {b.mean():+18.3f} {b.std():6.3f} | {schedule.alpha_bar[t].sqrt():.4f}")

# %% [markdown]
# At $t = 999$ both are $\mathcal N(0, 1)$: the last step hides the mistake, so $x_T$ statistics alone
# never reveal it. Everywhere else the $[0, 1]$ digit has **half the contrast** (std 0.31 instead of 0.61 at
# $t = 0$) and a different background level, so at every $t$ its signal-to-noise ratio is four times
# lower than the schedule assumes: the network is trained on a different, noisier chain, and a model
# trained on $[-1, 1]$ meets inputs it has never seen (section 6 measures that on the shipped model).
# The histograms at $t = 300$:

# %%
t_batch = torch.full((256,), 300)
plot_curves.pixel_histograms({
    "x0 in [-1, 1], t=300": forward.q_sample(schedule, right, t_batch, eps),
    "x0 in [0, 1], t=300": forward.q_sample(schedule, wrong, t_batch, eps),
}, size=(3.4, 2.4), sharey=True)
plt.show()

# %% [markdown]
# At the same $t$ the $[0, 1]$ digits are closer to $\mathcal N(0, 1)$: less of their signal survives.
# The trainer checks for it: `training.train` logs a warning when the data has no negative values.
#
# ## 3. The seed lecture's `SimpleUNet` and its limits
#
# The first version of this course used a four-layer convolutional network. The package keeps it,
# as `simple_unet.SimpleUNet`, to show what it lacks:

# %%
show_code(SimpleUNet.__init__, SimpleUNet.forward)

# %% [markdown]
# Every layer is a $3\times 3$ convolution at full resolution, without down-sampling or skip
# connections (its "transposed" convolutions have stride 1, so they are plain convolutions). So
# each output pixel depends only on a small window of $x_t$. We **measure** that window: the
# gradient of one output pixel, $\epsilon_\theta(x_t)_{14,14}$, with respect to every input pixel
# is non-zero exactly where that output looks.

# %%
torch.manual_seed(0)
simple, unet = SimpleUNet(), UNet()
x_t = torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # one random input
t = torch.tensor([100])
# |d eps_pred[14, 14] / d x_t|: non-zero where that output pixel looks
fields = {name: networks.receptive_field(model, x_t, t, pixel=(14, 14))
          for name, model in {"SimpleUNet": simple, "UNet": unet}.items()}
for name, grad in fields.items():
    rows, cols = (grad > 0).nonzero().unbind(1)
    print(f"{name:10s}: output pixel (14, 14) depends on {int((grad > 0).sum()):3d} input pixels, "
          f"rows {rows.min().item()}..{rows.max().item()}, columns {cols.min().item()}..{cols.max().item()}")

# %%
plot_images.heatmaps({f"{name}: log10 |gradient|": grad for name, grad in fields.items()}, log=True)
plt.show()

# %% [markdown]
# Four $3\times 3$ layers see $4\cdot 2 + 1 = 9$ pixels across: a $9\times 9$ window of a
# $28\times 28$ image. To predict the noise at a pixel, it helps to know which digit is there, and a
# $9\times 9$ patch of a noisy image rarely tells. The U-Net's stride-2 convolutions, its
# self-attention at $7\times 7$ and its GroupNorm (whose statistics span the image) let every output
# pixel see all 784 inputs.
#
# Nor is the small network cheap. Parameters and forward FLOPs per image
# (`networks.count_parameters`, `networks.flops_per_image`):

# %%
print(f"{'model':10s} {'parameters':>11s} {'MFLOPs / image':>15s}")
for name, model in (("SimpleUNet", simple), ("UNet", unet)):
    print(f"{name:10s} {networks.count_parameters(model):11,d} {networks.flops_per_image(model) / 1e6:15.1f}")

# %% [markdown]
# `SimpleUNet` runs 64–128 channels at full $28\times 28$ resolution, so it spends about 2.4 times
# the U-Net's compute, with fewer parameters and a 9×9 view. (Time also enters it only once, as the raw
# number $t/T$, where the U-Net gives every block a sinusoidal embedding of $t$.) Wall-clock time of one
# forward pass on a batch of 64 (varies with the machine):

# %% tags=["nbval-ignore-output"]
x_t = torch.randn(64, 1, 28, 28)
t = torch.full((64,), 100)
with torch.no_grad():
    for name, model in (("SimpleUNet", simple), ("UNet", unet)):
        model(x_t, t)  # warm-up
        start = time.perf_counter()
        for _ in range(3):
            model(x_t, t)
        print(f"{name:10s}: {(time.perf_counter() - start) / 3 * 1000:.0f} ms per batch of 64")

# %% [markdown]
# **What it costs in samples.** Speed per step is not the question; quality per CPU-second is. The
# course's benchmark `benchmarks/budget_study.py` trained `SimpleUNet`, the course's `UNet` and
# diffusers' `UNet2DModel` in the Hugging Face diffusion course's MNIST configuration for the same
# 600 CPU-seconds each (ten CPU-minutes), with the same recipe and the same batches, then drew 1,000 DDIM samples from
# each. Its results ship with the package (`results.load_result("budget_study")`):

# %%
budget = results.load_result("budget_study")
first = budget["results"][0]
print(f"{budget['budget_s']:g} CPU-s of training each; FID of {first['n']} samples, "
      f"floor {first['fid_floor']:.1f} (real digits), ceiling {first['fid_ceiling']:.0f} (noise)")
print(f"{'model':34s} {'parameters':>10s} {'steps':>5s} {'final loss':>10s} {'MNIST-FID':>9s} {'digit KL':>8s}  "
      "most drawn digit")
for r in budget["results"]:
    top = max(range(10), key=lambda k: r["digit_fractions"][k])
    print(f"{r['label']:34s} {r['params']:10,d} {r['steps']:5d} {r['final_loss']:10.4f} {r['fid']:9.1f} "
          f"{r['kl_from_uniform']:8.3f}  {top} ({r['digit_fractions'][top]:.0%})")

# %% [markdown]
# All three are still far from the floor after ten CPU-minutes (the shipped model trained more than
# ten times longer). The ranking is the point. Per CPU-second the course's `UNet` learns fastest.
# `SimpleUNet`, with its 9×9 view, ends with an MNIST-FID about 2.6 times higher. The Hugging Face
# course's `UNet2DModel` has six times the U-Net's parameters (and FLOPs per image), so it managed
# only about 200 steps, and it draws mostly one digit (digit KL: 0 means every digit equally often, 2.30 one
# digit only). A bigger network pays off only with more compute than a laptop has in a lecture.
#
# ## 4. The course's U-Net
#
# `unet.UNet` follows Ho et al. (appendix B), scaled down for $28\times 28$ digits on a CPU:
# residual blocks (GroupNorm, SiLU, two convolutions, the time embedding added in between), three
# resolutions $28\to 14\to 7$ with stride-2 convolutions down and nearest-neighbour up-sampling, skip
# connections that concatenate each down-path output to the matching up-path input, and
# self-attention at $7\times 7$. Its config:

# %%
print(unet.config)

# %% [markdown] tags=["exercise"]
# **Exercise 3.3 · The sinusoidal time embedding.** The network learns which $t$ it is at from a *time embedding* (Ho et al. section 4, from the Transformer):
# for `dim` even and $i = 0,\dots,\text{dim}/2-1$, with $w_i = 10000^{-i/(\text{dim}/2)}$, the embedding of $t$ is
# $\big(\sin(t w_0),\dots,\sin(t w_{\text{dim}/2-1}),\ \cos(t w_0),\dots,\cos(t w_{\text{dim}/2-1})\big)$.
# Write `my_time_embedding(t, dim)`: a `(B,)` tensor of time indices to a `(B, dim)` float32 tensor. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_time_embedding(t, dim, max_period=10000.0):
    """Sinusoidal embedding (B,) -> (B, dim): all sines, then all cosines."""
    ### BEGIN SOLUTION
    half = dim // 2
    w = max_period ** (-torch.arange(half, dtype=torch.float32) / half)  # (half,)
    angle = t.float()[:, None] * w[None, :]  # (B, half)
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_time_embedding(my_time_embedding)

# %% [markdown]
# The path of one image through it: every top-level block, the shape of what it outputs, and its
# parameters (`ResAttnBlock` = residual block, with attention at the lowest level):

# %%
print(f"{'block':9s} {'type':18s} {'output (C, H, W)':>17s} {'parameters':>11s}")
for row in networks.block_summary(unet):
    print(f"{row.name:9s} {row.kind:18s} {str(row.output_shape):>17s} {row.parameters:11,d}")
print(f"{'total':9s} {'':18s} {'':>17s} {networks.count_parameters(unet):11,d}")

# %% [markdown]
# The time MLP's output (64 numbers) is the embedding every residual block receives; its row shows
# that shape. The up path has one block more per level than the down path: it consumes every skip,
# including the stride-2 outputs. The full module tree is `print(unet)` (about 150 lines).
#
# ## 5. Train it yourself, briefly
#
# `training.train` repeats `training_step.train_step`, one step of Algorithm 1 with AdamW, gradient
# clipping and an exponential moving average (EMA) of the weights, and writes checkpoints to `out_dir`
# (here a temporary folder). A few steps take seconds; **raise `TRAIN_STEPS`** (to 500 or 2000) if you
# have minutes, and watch the loss curve and the samples below improve.

# %% [markdown] tags=["exercise"]
# **Exercise 3.4 · The EMA of the weights.** The weights that get sampled from are an exponential moving average,
# $\theta_\text{EMA} \leftarrow \text{decay}\cdot\theta_\text{EMA} + (1-\text{decay})\,\theta$, taken after every
# step. Write `my_ema_update(ema_model, model, decay)`: it changes the parameters of `ema_model` *in place*
# (walk `zip(ema_model.parameters(), model.parameters())`, under `torch.no_grad()`) and returns nothing. The rest of the notebook uses the package's version, so you can skip an exercise and run on.

# %% tags=["exercise"]
def my_ema_update(ema_model, model, decay):
    """theta_ema <- decay * theta_ema + (1 - decay) * theta, in place, for every parameter."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        for p_ema, p in zip(ema_model.parameters(), model.parameters()):
            p_ema.mul_(decay).add_(p, alpha=1 - decay)
    ### END SOLUTION

# %% tags=["exercise"]
exercises.check_ema_update(my_ema_update)

# %%
TRAIN_STEPS = 30  # about half a second per step on 2 CPU cores; try 500 or more

# %%
run_dir = Path(tempfile.mkdtemp(prefix="course_ddpm_")) / "short_run"
short_config = TrainConfig(
    model="unet", steps=TRAIN_STEPS, batch_size=128, lr=1e-3, warmup_steps=10,
    out_dir=str(run_dir), log_every=10, sample_every=0, checkpoint_every=0, device="cpu", num_threads=2,
)
subset = (x_train[:4096], None)  # 4096 digits are plenty for a few steps

# %% tags=["nbval-ignore-output"]
result = training.train(short_config, data=subset)  # tqdm progress bar: loss and images per second

# %%
print(f"{result.step} steps; L_simple {result.losses[0]:.2f} at step 1, "
      f"{sum(result.losses[-5:]) / 5:.2f} averaged over the last 5 steps")
print("files written:", ", ".join(sorted(p.name for p in run_dir.iterdir())))
shutil.rmtree(run_dir.parent)  # delete the run's folder; remove this line to keep its files
plot_curves.loss_curve(result.losses, smooth=5, label="L_simple (one batch)")
plt.show()

# %% [markdown]
# The loss falls fast at first: predicting "noise-like" outputs with the right scale is easy. What is
# hard is the last stretch, at small $t$, where the noise is faint. Samples from this short run's EMA
# weights (DDIM with 20 steps, notebook 4) are still blobs:

# %%
short_samples = sampling.generate(result.ema_model, schedule, 8, sampler="ddim", num_inference_steps=20,
                                  seed=0, progress=False)
plot_images.image_grid(short_samples, ncols=8, suptitle=f"after {result.step} training steps")
plt.show()

# %% [markdown]
# ## 6. The shipped weights and how they were trained
#
# `load_pretrained("unet")` checks the sha256 of the shipped files and returns the model and its
# *card*, a JSON record of what it is and how it was made:

# %%
shipped, card = load_pretrained("unet")
shipped_schedule = schedule_from_card(card)  # the Schedule it was trained with
print("model:   ", card["model"])
print(f"schedule: {card['schedule']['name']}, sqrt(alpha_bar_T) = {card['schedule']['sqrt_alpha_bar_T']:.4f}")
print("weights: ", card["weights"], f"(exponential moving average, decay {card['training']['ema_decay']})")
print(f"trained: {card['step']} steps of batch {card['training']['batch_size']}, "
      f"lr {card['training']['lr']}, seed {card['training']['seed']}")

# %% [markdown]
# The card's `training` entry is the run's full `TrainConfig`, and `reproduce` is the command that
# trains these weights again, bit for bit on a CPU with one thread: the learning rate and the EMA
# decay do not depend on the total number of steps, so stopping at the shipped step gives the same
# weights. Add `--out-dir runs/my_unet` to choose where it writes.

# %%
print(card["reproduce"])

# %% [markdown]
# Its learning curve, from the training log shipped beside the weights (one entry per
# `log_every` steps, each the mean loss since the previous entry):

# %%
log = training.read_log(weights_dir() / card["loss_log"])
every = card["training"]["log_every"]
print(f"{len(log)} entries, steps {log[0]['step']}..{log[-1]['step']}; "
      f"loss {log[0]['loss']:.3f} -> {log[-1]['loss']:.4f}; {log[-1]['wall_time'] / 3600:.1f} h of training")
plot_curves.loss_curve([entry["loss"] for entry in log], smooth=5, xlabel=f"log entry (one per {every} steps)",
                    label=f"L_simple, mean over {every} steps")
plt.show()

# %% [markdown]
# The loss flattens early, but the samples keep improving long after. `benchmarks/learning_curve.py`
# measured MNIST-FID (section 2 of notebook 4 explains it; lower is better) of 1,000 DDIM samples of
# the EMA weights at several steps of this run, all from the same starting noises, and kept 16 of each
# snapshot's samples. The snapshots were made by running the card's `reproduce` command again with
# `--keep-every 500`. The rerun is this run: its logged losses equal the shipped log's at every logged
# step it reached (printed below), and the last row is the shipped file itself.

# %%
curve = results.load_result("learning_curve")
check = max((part["log_check"] for part in curve["meta"]["parts"] if part.get("log_check")),
            key=lambda c: c["through_step"])
print(f"rerun against the shipped loss log, {check['entries_compared']} entries through step "
      f"{check['through_step']:,}: {agree(check['max_rel_diff'], digits=12)}")
rows = curve["rows"]
print(f"{'step':>6s} {'loss (last 500 steps)':>21s} {'MNIST-FID':>9s} {'floor':>6s} {'digit KL':>8s}")
for row in rows:
    print(f"{row['step']:6d} {row['loss']:21.5f} {row['fid']:9.1f} {row['fid_floor']:6.1f} {row['kl_from_uniform']:8.4f}")
steps = torch.tensor([float(row["step"]) for row in rows])
plot_curves.density_curves(steps, {"MNIST-FID, N = 1000": torch.tensor([row["fid"] for row in rows]),
                                "--floor (real digits)": torch.tensor([row["fid_floor"] for row in rows])},
                        xlabel="training step", ylabel="MNIST-FID", yscale="log", title="sample quality by step")
plt.show()

# %% [markdown]
# What those numbers look like: the same 16 starting noises decoded by the EMA weights of each
# snapshot (DDIM, 50 steps). Blobs become strokes within the first thousand steps; after that
# the digits sharpen and fewer of them are malformed, while the loss hardly moves.

# %%
plot_images.image_rows({f"step {row['step']:,}\nFID {row['fid']:.0f}": results.images_from_json(row["samples"])
                        for row in rows}, size=0.55)
plt.show()

# %% [markdown]
# Over the second half of the run the two curves part ways:

# %%
last = rows[-1]
late = [r for r in rows if r["step"] <= last["step"] // 2][-1]  # the last snapshot in the run's first half
print(f"from step {late['step']:,} to {last['step']:,}: loss -{1 - last['loss'] / late['loss']:.0%}, "
      f"MNIST-FID -{1 - last['fid'] / late['fid']:.0%}; the last FID is {last['fid'] / last['fid_floor']:.1f} times its floor")

# %% [markdown]
# Late in training the loss is a poor guide to sample quality, which is why the course measures
# the samples themselves. The last FID is still several times its floor; this 0.28M-parameter
# network, trained for a few hours on one CPU core, has not converged.

# %% [markdown]
# **What the wrong scaling does to a trained model.** The shipped model's $L_\text{simple}$ on the batch
# of section 1 (uniform $t$), with the digits scaled right and wrong:

# %%
wrong_batch = training_step.Batch(to_pixels(batch.x0), batch.t, batch.eps, None)
with torch.no_grad():
    print(f"x0 in [-1, 1]: L_simple {training_step.diffusion_loss(shipped, shipped_schedule, batch).item():.4f}")
    print(f"x0 in [0, 1]:  L_simple {training_step.diffusion_loss(shipped, shipped_schedule, wrong_batch).item():.4f}")

# %% [markdown]
# **Where is noise prediction hard?** $L_\text{simple}$ at single values of $t$, on 64 test digits,
# for the shipped model, for the same model given $[0, 1]$ data, and for the short run of section 5:

# %%
x_test, _ = load_mnist(train=False)
x0_eval = x_test[:64]
eps_eval = torch.randn(x0_eval.shape, generator=torch.Generator().manual_seed(2))
t_grid = torch.tensor([0, 5, 20, 50, 100, 200, 300, 500, 700, 999])
cases = {"shipped, x0 in [-1, 1]": (shipped, x0_eval), "shipped, x0 in [0, 1]": (shipped, to_pixels(x0_eval)),
         f"short run ({result.step} steps)": (result.ema_model, x0_eval)}
loss_by_t = {}
with torch.no_grad():
    for name, (model, x0) in cases.items():
        loss_by_t[name] = torch.tensor([
            training_step.diffusion_loss(model, shipped_schedule,
                                         training_step.Batch(x0, torch.full((64,), t), eps_eval, None))
            for t in t_grid.tolist()
        ])
print(f"{'t':>24s}" + "".join(f"{t:>7d}" for t in t_grid.tolist()))
for name, values in loss_by_t.items():
    print(f"{name:>24s}" + "".join(f"{v:7.3f}" for v in values.tolist()))

# %%
plot_curves.density_curves(t_grid.double(), {name: values for name, values in loss_by_t.items()},
                        xlabel="t (code index)", ylabel="L_simple at this t", yscale="log",
                        title="noise-prediction error by time step")
plt.show()

# %% [markdown]
# For the trained model the error is largest at small $t$, where $\epsilon$ is a faint pattern
# on a clean digit, and falls towards large $t$, where $x_t$ is nearly $\epsilon$ itself. Compare
# the $[0, 1]$ row with the right one, column by column: the wrong scaling costs most at small $t$,
# where the digit dominates $x_t$; at large $t$ there is little of it left to get wrong.
#
# ## 7. Train your own
#
# From a terminal, in the course's environment (`make lab` installs the `course-ddpm` command):
#
# ```bash
# course-ddpm train --steps 2000 --out-dir runs/my_unet
# course-ddpm train --steps 4000 --out-dir runs/my_unet --resume   # continue it later
# course-ddpm sample --checkpoint runs/my_unet/final.safetensors --out grid.png
# course-ddpm evaluate --checkpoint runs/my_unet/final.safetensors --n 1000
# ```
#
# Ctrl-C stops after the current step and writes a checkpoint; `--resume` continues exactly where
# it stopped. `runs/my_unet/` then holds `config.json`, `log.jsonl` (the learning curve), sample grids
# and the EMA weights, which `checkpoints.load_model` (or `--checkpoint` on the command line) loads
# like the shipped ones. Every option:

# %% tags=["nbval-ignore-output"]
# !{sys.executable} -m course_ddpm.cli train --help

# %% [markdown]
# ## Summary
#
# * Training is regression: $L_\text{simple} = \mathbb E_{t, x_0, \epsilon}\|\epsilon - \epsilon_\theta(x_t, t)\|^2$
#   with $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon$ (Algorithm 1; `training_step.diffusion_loss`).
# * Scale images to $[-1, 1]$; $x_T$ statistics will not tell you if you forgot.
# * A denoiser must see the whole image: the seed `SimpleUNet` sees 9×9 pixels and costs more than the U-Net.
# * The shipped model's card records its config and step; its log records the learning curve. Next:
#   notebook 4 samples from it.
