"""Train the course model on synthetic scenes and write its checkpoint.

    python -m course_utils.train            # writes course_utils/checkpoints/coursenet.pt
    python -m course_utils.train --shortcut # writes course_utils/checkpoints/shortcutnet.pt (lesson 10)
    python -m course_utils.train --debiased # the shortcut model retrained on balanced scenes:
                                            # course_utils/checkpoints/debiasednet.pt (lesson 10)

Every epoch draws fresh scenes (the generator is cheap), so the model never
sees the same image twice and never sees the held-out scenes, which come from
another seed. Seeded throughout: the same command on the same machine gives the
same weights.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .coursenet import MEAN, STD, CourseNet, CourseTransform
from .hooks import get_layer, model_guard
from .models import CHECKPOINTS, MODELS
from .scenes import CLASSES, make_scenes

TRAIN_SEED = 0  # scenes for training: seed 0, a new range of indices per epoch
HELDOUT_SEED = 1  # the fixed held-out set: seed 1, indices 0..599
HELDOUT_SIZE = 600
DEFAULT_CHECKPOINT = CHECKPOINTS / MODELS["course"].weights
SHORTCUT_CHECKPOINT = CHECKPOINTS / MODELS["shortcut"].weights
#: Lesson 10's shortcut model: trained briefly on scenes whose background gives the class away.
SHORTCUT_SETTINGS = {"bias": 0.95, "epochs": 3, "per_epoch": 3000}
DEBIASED_CHECKPOINT = CHECKPOINTS / MODELS["debiased"].weights
#: Lesson 10's fix: the shortcut model's weights retrained with the course model's recipe on balanced
#: scenes (``bias=0``: the six signature backgrounds, drawn with no link to the class), for twice as
#: many epochs: after the 12 that train the course model from random weights it is only at 51 %.
DEBIASED_SETTINGS = {"bias": 0.0, "epochs": 24, "per_epoch": 6000}


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
          bias: float | None = None, init: dict | None = None, history: list | None = None):
    """Train a CourseNet; ``bias`` trains on biased scenes (see ``make_scenes``). ``init``: start
    from this state dict instead of random weights; ``history``: a list that receives each epoch's
    held-out accuracy. Returns the model and its held-out accuracy (on held-out scenes of the same kind)."""
    torch.manual_seed(seed)
    model = CourseNet(n_classes=len(CLASSES))
    if init is not None:
        model.load_state_dict(init)
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
        if history is not None:
            history.append(acc)
    bar.close()
    return model, acc


def retrain_head(model: nn.Module, x: torch.Tensor, y, *, layer: str = "fc", weight_decay: float = 1e-3,
                 max_iter: int = 200) -> nn.Module:
    """A copy of ``model`` whose last linear layer (``layer``) is refit on ``(x, y)``; ``model`` is untouched.

    Deep feature reweighting (Kirichenko, Izmailov and Wilson 2023, "Last Layer Re-Training is
    Sufficient for Robustness to Spurious Correlations", ICLR 2023): keep the features a network
    learned on biased data, and fit only the final linear layer again, on a small set where the
    spurious feature is unrelated to the class. It works when the features already hold what the
    class needs. Here the features (the layer's inputs, computed in eval mode) are standardised and a
    multinomial logistic regression with an L2 penalty ``weight_decay * |W|²`` is fit by full-batch
    L-BFGS from zero weights (the paper uses an L1 penalty and averages several balanced subsets),
    then folded back into the layer. No randomness: the same inputs give the same weights.
    ``x``: preprocessed images (N, C, H, W); ``y``: their class indices (N,).
    """
    labels = torch.as_tensor(y)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x is a batch of preprocessed images (N, C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if labels.ndim != 1 or len(labels) != len(x) or labels.is_floating_point():
        raise ValueError(f"y holds one class index per image: {len(x)} integers, got shape {tuple(labels.shape)}")
    new = copy.deepcopy(model)
    head = get_layer(new, layer)
    if not isinstance(head, nn.Linear) or head.bias is None:
        raise ValueError(f"{layer!r} is a {type(head).__name__}"
                         f"{' without a bias' if isinstance(head, nn.Linear) else ''}; "
                         f"retrain_head refits a Linear layer with a bias")
    n_classes = head.out_features
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"class indices run from 0 to {n_classes - 1}; y has {labels.min()} .. {labels.max()}")
    feats = []
    handle = head.register_forward_pre_hook(lambda module, args: feats.append(args[0].detach().flatten(1)))
    try:
        with model_guard(new), torch.no_grad():
            new.eval()
            for i in range(0, len(x), 200):
                new(x[i : i + 200])
    finally:
        handle.remove()
    f = torch.cat(feats).double().cpu()
    mu, sd = f.mean(0), f.std(0).clamp(min=1e-6)
    z, target = (f - mu) / sd, labels.long().cpu()
    w = torch.zeros(f.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, target) + weight_decay * (w**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w, b = w.detach() / sd[:, None], b.detach() - (mu / sd) @ w.detach()  # z @ w + b, in terms of f
    with torch.no_grad():
        head.weight.copy_(w.T.to(head.weight))
        head.bias.copy_(b.to(head.bias))
    return new


def _course_checkpoint_state(path: Path) -> dict:
    """The state dict of a course checkpoint (the weights a retraining starts from)."""
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--per-epoch", type=int, default=6000, help="fresh scenes per epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--shortcut", action="store_true",
                   help=f"train lesson 10's shortcut model instead ({SHORTCUT_SETTINGS}) "
                        f"into {SHORTCUT_CHECKPOINT.name}")
    p.add_argument("--debiased", action="store_true",
                   help=f"retrain the shortcut model's weights on balanced scenes instead ({DEBIASED_SETTINGS}) "
                        f"into {DEBIASED_CHECKPOINT.name}")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: the same weights on every machine, and no slowdown "
                        "when other programs share the cores)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.shortcut and args.debiased:
        p.error("--shortcut and --debiased write different models: choose one")
    bias, init, history = None, None, []
    if args.shortcut or args.debiased:
        settings = SHORTCUT_SETTINGS if args.shortcut else DEBIASED_SETTINGS
        args.epochs, args.per_epoch, bias = (settings[k] for k in ("epochs", "per_epoch", "bias"))
    if args.debiased:
        init = _course_checkpoint_state(SHORTCUT_CHECKPOINT)
    out = args.out or (SHORTCUT_CHECKPOINT if args.shortcut else DEBIASED_CHECKPOINT if args.debiased
                       else DEFAULT_CHECKPOINT)
    start = time.perf_counter()
    model, acc = train(args.epochs, args.per_epoch, seed=args.seed, bias=bias, init=init, history=history)
    minutes = (time.perf_counter() - start) / 60
    checkpoint = {
        "state_dict": {k: v.contiguous() for k, v in model.state_dict().items()},
        "classes": list(CLASSES),
        "mean": list(MEAN),
        "std": list(STD),
        "heldout_accuracy": acc,
        "heldout": {"seed": HELDOUT_SEED, "size": HELDOUT_SIZE},
        "train": {"epochs": args.epochs, "per_epoch": args.per_epoch, "seed": args.seed, "bias": bias,
                  "threads": args.threads, "minutes": round(minutes, 1), "torch": str(torch.__version__),
                  "history": history},
    }
    if init is not None:
        checkpoint["train"]["init"] = SHORTCUT_CHECKPOINT.name
        biased = make_scenes(HELDOUT_SIZE, seed=HELDOUT_SEED, bias=SHORTCUT_SETTINGS["bias"])
        checkpoint["heldout_accuracy_biased"] = accuracy(model, biased.images, biased.labels[:, 0])
        print(f"on biased held-out scenes: {checkpoint['heldout_accuracy_biased']:.2%}")
    if bias is not None:
        checkpoint["heldout"]["bias"] = bias
    if bias:
        unbiased = make_scenes(HELDOUT_SIZE, seed=HELDOUT_SEED, bias=0.0)
        checkpoint["heldout_accuracy_unbiased"] = accuracy(model, unbiased.images, unbiased.labels[:, 0])
        print(f"on unbiased held-out scenes: {checkpoint['heldout_accuracy_unbiased']:.2%}")
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)
    size_kb = out.stat().st_size / 1024
    print(f"held-out accuracy {acc:.2%}; wrote {out} ({size_kb:.0f} KB) in {minutes:.1f} min")


if __name__ == "__main__":
    main()
