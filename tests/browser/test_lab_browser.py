"""Real-browser check of the course notebooks in JupyterLab.

For every lesson in NOTEBOOKS the test starts a throw-away JupyterLab server
(see lab_server.py), opens a *copy* of the notebook in Chromium (driven by
Playwright), runs all cells through the "Run" menu, and then checks that

* every code cell ran, and no cell shows an error / traceback,
* all widgets rendered ("Error displaying widget" / "Loading widget..." absent),
* the explorer widget (class ``course-explorer``) reacts: choosing another
  entry in its first dropdown that offers one (usually "Image") changes the
  picture in ``course-explorer-view``, and so does a new selection in a
  multiple-choice list (the dashboard's "Methods");
* where the explorer has a model list, it moves to the real ImageNet model,
  EfficientNet-Lite0, and a photo, and draws them without an error message.

Environment variables:
  COURSE_CHROMIUM              Chromium executable (default /usr/bin/chromium)
  COURSE_REQUIRE_BROWSER=1     fail instead of skip when Chromium/Playwright is missing
  COURSE_BROWSER_NOTEBOOK_DIR  take the notebooks from this folder instead of notebooks/
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from .lab_server import LabServer, start_lab

# Explorers that work on scenes only (ground-truth masks, lesson 10's models): no model list to move.
SCENES_ONLY = {"09_evaluating_explanations.ipynb", "10_find_the_shortcut.ipynb", "11_going_further.ipynb"}
PHOTO_MODEL, PHOTO = "efficientnet_lite0", "photo: cat"

# Lessons to check; add later lessons here.
NOTEBOOKS = ["00_start_here.ipynb", "01_feature_maps.ipynb", "02_filter_weights.ipynb",
             "03_activation_maximization.ipynb", "04_saliency.ipynb",
             "05_cam.ipynb", "06_grad_cam.ipynb", "07_guided_grad_cam.ipynb", "08_tensorboard.ipynb",
             "09_evaluating_explanations.ipynb", "10_find_the_shortcut.ipynb", "11_going_further.ipynb",
             "compare.ipynb"]  # the dashboard: its "Methods" list is moved too

REPO_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]

KERNEL_READY_TIMEOUT_S = 60
RUN_ALL_TIMEOUT_S = 240  # lesson 11 runs ~80 s headless; a browser and a server share the 2 cores
WIDGETS_TIMEOUT_S = 30
IMAGE_CHANGE_TIMEOUT_S = 30

STDERR_MIME = "application/vnd.jupyter.stderr"


def _missing(message: str):
    """Skip, or fail when the environment demands the browser tests (CI)."""
    if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _notebook_dir() -> Path:
    override = os.environ.get("COURSE_BROWSER_NOTEBOOK_DIR")
    return Path(override).expanduser().resolve() if override else REPO_NOTEBOOKS


# --------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def browser():
    chromium = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
    hint = "install Debian's chromium (apt-get install chromium) to run the browser tests"
    if not Path(chromium).is_file():
        _missing(f"Chromium not found at {chromium}; {hint}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _missing(f"Playwright is not importable ({exc}); pip install playwright to run the browser tests")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> LabServer:
    server = start_lab(tmp_path_factory.mktemp("jupyterlab"))
    try:
        yield server
    finally:
        leftovers = server.stop()
        if leftovers:
            print(f"\n[browser tests] had to kill: {', '.join(leftovers)}")


# --------------------------------------------------------------------------
# page helpers (JavaScript runs in the page; the notebook panel is the visible one)

_JS_CODE_CELLS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return null;
  return [...panel.querySelectorAll('.jp-Notebook .jp-Cell.jp-CodeCell')].map(c => {
    const prompt = c.querySelector('.jp-InputArea-prompt');
    const src = c.querySelector('.jp-InputArea-editor .cm-content');
    return {prompt: prompt ? prompt.textContent.trim() : '',
            source: src ? src.textContent : ''};
  });
}"""

# JupyterLab renders an exception (output_type "error") with the stderr mime
# renderer: the output node gets data-mime-type="application/vnd.jupyter.stderr",
# exactly like text written to stderr.  So errors are stderr outputs whose text
# holds a traceback / exception name; plain warnings are left alone.
_JS_ERROR_OUTPUTS = """(mime) => {
  const sel = `.jp-OutputArea-output[data-mime-type="${mime}"], .jp-OutputArea-output [data-mime-type="${mime}"]`;
  return [...document.querySelectorAll(sel)]
    .map(e => e.innerText)
    .filter(t => /Traceback|Error/.test(t));
}"""

