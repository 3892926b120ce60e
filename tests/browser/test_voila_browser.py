"""The compare dashboard as a standalone app: ``voila notebooks/compare.ipynb``.

Voilà is started on 127.0.0.1 with a token (lab_server.start_voila), Chromium
opens the app, and the test checks that the notebook ran without an error, that
no code is shown, and that choosing other methods and another image each change
the picture. Needs Chromium, like the JupyterLab browser test.
"""

from __future__ import annotations

import pytest

import shutil

from .lab_server import start_voila
from .test_lab_browser import REPO_NOTEBOOKS, WIDGETS_TIMEOUT_S, browser, change_picture, lab  # noqa: F401 (fixtures)

PICTURE = ".course-explorer .course-explorer-view img, .course-explorer img.course-explorer-view"
APP_TIMEOUT_S = 90  # the kernel starts and runs the notebook before the page is complete


@pytest.fixture
def voila(tmp_path):
    server = start_voila(tmp_path, REPO_NOTEBOOKS / "compare.ipynb")
    try:
        yield server
    finally:
        leftovers = server.stop()
        if leftovers:
            print(f"\n[voila test] had to kill: {', '.join(leftovers)}")


@pytest.mark.browser
def test_the_dashboard_app_serves_and_reacts(browser, voila):
    """``voila notebooks/compare.ipynb`` (what `make app` runs)."""
    _check_app(browser, voila.url(""), voila.log_text)


@pytest.mark.browser
def test_the_dashboard_app_opens_inside_jupyter_server(browser, lab):
    """The same app through Voilà's server extension, at /voila/render/…: how Binder users open it."""
    shutil.copy2(REPO_NOTEBOOKS / "compare.ipynb", lab.root_dir / "compare.ipynb")
    _check_app(browser, lab.url("voila/render/compare.ipynb"), lab.log_text)


def _check_app(browser, url: str, log_text) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url, wait_until="domcontentloaded", timeout=APP_TIMEOUT_S * 1000)
        # Either the dashboard's picture appears or the page shows why not.
        page.wait_for_function(f"() => document.querySelector('{PICTURE}') || /Traceback/.test(document.body.innerText)",
                               timeout=APP_TIMEOUT_S * 1000, polling=250)
        assert "Traceback" not in page.inner_text("body"), page.inner_text("body")[-3000:]
        img = page.locator(PICTURE).first
        img.wait_for(state="visible", timeout=WIDGETS_TIMEOUT_S * 1000)
        page.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=img.element_handle(),
                               timeout=WIDGETS_TIMEOUT_S * 1000)
        text = page.inner_text("body")
        assert "Compare every method on one image" in text  # the markdown is part of the app
        for bad in ("Traceback", "Error displaying widget", "CompareExplorer("):
            assert bad not in text, f"the app shows {bad!r}"  # the last: code is stripped

        methods = page.locator(".course-explorer select[multiple]")
        change_picture(img, lambda: methods.select_option(label=["CAM", "Grad-CAM"]), "choosing CAM and Grad-CAM")
        image = page.locator(".course-explorer .widget-dropdown select").first
        change_picture(img, lambda: image.select_option(label="photo: cat"), "choosing the cat photo")
        assert page.locator(".course-explorer .widget-html").first.inner_text().strip() == "", "an explorer error"
        assert not errors, f"errors in the page: {errors}"
        assert "Traceback" not in log_text(), log_text()
    finally:
        page.close()
