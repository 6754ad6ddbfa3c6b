"""The devices students have: nothing in float64 reaches an accelerator, and the inner loops
never read the device.

Apple-silicon Macs (``--device auto`` picks MPS) have no float64 at all, and on a GPU every
read of device memory (``.item()``, ``int(t)``, ``bool(mask.any())``, ``.cpu()``) waits
for the GPU. This machine has neither, so torch's ``meta`` device stands in for one: it
runs every op for shapes and dtypes but holds no data. :class:`Audit`, a
``TorchDispatchMode``, sees every op and

* records each one that leaves a float64 tensor on a device other than the CPU
  (``audit.float64``, which must stay empty), and
* in strict mode (the default) fails on any read from the device, so the sampling loop
  and the training step's maths are shown to run without one; with ``reads=True`` a path
  that reads on purpose (the NaN guard's ``loss.item()``, results copied to the CPU) runs
  on, the read answered from ``holds`` (what the test says the device holds) or with
  zeros, and recorded in ``audit.reads``, which the test then checks.

The real code paths run under it: sampling (DDPM, DDIM eta 0 and 1, guidance), single
steps with tensor ``t``, the forward process, the training step, and the device side of
evaluation (the bits/dim bound, generation, classifier features).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from course_ddpm import bound, ddim, ddpm, elbo, evaluation, fid, forward, reverse, sampling, training_step
from course_ddpm.classifier import MNISTClassifier
from course_ddpm.distributed import DistInfo
from course_ddpm.networks import build_model
from course_ddpm.schedules import broadcast, cosine_schedule
from course_ddpm.training_config import TrainConfig
from course_ddpm.toy import GaussianMixture

META = torch.device("meta")
SCHED = cosine_schedule(10)  # a short chain: every path runs in milliseconds on meta
TINY_UNET = dict(base_channels=8, channel_mults=(1, 2), attention=True, groups=4)
SHAPE = (2, 1, 8, 8)
_PACKAGE = str(Path(sampling.__file__).parent)


@dataclass(frozen=True)
class Event:
    """One recorded op: its name and the innermost line of course_ddpm that led to it."""

    op: str
    where: str  # "module.py:line in function", or "(test)" when no package code was involved
    function: str


def _event(func) -> Event:
    for frame in reversed(traceback.extract_stack()):
        if frame.filename.startswith(_PACKAGE):
            return Event(str(func), f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}", frame.name)
    return Event(str(func), "(test)", "")


def _stand_in_scalar(x: torch.Tensor):
    return False if x.dtype == torch.bool else 0 if not x.is_floating_point() else 0.0


class Audit(TorchDispatchMode):
    """Records float64 tensors made on a non-CPU device, and reads from such a device.

    Args:
        reads: False: a read from the device fails the test at once. True: it is recorded
            and answered from ``holds`` or with zeros.
        holds: ``[(device tensor, CPU tensor of its values)]``, what the device "holds".
    """

    def __init__(self, reads: bool = False, holds: list[tuple[torch.Tensor, torch.Tensor]] = ()):
        super().__init__()
        self.allow_reads, self.holds = reads, list(holds)
        self.float64: list[Event] = []
        self.reads: list[Event] = []

    def _held(self, x: torch.Tensor) -> torch.Tensor | None:
        return next((value for device_tensor, value in self.holds if device_tensor is x), None)

    def _read(self, func, x: torch.Tensor) -> torch.Tensor | None:
        event = _event(func)
        if not self.allow_reads:
            raise AssertionError(f"read from the device ({event.op}) at {event.where}")
        self.reads.append(event)
        return self._held(x)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # Reads: .item() / int() / bool() / float() of a device tensor, and copies to the CPU.
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type != "cpu":
            held = self._read(func, args[0])
            return held.item() if held is not None else _stand_in_scalar(args[0])
        if func is torch.ops.aten._to_copy.default and args[0].device.type != "cpu":
            target = torch.device(kwargs.get("device") or args[0].device)
            if target.type == "cpu":
                held = self._read(func, args[0])
                dtype = kwargs.get("dtype") or args[0].dtype
                value = held if held is not None else torch.zeros(args[0].shape, dtype=args[0].dtype)
                return value.to(dtype).clone()
        if func is torch.ops.aten.copy_.default and args[0].device.type == "cpu" and args[1].device.type != "cpu":
            held = self._read(func, args[1])
            return args[0].copy_(held) if held is not None else args[0].zero_()
        out = func(*args, **kwargs)
        for x in pytree.tree_leaves(out):
            if isinstance(x, torch.Tensor) and x.dtype == torch.float64 and x.device.type != "cpu":
                self.float64.append(_event(func))
        return out

    def assert_no_float64(self) -> None:
        assert not self.float64, "float64 on the device: " + "; ".join(f"{e.op} at {e.where}" for e in self.float64)


def tiny_unet(**overrides) -> torch.nn.Module:
    return build_model("unet", **{**TINY_UNET, **overrides}).to(META)


def meta_randn(*shape: int) -> torch.Tensor:
    return torch.randn(shape, device=META)


# ------------------------------------------------------------------------ the harness
def test_the_audit_catches_float64_sent_to_the_device_and_any_read():
    table = torch.linspace(0.1, 0.9, 10, dtype=torch.float64)
    with Audit() as audit:
        torch.ones(3, dtype=torch.float64).to("meta")  # a float64 transfer
        meta_randn(2).new_empty(2, dtype=torch.float64)  # float64 made on the device
        table.to(torch.full((2,), 3, device=META).device)  # what schedules.broadcast used to do
        table.to(torch.float32).to(META)  # cast on the CPU, then moved: the rule, not recorded
    assert [e.op for e in audit.float64] == ["aten._to_copy.default", "aten.new_empty.default",
                                             "aten._to_copy.default"]  # fmt: skip
    with pytest.raises(AssertionError, match="float64 on the device"):
        audit.assert_no_float64()
    for read in (lambda x: x.sum().item(), lambda x: int(x.min()), lambda x: bool(x.any()), lambda x: x.cpu()):
        with pytest.raises(AssertionError, match="read from the device"), Audit():
            read(meta_randn(3))


def test_the_audit_answers_recorded_reads_from_what_the_device_holds():
    t = torch.full((2,), 7, device=META)
    with Audit(reads=True, holds=[(t, torch.tensor([7, 3]))]) as audit:
        assert t.cpu().tolist() == [7, 3] and int(t[0]) == 0  # t[0] is a new tensor: zeros stand in
    assert [e.op for e in audit.reads] == ["aten._to_copy.default", "aten._local_scalar_dense.default"]


# --------------------------------------------------------------------------- sampling
@pytest.mark.parametrize(
    "kw",
    [dict(sampler="ddpm"), dict(sampler="ddpm", variance_type="fixed_large", clip_x0=False),
     dict(sampler="ddim", num_inference_steps=4, eta=0.0),
     dict(sampler="ddim", num_inference_steps=4, eta=1.0, spacing="trailing")],
    ids=["ddpm", "ddpm-large", "ddim-eta0", "ddim-eta1"],
)  # fmt: skip
def test_sampling_loop_keeps_float64_off_the_device_and_never_reads_it(kw):
    model = tiny_unet()
    with Audit() as audit:
        result = sampling.sample(model, SCHED, SHAPE, device=META, progress=False, **kw)
    audit.assert_no_float64()
    assert result.samples.device == META and result.samples.dtype == torch.float32


@pytest.mark.parametrize("guidance_scale", [None, 3.0])
def test_conditional_sampling_with_guidance_on_the_device(guidance_scale):
    model = tiny_unet(num_classes=3)
    y = torch.tensor([0, 2])  # on the CPU: sample moves the labels once, before the loop
    with Audit() as audit:
        for kw in (dict(sampler="ddpm"), dict(sampler="ddim", num_inference_steps=3, eta=1.0)):
            sampling.sample(model, SCHED, SHAPE, device=META, y=y, guidance_scale=guidance_scale, progress=False, **kw)
    audit.assert_no_float64()


def test_ddim_inversion_on_the_device():
    model = tiny_unet()
    with Audit() as audit:
        x_T = sampling.ddim_invert(model, SCHED, meta_randn(*SHAPE), num_inference_steps=4, progress=False)
    audit.assert_no_float64()
    assert x_T.device == META


def test_single_steps_with_tensor_t_on_the_device():
    x_t, eps_pred, z = meta_randn(*SHAPE), meta_randn(*SHAPE), meta_randn(*SHAPE)
    t, t_prev = torch.tensor([9, 4], device=META), torch.tensor([4, -1], device=META)
    with Audit() as audit:
        for variance_type in ("fixed_small", "fixed_large"):
            ddpm.ddpm_step(SCHED, x_t, t, eps_pred, variance_type=variance_type, noise=z, clip_x0=True)
        ddpm.ddpm_step(SCHED, x_t, 5, eps_pred)  # int t: z drawn on the device
        ddim.ddim_invert_step(SCHED, x_t, t_prev, t, eps_pred)
        # ddim_step computes its coefficients from (t, t_prev) in float64 on the CPU: with
        # indices on the CPU (tensors or ints, as sample passes them) nothing is read.
        for eta in (0.0, 1.0):
            ddim.ddim_step(SCHED, x_t, torch.tensor([9, 4]), torch.tensor([4, -1]), eps_pred, eta=eta, clip_x0=True)
            ddim.ddim_step(SCHED, x_t, 9, -1, eps_pred, eta=eta, noise=z)
    audit.assert_no_float64()


def test_steps_that_read_device_indices_read_only_them():
    """Two steps read tensor indices on the device, once per call (documented in ddpm and ddim):
    ddim_step copies (t, t_prev) to the CPU, and ddpm_step without ``noise`` asks whether
    any t > 0 to decide whether to draw z. Meta cannot be read, so the audit answers."""
    x_t, eps_pred = meta_randn(*SHAPE), meta_randn(*SHAPE)
    t, t_prev = torch.tensor([9, 4], device=META), torch.tensor([4, -1], device=META)
    holds = [(t, torch.tensor([9, 4])), (t_prev, torch.tensor([4, -1]))]
    with Audit(reads=True, holds=holds) as audit:
        ddim.ddim_step(SCHED, x_t, t, t_prev, eps_pred, eta=1.0)
    audit.assert_no_float64()
    assert [(e.op, e.function) for e in audit.reads] == [("aten._to_copy.default", "_on_cpu")] * 2
    with Audit(reads=True) as audit:
        ddpm.ddpm_step(SCHED, x_t, t, eps_pred)
    audit.assert_no_float64()
    assert [(e.op, e.function) for e in audit.reads] == [("aten._local_scalar_dense.default", "ddpm_step")]


def test_slerp_computes_in_float64_on_the_cpu_and_returns_to_the_device():
    x_a, x_b = meta_randn(1, 8, 8), meta_randn(1, 8, 8)
    holds = [(x_a, torch.randn(1, 8, 8)), (x_b, torch.randn(1, 8, 8))]
    with Audit(reads=True, holds=holds) as audit:
        out = ddim.slerp(x_a, x_b, torch.tensor([0.25, 0.5], device=META))
    audit.assert_no_float64()
    assert out.device == META and out.dtype == torch.float32 and out.shape == (2, 1, 8, 8)
    assert {e.function for e in audit.reads} == {"slerp"}  # the two noises and lam, once


# --------------------------------------------------------- forward process, reverse step
def test_forward_process_and_reverse_step_on_the_device():
    x0, eps = meta_randn(*SHAPE), meta_randn(*SHAPE)
    t = torch.tensor([0, 9], device=META)
    with Audit() as audit:
        x_t = forward.q_sample(SCHED, x0, t, eps)
        forward.q_sample(SCHED, x0, torch.tensor([0, 9]), eps)  # t on the CPU
        forward.q_mean_variance(SCHED, x0, t)
        forward.q_step_mean_variance(SCHED, x0, t)
        forward.q_posterior(SCHED, x0, x_t, t)
        forward.x0_from_eps(SCHED, x_t, t, eps)
        forward.eps_from_x0(SCHED, x_t, t, x0)
        forward.x0_from_score(SCHED, x_t, t, forward.score_from_eps(SCHED, t, eps))
        forward.eps_from_score(SCHED, t, eps)
        forward.q_trajectory(SCHED, x0)
        reverse.p_mean_variance(SCHED, x_t, t, eps, variance_type="fixed_large", clip_x0=True)
        broadcast(SCHED.alpha_bar, t, x0.to(torch.bfloat16))
    audit.assert_no_float64()


# ----------------------------------------------------------------------------- training
def _meta_training_state(config: TrainConfig) -> training_step.TrainState:
    """A TrainState as TrainState.start builds it, on meta (start() seeds a device torch can resolve)."""
    model = build_model(config.model, **config.model_config_kwargs(in_channels=1)).to(META).train()
    ema_model = build_model(config.model, **config.model_config_kwargs(in_channels=1)).to(META).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return training_step.TrainState(model, ema_model, optimizer, training_step.EpochSampler(8, 0),
                                    torch.Generator().manual_seed(1))  # fmt: skip


@pytest.mark.parametrize("conditional", [False, True])
def test_training_step_maths_never_read_the_device(conditional):
    config = TrainConfig(model_kwargs=dict(TINY_UNET), T=SCHED.T, schedule="cosine", batch_size=4,
                         conditional=conditional, weight_decay=0.01)  # fmt: skip
    state = _meta_training_state(config)
    x = torch.rand(8, *SHAPE[1:]) * 2 - 1
    y = torch.arange(8) % 3 if conditional else None
    null_label = state.model.config.num_classes  # None, or 10 (MNIST's classes) when conditional
    batch = training_step.draw_batch(x, y, state.sampler, state.noise_generator, config, null_label)
    with Audit() as audit:
        batch = batch.slice(slice(0, 4), META)
        loss = training_step.diffusion_loss(state.model, SCHED, batch)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), 1.0)
        state.optimizer.step()
        training_step.ema_update(state.ema_model, state.model, 0.9)
    audit.assert_no_float64()


def test_training_step_reads_only_the_loss_and_gradient_norm_of_the_nan_guard():
    config = TrainConfig(model_kwargs=dict(TINY_UNET), T=SCHED.T, schedule="cosine", batch_size=4)
    state = _meta_training_state(config)
    x = torch.rand(8, *SHAPE[1:]) * 2 - 1
    batch = training_step.draw_batch(x, None, state.sampler, state.noise_generator, config, null_label=None)
    info = DistInfo(device=META)
    with Audit(reads=True) as audit:
        training_step.train_step(state, batch.slice(slice(0, 4), META), SCHED, config, info=info)
    audit.assert_no_float64()
    assert [(e.op, e.function) for e in audit.reads] == [("aten._local_scalar_dense.default", "train_step")] * 2
    assert state.step == 1


# --------------------------------------------------------------------------- evaluation
def _grid_images(*shape: int) -> torch.Tensor:
    """Images on the 256-level grid of [-1, 1], on the device (the decoder needs the grid)."""
    return (torch.randint(0, 256, shape) / 127.5 - 1.0).to(META)


def test_variational_bound_reads_only_its_input_check_once_whatever_t():
    model = tiny_unet().eval()
    with Audit(reads=True) as audit:
        vb = bound.variational_bound(model, SCHED, _grid_images(*SHAPE), variance_type="fixed_large")
    audit.assert_no_float64()
    assert vb.total_bpd.device == META and vb.terms_bpd.shape == (2, SCHED.T)
    # discretized_gaussian_log_likelihood checks that x is on the 256-level grid (min, max,
    # grid): three reads per batch, at the decoder step, not one per step of the loop.
    assert [e.function for e in audit.reads] == ["discretized_gaussian_log_likelihood"] * 3


def test_toy_elbo_forms_on_the_device():
    mixture = GaussianMixture((0.3, 0.7), (-0.5, 0.5), (0.2, 0.3))
    trajectory = forward.q_trajectory(SCHED, mixture.sample((4, 1)).float()).to(META)  # (T + 1, 4, 1)
    t = torch.tensor([1, 8, 3, 0], device=META)
    with Audit() as audit:
        elbo.elbo_denoising_form(SCHED, trajectory, mixture.eps_model(SCHED))
        elbo.elbo_consistency_form(SCHED, trajectory, mixture.eps_model(SCHED), variance_type="fixed_large")
        mixture.noised_log_prob(SCHED, trajectory[3], t)
        bound.prior_bpd(SCHED, _grid_images(*SHAPE))
    audit.assert_no_float64()


def test_generation_and_classifier_features_on_the_device():
    # meta has no random generator ("META device type not an accelerator"): seed=None, the
    # global RNG, stands in for the device generator that generate makes from a seed.
    model = build_model("unet", **TINY_UNET, num_classes=10).to(META)
    with Audit(reads=True) as audit:
        images = sampling.generate(model, SCHED, 3, labels=torch.arange(3), guidance_scale=2.0, num_inference_steps=2,
                                   seed=None, batch_size=2, device=META, progress=False)  # fmt: skip
    audit.assert_no_float64()
    assert images.device.type == "cpu" and images.shape == (3, 1, 28, 28)
    assert [e.function for e in audit.reads] == ["generate"] * 2  # one copy to the CPU per batch

    classifier = MNISTClassifier().to(META)
    with Audit(reads=True) as audit:
        features, probs = fid.classifier_outputs(torch.zeros(3, 1, 28, 28), classifier, batch_size=2)
    audit.assert_no_float64()
    assert features.dtype == probs.dtype == torch.float64 and features.device.type == "cpu"
    assert {e.function for e in audit.reads} == {"classifier_outputs"}


@pytest.mark.mnist
def test_bits_per_dim_on_the_device(monkeypatch):
    # meta has no random generator: the global RNG (generator None) stands in for the seeded one
    monkeypatch.setattr(evaluation, "_generator", lambda device, seed: None)
    model = build_model("unet", **TINY_UNET).to(META)
    with Audit(reads=True) as audit:
        bpd = evaluation.bits_per_dim(model, SCHED, n=3, batch_size=2, device=META, progress=False)
    audit.assert_no_float64()
    assert bpd["n"] == 3 and set(bpd) >= {"total", "prior", "decoder", "diffusion", "decoder_floor"}
    # per batch: the decoder's input check (3 reads) and the four sums copied to the CPU
    assert sorted({e.function for e in audit.reads}) == ["bits_per_dim", "discretized_gaussian_log_likelihood"]
    assert len(audit.reads) == 2 * (3 + 4)
