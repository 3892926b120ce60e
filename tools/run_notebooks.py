"""Execute lesson notebooks in place, storing their outputs and widget state.

    python tools/run_notebooks.py                      # every notebook
    python tools/run_notebooks.py notebooks/00_*.ipynb # some

The stored outputs are what nbval compares a fresh run against, so they must be
those of an *offline* machine: the kernel gets an empty TORCH_HOME (no ImageNet
weights, whatever this machine has cached) and a fixed seed in every notebook.
Widget state is stored so that notebook viewers show the explorers' last picture.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent


def run(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as torch_home:
        old = os.environ.get("TORCH_HOME")
        os.environ["TORCH_HOME"] = torch_home
        try:
            start = time.perf_counter()
            NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            seconds = time.perf_counter() - start
        finally:
            if old is None:
                os.environ.pop("TORCH_HOME")
            else:
                os.environ["TORCH_HOME"] = old
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> None:
    paths = [Path(p) for p in argv] or sorted((REPO / "notebooks").glob("**/*.ipynb"))
    for path in paths:
        if ".ipynb_checkpoints" in path.parts:
            continue
        print(f"{path.relative_to(REPO) if path.is_absolute() else path}: {run(path.resolve()):.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
