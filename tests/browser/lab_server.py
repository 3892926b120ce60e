"""Start and stop a throw-away JupyterLab server (or Voilà app) for the browser tests.

Everything the server writes (runtime files, workspaces, user settings) goes
into a temporary directory, so nothing belonging to the person running the
tests is touched.  The server runs in its own session / process group and is
stopped by its PID; kernels it started are shut down and, if anything is left
over, killed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # a dependency of ipykernel, so always present next to Jupyter

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0


def end_process_group(proc: subprocess.Popen, label: str, forced: list[str],
                      others: list[psutil.Process] = ()) -> list[psutil.Process]:
    """Wait for ``proc`` (already asked to stop) to end, kill it after STOP_TIMEOUT_S (noting
    ``label`` in ``forced``), then kill whatever is still in its process group, then ``others``
    (processes of its tree that live in sessions of their own) that outlived it, each noted in
    ``forced``. Returns those still alive after that."""
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        forced.append(f"{label} pid {proc.pid}")
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _, alive = psutil.wait_procs(list(others), timeout=5.0)
    for p in alive:
        try:
            forced.append(f"{p.name()} pid {p.pid}")
            p.kill()
        except psutil.Error:
            pass
    return psutil.wait_procs(alive, timeout=5.0)[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabServer:
    """A running JupyterLab server (use :func:`start_lab` to make one)."""

    proc: subprocess.Popen
    port: int
    token: str
    root_dir: Path
    log_path: Path
    _log_file: object = field(repr=False, default=None)
    has_api: bool = True  # JupyterLab's REST API (kernels, status); Voilà has none

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def log_text(self, last_chars: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<could not read server log: {exc}>"
        return text[-last_chars:]

    def api(self, method: str, path: str, timeout: float = 5.0):
        """Call the server's REST API; returns the decoded JSON (or None)."""
        req = urllib.request.Request(self.url(path), method=method)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    # -- lifecycle ---------------------------------------------------------

    def _answers(self) -> bool:
        if not self.has_api:  # Voilà has no REST API: a listening port is all there is to see
            with socket.create_connection(("127.0.0.1", self.port), timeout=3.0):
                return True
        return isinstance(self.api("GET", "api/status", timeout=3.0), dict)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no attempt yet"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"the server exited with code {code} before becoming ready.\n"
                    f"--- server log ---\n{self.log_text()}"
                )
            try:
                if self._answers():
                    return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last_error = repr(exc)
            time.sleep(0.25)
        raise RuntimeError(
            f"the server did not answer within {timeout:.0f} s "
            f"(last error: {last_error}).\n--- server log ---\n{self.log_text()}"
        )

    def _descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []

    def shutdown_kernels(self) -> None:
        """Ask the server to shut down all its kernels (best effort)."""
        try:
            for kernel in self.api("GET", "api/kernels", timeout=3.0) or []:
                self.api("DELETE", f"api/kernels/{kernel['id']}", timeout=15.0)
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            pass

    def stop(self) -> list[str]:
        """Stop server and kernels.  Returns descriptions of processes that
        had to be killed forcibly (empty if everything shut down cleanly)."""
        forced: list[str] = []
        # Kernels live in their own sessions (jupyter_client starts them with
        # start_new_session=True), so note them before the server goes away.
        children = self._descendants()

        if self.proc.poll() is None:
            if self.has_api:
                self.shutdown_kernels()  # polite first: the server stops its kernels
            children += [c for c in self._descendants() if c not in children]
            self.proc.terminate()
        # Kernels (and anything they spawned) that outlive the server are killed too.
        end_process_group(self.proc, "jupyter lab server", forced, children)

        if self._log_file is not None:
            self._log_file.close()
        return forced


# JupyterLab user settings for the throw-away server (JSON5 files; plain JSON is fine).
_USER_SETTINGS = {
    # Attach every cell to the DOM, so the test sees all prompts and outputs
    # (the default, "contentVisibility", may leave off-screen cells unrendered).
    # Start the preferred kernel without the "Select Kernel" dialog, also for
    # notebooks whose metadata names no kernel.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
    # No "get notified about Jupyter news?" toast and no update checks.
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def _write_user_settings(settings_dir: Path) -> None:
    for rel, values in _USER_SETTINGS.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def start_lab(tmp_dir: Path, extra_args: tuple[str, ...] = ()) -> LabServer:
    """Start JupyterLab serving ``tmp_dir / "root"``; all state stays in tmp_dir."""
    root = tmp_dir / "root"
    runtime = tmp_dir / "runtime"
    workspaces = tmp_dir / "workspaces"
    settings = tmp_dir / "user-settings"
    notary = tmp_dir / "notary"
    for d in (root, runtime, workspaces, settings, notary):
        d.mkdir(parents=True, exist_ok=True)

    _write_user_settings(settings)

    port = free_port()
    token = secrets.token_hex(16)
    env = dict(os.environ)
    env["JUPYTER_RUNTIME_DIR"] = str(runtime)
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.workspaces_dir={workspaces}",
        f"--LabApp.user_settings_dir={settings}",
        # Notebook trust signatures would otherwise go to ~/.local/share/jupyter.
        f"--NotebookNotary.data_dir={notary}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",
        # Safety net if this test process dies without running its teardown.
        "--ServerApp.shutdown_no_activity_timeout=900",
        *extra_args,
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers often run as root
    return _launch(cmd, root, env, port, token, tmp_dir / "jupyter-lab.log")


def start_voila(tmp_dir: Path, notebook: Path) -> LabServer:
    """Serve ``notebook`` as a Voilà app on 127.0.0.1 (with a token); state stays in tmp_dir.
    The app is at ``server.url("")``; every visit runs the notebook in a new kernel."""
    runtime = tmp_dir / "runtime"
    runtime.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = secrets.token_hex(16)
    env = dict(os.environ)
    env["JUPYTER_RUNTIME_DIR"] = str(runtime)
    cmd = [
        sys.executable, "-m", "voila", str(notebook),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",
        f"--Voila.token={token}",
        "--VoilaConfiguration.show_tracebacks=True",  # an error shows on the page, where the test looks
    ]
    return _launch(cmd, notebook.parent, env, port, token, tmp_dir / "voila.log", has_api=False)


def _launch(cmd, cwd: Path, env: dict, port: int, token: str, log_path: Path, has_api: bool = True) -> LabServer:
    log_file = open(log_path, "w")
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = LabServer(proc, port, token, cwd, log_path, log_file, has_api)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server