_JS_KERNEL_READY = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return false;
  const name = panel.querySelector('.jp-Toolbar-kernelName');
  const status = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  // Before the session exists the indicator already says "idle" while the
  // kernel name reads "No Kernel"; require a real kernel *and* idle.
  return !!(name && status && name.textContent.trim() !== ''
            && name.textContent.trim() !== 'No Kernel'
            && status.dataset.status === 'idle');
}"""

_PROMPT_NUMBER = re.compile(r"^\[\s*(\d+)\s*\]:?$")


def _code_cells(page) -> list[dict]:
    return page.evaluate(_JS_CODE_CELLS) or []


def _describe(cells: list[dict]) -> str:
    return ", ".join(c["prompt"] or "''" for c in cells)


def _menu(page, top: str, item: str) -> None:
    """Click a main-menu entry, e.g. _menu(page, "Run", "Run All Cells")."""
    page.locator(".lm-MenuBar").get_by_role("menuitem", name=top, exact=True).click()
    entry = page.locator(".lm-Menu").get_by_role("menuitem", name=item, exact=True)
    entry.wait_for(state="visible")
    # Commands are disabled while the notebook is not yet the current widget.
    deadline = time.monotonic() + 10
    while "lm-mod-disabled" in (entry.get_attribute("class") or ""):
        if time.monotonic() > deadline:
            raise AssertionError(f"menu entry {top} → {item} stays disabled")
        page.keyboard.press("Escape")
        page.wait_for_timeout(250)
        page.locator(".lm-MenuBar").get_by_role("menuitem", name=top, exact=True).click()
        entry.wait_for(state="visible")
    entry.click()


def _wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


# --------------------------------------------------------------------------
# the steps


def _open_notebook(page, lab: LabServer, name: str) -> None:
    # "?reset" starts from an empty workspace: only this notebook is open, not the
    # tabs of earlier lessons (whose kernels are already shut down).
    page.goto(lab.url(f"lab/tree/{name}?reset"), wait_until="domcontentloaded")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=KERNEL_READY_TIMEOUT_S * 1000)
    page.wait_for_function(_JS_KERNEL_READY, timeout=KERNEL_READY_TIMEOUT_S * 1000, polling=250)


def _run_all(page) -> list[dict]:
    # Start from a clean slate, so execution counts saved in the file cannot
    # be mistaken for this run's.
    _menu(page, "Edit", "Clear Outputs of All Cells")
    _wait_until(
        lambda: all(not _PROMPT_NUMBER.match(c["prompt"]) for c in _code_cells(page)),
        10, "outputs to be cleared")

    _menu(page, "Run", "Run All Cells")

    def started():
        cells = _code_cells(page)
        return any(c["prompt"].startswith("[*]") or _PROMPT_NUMBER.match(c["prompt"]) for c in cells)

    _wait_until(started, 30, "the first cell to start running")

    def finished():
        cells = _code_cells(page)
        if not cells or any(c["prompt"].startswith("[*]") for c in cells):
            return None
        numbered = all(_PROMPT_NUMBER.match(c["prompt"]) for c in cells if c["source"].strip())
        # After an exception JupyterLab stops the run; the remaining cells stay
        # unnumbered, and the error itself is what gets reported.
        if numbered or page.evaluate(_JS_ERROR_OUTPUTS, STDERR_MIME):
            return cells
        return None

    try:
        return _wait_until(finished, RUN_ALL_TIMEOUT_S, "all cells to finish", interval_s=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; prompts: {_describe(_code_cells(page))}") from None


def _check_outputs(page, cells: list[dict]) -> None:
    errors = page.evaluate(_JS_ERROR_OUTPUTS, STDERR_MIME)
    if errors:
        raise AssertionError("cell error output:\n" + "\n----\n".join(e[-2000:] for e in errors))

    not_run = [i for i, c in enumerate(cells) if c["source"].strip() and not _PROMPT_NUMBER.match(c["prompt"])]
    if not_run:
        raise AssertionError(f"code cells {not_run} did not run; prompts: {_describe(cells)}")

    # Widgets render asynchronously after the kernel has answered.
    def widgets_settled():
        text = page.inner_text("body")
        return "Loading widget..." not in text or "Error displaying widget" in text

    try:
        _wait_until(widgets_settled, WIDGETS_TIMEOUT_S, "widgets to finish loading")
    except AssertionError:
        pass  # reported by the assertion below
    text = page.inner_text("body")
    for bad in ("Error displaying widget", "Loading widget..."):
        if bad in text:
            raise AssertionError(f"page still shows {bad!r} after the run")


def _dropdown(explorer, description: str):
    """The explorer's dropdown labelled ``description`` ("Model", "Image"), or None."""
    boxes = explorer.locator(".widget-dropdown")
    for i in range(boxes.count()):
        if (boxes.nth(i).locator("label").first.text_content() or "").strip() == description:
            return boxes.nth(i).locator("select").first
    return None


def _check_photo_model(explorer, img) -> None:
    """Move the explorer to EfficientNet-Lite0 and (where it takes an image) a photo: each choice
    draws a new picture, with no error message."""
    for description, label in [("Model", PHOTO_MODEL), ("Image", PHOTO)]:
        select = _dropdown(explorer, description)
        if select is None and description == "Image":
            continue  # filters, graphs: the model alone
        if select is None:
            raise AssertionError(f"the explorer has no {description!r} dropdown")
        labels = select.evaluate("e => [...e.options].map(o => o.textContent)")
        if description == "Image" and "scene 0" not in labels:
            continue  # filters, graphs, activation maximization ("Image" is its parameterization): no picker
        if label not in labels:
            raise AssertionError(f"the {description!r} dropdown does not offer {label!r}: {labels}")
        if select.evaluate("e => e.options[e.selectedIndex].textContent") != label:
            change_picture(img, lambda: select.select_option(label=label), f"choosing {label!r}")
        message = explorer.locator(".widget-html").first.inner_text().strip()
        if message:
            raise AssertionError(f"after choosing {label!r} the explorer says: {message}")


