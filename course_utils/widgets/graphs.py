"""Lesson 08's explorer: the graph TensorBoard would show, as a table of operations."""

from __future__ import annotations

import html
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


def operations_table(ops, chosen: str = "all", page: int = 0, rows: int = _ROWS) -> str:
    """Page ``page`` of ``ops`` (each with ``op``, ``layer``, ``shape``) as an HTML table in the order
    traced: operations of type ``chosen`` in colour, the others dimmed (all plain for ``"all"``)."""
    shown = ops[page * rows : (page + 1) * rows]
    lines = []
    for i, node in enumerate(shown, start=page * rows):
        colour = "inherit" if chosen == "all" else figures.HIGHLIGHT if node.op == chosen else figures.OTHERS
        cells = (i, node.layer or "(functional)", node.op.removeprefix("aten::"), node.shape)
        lines.append(f"<tr style='color:{colour}'>" + "".join(
            f"<td style='padding:0 1em 0 0;text-align:left'>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    caption = (f"operations {page * rows}–{page * rows + len(shown) - 1} of {len(ops)}, in the order traced"
               if shown else f"no operations on page {page}")
    return ("<table style='font-family:monospace;font-size:12px;border-collapse:collapse'>"
            f"<caption style='text-align:left;font-weight:bold'>{caption}</caption>"
            "<tr><th style='text-align:left'>#</th><th style='text-align:left'>layer</th>"
            "<th style='text-align:left'>operation</th><th style='text-align:left'>output shape</th></tr>"
            + "".join(lines) + "</table>")


class GraphExplorer(Explorer):
    """Pick a model: see how many operations of each type its traced graph holds (the picture),
    and page through its computing operations in order, one type highlighted (a table under it:
    text is drawn by the browser, and a new page needs no new picture)."""

    def __init__(self, models: list[str] | None = None):
        self.models = offered_models() if models is None else models
        self._graphs = Cache()  # model name -> its computing operations
        self._tmp = tempfile.TemporaryDirectory(prefix="course-graphs-")
        self.table = w.HTML()
        super().__init__()
        self.widget.children = (*self.widget.children, self.table)

    def make_controls(self) -> dict[str, w.Widget]:
        return {
            "model": w.Dropdown(options=self.models, value=self.models[0], description="Model"),
            "op": w.Dropdown(options=["all"], value="all", description="Highlight"),
            "page": w.IntSlider(value=0, min=0, max=0, description="Page", continuous_update=False),
        }

    def callbacks(self) -> dict:
        return {"model": self._on_input, "page": self._show_table}

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

    def refresh(self) -> None:
        super().refresh()
        with self.reporting():  # a failure is the message, as for the picture
            self._show_table()

    def _show_table(self, change=None) -> None:
        name, chosen, page = (self.controls[k].value for k in ("model", "op", "page"))
        self.table.value = operations_table(self.ops(name), chosen, page)

    def draw(self) -> Figure:
        name, chosen = self.controls["model"].value, self.controls["op"].value
        ops = self.ops(name)
        return figures.graph_figure(tb.op_counts(ops), name, len(ops), chosen=chosen)
