"""Reproducers run in a fresh interpreter without threadprobe, and reproduce the failure."""

import subprocess
import sys
import textwrap

from tests.conftest import PLANTED
from toolkit import registry, repro
from toolkit.probe import digest
from toolkit.records import Result

BLOCKED_RUN = textwrap.dedent("""
    import runpy, sys
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("toolkit", "probes"):
                raise ImportError(f"{name} must come from the reproducer, not from an installation")
    sys.meta_path.insert(0, Blocker())
    runpy.run_path(sys.argv[1], run_name="__main__")
""")


def planted_result(name, verdict, mode="threads", workers=2):
    return Result(probe=name, dependency="planted", mode=mode, workers=workers,
                  processes=workers if mode == "processes" else 1, threads=workers if mode == "threads" else 1,
                  trials=3, outcomes={}, verdict=verdict, failure_rate_upper95=1.0)


def run(script, tmp_path):
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)


def ref(name):
    return next(p.ref for p in registry.discover([PLANTED], entry_points=False) if p.name == name)


def test_a_crash_reproduces_without_threadprobe(planted, tmp_path):
    script = repro.write(planted_result("planted.crash", "crash"), ref("planted.crash"), 100, tmp_path)
    done = run(script, tmp_path)
    assert done.returncode < 0 or "Fatal Python error" in done.stderr, done.stdout + done.stderr


def test_corruption_reproduces_and_shows_both_values(planted, tmp_path):
    script = repro.write(planted_result("planted.race", "corrupt"), ref("planted.race"), 100, tmp_path)
    done = run(script, tmp_path)
    assert done.returncode == 1 and "serial:" in done.stdout and "concurrent:" in done.stdout


def test_a_safe_probe_does_not_reproduce(planted, tmp_path):
    script = repro.write(planted_result("planted.safe", "crash", mode="processes"), ref("planted.safe"), 40, tmp_path)
    done = run(script, tmp_path)
    assert done.returncode == 0 and "no failure" in done.stdout, done.stderr


def test_builtin_probes_carry_their_helper_modules(tmp_path):
    (info,) = [p for p in registry.discover() if p.name == "netcdf4.read_separate_files.zlib"]
    text = repro.script(planted_result(info.name, "crash"), info.ref, 8)
    assert "_install('probes._common'" in text and "_install('toolkit'" in text
    assert text.index("probes._common") < text.index("_install('probes.netcdf'")
    assert digest  # the reproducer's digest is toolkit/probe.py's own: same function, same digests
