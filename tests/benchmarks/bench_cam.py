"""CAM-family cost as a ratio to the forward pass, measured in one run (CPU, random weights).

    .venv/bin/python tests/benchmarks/bench_cam.py [--models resnet50 vgg16 course] [--reps 7]

Per model, the median over ``reps`` interleaved rounds of: the forward pass alone
(``torch.no_grad``), Grad-CAM at the last block (forward + backward to that block),
a class switch on a kept forward pass (``GradCAM.map`` for another class), CAM
(where it applies) and Guided Grad-CAM, each divided by the forward-only median.
Then the explorers' response on the course model: the compute of one class switch,
and the whole redraw (compute + drawing + PNG encoding), in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from course_utils.cam import GradCAM, cam, grad_cam, guided_grad_cam
from course_utils.coursenet import CourseNet

LAST = {"resnet50": "layer4", "resnet18": "layer4", "vgg16": "features.29", "course": "features.relu5"}
SIZES = {"resnet50": 224, "resnet18": 224, "vgg16": 224, "course": 64}


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "course":
        return CourseNet().eval()
    return getattr(torchvision.models, name)(weights=None).eval()


def medians(cases: dict, reps: int) -> dict[str, float]:
    for f in cases.values():
        f()
    times = {k: [] for k in cases}
    for _ in range(reps):
        for k, f in cases.items():
            start = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_model(name: str, reps: int) -> None:
    model, layer = build(name), LAST[name]
    x = torch.randn(1, 3, SIZES[name], SIZES[name])
    kept = GradCAM(model, x, layer)
    counter = iter(range(10**9))

    def forward():
        with torch.no_grad():
            model(x)

    cases = {
        "forward only": forward,
        "Grad-CAM (last block)": lambda: grad_cam(model, x, 3, layer=layer),
        "class switch (kept forward)": lambda: kept.map(next(counter) % 6, layer),
        "Guided Grad-CAM": lambda: guided_grad_cam(model, x, 3, layer=layer),
    }
    if name != "vgg16":
        cases["CAM"] = lambda: cam(model, x, 3, layer=layer)
    med = medians(cases, reps)
    base = med["forward only"]
    print(f"\n{name} at {SIZES[name]}², batch 1: forward only {base * 1000:.1f} ms (median of {reps})")
    for k, v in med.items():
        print(f"  {k:30s} {v / base:5.2f} × forward")


def bench_explorers(reps: int) -> None:
    from course_utils.widgets import GradCAMExplorer

    ex = GradCAMExplorer(models=["course"])
    g = ex._input()[3]
    classes = iter(range(10**9))
    med = medians({
        "class switch: compute": lambda: g.map(next(classes) % 6, "features.relu5"),
        "class switch: whole redraw": lambda: setattr(ex.controls["target"], "value", next(classes) % 6),
    }, reps)
    print("\nGrad-CAM explorer on the course model (median):")
    for k, v in med.items():
        print(f"  {k:30s} {v * 1000:6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "vgg16", "course"], choices=list(SIZES))
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, random weights")
    for name in args.models:
        bench_model(name, args.reps)
    bench_explorers(args.reps)


if __name__ == "__main__":
    main()
