"""Importing course_utils changes nothing: no seeds, no matplotlib settings, no network."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import socket, urllib.request
def refuse(*a, **k):
    raise AssertionError("network access at import")
socket.socket.connect = refuse
urllib.request.urlopen = refuse

import matplotlib, torch, numpy as np
rc = dict(matplotlib.rcParams)
backend = matplotlib.get_backend()
torch_state = torch.random.get_rng_state().clone()
np_state = np.random.get_state()[1].copy()

import course_utils
from course_utils import (checks, coursenet, download, features, figures, filters, hooks, images, models, plotting,
                          relu_rules, targets, saliency, cam, methods, optvis, evaluation,
                          scenes, tensorboard, train, widgets)

assert dict(matplotlib.rcParams) == rc, "rcParams changed"
assert matplotlib.get_backend() == backend, "backend changed"
assert torch.equal(torch.random.get_rng_state(), torch_state), "torch seed changed"
assert (np.random.get_state()[1] == np_state).all(), "numpy seed changed"
assert "skimage" not in sys.modules, "scikit-image imported eagerly (slow)"
print("clean")
"""


def test_importing_every_module_has_no_side_effects():
    out = subprocess.run([sys.executable, "-c", "import sys\n" + SCRIPT], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "clean"
