"""What installs the course elsewhere: pyproject.toml, environment.yml (conda) and
binder/ (mybinder.org). No container can be built here, so these tests check what
can be checked: the files parse and agree, every package the course imports is
declared, and binder/postBuild runs under bash against this environment with the
network cut off and the ImageNet weights already in a temporary cache."""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata as metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: conda-forge names of the PyPI distributions whose conda package is called otherwise.
CONDA_NAME = {"torch": "pytorch-cpu"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(req: str) -> tuple[str, str]:
    """"torch>=2.2" -> ("torch", ">=2.2") (names canonical; the version part as written)."""
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", req)
    assert m, f"cannot read requirement {req!r}"
    return canonical(m.group(1)), m.group(2).replace(" ", "")


def runtime_requirements() -> dict[str, str]:
    return dict(split_requirement(r) for r in PYPROJECT["project"]["dependencies"])


def conda_environment(path: Path) -> tuple[dict, dict[str, str], dict[str, str]]:
    """(the parsed file, its conda packages, its pip packages), names canonical."""
    env = yaml.safe_load(path.read_text())
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for req in dep["pip"]:
                if not req.startswith("-e"):
                    name, spec = split_requirement(req)
                    pip[name] = spec
        else:
            name, spec = split_requirement(dep.replace("=", "==", 1) if re.search(r"[^<>=!]=[^=]", dep) else dep)
            conda[name] = spec
    return env, conda, pip


ENVIRONMENTS = {"root": REPO / "environment.yml", "binder": REPO / "binder" / "environment.yml"}


@pytest.mark.parametrize("which", ENVIRONMENTS)
def test_environment_files_parse_and_list_every_runtime_requirement_with_its_bound(which):
    env, conda, pip = conda_environment(ENVIRONMENTS[which])
    assert env["name"] == "seeing-inside-cnns" and env["channels"] == ["conda-forge"]
    assert conda["python"] == "==3.11" and "pip" in conda
    listed = {**conda, **pip}
    for name, spec in runtime_requirements().items():
        conda_name = canonical(CONDA_NAME.get(name, name))
        assert conda_name in listed, f"{ENVIRONMENTS[which].name} ({which}) lacks {name} (as {conda_name})"
        assert listed[conda_name] == spec, f"{which}: {conda_name}{listed[conda_name]} but pyproject says {name}{spec}"
    assert "torch" not in listed and "pytorch" not in listed, "CPU PyTorch only: pytorch-cpu"


def test_binder_and_root_environments_do_not_contradict_each_other():
    _, root_conda, root_pip = conda_environment(ENVIRONMENTS["root"])
    _, binder_conda, binder_pip = conda_environment(ENVIRONMENTS["binder"])
    root, binder = {**root_conda, **root_pip}, {**binder_conda, **binder_pip}
    for name in root.keys() & binder.keys():
        assert root[name] == binder[name], f"{name}: {root[name]} (root) vs {binder[name]} (binder)"
    assert "jupyter-server-proxy" in binder, "TensorBoard in lesson 08 reaches its server through the proxy on Binder"
    tests = {split_requirement(r)[0] for r in PYPROJECT["project"]["optional-dependencies"]["test"]}
    assert not tests & binder.keys(), "Binder sessions do not run the tests: keep the image small"
    # the root file installs the course itself; Binder's postBuild does (binder/ hides the root files)
    assert "-e ." in [r for d in yaml.safe_load(ENVIRONMENTS["root"].read_text())["dependencies"]
                      if isinstance(d, dict) for r in d["pip"]]
    assert "pip install --no-deps -e ." in (REPO / "binder" / "postBuild").read_text()


# --- every package the course imports is declared ------------------------------------------

def _imports(source: str) -> set[str]:
    """Top-level names imported by Python source (absolute imports; ``%load_ext x`` counts as x)."""
    names = set(re.findall(r"^\s*%load_ext\s+(\w+)", source, flags=re.M))
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _optional(cell) -> bool:
    """A cell that shows an optional library ("In the libraries you will meet"): nbval skips it."""
    return "nbval-skip" in cell.metadata.get("tags", [])


def course_imports(optional: bool = False) -> dict[str, set[str]]:
    """{top-level module: files importing it} over the notebooks and course_utils; with
    ``optional``, over the notebooks' optional-library cells only (left out otherwise)."""
    found: dict[str, set[str]] = {}
    sources = [] if optional else [(p, p.read_text()) for p in sorted((REPO / "course_utils").rglob("*.py"))]
    for nb_path in sorted((REPO / "notebooks").rglob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        sources += [(nb_path, c.source) for c in nb.cells if c.cell_type == "code" and _optional(c) == optional]
    for path, source in sources:
        for name in _imports(source):
            found.setdefault(name, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_package_the_lessons_and_course_utils_import_is_a_declared_dependency():
    imported = course_imports()
    assert {"torch", "ipywidgets", "matplotlib", "PIL", "course_utils"} <= imported.keys()  # the scan works
    distributions = metadata.packages_distributions()
    declared = runtime_requirements().keys()
    undeclared = {}
    for module, files in imported.items():
        if module in sys.stdlib_module_names or module in ("__future__", "course_utils"):
            continue
        dists = {canonical(d) for d in distributions.get(module, [])}
        assert dists, f"{module} (imported by {sorted(files)}) is not installed here at all"
        if not dists & declared:
            undeclared[module] = (sorted(dists), sorted(files))
    assert not undeclared, f"imported but not in pyproject's dependencies: {undeclared}"



#: Optional libraries whose import name is not their distribution's name.
OPTIONAL_IMPORTS = {"pytorch_grad_cam": "grad-cam", "lucent": "torch-lucent"}


def test_optional_library_cells_import_only_what_the_bench_extra_installs():
    """The lessons' cells that show captum or pytorch-grad-cam beside the course (tagged nbval-skip:
    what they print depends on whether the libraries are installed) import nothing that
    `pip install -e ".[bench]"` would not bring."""
    imported = course_imports(optional=True)
    assert imported, "no optional-library cell found (tagged nbval-skip)"
    installed = metadata.packages_distributions()  # the bench extra need not be installed (a student's make test)
    bench = {split_requirement(r)[0] for r in PYPROJECT["project"]["optional-dependencies"]["bench"]}
    for module, files in imported.items():
        if module in sys.stdlib_module_names or module == "course_utils":
            continue
        dists = {canonical(d) for d in installed.get(module, [])} or {canonical(OPTIONAL_IMPORTS.get(module, module))}
        assert dists & (bench | runtime_requirements().keys()), (
            f"{module} (in {sorted(files)}) is neither a dependency nor in the bench extra")


# --- binder/postBuild and binder/start, run for real --------------------------------------------

# Cuts the network in every Python process of the build (pip, its build backend, the
# download): a connection or a name lookup is written down and refused.
_OFFLINE = '''
import os, socket
_log = os.environ["COURSE_OFFLINE_LOG"]
def _note(what):
    with open(_log, "a") as f:
        f.write(f"{what}\\n")
def _connect(self, address, *args, _real=socket.socket.connect):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _note(address)
        raise OSError(101, "Network is unreachable (offline build test)")
    return _real(self, address, *args)
def _getaddrinfo(host, *args, _real=socket.getaddrinfo, **kwargs):
    if host not in ("localhost", "127.0.0.1", "::1", None):
        _note(host)
        raise socket.gaierror(-3, "Temporary failure in name resolution (offline build test)")
    return _real(host, *args, **kwargs)
socket.socket.connect = _connect
socket.socket.connect_ex = lambda self, address: _connect(self, address) or 0
socket.getaddrinfo = _getaddrinfo
'''


def _run_post_build(tmp_path: Path, torch_home: Path) -> tuple[subprocess.CompletedProcess, Path, list[str]]:
    guard = tmp_path / "offline"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(_OFFLINE)
    log = tmp_path / "network-attempts.log"
    prefix = tmp_path / "prefix"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` = this one
        "PYTHONPATH": str(guard),
        "COURSE_OFFLINE_LOG": str(log),
        "TORCH_HOME": str(torch_home),
        # pip installs into a throw-away prefix (not this environment), from nothing but the
        # source tree: no index, and no isolated build environment to download setuptools into.
        "PIP_PREFIX": str(prefix),
        "PIP_IGNORE_INSTALLED": "1",  # else pip first uninstalls the course from *this* environment
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "JUPYTERLAB_DIR": str(tmp_path / "lab"),  # JupyterLab's settings go there, not into this environment
    }
    before = _installed_course(tmp_path)
    proc = subprocess.run(["bash", str(REPO / "binder" / "postBuild")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    attempts = log.read_text().split() if log.exists() else []
    assert _installed_course(tmp_path) == before, "the test changed this environment's course_utils"
    return proc, prefix, attempts


def _installed_course(cwd: Path) -> str:
    """Where this environment imports course_utils from (PYTHONPATH aside), or the error."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run([sys.executable, "-c", "import course_utils; print(course_utils.__file__)"], cwd=cwd,
                           capture_output=True, text=True, env=env)
    assert probe.returncode == 0, f"course_utils is not installed in this environment: {probe.stderr[-500:]}"
    return probe.stdout.strip()


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_post_build_installs_the_course_and_keeps_weights_already_cached_without_network(tmp_path, _random_imagenet_home):
    before = _fingerprint(_random_imagenet_home)
    proc, prefix, attempts = _run_post_build(tmp_path, _random_imagenet_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert attempts == [], f"the build went to the network: {attempts}"
    for name in ("resnet18", "resnet50", "vgg16"):
        assert re.search(rf"^{name}\s+ready\s", proc.stdout, flags=re.M), proc.stdout
    assert _fingerprint(_random_imagenet_home) == before, "cached weights were rewritten"
    # the editable install landed in the throw-away prefix and points at this source tree
    (record,) = prefix.glob("lib/python*/site-packages/course_utils-*.dist-info/direct_url.json")
    direct = record.read_text()
    assert '"editable": true' in direct and REPO.as_uri() in direct
    assert _news_setting(tmp_path / "lab" / "settings") == "false"


def _news_setting(app_settings: Path):
    """What JupyterLab reads as the default of its "get Jupyter news?" setting from an app settings folder."""
    from jupyterlab_server.settings_utils import _get_overrides

    overrides, error = _get_overrides(str(app_settings))
    assert not error, error
    return overrides.get("@jupyterlab/apputils-extension:notification", {}).get("fetchNews")


def test_make_lab_opens_lesson_00_without_the_news_prompt():
    """The course's environment tells JupyterLab not to ask about Jupyter news (a prompt over lesson 00
    on a classroom projector); it is set up by `make setup` (and binder/postBuild on Binder)."""
    from jupyterlab.commands import get_app_dir

    assert _news_setting(Path(get_app_dir()) / "settings") == "false"
    assert "--LabApp.default_url=/lab/tree/notebooks/00_start_here.ipynb" in (REPO / "Makefile").read_text()


def test_post_build_fails_loudly_when_the_weights_cannot_be_fetched(tmp_path):
    """An image without weights would look fine and fail in class: the build must stop instead."""
    empty = tmp_path / "torch_home"
    empty.mkdir()
    proc, _, attempts = _run_post_build(tmp_path, empty)
    assert proc.returncode != 0
    assert "could not download the weights for 'resnet18'" in proc.stderr and "Are you online?" in proc.stderr
    assert attempts, "the download did not even try the network (so the offline guard proved nothing)"
    assert not list(empty.rglob("*.pth")) and not list(empty.rglob("*.part")), "half a download was left behind"


def test_start_points_tensorboard_at_the_proxy_and_runs_the_command():
    script = REPO / "binder" / "start"
    run = lambda env: subprocess.run(["bash", str(script), "bash", "-c", 'echo "$TENSORBOARD_PROXY_URL|$0"', "ran"],
                                     env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
    on_hub = run({"JUPYTERHUB_SERVICE_PREFIX": "/user/ada-123/"})
    assert on_hub.returncode == 0 and on_hub.stdout.strip() == "/user/ada-123/proxy/%PORT%/|ran"
    env = {k: v for k, v in os.environ.items() if k != "JUPYTERHUB_SERVICE_PREFIX"}
    alone = subprocess.run(["bash", str(script), "printenv", "TENSORBOARD_PROXY_URL"], env=env,
                           capture_output=True, text=True, timeout=30)
    assert alone.stdout.strip() == "/proxy/%PORT%/"


def test_the_binder_launch_link_opens_lesson_00_in_jupyterlab():
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"https://mybinder\.org/v2/gh/[^)\s]+", readme)
    assert links, "no Binder launch link in the README"
    for link in links:
        path = re.search(r"[?&]urlpath=lab/tree/([^&#)]+)", link)
        assert path, f"{link} does not open JupyterLab"
        assert path.group(1) == "notebooks/00_start_here.ipynb" and (REPO / path.group(1)).is_file()
