"""The layers are checked, not claimed: import-linter's contracts (pyproject.toml) hold on the
package as it installs, and the same contracts fail on a copy with one arrow pointing up or one
process in a pure policy."""

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


def test_every_contract_is_kept(tmp_path):
    root = planted_copy(tmp_path)
    done = lint(root, root)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "0 broken" in done.stdout and done.stdout.count(" KEPT") == 2


def planted_copy(tmp_path: Path, module: str = "", line: str = "") -> Path:
    """The package as it installs (threadprobe/ with probes/ inside: the checkout maps probes/
    there, which import-linter cannot follow), with one line appended to one module."""
    package = tmp_path / "threadprobe"
    shutil.copytree(ROOT / "toolkit", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "probes", package / "probes", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    if module:
        with open(package / module, "a") as fh:
            fh.write(f"\n{line}  # planted\n")
    return tmp_path


def test_an_upward_import_breaks_the_layers(tmp_path):
    """The harness importing the scheduling stage is caught, by name."""
    root = planted_copy(tmp_path, "harness/worker.py", "from threadprobe.scheduling import pipeline")
    done = lint(root, root)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "the stages, bottom up" in done.stdout and "BROKEN" in done.stdout
    assert "threadprobe.harness.worker -> threadprobe.scheduling.pipeline" in done.stdout


def test_a_process_in_a_pure_policy_breaks_purity(tmp_path):
    root = planted_copy(tmp_path, "diagnosis/plan.py", "import subprocess")
    done = lint(root, root)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "pure policies" in done.stdout and "threadprobe.diagnosis.plan -> subprocess" in done.stdout
