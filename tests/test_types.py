"""The types are checked, not claimed: mypy ([tool.mypy] in pyproject.toml) finds no error in the
package as it installs, with --strict's flags on the records, the harness and the diagnosis, and
it does find a planted one, in a strict stage and in a lenient one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_layers import planted_copy

MYPY = [sys.executable, "-m", "mypy"]


ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("mypy")  # one worker writes the cache


@pytest.fixture(scope="module")
def cache() -> Path:
    """One mypy cache for every clone on this machine, in threadprobe's cache folder: the standard
    library and dask are read once, not in every session or fresh clone (11 s of a test session's
    2 cores); the package's own modules, copied to a new folder each time, are checked afresh."""
    from threadprobe.harness.proc import cache_home

    return cache_home() / "mypy"


def check(root: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MYPY, "--cache-dir", str(cache), "-p", "threadprobe"], cwd=root, capture_output=True,
                          text=True, timeout=300)


def test_the_package_has_no_type_error(tmp_path, cache):
    done = check(planted_copy(tmp_path), cache)
    assert done.returncode == 0, done.stdout[-3000:]
    assert done.stdout.startswith("Success: no issues found")


def test_an_untyped_function_in_the_harness_and_a_type_error_in_scheduling_are_found(tmp_path, cache):
    root = planted_copy(tmp_path, "harness/trial.py", "def planted(spec): return spec['x']")
    with open(root / "threadprobe" / "scheduling" / "choose.py", "a") as fh:
        fh.write('\nplanted: int = "one"  # planted\n')
    done = check(root, cache)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "threadprobe/harness/trial.py" in done.stdout and "[no-untyped-def]" in done.stdout
    assert "threadprobe/scheduling/choose.py" in done.stdout and "[assignment]" in done.stdout
    assert "Found 2 errors in 2 files" in done.stdout
