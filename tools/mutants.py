"""Mutation testing for course_utils: how many small, realistic bugs do our tests catch?

Each *mutant* is the source of one module with exactly one small change (``+`` for
``-``, ``<`` for ``<=``, ``min`` for ``max``, a constant off by one, a return value
dropped, ...). A mutant is *killed* when the module's own tests fail on it (or error,
or run out of time); it *survives* when they all pass, which points at behaviour no
test pins down. The score per module is killed / (total - equivalent).

    python tools/mutants.py                          every module (long: see make mutants)
    python tools/mutants.py --module checks          one module, every mutant
    python tools/mutants.py --module hooks --max 40  a seeded sample of 40 mutants
    python tools/mutants.py --list                   the mutants, without running anything
    python tools/mutants.py --markdown tests/mutants.md

Speed: the parent imports torch, numpy, pytest, the package and the test files'
imports once, then forks one child per mutant. The child executes the mutated
source into the already-imported module object, points the other package modules'
names at the new objects (``from .hooks import capture``), and runs only that
module's test files with ``pytest.main`` (``-x``, no cache, pyproject's ``addopts``
and so nbval and the notebooks left out). ``--jobs`` children run at once, each on
one thread. A clean run of the same machinery (the unmutated source executed the
same way) comes first per module and must pass; it also sets the per-mutant
timeout (``--timeout-factor`` times its duration, at least ``--timeout-min`` s).

Equivalent mutants (changes no test could ever see) are listed, one ID per line
with a reason, in tools/mutants_equivalent.txt and left out of the score.

Lines ending in ``# pragma: no mutate`` are not mutated (on a statement's first
line, the whole statement). Never mutated: docstrings and other strings, f-strings,
``raise`` statements (error messages), ``assert`` messages, ``warnings.warn(...)``,
``stacklevel=``, type annotations, ``__all__`` and ``if __name__ == "__main__":``.

Not part of ``make test`` (``make mutants`` runs it); tests/test_mutants_tool.py
tests this tool on a toy package.
"""

from __future__ import annotations

import argparse
import ast
import bisect
import dataclasses
import importlib
import io
import math
import os
import random
import re
import shlex
import sys
import tempfile
import time
import tokenize
from pathlib import Path

# Module (file in the package) -> its own test files, relative to the project root.
# Only these tests run against that module's mutants.
MODULES: dict[str, list[str]] = {
    "hooks": ["tests/test_hooks.py", "tests/test_saliency.py"],
    "relu_rules": ["tests/test_hooks.py", "tests/test_saliency.py"],  # relu_rule is tested with saliency too
    "targets": ["tests/test_hooks.py", "tests/test_saliency.py", "tests/test_cam.py"],
    "methods": ["tests/test_methods.py"],
    "saliency": ["tests/test_saliency.py", "tests/test_exercises_04_06.py"],  # project_unit is lesson 04's
    "cam": ["tests/test_cam.py"],
    "evaluation": ["tests/test_evaluation.py"],
    "optvis": ["tests/test_optvis.py"],
    "images": ["tests/test_images.py"],
    "models": ["tests/test_models.py"],
    "scenes": ["tests/test_scenes.py"],
    "checks": ["tests/test_plotting_checks.py", "tests/test_exercises_00_03.py", "tests/test_exercises_04_06.py",
               "tests/test_exercises_07_09.py", "tests/test_shortcut_fix.py"],
}

PACKAGE = "course_utils"
ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = Path(__file__).resolve().parent / "mutants_equivalent.txt"
PRAGMA = re.compile(r"#\s*pragma:\s*no\s+mutate\b")

# pytest options for every child: only the given files, stop at the first failure,
# no cache, pyproject's addopts (--nbval ...) dropped, nbval itself and browser tests off.
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-p", "no:nbval", "-m", "not browser"]

ERROR_EXIT = 70  # the child could not load the mutant at all (counts as killed: "error")


# --- the mutants ----------------------------------------------------------------------

ARITH = {
    ast.Add: ("+", "-"),
    ast.Sub: ("-", "+"),
    ast.Mult: ("*", "/"),
    ast.Div: ("/", "*"),
    ast.FloorDiv: ("//", "/"),
    ast.Pow: ("**", "*"),
}
COMPARE = {
    ast.Lt: ("<", "<="),
    ast.LtE: ("<=", "<"),
    ast.Gt: (">", ">="),
    ast.GtE: (">=", ">"),
    ast.Eq: ("==", "!="),
    ast.NotEq: ("!=", "=="),
    ast.Is: ("is", "is not"),
    ast.IsNot: ("is not", "is"),
    ast.In: ("in", "not in"),
    ast.NotIn: ("not in", "in"),
}
BOOLOPS = {ast.And: ("and", "or"), ast.Or: ("or", "and")}
SWAPPED_NAMES = {}
for _a, _b in [("min", "max"), ("amin", "amax"), ("argmin", "argmax"), ("minimum", "maximum"),
               ("nanmin", "nanmax"), ("clamp_min", "clamp_max")]:
    SWAPPED_NAMES[_a], SWAPPED_NAMES[_b] = _b, _a

