"""tools/slides.py: the lessons' slide metadata follows its rules and is current.

No kernel, no browser: the rules on a notebook built here by hand, the RISE
grouping on small cases, and the stored metadata of every lesson. The browser
test (tests/browser/test_slides_browser.py) checks that RISE builds that deck.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

REPO = Path(__file__).resolve().parent.parent
LESSONS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _load_tool():
    spec = importlib.util.spec_from_file_location("slides", REPO / "tools" / "slides.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


slides = _load_tool()

PNG = new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
WIDGET = new_output("execute_result", execution_count=1, data={
    "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
    "text/plain": "VBox(...)"})
TEXT = new_output("stream", name="stdout", text="1\n")


def test_the_lessons_are_current(capsys):
    assert LESSONS, "no lessons found"
    code = slides.main(["--check", *map(str, LESSONS)])
    assert code == 0, capsys.readouterr().err


def test_the_rules_on_a_notebook_built_by_hand():
    cells = [
        new_markdown_cell("# 99 · A title\n\nWhy it matters."),              # 0 slide: the title
        new_markdown_cell("## Setup\n\nImports."),                            # 1 slide: a section
        new_code_cell("import torch"),                                        # 2
        new_markdown_cell("The data, drawn:"),                                # 3 subslide: introduces 5
        new_code_cell("x = 1"),                                               # 4
        new_code_cell("plot(x)", outputs=[PNG]),                              # 5 a picture
        new_markdown_cell("What to see in it."),                              # 6
        new_markdown_cell("Last words of section 1.\n\n## 2. The next one"),  # 7 slide: heading mid-cell
        new_code_cell("plot(x)", outputs=[PNG]),                              # 8 introduced by a slide: stays
        new_markdown_cell("```python\n# a comment, not a heading\n```"),      # 9 subslide: introduces 10
        new_code_cell("explorer = Explorer()\nexplorer", outputs=[WIDGET], metadata={"tags": ["nbval-ignore-output"]}),  # 10
        new_markdown_cell("### A subsection"),                                # 11 subslide
        new_markdown_cell("**Exercise 2.** Do it."),                          # 12 subslide
        new_code_cell("print(1)", outputs=[TEXT]),                            # 13 text only: no subslide
        new_markdown_cell("#hashtag, not a heading"),                         # 14
    ]
    expected = ["slide", "slide", "-", "subslide", "-", "-", "-", "slide", "-",
                "subslide", "-", "subslide", "subslide", "-", "-"]
    assert slides.slide_types(cells) == expected

    nb = new_notebook(cells=cells)
    assert slides.apply(nb) is True
    assert nb.metadata["rise"] == {"autolaunch": False, "scroll": True}
    assert [c.metadata["slideshow"]["slide_type"] for c in nb.cells] == expected
    assert slides.apply(nb) is False, "a second pass changed something"
    assert slides.deck(slides.stored_types(nb)) == [
        [[0]],
        [[1, 2], [3, 4, 5, 6]],
        [[7, 8], [9, 10], [11], [12, 13, 14]],
    ]


@pytest.mark.parametrize("types, expected", [
    ([], []),
    (["slide", "-", "slide"], [[[0, 1]], [[2]]]),              # a leading "slide" makes no empty slide
    (["-", "slide", "-"], [[[0]], [[1, 2]]]),                  # content before the first "slide" is slide 1
    (["skip", "slide", "subslide"], [[[0, 1], [2]]]),           # a skipped cell is not content
    (["slide", "fragment", "notes", "subslide"], [[[0, 1, 2], [3]]]),
])
def test_deck_groups_cells_as_rise_does(types, expected):
    assert slides.deck(types) == expected


def _stripped(path: Path, dest: Path) -> Path:
    """A copy of a lesson without any slide metadata, written as the repository writes notebooks."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("rise", None)
    for cell in nb.cells:
        cell.metadata.pop("slideshow", None)
    nbformat.write(nb, dest)
    return dest


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_writing_changes_only_metadata_and_twice_is_once(path, tmp_path, capsys):
    copy = _stripped(path, tmp_path / path.name)
    before = copy.read_bytes()

    assert slides.main(["--check", str(copy)]) == 1
    assert str(copy) in capsys.readouterr().err
    assert copy.read_bytes() == before, "--check wrote to the file"

    assert slides.main([str(copy)]) == 0
    once = copy.read_bytes()
    assert once == path.read_bytes(), f"the tool does not reproduce {path.name}: run python tools/slides.py"
    old, new = json.loads(before), json.loads(once)
    for cell in new["cells"]:
        del cell["metadata"]["slideshow"]
    del new["metadata"]["rise"]
    assert new == old, "something besides the slide metadata changed"

    assert slides.main([str(copy)]) == 0
    assert copy.read_bytes() == once, "a second run changed the file"
    assert "current" in capsys.readouterr().out


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_section_and_explorer_is_on_a_slide_of_its_own(path):
    nb = nbformat.read(path, as_version=4)
    types = slides.stored_types(nb)
    assert set(types) <= {"slide", "subslide", "-"}, f"cells hidden or typed oddly: {set(types)}"
    assert types[0] == "slide"

    section_cells = [i for i, c in enumerate(nb.cells)
                     if c.cell_type == "markdown" and re.search(r"^## ", c.source, re.MULTILINE)]
    assert section_cells, "no ## sections found"
    not_slides = [nb.cells[i].source.splitlines()[0] for i in section_cells if types[i] != "slide"]
    assert not not_slides, f"sections that do not start a slide: {not_slides}"
    deck = slides.deck(types)
    assert len(deck) >= len(section_cells) + 1  # the title, then the sections

    first_cell = {i: sub[0] for slide in deck for sub in slide for i in sub}
    explorers = [i for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and "Explorer(" in c.source]
    assert explorers, "no explorer cell found"
    for i in explorers:
        assert nb.cells[first_cell[i]].cell_type == "markdown", f"explorer cell {i} has no prose on its slide"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_section_headings_open_their_cell(path):
    """Slides break between cells: a `#`/`##` heading halfway down a cell would put the end
    of the previous section on the new section's slide. Start a new markdown cell instead."""
    nb = nbformat.read(path, as_version=4)
    buried = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"
              and re.search(r"^#{1,2} ", c.source, re.MULTILINE) and not re.match(r"#{1,2} ", c.source)]
    assert not buried, f"cells with a section heading below their first line: {buried}"


def test_a_missing_notebook_is_named(tmp_path):
    with pytest.raises(SystemExit, match="no notebook at .*missing.ipynb"):
        slides.main([str(tmp_path / "missing.ipynb")])
