"""The worker side of a trial: what runs in the child processes, and the fork server's loop.

This module must stay light (standard library, ``threadprobe.probe``, ``threadprobe.probe.refs`` and the
worker), because ``diagnose --python PATH`` injects it into another interpreter that has only
the libraries under test: ``PATH -m threadprobe.harness.child serve|worker ...``.

A worker enables faulthandler into a file, reports progress through a small shared-memory
slot, waits on a FIFO so that every process of a trial starts together, and writes its report
(one JSON document) atomically, as pyperf's workers do.
"""

from __future__ import annotations

import faulthandler
import gc
import json
import mmap
import os
import select
import signal
import struct
import sys
import time
from pathlib import Path

from threadprobe.harness import gil
from threadprobe.harness.instruments import lockaudit
from threadprobe.probe import refs
from threadprobe.harness.proc import cpu_of, die_with_parent, write_json_atomic
from threadprobe.harness.worker import error_record, run_worker
from threadprobe.probe.refs import load_plugin
from threadprobe.records import Instrument, Job, Stage, WorkerReport, WorkerSpec

SLOT = struct.Struct("<IxxxxQ")  # state, tasks done
STARTING, READY, RUNNING, DONE = 0, 1, 2, 3


class Slot:
    """This worker's progress slot in the trial's shared-memory file."""

    def __init__(self, path: Path, worker: int) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        self._offset = worker * SLOT.size
        self._count = 0

    def state(self, state: int) -> None:
        SLOT.pack_into(self._map, self._offset, state, self._count)

    def tick(self, done: int = 1) -> None:
        """``done`` more tasks (each thread ticks now and then: the parent only needs to see progress)."""
        self._count += done
        SLOT.pack_into(self._map, self._offset, RUNNING, self._count)

    def wait_peers(self, processes: int, limit: float = 0.05) -> None:
        """Spin until every worker process of the trial has been released (see run_together)."""
        SLOT.pack_into(self._map, self._offset, RUNNING, self._count)
        give_up = time.monotonic() + limit
        while time.monotonic() < give_up:
            if all(SLOT.unpack_from(self._map, w * SLOT.size)[0] >= RUNNING for w in range(processes)):
                return


def forget_parent_threads() -> None:
    """After a fork from a process that had threads: thread pools whose threads did not come
    along would take work that nobody serves (a dask compute then waits forever). Reset them,
    so that they start threads of their own on first use."""
    import queue
    import threading

    dask_threaded = sys.modules.get("dask.threaded")
    if dask_threaded is not None:
        setattr(dask_threaded, "default_pool", None)
        dask_threaded.pools.clear()
        setattr(dask_threaded, "pools_lock", threading.Lock())
    futures = sys.modules.get("concurrent.futures.thread")
    if futures is None:
        return
    for obj in gc.get_objects():
        if isinstance(obj, futures.ThreadPoolExecutor) and obj._threads:
            obj._threads = set()
            obj._idle_semaphore = threading.Semaphore(0)
            obj._shutdown_lock = threading.Lock()
            obj._work_queue = queue.SimpleQueue()


def worker_main(spec_path: str, worker: int) -> int:
    """Entry point of a worker process (forked or spawned). Returns its exit code."""
    text = Path(spec_path).read_text()
    tdir = Path(json.loads(text)["trial_dir"])  # where to report, even a spec that is wrong otherwise
    _redirect(tdir, worker)
    result_path = tdir / f"result.{worker}.json"
    try:
        spec = WorkerSpec.parse(text)
        if Instrument.CORE_DUMPS in spec.instruments:
            # A core dump of a crash gives gdb the native frames of the crashing thread.
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            os.chdir(tdir)
        for plugin in spec.plugins:
            refs.load_plugin(plugin)
        report = _prepare(spec) if spec.job == Job.PREPARE else _trial(spec, tdir, worker)
        write_json_atomic(result_path, report.to_json())
    except BaseException as exc:  # a harness fault is reported, not raised into the void
        write_json_atomic(result_path, WorkerReport(worker, os.getpid(), errors=(error_record(Stage.HARNESS, exc),)).to_json())
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


