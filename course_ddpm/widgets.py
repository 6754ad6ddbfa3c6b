"""An interactive view of the forward process: one image noised by q(x_t | x_0).

:func:`forward_noising_widget` shows x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
(Ho et al. 2020, eq. 4) for a schedule picked in a drop-down and a step t picked on a
slider, with live read-outs of the signal left, the signal-to-noise ratio and how far
q(x_t | x_0) still is from the N(0, I) that sampling starts from.

The read-outs are computed by the plain function :func:`readouts` and the picture by
:func:`render_png`, so both can be tested without a browser. The slider holds the code
index t = 0..T-1 (paper t - 1, see :mod:`course_ddpm.schedules`).

Stable hooks for browser tests: every control has a fixed ``description`` and a CSS class
(see :data:`CSS`); each read-out value sits in ``<span class="course-ddpm-value">``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping

import ipywidgets as widgets
import torch
from PIL import Image as PILImage

from course_ddpm.data import to_pixels
from course_ddpm.forward import q_mean_variance, q_sample
from course_ddpm.gaussian import normal_kl
from course_ddpm.schedules import Schedule
from course_ddpm.validation import check_float, check_t

__all__ = ["CSS", "readouts", "render_png", "forward_noising_widget"]

#: CSS classes added to the widget's parts (stable names for browser tests).
CSS = {
    "box": "course-ddpm-forward-noising",
    "schedule": "course-ddpm-schedule",
    "t": "course-ddpm-t",
    "image": "course-ddpm-image",
    "caption": "course-ddpm-caption",
    "sqrt_alpha_bar": "course-ddpm-sqrt-alpha-bar",
    "snr": "course-ddpm-snr",
    "kl_per_pixel": "course-ddpm-kl",
}


def _one_image(x0: torch.Tensor) -> torch.Tensor:
    """Accept ``(C, H, W)`` or ``(1, C, H, W)`` on any device; return ``(1, C, H, W)`` on the CPU.

    The widgets compute in float64 and draw with PIL, both on the CPU (MPS has no float64).
    """
    check_float("x0", x0)
    if x0.ndim == 3:
        x0 = x0.unsqueeze(0)
    if x0.ndim != 4 or x0.shape[0] != 1:
        raise ValueError(f"x0 must be one image (C, H, W) or (1, C, H, W), got {tuple(x0.shape)}")
    return x0.cpu()


def _check_int_t(schedule: Schedule, t: int) -> int:
    if isinstance(t, bool) or not isinstance(t, int):
        raise TypeError(f"t must be an int code time index, got {type(t).__name__}")
    check_t(t, schedule.T, batch=1)  # the range
    return t


def readouts(schedule: Schedule, x0: torch.Tensor, t: int) -> dict[str, float]:
    """The numbers the widget shows for one image at code step t.

    - ``sqrt_alpha_bar``: sqrt(alpha_bar_t), the fraction of x_0 left in x_t (eq. 4).
    - ``snr``: alpha_bar_t / (1 - alpha_bar_t).
    - ``kl_per_pixel``: KL(q(x_t | x_0) || N(0, I)) averaged over the pixels of this x_0, in
      nats, with q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
      (:func:`course_ddpm.forward.q_mean_variance`) and the Gaussian KL of
      :func:`course_ddpm.gaussian.normal_kl`. At t = T-1 it is the prior-matching term
      L_T of Ho et al. eq. 5 divided by the number of pixels.
    - ``kl_total``: the same KL summed over pixels (nats).
    - ``t`` and ``paper_t`` (= t + 1).

    Args:
        schedule: the noise schedule.
        x0: ``(C, H, W)`` or ``(1, C, H, W)`` one image in [-1, 1].
        t: code time index in [0, T).
    Returns:
        dict of plain Python numbers.
    """
    x0 = _one_image(x0).double()
    t = _check_int_t(schedule, t)
    mean, var = q_mean_variance(schedule, x0, torch.tensor([t]))  # (1, C, H, W), (1, 1, 1, 1)
    zero = torch.zeros_like(mean)
    kl = normal_kl(mean, var.log().expand_as(mean), zero, zero)  # (1, C, H, W) nats per pixel
    alpha_bar = schedule.alpha_bar[t].item()
    return {
        "t": t,
        "paper_t": t + 1,
        "sqrt_alpha_bar": math.sqrt(alpha_bar),
        "snr": schedule.snr[t].item(),
        "kl_per_pixel": kl.mean().item(),
        "kl_total": kl.sum().item(),
    }


def render_png(schedule: Schedule, x0: torch.Tensor, t: int, eps: torch.Tensor, scale: int = 6) -> bytes:
    """PNG bytes of x_t = q_sample(schedule, x0, t, eps), shown in [0, 1] and enlarged ``scale`` times.

    Args:
        x0, eps: ``(C, H, W)`` or ``(1, C, H, W)`` with C in (1, 3), in [-1, 1] / N(0, I).
        t: code time index.
    """
    x0 = _one_image(x0)
    eps = _one_image(eps).to(x0.dtype)
    t = _check_int_t(schedule, t)
    x_t = q_sample(schedule, x0, torch.tensor([t]), eps)[0]  # (C, H, W)
    pixels = (to_pixels(x_t.float()) * 255).round().to(torch.uint8)  # (C, H, W) in 0..255
    if pixels.shape[0] == 1:
        image = PILImage.fromarray(pixels[0].numpy())  # (H, W) uint8 -> mode "L"
    else:
        image = PILImage.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())  # (H, W, 3) -> "RGB"
    image = image.resize((image.width * scale, image.height * scale), PILImage.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _readout_html(label: str, value: float) -> str:
    return f'{label} = <span class="course-ddpm-value">{value:.6g}</span>'


def forward_noising_widget(
    x0: torch.Tensor, schedules: Mapping[str, Schedule], t: int = 0, seed: int = 0, scale: int = 6
) -> widgets.VBox:
    """A drop-down over schedules, a slider over t, the noised image and its read-outs.

    The noise eps is drawn once (``seed``) and kept, so moving t changes only the mix
    sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps. Switching schedule sets the slider's
    range to the new [0, T-1] and clamps t into it.

    Args:
        x0: ``(C, H, W)`` or ``(1, C, H, W)`` one image in [-1, 1].
        schedules: label -> Schedule; the first is shown first.
        t: initial code time index.
        seed: seed of the noise eps.
        scale: image enlargement factor.
    Returns:
        an ``ipywidgets.VBox``; its controls are also reachable as attributes
        ``schedule_dropdown``, ``t_slider``, ``image`` and ``readout_html`` (a dict).
    """
    x0 = _one_image(x0)
    if not schedules:
        raise ValueError("schedules must hold at least one schedule")
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed), dtype=x0.dtype)  # (1, C, H, W)
    first = next(iter(schedules.values()))
    t = min(max(int(t), 0), first.T - 1)

    dropdown = widgets.Dropdown(options=list(schedules), value=next(iter(schedules)), description="schedule")
    slider = widgets.IntSlider(value=t, min=0, max=first.T - 1, step=1, description="t",
                               continuous_update=True, layout=widgets.Layout(width="420px"))
    image = widgets.Image(format="png", value=render_png(first, x0, t, eps, scale))
    labels = {
        "sqrt_alpha_bar": "√ᾱ<sub>t</sub>",
        "snr": "SNR(t)",
        "kl_per_pixel": "KL(q(x<sub>t</sub>|x<sub>0</sub>) ‖ N(0,I)) per pixel [nats]",
    }
    readout_html = {key: widgets.HTML() for key in labels}
    caption = widgets.HTML()

    dropdown.add_class(CSS["schedule"])
    slider.add_class(CSS["t"])
    image.add_class(CSS["image"])
    caption.add_class(CSS["caption"])
    for key, html in readout_html.items():
        html.add_class(CSS[key])

    def update(change=None) -> None:
        """Redraw the image and the read-outs for the current schedule and t."""
        schedule = schedules[dropdown.value]
        step = min(slider.value, schedule.T - 1)
        values = readouts(schedule, x0, step)
        image.value = render_png(schedule, x0, step, eps, scale)
        for key, html in readout_html.items():
            html.value = _readout_html(labels[key], values[key])
        caption.value = f"{dropdown.value}: code t = {step} (paper t = {values['paper_t']}) of T = {schedule.T}"

    def on_schedule_change(change=None) -> None:
        """Set the slider's range to the new schedule's [0, T-1], clamping t, then redraw."""
        schedule = schedules[dropdown.value]
        with slider.hold_trait_notifications():
            slider.value = min(slider.value, schedule.T - 1)
            slider.max = schedule.T - 1
        update()

    update()
    slider.observe(update, names="value")
    dropdown.observe(on_schedule_change, names="value")

    readout_box = widgets.VBox([caption, *readout_html.values()])
    box = widgets.VBox([widgets.HBox([dropdown, slider]), widgets.HBox([image, readout_box])])
    box.add_class(CSS["box"])
    box.schedule_dropdown = dropdown
    box.t_slider = slider
    box.image = image
    box.readout_html = readout_html
    return box
