"""The newest stack, diagnosed from this install through ``--python`` (environment checks).

Describes two builds: ``.venv-newest`` (.ci/newest-up, run by ``make test``: the newest CPython
here, 3.13 from pyenv, with the newest Iris pip resolves there: 3.16.2 on 2026-12-03) against
this venv (Python 3.11, Iris 3.14.1). Skips, saying why, when that venv could not be built. And
the ``--python`` worker side on every CPython from 3.11 to 3.13 found here, with a probe that
needs no package at all. Nothing here waits for a crash: the assertions are about what the
report describes and what ran, whatever the verdicts.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from tests.conftest import TRIVIAL

ROOT = Path(__file__).resolve().parents[1]
NEWEST = ROOT / ".venv-newest" / "bin" / "python"
AUDITED = "iris_netcdf.lazy_chunks"  # an Iris netCDF probe: the lock audit runs on it

pytestmark = [pytest.mark.environment, pytest.mark.slow]


def own_report(python: str | Path, code: str) -> str:
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                          timeout=120).stdout.strip()


def diagnose(out: Path, python: str | Path, *args: str) -> dict:
    subprocess.run([sys.executable, "-m", "threadprobe.cli", "diagnose", "--quiet", "--python", str(python),
                    "--threads", "2", "--processes", "1", "--budget", "2", "--out", str(out), *args],
                   check=True, capture_output=True, timeout=600)
    return json.loads((out / "diagnosis.json").read_text())


@pytest.fixture(scope="module")
def newest(tmp_path_factory) -> dict:
    if not NEWEST.exists():
        pytest.skip(".venv-newest is not here (.ci/newest-up builds it; make test runs that first)")
    return diagnose(tmp_path_factory.mktemp("newest"), NEWEST, "--probe", AUDITED)


def test_the_report_names_the_newest_interpreter_and_its_iris(newest):
    import iris

    python = newest["fingerprint"]["python"]
    assert newest["interpreter"] == str(NEWEST) and python["executable"] == str(NEWEST)
    assert Version(python["version"]) > Version(".".join(map(str, sys.version_info[:3])))
    theirs = own_report(NEWEST, "import iris; print(iris.__version__)")
    assert newest["fingerprint"]["packages"]["iris"]["version"] == theirs  # what that interpreter imports
    assert Version(theirs) >= Version(iris.__version__)  # pip's newest there, this venv's here


def test_the_lock_audit_runs_on_the_newest_iris(newest):
    audits = [a for a in newest["lock_audit"] if a["probe"] == AUDITED]
    assert len(audits) == 1 and audits[0]["calls"] > 0, newest["lock_audit"]
    assert 0 <= audits[0]["unlocked"] <= audits[0]["calls"]
    assert {r["mode"] for r in newest["results"] if r["probe"] == AUDITED} == {"serial", "threads"}


def pythons() -> list[str]:
    """Every CPython 3.11 to 3.13 found here (pyenv's and PATH's), one per minor version."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found: dict[str, str] = {}
    for minor in ("3.11", "3.12", "3.13"):
        for path in sorted(glob.glob(f"{root}/versions/{minor}.*/bin/python{minor}")) + [f"/usr/bin/python{minor}"]:
            if os.access(path, os.X_OK):
                found.setdefault(minor, path)
    return sorted(found.values())


@pytest.mark.parametrize("python", pythons() or [pytest.param(None, marks=pytest.mark.skip("no CPython 3.11-3.13"))])
def test_the_worker_side_runs_on_every_python_from_3_11_to_3_13(tmp_path, python):
    report = diagnose(tmp_path, python, "--plugin", str(TRIVIAL), "--no-entry-points", "--no-evidence")
    version = own_report(python, "import sys; print('.'.join(map(str, sys.version_info[:3])))")
    assert report["fingerprint"]["python"]["version"] == version
    ran = {r["mode"]: r for r in report["results"]}
    assert set(ran) == {"serial", "threads"} and all(r["trials"] > 0 for r in ran.values())
    assert all(r["verdict"] == "safe" for r in ran.values())  # squaring ints: nothing to find
