"""Process plumbing shared by both sides of a trial: environment, signals, files, stacks, kills.

Standard library only at import time (``kill_tree`` loads psutil when called), because the child
side imports this too, possibly under another interpreter.
"""

from __future__ import annotations

import ctypes
import json
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from threadprobe.records import StackSource
from threadprobe.records.errors import UsageError

MAX_TEXT = 16000
CHILD_ENV = {
    # BLAS thread pools would make the fork server multi-threaded and muddy contention figures.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
    # A warning printed by a library in a worker is not a result: keep outputs small.
    "PYTHONWARNINGS": "ignore",
}
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
#: The package's own folder (``toolkit/`` in a checkout): a foreign child imports it from a copy of links.
PACKAGE = Path(__file__).resolve().parents[1]
#: The folder above it: children of this interpreter run with it on their path, so that a test's
#: plugin module named by dotted path (``tests.plugins...``) imports as it does here.
ROOT = PACKAGE.parent


def child_env(extra: dict[str, str] | None = None, foreign: bool = False) -> dict[str, str]:
    """The environment of a child. ``foreign``: the child runs another interpreter, which must
    see toolkit's and the probes' sources and nothing else of this one's installation."""
    env = dict(os.environ)
    env.update(CHILD_ENV)
    if foreign:
        for key in ("PYTHONHOME", "VIRTUAL_ENV", "PYTHONPATH"):
            env.pop(key, None)
        env["PYTHONNOUSERSITE"] = "1"
        root = sources_only()
    else:
        root = str(ROOT)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


_SOURCES: list[str] = []


def sources_only() -> str:
    """A folder holding only ``threadprobe/`` (links to the package's entries and to the built-in
    probes, which setuptools maps from another folder): putting a site-packages on another
    interpreter's path would bring every package along."""
    if not _SOURCES:
        import atexit
        import tempfile

        import importlib.util

        folder = tempfile.mkdtemp(prefix="threadprobe-src-")
        package = Path(folder) / "threadprobe"
        package.mkdir()
        for entry in PACKAGE.iterdir():
            if entry.name not in ("probes", "__pycache__"):
                os.symlink(entry, package / entry.name)
        spec = importlib.util.find_spec("threadprobe.probes")
        assert spec is not None and spec.submodule_search_locations
        os.symlink(spec.submodule_search_locations[0], package / "probes")
        atexit.register(shutil.rmtree, folder, True)
        _SOURCES.append(folder)
    return _SOURCES[0]


def interpreter_of(python: str | None) -> tuple[str, bool]:
    """The executable to start children with, and whether it is foreign (not this interpreter)."""
    if not python:
        return sys.executable, False
    found = shutil.which(python) or python
    path = Path(found)
    if not path.exists() or not os.access(path, os.X_OK):
        raise UsageError(f"--python {python}: no such executable")
    same = os.path.realpath(path) == os.path.realpath(sys.executable) and sys.prefix == sys.base_prefix
    return str(path), not same


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies, so no worker is orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_LIBC: list[ctypes.CDLL] = []


def name_thread(name: str) -> None:
    """Name the calling OS thread (what /proc/PID/task/TID/comm shows), so that the parent can
    tell the probe's threads from the interpreter's own."""
    try:
        if not _LIBC:
            _LIBC.append(ctypes.CDLL(None))
        _LIBC[0].prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def signal_name(returncode: int | None) -> str | None:
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def tail(path: Path, limit: int = MAX_TEXT) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # No fsync: the rename alone guarantees a reader never sees half a file, and a machine that
    # loses power mid-diagnosis has bigger problems than one report.
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def cache_home() -> Path:
    """threadprobe's folder for what it keeps between runs: ``$XDG_CACHE_HOME/threadprobe``
    (``~/.cache`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "threadprobe"


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data))


def cpu_of(rusage: Any) -> float:
    return float(rusage.ru_utime + rusage.ru_stime)


def find_py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def capture_stacks(pid: int, fault_path: Path) -> tuple[str, StackSource]:
    """Stacks of every thread of a live process: py-spy when it works, else faulthandler."""
    spy = find_py_spy()
    if spy:
        for args in (["dump", "--native", "--pid", str(pid)], ["dump", "--pid", str(pid)]):
            try:
                done = subprocess.run([spy, *args], capture_output=True, text=True, timeout=15)
            except (subprocess.TimeoutExpired, OSError):
                continue
            if done.returncode == 0 and "Thread" in done.stdout:
                return done.stdout[-MAX_TEXT:], StackSource.PY_SPY
    before = len(tail(fault_path, 10**7))
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        return "", StackSource.NONE
    deadline = time.monotonic() + 2.0
    text = ""
    while time.monotonic() < deadline:
        text = tail(fault_path, 10**7)[before:]
        if "most recent call first" in text:
            time.sleep(0.05)  # let every thread's section land
            text = tail(fault_path, 10**7)[before:]
            break
        time.sleep(0.02)
    return text[-MAX_TEXT:], StackSource.FAULTHANDLER


def kill_tree(pids: Sequence[int], pgid: int | None) -> None:
    """SIGKILL the workers, their process group, and any descendant that left the group."""
    import psutil

    victims = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            victims.append(proc)
            victims.extend(proc.children(recursive=True))
        except psutil.Error:
            pass
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in victims:
        try:
            proc.kill()
        except psutil.Error:
            pass


@functools.lru_cache(maxsize=None)
def free_threaded(python: str | None) -> bool:
    """Whether ``python`` (this interpreter by default) is a free-threaded build (Py_GIL_DISABLED)."""
    executable, foreign = interpreter_of(python)
    code = "import sysconfig; print(int(bool(sysconfig.get_config_var('Py_GIL_DISABLED'))))"
    try:
        done = subprocess.run([executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env=child_env(foreign=foreign))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run {executable}: {exc}") from None
    return done.stdout.strip() == "1"
