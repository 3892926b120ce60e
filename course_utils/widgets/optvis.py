"""Lesson 03's explorer: pick a unit (a channel of a layer, or a class) and watch an image
being optimized to excite it.

The optimization takes seconds, so in a notebook it runs in a background thread:
the picture updates live, the progress bar moves, and the Stop button (or any new
setting) ends the run at the next step. Finished results are cached, so going
back to earlier settings is instant. Outside a kernel (tests) it runs at once.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

import ipywidgets as w
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from .. import optvis, plotting
from ..cam import BLOCK_LAYERS
from ..hooks import capture, model_guard
from .base import Explorer, cached_model, offered_models

__all__ = ["ActivationMaxExplorer"]

LOGITS = "class logits"
#: Image side per model: the course model sees 64², ImageNet models get 128² (CPU-friendly).
SIZES = {"course": 64}


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _png(img: torch.Tensor, side: int = 256) -> bytes:
    """A quick PNG of one (3, H, W) image, enlarged with nearest neighbours (live frames)."""
    arr = (img.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).resize((side, side), Image.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


class ActivationMaxExplorer(Explorer):
    """Model × layer × channel (or class) × steps × learning rate × parameterization ×
    regularizers. Sliders act on release; Stop ends a run early and keeps its image."""

    def __init__(self, models: list[str] | None = None, threaded: bool | None = None, cache_size: int = 32):
        models = offered_models() if models is None else models
        self.threaded = _in_kernel() if threaded is None else threaded
        self.cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()
        self._widths: dict[str, dict[str, int]] = {}
        self._job: tuple[threading.Thread, threading.Event, threading.Event] | None = None
        self._lock = threading.Lock()
        layers = self._layers(models[0])
        controls = {
            "model": w.Dropdown(options=models, value=models[0], description="Model"),
            "layer": w.Dropdown(options=layers, value=layers[-2], description="Layer"),
            "unit": w.IntSlider(value=0, min=0, max=self._width(models[0], layers[-2]) - 1,
                                description="Channel", continuous_update=False),
            "param": w.Dropdown(options=["fourier", "pixels"], value="fourier", description="Image"),
            "steps": w.IntSlider(value=96, min=8, max=512, step=8, description="Steps", continuous_update=False),
            "lr": w.FloatLogSlider(value=0.05, base=10, min=-3, max=0, step=0.25, description="Step size",
                                   continuous_update=False),
            "transforms": w.Checkbox(value=True, description="jitter, scale, rotate"),
            "l2": w.Checkbox(value=False, description="L2 decay (pixels)"),
            "blur": w.Checkbox(value=False, description="blur every 4 steps (pixels)"),
            "progress": w.IntProgress(value=0, min=0, max=96, description="Progress"),
            "stop": w.Button(description="Stop", icon="stop", button_style="warning"),
        }
        controls["stop"].on_click(lambda _: self.stop())
        redraw = ["unit", "param", "steps", "lr", "transforms", "l2", "blur"]
        super().__init__(controls, columns=3, redraw_on=redraw)
        self.on_change("model", self._on_model)
        self.on_change("layer", self._on_layer)

    # --- what the controls offer -----------------------------------------------------------

    def _layers(self, model: str) -> list[str]:
        return [*BLOCK_LAYERS[model], LOGITS]

    def _width(self, model: str, layer: str) -> int:
        """Channels of a layer (or classes), learned from one small forward pass per model."""
        if model not in self._widths:
            m = cached_model(model)
            layers = BLOCK_LAYERS[model]
            with model_guard(m.model), torch.no_grad(), capture(m.model, layers) as acts:
                m.model.eval()
                logits = m.model(torch.zeros(1, 3, 64, 64))
            self._widths[model] = {**{n: acts[n].shape[1] for n in layers}, LOGITS: logits.shape[1]}
        return self._widths[model][layer]

    def _fit_unit(self) -> None:
        model, layer = self.controls["model"].value, self.controls["layer"].value
        unit = self.controls["unit"]
        unit.max = self._width(model, layer) - 1  # ipywidgets clamps the value
        unit.description = "Class" if layer == LOGITS else "Channel"

    def _on_model(self, change) -> None:
        with self.quietly():
            layers = self._layers(change["new"])
            self.controls["layer"].options = layers
            self.controls["layer"].value = layers[-2]
            self._fit_unit()

    def _on_layer(self, change) -> None:
        with self.quietly():
            self._fit_unit()

    # --- running ---------------------------------------------------------------------------------

    def settings(self) -> tuple:
        c = self.controls
        return (c["model"].value, c["layer"].value, c["unit"].value, c["param"].value, c["steps"].value,
                round(c["lr"].value, 6), c["transforms"].value, c["l2"].value, c["blur"].value)

    def stop(self) -> None:
        """End the running optimization at its next step (its image so far is shown)."""
        if self._job is not None:
            self._job[1].set()

    def refresh(self) -> None:
        if self._job is not None:
            self._job[2].set()  # a new setting supersedes the running job: it ends at its next step
            self._job = None
        key = self.settings()
        if key in self._cache:
            with self.reporting():
                self._show(key, self._cache[key], stopped=False)
            return
        stop_flag, superseded = threading.Event(), threading.Event()
        # The first picture is made before the cell returns, so that a saved notebook holds it.
        if self.threaded and self.renders > 0:
            thread = threading.Thread(target=self._run, args=(key, stop_flag, superseded), daemon=True)
            self._job = (thread, stop_flag, superseded)
            thread.start()
        else:
            self._job = (None, stop_flag, superseded)
            self._run(key, stop_flag, superseded)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running optimization ends (for scripts and tests)."""
        if self._job is not None and self._job[0] is not None:
            self._job[0].join(timeout)

    def _run(self, key, stop_flag: threading.Event, superseded: threading.Event) -> None:
        with self.reporting():  # also in a background thread: a failure is the message, not a traceback
            result = self._optimize(key, stop_flag, superseded)
            if result is None or superseded.is_set():
                return
            stopped = result.steps < key[4]
            if not stopped:
                self._keep(key, result)
            self._show(key, result, stopped)

    def _keep(self, key, result: optvis.Result) -> None:
        self._cache[key] = result
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _optimize(self, key, stop_flag: threading.Event, superseded: threading.Event) -> optvis.Result | None:
        """Run the optimization for ``key`` (``None`` if superseded before it started)."""
        model_name, layer, unit, param_kind, steps, lr, transforms, l2, blur = key
        m = cached_model(model_name)
        size = SIZES.get(model_name, 128)
        objective = optvis.class_logit(unit) if layer == LOGITS else optvis.channel(layer, unit)
        param = optvis.fourier(1, size, seed=0) if param_kind == "fourier" else optvis.pixels(1, size, seed=0)
        progress = self.controls["progress"]
        progress.max, progress.value = steps, 0

        def live(step, img):
            if not superseded.is_set():
                progress.value = step
                self.view.value = _png(img[0])

        with self._lock:  # one optimization at a time: a superseded job ends at its next step
            if superseded.is_set():
                return None
            return optvis.visualize(
                m, objective, param=param, size=size, steps=steps, lr=lr,
                transforms=optvis.standard_transforms(size) if transforms else None,
                l2=0.01 if l2 else 0.0, blur_every=4 if blur else 0, seed=0, progress=False,
                stop=lambda: stop_flag.is_set() or superseded.is_set(), callback=live, callback_every=8)

    def _show(self, key, result: optvis.Result, stopped: bool) -> None:
        self.controls["progress"].max = max(key[4], 1)
        self.controls["progress"].value = result.steps
        self.message.value = f"stopped after {result.steps} of {key[4]} steps" if stopped else ""
        self.view.value = plotting.figure_to_png(self.draw_result(key, result))
        self.renders += 1

    def draw_result(self, key, result: optvis.Result) -> Figure:
        model_name, layer, unit = key[:3]
        what = f"class {cached_model(model_name).categories[unit]!r}" if layer == LOGITS else f"{layer} ch. {unit}"
        fig = Figure(figsize=(7.6, 3.3))
        ax_img, ax_curve = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1, 1.2]))
        hf = optvis.high_frequency_energy(result.images)[0]
        plotting.show_image(result.as_numpy()[0], ax=ax_img,
                            title=f"{model_name}: {what}\n{key[3]}, high-frequency energy {hf:.3f}")
        ax_curve.plot(np.arange(1, result.steps + 1), result.history[:, 0].numpy(), color="#c44e00")
        ax_curve.set_xlabel("step", fontsize=8)
        ax_curve.set_ylabel("logit" if layer == LOGITS else "mean activation", fontsize=8)
        ax_curve.tick_params(labelsize=7)
        ax_curve.set_title(f"objective: {result.history[0, 0]:.2f} → {result.history[-1, 0]:.2f}"
                           if result.steps else "no step ran", fontsize=9)
        fig.tight_layout()
        return fig

    def draw(self) -> Figure:  # the base class's entry point: one synchronous run
        key = self.settings()
        if key not in self._cache:
            self._keep(key, self._optimize(key, threading.Event(), threading.Event()))
        return self.draw_result(key, self._cache[key])
