"""Running on a Choice: options, the dask config dask obeys, locks held, clusters and addresses."""

import json
import socket
import subprocess
import sys
import threading
import time

import dask
import dask.array as da
import pytest

from threadprobe.records.errors import UsageError
from threadprobe.records import Auto, Choice, Cluster, Remedy, RemedyKind, RunRequest, Scheduler, StartMethod
from threadprobe.scheduling import locks, schedulers
from threadprobe.scheduling.runs.bench import Inputs, Spec


def test_explicit_choices_follow_the_options():
    threads = schedulers.explicit("wind", Scheduler.THREADS, threads_per_worker=3)
    assert threads == Choice("wind", Scheduler.THREADS, 1, 3)
    assert schedulers.explicit("wind", Scheduler.PROCESSES, workers=2).context is StartMethod.FORK
    c = schedulers.explicit("wind", Scheduler.DISTRIBUTED, workers=3, threads_per_worker=2, adapt="1:4")
    assert (c.n_workers, c.threads_per_worker, c.adapt, c.cluster) == (3, 2, (1, 4), Cluster.LOCAL)
    assert "adaptive 1-4" in c.describe()


def test_a_scheduler_asked_for_by_name_is_auto_or_a_row_of_the_table():
    assert schedulers.parse_scheduler("auto") is Auto.AUTO
    assert [schedulers.parse_scheduler(s.value) for s in Scheduler] == list(Scheduler)
    with pytest.raises(UsageError, match=r"unknown scheduler 'thread' \(auto, synchronous, threads, processes, "
                                         r"distributed\)"):
        schedulers.parse_scheduler("thread")


def test_a_run_request_crosses_to_the_bench_subprocess_as_the_same_strings_and_back_as_enums():
    """The bench writes each run's request as JSON for its subprocess (benchrun): the scheduler
    asked for goes as its name, ``auto`` included, and comes back as the enum member."""
    for asked in (Auto.AUTO, Scheduler.PROCESSES):
        spec = Spec("wind", Inputs("x", "y", "f"), RunRequest(scheduler=asked, cluster=Cluster.SLURM))
        text = json.dumps(spec.to_json())
        assert f'"scheduler": "{asked.value}"' in text
        back = Spec.from_json(json.loads(text))
        assert back == spec and type(back.request.scheduler) is type(asked)
    choice = Choice("w", Scheduler.PROCESSES, 2, context=StartMethod.SPAWN)
    assert choice.to_json()["context"] == "spawn"
    assert Choice.from_json(choice.to_json()).context is StartMethod.SPAWN


@pytest.mark.parametrize("kwargs, message", [
    (dict(scheduler=Scheduler.THREADS, address="tcp://x:1"), "need --scheduler distributed"),
    (dict(scheduler=Scheduler.DISTRIBUTED, adapt="4:1"), "0 <= MIN <= MAX"),
    (dict(scheduler=Scheduler.DISTRIBUTED, adapt="x"), "MIN:MAX"),
    (dict(scheduler=Scheduler.DISTRIBUTED, address="tcp://x:1", cluster=Cluster.SLURM), "not both"),
])
def test_contradictory_options_are_usage_errors(kwargs, message):
    with pytest.raises(UsageError, match=message):
        schedulers.explicit("wind", **kwargs)


@pytest.mark.parametrize("scheduler", [Auto.AUTO, *Scheduler])
def test_a_lock_is_asked_of_the_threads_scheduler_only(scheduler):
    """``--lock`` holds a lock between the threads of one process: auto holds the verified
    remedies itself, and the other schedulers never run two tasks in one process."""
    lock = (Remedy(RemedyKind.GLOBAL_LOCK),)
    if scheduler == Scheduler.THREADS:
        schedulers.check_options(scheduler, None, Cluster.LOCAL, None, lock)
    else:
        with pytest.raises(UsageError, match="--lock needs --scheduler threads"):
            schedulers.check_options(scheduler, None, Cluster.LOCAL, None, lock)


@pytest.mark.parametrize("choice, scheduler, workers", [
    (Choice("w", "threads", 1, 3), "threads", 3),
    (Choice("w", "processes", 2, 1, context="fork"), "processes", 2),
    (Choice("w", "synchronous"), "synchronous", None),
])
def test_the_yaml_is_a_dask_config_that_dask_itself_obeys(tmp_path, choice, scheduler, workers):
    (tmp_path / "threadprobe.yaml").write_text(schedulers.as_yaml(choice))
    config = dask.config.collect(paths=[str(tmp_path)], env={})
    with dask.config.set(config):
        get = dask.base.get_scheduler()
        expected = {"threads": dask.threaded.get, "processes": dask.multiprocessing.get,
                    "synchronous": dask.local.get_sync}[scheduler]
        assert get is expected
        assert dask.config.get("num_workers", None) == workers
        if scheduler == "processes":
            assert dask.config.get("multiprocessing.context") == "fork" and dask.config.get("chunksize") == 1
            assert int(da.ones(10, chunks=2).sum().compute()) == 10  # and it runs there


