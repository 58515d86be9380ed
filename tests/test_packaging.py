"""What the distribution installs: one top-level package, threadprobe, with the built-in probes
under it and the entry points (console script, pytest plugin, probes) pointing into it."""

from __future__ import annotations

import configparser
import subprocess
import sys

from tests.conftest import HERE

ROOT = HERE.parent


def test_the_wheel_installs_threadprobe_alone(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=300)
    top = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin"}
    assert top == {"threadprobe"}
    assert (target / "threadprobe" / "probes" / "netcdf.py").exists()
    assert (target / "threadprobe" / "records" / "schema" / "diagnosis-4.schema.json").exists()
    assert (target / "threadprobe" / "harness" / "threadprobe.supp").exists()
    [info] = target.glob("threadprobe-*.dist-info")
    points = configparser.ConfigParser()
    points.read(info / "entry_points.txt")
    assert points["console_scripts"]["threadprobe"] == "threadprobe.cli:main"
    assert points["pytest11"]["threadprobe"] == "threadprobe.pytest.plugin"
    assert all(v.startswith("threadprobe.probes.") for v in points["threadprobe.probes"].values())
    code = ("import json, sys; import threadprobe, threadprobe.probes.netcdf, threadprobe.pytest.plugin; "
            "print(threadprobe.__file__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith(str(target))
