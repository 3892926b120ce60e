"""Activation-maximization steps per second, measured in one run (CPU, random weights).

    .venv/bin/python tests/benchmarks/bench_optvis.py [--steps 20] [--size 128]

A channel of ResNet-50's ``layer3`` at 128², Fourier image with the standard
transforms, batch 1, three ways, interleaved:

* ``course_utils.optvis.visualize`` — the forward pass stops after ``layer3``
  and the parameters are frozen (only the image gets a gradient);
* "full network, frozen" — the same loop written inline, running the whole
  network (``layer4``, pooling and ``fc`` included) with frozen parameters;
* "full network, as lucent" — the whole network with the parameters left
  trainable, so ``backward()`` also computes every weight's gradient: what a
  full-network tool that does not freeze the model pays (lucent's render loop
  runs the whole model and calls ``loss.backward()``).

Each is reported in steps per second and as a ratio to ours.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision

from course_utils import optvis

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def full_network_loop(model, size: int, steps: int, freeze: bool) -> None:
    """A plain loop on the whole network: forward to the logits, objective read by a hook."""
    param = optvis.fourier(1, size, seed=0)
    opt = torch.optim.Adam(param.params, lr=0.05)
    transforms = optvis.standard_transforms(size)
    gen = torch.Generator().manual_seed(1)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    kept = {}
    handle = model.layer3.register_forward_hook(lambda m, i, o: kept.__setitem__("a", o))
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(not freeze)
    try:
        for _ in range(steps):
            x = (transforms(param(), gen) - mean) / std
            model(x)  # the logits are computed and thrown away
            loss = -kept["a"][:, 11].mean()
            opt.zero_grad()
            model.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        handle.remove()
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    n, size = args.steps, args.size

    cases = {
        "course_utils.optvis (stops at layer3)": lambda: optvis.visualize(
            model, optvis.channel("layer3", 11), param=optvis.fourier(1, size, seed=0), size=size, steps=n,
            transforms=optvis.standard_transforms(size), mean=MEAN, std=STD, progress=False),
        "full network, frozen": lambda: full_network_loop(model, size, n, freeze=True),
        "full network, as lucent": lambda: full_network_loop(model, size, n, freeze=False),
    }
    for f in cases.values():  # warm up
        f()
    times = {k: [] for k in cases}
    for _ in range(args.reps):
        for k, f in cases.items():
            start = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - start)
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    ours = rate["course_utils.optvis (stops at layer3)"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ResNet-50 layer3 channel 11, "
          f"{size}², {n} steps, median of {args.reps}")
    for k, r in rate.items():
        print(f"  {k:40s} {r:6.2f} steps/s   ours ÷ this: {ours / r:4.2f}×")


if __name__ == "__main__":
    main()
