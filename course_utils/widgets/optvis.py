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

import ipywidgets as w
import numpy as np
import torch
from PIL import Image

from .. import figures, optvis, plotting
from ..hooks import capture, model_guard
from .base import Cache, Explorer, cached_model
from .choices import block_layers, offered_models

__all__ = ["ActivationMaxExplorer"]

LOGITS = "class logits"
#: Image side per model: the course model sees 64², ImageNet models get 128² (CPU-friendly).
SIZES = {"course": 64}


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    return hasattr(get_ipython(), "kernel")  # None outside IPython


def _png(img: torch.Tensor, side: int = 256) -> bytes:
    """A quick PNG of one (3, H, W) image, enlarged with nearest neighbours (live frames)."""
    arr = (img.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).resize((side, side), Image.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


class ActivationMaxExplorer(Explorer):
    """Model × layer × channel (or class) × steps × learning rate × parameterization × regularizers;
    Stop ends a run early and keeps its image."""

    def __init__(self, models: list[str] | None = None, threaded: bool | None = None, cache_size: int = 32):
        self.models = offered_models() if models is None else models
        self.threaded = _in_kernel() if threaded is None else threaded
        self._cache = Cache(cache_size)  # settings -> finished optvis.Result
        self._widths = Cache()  # model -> {layer: channels, LOGITS: classes}
        self._job: tuple[threading.Thread, threading.Event, threading.Event] | None = None
        self._lock = threading.Lock()
        super().__init__()

    def make_controls(self) -> dict[str, w.Widget]:
        layers = self._layers(self.models[0])
        controls = {  # the unit slider is fitted to the layer by fit_to_input
            "model": w.Dropdown(options=self.models, value=self.models[0], description="Model"),
            "layer": w.Dropdown(options=layers, value=layers[-2], description="Layer"),
            "unit": w.IntSlider(value=0, min=0, max=0, description="Channel", continuous_update=False),
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
        return controls

    def callbacks(self) -> dict:
        return {"model": self._on_model, "layer": self._on_input, "progress": None, "stop": None}

    def _layers(self, model: str) -> list[str]:
        return [*block_layers(model), LOGITS]

    @staticmethod
    def _widths_of(model: str) -> dict[str, int]:
        """Channels of each layer (and classes), learned from one small forward pass."""
        m, layers = cached_model(model), block_layers(model)
        with model_guard(m.model), torch.no_grad(), capture(m.model, layers) as acts:
            m.model.eval()
            logits = m.model(torch.zeros(1, 3, 64, 64))
        return {**{n: acts[n].shape[1] for n in layers}, LOGITS: logits.shape[1]}

    def fit_to_input(self) -> None:
        """Fit the unit slider to the chosen layer (channels) or to the logits (classes)."""
        model, layer = self.controls["model"].value, self.controls["layer"].value
        unit = self.controls["unit"]
        unit.max = self._widths.fetch(model, lambda: self._widths_of(model))[layer] - 1  # ipywidgets clamps the value
        unit.description = "Class" if layer == LOGITS else "Channel"

    def _on_model(self, change) -> None:
        with self.quietly():
            self.controls["layer"].options = layers = self._layers(change["new"])
            self.controls["layer"].value = layers[-2]
            self.fit_to_input()

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
                self._cache.put(key, result)
            self._show(key, result, stopped)

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
            """The bar moves every step; the picture after the first step (a change is answered within
            one step, not eight), then every 8 steps."""
            if superseded.is_set():
                return
            progress.value = step
            if step == 1 or step % 8 == 0:
                self.view.value = _png(img[0])

        with self._lock:  # one optimization at a time: a superseded job ends at its next step
            if superseded.is_set():
                return None
            return optvis.visualize(
                m, objective, param=param, size=size, steps=steps, lr=lr,
                transforms=optvis.standard_transforms(size) if transforms else None,
                l2=0.01 if l2 else 0.0, blur_every=4 if blur else 0, seed=0, progress=False,
                stop=lambda: stop_flag.is_set() or superseded.is_set(), callback=live, callback_every=1)

    def _show(self, key, result: optvis.Result, stopped: bool) -> None:
        """Show a finished (or stopped) run with the settings ``key``."""
        model_name, layer, unit, param, steps = key[:5]
        self.controls["progress"].max = max(steps, 1)
        self.controls["progress"].value = result.steps
        self.message.value = f"stopped after {result.steps} of {steps} steps" if stopped else ""
        what = f"class {cached_model(model_name).categories[unit]!r}" if layer == LOGITS else f"{layer} ch. {unit}"
        self.view.value = plotting.figure_to_png(figures.activation_max_figure(
            result.as_numpy()[0], result.history[:, 0].numpy(), f"{model_name}: {what}", param,
            float(optvis.high_frequency_energy(result.images)[0]), logit=layer == LOGITS))
        self.renders += 1
