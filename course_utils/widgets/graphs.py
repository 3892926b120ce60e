"""Lesson 08's explorer: the graph TensorBoard would show, as a table of operations."""

from __future__ import annotations

import tempfile

import ipywidgets as w
import torch
from matplotlib.figure import Figure

from .. import figures
from .. import tensorboard as tb
from .base import Cache, Explorer, cached_model
from .choices import offered_models

__all__ = ["GraphExplorer"]

_ROWS = 24  # operations listed per page


class GraphExplorer(Explorer):
    """Pick a model: see how many operations of each type its traced graph holds,
    and page through its computing operations in order, one type highlighted."""

    def __init__(self, models: list[str] | None = None):
        self.models = offered_models() if models is None else models
        self._graphs = Cache()  # model name -> its computing operations
        self._tmp = tempfile.TemporaryDirectory(prefix="course-graphs-")
        super().__init__()

    def make_controls(self) -> dict[str, w.Widget]:
        return {
            "model": w.Dropdown(options=self.models, value=self.models[0], description="Model"),
            "op": w.Dropdown(options=["all"], value="all", description="Highlight"),
            "page": w.IntSlider(value=0, min=0, max=0, description="Page", continuous_update=False),
        }

    def callbacks(self) -> dict:
        return {"model": self._on_input}

    def ops(self, name: str) -> list[tb.GraphNode]:
        """The computing operations of a model's graph (traced once, then cached)."""
        return self._graphs.fetch(name, lambda: self._trace(name))

    def _trace(self, name: str) -> list[tb.GraphNode]:
        m = cached_model(name)
        logdir = tb.write_graph(m.model, torch.zeros(1, 3, m.input_size, m.input_size), f"{self._tmp.name}/{name}")
        return tb.layer_ops(tb.read_graph(logdir))

    def fit_to_input(self) -> None:
        """Offer the chosen model's operation types and pages, starting from the first."""
        ops = self.ops(self.controls["model"].value)
        counts = tb.op_counts(ops)
        self.controls["op"].options = ["all", *sorted(counts, key=lambda op: (-counts[op], op))]
        self.controls["op"].value = "all"
        self.controls["page"].max = (len(ops) - 1) // _ROWS
        self.controls["page"].value = 0

    def draw(self) -> Figure:
        name, chosen, page = (self.controls[k].value for k in ("model", "op", "page"))
        ops = self.ops(name)
        return figures.graph_figure(ops, tb.op_counts(ops), name, chosen=chosen, page=page, rows=_ROWS)