def test_a_cluster_choice_tells_a_client_where_to_connect(tmp_path):
    text = schedulers.as_yaml(Choice("w", "distributed", 2, 1, address="tcp://10.0.0.1:8786"))
    (tmp_path / "t.yaml").write_text(text)
    assert dask.config.collect(paths=[str(tmp_path)], env={})["scheduler-address"] == "tcp://10.0.0.1:8786"
    assert "Client(LocalCluster(n_workers=2" in schedulers.as_yaml(Choice("w", "distributed", 2, 1))


def test_env_exports_are_what_dask_reads_from_the_environment():
    import shlex

    env = {}
    for line in schedulers.as_env(Choice("load", "processes", 2, 1, context="fork")).splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0]
    config = dask.config.collect_env(env)
    assert config["scheduler"] == "processes" and config["num_workers"] == 2
    assert config["multiprocessing"]["context"] == "fork"


class Overlap:
    """Counts how many threads are inside a task at once."""

    def __init__(self):
        self.inside = self.most = 0
        self.guard = threading.Lock()

    def task(self, x):
        with self.guard:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.01)
        with self.guard:
            self.inside -= 1
        return x


def test_a_choice_that_needs_a_global_lock_holds_it_around_every_task():
    free, held = Overlap(), Overlap()
    with schedulers.activated(Choice("w", "threads", 1, 4)):
        dask.compute(*[dask.delayed(free.task)(k) for k in range(16)])
    with schedulers.activated(Choice("w", "threads", 1, 4, locks=(Remedy(RemedyKind.GLOBAL_LOCK),))) as active:
        assert active.lock is not None
        dask.compute(*[dask.delayed(held.task)(k) for k in range(16)])  # any dask code, not only the runner's
    assert free.most > 1 and held.most == 1


def test_each_active_scheduler_runs_its_own_work_while_several_are_open():
    """A pilot keeps several open: threads must not run on the process pool another one opened."""
    import os

    here = os.getpid()
    with schedulers.activated(Choice("w", "processes", 2, 1, context="fork")) as procs, \
            schedulers.activated(Choice("w", "threads", 1, 2)) as threads:
        in_procs = procs.compute(*[dask.delayed(os.getpid, pure=False)() for _ in range(4)])
        in_threads = threads.compute(*[dask.delayed(os.getpid, pure=False)() for _ in range(4)])
        again = procs.compute(*[dask.delayed(os.getpid, pure=False)() for _ in range(4)])
    assert set(in_threads) == {here}
    assert here not in set(in_procs) | set(again)
    assert len(set(in_procs) | set(again)) <= 2  # one pool of two, reused: a pool per compute shows new pids


def test_locks_are_made_per_scheduler_as_xarray_makes_them():
    from dask.utils import SerializableLock

    held = (Remedy(RemedyKind.GLOBAL_LOCK),)
    assert isinstance(locks.lock_for(Choice("w", "threads", 1, 2, locks=held)), SerializableLock)
    assert locks.lock_for(Choice("w", "processes", 2, 1, locks=held)) is None  # one thread per process
    assert locks.lock_for(Choice("w", "threads", 1, 2)) is None
    from distributed import Lock

    assert isinstance(locks.lock_for(Choice("w", "distributed", 2, 2, locks=held)), Lock)


def test_an_unreachable_address_is_a_one_line_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(UsageError, match="cannot reach the dask scheduler"):
            with schedulers.activated(Choice("w", "distributed", address=f"tcp://127.0.0.1:{port}")):
                pass


@pytest.mark.slow
def test_an_existing_persisted_scheduler_is_used(wind_nc, tmp_path, no_orphans):
    """`dask scheduler` and `dask worker` started by hand, as a user would, then --address."""
    from threadprobe.scheduling import pipeline

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    bindir = __import__("pathlib").Path(sys.executable).parent
    sched = subprocess.Popen([str(bindir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([str(bindir / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from dask.distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout="2s") as c:
                    if len(c.scheduler_info()["workers"]) == 2:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the hand-started cluster did not come up"
            time.sleep(0.5)
        result = pipeline.run_wind(str(wind_nc / "x_wind_*.nc"), str(wind_nc / "y_wind_*.nc"), tmp_path / "o.nc",
                                   RunRequest(scheduler=Scheduler.DISTRIBUTED, address=address))
        assert address in result.choice.describe() and (tmp_path / "o.nc").exists()
    finally:
        for proc in (worker, sched):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
