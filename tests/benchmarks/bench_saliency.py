"""Saliency cost as a ratio to the forward pass, measured in one run (CPU, random weights).

    .venv/bin/python tests/benchmarks/bench_saliency.py [--models vgg16 resnet50 course] [--reps 7]

For each model: the median time of each method over ``reps`` rounds, the methods
interleaved round by round so that machine noise hits them alike, divided by
the median forward-only time (``torch.no_grad``) of the same run. "autograd floor"
is a plain forward + ``torch.autograd.grad`` to the input written inline, with no
course_utils code: any gradient to the input costs at least that, so it is the
yardstick for the overhead of the course's guard and ReLU rules.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from course_utils import saliency
from course_utils.coursenet import CourseNet

SIZES = {"vgg16": 224, "resnet50": 224, "course": 64}


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "course":
        return CourseNet().eval()
    return getattr(torchvision.models, name)(weights=None).eval()


def autograd_floor(model, x, target):
    xg = x.clone().requires_grad_(True)
    return torch.autograd.grad(model(xg)[0, target], xg)[0]


def bench(name: str, reps: int, smooth_samples: int) -> dict[str, float]:
    model = build(name)
    size = SIZES[name]
    x = torch.randn(1, 3, size, size)
    target = 3

    def forward():
        with torch.no_grad():
            model(x)

    cases = {
        "forward only": forward,
        "autograd floor": lambda: autograd_floor(model, x, target),
        "vanilla gradient": lambda: saliency.vanilla_gradient(model, x, target),
        "guided backprop": lambda: saliency.guided_backprop(model, x, target),
        "deconvnet": lambda: saliency.deconvnet(model, x, target),
        f"SmoothGrad ÷ {smooth_samples} samples": lambda: saliency.smoothgrad(
            model, x, target, samples=smooth_samples, batch_size=smooth_samples, progress=False),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for f in cases.values():  # warm up (allocator, first-call costs)
        f()
    for _ in range(reps):
        for k, f in cases.items():
            start = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    smooth = next(k for k in med if k.startswith("SmoothGrad"))
    med[smooth] /= smooth_samples
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50", "course"], choices=list(SIZES))
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--smoothgrad-samples", type=int, default=8)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, random weights")
    for name in args.models:
        med = bench(name, args.reps, args.smoothgrad_samples)
        base = med["forward only"]
        print(f"\n{name} at {SIZES[name]}²: forward only {base * 1000:.1f} ms (median of {args.reps})")
        for k, v in med.items():
            print(f"  {k:28s} {v / base:5.2f} × forward")
        print(f"  overhead of guided backprop over the autograd floor: "
              f"{med['guided backprop'] / med['autograd floor']:.2f} ×")


if __name__ == "__main__":
    main()
