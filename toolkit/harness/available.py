"""Which probes can run under an interpreter: their modules imported in a child of it.

It lives in the harness, not beside the registry, because it starts a process (the registry only
reads entry points and files).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence

from threadprobe.harness.proc import child_env, interpreter_of
from threadprobe.records import ProbeInfo
from threadprobe.records.errors import UsageError

_CHECK = """
import importlib, json, sys
out = {}
for module in json.loads(sys.argv[1]):
    try:
        importlib.import_module(module)
        out[module] = None
    except Exception as exc:
        out[module] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def availability(infos: Sequence[ProbeInfo], python: str | None = None, timeout: float = 120.0) -> list[ProbeInfo]:
    """The probes, each marked available or not by importing its ``requires`` modules (by default
    its ``preload``) in a child of ``python`` (this interpreter by default). ``diagnose`` does not
    rely on this: it finds out for certain, from the probe's ``prepare`` and ``open``."""
    executable, foreign = interpreter_of(python)
    modules = sorted({m for i in infos for m in i.requires if not m.endswith(".py")})
    try:
        done = subprocess.run([executable, "-c", _CHECK, json.dumps(modules)], capture_output=True, text=True,
                              timeout=timeout, env=child_env(foreign=foreign))
        failed = json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError, OSError) as exc:
        raise UsageError(f"cannot ask {executable} which modules it has: {exc}") from None
    out = []
    for item in infos:
        missing = [f"{m} ({failed[m]})" for m in item.requires if failed.get(m)]
        if missing and item.available:
            item = item.replace(available=False, reason="cannot import " + ", ".join(missing))
        out.append(item)
    return out
