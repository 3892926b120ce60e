"""Start and stop a throw-away JupyterHub for tests/hub: everything on 127.0.0.1, all state in one folder.

The hub runs with the local process spawner (each user's server is a process of this machine, in
its own home folder under the temporary folder), a shared-password login, and
configurable-http-proxy (npm) in front.  Its config, sqlite database, cookie secret, proxy token and
pid files are written into the temporary folder; nothing belonging to the person running the tests
is read or changed.  The hub runs in its own session and is stopped by PID: users' servers through
the hub's API, then the hub (which stops the proxy), then whatever is left of every process seen in
its tree (servers, kernels, proxy) is killed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ..browser.lab_server import _write_user_settings, end_process_group, free_port

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
#: The name of the test's service, whose token may stop servers and shut the hub down.
SERVICE = "course-test"


def find_proxy() -> str | None:
    """configurable-http-proxy: $COURSE_HUB_PROXY, else the one `make setup` installs into the
    venv (``npm install --prefix .venv/hub-proxy``), else the first on PATH; None if none."""
    if os.environ.get("COURSE_HUB_PROXY"):
        return os.environ["COURSE_HUB_PROXY"]
    local = Path(sys.prefix) / "hub-proxy" / "node_modules" / ".bin" / "configurable-http-proxy"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("configurable-http-proxy")


CONFIG = """\
# Written by tests/hub/hub_server.py for one test run; every path is in this folder.
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{public_port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.JupyterHub.db_url = {db_url!r}
c.JupyterHub.cookie_secret_file = {cookie_secret!r}
c.JupyterHub.pid_file = {hub_pid!r}
c.ConfigurableHTTPProxy.command = {proxy!r}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.auth_token = {proxy_token!r}
c.ConfigurableHTTPProxy.pid_file = {proxy_pid!r}

c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = {password!r}
c.Authenticator.allowed_users = {users!r}

c.JupyterHub.spawner_class = "simple"  # SimpleLocalProcessSpawner: no system users needed
c.SimpleLocalProcessSpawner.home_dir_template = {home_template!r}
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = {args!r}
c.Spawner.ip = "127.0.0.1"
c.Spawner.default_url = "/lab"
c.Spawner.environment = {environment!r}
c.Spawner.start_timeout = 180  # two cores shared with a browser and the other student's kernel
c.Spawner.http_timeout = 180

c.JupyterHub.services = [{{"name": {service!r}, "api_token": {api_token!r}}}]
c.JupyterHub.load_roles = [{{"name": {service!r}, "services": [{service!r}],
                             "scopes": ["admin:users", "admin:servers", "shutdown"]}}]
"""


@dataclass
class Hub:
    """A running JupyterHub (use :func:`start_hub` to make one)."""

    proc: subprocess.Popen
    port: int  # the proxy's public port: the hub's address for browsers
    api_port: int  # the proxy's API
    hub_port: int  # the hub itself, behind the proxy
    api_token: str
    password: str
    users: tuple[str, ...]
    dir: Path
    log_path: Path
    _log_file: object = field(repr=False, default=None)
    seen: dict = field(default_factory=dict)  # pid -> psutil.Process: every process of the hub's tree seen

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def home(self, user: str) -> Path:
        return self.dir / "home" / user

    def log_text(self, last_chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-last_chars:]
        except OSError as exc:
            return f"<could not read the hub's log: {exc}>"

    def api(self, method: str, path: str, body: dict | None = None, timeout: float = 10.0):
        """Call the hub's REST API (/hub/api/...) through the proxy with the test service's token."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base_url}/hub/api/{path.lstrip('/')}", data=data, method=method,
                                     headers={"Authorization": f"token {self.api_token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    # -- processes ----------------------------------------------------------

    def processes(self) -> list[psutil.Process]:
        """The hub and every process below it now (proxy, users' servers, their kernels); each is also
        remembered, so that :meth:`stop` finds it even if its parent has gone."""
        try:
            hub = psutil.Process(self.proc.pid)
            tree = [hub, *hub.children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            self.seen.setdefault(p.pid, p)
        return tree

    def listening(self) -> list[tuple[str, int, str, int]]:
        """(command line, pid, address, port) of every listening TCP socket of the hub's tree."""
        found = []
        for p in self.processes():
            try:
                for conn in p.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN:
                        found.append((" ".join(p.cmdline())[:200], p.pid, conn.laddr.ip, conn.laddr.port))
            except psutil.Error:
                pass
        return found

    def not_loopback(self) -> list[tuple[str, int, str, int]]:
        return [s for s in self.listening() if not ipaddress.ip_address(s[2].split("%")[0]).is_loopback]

    # -- lifecycle ----------------------------------------------------------

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until the hub answers through the proxy (both are up and the hub's route is set)."""
        deadline, last = time.monotonic() + timeout, "no attempt yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterHub exited with code {self.proc.returncode} before it was ready.\n"
                                   f"--- hub log ---\n{self.log_text()}")
            try:
                if "version" in (self.api("GET", "", timeout=3.0) or {}):
                    return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.25)
        raise RuntimeError(f"JupyterHub did not answer within {timeout:.0f} s (last error: {last}).\n"
                           f"--- hub log ---\n{self.log_text()}")

    def stop_servers(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Ask the hub to stop every user's server (their kernels stop with them) and wait for it."""
        for user in self.users:
            try:
                self.api("DELETE", f"users/{user}/server", timeout=timeout)
            except (urllib.error.URLError, OSError, ValueError):
                pass  # no server running (400), or the hub is gone: the kill below is the net
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not any(self.api("GET", f"users/{u}")["servers"] for u in self.users):
                    return
            except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
                return
            time.sleep(0.25)

    def stop(self) -> tuple[list[str], list[str]]:
        """Stop everything.  Returns (processes that had to be killed, processes still alive after
        that); both empty when everything shut down cleanly."""
        self.processes()
        forced: list[str] = []
        if self.proc.poll() is None:
            self.stop_servers()
            self.processes()
            try:  # the hub stops the proxy (and any server left) on its way out
                self.api("POST", "shutdown", {"servers": True, "proxy": True}, timeout=5.0)
            except (urllib.error.URLError, OSError, ValueError):
                self.proc.terminate()
        # Then every process seen in the tree (the proxy, servers and kernels run in sessions of their own).
        still = end_process_group(self.proc, "jupyterhub", forced,
                                  [p for pid, p in self.seen.items() if pid != self.proc.pid])
        if self._log_file is not None:
            self._log_file.close()
        return forced, [f"pid {p.pid}" for p in still]


def start_hub(tmp_dir: Path, users: tuple[str, ...], proxy: str) -> Hub:
    """Start JupyterHub for ``users`` (one shared password) with ``proxy`` as configurable-http-proxy.
    Each user's home is ``tmp_dir/home/USER``, with JupyterLab settings for the tests in it."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for user in users:  # as lab_server.py sets JupyterLab up: no news prompt, every cell in the DOM
        _write_user_settings(tmp_dir / "home" / user / ".jupyter" / "lab" / "user-settings")
    bin_dir = Path(sys.executable).parent  # this venv: the course is installed here
    args = [
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
        "--ServerApp.shutdown_no_activity_timeout=900",  # a safety net if the test dies without teardown
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")  # the local spawner does not switch users; CI runs as root
    ports = [free_port() for _ in range(3)]
    while len(set(ports)) < 3:
        ports = [free_port() for _ in range(3)]
    public_port, api_port, hub_port = ports
    api_token, password = secrets.token_hex(16), secrets.token_hex(8)
    config = tmp_dir / "jupyterhub_config.py"
    config.write_text(CONFIG.format(
        db_url=f"sqlite:///{tmp_dir / 'jupyterhub.sqlite'}", cookie_secret=str(tmp_dir / "jupyterhub_cookie_secret"),
        hub_pid=str(tmp_dir / "jupyterhub.pid"), proxy_pid=str(tmp_dir / "jupyterhub-proxy.pid"),
        home_template=str(tmp_dir / "home" / "{username}"), public_port=public_port, api_port=api_port, hub_port=hub_port, proxy=[proxy],
        proxy_token=secrets.token_hex(16), password=password, users=set(users),
        singleuser=str(bin_dir / "jupyterhub-singleuser"), args=args,
        environment={"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"},
        service=SERVICE, api_token=api_token))
    log_path = tmp_dir / "jupyterhub.log"
    log_file = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)], cwd=tmp_dir,
                            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                            start_new_session=True)
    hub = Hub(proc, public_port, api_port, hub_port, api_token, password, tuple(users), tmp_dir, log_path, log_file)
    try:
        hub.wait_ready()
    except BaseException:
        hub.stop()
        raise
    hub.processes()
    return hub
