"""Exercise checks: say at once what is right and what is off.

Each check prints one line: ``✓`` when the answer is right, ``✗`` with what is
off, ``…`` while it is still ``None``. None of them raise on a wrong or missing
answer, so a notebook with unfinished exercises still runs from top to bottom.
:func:`verdict` returns the same judgement without printing (for tests).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["verdict", "compare", "check_preprocessing", "check_softmax"]


def verdict(name: str, yours, expected, atol: float = 1e-5) -> tuple[bool, str]:
    """``(passed, message)`` for your answer against the expected one."""
    if yours is None:
        return False, f"… {name}: not answered yet (replace the None)"
    try:
        a, b = (v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, dtype=np.float64)
                for v in (yours, expected))
    except (TypeError, ValueError) as exc:
        return False, f"✗ {name}: cannot read your answer as numbers ({exc})"
    if a.shape != b.shape:
        return False, f"✗ {name}: shape {a.shape} but expected {b.shape}"
    if not np.isfinite(a).all():
        return False, f"✗ {name}: your answer contains NaN or infinity"
    diff = float(np.abs(a - b).max()) if a.size else 0.0
    if diff == 0.0:
        return True, f"✓ {name}: exact"
    if diff <= atol:
        # Not the difference itself: its last digits depend on the CPU, and the notebooks'
        # stored outputs must read the same on any machine.
        return True, f"✓ {name}: close (max difference within the allowed {atol:g})"
    return False, f"✗ {name}: max difference {diff:.3g} (allowed {atol:g})"


def compare(name: str, yours, expected, atol: float = 1e-5) -> None:
    """Print whether your answer matches: exact, close (and how close), or how far off."""
    print(verdict(name, yours, expected, atol)[1])


def check_preprocessing(yours, loaded_model, image) -> None:
    """Your normalised (1, 3, H, W) batch for ``image`` against the model's own."""
    compare("preprocessing", yours, loaded_model.batch([image]).cpu())


def check_softmax(yours, logits) -> None:
    """Your probabilities for ``logits`` (rows of class scores) against torch's softmax."""
    compare("softmax", yours, torch.as_tensor(logits).double().softmax(dim=-1), atol=1e-6)
