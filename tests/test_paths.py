"""The repository's own paths named in code, comments, scripts and configuration exist: a
module or test that moves leaves no reader looking for it where it was."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
#: A path into the repository: one of its top folders, then at least one more part.
PATH = re.compile(r"(?<![\w/.-])(?:toolkit|probes|tests|\.ci|docs)/[\w./-]*\w")
SCANNED = ("toolkit", "probes", "tests", ".ci")
#: Paths inside other projects that happen to start like ours (Iris's own test folders).
FOREIGN = {"tests/bench/iris_suites.py": ("tests/integration/", "tests/unit/")}


def named_paths(text: str) -> list[tuple[int, str]]:
    return [(text.count("\n", 0, m.start()) + 1, m.group(0).rstrip(".")) for m in PATH.finditer(text)]


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
        gone = [f"{line}: {name}" for line, name in named_paths(text)
                if not (root / name).exists() and not name.startswith(FOREIGN.get(rel, ("\0",)))]
        if gone:
            out[rel] = gone
    return out


def test_the_scan_finds_a_planted_stale_path():
    assert named_paths("see tests/test_plan.py, and toolkit/records/schema/.") == [
        (1, "tests/test_plan.py"), (1, "toolkit/records/schema")]
    assert named_paths("in reports/diagnosis.json or my_tests/x.py") == []


def test_every_path_the_repository_names_exists():
    assert missing(ROOT) == {}
