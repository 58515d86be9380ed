"""Running a dask computation on the chosen scheduler, from a laptop to a SLURM cluster.

One ``Choice`` record says what to run on: a local scheduler (``synchronous``, ``threads``,
``processes``) or ``distributed`` on a LocalCluster (the default), an existing scheduler
(``address``), or dask-jobqueue's SLURMCluster (``cluster="slurm"``, configured from dask's
config files), optionally adaptive. ``resolve`` turns command-line options into a Choice,
asking the recommendation when the scheduler is ``auto``; ``activated`` applies a Choice for the
duration of a ``with`` block and yields a distributed Client when there is one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import UsageError
from toolkit.records import SCHEDULERS, Recommendation


@dataclass(frozen=True)
class Choice:
    scheduler: str
    n_workers: int = 1
    threads_per_worker: int = 1
    address: str | None = None
    cluster: str = "local"  # local | slurm
    adapt: tuple[int, int] | None = None
    locks: tuple[str, ...] = ()
    rationale: tuple[str, ...] = field(default_factory=tuple)
    source: str = "command line"

    def describe(self) -> str:
        if self.scheduler == "synchronous":
            return "synchronous (single-threaded)"
        if self.scheduler == "threads":
            return f"threads ({self.threads_per_worker} threads)"
        if self.scheduler == "processes":
            return f"processes ({self.n_workers} processes)"
        where = self.address or ("SLURM via dask-jobqueue" if self.cluster == "slurm" else "LocalCluster")
        size = f"adaptive {self.adapt[0]}-{self.adapt[1]} workers" if self.adapt else f"{self.n_workers} workers"
        return f"distributed on {where} ({size} x {self.threads_per_worker} threads)"


def from_recommendation(rec: Recommendation) -> Choice:
    return Choice(scheduler=rec.scheduler, n_workers=rec.n_workers, threads_per_worker=rec.threads_per_worker,
                  locks=rec.locks, rationale=rec.rationale, source=f"recommendation ({rec.source})")


def parse_adapt(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        low, high = (int(x) for x in text.split(":"))
    except ValueError:
        raise UsageError(f"--adapt expects MIN:MAX, got {text!r}") from None
    if low < 0 or high < max(1, low):
        raise UsageError(f"--adapt expects 0 <= MIN <= MAX and MAX >= 1, got {text!r}")
    return low, high


def check_options(scheduler: str, address: str | None, cluster: str, adapt: str | None) -> None:
    """Contradictory scheduler options, as one-line usage errors (no I/O: check them first)."""
    if scheduler not in ("auto", *SCHEDULERS):
        raise UsageError(f"unknown scheduler {scheduler!r} (auto, {', '.join(SCHEDULERS)})")
    if (address or cluster != "local" or adapt) and scheduler not in ("auto", "distributed"):
        raise UsageError("--address, --cluster and --adapt need --scheduler distributed")
    if address and cluster != "local":
        raise UsageError("choose --address or --cluster, not both")
    parse_adapt(adapt)


def resolve(workload: str, scheduler: str = "auto", workers: int | None = None, threads_per_worker: int | None = None,
            address: str | None = None, cluster: str = "local", adapt: str | None = None,
            diagnosis: str | None = None, fmt: str | None = None, progress: Any = None,
            serial_seconds: float | None = None) -> Choice:
    """The scheduler to use: the recommendation's for ``auto``, else what the options say."""
    check_options(scheduler, address, cluster, adapt)
    cores = os.cpu_count() or 1
    if scheduler == "auto":
        from toolkit import recommendation

        choice = from_recommendation(recommendation.recommend(workload, diagnosis, fmt, progress=progress,
                                                              serial_seconds=serial_seconds))
        if address or cluster != "local" or adapt:  # a cluster was asked for: keep the recommended worker shape
            choice = Choice("distributed", choice.n_workers, choice.threads_per_worker, address, cluster,
                            parse_adapt(adapt), choice.locks, choice.rationale, choice.source)
        elif workers or threads_per_worker:
            choice = Choice(choice.scheduler, workers or choice.n_workers, threads_per_worker or choice.threads_per_worker,
                            locks=choice.locks, rationale=choice.rationale, source=choice.source)
        return choice
    if scheduler == "synchronous":
        return Choice("synchronous")
    if scheduler == "threads":
        return Choice("threads", 1, threads_per_worker or workers or cores)
    if scheduler == "processes":
        return Choice("processes", workers or cores, 1)
    return Choice("distributed", workers or cores, threads_per_worker or 1, address, cluster, parse_adapt(adapt))


