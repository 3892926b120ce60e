"""The tolerant comparison of cells tagged nbval-approx (tests/nbval_tolerance.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from tests.nbval_tolerance import align, tolerance

REPO = Path(__file__).resolve().parent.parent


def test_tolerance_comes_from_the_tag():
    assert tolerance(None) is None
    assert tolerance(["nbval-ignore-output"]) is None
    assert tolerance(["nbval-approx"]) == pytest.approx(0.02)
    assert tolerance(["slide", "nbval-approx-5%"]) == pytest.approx(0.05)
    assert tolerance(["nbval-approx-0.5%"]) == pytest.approx(0.005)


def test_numbers_within_tolerance_take_the_stored_text():
    # 110.79 vs 110.78 is 0.009 % apart; 0.986 vs 0.985 is 0.1 %.
    assert align("mean 110.79, sim 0.986\n", "mean 110.78, sim 0.985\n", 0.02) == "mean 110.78, sim 0.985\n"


def test_numbers_beyond_tolerance_stay_different():
    # 9.4 vs 9.8 is 4.1 % of 9.8: beyond 2 %, within 5 %.
    assert align("loss 9.4", "loss 9.8", 0.02) == "loss 9.4"
    assert align("loss 9.4", "loss 9.8", 0.05) == "loss 9.8"


def test_each_number_is_judged_on_its_own():
    out = align("a 1.00 b 2.00 c -3.0", "a 1.01 b 2.50 c -3.05", 0.02)
    assert out == "a 1.01 b 2.00 c -3.05"


def test_the_words_must_match_exactly():
    assert align("accuracy 0.91", "accurcy 0.90", 0.5) == "accuracy 0.91"
    assert align("1 2 3", "1 2", 0.5) == "1 2 3"  # another count of numbers


def test_signs_and_exponents_count():
    assert align("x -1.0", "x 1.0", 0.5) == "x -1.0"  # opposite signs are never close
    assert align("x 1e-3", "x 1.01e-3", 0.02) == "x 1.01e-3"
    assert align("x 1e-3", "x 1e-2", 0.5) == "x 1e-3"


def test_zero_matches_only_zero():
    assert align("x 0.0", "x 0.00", 0.02) == "x 0.00"
    assert align("x 0.01", "x 0.00", 0.02) == "x 0.01"


def _notebook(path: Path, code: str, stored: str, tags: list[str]) -> None:
    cell = new_code_cell(code, execution_count=1, metadata={"tags": tags},
                         outputs=[new_output("stream", name="stdout", text=stored)])
    nbformat.write(new_notebook(cells=[cell]), path)


def test_nbval_passes_within_tolerance_and_fails_beyond_it(tmp_path):
    """End to end through nbval: a tagged cell within its tolerance passes; the same
    difference without the tag fails, and so does a tagged cell beyond its tolerance."""
    _notebook(tmp_path / "within.ipynb", "print('value', 101.0)", "value 100.0\n", ["nbval-approx"])
    _notebook(tmp_path / "untagged.ipynb", "print('value', 101.0)", "value 100.0\n", [])
    _notebook(tmp_path / "beyond.ipynb", "print('value', 103.0)", "value 100.0\n", ["nbval-approx"])
    _notebook(tmp_path / "wider.ipynb", "print('value', 103.0)", "value 100.0\n", ["nbval-approx-5%"])
    (tmp_path / "conftest.py").write_text(
        "from tests import nbval_tolerance\n\ndef pytest_configure(config):\n    nbval_tolerance.install()\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "-p", "no:cacheprovider",
                          "-rA", "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    report = run.stdout
    assert "2 failed, 2 passed" in report, report[-3000:]
    for name, verdict in [("within", "PASSED"), ("wider", "PASSED"), ("untagged", "FAILED"), ("beyond", "FAILED")]:
        assert f"{verdict} {name}.ipynb" in report, report[-3000:]