OPERATORS = {
    "arith": "+ <-> -, * <-> /, // -> /, ** -> * (also in +=, -=, ...)",
    "compare": "< <-> <=, > <-> >=, == <-> !=, is <-> is not, in <-> not in",
    "boolop": "and <-> or",
    "not": "`not` removed",
    "neg": "unary minus removed",
    "number": "0 -> 1, 1 -> 0, n -> n+1; 0.0 -> 1.0, 0.5 -> 0.25, tiny (<1e-3) -> 0.0, c -> 2c",
    "bool": "True <-> False",
    "minmax": "min <-> max, amin <-> amax, argmin <-> argmax, minimum <-> maximum (called names)",
    "index": "a[i] -> a[i+1] for integer constants in subscripts and slices",
    "return": "return value -> return None",
}


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One change to one module's source: ``edits`` are (start, end, text) character spans."""

    module: str
    line: int
    op: str
    original: str
    mutated: str
    edits: tuple[tuple[int, int, str], ...]
    occurrence: int = 1

    @property
    def id(self) -> str:
        base = f"{self.module}:{self.line}:{self.op}:{self.original}->{self.mutated}"
        return base if self.occurrence == 1 else f"{base}#{self.occurrence}"

    def apply(self, source: str) -> str:
        for start, end, text in sorted(self.edits, reverse=True):
            source = source[:start] + text + source[end:]
        return source

    def lines(self, source: str) -> tuple[str, str]:
        """The mutated line before and after the change."""
        before = source.split("\n")[self.line - 1]
        after = self.apply(source).split("\n")[self.line - 1]
        return before, after


