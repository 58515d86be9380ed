"""Scheduler choice: options, auto from the recommendation, clusters and addresses."""

import socket
import subprocess
import sys
import time

import pytest

from toolkit.errors import UsageError
from toolkit.records import Recommendation
from toolkit.runner import schedulers


def test_explicit_choices_follow_the_options():
    assert schedulers.resolve("wind", "threads", threads_per_worker=3) == schedulers.Choice("threads", 1, 3)
    assert schedulers.resolve("wind", "processes", workers=2).n_workers == 2
    c = schedulers.resolve("wind", "distributed", workers=3, threads_per_worker=2, adapt="1:4")
    assert (c.n_workers, c.threads_per_worker, c.adapt, c.cluster) == (3, 2, (1, 4), "local")
    assert "adaptive 1-4" in c.describe()


@pytest.mark.parametrize("kwargs, message", [
    (dict(scheduler="threads", address="tcp://x:1"), "need --scheduler distributed"),
    (dict(scheduler="distributed", adapt="4:1"), "0 <= MIN <= MAX"),
    (dict(scheduler="distributed", adapt="x"), "MIN:MAX"),
    (dict(scheduler="distributed", address="tcp://x:1", cluster="slurm"), "not both"),
])
def test_contradictory_options_are_usage_errors(kwargs, message):
    with pytest.raises(UsageError, match=message):
        schedulers.resolve("wind", **kwargs)


def test_auto_takes_the_recommendation_and_its_rationale(monkeypatch):
    from toolkit import recommendation

    rec = Recommendation("wind", "distributed", 2, 1, rationale=("because",), source="diagnosis x")
    monkeypatch.setattr(recommendation, "recommend", lambda *a, **k: rec)
    choice = schedulers.resolve("wind")
    assert (choice.scheduler, choice.n_workers, choice.rationale) == ("distributed", 2, ("because",))
    slurm = schedulers.resolve("wind", cluster="slurm")
    assert slurm.cluster == "slurm" and slurm.n_workers == 2


def test_an_unreachable_address_is_a_one_line_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        with pytest.raises(UsageError, match="cannot reach the dask scheduler"):
            with schedulers.activated(schedulers.Choice("distributed", address=f"tcp://127.0.0.1:{port}")):
                pass


@pytest.mark.slow
def test_an_existing_persisted_scheduler_is_used(wind_nc, tmp_path, no_orphans):
    """`dask scheduler` and `dask worker` started by hand, as a user would, then --address."""
    from toolkit.runner import wind

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
        result = wind.run(str(wind_nc / "x_wind_*.nc"), str(wind_nc / "y_wind_*.nc"), tmp_path / "o.nc",
                          schedulers.resolve("wind", "distributed", address=address), quiet=True)
        assert address in result.scheduler and (tmp_path / "o.nc").exists()
    finally:
        for proc in (worker, sched):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
