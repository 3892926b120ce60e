"""tools/mutants.py, the mutation-testing tool: its mutants, their IDs, and a whole run
on a throw-away package (the real run is `make mutants`, not part of `make test`)."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "mutants.py"


@pytest.fixture(scope="module")
def mt():
    spec = importlib.util.spec_from_file_location("mutants_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def mutated_lines(mt, source: str, op: str) -> list[str]:
    """The changed line of every mutant of ``op`` in ``source``."""
    return [m.lines(source)[1].strip() for m in mt.generate(source, "m") if m.op == op]


@pytest.mark.parametrize("line, op, expected", [
    ("x = a + b", "arith", "x = a - b"),
    ("x = a - b", "arith", "x = a + b"),
    ("x = a * b", "arith", "x = a / b"),
    ("x = a / b", "arith", "x = a * b"),
    ("x = a // b", "arith", "x = a / b"),
    ("x = a / b ** 2", "arith", "x = a / (b * 2)"),  # ** -> * keeps its grouping
    ("x += y", "arith", "x -= y"),
    ("ok = a < b", "compare", "ok = a <= b"),
    ("ok = a <= b", "compare", "ok = a < b"),
    ("ok = a > b", "compare", "ok = a >= b"),
    ("ok = a >= b", "compare", "ok = a > b"),
    ("ok = a == b", "compare", "ok = a != b"),
    ("ok = a != b", "compare", "ok = a == b"),
    ("ok = a is None", "compare", "ok = a is not None"),
    ("ok = a is not None", "compare", "ok = a is None"),
    ("ok = a in b", "compare", "ok = a not in b"),
    ("ok = a not in b", "compare", "ok = a in b"),
    ("ok = a and b", "boolop", "ok = a or b"),
    ("ok = a or b", "boolop", "ok = a and b"),
    ("ok = not (a or b)", "not", "ok = (a or b)"),
    ("y = -a", "neg", "y = a"),
    ("n = 0", "number", "n = 1"),
    ("n = 1", "number", "n = 0"),
    ("n = 7", "number", "n = 8"),
    ("h = 0.5", "number", "h = 0.25"),
    ("c = 2.5", "number", "c = 5.0"),
    ("z = 0.0", "number", "z = 1.0"),
    ("eps = 1e-8", "number", "eps = 0.0"),
    ("f = True", "bool", "f = False"),
    ("f = False", "bool", "f = True"),
    ("m = max(a, b)", "minmax", "m = min(a, b)"),
    ("i = np.argmin(a)", "minmax", "i = np.argmax(a)"),
    ("v = t.amax(dim=0)", "minmax", "v = t.amin(dim=0)"),
    ("v = a[0]", "index", "v = a[1]"),
    ("v = a[-1]", "index", "v = a[0]"),
    ("v = a[1:]", "index", "v = a[2:]"),
    ("v = a[:, 2]", "index", "v = a[:, 3]"),
    ("def f(a):\n    return a * 2", "return", "return None"),
    ("def f(a):\n    return (\n        a,\n        a,\n    )", "return", "return (None"),  # line count kept
])
def test_each_operator_gives_the_expected_source(mt, line, op, expected):
    source = line + "\n"
    assert expected in mutated_lines(mt, source, op)
    for m in mt.generate(source, "m"):
        mutated = m.apply(source)
        ast.parse(mutated)  # every mutant still compiles
        assert mutated.count("\n") == source.count("\n")


def test_index_constants_are_mutated_once_and_strings_never(mt):
    assert [m.op for m in mt.generate("v = a[0]\n", "m")] == ["index"]
    assert mt.generate('s = "a" + name * 2\n', "m")[0].lines('s = "a" + name * 2\n')[1] == 's = "a" + name / 2'
    assert not [m for m in mt.generate('s = "a" + "b"\nt = [0] * n\n', "m") if m.op == "arith"]


SOURCE = textwrap.dedent('''\
    """Module doc: a + b < 1 and not 0."""
    import warnings
    __all__ = ["f", "g"]


    def f(a, b: int = 3) -> tuple[int, 2]:
        """Returns a - 1 when b > 0."""
        if a < 0:
            raise ValueError(f"a must be >= {0 + 1}, got {a - 1}")
        assert b > 0, "b must be 1 + 1"
        warnings.warn("careful: 2 > 1", stacklevel=2)
        msg = f"{a + 1} > {b * 2}"
        y = a + 1  # pragma: no mutate
        z = max(a,  # pragma: no mutate
                b - 1)
        return a * b


    if __name__ == "__main__":
        print(f(1 + 1, 2))
''')


def test_docstrings_messages_annotations_and_pragmas_are_left_alone(mt):
    mutants = mt.generate(SOURCE, "m")
    assert sorted({m.line for m in mutants}) == [6, 8, 10, 16]
    assert {m.id for m in mutants if m.line == 6} == {"m:6:number:3->4"}  # the default, not the annotation
    strings = [n.value for n in ast.walk(ast.parse(SOURCE)) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    for m in mutants:
        mutated = m.apply(SOURCE)
        assert [n.value for n in ast.walk(ast.parse(mutated))
                if isinstance(n, ast.Constant) and isinstance(n.value, str)] == strings
        assert 'f"{a + 1} > {b * 2}"' in mutated and "stacklevel=2" in mutated


def test_ids_are_stable_unique_and_number_repeats_on_a_line(mt):
    source = "def f(a, b):\n    return a + b + a + b\n"
    first, again = mt.generate(source, "m"), mt.generate(source, "m")
    assert [m.id for m in first] == [m.id for m in again]
    assert len({m.id for m in first}) == len(first)
    assert [m.id for m in first if m.op == "arith"] == ["m:2:arith:+->-", "m:2:arith:+->-#2", "m:2:arith:+->-#3"]
    assert "m:2:return:a + b + a + b->None" in {m.id for m in first}


def test_course_modules_mutate_to_valid_python(mt):
    for name in ("checks", "hooks"):
        source = (REPO / "course_utils" / f"{name}.py").read_text(encoding="utf-8")
        mutants = mt.generate(source, name)
        assert len(mutants) > 20
        for m in mutants:
            mutated = m.apply(source)
            compile(mutated, name, "exec")
            assert mutated.count("\n") == source.count("\n")  # later lines keep their numbers
            assert not mt.PRAGMA.search(m.lines(source)[0])


def test_equivalent_list_is_read_with_its_reasons(mt, tmp_path):
    path = tmp_path / "eq.txt"
    path.write_text(textwrap.dedent("""\
        # header: module:line:operator:original->mutated  # reason

        hooks:86:compare:is->is not  # only reached for error messages
        cam:12:arith:+->-#2  # the second + on the line: adds zero
        scenes:5:number:4->5
    """))
    assert mt.read_equivalent(path) == {
        "hooks:86:compare:is->is not": "only reached for error messages",
        "cam:12:arith:+->-#2": "the second + on the line: adds zero",
        "scenes:5:number:4->5": "",
    }
    assert mt.read_equivalent(tmp_path / "missing.txt") == {}
    path.write_text("not an id\n")
    with pytest.raises(ValueError, match="cannot read"):
        mt.read_equivalent(path)
    assert mt.read_equivalent(mt.EQUIVALENT_FILE) is not None  # the project's own list parses


CALC = '''\
def add(a, b):
    return a + b


def is_small(x):
    return x < 10


def countdown(n):
    while n > 0:
        n -= 1
    return n
'''

TESTS = '''\
from toypkg.calc import add, countdown, is_small


def test_add():
    assert add(2, 3) == 5


def test_is_small():  # weak: no boundary
    assert is_small(3)


def test_countdown():
    assert countdown(3) == 0
'''


def toy_project(tmp_path: Path, tests: str = TESTS) -> Path:
    root = tmp_path / "project"
    (root / "toypkg").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "toypkg" / "__init__.py").write_text("")
    (root / "toypkg" / "calc.py").write_text(CALC)
    (root / "tests" / "test_calc.py").write_text(tests)
    return root


def run_tool(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), "--root", str(root), "--package", "toypkg", "--map", "calc=tests/test_calc.py",
         "--timeout-min", "3", *args],
        capture_output=True, text=True, timeout=120)


def test_list_counts_the_toy_mutants_with_an_injected_mapping(mt, tmp_path, monkeypatch, capsys):
    root = toy_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert mt.main(["--list", "--root", str(root), "--package", "toypkg", "--equivalent", str(tmp_path / "none")],
                   modules={"calc": ["tests/test_calc.py"]}) == 0
    out = capsys.readouterr().out
    assert "calc:2:arith:+->-\n    return a - b" in out
    assert "calc:11:arith:-=->+=\n    n += 1" in out
    assert out.split()[-2:] == ["TOTAL", "10"]


def test_a_whole_run_kills_scores_and_reports_the_survivor(tmp_path):
    root = toy_project(tmp_path)
    eq = tmp_path / "eq.txt"
    eq.write_text("calc:6:number:10->11  # the weak test cannot see the bound (for this test)\n")
    report = tmp_path / "out" / "mutants.md"
    done = run_tool(root, "--equivalent", str(eq), "--markdown", str(report), "--jobs", "2")
    assert done.returncode == 0, done.stderr
    # add: + -> - and its return are killed; is_small: < -> <= survives, 10 -> 11 is
    # listed as equivalent; countdown: n -= 0 and n += 1 never end (timeouts).
    lines = done.stdout.splitlines()
    row = next(line for line in lines if line.startswith("calc "))
    assert row.split()[1:4] == ["8/9", "88.9%", "2"], done.stdout
    assert "calc:6: < -> <=   [calc:6:compare:<-><=]" in lines
    assert "    - return x < 10" in lines and "    + return x <= 10" in lines
    assert "Survivors (1):" in lines
    assert "calc:6:number:10->11  # the weak test cannot see the bound (for this test)" in lines
    md = report.read_text()
    assert "| calc | 8 / 9 | 88.9 % | 2 | 0 | 1 |" in md
    assert "| `calc:6:compare:<-><=` | `<` → `<=` | `return x < 10` | `return x <= 10` |" in md
    assert (root / "toypkg" / "calc.py").read_text() == CALC  # mutants never touch the files


def test_a_failing_clean_run_stops_with_a_clear_error(tmp_path):
    root = toy_project(tmp_path, TESTS + "\n\ndef test_wrong():\n    assert add(1, 1) == 3\n")
    done = run_tool(root, "--equivalent", str(tmp_path / "none"))
    assert done.returncode == 2
    assert "the clean run of calc's tests (tests/test_calc.py) does not pass" in done.stderr
    assert "test_wrong" in done.stderr
