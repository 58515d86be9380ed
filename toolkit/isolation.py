"""Process plumbing for trials, parent side and child side. All of it lives here.

Every trial runs in fresh worker processes. Two ways to start them:

- ``ForkServer`` (the default): a fresh interpreter per probe imports the probe's heavy
  libraries once, stays single-threaded, and forks one worker per request. A fork of a warm,
  single-threaded process that never opened a file is as fresh as a new interpreter, and costs
  milliseconds instead of the second Iris takes to import (the ``forkserver`` idea).
- ``SpawnLauncher``: ``python -m toolkit.isolation worker ...``, a new interpreter every time.
  Used when the fork server is not single-threaded, and as the reference in benchmarks.

A worker enables faulthandler into a file, reports progress through a small shared-memory
slot, waits on a FIFO so that every process of a trial starts together, and writes its report
atomically. The parent turns whatever happens into data: a signal becomes a crash, silence
past the timeout becomes a hang (stacks taken with py-spy, else faulthandler, then the whole
process tree is killed). The parent never raises because a child died.
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import mmap
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from toolkit.records import Trial

SLOT = struct.Struct("<IxxxxQ")  # state, tasks done
STARTING, READY, RUNNING, DONE = 0, 1, 2, 3
MAX_TEXT = 16000
CHILD_ENV = {
    # BLAS thread pools would make the fork server multi-threaded and muddy contention figures.
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
}
PR_SET_PDEATHSIG = 1


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(CHILD_ENV)
    # Children must import toolkit and probes even when the parent runs from a source tree.
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies, so no worker is orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
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
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # No fsync: the rename alone guarantees a reader never sees half a file, and a machine that
    # loses power mid-diagnosis has bigger problems than one report.
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Child side


class _Slot:
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

    def tick(self) -> None:
        self._count += 1
        SLOT.pack_into(self._map, self._offset, RUNNING, self._count)

    def wait_peers(self, processes: int, limit: float = 0.05) -> None:
        """Spin until every worker process of the trial has been released (see execute's spin)."""
        SLOT.pack_into(self._map, self._offset, RUNNING, self._count)
        give_up = time.monotonic() + limit
        while time.monotonic() < give_up:
            if all(SLOT.unpack_from(self._map, w * SLOT.size)[0] >= RUNNING for w in range(processes)):
                return


def worker_main(spec_path: str, worker: int) -> int:
    """Entry point of a worker process (forked or spawned). Returns its exit code."""
    spec = json.loads(Path(spec_path).read_text())
    tdir = Path(spec["trial_dir"])
    fault = open(tdir / f"fault.{worker}", "w")
    faulthandler.enable(fault, all_threads=True)
    # The parent's fallback for stacks of a hung worker, when py-spy cannot attach.
    faulthandler.register(signal.SIGUSR1, fault, all_threads=True, chain=False)
    out = os.open(tdir / f"out.{worker}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    result_path = tdir / f"result.{worker}.json"
    if spec.get("core"):
        # A core dump of a crash gives gdb the native frames of the crashing thread.
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        os.chdir(tdir)
    audit = None
    try:
        from toolkit import execute, registry
        from toolkit.records import Trial

        for plugin in spec.get("plugins", []):
            registry.load_plugin(plugin)
        if spec["stage"] == "prepare":
            report = _prepare(spec)
        else:
            trial = Trial.from_json(spec["trial"])
            slot = _Slot(tdir / "progress", worker)

            def wait_go() -> None:
                fd = os.open(tdir / "go", os.O_RDONLY)
                try:
                    os.read(fd, 1)  # blocks until the parent releases every worker at once
                finally:
                    os.close(fd)
                if trial.processes > 1:
                    slot.wait_peers(trial.processes)

            if spec.get("instrument") == "iris_lock_audit":
                from toolkit import lockaudit

                audit = lockaudit if lockaudit.install() else None
            try:
                probe = registry.load(trial.ref)()
            except Exception as exc:
                slot.state(READY)
                report = {"errors": [execute.error_record("open", exc)], "digests": {}, "tasks": 0}
            else:
                def ready() -> None:
                    slot.state(READY)
                    if audit is not None:
                        audit.stage("tasks")

                report = execute.run_worker(
                    probe,
                    trial,
                    worker,
                    Path(spec["workdir"]),
                    ready=ready,
                    wait_go=wait_go,
                    tick=slot.tick,
                )
            slot.state(DONE)
            if audit is not None:
                report["audit"] = audit.snapshot()
        write_json_atomic(result_path, report)
    except BaseException as exc:  # a harness fault is reported, not raised into the void
        from toolkit.execute import error_record

        write_json_atomic(result_path, {"errors": [error_record("harness", exc)], "digests": {}, "tasks": 0})
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


def _prepare(spec: dict[str, Any]) -> dict[str, Any]:
    from toolkit import execute, registry

    try:
        probe = registry.load(spec["ref"])()
        probe.prepare(Path(spec["workdir"]))
    except Exception as exc:
        return {"errors": [execute.error_record("prepare", exc)]}
    return {"errors": []}


def serve(preload: Sequence[str]) -> None:
    """The fork server's loop: import ``preload``, then fork a worker per request on stdin.

    Protocol, one line each: parent -> ``fork WORKER PGID SPEC``; server -> ``pid PID``,
    ``exit PID RETURNCODE``, and once at start ``ready THREADS [error]``.
    """
    die_with_parent()
    failed = ""
    for module in preload:
        try:
            if module.endswith(".py"):
                from toolkit.registry import load_plugin

                load_plugin(module)
            else:
                __import__(module)
        except BaseException as exc:  # the worker will meet the same error and report it properly
            failed = f"{module}: {type(exc).__name__}"
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1

    def send(line: str) -> None:
        os.write(1, (line + "\n").encode())

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    send(f"ready {threads} {failed}".rstrip())
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
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            send(f"exit {pid} {os.waitstatus_to_exitcode(status)}")
        if 0 in readable:
            chunk = os.read(0, 65536)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                _, worker, pgid, spec_path = line.decode().split(" ", 3)
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.close(wake_r)
                    os.close(wake_w)
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
                send(f"pid {pid}")


# --------------------------------------------------------------------------------------------
# Parent side


class Launcher(Protocol):
    """Starts worker processes and reports their exits."""

    def start(self, spec_path: Path, worker: int, pgid: int) -> int: ...

    def exits(self, wait: float) -> dict[int, int]: ...

    def close(self) -> None: ...


class HarnessError(RuntimeError):
    """The launcher itself failed (not the probe): the trial is reported as a harness error."""


class SpawnLauncher:
    """A new interpreter for every worker."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._env = child_env(env)
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, spec_path: Path, worker: int, pgid: int) -> int:
        proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit.isolation", "worker", str(spec_path), str(worker)],
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=pgid,
            preexec_fn=die_with_parent,
        )
        self._procs[proc.pid] = proc
        return proc.pid

    def exits(self, wait: float) -> dict[int, int]:
        deadline = time.monotonic() + wait
        while True:
            done = {pid: p.returncode for pid, p in self._procs.items() if p.poll() is not None}
            for pid in done:
                del self._procs[pid]
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(min(0.002, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        for proc in self._procs.values():
            proc.kill()
            proc.wait()
        self._procs.clear()


class DirectFork:
    """Fork workers straight from this process, so they inherit what it holds: closures and
    fixtures. Only for callers that accept the fork method's caveats (pytest's plugin does)."""

    def __init__(self) -> None:
        self._pids: set[int] = set()

    def start(self, spec_path: Path, worker: int, pgid: int) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                os.setpgid(0, pgid)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                code = worker_main(str(spec_path), worker)
            finally:
                os._exit(code)
        try:
            os.setpgid(pid, pgid or pid)
        except OSError:
            pass
        self._pids.add(pid)
        return pid

    def exits(self, wait: float) -> dict[int, int]:
        deadline = time.monotonic() + wait
        while True:
            done = {}
            for pid in list(self._pids):
                try:
                    got, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    got, status = pid, 0
                if got:
                    done[pid] = os.waitstatus_to_exitcode(status)
                    self._pids.discard(pid)
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(0.002)

    def close(self) -> None:
        kill_tree(list(self._pids), None)
        for pid in list(self._pids):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self._pids.clear()


class ForkServer:
    """A warm, single-threaded interpreter that forks workers on request (see ``serve``)."""

    def __init__(self, preload: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        self.preload = tuple(preload)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit.isolation", "serve", *self.preload],
            env=child_env(env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self._buffer = b""
        self._exits: dict[int, int] = {}
        self._pids: list[int] = []
        ready = self._next_line(timeout=120.0)
        parts = ready.split(" ", 2)
        if parts[0] != "ready":
            raise HarnessError(f"fork server did not start: {ready!r}")
        self.threads = int(parts[1])
        self.import_error = parts[2] if len(parts) > 2 else ""

    @property
    def single_threaded(self) -> bool:
        return self.threads == 1

    def _read(self, timeout: float) -> bool:
        assert self._proc.stdout is not None
        if self._proc.stdout.closed:
            raise HarnessError("fork server exited")
        fd = self._proc.stdout.fileno()
        readable, _, _ = select.select([fd], [], [], max(0.0, timeout))
        if not readable:
            return False
        chunk = os.read(fd, 65536)
        if not chunk:
            raise HarnessError("fork server exited")
        self._buffer += chunk
        return True

    def _lines(self) -> list[str]:
        lines = []
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            lines.append(line.decode())
        return lines

    def _next_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if not self._read(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise HarnessError("fork server did not answer")
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def _handle(self, line: str) -> int | None:
        kind, *rest = line.split()
        if kind == "exit":
            self._exits[int(rest[0])] = int(rest[1])
            return None
        if kind == "pid":
            return int(rest[0])
        raise HarnessError(f"unexpected line from fork server: {line!r}")

    def start(self, spec_path: Path, worker: int, pgid: int) -> int:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(f"fork {worker} {pgid} {spec_path}\n".encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):  # ValueError: the pipe was already closed
            raise HarnessError("fork server exited") from None
        while True:
            pid = self._handle(self._next_line(timeout=30.0))
            if pid is not None:
                return pid

    def exits(self, wait: float) -> dict[int, int]:
        if not self._exits:
            self._read(wait)
        for line in self._lines():
            self._handle(line)
        done, self._exits = self._exits, {}
        return done

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


@dataclass(frozen=True)
class WorkerRun:
    """What the parent saw of one worker process."""

    worker: int
    pid: int
    returncode: int | None
    report: dict[str, Any] | None
    fault: str
    output: str
    stacks: str | None = None
    stack_source: str | None = None

    @property
    def signal(self) -> str | None:
        return signal_name(self.returncode)


@dataclass(frozen=True)
class TrialRun:
    """Everything the parent gathered about one trial, before classification."""

    trial: Trial
    workers: tuple[WorkerRun, ...]
    hung: bool
    seconds: float | None  # from the first worker's start to the last worker's end
    harness_error: str | None = None


def find_py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def capture_stacks(pid: int, fault_path: Path) -> tuple[str, str]:
    """Stacks of every thread of a live process: py-spy when it works, else faulthandler."""
    spy = find_py_spy()
    if spy:
        for args in (["dump", "--native", "--pid", str(pid)], ["dump", "--pid", str(pid)]):
            try:
                done = subprocess.run([spy, *args], capture_output=True, text=True, timeout=15)
            except (subprocess.TimeoutExpired, OSError):
                continue
            if done.returncode == 0 and "Thread" in done.stdout:
                return done.stdout[-MAX_TEXT:], "py-spy"
    before = len(tail(fault_path, 10**7))
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        return "", "none"
    deadline = time.monotonic() + 2.0
    text = ""
    while time.monotonic() < deadline:
        text = tail(fault_path, 10**7)[before:]
        if "most recent call first" in text:
            time.sleep(0.05)  # let every thread's section land
            text = tail(fault_path, 10**7)[before:]
            break
        time.sleep(0.02)
    return text[-MAX_TEXT:], "faulthandler"


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


def _new_trial_dir(trial_dir: Path, processes: int) -> None:
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "progress").write_bytes(b"\0" * SLOT.size * processes)
    go = trial_dir / "go"
    if not go.exists():
        os.mkfifo(go)


def _launch_and_wait(
    launcher: Launcher,
    spec: dict[str, Any],
    trial_dir: Path,
    processes: int,
    timeout: float,
    barrier: bool,
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[list[int]], None] | None = None,
) -> tuple[dict[int, int], dict[int, int | None], bool, dict[int, tuple[str, str]], float | None, str | None]:
    """Start ``processes`` workers, release them together, wait for them or declare a hang."""
    spec_path = trial_dir / "spec.json"
    write_json_atomic(spec_path, spec)
    # Holding the FIFO open read-write means workers can open it without blocking, then block
    # in read() until the parent writes one byte per worker: a barrier across processes.
    go_fd = os.open(trial_dir / "go", os.O_RDWR | os.O_NONBLOCK) if barrier else -1
    progress_fd = os.open(trial_dir / "progress", os.O_RDONLY)
    progress = mmap.mmap(progress_fd, 0, prot=mmap.PROT_READ)
    os.close(progress_fd)
    pids: dict[int, int] = {}
    codes: dict[int, int | None] = {}
    stacks: dict[int, tuple[str, str]] = {}
    hung = False
    released: float | None = None
    harness_error = None
    pgid = 0
    try:
        for worker in range(processes):
            pid = launcher.start(spec_path, worker, pgid)
            pgid = pgid or pid
            pids[worker] = pid
        last_change = time.monotonic()
        last_state: tuple[int, ...] = ()
        while len(codes) < len(pids):
            for pid, code in launcher.exits(0.005).items():
                for worker, wpid in pids.items():
                    if wpid == pid:
                        codes[worker] = code
            slots = [SLOT.unpack_from(progress, w * SLOT.size) for w in range(processes)]
            state = tuple(x for slot in slots for x in slot) + (len(codes),)
            now = time.monotonic()
            if state != last_state:
                last_state, last_change = state, now
                if on_progress is not None:
                    on_progress(sum(slot[1] for slot in slots))
            if barrier and released is None:
                if all(slots[w][0] >= READY or w in codes for w in range(processes)):
                    os.write(go_fd, b"g" * processes)
                    released = time.monotonic()
                    last_change = released
                    if on_start is not None:
                        on_start([pids[w] for w in range(processes) if w not in codes])
            if now - last_change > timeout and len(codes) < len(pids):
                hung = True
                for worker, pid in pids.items():
                    if worker not in codes:
                        stacks[worker] = capture_stacks(pid, trial_dir / f"fault.{worker}")
                break
    except HarnessError as exc:
        harness_error = str(exc)
    finally:
        kill_tree(list(pids.values()), pgid)
        deadline = time.monotonic() + 10.0
        while len(codes) < len(pids) and time.monotonic() < deadline:
            try:
                got = launcher.exits(0.05)
            except HarnessError:
                break
            for pid, code in got.items():
                for worker, wpid in pids.items():
                    if wpid == pid:
                        codes[worker] = code
        for worker in pids:
            codes.setdefault(worker, None)
        progress.close()
        if go_fd >= 0:
            os.close(go_fd)
    return pids, codes, hung, stacks, released, harness_error


def run_trial(
    trial: Trial,
    launcher: Launcher,
    workdir: Path,
    trial_dir: Path,
    plugins: Sequence[str] = (),
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[list[int]], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> TrialRun:
    """Run one trial in fresh worker processes and gather what happened. Never raises for a child.

    ``extra`` adds to the worker's spec: ``core`` (allow core dumps, for gdb) or ``instrument``
    (``iris_lock_audit``: run under toolkit.lockaudit).
    """
    _new_trial_dir(trial_dir, trial.processes)
    spec = {
        "schema": "threadprobe.trial/1",
        "stage": "trial",
        "trial": trial.to_json(),
        "trial_dir": str(trial_dir),
        "workdir": str(workdir),
        "plugins": list(plugins),
        **(extra or {}),
    }
    pids, codes, hung, stacks, released, harness_error = _launch_and_wait(
        launcher, spec, trial_dir, trial.processes, trial.timeout, barrier=True,
        on_progress=on_progress, on_start=on_start,
    )
    workers = []
    starts, ends = [], []
    for worker, pid in pids.items():
        report = None
        path = trial_dir / f"result.{worker}.json"
        if path.exists():
            try:
                report = json.loads(path.read_text())
            except ValueError:
                report = None
        if report and report.get("t_end") is not None and report.get("t_start") is not None:
            starts.append(report["t_start"])
            ends.append(report["t_end"])
        stack_text, source = stacks.get(worker, (None, None))
        workers.append(
            WorkerRun(
                worker=worker,
                pid=pid,
                returncode=codes.get(worker),
                report=report,
                fault=tail(trial_dir / f"fault.{worker}"),
                output=tail(trial_dir / f"out.{worker}", 4000),
                stacks=stack_text,
                stack_source=source,
            )
        )
    # Work time runs from the first worker's start to the last one's end (CLOCK_MONOTONIC is
    # system-wide), so the parent's polling latency does not count.
    seconds = (max(ends) - min(starts)) if (ends and not hung) else None
    return TrialRun(trial, tuple(workers), hung, seconds, harness_error)


def run_prepare(ref: str, launcher: Launcher, workdir: Path, job_dir: Path, plugins: Sequence[str] = (),
                timeout: float = 300.0) -> dict[str, Any]:
    """Call a probe's ``prepare`` in a child. Returns ``{"errors": [...]}``; a crash is an error too."""
    _new_trial_dir(job_dir, 1)
    workdir.mkdir(parents=True, exist_ok=True)
    spec = {"stage": "prepare", "ref": ref, "trial_dir": str(job_dir), "workdir": str(workdir),
            "plugins": list(plugins)}
    # prepare reports no progress, so the "no progress" timeout is simply its time limit.
    pids, codes, hung, _, _, harness_error = _launch_and_wait(
        launcher, spec, job_dir, 1, timeout, barrier=False
    )
    path = job_dir / "result.0.json"
    if path.exists():
        return json.loads(path.read_text())
    code = codes.get(0)
    why = (
        f"prepare did not finish within {timeout:.0f}s" if hung
        else harness_error or f"prepare died ({signal_name(code) or f'exit code {code}'})"
    )
    fault = tail(job_dir / "fault.0")
    return {"errors": [{"stage": "prepare", "error_type": "PrepareFailed", "message": why,
                        "traceback": fault}]}


def _main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(argv[1:])
        return 0
    if argv[:1] == ["worker"] and len(argv) == 3:
        die_with_parent()
        code = worker_main(argv[1], int(argv[2]))
        sys.stdout.flush()
        os._exit(code)
    print("usage: python -m toolkit.isolation serve [MODULE...] | worker SPEC WORKER", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
