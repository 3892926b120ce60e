"""Lesson 08's explorer: the graph TensorBoard would show, as a table of operations."""

from __future__ import annotations

import tempfile

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import tensorboard as tb
from ..models import available_models
from .base import Explorer, cached_model

__all__ = ["GraphExplorer"]

_ROWS = 24  # operations listed per page


class GraphExplorer(Explorer):
    """Pick a model: see how many operations of each type its traced graph holds,
    and page through its computing operations in order, one type highlighted."""

    def __init__(self, models: list[str] | None = None):
        if models is None:
            models = [name for name, here in available_models().items() if here]
        self._graphs: dict[str, list[tb.GraphNode]] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="course-graphs-")
        controls = {
            "model": w.Dropdown(options=models, value=models[0], description="Model"),
            "op": w.Dropdown(options=["all"], value="all", description="Highlight"),
            "page": w.IntSlider(value=0, min=0, max=0, description="Page", continuous_update=False),
        }
        self._configure(controls)
        super().__init__(controls, columns=3, redraw_on=["op", "page"])
        self.on_change("model", self._on_model)

    def ops(self, name: str) -> list[tb.GraphNode]:
        """The computing operations of a model's graph (traced once, then cached)."""
        if name not in self._graphs:
            m = cached_model(name)
            logdir = tb.write_graph(m.model, torch.zeros(1, 3, m.input_size, m.input_size), f"{self._tmp.name}/{name}")
            self._graphs[name] = tb.layer_ops(tb.read_graph(logdir))
        return self._graphs[name]

    def _configure(self, controls) -> None:
        """Offer the chosen model's operation types and pages, starting from the first."""
        ops = self.ops(controls["model"].value)
        counts = tb.op_counts(ops)
        controls["op"].options = ["all", *sorted(counts, key=lambda op: (-counts[op], op))]
        controls["op"].value = "all"
        controls["page"].max = (len(ops) - 1) // _ROWS
        controls["page"].value = 0

    def _on_model(self, change) -> None:
        with self.quietly():
            self._configure(self.controls)

    def draw(self) -> Figure:
        name, chosen, page = (self.controls[k].value for k in ("model", "op", "page"))
        ops = self.ops(name)
        counts = tb.op_counts(ops).most_common(12)[::-1]
        fig = Figure(figsize=(10, 5))
        ax_bar, ax_list = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1, 1.6]))
        colours = ["#d62728" if op == chosen else "#1f77b4" for op, _ in counts]
        ax_bar.barh([op.removeprefix("aten::") for op, _ in counts], [c for _, c in counts], color=colours)
        ax_bar.set_title(f"{name}: {len(ops)} operations", fontsize=10)
        ax_bar.tick_params(labelsize=8)
        ax_list.axis("off")
        rows = ops[page * _ROWS : (page + 1) * _ROWS]
        for i, node in enumerate(rows):
            hit = chosen in ("all", node.op)
            ax_list.text(0, 1 - (i + 0.5) / _ROWS, f"{page * _ROWS + i:3d}  {node.layer or '(functional)':24.24s} "
                         f"{node.op.removeprefix('aten::'):20.20s} {node.shape}", family="monospace", fontsize=7.5,
                         color="#d62728" if hit and chosen != "all" else ("black" if hit else "#aaaaaa"),
                         transform=ax_list.transAxes, va="center")
        ax_list.set_title(f"operations {page * _ROWS}–{page * _ROWS + len(rows) - 1}, in the order traced",
                          fontsize=10)
        fig.tight_layout()
        return fig
