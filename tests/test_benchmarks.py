"""The performance report (tests/benchmarks/report.py) in its --quick mode: its shape, never its numbers.

pytest does not collect tests/benchmarks (norecursedirs), so report.py is loaded by path.
"""

from __future__ import annotations

import math
import re
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import assert_same_state, load_script, model_state

REPORT = Path(__file__).resolve().parent / "benchmarks" / "report.py"


bench = load_script(REPORT, "benchmark_report")


def refuse(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args[:2]}")


@pytest.fixture(scope="module")
def blocked():
    """A quick report with every peer library made unimportable and the network refused;
    also the state of the course model the explorers share, before and after."""
    from course_utils.widgets import cached_model

    shared = cached_model("course").model
    before = model_state(shared)
    with pytest.MonkeyPatch.context() as mp:
        for module, _ in bench.PEERS.values():
            mp.setitem(sys.modules, module, None)  # `import module` now raises ImportError
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        report = bench.run(["course"], bench.Settings.quick(), progress=False)
    return report, before, model_state(shared)


def ratios(report):
    return [(r.name, method, column, cell) for r in report.models for method, cells in r.rows.items()
            for column, cell in cells.items() if cell.ratio is not None]


def test_every_method_has_a_row_with_every_column(blocked):
    report = blocked[0]
    assert [r.name for r in report.models] == ["course"]
    rows = report.models[0].rows
    assert list(rows) == bench.METHODS
    assert all(list(cells) == bench.COLUMNS for cells in rows.values())


def test_the_forward_pass_is_the_unit_and_every_ratio_is_finite_and_positive(blocked):
    report = blocked[0]
    r = report.models[0]
    assert r.rows[bench.FORWARD][bench.OURS].ratio == 1.0
    assert r.rows[bench.FORWARD][bench.OURS].seconds == r.forward_seconds
    # every method of ours applies to the course model (it has the CAM head): all measured
    assert all(r.rows[m][bench.OURS].ratio is not None for m in bench.METHODS)
    for name, method, column, cell in ratios(report):
        assert math.isfinite(cell.ratio) and cell.ratio > 0, (name, method, column, cell)
        assert math.isfinite(cell.seconds) and cell.seconds > 0


def test_absent_peers_are_marked_not_installed(blocked):
    report = blocked[0]
    assert report.peers == {column: bench.NOT_INSTALLED for column in bench.PEERS}
    for method, cells in report.models[0].rows.items():
        for column in bench.PEERS:
            expected = bench.NOT_INSTALLED if method in bench.PEER_METHODS[column] else bench.NO_SUCH_METHOD
            assert cells[column].note == expected and cells[column].ratio is None, (method, column)


def test_every_explorer_change_is_timed(blocked):
    report = blocked[0]
    timed = [(e.model, e.explorer, e.change) for e in report.explorers]
    expected = [(model, name, label) for model in ["course", "efficientnet_lite0"]
                for name, (_, changes) in bench.EXPLORERS.items()
                if model == "course" or name in bench.PHOTO_EXPLORERS
                for label in [bench.OPEN, *(c.label for c in changes)]]
    assert timed == expected and len(bench.PHOTO_EXPLORERS) == 10
    assert all(e.seconds is not None and math.isfinite(e.seconds) and e.seconds > 0 for e in report.explorers)


def test_the_shared_course_model_comes_back_unchanged(blocked):
    _, before, after = blocked
    assert_same_state(before, after)


def markdown_tables(text: str) -> list[list[str]]:
    """Each block of consecutive lines that start with '|'."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def cells(line: str) -> list[str]:
    assert line.startswith("|") and line.endswith("|"), line
    return [c.strip() for c in line[1:-1].split("|")]


def test_the_markdown_has_a_header_and_well_formed_tables(blocked):
    report = blocked[0]
    text = bench.to_markdown(report)
    h = report.header
    assert f"torch {h['torch']} · {h['threads']} threads · {h['cpu']}" in text
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d · ", text, re.MULTILINE)
    assert "ratio = time / forward-only time of the same model in this run" in text
    tables = markdown_tables(text)
    assert len(tables) == 3  # the course model, the explorers on scenes, the explorers on photos
    for table in tables:
        header = cells(table[0])
        assert all(re.fullmatch(r":?-+:?", c) for c in cells(table[1])) and len(cells(table[1])) == len(header)
        assert all(len(cells(row)) == len(header) for row in table[2:])
    model_table, explorer_table, photo_table = tables
    assert cells(model_table[0]) == ["method", "ours", "ours ms", *bench.PEERS]
    assert [cells(row)[0] for row in model_table[2:]] == bench.METHODS
    assert cells(model_table[2])[1] == "1.00"
    assert len(explorer_table) - 2 + len(photo_table) - 2 == len(report.explorers)
    assert "## Explorers (efficientnet_lite0, photos)" in text


def test_installed_peers_give_a_ratio_or_say_why_not():
    """Whatever is installed here: a peer's cell is a ratio, or a note saying why there is none."""
    report = bench.run(["course"], bench.Settings.quick(), explorers=False, progress=False)
    status = bench.peer_status()
    assert report.peers == status
    for method, row in report.models[0].rows.items():
        for column in bench.PEERS:
            cell = row[column]
            if method not in bench.PEER_METHODS[column]:
                assert cell.note == bench.NO_SUCH_METHOD
            elif not bench.peer_ok(status[column]):
                assert cell.note == status[column]
            elif cell.ratio is None:
                assert cell.note.startswith("failed: "), (method, column, cell)
            else:
                assert math.isfinite(cell.ratio) and cell.ratio > 0


def test_the_command_line_writes_what_it_prints(tmp_path, capsys):
    out = tmp_path / "latest.md"
    bench.main(["--quick", "--no-peers", "--no-explorers", "--markdown", str(out)])
    printed = capsys.readouterr().out
    assert out.read_text(encoding="utf-8") == printed
    assert "## course (64×64)" in printed and "Explorers" not in printed
    with pytest.raises(SystemExit):
        bench.main(["--models", "resnet-50"])
