"""The race pass's fork servers under the detector, shared by its lanes.

Importing Iris under helgrind takes minutes (about 2 on an idle 2-core machine, 5 on a busy one),
and is most of ``make races`` when every lane imports it for itself. So the pass starts at most
two servers, each once, and lends both to every lane:

- a **light** one with the modules of the probes that import little (netCDF4, h5py, cf-units...),
  ready in well under a minute, whose probes run while the heavy one still imports;
- a **heavy** one with every probe's modules, which serves the rest, and the light probes too
  once they are its only work.

Which probes are light is priced natively, before the pass: one child of the interpreter under
test imports every module once, in order of how many probes share it, and says how long each
took (``import_costs``). A probe whose modules cost less than ``LIGHT_SHARE`` of all of them is
light. A forked worker does not see which server it came from: it imports nothing after the fork
(its modules were preloaded by either), and its report goes to that server's folder.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from threadprobe.harness import launch
from threadprobe.harness.proc import child_env, interpreter_of

#: A probe is light when its modules cost less than this share of all the pass's modules to import.
LIGHT_SHARE = 0.25
#: How often a lane borrowing a shared server looks for its workers' exits.
POLL = 0.02

_TIMED = """
import importlib, json, sys, time
out = {}
for module in json.loads(sys.argv[1]):
    began = time.perf_counter()
    try:
        importlib.import_module(module)
    except Exception:
        pass
    out[module] = time.perf_counter() - began
