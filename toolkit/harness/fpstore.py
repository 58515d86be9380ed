"""Fingerprints kept between diagnoses of an interpreter that has not changed.

Collecting a fingerprint starts a child that imports the whole stack: 3 s on the GIL build, up to
16 s on the free-threaded one, paid by every diagnosis, report and test of one installation for
the same answer. A kept fingerprint is reused only when a check in a fresh child of the same
interpreter (under half a second: no stack imports) finds nothing it was made from changed:

- the key: the interpreter's path and binary, whether it runs as a foreign interpreter, the
  environment variables that steer imports and the loader (``STEERING``), and the code that
  collects it (this module, ``fingerprint``, ``gil``);
- ``fingerprint.matches``: every package's version, every library file it names (size and mtime,
  else its hash), the Python version;
- the modification times of every folder on the interpreter's ``sys.path``: installing or
  removing anything there (a package the stack imports only when present) changes them.

Anything else, or anything unreadable, and the fingerprint is collected afresh. The folder is
``$THREADPROBE_FINGERPRINTS``, else ``$XDG_CACHE_HOME/threadprobe/fingerprints`` (``~/.cache`` by
default); ``THREADPROBE_FINGERPRINTS=off`` never reuses one.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadprobe.harness import fingerprint, gil
from threadprobe.harness.proc import cache_home, child_env, interpreter_of, write_json_atomic

if TYPE_CHECKING:
    from threadprobe.records import Fingerprint

#: What an import finds and what the dynamic loader maps, besides the installed files.
STEERING = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHON_GIL", "VIRTUAL_ENV", "LD_LIBRARY_PATH",
            "LD_PRELOAD", "HDF5_PLUGIN_PATH")
#: Run in the fingerprinted interpreter (``now``).
CHECK = "import json, sys; from threadprobe.harness import fpstore; print(json.dumps(fpstore.now(json.load(sys.stdin))))"


def import_folders() -> dict[str, int]:
    """The modification time of each folder on this interpreter's ``sys.path``, but those of
    ``PYTHONPATH``: they are in the key, and the one a foreign interpreter is given for
    threadprobe's own sources is new in every process."""
    given = set(os.environ.get("PYTHONPATH", "").split(os.pathsep))
    return {p: os.stat(p).st_mtime_ns for p in sys.path if p and p not in given and os.path.isdir(p)}


def now(stored: Fingerprint) -> dict[str, Any]:
    """In the fingerprinted interpreter: what changed since ``stored``, and its import folders."""
    return {"why": fingerprint.matches(stored)[1], "folders": import_folders()}


def folder() -> Path | None:
    """Where fingerprints are kept; None when reuse is turned off."""
    named = os.environ.get("THREADPROBE_FINGERPRINTS")
    if named == "off":
        return None
    if named:
        return Path(named)
    return cache_home() / "fingerprints"


def key(executable: str, foreign: bool) -> str:
    """One interpreter, as it is started, with the code that fingerprints it."""
    binary = os.stat(os.path.realpath(executable))
    code = hashlib.sha256(b"".join(Path(m.__file__ or "").read_bytes() for m in (fingerprint, gil,
                                                                                  sys.modules[__name__])))
    parts = [os.path.abspath(executable), binary.st_size, binary.st_mtime_ns, foreign, code.hexdigest(),
             *(os.environ.get(name) for name in STEERING)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def check(executable: str, foreign: bool, stored: Fingerprint, timeout: float) -> dict[str, Any] | None:
    """What ``now`` says in a child of ``executable``, or None if it could not say."""
    try:
        done = subprocess.run([executable, "-c", CHECK], input=json.dumps(stored), capture_output=True, text=True,
                              timeout=timeout, env=child_env(foreign=foreign))
        found = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def stamped(found: Fingerprint) -> Fingerprint:
    """The fingerprint with the time it was collected: a reused one says how old it is."""
    found["collected_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return found


def collect(python: str | None = None, timeout: float = 180.0) -> Fingerprint:
    """``fingerprint.collect``, reusing a kept fingerprint when nothing it was made from changed."""
    executable, foreign = interpreter_of(python)
    where = folder()
    if where is None:
        return stamped(fingerprint.collect(python, timeout))
    path = where / f"{key(executable, foreign)}.json"
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = None
    stored = kept.get("fingerprint") if isinstance(kept, dict) else None
    # One child says both whether the kept fingerprint still holds and, if not, the folders as they
    # are before the new collection's imports.
    before = check(executable, foreign, stored if isinstance(stored, dict) else {}, timeout)
    if isinstance(stored, dict) and before is not None and not before.get("why") \
            and before.get("folders") == kept.get("folders"):
        return dict(stored)
    found = stamped(fingerprint.collect(python, timeout))
    if before is not None and not found.get("error"):
        try:
            where.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, {"fingerprint": found, "folders": before["folders"]})
        except OSError:
            pass  # a read-only cache is no reason to fail a diagnosis
    return found
