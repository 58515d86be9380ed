"""A fake launcher for the harness's parent side: it plays the workers (writes the reports they
would write, or dies as told) without a process, as pytest-xdist's MockNode plays a node."""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable

#: Pids above the kernel's maximum: no process can have one, so the parent's kill_tree (SIGKILL to
#: the workers and their group) can never reach a real process.
PID_MAX = int(pathlib.Path("/proc/sys/kernel/pid_max").read_text())


class FakeLauncher:
    """Plays a worker for each start: writes the report a worker would, or dies as told."""

    def __init__(self, answer: Callable[[int], str], signal: int | None = None, silent: bool = False) -> None:
        # answer(i): the digest of task i; signal: die by it; silent: never report, and exit (as
        # killed) only a second after starting, long after a short hang timeout
        self.answer, self.signal, self.silent = answer, signal, silent
        self.exited: dict[int, tuple[int, float]] = {}
        self.started: list[dict] = []
        self.quiet: dict[int, float] = {}  # silent pid -> when it started

    def start(self, spec_path, worker, pgid):
        spec = json.loads(pathlib.Path(spec_path).read_text())
        pid = PID_MAX + 1 + len(self.started)  # no process can have it: the parent's kill_tree finds nothing
        self.started.append(spec)
        tdir = pathlib.Path(spec["trial_dir"])
        if spec["job"] == "prepare" and self.signal is None and not self.silent:
            (tdir / f"result.{worker}.json").write_text(json.dumps({"errors": []}))
        elif self.signal is None and not self.silent:
            trial = spec["trial"]
            digests = {str(i): self.answer(i) for t in range(trial["threads"]) for i in
                       range(worker * trial["threads"] + t, trial["iterations"], trial["processes"] * trial["threads"])}
            report = {"schema": "threadprobe.worker/1", "worker": worker, "digests": digests, "data_digests": {},
                      "errors": [], "tasks": len(digests), "t_start": 1.0, "t_end": 2.0, "cpu": 0.5}
            (tdir / f"result.{worker}.json").write_text(json.dumps(report))
        if self.silent:
            self.quiet[pid] = time.monotonic()
        else:
            self.exited[pid] = (-self.signal if self.signal else 0, 0.1)
        return pid

    def exits(self, wait):
        for pid, began in list(self.quiet.items()):
            if time.monotonic() - began > 1.0:
                self.exited[pid] = (-9, None)
                del self.quiet[pid]
        got, self.exited = self.exited, {}
        return got

    def close(self):
        pass