class _Source:
    """Character offsets for AST positions (UTF-8 byte columns) and tokens."""

    def __init__(self, text: str):
        self.text = text
        self.lines = text.split("\n")
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line) + 1)
        self.tokens = []  # (start, end, type, string, row)
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.OP, tokenize.NAME, tokenize.NUMBER, tokenize.STRING):
                s, e = self.char(tok.start[0], tok.start[1]), self.char(tok.end[0], tok.end[1])
                self.tokens.append((s, e, tok.type, tok.string, tok.start[0]))
        self.token_starts = [t[0] for t in self.tokens]

    def char(self, row: int, col_chars: int) -> int:
        return self.starts[row - 1] + col_chars

    def offset(self, row: int, col_bytes: int) -> int:
        line = self.lines[row - 1]
        return self.starts[row - 1] + len(line.encode("utf-8")[:col_bytes].decode("utf-8", "ignore"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def tokens_between(self, start: int, end: int):
        i = bisect.bisect_left(self.token_starts, start)
        while i < len(self.tokens) and self.tokens[i][1] <= end:
            yield i, self.tokens[i]
            i += 1

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)

    def removal(self, index: int) -> tuple[int, int]:
        """Span of token ``index`` and the blanks after it on the same line."""
        start, end = self.tokens[index][0], self.tokens[index][1]
        while end < len(self.text) and self.text[end] in " \t":
            end += 1
        return start, end


def _is_stringy(node: ast.AST) -> bool:
    """Operands of + and * that are strings, bytes, lists or tuples (concatenation, repetition)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (str, bytes))
    if isinstance(node, (ast.JoinedStr, ast.List, ast.Tuple, ast.ListComp)):
        return True
    if isinstance(node, ast.BinOp):
        return _is_stringy(node.left) or _is_stringy(node.right)
    return False


def _new_number(value):
    if isinstance(value, int):
        return {0: 1, 1: 0}.get(value, value + 1)
    if value == 0.0:
        return 1.0
    if value == 0.5:
        return 0.25
    if abs(value) < 1e-3:
        return 0.0
    return value * 2


def _int_index(node: ast.AST) -> int | None:
    """The value of an integer constant (or its negation) used as an index, else None."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) is int):
        return -node.operand.value
    return None


def _is_main_guard(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
            and len(t.comparators) == 1 and isinstance(t.comparators[0], ast.Constant)
            and t.comparators[0].value == "__main__")


def _is_warn(func: ast.AST) -> bool:
    return (isinstance(func, ast.Name) and func.id == "warn") or (
        isinstance(func, ast.Attribute) and func.attr == "warn")


class _Finder(ast.NodeVisitor):
    def __init__(self, src: _Source):
        self.src = src
        self.found: list[tuple[int, int, str, str, str, tuple]] = []  # (line, start, op, orig, mut, edits)
        self.statement_line = 0
        self.index_constants: set[int] = set()

    # -- bookkeeping
    def add(self, op, original, mutated, edits, at):
        line = self.src.line_of(at)
        statement = self.src.lines[self.statement_line - 1] if self.statement_line else ""
        if PRAGMA.search(self.src.lines[line - 1]) or PRAGMA.search(statement):
            return
        self.found.append((line, at, op, original, mutated, tuple(edits)))

    def op_token(self, start, end, words):
        """The first operator token(s) spelling ``words`` between two offsets."""
        toks = list(self.src.tokens_between(start, end))
        parts = words.split()
        for k in range(len(toks)):
            if [t[1][3] for t in toks[k:k + len(parts)]] == parts:
                return toks[k][1][0], toks[k + len(parts) - 1][1][1]
        return None

    def visit(self, node):
        if isinstance(node, ast.stmt):
            outer, self.statement_line = self.statement_line, node.lineno
            try:
                return super().visit(node)
            finally:
                self.statement_line = outer
        return super().visit(node)

    def visit_all(self, nodes):
        for n in nodes:
            if n is not None:
                self.visit(n)

    # -- what is never mutated
    def visit_Expr(self, node):
        if isinstance(node.value, ast.Constant):  # docstrings and bare strings
            return
        self.generic_visit(node)

    def visit_JoinedStr(self, node):
        return

    def visit_Raise(self, node):
        return

    def visit_Assert(self, node):
        self.visit(node.test)

    def visit_If(self, node):
        if _is_main_guard(node):
            return
        self.generic_visit(node)

    def _defaults(self, args: ast.arguments):
        self.visit_all(args.defaults)
        self.visit_all(args.kw_defaults)

    def visit_FunctionDef(self, node):
        self.visit_all(node.decorator_list)
        self._defaults(node.args)
        self.visit_all(node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self._defaults(node.args)
        self.visit(node.body)

    def visit_ClassDef(self, node):
        self.visit_all(node.decorator_list)
        self.visit_all(node.bases)
        self.visit_all(node.body)

    def visit_AnnAssign(self, node):
        if node.value is not None and not (isinstance(node.target, ast.Name) and node.target.id == "__all__"):
            self.visit(node.value)

    def visit_Assign(self, node):
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return
        self.generic_visit(node)

    def visit_keyword(self, node):
        if node.arg == "stacklevel":
            return
        self.generic_visit(node)

    # -- the operators
    def visit_BinOp(self, node):
        if type(node.op) in ARITH and not (_is_stringy(node.left) or _is_stringy(node.right)):
            old, new = ARITH[type(node.op)]
            span = self.op_token(self.src.span(node.left)[1], self.src.span(node.right)[0], old)
            if span:
                edits = [(span[0], span[1], new)]
                if isinstance(node.op, ast.Pow):  # keep ** 's grouping: a / b ** 2 -> a / (b * 2)
                    s, e = self.src.span(node)
                    edits += [(s, s, "("), (e, e, ")")]
                self.add("arith", old, new, edits, span[0])
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        if isinstance(node.target, ast.Name) and node.target.id == "__all__":
            return
        if type(node.op) in ARITH:
            old, new = (s + "=" for s in ARITH[type(node.op)])
            span = self.op_token(self.src.span(node.target)[1], self.src.span(node.value)[0], old)
            if span:
                self.add("arith", old, new, [(span[0], span[1], new)], span[0])
        self.generic_visit(node)

    def visit_Compare(self, node):
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            old, new = COMPARE[type(op)]
            span = self.op_token(self.src.span(left)[1], self.src.span(right)[0], old)
            if span:
                self.add("compare", old, new, [(span[0], span[1], new)], span[0])
            left = right
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        old, new = BOOLOPS[type(node.op)]
        for a, b in zip(node.values, node.values[1:]):
            span = self.op_token(self.src.span(a)[1], self.src.span(b)[0], old)
            if span:
                self.add("boolop", old, new, [(span[0], span[1], new)], span[0])
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, (ast.Not, ast.USub)):
            word = "not" if isinstance(node.op, ast.Not) else "-"
            start = self.src.span(node)[0]
            for i, tok in self.src.tokens_between(start, start + len(word)):
                if tok[3] == word:
                    s, e = self.src.removal(i)
                    self.add("not" if word == "not" else "neg", word, "", [(s, e, "")], s)
                    break
        self.generic_visit(node)

    def visit_Constant(self, node):
        if id(node) in self.index_constants or isinstance(node.value, (str, bytes, complex)) or node.value is None:
            return
        s, e = self.src.span(node)
        text = self.src.text[s:e]
        if isinstance(node.value, bool):
            new = "False" if node.value else "True"
        elif isinstance(node.value, (int, float)) and math.isfinite(_new_number(node.value)):
            new = repr(_new_number(node.value))
        else:
            return
        self.add("bool" if isinstance(node.value, bool) else "number", text, new, [(s, e, new)], s)

    def visit_Call(self, node):
        if _is_warn(node.func):
            return
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name in SWAPPED_NAMES:
            e = self.src.span(f)[1]
            s = e - len(name)
            if self.src.text[s:e] == name:
                self.add("minmax", name, SWAPPED_NAMES[name], [(s, e, SWAPPED_NAMES[name])], s)
        self.generic_visit(node)

    def visit_Subscript(self, node):
        parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        for part in parts:
            for bound in ([part.lower, part.upper, part.step] if isinstance(part, ast.Slice) else [part]):
                value = _int_index(bound) if bound is not None else None
                if value is None:
                    continue
                s, e = self.src.span(bound)
                new = str(value + 1)
                self.add("index", self.src.text[s:e], new, [(s, e, new)], s)
                self.index_constants.add(id(bound))
                if isinstance(bound, ast.UnaryOp):
                    self.index_constants.add(id(bound.operand))
        self.generic_visit(node)

    def visit_Return(self, node):
        v = node.value
        if v is not None and not (isinstance(v, ast.Constant) and v.value is None):
            s, e = self.src.span(v)
            text = " ".join(self.src.text[s:e].split())
            if len(text) > 40:
                text = text[:39] + "…"
            breaks = self.src.text[s:e].count("\n")  # keep the line count: later line numbers stay put
            self.add("return", text, "None", [(s, e, f"(None{chr(10) * breaks})" if breaks else "None")], s)
        self.generic_visit(node)


def generate(source: str, module: str) -> list[Mutant]:
    """Every mutant of ``source``, in source order, with stable IDs (no two alike)."""
    src = _Source(source)
    finder = _Finder(src)
    finder.visit(ast.parse(source))
    mutants, seen_sources, counts = [], set(), {}
    for line, at, op, original, mutated, edits in sorted(finder.found, key=lambda f: (f[0], f[1])):
        m = Mutant(module, line, op, original, mutated, edits)
        text = m.apply(source)
        if text in seen_sources or text == source:
            continue
        seen_sources.add(text)
        counts[m.id] = counts.get(m.id, 0) + 1
        mutants.append(dataclasses.replace(m, occurrence=counts[m.id]))
    return mutants


# --- equivalent mutants ----------------------------------------------------------------

_EQUIVALENT_LINE = re.compile(r"^(?P<id>\S+?:\d+:\w+:.*?)(?:\s+#\s?(?P<reason>.*))?$")


def read_equivalent(path: Path | str | None) -> dict[str, str]:
    """``{mutant id: reason}`` from an equivalent-mutants file (missing file: none)."""
    if path is None or not Path(path).exists():
        return {}
    out = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _EQUIVALENT_LINE.match(line)
        if not m:
            raise ValueError(f"{path}: cannot read {raw!r}; expected module:line:operator:original->mutated  # reason")
        out[m["id"].strip()] = (m["reason"] or "").strip()
    return out


# --- the fork server ---------------------------------------------------------------------

def _preload(root: Path, package: str, test_files: list[Path]) -> None:
    """Import once in the parent whatever every child would import again."""
    import pkgutil
    from importlib.metadata import entry_points

    import pytest  # noqa: F401

    for ep in entry_points(group="pytest11"):
        try:
            importlib.import_module(ep.value.split(":")[0])
        except Exception:
            pass
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(pkg.__path__, package + ".", onerror=lambda name: None):
        try:
            importlib.import_module(info.name)
        except Exception:
            pass
    local = {p.stem for p in root.iterdir()} | {package}
    files = set(test_files)
    for f in test_files:
        for d in [f.parent, *f.parent.parents]:
            if (d / "conftest.py").exists():
                files.add(d / "conftest.py")
            if d == root:
                break
    for f in sorted(files):
        local |= {p.stem for p in f.parent.iterdir()}
    for f in sorted(files):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] in local or name.startswith("__future__"):
                    continue
                try:
                    importlib.import_module(name)
                except Exception:
                    pass


