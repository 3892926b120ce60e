"""What a class costs: memory and CPU per student, and how many students two cores serve at once.

    python tests/benchmarks/classroom.py --markdown tests/benchmarks/classroom.md   # make classroom

Three parts, each measured on this machine (not part of ``make test``; about 30 minutes):

1. **The student's server.** A throw-away JupyterHub (``tests/hub/hub_server.py``, the one the
   classroom test runs) starts a student's single-user server through its REST API; the server's
   memory (RSS) is read once it answers, before any kernel. Skipped, with a message, where
   configurable-http-proxy is missing.
2. **Each lesson, as a student runs it** (Run All) in a fresh kernel: the kernel's peak memory
   (RSS of the kernel and its children, sampled every 0.1 s), its memory when the lesson has run
   (what an open, idle kernel keeps), its CPU seconds (user + system) and the wall time. Twice:
   *offline* (the course model and EfficientNet-Lite0, which ship with the course: a laptop
   without network, CI) and *with weights* (a cache holding ResNet-50's, VGG-16's and
   ResNet-18's weights, as after ``python -m course_utils.download``; random weights of the
   same shapes here, so the lessons load and run those models exactly as with the real ones).
3. **Many students at once.** K processes, each a student's kernel with lesson 06's Grad-CAM
   explorer on EfficientNet-Lite0 (the model every lesson shows), each moving a control every
   few seconds (a think time drawn uniformly between 2 and 6 s; the change alternates between a
   new photo and another class); the explorer's answer time per change, median and 90th
   percentile over every change of every student, for growing K. Twice: with torch's default
   threads (one per core in every kernel) and with ``OMP_NUM_THREADS=1`` per kernel.

The report gives the numbers and, from them, the sizing rule the README's classroom guide uses.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MB = 1024 * 1024
#: The lessons, in the README's order (lesson 11's solutions are not a student's run).
LESSONS = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
#: The explorer the students of part 3 use, and the changes they make in turn.
CROWD_EXPLORER, CROWD_MODEL = "GradCAMExplorer", "efficientnet_lite0"
THINK_S = (2.0, 6.0)
TAG = "@@classroom "  # marks a student process's answers on its stdout (anything else there is ignored)


# --- part 1: the single-user server on a real hub --------------------------------------------------------


def server_memory(work: Path) -> dict:
    """RSS (MB) of one student's single-user server, started by a throw-away hub, before any kernel."""
    import urllib.error

    from tests.hub.hub_server import find_proxy, start_hub

    proxy = find_proxy()
    if proxy is None:
        return {"skipped": "configurable-http-proxy is not installed (make setup installs it where npm is)"}
    hub = start_hub(work / "hub", ("student",), proxy)
    try:
        hub.api("POST", "users/student/server")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                server = hub.api("GET", "users/student")["servers"].get("", {})
            except (urllib.error.URLError, OSError, KeyError):
                server = {}
            if server.get("ready"):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the student's server did not start within 120 s\n{hub.log_text()}")
        time.sleep(3.0)  # let it settle (extensions load lazily)
        servers = [p for p in hub.processes() if "jupyterhub-singleuser" in " ".join(p.cmdline())]
        if len(servers) != 1:
            raise RuntimeError(f"expected one single-user server in the hub's tree, found {len(servers)}")
        hub_rss = sum(p.memory_info().rss for p in hub.processes() if p not in servers)
        return {"server_mb": servers[0].memory_info().rss / MB, "hub_and_proxy_mb": hub_rss / MB}
    finally:
        hub.stop()


# --- part 2: each lesson in a fresh kernel ---------------------------------------------------------------


@dataclass
class LessonCost:
    lesson: str
    weights: bool
    peak_mb: float
    end_mb: float
    cpu_s: float
    wall_s: float


class _Sampler(threading.Thread):
    """The largest RSS of a process and its children, read every ``every`` seconds until stopped."""

    def __init__(self, proc, every: float = 0.1):
        super().__init__(daemon=True)
        self.proc, self.every, self.peak, self.done = proc, every, 0, threading.Event()

    def rss(self) -> int:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, self.rss())
            self.done.wait(self.every)

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak, self.rss())


