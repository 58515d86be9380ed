"""``--threadprobe-races``: a threaded test's body under valgrind's race detector, in a child of its own.

pytest-run-parallel sends its users to a ThreadSanitizer build of CPython and of every extension
they load. This needs no rebuild: the test runs again in a fresh ``python -m pytest NODEID`` under
``valgrind --tool=helgrind`` (or DRD), in threads as usual (the plugin's own fork of that child
stays under valgrind, with an XML report of its own), and the reports become race pairs through
the same attribution as ``diagnose --races`` (``threadprobe.diagnosis.races.parse``). A race pair in native code fails
the test even when every thread gave the right answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from threadprobe.diagnosis.races import parse as races
from threadprobe.harness.proc import child_env
from threadprobe.harness.valgrind import ENV, Detector
from threadprobe.records import RacePass, RaceStatus, RaceTool

#: Set in the child: it runs the test in threads as usual, and never starts a child of its own.
CHILD = "THREADPROBE_RACE_CHILD"
#: pytest itself and the test's imports under helgrind take 20 s to a few minutes (Iris).
TIMEOUT = 1200.0


def in_child() -> bool:
    return bool(os.environ.get(CHILD))


def command(item: pytest.Item, threads: int, iterations: int) -> list[str]:
    config = item.config
    args = [sys.executable, "-m", "pytest", item.nodeid, "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
            f"--threadprobe-threads={threads}", f"--threadprobe-iterations={iterations}",
            "--rootdir", str(config.rootpath)]
    if config.inipath is not None:
        args += ["-c", str(config.inipath)]
    return args


def check(item: pytest.Item, tool: RaceTool, threads: int, iterations: int) -> RacePass:
    """Run ``item`` in threads in a child under ``tool``; its race pass."""
    folder = Path(tempfile.mkdtemp(prefix="threadprobe-races-"))
    detector = Detector(tool, folder)
    began = time.monotonic()
    failure = None
    try:
        done = subprocess.run([*detector.prefix(), *command(item, threads, iterations)], cwd=item.config.rootpath,
                              env=child_env({**ENV, CHILD: "1"}), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=TIMEOUT)
        if done.returncode not in (0, 1):  # 1: the test failed, which the threaded run reports itself
            failure = f"pytest exited with {done.returncode} under {tool}: {done.stdout.strip()[-300:]}"
    except subprocess.TimeoutExpired:
        failure = f"no result within {TIMEOUT:.0f}s under {tool} (a timeout)"
    texts = [p.read_text(errors="replace") for p in sorted(folder.glob("vg.*.xml"))]
    return races.analyse(texts, tool, threads, threads * iterations, failure, time.monotonic() - began)


def failure_text(found: RacePass) -> str:
    """The pairs, with both stacks of the first: why a test whose threads were right still fails."""
    lines = [f"racy: {found.summary()}"]
    for pair in found.pairs[:3]:
        via = f" (reached through {', '.join(pair.operations)})" if pair.operations else ""
        lines.append(f"race {pair.key} x{pair.count}{via}: {pair.what}")
        for k, stack in enumerate(pair.stacks):
            lines += ["  this access:" if k == 0 else "  conflicts with:", races.stack_text(stack, limit=8)]
    return "\n".join(lines)


__all__ = ["CHILD", "RaceStatus", "check", "failure_text", "in_child"]