_SCALARS = (int, float, complex, str, bytes, bool, type(None))


def load_mutant(module, source: str, package: str) -> None:
    """Execute ``source`` into ``module`` and point the package's other modules at the new objects."""
    code = compile(source, module.__file__, "exec", dont_inherit=True)
    old = dict(module.__dict__)
    exec(code, module.__dict__)
    objects, scalars = {}, {}
    for name, before in old.items():
        after = module.__dict__.get(name, before)
        if after is before:
            continue
        if isinstance(before, _SCALARS) or (isinstance(before, (tuple, frozenset)) and not before):
            scalars[name] = (before, after)  # small ints and strings are shared: match by name too
        else:
            objects[id(before)] = (before, after)
    for other in list(sys.modules.values()):
        name = getattr(other, "__name__", "")
        if other is module or not (name == package or name.startswith(package + ".")):
            continue
        d = getattr(other, "__dict__", {})
        for key, value in list(d.items()):
            hit = objects.get(id(value)) or scalars.get(key)
            if hit and hit[0] is value:
                d[key] = hit[1]
            elif type(value) is dict:  # registries: {"name": function}
                for k, v in list(value.items()):
                    hit = objects.get(id(v))
                    if hit and hit[0] is v:
                        value[k] = hit[1]


def _child(module_name: str, source: str | None, test_files: list[str], package: str, log: str) -> None:
    code = ERROR_EXIT
    try:
        os.setpgid(0, 0)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        if source is not None:
            load_mutant(sys.modules[module_name], source, package)
        import pytest

        code = int(pytest.main([*test_files, *PYTEST_ARGS]))
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