print(json.dumps(out))
"""


def shared_first(preloads: Sequence[Sequence[str]]) -> list[str]:
    """Every module once, the ones most probes preload first: their cost is then each module's
    own, and what several share is charged to the module they share."""
    counts = Counter(m for preload in preloads for m in dict.fromkeys(preload))
    first_seen = {m: k for k, m in enumerate(dict.fromkeys(m for preload in preloads for m in preload))}
    return sorted(counts, key=lambda m: (-counts[m], first_seen[m]))


def import_costs(python: str | None, modules: Sequence[str], timeout: float = 120.0) -> dict[str, float]:
    """Seconds each module took to import natively, after the ones before it (empty: not measured)."""
    modules = [m for m in modules if not m.endswith(".py")]
    if not modules:
        return {}
    executable, foreign = interpreter_of(python)
    try:
        done = subprocess.run([executable, "-c", _TIMED, json.dumps(modules)], capture_output=True, text=True,
                              timeout=timeout, env=child_env(foreign=foreign))
        return {str(k): float(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    except (subprocess.TimeoutExpired, ValueError, IndexError, OSError):
        return {}


def steady_costs(python: str | None, modules: Sequence[str], runs: int = 2) -> dict[str, float]:
    """Each module's least cost over ``runs`` children (empty when any run measured nothing).
    One child's figures are noisy: one make races here (2026-12-07) put h5py among the heavy
    modules, so its eight probes waited for Iris's import while the lanes idled, yet h5py took
    about 2% of the modules' cost in every child timed since (a cold page cache would explain
    it). The least of two is what an import costs when nothing else is in its way."""
    measured = [import_costs(python, modules) for _ in range(runs)]
    if not measured or not all(measured):
        return {}
    return {m: min(run.get(m, 0.0) for run in measured) for m in measured[0]}


def groups(preloads: Sequence[Sequence[str]], costs: dict[str, float]) -> list[tuple[str, ...]]:
    """Pure: the servers' preloads, light first. Heavy: every module. Light: the modules of the
    probes whose own cost under ``LIGHT_SHARE`` of the whole; none when those are all of them,
    or none of them (one server then), or nothing was priced."""
    every = tuple(shared_first(preloads))
    total = sum(costs.get(m, 0.0) for m in every)
    if total <= 0:
        return [every]
    light = [p for p in preloads if sum(costs.get(m, 0.0) for m in set(p)) < LIGHT_SHARE * total]
    modules = tuple(m for m in every if any(m in p for p in light))
    if not light or set(modules) == set(every):
        return [every]
    return [modules, every]


class Server:
    """One fork server under the detector, started once and lent to any number of lanes at once.

    A fork server answers one request at a time on one pipe: lending it means taking turns on
    that pipe (a lock), and handing each exit it reports to the lane whose worker it was."""

    def __init__(self, launchers: launch.Launchers, preload: tuple[str, ...], folder: Path) -> None:
        self.launchers = launchers
        self.preload = preload
        self.folder = folder
        self.ready = threading.Event()
        self.failed: str | None = None
        self.startup = 0.0
        self._launcher: launch.Launcher | None = None
        self._lock = threading.Lock()
        self._exited: dict[int, tuple[int, float | None]] = {}

    def start(self, tool: str) -> None:
        """Import under the detector (the minutes); then lanes may borrow it."""
        began = time.monotonic()
        try:
            self._launcher = self.launchers.get(self.preload, "race pass")
        except (launch.HarnessError, OSError) as exc:  # OSError: valgrind or the interpreter went missing
            self.failed = f"{tool} could not start the interpreter: {exc}"
        finally:
            self.startup = time.monotonic() - began
            self.ready.set()

    def covers(self, preload: Sequence[str]) -> bool:
        return set(preload) <= set(self.preload)

    def lend(self) -> Lent:
        return Lent(self)

    def fork(self, spec_path: Path, worker: int, pgid: int) -> int:
        assert self._launcher is not None, "borrowed before it was ready"
        with self._lock:
            return self._launcher.start(spec_path, worker, pgid)

    def exits_of(self, pids: set[int]) -> dict[int, tuple[int, float | None]]:
        """The exits reported so far of these workers (the others' are kept for their lanes)."""
        assert self._launcher is not None, "borrowed before it was ready"
        with self._lock:
            self._exited.update(self._launcher.exits(0.0))
            return {pid: self._exited.pop(pid) for pid in list(self._exited) if pid in pids}

    def close(self) -> None:
        self.launchers.close()


class Lent:
    """A server as one trial's launcher: its own workers' exits, never another lane's."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.pids: set[int] = set()

    def start(self, spec_path: Path, worker: int, pgid: int) -> int:
        pid = self.server.fork(spec_path, worker, pgid)
        self.pids.add(pid)
        return pid

    def exits(self, wait: float) -> dict[int, tuple[int, float | None]]:
        deadline = time.monotonic() + wait
        while True:
            mine = self.server.exits_of(self.pids)
            left = deadline - time.monotonic()
            if mine or left <= 0:
                self.pids -= set(mine)
                return mine
            time.sleep(min(POLL, left))

    def close(self) -> None:
        pass  # the pass closes its servers once, at the end


Item = TypeVar("Item")


class Board(Generic[Item]):
    """The probes left, in order, and the servers: each lane takes the first probe that a ready
    server preloads, on the lightest such server; while none is ready, it waits."""

    def __init__(self, servers: Sequence[Server], preload_of: Callable[[Item], Sequence[str]]) -> None:
        self.servers = list(servers)
        self.preload_of = preload_of
        self.todo: list[Item] = []
        self.closed = False
        self.changed = threading.Condition()

    def add_first(self, server: Server) -> None:
        """One more server, tried before the others (a light one, started after the heavy one)."""
        with self.changed:
            self.servers.insert(0, server)
            self.changed.notify_all()

    def put(self, items: Sequence[Item]) -> None:
        """The probes to run, in the order to run them; no more come after them."""
        with self.changed:
            self.todo.extend(items)
            self.closed = True
            self.changed.notify_all()

    def wake(self) -> None:
        """A server became ready (or failed)."""
        with self.changed:
            self.changed.notify_all()

    def stop(self) -> None:
        """Nothing more is taken (past the budget)."""
        with self.changed:
            self.todo.clear()
            self.changed.notify_all()

    def take(self) -> tuple[Item, Server] | None:
        """The next probe and the server to fork it from (a failed server when no other can ever
        serve it: the lane says why), or None when none is left."""
        with self.changed:
            while True:
                if self.closed and not self.todo:
                    return None
                for k, item in enumerate(self.todo):
                    got = self._server_for(self.preload_of(item))
                    if got is not None:
                        del self.todo[k]
                        return item, got
                self.changed.wait(timeout=1.0)

    def _server_for(self, preload: Sequence[str]) -> Server | None:
        able = [s for s in self.servers if s.covers(preload)]
        ready = [s for s in able if s.ready.is_set() and s.failed is None]
        if ready:
            return ready[0]  # servers go light first
        if able and all(s.ready.is_set() for s in able):
            return able[0]  # every server that could run it failed: said by the lane
        return None