def run_lesson(path: Path, torch_home: Path, weights: bool) -> LessonCost:
    """Run every cell of ``path`` in a fresh kernel (TORCH_HOME = ``torch_home``) and measure the kernel."""
    import nbformat
    import psutil
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(torch_home)  # the kernel inherits it
    try:
        client = NotebookClient(nb, timeout=900, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        with client.setup_kernel():
            kernel = psutil.Process(client.km.provisioner.pid)
            sampler = _Sampler(kernel)
            sampler.start()
            cpu0, start = kernel.cpu_times(), time.perf_counter()
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            wall = time.perf_counter() - start
            cpu1 = kernel.cpu_times()
            time.sleep(0.5)  # background work of the last cell (an explorer's thread) ends
            end = sampler.rss()
            peak = sampler.stop()
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME")
        else:
            os.environ["TORCH_HOME"] = old
    cpu = sum(cpu1[:2]) - sum(cpu0[:2]) + sum(cpu1[2:4]) - sum(cpu0[2:4])  # children too (TensorBoard's writer)
    return LessonCost(path.stem, weights, peak / MB, end / MB, cpu, wall)


def random_weights_home(home: Path) -> Path:
    """A torch home whose hub cache holds random weights for every ImageNet model the course downloads,
    under the file names torchvision's downloads have: the lessons then take their with-weights path."""
    import torch

    from course_utils.models import MODELS

    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for record in MODELS.values():
        if not record.shipped:
            torch.save(record.build().state_dict(), ckpt / os.path.basename(record.tv_weights.url))
    return home


# --- part 3: many students at once -----------------------------------------------------------------------


def student(seed: int) -> None:
    """One student's kernel (a subprocess of :func:`crowd`): build the explorer, say ``ready``, then for
    each ``run SECONDS`` line change a control every few seconds for that long and answer with the
    seconds each change took to its new picture (JSON); ``quit`` ends it."""
    sys.path.insert(0, str(Path(__file__).parent))
    import report as R

    from course_utils import widgets

    extra, changes = R.EXPLORERS[CROWD_EXPLORER]
    explorer = R._construct(getattr(widgets, CROWD_EXPLORER), extra, CROWD_MODEL)
    wanted = [c for c in changes if c.control in ("image", "target")]
    cycles = {c.label: R._Cycle(R.NEW_PHOTOS if c.values is R.NEW_IMAGES else c.values) for c in wanted}
    rng = random.Random(seed)

    def change(c) -> float:
        R._forget(explorer, c.forget)
        value = cycles[c.label].next(explorer, c.control)
        start = time.perf_counter()
        explorer.controls[c.control].value = value
        elapsed = time.perf_counter() - start
        if explorer.message.value:
            raise RuntimeError(explorer.message.value)
        return elapsed

    for c in wanted:  # warm up
        change(c)
    print(f"{TAG}ready", flush=True)
    for line in sys.stdin:
        if line.startswith("quit"):
            return
        seconds = float(line.split()[1])
        times, end, i = [], time.monotonic() + seconds, 0
        time.sleep(rng.uniform(0, THINK_S[1]))  # the students do not start together
        while time.monotonic() < end:
            times.append(change(wanted[i % len(wanted)]))
            i += 1
            time.sleep(rng.uniform(*THINK_S))
        print(TAG + json.dumps(times), flush=True)


def _answer(proc) -> str:
    """The next tagged line of a student process (what else it prints is skipped); '' if it ended."""
    for line in proc.stdout:
        if line.startswith(TAG):
            return line[len(TAG):].strip()
    return ""


def crowd(sizes: list[int], seconds: float, threads: int | None) -> list[dict]:
    """Answer times of the explorer with K students at once, for each K in ``sizes``."""
    import psutil

    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    procs = [subprocess.Popen([sys.executable, __file__, "--student", str(i)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env, cwd=REPO) for i in range(max(sizes))]
    rows = []
    try:
        for p in procs:
            if _answer(p) != "ready":
                raise RuntimeError("a student's kernel did not start (run it alone: classroom.py --student 0)")
        kernel_mb = statistics.median(psutil.Process(p.pid).memory_info().rss for p in procs) / MB
        for k in sizes:
            for p in procs[:k]:
                p.stdin.write(f"run {seconds}\n")
                p.stdin.flush()
            times = [t for p in procs[:k] for t in json.loads(_answer(p))]
            times.sort()
            rows.append({"students": k, "changes": len(times), "median_s": statistics.median(times),
                         "p90_s": times[math.ceil(0.9 * len(times)) - 1], "max_s": times[-1],  # nearest rank
                         "kernel_mb": kernel_mb})
            print(f"  {k:3d} students: {len(times)} changes, median {rows[-1]['median_s']:.2f} s, "
                  f"90th percentile {rows[-1]['p90_s']:.2f} s", flush=True)
    finally:
        for p in procs:
            try:
                p.stdin.write("quit\n")
                p.stdin.close()
            except OSError:
                pass
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return rows


# --- the report --------------------------------------------------------------------------------------------


def served(rows: list[dict], limit_s: float = 1.0) -> int:
    """The most students measured whose explorers' 90th-percentile answer stays under ``limit_s``."""
    ok = [r["students"] for r in rows if r["p90_s"] < limit_s]
    return max(ok, default=0)


def markdown(server: dict, lessons: list[LessonCost], crowds: dict[str, list[dict]], cores: int) -> str:
    lines = ["# What a class costs", "",
             f"`tests/benchmarks/classroom.py`, {time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, "
             f"{cores} cores, load {os.getloadavg()[0]:.1f} at the end.", ""]
    lines += ["## The student's server (JupyterHub, no kernel)", ""]
    if "skipped" in server:
        lines += [f"Skipped: {server['skipped']}.", ""]
    else:
        lines += [f"Single-user server: {server['server_mb']:.0f} MB. The hub and its proxy: "
                  f"{server['hub_and_proxy_mb']:.0f} MB in all (once per hub).", ""]
    lines += ["## Each lesson, Run All in a fresh kernel", "",
              "| lesson | peak MB offline | after MB offline | CPU s offline | peak MB with weights | "
              "after MB with weights | CPU s with weights | wall s with weights |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    by = {(c.lesson, c.weights): c for c in lessons}
    for name in dict.fromkeys(c.lesson for c in lessons):
        off, on = by.get((name, False)), by.get((name, True))
        cells = [f"{off.peak_mb:.0f} | {off.end_mb:.0f} | {off.cpu_s:.0f}" if off else "— | — | —",
                 f"{on.peak_mb:.0f} | {on.end_mb:.0f} | {on.cpu_s:.0f} | {on.wall_s:.0f}" if on else "— | — | — | —"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for label, rows in crowds.items():
        lines += [f"## Students at once: {CROWD_EXPLORER} on {CROWD_MODEL}, {label}", "",
                  f"Each student changes a control every {THINK_S[0]:.0f}–{THINK_S[1]:.0f} s (a new photo, "
                  "then another class); answer time from the change to the new picture.", "",
                  "| students | changes | median s | 90th percentile s | slowest s |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['students']} | {r['changes']} | {r['median_s']:.2f} | {r['p90_s']:.2f} | {r['max_s']:.2f} |"
                  for r in rows]
        lines += ["", f"Served with the 90th percentile under 1 s: {served(rows)} students on {cores} cores. "
                  f"Each student's process with the explorer open: {rows[0]['kernel_mb']:.0f} MB (median).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--lessons", nargs="*", help="lesson files to run (default: every lesson)")
    parser.add_argument("--crowd", type=int, nargs="*", default=[1, 4, 8, 16, 24, 32],
                        help="numbers of students at once")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long each crowd size runs")
    parser.add_argument("--no-hub", action="store_true", help="skip part 1")
    parser.add_argument("--student", type=int, help=argparse.SUPPRESS)  # a worker of part 3
    args = parser.parse_args(argv)
    if args.student is not None:
        student(args.student)
        return 0
    from tqdm import tqdm

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("part 1: the student's server on a throw-away JupyterHub", flush=True)
        server = {"skipped": "--no-hub"} if args.no_hub else server_memory(work)
        print(f"  {server}", flush=True)
        names = args.lessons if args.lessons is not None else LESSONS
        paths = [REPO / "notebooks" / Path(n).name for n in names]
        offline, weights = work / "offline", random_weights_home(work / "weights")
        offline.mkdir()
        lessons = []
        for path, with_weights in tqdm([(p, w) for p in paths for w in (False, True)], desc="part 2: lessons",
                                       unit="run"):
            lessons.append(run_lesson(path, weights if with_weights else offline, with_weights))
            c = lessons[-1]
            tqdm.write(f"  {c.lesson} {'with weights' if c.weights else 'offline'}: peak {c.peak_mb:.0f} MB, "
                       f"after {c.end_mb:.0f} MB, {c.cpu_s:.1f} CPU s, {c.wall_s:.1f} s")
    crowds = {}
    if args.crowd:
        for label, threads in (("torch's default threads", None), ("OMP_NUM_THREADS=1 per kernel", 1)):
            print(f"part 3: students at once, {label}", flush=True)
            crowds[label] = crowd(sorted(set(args.crowd)), args.seconds, threads)
    text = markdown(server, lessons, crowds, cores)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