@dataclasses.dataclass
class _Job:
    key: object
    module: str  # dotted name
    source: str | None
    tests: list[str]
    timeout: float


@dataclasses.dataclass
class Outcome:
    status: str  # survived, killed, timeout, error
    seconds: float
    exit: int | None
    log: str = ""


def _status(exit_code: int) -> str:
    return {0: "survived", 1: "killed"}.get(exit_code, "error")


def run_jobs(jobs: list[_Job], parallel: int, package: str, on_done, keep_log=lambda job, outcome: False) -> None:
    """Fork a child per job, ``parallel`` at a time; ``on_done(job, outcome)`` as each ends."""
    import signal

    pending = list(reversed(jobs))
    running = {}  # pid -> (job, start, log, timed_out)
    logdir = tempfile.mkdtemp(prefix="mutants-")
    try:
        while pending or running:
            while pending and len(running) < parallel:
                job = pending.pop()
                log = os.path.join(logdir, f"{len(pending)}-{time.monotonic_ns()}.log")
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(job.module, job.source, job.tests, package, log)
                try:
                    os.setpgid(pid, pid)
                except OSError:
                    pass
                running[pid] = [job, time.monotonic(), log, False]
            time.sleep(0.02)
            for pid in list(running):
                job, start, log, timed_out = running[pid]
                done, status = os.waitpid(pid, os.WNOHANG)
                now = time.monotonic()
                if done == 0:
                    if not timed_out and now - start > job.timeout:
                        try:
                            os.killpg(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                        running[pid][3] = True
                    continue
                del running[pid]
                code = os.waitstatus_to_exitcode(status)
                outcome = Outcome("timeout" if timed_out else _status(code), now - start, code)
                if keep_log(job, outcome):
                    outcome.log = Path(log).read_text(encoding="utf-8", errors="replace")
                try:
                    os.unlink(log)
                except OSError:
                    pass
                on_done(job, outcome)
    finally:
        for pid in running:
            try:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for f in Path(logdir).glob("*"):
            f.unlink()
        os.rmdir(logdir)


# --- the report --------------------------------------------------------------------------

@dataclasses.dataclass
class ModuleResult:
    name: str
    total: int = 0  # mutants run (equivalent ones left out)
    killed: int = 0
    timeouts: int = 0
    errors: int = 0
    equivalent: int = 0
    sampled_from: int = 0
    baseline: float = 0.0
    wall: float = 0.0
    survivors: list = dataclasses.field(default_factory=list)  # (mutant, before, after)

    @property
    def caught(self) -> int:
        return self.killed + self.timeouts + self.errors

    @property
    def score(self) -> float:
        return 100.0 * self.caught / self.total if self.total else 100.0


def _fmt_time(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def format_text(results: list[ModuleResult], equivalent: list[tuple[str, str]], wall: float) -> str:
    out = [f"{'module':<12} {'killed/total':>13} {'score':>7} {'timeout':>8} {'error':>6} {'equiv':>6} "
           f"{'clean':>6} {'time':>8}"]
    for r in results:
        sample = f"  (sample of {r.sampled_from})" if r.sampled_from > r.total else ""
        out.append(f"{r.name:<12} {f'{r.caught}/{r.total}':>13} {r.score:>6.1f}% {r.timeouts:>8} {r.errors:>6} "
                   f"{r.equivalent:>6} {r.baseline:>5.1f}s {_fmt_time(r.wall):>8}{sample}")
    total = sum(r.total for r in results)
    caught = sum(r.caught for r in results)
    score = 100.0 * caught / total if total else 100.0
    out.append(f"{'TOTAL':<12} {f'{caught}/{total}':>13} {score:>6.1f}% {sum(r.timeouts for r in results):>8} "
               f"{sum(r.errors for r in results):>6} {sum(r.equivalent for r in results):>6} {'':>6} "
               f"{_fmt_time(wall):>8}")
    survivors = [s for r in results for s in r.survivors]
    out.append("")
    out.append(f"Survivors ({len(survivors)}):" if survivors else "Survivors: none")
    for m, before, after in survivors:
        out.append(f"{m.module}:{m.line}: {m.original or '∅'} -> {m.mutated or '∅'}   [{m.id}]")
        out.append(f"    - {before.strip()}")
        out.append(f"    + {after.strip()}")
    if equivalent:
        out.append("")
        out.append(f"Equivalent, not scored ({len(equivalent)}):")
        out.extend(f"{mid}  # {reason}" for mid, reason in equivalent)
    return "\n".join(out)


def _md(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`" if text else "∅"


def format_markdown(results: list[ModuleResult], equivalent: list[tuple[str, str]], wall: float,
                    command: str, equivalent_file: str = "tools/mutants_equivalent.txt") -> str:
    total = sum(r.total for r in results)
    caught = sum(r.caught for r in results)
    score = 100.0 * caught / total if total else 100.0
    out = [
        "# Mutation testing",
        "",
        f"`{command}` (wall time {_fmt_time(wall)}). A mutant is one small change to one module;",
        "it is killed when that module's own tests fail (or error, or time out) and survives when",
        f"they pass. Equivalent mutants ({equivalent_file}) are not scored.",
        "",
        "| module | killed / total | score | timeouts | errors | equivalent | clean run | time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        sample = f" (sample of {r.sampled_from})" if r.sampled_from > r.total else ""
        out.append(f"| {r.name} | {r.caught} / {r.total}{sample} | {r.score:.1f} % | {r.timeouts} | {r.errors} | "
                   f"{r.equivalent} | {r.baseline:.1f} s | {_fmt_time(r.wall)} |")
    out.append(f"| **total** | **{caught} / {total}** | **{score:.1f} %** | {sum(r.timeouts for r in results)} | "
               f"{sum(r.errors for r in results)} | {sum(r.equivalent for r in results)} | | {_fmt_time(wall)} |")
    survivors = [s for r in results for s in r.survivors]
    out += ["", f"## Survivors ({len(survivors)})", ""]
    if survivors:
        out += ["| mutant | change | source line | mutated line |", "|---|---|---|---|"]
        for m, before, after in survivors:
            out.append(f"| {_md(m.id)} | {_md(m.original)} → {_md(m.mutated)} | "
                       f"{_md(before.strip())} | {_md(after.strip())} |")
    else:
        out.append("None.")
    if equivalent:
        out += ["", f"## Equivalent mutants, not scored ({len(equivalent)})", "", "| mutant | reason |", "|---|---|"]
        out += [f"| {_md(mid)} | {reason.replace('|', '/')} |" for mid, reason in equivalent]
    return "\n".join(out) + "\n"


# --- the command --------------------------------------------------------------------------

def _parse_map(items: list[str]) -> dict[str, list[str]]:
    out = {}
    for item in items:
        name, sep, tests = item.partition("=")
        if not sep or not name or not tests:
            raise SystemExit(f"--map wants MODULE=TEST_FILE[,TEST_FILE...], got {item!r}")
        out[name] = [t for t in tests.split(",") if t]
    return out


@dataclasses.dataclass
class Plan:
    """What one invocation mutates and runs."""

    root: Path
    package: str
    mapping: dict[str, list[str]]  # module -> its test files
    selected: list[str]
    sources: dict[str, str] = dataclasses.field(default_factory=dict)
    mutants: dict[str, list[Mutant]] = dataclasses.field(default_factory=dict)  # to run, per module
    sampled_from: dict[str, int] = dataclasses.field(default_factory=dict)  # before --max
    equivalent: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (id, reason) left out
    stale: list[str] = dataclasses.field(default_factory=list)  # equivalent-file IDs that match nothing
    equivalent_file: Path = EQUIVALENT_FILE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="killed = the tests failed, errored or timed out; survived = they passed\n")
    parser.add_argument("--module", action="append", default=[], metavar="NAME",
                        help="only this module (repeatable); default: every module in the mapping")
    parser.add_argument("--max", type=int, default=None, metavar="N",
                        help="a seeded random sample of N mutants per module (a quick run; 0: clean runs only)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --max (default 0)")
    parser.add_argument("--id", action="append", default=[], metavar="MUTANT",
                        help="only this mutant, by its ID as --list prints it (repeatable; e.g. to recheck a survivor)")
    parser.add_argument("--list", action="store_true", help="print the mutants and their counts, run nothing")
    parser.add_argument("--jobs", type=int, default=2, help="children at once (default 2)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report as Markdown tables")
    parser.add_argument("--equivalent", metavar="FILE", default=str(EQUIVALENT_FILE),
                        help="equivalent mutants, left out of the score (default tools/mutants_equivalent.txt)")
    parser.add_argument("--timeout-factor", type=float, default=3.0, metavar="X",
                        help="per-mutant timeout: this times the clean run of the module's tests (default 3)")
    parser.add_argument("--timeout-min", type=float, default=30.0, metavar="S", help="shortest per-mutant timeout, s (default 30)")
    parser.add_argument("--root", default=str(ROOT), metavar="DIR", help="project root: tests run from here (default: this repo)")
    parser.add_argument("--package", default=PACKAGE, metavar="NAME", help=f"the package whose modules are mutated ({PACKAGE})")
    parser.add_argument("--map", action="append", default=[], metavar="MODULE=TESTS",
                        help="module -> comma-separated test files, replacing the built-in mapping (repeatable)")
    return parser


def make_plan(args, parser, modules: dict[str, list[str]] | None = None) -> Plan:
    root = Path(args.root).resolve()
    mapping = _parse_map(args.map) if args.map else dict(modules if modules is not None else MODULES)
    unknown = [m for m in args.module if m not in mapping]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(mapping)}")
    plan = Plan(root, args.package, mapping, args.module or list(mapping),
                equivalent_file=Path(args.equivalent).resolve())
    for name in plan.selected:
        for t in mapping[name]:
            if not (root / t).is_file():
                parser.error(f"{name}: test file {t} not found under {root}")
        if not (root / args.package / f"{name}.py").is_file():
            parser.error(f"{args.package}/{name}.py not found under {root}")
    equivalent = read_equivalent(plan.equivalent_file)
    known = set()
    for name in plan.selected:
        source = (root / args.package / f"{name}.py").read_text(encoding="utf-8")
        everything = generate(source, name)
        known |= {m.id for m in everything}
        kept = [m for m in everything if m.id not in equivalent]
        plan.equivalent += [(m.id, equivalent[m.id]) for m in everything if m.id in equivalent]
        if args.id:
            kept = [m for m in kept if m.id in args.id]
        plan.sampled_from[name] = len(kept)
        if args.max is not None and len(kept) > args.max:
            kept = sorted(random.Random(f"{args.seed}:{name}").sample(kept, args.max), key=everything.index)
        plan.sources[name], plan.mutants[name] = source, kept
    missing = [mid for mid in args.id if mid not in known]
    if missing:
        parser.error(f"no such mutant in the selected modules: {', '.join(missing)}")
    plan.stale = [mid for mid in equivalent if mid.split(":")[0] in plan.selected and mid not in known]
    return plan


def list_mutants(plan: Plan) -> None:
    for name in plan.selected:
        sample = f" (sample of {plan.sampled_from[name]})" if plan.sampled_from[name] > len(plan.mutants[name]) else ""
        print(f"# {name}: {len(plan.mutants[name])} mutants{sample}")
        for m in plan.mutants[name]:
            print(f"{m.id}\n    {m.lines(plan.sources[name])[1].strip()}")
    print()
    for name in plan.selected:
        print(f"{name:<12} {len(plan.mutants[name]):>5}")
    print(f"{'TOTAL':<12} {sum(len(p) for p in plan.mutants.values()):>5}")


def run(plan: Plan, jobs: int = 2, timeout_factor: float = 3.0, timeout_min: float = 30.0) -> list[ModuleResult] | None:
    """Clean runs, then every planned mutant; None when a clean run fails (after saying why)."""
    started = time.monotonic()
    os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported: every child computes on one thread
    os.environ["MKL_NUM_THREADS"] = "1"
    sys.path.insert(0, str(plan.root))
    pkg = importlib.import_module(plan.package)
    if not Path(pkg.__file__).resolve().is_relative_to(plan.root):
        print(f"error: {plan.package} imports from {pkg.__file__}, not from {plan.root}", file=sys.stderr)
        return None
    _preload(plan.root, plan.package, [plan.root / t for name in plan.selected for t in plan.mapping[name]])
    for name in plan.selected:
        importlib.import_module(f"{plan.package}.{name}")
    import gc

    import tqdm

    tqdm.tqdm.monitor_interval = 0  # no thread in the parent while it forks
    gc.collect()
    gc.freeze()  # the children's collections (pytest runs several) skip the parent's millions of objects
    print(f"Imports ready in {time.monotonic() - started:.1f} s; clean runs of {len(plan.selected)} module(s) ...",
          file=sys.stderr)

    results = {name: ModuleResult(name, sampled_from=plan.sampled_from[name],
                                  equivalent=sum(1 for mid, _ in plan.equivalent if mid.startswith(name + ":")))
               for name in plan.selected}
    failures = []

    def baseline_done(job, outcome):
        results[job.key].baseline = outcome.seconds
        if outcome.status != "survived":
            failures.append((job.key, outcome))

    # The clean run executes the unmutated source the same way a mutant's is, so it also
    # proves that re-executing the module into itself changes nothing.
    run_jobs([_Job(name, f"{plan.package}.{name}", plan.sources[name], plan.mapping[name], 1800.0)
              for name in plan.selected], jobs, plan.package, baseline_done,
             keep_log=lambda job, outcome: outcome.status != "survived")
    if failures:
        for name, outcome in failures:
            tail = "\n".join(outcome.log.strip().splitlines()[-40:])
            what = "timed out" if outcome.status == "timeout" else f"exit code {outcome.exit}"
            print(f"\nerror: the clean run of {name}'s tests ({' '.join(plan.mapping[name])}) does not pass "
                  f"({what}), so its mutants would tell nothing. Its output:\n{tail}", file=sys.stderr)
        return None
    for name in plan.selected:
        print(f"  {name}: clean run {results[name].baseline:.1f} s, {len(plan.mutants[name])} mutants",
              file=sys.stderr)

    with tqdm.tqdm(total=sum(len(p) for p in plan.mutants.values()), unit="mutant", file=sys.stderr,
                   dynamic_ncols=True) as bar:
        for name in plan.selected:
            r, source = results[name], plan.sources[name]
            r.total = len(plan.mutants[name])
            bar.set_description(name)
            timeout = max(timeout_min, timeout_factor * r.baseline)
            t0 = time.monotonic()

            def done(job, outcome, r=r, source=source):
                m = job.key
                if outcome.status == "survived":
                    r.survivors.append((m, *m.lines(source)))
                    bar.write(f"survived: {m.id}", file=sys.stderr)
                else:
                    r.killed += outcome.status == "killed"
                    r.timeouts += outcome.status == "timeout"
                    r.errors += outcome.status == "error"
                bar.update(1)
                bar.set_postfix(killed=r.caught, survived=len(r.survivors))

            run_jobs([_Job(m, f"{plan.package}.{name}", m.apply(source), plan.mapping[name], timeout)
                      for m in plan.mutants[name]], jobs, plan.package, done)
            r.survivors.sort(key=lambda s: plan.mutants[name].index(s[0]))
            r.wall = time.monotonic() - t0
    return [results[name] for name in plan.selected]


def main(argv: list[str] | None = None, modules: dict[str, list[str]] | None = None) -> int:
    """The command line; ``modules`` replaces the built-in module -> tests mapping (as --map does)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.jobs < 1 or (args.max is not None and args.max < 0):
        parser.error("--jobs must be at least 1 and --max at least 0")
    markdown = Path(args.markdown).resolve() if args.markdown else None
    plan = make_plan(args, parser, modules)
    os.chdir(plan.root)
    for mid in plan.stale:
        print(f"warning: {plan.equivalent_file}: no such mutant any more: {mid}", file=sys.stderr)
    if args.list:
        list_mutants(plan)
        return 0
    if not hasattr(os, "fork"):
        print("error: mutation testing forks one child per mutant; this system has no os.fork (use Linux, "
              "macOS or WSL)", file=sys.stderr)
        return 2

    started = time.monotonic()
    try:
        results = run(plan, args.jobs, args.timeout_factor, args.timeout_min)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    if results is None:
        return 2
    wall = time.monotonic() - started
    print(format_text(results, plan.equivalent, wall))
    if markdown:
        command = shlex.join(["python", "tools/mutants.py", *(argv if argv is not None else sys.argv[1:])])
        root = plan.root
        eq = plan.equivalent_file
        label = eq.relative_to(root) if eq.is_relative_to(root) else eq.name
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(format_markdown(results, plan.equivalent, wall, command, str(label)), encoding="utf-8")
        print(f"wrote {markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