def _check_explorer(page, photo_model: bool = True) -> None:
    explorer = page.locator(".course-explorer")
    if explorer.count() == 0:
        raise AssertionError("no widget with CSS class 'course-explorer' on the page")
    explorer = explorer.first
    explorer.scroll_into_view_if_needed()

    # The control to move: the explorer's first dropdown that offers a choice
    # ("Image" in most lessons; a model list may hold a single entry offline).
    selects = explorer.locator("select")
    choosable = [i for i in range(selects.count()) if selects.nth(i).evaluate("e => e.options.length") >= 2]
    if not choosable:
        raise AssertionError("the explorer has no dropdown with two or more options to choose from")
    select = selects.nth(choosable[0])
    label = select.evaluate("e => (e.closest('.widget-dropdown')?.querySelector('label')?.textContent || '?')")

    img = explorer.locator(".course-explorer-view img, img.course-explorer-view").first
    img.wait_for(state="visible", timeout=WIDGETS_TIMEOUT_S * 1000)

    def displayed() -> bool:
        img.scroll_into_view_if_needed()
        loaded = img.evaluate("e => e.complete && e.naturalWidth > 0 && e.naturalHeight > 0")
        box = img.bounding_box()
        return bool(loaded and box and box["width"] > 0 and box["height"] > 0)

    _wait_until(displayed, WIDGETS_TIMEOUT_S, "the explorer image to be displayed with non-zero size")

    old_src = img.get_attribute("src") or ""
    if not old_src.startswith(("blob:", "data:")):
        raise AssertionError(f"unexpected img src {old_src[:80]!r} (expected a blob: or data: URL)")

    n_options = select.evaluate("e => e.options.length")
    current = select.evaluate("e => e.selectedIndex")
    select.select_option(index=(current + 1) % n_options)

    try:
        _wait_until(lambda: (img.get_attribute("src") or "") != old_src,
                    IMAGE_CHANGE_TIMEOUT_S, "the explorer image to change")
    except AssertionError:
        raise AssertionError(
            f"choosing option {(current + 1) % n_options} in the {label!r} dropdown did not change "
            f"the image within {IMAGE_CHANGE_TIMEOUT_S} s (src still {old_src[:60]!r})") from None
    _wait_until(displayed, WIDGETS_TIMEOUT_S, "the new explorer image to be displayed with non-zero size")

    lists = explorer.locator("select[multiple]")
    if lists.count():
        labels = lists.first.evaluate("e => [...e.options].map(o => o.textContent)")
        change_picture(img, lambda: lists.first.select_option(label=labels[-2:]), f"selecting {labels[-2:]}")
    if photo_model:
        _check_photo_model(explorer, img)


def change_picture(img, action, what: str) -> None:
    """Do ``action`` (a control change) and wait until the picture in ``img`` is a new one."""
    old_src = img.get_attribute("src") or ""
    action()
    try:
        _wait_until(lambda: (img.get_attribute("src") or "") not in ("", old_src),
                    IMAGE_CHANGE_TIMEOUT_S, "the explorer image to change")
    except AssertionError:
        raise AssertionError(f"{what} did not change the image within {IMAGE_CHANGE_TIMEOUT_S} s") from None


# --------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_and_explorer_reacts(browser, lab, notebook, tmp_path):
    source = _notebook_dir() / notebook
    if not source.is_file():
        pytest.fail(f"notebook {source} does not exist", pytrace=False)
    # Work on a copy: the browser may save the notebook it has open.
    shutil.copy2(source, lab.root_dir / notebook)

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(f"page error: {e}"))

    step = "open the notebook and wait for an idle kernel"
    failure = None
    try:
        _open_notebook(page, lab, notebook)
        step = "run all cells"
        cells = _run_all(page)
        step = "check cell outputs and widgets"
        _check_outputs(page, cells)
        step = "use the explorer"
        _check_explorer(page, photo_model=notebook not in SCENES_ONLY)
        print(f"\n[browser] {notebook}: {len(cells)} code cells ran without errors; explorer image changed")
    except Exception as exc:  # AssertionError, Playwright errors and timeouts
        shot = tmp_path / "failure.png"
        try:
            page.screenshot(path=str(shot), full_page=True)
            where = f"screenshot: {shot}"
        except Exception as shot_exc:  # the page may be gone
            where = f"(no screenshot: {shot_exc})"
        console = "\n".join(console_errors[-10:]) or "(none)"
        failure = (
            f"{notebook}: failed to {step}: {exc}\n{where}\n"
            f"--- browser console errors ---\n{console}\n"
            f"--- end of JupyterLab log ---\n{lab.log_text(2000)}"
        )
    finally:
        context.close()
        lab.shutdown_kernels()  # free memory before the next lesson
    if failure:
        pytest.fail(failure, pytrace=False)