def _redirect(tdir: Path, worker: int) -> None:
    """Faults (and, on SIGUSR1, every thread's stack) to fault.N; output to out.N."""
    fault = open(tdir / f"fault.{worker}", "w")
    faulthandler.enable(fault, all_threads=True)
    # The parent's fallback for stacks of a hung worker, when py-spy cannot attach.
    faulthandler.register(signal.SIGUSR1, fault, all_threads=True, chain=False)
    out = os.open(tdir / f"out.{worker}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)


def _trial(spec: WorkerSpec, tdir: Path, worker: int) -> WorkerReport:
    """This worker's share of a trial, released with the others, under the lock audit if asked."""
    trial = spec.trial
    assert trial is not None  # WorkerSpec checks that a trial's spec has one
    slot = Slot(tdir / "progress", worker)

    def wait_go() -> None:
        fd = os.open(tdir / "go", os.O_RDONLY)
        try:
            os.read(fd, 1)  # blocks until the parent releases every worker at once
        finally:
            os.close(fd)
        if trial.processes > 1:
            slot.wait_peers(trial.processes)

    audit = lockaudit if Instrument.IRIS_LOCK_AUDIT in spec.instruments and lockaudit.install() else None
    try:
        with gil.watching():
            probe = refs.load(trial.ref)()
    except Exception as exc:
        slot.state(READY)
        report = WorkerReport(worker, os.getpid(), errors=(error_record(Stage.OPEN, exc),))
    else:
        def ready() -> None:
            slot.state(READY)
            if audit is not None:
                audit.stage("tasks")

        report = run_worker(probe, trial, worker, Path(spec.workdir), ready=ready, wait_go=wait_go, tick=slot.tick)
    slot.state(DONE)
    return report.replace(audit=audit.snapshot()) if audit is not None else report


def _prepare(spec: WorkerSpec) -> WorkerReport:
    try:
        probe = refs.load(spec.ref or "")()
        probe.prepare(Path(spec.workdir))
    except Exception as exc:
        return WorkerReport(pid=os.getpid(), errors=(error_record(Stage.PREPARE, exc),))
    return WorkerReport(pid=os.getpid())


def _preload(preload: list[str]) -> str:
    """Import what every worker of this server needs; the first failure's name, else ''."""
    failed = ""
    for module in preload:
        try:
            with gil.watching():  # the workers inherit the names of modules that turned the GIL on
                if module.endswith(".py"):
                    load_plugin(module)
                else:
                    __import__(module)
        except BaseException as exc:  # the worker will meet the same error and report it properly
            failed = f"{module}: {type(exc).__name__}"
    return failed


def _send(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _reap() -> None:
    """Report every worker that has exited (SIGCHLD woke us, or a request came in)."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(f"exit {pid} {os.waitstatus_to_exitcode(status)} {cpu_of(usage):.4f}")


def _fork_worker(request: str, wake: tuple[int, int]) -> None:
    """``fork WORKER PGID SPEC``: a worker in process group PGID (0: a new one, its own)."""
    _, worker, pgid, spec_path = request.split(" ", 3)
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in wake:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        code = 70
        try:
            os.setpgid(0, int(pgid))
            die_with_parent()
            code = worker_main(spec_path, int(worker))
        finally:
            os._exit(code)
    try:  # both sides set the group, so the next fork can join it at once
        os.setpgid(pid, int(pgid) or pid)
    except OSError:
        pass
    _send(f"pid {pid}")


def serve(preload: list[str]) -> None:
    """The fork server's loop: import ``preload``, then fork a worker per request on stdin.

    Protocol, one line each: parent -> ``fork WORKER PGID SPEC``; server -> ``pid PID``,
    ``exit PID RETURNCODE CPU`` (CPU: the worker's user + system seconds), and once at start
    ``ready THREADS GIL_REENABLED_BY [error]``.
    """
    die_with_parent()
    failed = _preload(preload)
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    # The modules whose import turned the GIL on ("-": none): a server whose imports changed the
    # GIL serves only probes that import exactly the same (see launch.Launchers).
    _send(f"ready {threads} {','.join(gil.REENABLED_BY) or '-'} {failed}".rstrip())
    buffer = b""
    while True:
        try:
            readable, _, _ = select.select([0, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        _reap()
        if 0 in readable:
            chunk = os.read(0, 65536)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                _fork_worker(line.decode(), (wake_r, wake_w))


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(argv[1:])
        return 0
    if argv[:1] == ["worker"] and len(argv) == 3:
        die_with_parent()
        code = worker_main(argv[1], int(argv[2]))
        sys.stdout.flush()
        os._exit(code)
    print("usage: python -m threadprobe.harness.child serve [MODULE...] | worker SPEC WORKER", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
