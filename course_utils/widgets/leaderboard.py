"""Lesson 11's explorer: the leaderboard of one model on one measure, and what the chosen method
draws on one scene.

Everything is computed before, by :func:`~course_utils.leaderboard.leaderboard` (one board per
model): a change of control only redraws. :func:`leaderboard_figure` is the picture, which a
lesson can call without the widgets.
"""

from __future__ import annotations

import ipywidgets as w
import numpy as np
from matplotlib.figure import Figure

from .. import plotting
from ..cam import normalize_maps, upsample
from ..figures import HIGHLIGHT, OTHERS
from ..leaderboard import METRICS, SANITY_THRESHOLD, Board, leaderboard, shown
from .base import Explorer

__all__ = ["LeaderboardExplorer", "leaderboard_figure"]


def scene_value(board: Board, method: str, metric: str, scene: int) -> float | None:
    """``metric`` on that scene for ``method``; None where it is measured on other inputs (the
    class sensitivity, on the two-object scenes)."""
    if metric == "class sensitivity":
        return None
    return float(board.per_scene[method][metric][scene])


def leaderboard_figure(board: Board, metric: str, method: str, scene: int = 0) -> Figure:
    """Bars: ``metric`` for every method of ``board``, the best on top (``method`` highlighted); beside
    them ``method``'s map on input ``scene`` over the image (the object's outline where known)."""
    if metric not in board.metrics:
        raise ValueError(f"no measure {metric!r} on {board.model}'s board; choose one of {board.metrics}")
    if method not in board.methods:
        raise ValueError(f"no method {method!r} on {board.model}'s board; choose one of {board.methods}")
    if not 0 <= scene < len(board.images):
        raise ValueError(f"scene {scene} is out of range: the board has {len(board.images)} inputs")
    about = METRICS[metric]
    order = board.ranking(metric)  # the best first
    values = [board.scores[m][metric] for m in order]
    fig = Figure(figsize=(10.5, 4.4))
    ax_bar, ax_map = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1.45, 1]))
    rows = np.arange(len(order))
    ax_bar.barh(rows, values, color=[HIGHLIGHT if m == method else OTHERS for m in order])
    ax_bar.set_yticks(rows, [f"{m}  (best)" if j == 0 else m for j, m in enumerate(order)], fontsize=8)
    ax_bar.get_yticklabels()[0].set_fontweight("bold")
    ax_bar.invert_yaxis()
    ax_bar.axvline(0, color="black", linewidth=0.8)
    lo, hi = min(min(values), 0.0), max(max(values), SANITY_THRESHOLD if metric == "sanity" else 0.0)
    span = max(hi - lo, 1e-3)  # the threshold stays in view; an all-zero measure still gets an axis
    for r, v in zip(rows, values):
        ax_bar.text(max(v, 0.0) + 0.01 * span, r, shown(v), va="center", fontsize=7)
    if metric == "sanity":
        ax_bar.axvline(SANITY_THRESHOLD, color="#b00", linestyle="--", linewidth=1)
    ax_bar.set_xlim(lo - 0.05 * span, hi + 0.18 * span)
    inputs = "scenes" if board.masks is not None else "photos"
    ax_bar.set_title(f"{board.model}: {metric} {about.arrow} ({'higher' if about.higher_is_better else 'lower'} "
                     f"is better)", fontsize=9)
    fails = f"; red line: fails at {SANITY_THRESHOLD} or more" if metric == "sanity" else ""
    ax_bar.set_xlabel(f"mean over the {'two-object maps' if metric == 'class sensitivity' else inputs}{fails}",
                      fontsize=8)
    ax_bar.tick_params(axis="x", labelsize=7)

    image = board.images[scene]
    raw = board.maps[method][scene]
    heat = normalize_maps(upsample(raw, image.shape[:2]) if tuple(raw.shape) != image.shape[:2] else raw)
    heat = (heat / heat.quantile(0.99).clamp(min=1e-12)).clamp(max=1)  # the top 1 % saturated, as in lesson 09
    value = scene_value(board, method, metric, scene)
    here = "measured on the two-object scenes" if value is None else f"{metric} here: {shown(value)}"
    plotting.overlay_heatmap(image, heat.numpy(), ax=ax_map, alpha=0.55,
                             title=f"{method}, {inputs[:-1]} {scene}: '{board.labels[scene]}'\n{here}")
    if board.masks is not None:
        ax_map.contour(board.masks[scene].astype(float), levels=[0.5], colors=["white"], linewidths=1)
    ax_map.title.set_fontsize(9)
    fig.tight_layout()
    return fig


class LeaderboardExplorer(Explorer):
    """Model × measure × method × scene over boards made by :func:`~course_utils.leaderboard.leaderboard`
    (``{name: board}``, or one board; default: the course model's board, computed here)."""

    columns = 2

    def __init__(self, boards: dict[str, Board] | Board | None = None):
        if boards is None:
            boards = leaderboard("course", progress=False)
        if isinstance(boards, Board):
            boards = {boards.model: boards}
        if not boards or not all(isinstance(b, Board) for b in boards.values()):
            raise ValueError("give the boards to show: {name: leaderboard(name)}, at least one")
        self.boards = dict(boards)
        super().__init__()

    @property
    def board(self) -> Board:
        return self.boards[self.controls["model"].value]

    def make_controls(self) -> dict[str, w.Widget]:
        first = next(iter(self.boards.values()))
        return {
            "model": w.Dropdown(options=list(self.boards), value=next(iter(self.boards)), description="Model"),
            "metric": w.Dropdown(options=first.metrics, value=first.metrics[0], description="Measure"),
            "method": w.Dropdown(options=first.methods, value=first.best(first.metrics[0]), description="Method"),
            "scene": w.IntSlider(value=0, min=0, max=len(first.images) - 1, description="Scene",
                                 continuous_update=False),
        }

    def callbacks(self) -> dict:
        return {**super().callbacks(), "model": self._on_input}

    def fit_to_input(self) -> None:
        """A new model: offer its measures and methods (keeping the chosen ones where it has them) and scenes."""
        board, c = self.board, self.controls
        for name, options in (("metric", board.metrics), ("method", board.methods)):
            keep = c[name].value
            c[name].options = options
            c[name].value = keep if keep in options else options[0]
        c["scene"].max = len(board.images) - 1  # the slider clips its value into range

    def draw(self) -> Figure:
        return leaderboard_figure(self.board, *(self.controls[k].value for k in ("metric", "method", "scene")))
