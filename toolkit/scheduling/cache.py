"""Scheduler choices remembered by workload, input signature, library builds and machine.

A pilot costs a few per cent of a run; a second run on similar input (the same format, grid,
chunking and order of magnitude of size, on the same builds and machine, in the same GIL state)
reuses its answer in milliseconds. The file is ``$THREADPROBE_CACHE``, else ``$XDG_CACHE_HOME/threadprobe/choices.json``
(``~/.cache`` by default), written atomically; a damaged file is ignored, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import socket
from pathlib import Path
from typing import Any

from threadprobe.records import CHOICE_SCHEMA, Choice, Fingerprint
from threadprobe.harness.proc import cache_home, write_json_atomic

MAX_ENTRIES = 200


def path() -> Path:
    if os.environ.get("THREADPROBE_CACHE"):
        return Path(os.environ["THREADPROBE_CACHE"])
    return cache_home() / "choices.json"


def machine() -> dict[str, Any]:
    try:
        import psutil

        memory = round(psutil.virtual_memory().total / 2**30)
    except Exception:
        memory = None
    return {"host": socket.gethostname(), "cores": os.cpu_count(), "memory_gb": memory, "arch": platform.machine()}


def builds(fingerprint: Fingerprint) -> dict[str, Any]:
    """What of a fingerprint decides speed and safety: package versions, library versions, Python."""
    packages = {k: (v.get("version") if isinstance(v, dict) else v) for k, v in (fingerprint.get("packages") or {}).items()}
    libraries = sorted({(lib.get("family"), lib.get("version"), lib.get("sha256")) for lib in fingerprint.get("libraries") or []
                        if lib.get("family") in ("libhdf5", "libnetcdf")})
    return {"python": (fingerprint.get("python") or {}).get("version"), "packages": packages,
            "libraries": [list(x) for x in libraries]}


def signature(fmt: str | None, arrays: list[Any], files: int) -> dict[str, Any]:  # open: a shape of work, hashed
    """An input's shape of work: format, dtype, grid, chunk sizes, and sizes to a factor of two."""
    out: dict[str, Any] = {"format": fmt, "files": 2 ** round(math.log2(max(1, files)))}
    for k, a in enumerate(arrays):
        nbytes = int(a.dtype.itemsize * a.size)
        out[f"array{k}"] = {"dtype": str(a.dtype), "grid": list(a.shape[1:]),
                            "chunk": [int(max(c)) for c in a.chunks], "bytes": 2 ** round(math.log2(max(1, nbytes)))}
    return out


def key(workload: str, sig: dict[str, Any], build: dict[str, Any], probes: tuple[str, ...] = (),
        gil: dict[str, Any] | None = None) -> str:
    """The cache key of a choice. ``gil``: the run's GIL state and whether the GIL was on after
    its imports: a choice made with the GIL off is never reused with it on, nor the reverse."""
    text = json.dumps({"workload": workload, "input": sig, "builds": build, "machine": machine(), "probes": probes,
                       **({"gil": gil} if gil else {})}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read() -> dict[str, Any]:
    try:
        data = json.loads(path().read_text())
        return data if data.get("schema") == CHOICE_SCHEMA else {"schema": CHOICE_SCHEMA, "choices": {}}
    except (OSError, ValueError, AttributeError):
        return {"schema": CHOICE_SCHEMA, "choices": {}}


def lookup(k: str) -> Choice | None:
    entry = _read()["choices"].get(k)
    if not entry:
        return None
    try:
        return Choice.from_json(entry["choice"])
    except (KeyError, TypeError, ValueError):
        return None


def store(k: str, choice: Choice, note: str = "") -> None:
    data = _read()
    choices = data["choices"]
    choices[k] = {"choice": choice.to_json(), "note": note}
    while len(choices) > MAX_ENTRIES:
        choices.pop(next(iter(choices)))
    target = path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(target, data)
    except OSError:
        pass  # a read-only home is no reason to fail a run