@contextlib.contextmanager
def activated(choice: Choice) -> Iterator[Any]:
    """Apply ``choice`` to dask inside the block; yields the distributed Client, if any."""
    import dask

    if choice.scheduler != "distributed":
        settings: dict[str, Any] = {"scheduler": choice.scheduler}
        if choice.scheduler == "threads":
            settings["num_workers"] = choice.threads_per_worker
        elif choice.scheduler == "processes":
            settings["num_workers"] = choice.n_workers
        with dask.config.set(settings):
            yield None
        return
    from dask.distributed import Client

    cluster = None
    try:
        if choice.address:
            client = Client(choice.address, timeout="30s")
        else:
            cluster = make_cluster(choice)
            client = Client(cluster)
    except OSError as exc:
        if cluster is not None:
            cluster.close()
        raise UsageError(f"cannot reach the dask scheduler at {choice.address}: {exc}") from None
    try:
        if cluster is not None and choice.cluster == "slurm" and not choice.adapt:
            client.wait_for_workers(choice.n_workers, timeout=600)
        with dask.config.set(scheduler=client):
            yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def make_cluster(choice: Choice) -> Any:
    if choice.cluster == "slurm":
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise UsageError("--cluster slurm needs dask-jobqueue (pip install dask-jobqueue)") from None
        # Everything else (queue, account, memory, walltime, interface) comes from dask's config
        # files (jobqueue.slurm.*), as dask-jobqueue documents; the python is this one.
        cluster = SLURMCluster(processes=1, cores=choice.threads_per_worker, python=sys.executable)
    else:
        from dask.distributed import LocalCluster

        cluster = LocalCluster(n_workers=0 if choice.adapt else choice.n_workers,
                               threads_per_worker=choice.threads_per_worker, processes=True,
                               dashboard_address=None)
    if choice.adapt:
        cluster.adapt(minimum=choice.adapt[0], maximum=choice.adapt[1])
    elif choice.cluster == "slurm":
        cluster.scale(jobs=choice.n_workers)
    return cluster


@contextlib.contextmanager
def progress_display(client: Any, quiet: bool, label: str) -> Iterator[Any]:
    """dask's progress bar for the local schedulers; for distributed, ``client_progress`` below."""
    if quiet or client is not None:
        yield None
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(out=sys.stderr, minimum=1.0, dt=0.5):
        yield None


class WorkersLost(RuntimeError):
    """Every dask worker died and none came back: the computation cannot finish."""


def compute(*collections: Any, client: Any = None, quiet: bool = False, worker_grace: float = 60.0) -> tuple[Any, ...]:
    """Compute dask collections once, on whatever scheduler is active, showing progress.

    On distributed, a watchdog ends the wait when the cluster has had no worker for
    ``worker_grace`` seconds: distributed itself would wait forever for workers that a crashing
    task keeps killing (seen: concurrent iris.load in a 2-thread worker).
    """
    import dask

    if client is None:
        with progress_display(None, quiet, "compute"):
            return dask.compute(*collections)
    from dask.distributed import wait

    futures = client.compute(list(collections))
    if not quiet:  # distributed's text bar blocks until the end: it draws from a thread of its own
        import threading

        from dask.distributed import progress

        threading.Thread(target=progress, args=(futures,), kwargs={"notebook": False}, daemon=True).start()
    empty_since = None
    while True:
        try:
            wait(futures, timeout=2)
            break
        except TimeoutError:
            pass
        if client.scheduler_info().get("workers"):
            empty_since = None
            continue
        empty_since = empty_since or time.monotonic()
        if time.monotonic() - empty_since > worker_grace:
            import logging

            logging.getLogger("distributed.scheduler").setLevel(logging.CRITICAL)  # its cancel traceback is noise
            client.cancel(futures)
            raise WorkersLost(f"every dask worker died and none came back within {worker_grace:.0f}s: the tasks "
                              "kill their workers (run `threadprobe diagnose` to see which operation is unsafe)")
    if not quiet:
        print(file=sys.stderr)
    return tuple(client.gather(futures))


def _imported(modules: tuple[str, ...], _: object = None) -> int:
    import importlib

    for module in modules:
        importlib.import_module(module)
    return os.getpid()


def startup_seconds(workers: int | None = None, modules: tuple[str, ...] = ()) -> dict[str, float]:
    """What each scheduler costs before any work: a computation that only imports ``modules``.

    The probes measure throughput once workers run, on purpose; a short run also pays for
    starting them (a process pool, a LocalCluster), and for the imports each new process
    repeats (a second for Iris). This says how much, on this machine.
    """
    import dask

    workers = workers or os.cpu_count() or 1
    _imported(modules)  # this process's own imports are not a scheduler's cost
    out: dict[str, float] = {"synchronous": 0.0}
    for name, settings in (("threads", {"scheduler": "threads", "num_workers": workers}),
                           ("processes", {"scheduler": "processes", "num_workers": workers})):
        with dask.config.set(settings):
            dask.compute(dask.delayed(_imported)((), -1))  # warm dask's own first-call costs
            started = time.perf_counter()
            dask.compute(*[dask.delayed(_imported)(modules, k) for k in range(2 * workers)])
        out[name] = round(time.perf_counter() - started, 3)
    from dask.distributed import Client, LocalCluster

    started = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.gather(client.map(_imported, [modules] * (2 * workers), range(2 * workers)))
    out["distributed"] = round(time.perf_counter() - started, 3)
    return out


def measure_startup(modules: tuple[str, ...] = ("iris",), timeout: float = 180.0) -> dict[str, float] | None:
    """startup_seconds in a fresh interpreter (spawned pools need a real main module)."""
    import json
    import subprocess

    from toolkit.isolation import child_env

    try:
        done = subprocess.run([sys.executable, "-m", "toolkit.runner.schedulers", *modules], capture_output=True,
                              text=True, timeout=timeout, env=child_env())
        return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return None


if __name__ == "__main__":
    import json

    print(json.dumps(startup_seconds(modules=tuple(sys.argv[1:]))))
