"""The classroom capacity report (tests/benchmarks/classroom.py): that it measures what it says.

pytest does not collect tests/benchmarks (norecursedirs), so classroom.py is loaded by path. Its
full run (a hub, every lesson twice, crowds of students) is `make classroom`; here each measuring
part runs on inputs whose answer is known.
"""

from __future__ import annotations

import io
from pathlib import Path

import nbformat

from tests.conftest import load_script

CLASSROOM = Path(__file__).resolve().parent / "benchmarks" / "classroom.py"


room = load_script(CLASSROOM, "classroom_report")


def test_a_lesson_run_measures_the_kernels_peak_memory_and_cpu_time(tmp_path):
    """A notebook that holds 300 MB for a moment, then lets it go, and spends about 1 s of CPU:
    the peak is at least 300 MB above what is left at the end, and the CPU time is at least 0.8 s."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("A lesson in miniature."),
        nbformat.v4.new_code_cell("import time\nblock = bytearray(300 * 1024 * 1024)\ntime.sleep(0.5)\ndel block"),
        nbformat.v4.new_code_cell("end = time.process_time() + 1.0\nwhile time.process_time() < end:\n    pass"),
    ]
    path = tmp_path / "lesson.ipynb"
    nbformat.write(nb, path)
    home = tmp_path / "torch_home"
    home.mkdir()
    cost = room.run_lesson(path, home, weights=False)
    assert cost.lesson == "lesson" and not cost.weights
    assert cost.peak_mb - cost.end_mb >= 290, cost
    assert cost.cpu_s >= 0.8, cost
    assert cost.wall_s >= cost.cpu_s * 0.5  # one thread busy: the wall time holds the CPU time


def test_served_is_the_largest_crowd_whose_90th_percentile_stays_under_the_limit():
    rows = [{"students": 1, "p90_s": 0.3}, {"students": 2, "p90_s": 0.6}, {"students": 4, "p90_s": 1.4},
            {"students": 8, "p90_s": 0.95}]  # noise can put a larger crowd back under the line
    assert room.served(rows) == 8
    assert room.served(rows, limit_s=0.5) == 1
    assert room.served([{"students": 1, "p90_s": 1.2}]) == 0


def test_a_student_process_answer_skips_anything_else_it_prints():
    class Proc:
        stdout = io.StringIO("loading weights...\n" + room.TAG + "ready\nnoise\n" + room.TAG + "[0.5, 0.25]\n")

    assert room._answer(Proc) == "ready"
    assert room._answer(Proc) == "[0.5, 0.25]"
    assert room._answer(Proc) == ""  # the process ended
