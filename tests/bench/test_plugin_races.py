"""Benchmark: the plugin's --threadprobe-races under the real helgrind, on planted C code.

A test whose threads race on a static buffer but still get the right answer (both write the same
bytes) must fail, labelled racy, naming racy_fill; the same work behind a mutex must pass. Each
test's child starts pytest under helgrind (about a minute here), so this is not in make test;
tests/pytest/test_races.py tests the plugin's side with a fake detector."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from threadprobe.harness.valgrind import valgrind

DEFECTS = Path(__file__).parents[1] / "planted" / "defects.c"
TARGET = textwrap.dedent('''
    import ctypes, os
    lib = ctypes.CDLL(os.environ["LIBDEFECTS"])

    def test_racy_but_right():
        buf = ctypes.create_string_buffer(64)
        lib.racy_fill(1, buf, 64, ctypes.c_long(200000))  # both threads write the same bytes
        assert buf.raw[:3] == bytes([31, 32, 33])

    def test_locked():
        lib.locked_sum.restype = ctypes.c_long
        assert lib.locked_sum(1, ctypes.c_long(20000)) > 0
''')


@pytest.mark.bench
@pytest.mark.skipif(valgrind() is None, reason="valgrind is not installed")
def test_plugin_races_fails_a_right_but_racy_test_and_passes_a_locked_one(tmp_path):
    lib = tmp_path / "libdefects.so"
    subprocess.run(["gcc", "-O1", "-g", "-shared", "-fPIC", "-pthread", "-o", str(lib), str(DEFECTS)], check=True)
    (tmp_path / "test_target.py").write_text(TARGET)
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "test_target.py", "--threadprobe-threads=2", "--threadprobe-iterations=5",
                           "--threadprobe-races"], cwd=tmp_path, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "LIBDEFECTS": str(lib)})
    print(f"plugin --threadprobe-races on 2 planted tests: {time.monotonic() - began:.0f}s")
    assert "1 failed, 1 passed" in done.stdout, done.stdout[-3000:]
    assert "racy: 1 race pair" in done.stdout and "racy_fill" in done.stdout
    assert "FAILED test_target.py::test_racy_but_right" in done.stdout
