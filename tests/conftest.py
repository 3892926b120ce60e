"""Shared fixtures: tiny models with hand-checkable answers, and an ImageNet
weights cache filled with randomly initialised weights (no network, ever)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import torch
import torchvision

REPO = Path(__file__).resolve().parent.parent


def load_script(path: Path, name: str):
    """A script that pytest does not collect (tests/benchmarks), imported by path as module ``name``."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def all_hooks(model: torch.nn.Module) -> int:
    """Every hook of every kind on every module of the model."""
    from course_utils.hooks import hook_counts

    return sum(hook_counts(model).values())


def model_state(model: torch.nn.Module):
    """Everything the course promises to leave unchanged, in a comparable form."""
    return (
        [(n, m.training, getattr(m, "inplace", None), type(m).__name__) for n, m in model.named_modules()],
        [(n, p.requires_grad, p.grad is None) for n, p in model.named_parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
        all_hooks(model),
    )


def assert_same_state(before, after):
    assert before[0] == after[0], "modules, training or inplace flags changed"
    assert before[1] == after[1], "requires_grad or .grad changed"
    assert before[2].keys() == after[2].keys()
    for k in before[2]:
        assert torch.equal(before[2][k], after[2][k]), f"{k} changed"
    assert before[3] == after[3], f"hooks: {before[3]} before, {after[3]} after"


class ForwardCounter:
    """Counts forward passes of a model with a pre-hook (removed on exit)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __enter__(self):
        self.handle = self.model.register_forward_pre_hook(lambda *args: setattr(self, "calls", self.calls + 1))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def assert_each_change_redraws(explorer, changes) -> None:
    """Set each ``(control, value)`` in turn: every change must redraw exactly once,
    give a picture not seen before, and show no error message."""
    seen = {bytes(explorer.view.value)}
    for name, value in changes:
        renders = explorer.renders
        explorer.controls[name].value = value
        assert explorer.renders == renders + 1, f"{name} did not redraw exactly once"
        assert bytes(explorer.view.value) not in seen, f"{name} left the picture unchanged"
        seen.add(bytes(explorer.view.value))
        assert explorer.message.value == "", explorer.message.value


@pytest.fixture(scope="session")
def _random_imagenet_home(tmp_path_factory):
    """A torch home whose hub cache holds random weights for every ImageNet model,
    under the file names torchvision's downloads have (made once per session)."""
    from course_utils.models import MODELS

    home = tmp_path_factory.mktemp("torch_home")
    ckpt_dir = home / "hub" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    torch.manual_seed(0)
    for record in MODELS.values():
        if not record.shipped:
            torch.save(record.build().state_dict(), ckpt_dir / os.path.basename(record.tv_weights.url))
    return home


@pytest.fixture
def imagenet_cache(_random_imagenet_home, monkeypatch):
    """TORCH_HOME pointing at random ImageNet weights, for one test: the course's
    loaders take the same code path as with real weights, with no network."""
    monkeypatch.setenv("TORCH_HOME", str(_random_imagenet_home))
    assert Path(torch.hub.get_dir()) == _random_imagenet_home / "hub"
    return _random_imagenet_home


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """A TORCH_HOME with nothing in it: no ImageNet weights are cached."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly if anything tries to open a connection or a URL."""
    import socket
    import urllib.request

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def resnet18_random():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@functools.cache
def small_boards():
    """Two leaderboards small enough for the tests that build every explorer (lesson 11's would take ~25 s)."""
    from course_utils.leaderboard import leaderboard

    methods = ["vanilla gradient", "Grad-CAM"]
    return {name: leaderboard(name, methods, n_scenes=3, n_pairs=2, progress=False) for name in ("course", "shortcut")}


def printed(capsys) -> str:
    """What an exercise check printed: exactly one line (a check never prints more)."""
    out = capsys.readouterr().out
    assert out.count("\n") == 1, f"a check prints one line, got:\n{out}"
    return out
