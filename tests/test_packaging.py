"""The course installs as a wheel (`pip install .`, a JupyterHub image), not only editable.

The wheel is built from a copy of pyproject.toml and course_utils/ alone, installed
into a throw-away folder, and used from a process whose working directory is not the
repository, so nothing can come from the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

USE_THE_INSTALLED_COURSE = """
import importlib, pathlib, pkgutil, sys
import course_utils
site = pathlib.Path(sys.argv[1]).resolve()
assert pathlib.Path(course_utils.__file__).resolve().is_relative_to(site), course_utils.__file__
modules = [m.name for m in pkgutil.walk_packages(course_utils.__path__, "course_utils.")]
for name in modules:
    assert pathlib.Path(importlib.import_module(name).__file__).resolve().is_relative_to(site), name
from course_utils import cam, scenes
from course_utils.models import load_model
from course_utils.widgets import GradCAMExplorer
m = load_model("course")
s = load_model("shortcut")
scene = scenes.make_scene(1, 3)
result = cam.grad_cam(m.model, m.batch([scene.image]))
assert int(result.classes[0]) == scene.label, (result.classes, scene.label)
from course_utils.widgets import my_images_dir
assert my_images_dir() == pathlib.Path.cwd().parent / "datasets" / "my_images", my_images_dir()
print(len(modules), "modules;", tuple(result.maps.shape), m.categories[int(result.classes[0])])
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    shutil.copy(REPO / "pyproject.toml", src)
    shutil.copytree(REPO / "course_utils", src / "course_utils", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "-w", str(out), str(src)], check=True, timeout=300)
    (path,) = out.glob("course_utils-*.whl")
    return path


def test_the_wheel_holds_every_module_and_both_checkpoints(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(REPO).as_posix() for p in (REPO / "course_utils").rglob("*.py")}
    expected |= {"course_utils/checkpoints/coursenet.pt", "course_utils/checkpoints/shortcutnet.pt"}
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"


def test_the_installed_wheel_works_without_the_source_tree(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                    "--target", str(site), str(wheel)], check=True, timeout=300)
    course = tmp_path / "a-clone-of-the-course"  # its notebooks, without course_utils beside them
    (course / "datasets" / "my_images").mkdir(parents=True)
    elsewhere = course / "notebooks"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_CHECKPOINT", "COURSE_MY_IMAGES")}
    env["PYTHONPATH"] = str(site)  # before the editable install's finder, which comes last
    run = subprocess.run([sys.executable, "-c", USE_THE_INSTALLED_COURSE, str(site)], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(1, 16, 16)" in run.stdout, run.stdout
