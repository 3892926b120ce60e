"""The classroom on a real JupyterHub: the README's nbgitpuller link, tested end to end.

A throw-away JupyterHub (hub_server.py) runs on 127.0.0.1 with a shared-password login and the local
process spawner: two students, ada and grace, each with a home folder of their own under the test's
temporary folder, and single-user servers started from this venv (where the course is installed).
The course's source is a bare git repository made from the checkout's HEAD commit — the test uses
what is committed, never uncommitted changes in the working tree — and an instructor's clone of it.

1. Each student, in a browser context of their own (Chromium, as in tests/browser), opens the
   nbgitpuller link in the README's shape, logs in on the hub's page, launches their server and lands
   in lesson 00 in JupyterLab, in a copy cloned into THEIR home (``~/seeing-inside-cnns``).
2. ada runs lesson 00 (Run ▸ Run All Cells: no error output), moves an explorer control (the picture
   changes) and saves; grace adds a sentence to lesson 00's first markdown cell and saves, renames
   lesson 02 (to get a fresh copy later) and drops a picture into ``datasets/my_images``.
3. The instructor commits a sentence in lesson 01 and pushes it to the bare repository.
4. Both open the link again: lesson 01 carries the instructor's sentence in both homes; grace's
   sentence and ada's saved run are still in their lesson 00; grace's renamed copy and picture are
   kept and lesson 02 is back; every file of the course is there; no backup folder and no file
   renamed by nbgitpuller.

While everything runs, every listening socket of the hub's processes (hub, proxy, single-user
servers, kernels) must be on loopback. At the end everything is stopped by PID (servers through the
hub's API, then the hub and proxy, then a kill of whatever is left) and no process may remain. The
phases' times are printed (run pytest with -s to see them).

Needs jupyterhub and nbgitpuller (the test extra), configurable-http-proxy from npm (`make setup`
installs it into .venv/hub-proxy when npm is there), git and Chromium.  Environment variables:
  COURSE_REQUIRE_HUB=1      fail instead of skip when any of these is missing (CI sets it)
  COURSE_REQUIRE_BROWSER=1  fail instead of skip when Chromium/Playwright is missing (as tests/browser)
  COURSE_HUB_PROXY          the configurable-http-proxy executable to use
  COURSE_CHROMIUM           Chromium executable (default /usr/bin/chromium)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import nbformat
import pytest

from ..browser import test_lab_browser
from ..browser.test_lab_browser import (
    _JS_KERNEL_READY, KERNEL_READY_TIMEOUT_S, _check_explorer, _check_outputs, _run_all, _wait_until)
from .hub_server import Hub, find_proxy, start_hub

browser = test_lab_browser.browser  # the fixture: Chromium through Playwright, as in tests/browser

REPO = Path(__file__).resolve().parents[2]
STUDENTS = ("ada", "grace")  # ada runs lesson 00; grace edits it
#: The last path component of the link's repo (here a file:// URL; on GitHub https://github.com/OWNER/REPO):
#: nbgitpuller clones into a folder of that name in the student's home.
FOLDER = "seeing-inside-cnns"
LESSON = "notebooks/00_start_here.ipynb"
OTHER_LESSON = "notebooks/01_feature_maps.ipynb"  # the instructor's change goes here
RENAMED_LESSON = "notebooks/02_filter_weights.ipynb"  # grace renames it; the link brings it back
OPEN_TIMEOUT_S = 240  # login, spawn, clone, JupyterLab's page, a kernel: two cores, a browser beside
SAVE_TIMEOUT_S = 30


def _missing(message: str, also: str = "") -> None:
    """Skip, or fail where the environment demands the test (COURSE_REQUIRE_HUB=1, or ``also``=1)."""
    if os.environ.get("COURSE_REQUIRE_HUB") == "1" or (also and os.environ.get(also) == "1"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def proxy() -> str:
    """configurable-http-proxy's path, once everything else the hub test needs is known to be there."""
    for module in ("jupyterhub", "nbgitpuller"):
        if importlib.util.find_spec(module) is None:
            _missing(f"{module} is not installed here; install the test extra: "
                     f'.venv/bin/python -m pip install -e ".[test]"')
    if not (Path(sys.executable).parent / "jupyterhub-singleuser").is_file():
        _missing(f"jupyterhub-singleuser is not beside {sys.executable}; install the test extra")
    if shutil.which("git") is None:
        _missing("git is not on PATH (nbgitpuller runs it)")
    chromium = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).is_file() or importlib.util.find_spec("playwright") is None:
        _missing(f"Chromium ({chromium}) or Playwright is missing; install Debian's chromium (apt-get install chromium)",
                 also="COURSE_REQUIRE_BROWSER")
    found = find_proxy()
    if found is None or not os.access(found, os.X_OK):
        _missing("configurable-http-proxy (npm) not found in .venv/hub-proxy or on PATH: "
                 "npm install --prefix .venv/hub-proxy configurable-http-proxy@5 "
                 "(make setup does it where npm is installed; Debian: apt-get install nodejs npm)")
    return found


