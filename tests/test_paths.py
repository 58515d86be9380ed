"""The repository's own paths named in comments, docstrings, scripts and configuration exist: a
module or test that moves leaves no reader looking for it where it was. (In Python files only
comments and docstrings are read: a test's string literals may name made-up paths on purpose.)"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).parents[1]
#: A path into the repository: one of its top folders, then at least one more part.
PATH = re.compile(r"(?<![\w/.-])(?:toolkit|probes|tests|\.ci|docs)/[\w./-]*\w")
SCANNED = ("toolkit", "probes", "tests", ".ci")
#: Paths inside other projects that happen to start like ours (Iris's own test folders).
FOREIGN = {"tests/bench/iris_suites.py": ("tests/integration/", "tests/unit/")}


def named_paths(text: str, first_line: int = 1) -> list[tuple[int, str]]:
    return [(first_line + text.count("\n", 0, m.start()), m.group(0).rstrip(".")) for m in PATH.finditer(text)
            if not any(part.startswith("_") and part != "__init__.py" for part in m.group(0).split("/"))]


def prose(source: str) -> list[tuple[int, str]]:
    """A Python file's comments and docstrings, each with its first line."""
    out = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
           if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.append((first.lineno, first.value.value))
    return out


def missing(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    files = [root / "Makefile", root / "pyproject.toml"] + [
        p for top in SCANNED if (root / top).is_dir() for p in (root / top).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".sh", ".c", ".supp", ".toml", ".cfg", "")]
    for path in files:
        rel = path.relative_to(root).as_posix()
        if rel == "tests/test_paths.py":
            continue  # its examples are stale on purpose
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        texts = prose(text) if path.suffix == ".py" else [(1, text)]
        gone = [f"{line}: {name}" for start, chunk in texts for line, name in named_paths(chunk, start)
                if not (root / name).exists() and not name.startswith(FOREIGN.get(rel, ("\0",)))]
        if gone:
            out[rel] = gone
    return out


def test_the_scan_finds_a_planted_stale_path():
    assert named_paths("see tests/test_plan.py, and toolkit/records/schema/.") == [
        (1, "tests/test_plan.py"), (1, "toolkit/records/schema")]
    assert named_paths("in reports/diagnosis.json or my_tests/x.py, built in docs/_build/html") == []
    assert prose('"""Moved: tests/a.py."""\nX = "tests/b.py"  # see tests/c.py\n') == [
        (2, "# see tests/c.py"), (1, "Moved: tests/a.py.")]


def test_every_path_the_repository_names_exists():
    assert missing(ROOT) == {}
