"""Set the slide type of every cell of the lessons, so each can be presented with RISE.

    python tools/slides.py                        # rewrite the lessons' slide metadata
    python tools/slides.py --check                # exit 1 if a lesson is not current
    python tools/slides.py notebooks/05_cam.ipynb # some notebooks only

jupyterlab-rise turns a notebook into a reveal.js deck from each cell's
``metadata.slideshow.slide_type``. Authors never set those by hand: this script
derives them from the lesson itself, by three rules, first match wins:

1. **slide** — a markdown cell with a ``# `` or ``## `` heading: the title and
   every numbered section start a new slide (left/right arrows). Slides break
   between cells, so a heading halfway down a cell starts the slide at that cell.
2. **subslide** — a markdown cell with a ``### `` heading, one that begins with
   ``**Exercise``, or one that introduces a picture: the nearest markdown cell
   above a code cell whose stored outputs hold an image or a widget (an
   explorer), with only code cells in between. Each picture then gets a
   (vertical) slide of its own, with its prose and the text after it.
3. **-** — every other cell continues the current (sub)slide.

Nothing is "skip": the setup cells must still run while presenting. The
notebook's ``metadata.rise`` gets :data:`RISE_SETTINGS`. Only metadata changes;
files are read and written with nbformat, as tools/run_notebooks.py does.
Re-run the script after editing or re-running a lesson (stored pictures count).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent

# Notebook-level RISE settings. Scroll: a slide with a figure can be taller than
# the screen. No autolaunch: opening a lesson shows the notebook, not the deck.
RISE_SETTINGS = {"autolaunch": False, "scroll": True}

PICTURE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "application/vnd.jupyter.widget-view+json")

_HEADING = re.compile(r"^(#{1,6})\s")
_FENCE = re.compile(r"^\s*(```|~~~)")


def lessons() -> list[Path]:
    """The lesson notebooks, ``notebooks/NN_*.ipynb`` (not the solutions)."""
    return sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def heading_levels(markdown: str) -> set[int]:
    """Levels of the ATX headings (``#`` = 1) in a markdown text, code blocks excluded."""
    levels, in_code = set(), False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
        elif not in_code and (m := _HEADING.match(line)):
            levels.add(len(m.group(1)))
    return levels


def shows_picture(cell) -> bool:
    """True for a code cell whose stored outputs hold an image or a widget view."""
    return cell.cell_type == "code" and any(
        mime in out.get("data", {}) for out in cell.get("outputs", []) for mime in PICTURE_MIMES)


def slide_types(cells) -> list[str]:
    """The slide type of each cell under the module's rules ("slide", "subslide" or "-")."""
    types = []
    for cell in cells:
        levels = heading_levels(cell.source) if cell.cell_type == "markdown" else set()
        if levels & {1, 2}:
            types.append("slide")
        elif 3 in levels or (cell.cell_type == "markdown" and cell.source.lstrip().startswith("**Exercise")):
            types.append("subslide")
        else:
            types.append("-")
    intro = None  # the markdown cell above the current run of code cells
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown":
            intro = i
        elif shows_picture(cell) and intro is not None and types[intro] == "-":
            types[intro] = "subslide"
    return types


def deck(types: list[str]) -> list[list[list[int]]]:
    """Group cell indices as RISE does: slides, each a list of subslides of cells.

    As in RISE, the first visible cell opens the first slide whatever its type;
    "skip" and "notes" cells stay on the (sub)slide they follow.
    """
    if not types:
        return []
    slides: list[list[list[int]]] = [[[]]]
    started = False
    for i, kind in enumerate(types):
        if started and kind == "slide":
            slides.append([[]])
        elif started and kind == "subslide":
            slides[-1].append([])
        elif kind not in ("skip", "notes"):
            started = True
        slides[-1][-1].append(i)
    return slides


def stored_types(nb) -> list[str | None]:
    """Each cell's stored ``slideshow.slide_type`` (None where there is none)."""
    return [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells]


def apply(nb) -> bool:
    """Set the slide types and RISE settings on ``nb`` in place; True if anything changed."""
    changed = nb.metadata.get("rise") != RISE_SETTINGS
    nb.metadata["rise"] = dict(RISE_SETTINGS)
    for cell, kind in zip(nb.cells, slide_types(nb.cells)):
        if cell.metadata.get("slideshow") != {"slide_type": kind}:
            cell.metadata["slideshow"] = {"slide_type": kind}
            changed = True
    return changed


def _read(path: Path):
    if not path.is_file():
        raise SystemExit(f"slides.py: no notebook at {path}")
    try:
        return nbformat.read(path, as_version=4)
    except (OSError, ValueError, nbformat.ValidationError) as exc:  # JSON, format or schema errors
        raise SystemExit(f"slides.py: cannot read {path} as a notebook: {exc}") from None


def _shown(path: Path) -> Path:
    full = path.resolve()
    return full.relative_to(REPO) if full.is_relative_to(REPO) else path


def _describe(path: Path, types: list[str]) -> str:
    slides = deck(types)
    subslides = sum(len(s) - 1 for s in slides)
    return f"{_shown(path)}: {len(slides)} slides, {subslides} subslide{'s' * (subslides != 1)}"


def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite the slide metadata, or with ``--check`` only report. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: the lessons)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not current")
    args = parser.parse_args(argv)

    stale = []
    for path in args.paths or lessons():
        nb = _read(path)
        if not apply(nb):
            print(f"{_describe(path, stored_types(nb))}, current")
        elif args.check:
            stale.append(_shown(path))
        else:
            nbformat.write(nb, path)
            print(f"{_describe(path, stored_types(nb))}, updated")
    if stale:
        print("Slide metadata not current (run python tools/slides.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