# --------------------------------------------------------------------------
# git: the course's source and the instructor


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=Instructor", "-c", "user.email=instructor@example.org", *args],
                          cwd=cwd, check=True, capture_output=True, text=True, timeout=120).stdout.strip()


def make_course_source(tmp: Path) -> tuple[Path, Path]:
    """A bare repository holding the checkout's HEAD as branch main, and an instructor's clone."""
    bare = tmp / "origin" / f"{FOLDER}.git"  # as a git host names it; the link leaves ".git" off, as on GitHub
    bare.parent.mkdir(parents=True)
    git("clone", "--quiet", "--bare", str(REPO), str(bare), cwd=tmp)
    head = git("rev-parse", "HEAD", cwd=REPO)  # committed work only (HEAD may be detached in CI)
    git("update-ref", "refs/heads/main", head, cwd=bare)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=bare)
    instructor = tmp / "instructor"
    git("clone", "--quiet", str(bare), str(instructor), cwd=tmp)
    return bare, instructor


def instructor_pushes(instructor: Path, sentence: str) -> str:
    """Append ``sentence`` to the last markdown cell of OTHER_LESSON, commit, push; the new commit."""
    path = instructor / OTHER_LESSON
    nb = nbformat.read(path, as_version=4)
    cell = [c for c in nb.cells if c.cell_type == "markdown"][-1]
    cell.source = cell.source.rstrip() + "\n\n" + sentence
    nbformat.write(nb, path)
    git("commit", "--quiet", "-am", "Lesson 01: a sentence added before class", cwd=instructor)
    git("push", "--quiet", "origin", "HEAD:main", cwd=instructor)
    return git("rev-parse", "HEAD", cwd=instructor)


def pull_link(hub: Hub, repo_url: str) -> str:
    """The README's link: https://HUB/hub/user-redirect/git-pull?repo=...&branch=main&urlpath=lab/tree/REPO/..."""
    query = urllib.parse.urlencode({"repo": repo_url, "branch": "main", "urlpath": f"lab/tree/{FOLDER}/{LESSON}"},
                                   quote_via=urllib.parse.quote, safe="")
    return f"{hub.base_url}/hub/user-redirect/git-pull?{query}"


# --------------------------------------------------------------------------
# the browser


def open_link(context, hub: Hub, user: str, link: str) -> tuple[object, dict]:
    """Open ``link`` in a new tab of ``context`` as ``user`` (logging in and launching the server when the
    hub asks) until lesson 00 is open in JupyterLab with an idle kernel.  Returns (page, what happened)."""
    from playwright.sync_api import Error as PlaywrightError

    page = context.new_page()
    page.set_default_timeout(30_000)
    seen = {"login": False, "launch": False}
    landing = re.compile(rf"/user/{user}/lab(/workspaces/[^/]+)?/tree/{re.escape(FOLDER)}/{re.escape(LESSON)}")
    page.goto(link, wait_until="domcontentloaded")
    deadline = time.monotonic() + OPEN_TIMEOUT_S
    while not landing.search(urllib.parse.urlsplit(page.url).path):
        if time.monotonic() > deadline:
            try:
                text = page.inner_text("body")[:1500]
            except PlaywrightError as exc:
                text = f"<{exc}>"
            raise AssertionError(f"{user} did not land in lesson 00 within {OPEN_TIMEOUT_S} s; at {page.url}\n"
                                 f"page: {text}\n--- hub log ---\n{hub.log_text(3000)}")
        try:  # each page of the way: act on the ones that wait for the student
            if page.locator("#username_input").is_visible():  # the hub's login page
                page.fill("#username_input", user)
                page.fill("#password_input", hub.password)
                page.click("#login_submit")
                seen["login"] = True
            elif page.locator("a#start").is_visible():  # "Server not running. Would you like to start it?"
                page.click("a#start")
                seen["launch"] = True
            status = page.locator("#status-panel-title")  # nbgitpuller's progress bar
            if status.count() and "Error" in (status.inner_text() or ""):
                raise AssertionError(f"nbgitpuller failed for {user}: {status.inner_text()}\n"
                                     f"{page.inner_text('body')[:3000]}")
        except PlaywrightError:
            pass  # the page navigated away while we looked at it
        page.wait_for_timeout(250)
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell",
                           timeout=KERNEL_READY_TIMEOUT_S * 1000)
    page.wait_for_function(_JS_KERNEL_READY, timeout=KERNEL_READY_TIMEOUT_S * 1000, polling=250)
    first = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell").first.inner_text()
    assert "00 · Start here" in first, f"{user} landed in another notebook: {first[:200]!r}"
    return page, seen


