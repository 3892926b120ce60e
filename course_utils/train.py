"""Train the course model on synthetic scenes and write its checkpoint.

    python -m course_utils.train            # writes course_utils/checkpoints/coursenet.pt
    python -m course_utils.train --shortcut # writes course_utils/checkpoints/shortcutnet.pt (lesson 10)

Every epoch draws fresh scenes (the generator is cheap), so the model never
sees the same image twice and never sees the held-out scenes, which come from
another seed. Seeded throughout: the same command on the same machine gives the
same weights.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .coursenet import MEAN, STD, CourseNet, CourseTransform
from .hooks import model_guard
from .models import CHECKPOINTS, MODELS
from .scenes import CLASSES, make_scenes

TRAIN_SEED = 0  # scenes for training: seed 0, a new range of indices per epoch
HELDOUT_SEED = 1  # the fixed held-out set: seed 1, indices 0..599
HELDOUT_SIZE = 600
DEFAULT_CHECKPOINT = CHECKPOINTS / MODELS["course"].weights
SHORTCUT_CHECKPOINT = CHECKPOINTS / MODELS["shortcut"].weights
#: Lesson 10's shortcut model: trained briefly on scenes whose background gives the class away.
SHORTCUT_SETTINGS = {"bias": 0.95, "epochs": 3, "per_epoch": 3000}


def to_batch(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 scenes -> normalised (N, 3, H, W) float tensor, by the course model's transform."""
    transform = CourseTransform()
    x = torch.stack([transform(img) for img in torch.from_numpy(images).permute(0, 3, 1, 2)])
    # Channels last, as the scenes come and as the course's weights were trained: convolutions round
    # differently in another layout, so training would no longer give the same weights.
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with model_guard(model):
        model.eval()
        device = next(model.parameters()).device
        preds = torch.cat([model(to_batch(images[i : i + 200]).to(device)).argmax(1).cpu()
                           for i in range(0, len(images), 200)])
    return float((preds.numpy() == labels).mean())


def train(epochs: int = 12, per_epoch: int = 6000, batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
          bias: float | None = None):
    """Train a fresh CourseNet; ``bias`` trains on biased scenes (see ``make_scenes``).
    Returns the model and its held-out accuracy (on held-out scenes of the same kind)."""
    torch.manual_seed(seed)
    model = CourseNet(n_classes=len(CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (per_epoch // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)

    heldout = make_scenes(HELDOUT_SIZE, seed=HELDOUT_SEED, bias=bias)
    held_labels = heldout.labels[:, 0]
    bar = tqdm(total=steps, desc="training", unit="batch")
    for epoch in range(epochs):
        data = make_scenes(per_epoch, seed=TRAIN_SEED + seed, start=epoch * per_epoch, bias=bias)
        x_all, y_all = to_batch(data.images), torch.from_numpy(data.labels[:, 0])
        order = torch.randperm(per_epoch, generator=gen)
        model.train()
        for b in range(per_epoch // batch_size):
            idx = order[b * batch_size : (b + 1) * batch_size]
            loss = loss_fn(model(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        acc = accuracy(model, heldout.images, held_labels)
        bar.write(f"epoch {epoch + 1}/{epochs}: held-out accuracy {acc:.2%}")
    bar.close()
    return model, acc


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--per-epoch", type=int, default=6000, help="fresh scenes per epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--shortcut", action="store_true",
                   help=f"train lesson 10's shortcut model instead ({SHORTCUT_SETTINGS}) "
                        f"into {SHORTCUT_CHECKPOINT.name}")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: the same weights on every machine, and no slowdown "
                        "when other programs share the cores)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    bias = None
    if args.shortcut:
        args.epochs, args.per_epoch, bias = (SHORTCUT_SETTINGS[k] for k in ("epochs", "per_epoch", "bias"))
    out = args.out or (SHORTCUT_CHECKPOINT if args.shortcut else DEFAULT_CHECKPOINT)
    start = time.perf_counter()
    model, acc = train(args.epochs, args.per_epoch, seed=args.seed, bias=bias)
    minutes = (time.perf_counter() - start) / 60
    checkpoint = {
        "state_dict": {k: v.contiguous() for k, v in model.state_dict().items()},
        "classes": list(CLASSES),
        "mean": list(MEAN),
        "std": list(STD),
        "heldout_accuracy": acc,
        "heldout": {"seed": HELDOUT_SEED, "size": HELDOUT_SIZE},
        "train": {"epochs": args.epochs, "per_epoch": args.per_epoch, "seed": args.seed, "bias": bias,
                  "threads": args.threads, "minutes": round(minutes, 1), "torch": str(torch.__version__)},
    }
    if bias is not None:
        unbiased = make_scenes(HELDOUT_SIZE, seed=HELDOUT_SEED, bias=0.0)
        checkpoint["heldout_accuracy_unbiased"] = accuracy(model, unbiased.images, unbiased.labels[:, 0])
        checkpoint["heldout"]["bias"] = bias
        print(f"on unbiased held-out scenes: {checkpoint['heldout_accuracy_unbiased']:.2%}")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)
    size_kb = out.stat().st_size / 1024
    print(f"held-out accuracy {acc:.2%}; wrote {out} ({size_kb:.0f} KB) in {minutes:.1f} min")


if __name__ == "__main__":
    main()
