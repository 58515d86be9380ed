"""The GIL a pytest session ran in, and which module turned it back on (free-threaded builds).

Forked test bodies inherit the GIL state of the pytest process at the fork, so the session's
state is its trials' state: forced off (``PYTHON_GIL=0`` or ``-X gil=0``), or as imported (on
from the first import of an extension module that does not declare itself GIL-free, usually
while collecting).

Python names that module once, in a RuntimeWarning (``harness.gil.REENABLED``), and pytest's own
warning capture takes it: the plugin reads it where pytest hands every captured warning on
(the public hook ``pytest_warning_recorded``, replayed for warnings from before the plugin was
registered). A filter can still drop it (``-W ignore``, an ini ``filterwarnings``, ``-p
no:warnings``, or an import before pytest's capture began), so the state itself is also checked
after every collector and test (which says while collecting what it turned on), and when it is
on with no module named, a fresh interpreter imports the session's extension modules in the same
order under ``harness.gil.watching`` and names the first that turns it on.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field

from threadprobe.harness import gil
from threadprobe.records import GilState

#: The fallback child: imports these extension modules in order and prints which turned the GIL on.
NAME_IN_CHILD = """
import importlib, json, sys
from threadprobe.harness import gil
found = []
for name in json.loads(sys.argv[1]):
    with gil.watching() as turned:
        try:
            importlib.import_module(name)
        except Exception:
            pass
    if turned:
        found = turned
        break
print(json.dumps(found))
"""


def forced_off() -> bool:
    """The GIL was forced off at start-up (free-threaded builds read this once)."""
    return os.environ.get("PYTHON_GIL") == "0" or getattr(sys, "_xoptions", {}).get("gil") == "0"


def extension_modules() -> list[str]:
    """Extension modules loaded in this process, in the order they were imported."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return [name for name, module in list(sys.modules.items())
            if str(getattr(module, "__file__", "") or "").endswith(suffixes)]


def name_in_child(modules: list[str], timeout: float = 300.0) -> list[str]:
    """Which of ``modules`` turns the GIL on when imported in that order in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    try:
        done = subprocess.run([sys.executable, "-c", NAME_IN_CHILD, json.dumps(modules)], capture_output=True,
                              text=True, timeout=timeout, env=env)
        return list(json.loads(done.stdout.strip().splitlines()[-1])) if done.returncode == 0 else []
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return []


@dataclass
class GilWatch:
    """The session's GIL: how it started, what turned it on and when, and the state each
    threaded run reported from its child."""

    free_threaded: bool = field(default_factory=gil.free_threaded_build)
    forced_off: bool = field(default_factory=forced_off)
    on_at_start: bool = field(default_factory=gil.enabled)
    turned_on_by: list[str] = field(default_factory=list)
    turned_on_while: str | None = None
    runs: Counter[bool | None] = field(default_factory=Counter)

    @property
    def state(self) -> GilState:
        return GilState.OFF if self.free_threaded and self.forced_off else GilState.AS_IMPORTED

    def warning(self, message: str) -> None:
        match = gil.REENABLED.search(message)
        if match and match.group(1) not in self.turned_on_by:
            self.turned_on_by.append(match.group(1))

    def check(self, where: str) -> None:
        """After a collector or a test: note where the GIL was first seen turned on."""
        if self.free_threaded and not self.on_at_start and self.turned_on_while is None and gil.enabled():
            self.turned_on_while = where

    def culprits(self) -> list[str]:
        if not self.turned_on_by and self.free_threaded and not self.on_at_start and gil.enabled():
            self.turned_on_by = name_in_child(extension_modules())
        return self.turned_on_by

    def at_start(self) -> str:
        if not self.free_threaded:
            return "GIL build"
        if self.forced_off:
            return "free-threaded build, GIL forced off (PYTHON_GIL=0)"
        return f"free-threaded build, GIL {'on' if self.on_at_start else 'off'} now, as imported"

    def describe(self) -> str:
        runs = sum(self.runs.values())
        with_gil = f"; threaded runs with the GIL on: {self.runs[True]} of {runs}" if runs else ""
        if not self.free_threaded:
            return f"GIL build: the GIL is always on{with_gil}"
        if self.forced_off:
            return f"free-threaded build, GIL forced off (PYTHON_GIL=0) all session{with_gil}"
        if not gil.enabled():
            return f"free-threaded build, GIL as imported: it stayed off (no import turned it on){with_gil}"
        if self.on_at_start:
            return f"free-threaded build, GIL on from the start (PYTHON_GIL=1 or an earlier import){with_gil}"
        culprits = self.culprits()
        who = ", ".join(culprits) if culprits else "an import that could not be named"
        where = f" while {self.turned_on_while}" if self.turned_on_while else ""
        return f"free-threaded build, GIL as imported: turned back on by {who}{where}{with_gil}"
