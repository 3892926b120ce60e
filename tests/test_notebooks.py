"""Notebook structure, and the lessons' ImageNet sections run with weights present.

nbval (run on notebooks/ by the same pytest command) re-executes every notebook
offline and compares outputs. These tests add what nbval cannot see.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
LESSONS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DASHBOARD = REPO / "notebooks" / "compare.ipynb"
ALL = LESSONS + [DASHBOARD] + sorted((REPO / "notebooks" / "solutions").glob("*.ipynb"))


def test_there_are_lessons():
    assert [p.name for p in LESSONS][:1] == ["00_start_here.ipynb"]


def test_the_dashboard_is_one_explorer_between_what_it_shows_and_what_to_see():
    """Voilà shows markdown and outputs only: the app is the explorer framed by its prose."""
    nb = nbformat.read(DASHBOARD, as_version=4)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "markdown"]
    assert "CompareExplorer(" in nb.cells[1].source and "What to see" in nb.cells[2].source
    assert nb.metadata.get("widgets"), "widget state not stored: viewers would show no dashboard"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_stored_outputs_are_complete_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for c in code:
        assert c.execution_count is not None, f"a cell was stored without being run:\n{c.source[:80]}"
        for out in c.outputs:
            assert out.output_type != "error", f"stored error output in:\n{c.source[:80]}"
            assert not (out.output_type == "stream" and out.name == "stderr"), f"stderr in:\n{c.source[:80]}"
        assert "NBVAL" not in c.source, "keep test markers out of the code students read: use a cell tag"
        if "Explorer(" in c.source:
            assert "nbval-ignore-output" in c.metadata.get("tags", []), "explorer cells need the nbval-ignore-output tag"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), "run top to bottom in one go (tools/run_notebooks.py)"



WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.mark.parametrize("path", LESSONS + [DASHBOARD], ids=lambda p: p.name)
def test_every_explorer_shows_its_picture_where_no_widget_code_runs(path):
    """Exported as a viewer that cannot run widgets renders it (GitHub's notebook view draws no
    widget; nbconvert's HTML with the widget type left out, so no JavaScript is needed), each
    explorer cell shows its stored picture as a plain image."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    nb = nbformat.read(path, as_version=4)
    pictures = [o.data["image/png"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if WIDGET in o.get("data", {}) and "Explorer" in o.data.get("text/plain", "")]
    explorers = sum(c.source.count("Explorer(") for c in nb.cells if c.cell_type == "code")
    assert len(pictures) == explorers > 0 or explorers == 0, f"{explorers} explorers, {len(pictures)} stored pictures"
    config = Config()
    config.NbConvertBase.display_data_priority = [
        m for m in HTMLExporter().default_config.NbConvertBase.display_data_priority if m != WIDGET]
    page, _ = HTMLExporter(config=config, exclude_input=True).from_notebook_node(nb)
    for png in pictures:
        assert f"data:image/png;base64,{png.strip()[:400]}" in page


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lessons_follow_the_skeleton(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in ["You will learn", "Prerequisites", "Run time", "## Setup", "Build it by hand",
                    "Explore", "Exercises", "## Summary", "Further reading", "Next:"]:
        assert heading in text, f"{path.name} has no '{heading}'"
    long = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "code" and len(c.source.splitlines()) > 15]
    assert not long, f"code cells over 15 lines: {long}"
    if any("Explorer(" in c.source for c in nb.cells):
        assert nb.metadata.get("widgets"), "widget state not stored: viewers would show no explorer"


def uses_imagenet(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return any('load_model("resnet' in c.source or 'load_model("vgg' in c.source for c in nb.cells)


@pytest.mark.parametrize("path", [p for p in LESSONS if uses_imagenet(p)], ids=lambda p: p.name)
def test_imagenet_sections_run_when_weights_are_present(path, imagenet_cache):
    """With (random) ImageNet weights in the cache, the lesson takes its ImageNet
    branches and runs without error — the path users with real weights take.
    (Stored outputs come from a run without weights; see tools/run_notebooks.py.)"""
    nb = nbformat.read(path, as_version=4)
    assert os.environ["TORCH_HOME"] == str(imagenet_cache)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    # Lessons say "... weights are not on this machine ..." when they skip an ImageNet part.
    assert "weights are not on this machine" not in printed


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_picture_is_followed_by_a_sentence_saying_what_to_see(path):
    cells = nbformat.read(path, as_version=4).cells
    for i, c in enumerate(cells):
        if c.cell_type == "code" and any("image/png" in o.get("data", {}) for o in c.outputs):
            after = cells[i + 1] if i + 1 < len(cells) else None
            assert after is not None and after.cell_type == "markdown" and after.source.strip(), (
                f"{path.name}: the picture drawn by\n{c.source[:80]}\nhas no text after it")
