"""Starting worker processes, three ways, behind one small Protocol.

- ``ForkServer`` (the default): a fresh interpreter imports the probe's heavy libraries once,
  stays single-threaded, and forks one worker per request. A fork of a warm, single-threaded
  process that never opened a file is as fresh as a new interpreter, and costs milliseconds
  instead of the second Iris takes to import (the ``forkserver`` idea).
- ``SpawnLauncher``: ``python -m threadprobe.harness.child worker ...``, a new interpreter every time.
- ``DirectFork``: a fork of this very process, so that workers inherit closures and fixtures
  (the pytest plugin). Thread pools that did not survive the fork are reset in the child, and
  the threads alive at the fork are named in the report.

Fork servers and spawned workers may run another interpreter (``diagnose --python``), and
either may run under a command prefix: valgrind's race detectors (``threadprobe.harness.valgrind``).
``Launchers`` keeps one fork server per set of preloaded libraries for a whole diagnosis.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from threadprobe.harness import gil
from threadprobe.harness.proc import child_env, cpu_of, die_with_parent, interpreter_of, kill_tree
from threadprobe.harness.child import forget_parent_threads, worker_main
from threadprobe.records import GilState, Start


class Launcher(Protocol):
    """Starts worker processes and reports their exits (return code, CPU seconds)."""

    def start(self, spec_path: Path, worker: int, pgid: int) -> int: ...

    def exits(self, wait: float) -> dict[int, tuple[int, float | None]]: ...

    def close(self) -> None: ...


class HarnessError(RuntimeError):
    """The launcher itself failed (not the probe): the trial is reported as a harness error."""


class SpawnLauncher:
    """A new interpreter for every worker."""

    def __init__(self, env: dict[str, str] | None = None, python: str | None = None,
                 prefix: Sequence[str] = ()) -> None:
        self.python, foreign = interpreter_of(python)
        self._env = child_env(env, foreign)
        self._prefix = list(prefix)
        self._pids: set[int] = set()

    def start(self, spec_path: Path, worker: int, pgid: int) -> int:
        proc = subprocess.Popen(
            [*self._prefix, self.python, "-m", "threadprobe.harness.child", "worker", str(spec_path), str(worker)],
            env=self._env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            process_group=pgid, preexec_fn=die_with_parent,
        )
        # Reaped below with wait4 (for its CPU time); Popen must not reap it first.
        proc.returncode = 0
        self._pids.add(proc.pid)
        return proc.pid

    def exits(self, wait: float) -> dict[int, tuple[int, float | None]]:
        return _reap(self._pids, wait)

    def close(self) -> None:
        kill_tree(list(self._pids), None)
        _reap(self._pids, 5.0, block=True)


def _reap(pids: set[int], wait: float, block: bool = False) -> dict[int, tuple[int, float | None]]:
    deadline = time.monotonic() + wait
    done: dict[int, tuple[int, float | None]] = {}
    while True:
        for pid in list(pids):
            try:
                got, status, usage = os.wait4(pid, 0 if block else os.WNOHANG)
            except ChildProcessError:
                got, status, usage = pid, 0, None
            if got:
                done[pid] = (os.waitstatus_to_exitcode(status), cpu_of(usage) if usage else None)
                pids.discard(pid)
        if done or not pids or time.monotonic() >= deadline:
            return done
        time.sleep(0.002)


class DirectFork:
    """Fork workers straight from this process, so they inherit what it holds: closures and
    fixtures. Only for callers that accept the fork method's caveats (pytest's plugin does)."""

    def __init__(self) -> None:
        self._pids: set[int] = set()
        self.threads_at_fork: tuple[str, ...] = ()

    def start(self, spec_path: Path, worker: int, pgid: int) -> int:
        others = tuple(t.name for t in threading.enumerate() if t is not threading.current_thread())
        self.threads_at_fork = tuple(sorted(set(self.threads_at_fork) | set(others)))
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                os.setpgid(0, pgid)
                die_with_parent()
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                if others:
                    forget_parent_threads()
                code = worker_main(str(spec_path), worker)
            finally:
                os._exit(code)
        try:
            os.setpgid(pid, pgid or pid)
        except OSError:
            pass
        self._pids.add(pid)
        return pid

    def exits(self, wait: float) -> dict[int, tuple[int, float | None]]:
        return _reap(self._pids, wait)

    def close(self) -> None:
        kill_tree(list(self._pids), None)
        _reap(self._pids, 5.0, block=True)


class ForkServer:
    """A warm, single-threaded interpreter that forks workers on request (see ``child.serve``)."""

    def __init__(self, preload: Sequence[str] = (), env: dict[str, str] | None = None,
                 python: str | None = None, prefix: Sequence[str] = (), ready_timeout: float = 120.0) -> None:
        self.preload = tuple(preload)
        self.python, foreign = interpreter_of(python)
        self._proc = subprocess.Popen(
            [*prefix, self.python, "-m", "threadprobe.harness.child", "serve", *self.preload],
            env=child_env(env, foreign), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent,
        )
        self._buffer = b""
        self._exits: dict[int, tuple[int, float | None]] = {}
        ready = self._next_line(timeout=ready_timeout)
        parts = ready.split(" ", 3)
        if parts[0] != "ready" or len(parts) < 3:
            raise HarnessError(f"fork server did not start: {ready!r}")
        self.threads = int(parts[1])
        self.gil_reenabled_by = tuple(m for m in parts[2].split(",") if m and m != "-")
        self.import_error = parts[3] if len(parts) > 3 else ""

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
            self._exits[int(rest[0])] = (int(rest[1]), float(rest[2]) if len(rest) > 2 else None)
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

    def exits(self, wait: float) -> dict[int, tuple[int, float | None]]:
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
                os.killpg(self._proc.pid, 9)
            except ProcessLookupError:
                pass
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


class _Loan:
    """A shared fork server, lent to one user: closing the loan does not stop the server."""

    def __init__(self, server: ForkServer) -> None:
        self.server = server

    def start(self, spec_path: Path, worker: int, pgid: int) -> int:
        return self.server.start(spec_path, worker, pgid)

    def exits(self, wait: float) -> dict[int, tuple[int, float | None]]:
        return self.server.exits(wait)

    @property
    def alive(self) -> bool:
        return self.server.alive

    def close(self) -> None:
        pass


class Launchers:
    """Fork servers shared by the probes that preload the same libraries, for one interpreter.

    A fork server only ever imports and forks (prepare and trials run in its children), so
    sharing one between probes keeps every trial's state fresh while paying for the imports
    (a second for Iris) once per library set instead of once per probe.
    """

    def __init__(self, start: Start = Start.FORK, python: str | None = None, plugins: Sequence[str] = (),
                 prefix: Sequence[str] = (), env: dict[str, str] | None = None, ready_timeout: float = 120.0) -> None:
        self.start = start
        self.python = python
        self.plugins = tuple(plugins)
        self.prefix = tuple(prefix)  # e.g. valgrind's, for the race pass
        self.env = env
        self.ready_timeout = ready_timeout
        self.notes: list[str] = []
        self._servers: dict[tuple[GilState, tuple[str, ...]], ForkServer] = {}

    def env_for(self, state: GilState) -> dict[str, str]:
        """The children's environment in a GIL state: ``PYTHON_GIL=0`` is read only at start-up, so
        each state has fork servers of its own."""
        return {**(self.env or {}), **(gil.FORCED_OFF if state == GilState.OFF else {})}

    def get(self, preload: Sequence[str], who: str = "", state: GilState = GilState.AS_IMPORTED) -> Launcher:
        env = self.env_for(state)
        if self.start == Start.SPAWN:
            return SpawnLauncher(env, self.python, self.prefix)
        key = (state, tuple(preload) + self.plugins)
        for (have_state, have), running in self._servers.items():
            # A server that already imports all of these (and more) serves this probe as well,
            # unless its other imports turned the GIL back on (a free-threaded build): the probe's
            # GIL "as imported" must be what its own imports leave.
            shares = not running.gil_reenabled_by or state == GilState.OFF or set(have) == set(key[1])
            if have_state == state and set(key[1]) <= set(have) and shares and running.alive:
                return _Loan(running)
        server = self._servers.get(key)
        if server is not None:
            server.close()
        server = ForkServer([*preload, *self.plugins], env, self.python, self.prefix, self.ready_timeout)
        if not server.single_threaded:
            self.notes.append(f"{who}: fork server had {server.threads} threads after imports; used fresh interpreters")
            server.close()
            return SpawnLauncher(env, self.python, self.prefix)
        self._servers[key] = server
        return _Loan(server)

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()
