"""The worker's side of the harness (threadprobe.harness.child): a worker process writes its report
whatever its probe does, and the fork server's preload reports what it could not import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import TRIVIAL
from threadprobe.harness import child
from threadprobe.harness.proc import child_env


def worker(tmp_path: Path, spec: dict) -> dict:
    """One worker, spawned as the spawn launcher does, on ``spec``; its report."""
    tdir = tmp_path / "t"
    tdir.mkdir(exist_ok=True)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"trial_dir": str(tdir), "workdir": str(tmp_path), **spec}))
    done = subprocess.run([sys.executable, "-m", "threadprobe.harness.child", "worker", str(path), "0"], env=child_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads((tdir / "result.0.json").read_text())


def test_prepare_reports_no_errors_or_the_probes_own(tmp_path: Path):
    assert worker(tmp_path, {"stage": "prepare", "ref": f"{TRIVIAL}:Trivial"}) == {"errors": []}
    failed = worker(tmp_path, {"stage": "prepare", "ref": f"{TRIVIAL}:NoSuchProbe"})
    assert failed["errors"][0]["stage"] == "prepare" and "NoSuchProbe" in failed["errors"][0]["message"]


def test_a_harness_fault_is_reported_not_raised(tmp_path: Path):
    report = worker(tmp_path, {"stage": "trial", "plugins": [str(tmp_path / "missing.py")]})
    assert report["errors"][0]["stage"] == "harness" and "plugin file not found" in report["errors"][0]["message"]


def test_preload_names_the_first_module_it_could_not_import():
    assert child._preload(["json", "os"]) == ""
    assert child._preload(["json", "no_such_module_anywhere"]) == "no_such_module_anywhere: ModuleNotFoundError"


def test_a_wrong_command_line_is_a_usage_line():
    done = subprocess.run([sys.executable, "-m", "threadprobe.harness.child", "nonsense"], env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("usage: python -m threadprobe.harness.child")
