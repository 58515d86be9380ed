"""The layers are checked, not claimed: import-linter's contracts (pyproject.toml) hold, and the
same contracts fail on a copy of the tree with one arrow pointing up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(cwd: Path, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(path) if path else os.environ.get("PYTHONPATH", ""))
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_every_contract_is_kept():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "0 broken" in done.stdout and done.stdout.count(" KEPT") >= 5


def test_an_upward_import_breaks_its_contract(tmp_path):
    """The runner importing the pipeline (as runner/bench.py once did) is caught, by name."""
    shutil.copytree(ROOT / "toolkit", tmp_path / "toolkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "toolkit" / "runner" / "locks.py", "a") as fh:
        fh.write("\nfrom toolkit import pipeline  # planted: an arrow pointing up\n")
    done = lint(tmp_path, tmp_path)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "the runner never imports the diagnosis BROKEN" in done.stdout
    assert "toolkit.runner.locks -> toolkit.pipeline" in done.stdout