def save(page) -> None:
    """Save the open notebook with Ctrl-S (from command mode) and wait until JupyterLab says it is saved."""
    page.keyboard.press("Escape")
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.focus()
    page.keyboard.press("Control+s")
    _wait_until(lambda: page.locator(".lm-TabBar-tab.jp-mod-dirty").count() == 0,
                SAVE_TIMEOUT_S, "the notebook's tab to show it saved")


def edit_first_markdown_cell(page, sentence: str) -> None:
    cell = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownCell").first
    cell.scroll_into_view_if_needed()
    cell.dblclick()  # a rendered markdown cell opens its editor
    editor = cell.locator(".cm-content")
    editor.wait_for(state="visible")
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    page.keyboard.type(sentence)
    page.keyboard.press("Shift+Enter")  # render it again


# --------------------------------------------------------------------------
# files on disk


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def first_markdown(path: Path) -> str:
    return next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown").source


def wait_for_file(path: Path, predicate, what: str) -> str:
    """Wait until ``predicate(path)`` holds and the file has not changed for a second; its sha256."""
    def ok():
        try:
            return predicate(path)
        except (OSError, ValueError, StopIteration, nbformat.reader.NotJSONError, json.JSONDecodeError):
            return False  # being written
    _wait_until(ok, SAVE_TIMEOUT_S, what)
    before = sha(path)
    while True:
        time.sleep(1.0)
        now = sha(path)
        if now == before:
            return now
        before = now


def leftovers_of_merges(home: Path) -> list[str]:
    """Folders nbgitpuller backs up (``*_backup_*``) and files it renames out of the way (``name__YYYYmmddHHMMSS``)."""
    return [str(p.relative_to(home)) for p in home.rglob("*")
            if ".git" not in p.parts and (re.search(r"_backup_\d{14}", p.name) or re.search(r"__\d{14}", p.name))]


