"""nbval, with a stated tolerance for the numbers of cells tagged ``nbval-approx``.

Stored notebook outputs must be reproduced on any CPU. Almost every cell prints
values that come out the same to the last printed digit whatever the machine;
nbval compares those exactly. A few cells print the result of a long
optimization or a training run (lesson 03's 128 steps of gradient ascent,
lesson 10's fine-tuning), where other CPU kernels (Intel or AMD, AVX-512 or SSE,
MKL or OpenBLAS, one thread or two) round differently in the last bit and the
steps amplify it to the third significant digit. Those cells carry the cell
tag ``nbval-approx`` (2 %) or ``nbval-approx-N%``: their output is compared as
nbval compares every cell, except that each number may differ from the stored
one by up to N % of the larger of the two. The words must match exactly, and so
must the count of numbers, so a changed result still fails.

Loaded by the root ``conftest.py``; ``make test`` runs the notebooks twice, once
on another CPU kernel path with one thread, to prove the outputs portable.
"""

from __future__ import annotations

import copy
import re

from nbval.plugin import IPyNbCell

TAG = re.compile(r"^nbval-approx(?:-(\d+(?:\.\d+)?)%)?$")
DEFAULT_PERCENT = 2.0
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def tolerance(tags) -> float | None:
    """The relative tolerance a cell's tags ask for, or None for an exact comparison."""
    for tag in tags or ():
        m = TAG.match(tag)
        if m:
            return float(m.group(1) or DEFAULT_PERCENT) / 100
    return None


def close(a: float, b: float, rtol: float) -> bool:
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def align(test: str, ref: str, rtol: float) -> str:
    """``test`` with every number that is within ``rtol`` of its counterpart in ``ref``
    replaced by the stored text of that number. Numbers further apart, or a text whose
    words differ from ``ref``'s, are left as they are, for nbval to report."""
    words = NUMBER.split(test)
    if words != NUMBER.split(ref):
        return test
    out = [words[0]]
    for t, r, word in zip(NUMBER.findall(test), NUMBER.findall(ref), words[1:]):
        out += [r if close(float(t), float(r), rtol) else t, word]
    return "".join(out)


def _text_fields(output) -> list[tuple[object, str]]:
    if output.get("output_type") == "stream":
        return [(output, "text")]
    data = output.get("data", {})
    return [(data, "text/plain")] if "text/plain" in data else []


def aligned_outputs(test: list, ref: list, rtol: float) -> list:
    """A copy of the test outputs, numbers within tolerance of the stored ones made equal to them.
    (nbval has already merged each cell's stream outputs, so they pair up one to one.)"""
    test = copy.deepcopy(test)
    if len(test) != len(ref):
        return test
    for t, r in zip(test, ref):
        if t.get("output_type") != r.get("output_type") or t.get("name") != r.get("name"):
            continue
        for (t_holder, key), (r_holder, _) in zip(_text_fields(t), _text_fields(r)):
            t_holder[key] = align(t_holder[key], r_holder[key], rtol)
    return test


_exact_compare = IPyNbCell.compare_outputs


def _compare_outputs(self, test, ref, skip_compare=None):
    rtol = tolerance(self.cell.get("metadata", {}).get("tags"))
    if rtol is not None:
        test = aligned_outputs(test, ref, rtol)
    return _exact_compare(self, test, ref, skip_compare)


def install() -> None:
    IPyNbCell.compare_outputs = _compare_outputs
