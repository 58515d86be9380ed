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
from threadprobe.records import TRIAL_SCHEMA, Mode, Stage, Trial, WorkerReport


def worker(tmp_path: Path, spec: dict) -> WorkerReport:
    """One worker, spawned as the spawn launcher does, on ``spec``; its report, as the parent reads it."""
    tdir = tmp_path / "t"
    tdir.mkdir(exist_ok=True)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"schema": TRIAL_SCHEMA, "trial_dir": str(tdir), "workdir": str(tmp_path), **spec}))
    done = subprocess.run([sys.executable, "-m", "threadprobe.harness.child", "worker", str(path), "0"], env=child_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = WorkerReport.parse((tdir / "result.0.json").read_text())
    assert report is not None
    return report


def test_prepare_reports_no_errors_or_the_probes_own(tmp_path: Path):
    assert worker(tmp_path, {"job": "prepare", "ref": f"{TRIVIAL}:Trivial"}).errors == ()
    (failed,) = worker(tmp_path, {"job": "prepare", "ref": f"{TRIVIAL}:NoSuchProbe"}).errors
    assert failed.stage == Stage.PREPARE and "NoSuchProbe" in (failed.message or "")


def test_a_harness_fault_is_reported_not_raised(tmp_path: Path):
    trial = Trial("trivial.square", f"{TRIVIAL}:Trivial", Mode.SERIAL, 1, 1, 4).to_json()
    (error,) = worker(tmp_path, {"job": "trial", "trial": trial, "plugins": [str(tmp_path / "missing.py")]}).errors
    assert error.stage == Stage.HARNESS and "plugin file not found" in (error.message or "")


def test_a_spec_is_checked_where_the_worker_reads_it(tmp_path: Path):
    """Its schema, and what its stage needs, before any probe is loaded: a wrong one is the
    worker's reported harness error, naming what is wrong."""
    trial = Trial("trivial.square", f"{TRIVIAL}:Trivial", Mode.SERIAL, 1, 1, 4).to_json()
    assert worker(tmp_path, {"job": "prepare", "ref": f"{TRIVIAL}:Trivial", "instruments": ["core_dumps"]}).errors == ()
    for spec, why in (({"schema": "threadprobe.trial/1", "job": "trial", "trial": trial}, "not threadprobe.trial/2"),
                      ({"job": "trial"}, "a trial spec needs its trial"),
                      ({"job": "prepare"}, "a prepare spec needs the probe's ref"),
                      ({"job": "trial", "trial": trial, "instruments": ["core"]}, "'core' is not a valid Instrument")):
        [error] = worker(tmp_path, spec).errors
        assert error.stage == Stage.HARNESS and why in (error.message or ""), (spec, error.message)


def test_preload_names_the_first_module_it_could_not_import():
    assert child._preload(["json", "os"]) == ""
    assert child._preload(["json", "no_such_module_anywhere"]) == "no_such_module_anywhere: ModuleNotFoundError"


def test_a_wrong_command_line_is_a_usage_line():
    done = subprocess.run([sys.executable, "-m", "threadprobe.harness.child", "nonsense"], env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("usage: python -m threadprobe.harness.child")