# --------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.hub
def test_two_students_pull_the_course_work_in_it_and_keep_their_work_when_the_instructor_pushes(
        proxy, browser, tmp_path):
    times: dict[str, float] = {}
    t_all = time.monotonic()

    def phase(name: str, since: float) -> None:
        times[name] = time.monotonic() - since
    seen: dict[str, dict] = {}  # per open: did the hub show its login page, its "Launch Server" page?

    bare, instructor = make_course_source(tmp_path)
    origin_files = set(git("ls-tree", "-r", "--name-only", "main", cwd=bare).splitlines())

    t = time.monotonic()
    hub = start_hub(tmp_path / "hub", STUDENTS, proxy)
    phase("hub start", t)
    ada, grace = (hub.home(u) / FOLDER for u in STUDENTS)
    contexts, forced, survivors = [], [], []
    try:
        link = pull_link(hub, (bare.parent / FOLDER).as_uri())  # file:///…/origin/seeing-inside-cnns
        print(f"\n[hub] the link: {link}")
        pages = {}
        for user in STUDENTS:
            contexts.append(browser.new_context(viewport={"width": 1400, "height": 1000}))

        # 1. first open: log in; the link starts the server, clones the course and opens lesson 00
        for user, context in zip(STUDENTS, contexts):
            t = time.monotonic()
            pages[user], seen[user] = open_link(context, hub, user, link)
            phase(f"first open {user}", t)
            assert seen[user]["login"], f"{user} was not asked to log in"
            assert (hub.home(user) / FOLDER / LESSON).is_file(), f"lesson 00 is not in {user}'s home"
            if user == STUDENTS[0]:
                assert not (hub.home(STUDENTS[1]) / FOLDER).exists(), "grace got a copy before opening the link"
        pristine = sha(instructor / LESSON)
        assert sha(ada / LESSON) == pristine and sha(grace / LESSON) == pristine
        assert git("rev-parse", "--is-shallow-repository", cwd=ada) == "true", "nbgitpuller clones with --depth 1"

        # 2. ada runs lesson 00 and moves an explorer control; grace edits a markdown cell
        t = time.monotonic()
        page = pages["ada"]
        cells = _run_all(page)
        _check_outputs(page, cells)
        _check_explorer(page, photo_model=False)
        save(page)
        ada_saved = wait_for_file(ada / LESSON, lambda p: sha(p) != pristine, "ada's lesson 00 to be saved with her run")
        phase("ada runs lesson 00", t)

        t = time.monotonic()
        sentence = f"Note from grace {secrets.token_hex(4)}: the first layer looks for edges."
        edit_first_markdown_cell(pages["grace"], sentence)
        save(pages["grace"])
        wait_for_file(grace / LESSON, lambda p: first_markdown(p).rstrip().endswith(sentence),
                      "grace's sentence to reach lesson 00 on disk")
        phase("grace edits lesson 00", t)
        # what a student does in the file browser: rename a lesson to start it afresh, upload a picture
        mine = grace / RENAMED_LESSON.replace("02_filter_weights", "02_mine")
        (grace / RENAMED_LESSON).rename(mine)
        picture = grace / "datasets" / "my_images" / "my_cat.png"
        picture.write_bytes(b"\x89PNG\r\n\x1a\n not really a picture")

        # 3. the instructor pushes a change to another lesson
        news = f"Added by the instructor {secrets.token_hex(4)}."
        pushed = instructor_pushes(instructor, news)

        # 4. both open the link again
        for user, context in zip(STUDENTS, contexts):
            pages[user].close()
            t = time.monotonic()
            pages[user], seen[f"{user} again"] = open_link(context, hub, user, link)
            phase(f"second open {user}", t)
            assert not seen[f"{user} again"]["login"] and not seen[f"{user} again"]["launch"]

        # nothing listens beyond loopback (hub, proxy API and public port, servers, kernels)
        listening = hub.listening()
        ports = {s[3] for s in listening}
        assert {hub.port, hub.api_port, hub.hub_port} <= ports, f"the scan missed the hub's ports: {listening}"
        assert sum("jupyterhub-singleuser" in s[0] for s in listening) >= len(STUDENTS), listening
        assert not hub.not_loopback(), f"listening beyond loopback: {hub.not_loopback()}"

        for user in STUDENTS:
            clone = hub.home(user) / FOLDER
            assert news in (clone / OTHER_LESSON).read_text(), f"the instructor's change did not reach {user}"
            git("merge-base", "--is-ancestor", pushed, "HEAD", cwd=clone)  # raises if the push is not merged
            missing = {f for f in origin_files if not (clone / f).exists()}
            assert not missing, f"files lost in {user}'s copy: {sorted(missing)[:10]}"
            assert not leftovers_of_merges(hub.home(user)), leftovers_of_merges(hub.home(user))
        assert first_markdown(grace / LESSON).rstrip().endswith(sentence), "grace's edit was lost"
        assert sentence not in (ada / LESSON).read_text(), "grace's edit reached ada's copy"
        assert sha(ada / LESSON) == ada_saved, "ada's lesson 00 (her run) was changed by the pull"
        assert mine.is_file() and (grace / RENAMED_LESSON).is_file(), "the renamed lesson or its fresh copy is missing"
        assert picture.is_file(), "grace's picture in datasets/my_images was lost"
    finally:
        for context in contexts:
            context.close()
        t = time.monotonic()
        forced, survivors = hub.stop()
        phase("stop", t)
        total = time.monotonic() - t_all
        print("[hub] " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + f"; whole test {total:.1f} s")
        print("[hub] pages on the way: " + "; ".join(
            f"{who}: " + (", ".join(k for k, v in s.items() if v) or "straight to lesson 00") for who, s in seen.items()))
        if forced:
            print(f"[hub] had to kill: {', '.join(forced)}")
    assert not survivors, f"processes left running: {survivors}"
    assert not [p for p in hub.seen.values() if p.is_running()], "a process of the hub's tree is still running"
