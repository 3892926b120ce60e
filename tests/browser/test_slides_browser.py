"""Real-browser check that a lesson presents as a RISE slideshow in JupyterLab.

Opens a copy of one lesson, starts the slideshow with the notebook toolbar's
RISE button (command ``RISE:preview``, also View ▸ Render as Reveal Slideshow,
Alt-R), and checks that the reveal.js deck inside the preview holds the slides
and subslides tools/slides.py lays out, starts on the title, and that the right
arrow moves to the next slide. Skipped without Chromium / Playwright like
test_lab_browser.py (failed instead when COURSE_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import shutil

import nbformat
import pytest

from ..test_slides import slides
from .lab_server import LabServer
from .test_lab_browser import _notebook_dir, _open_notebook, _wait_until, browser, lab  # noqa: F401 (fixtures)

NOTEBOOK = "05_cam.ipynb"
DECK_TIMEOUT_S = 60

_JS_DECK = """() => {
  const slides = [...document.querySelectorAll('.reveal .slides > section')];
  return {slides: slides.length,
          subslides: document.querySelectorAll('.reveal .slides > section > section').length,
          present: slides.findIndex(s => s.classList.contains('present')),
          text: (document.querySelector('.reveal .slides > section.present') || {}).innerText || ''};
}"""


def _first_line(source: str) -> str:
    """The text a markdown cell's first line shows once rendered (no leading #'s)."""
    return source.splitlines()[0].lstrip("#").strip()


@pytest.mark.browser
def test_a_lesson_presents_as_a_slideshow(browser, lab: LabServer, tmp_path):  # noqa: F811
    source = _notebook_dir() / NOTEBOOK
    shutil.copy2(source, lab.root_dir / NOTEBOOK)  # the preview saves the notebook first
    nb = nbformat.read(source, as_version=4)
    deck = slides.deck(slides.stored_types(nb))

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    step = "open the notebook"
    try:
        _open_notebook(page, lab, NOTEBOOK)
        step = "start the slideshow from the toolbar"
        page.locator(".jp-NotebookPanel-toolbar jp-button[data-command='RISE:preview'][aria-disabled='false']").click()
        frame = page.wait_for_selector("iframe[src*='/rise/']").content_frame()
        frame.wait_for_selector(".reveal .slides > section.present", timeout=DECK_TIMEOUT_S * 1000)

        step = "count the slides"
        shown = frame.evaluate(_JS_DECK)
        assert (shown["slides"], shown["subslides"]) == (len(deck), sum(len(s) for s in deck)), (
            f"the deck has {shown['slides']} slides / {shown['subslides']} (sub)slide sections; tools/slides.py "
            f"lays out {len(deck)} / {sum(len(s) for s in deck)}")
        assert shown["present"] == 0, f"the slideshow starts on slide {shown['present']}, not the title"
        assert _first_line(nb.cells[0].source) in shown["text"]

        step = "move to the next slide"
        frame.locator("body").press("ArrowRight")
        _wait_until(lambda: frame.evaluate(_JS_DECK)["present"] == 1, 10, "slide 2 to be shown")
        heading = _first_line(nb.cells[deck[1][0][0]].source)
        assert heading in frame.evaluate(_JS_DECK)["text"], f"slide 2 does not show {heading!r}"
        print(f"\n[browser] {NOTEBOOK}: a deck of {len(deck)} slides; the right arrow moved to {heading!r}")
    except Exception as exc:  # AssertionError, Playwright errors and timeouts
        shot = tmp_path / "slides-failure.png"
        page.screenshot(path=str(shot))
        pytest.fail(f"{NOTEBOOK}: failed to {step}: {exc}\nscreenshot: {shot}\n"
                    f"--- end of JupyterLab log ---\n{lab.log_text(2000)}", pytrace=False)
    finally:
        context.close()
        lab.shutdown_kernels()
