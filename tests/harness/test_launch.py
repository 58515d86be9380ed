"""The process plumbing: crashes, hangs and exits become data, and nothing outlives a trial."""

import os
import pathlib
import time

import psutil
import pytest

from threadprobe.probe import registry
from threadprobe.harness import launch, proc, trial as harness
from threadprobe.probe import digest
from threadprobe.records import Trial

FAULTS = pathlib.Path(__file__).parents[1] / "plugins" / "faults.py"


def ref(name: str) -> str:
    return next(p.ref for p in registry.discover([FAULTS], entry_points=False) if p.name == name)


@pytest.fixture(params=["fork", "spawn"])
def launcher(request):
    made = launch.ForkServer([str(FAULTS)]) if request.param == "fork" else launch.SpawnLauncher()
    yield made
    made.close()


def trial(name, mode="threads", processes=1, threads=2, iterations=8, timeout=5.0):
    return Trial(name, ref(name), mode, processes, threads, iterations, timeout=timeout)


def run(launcher, t, tmp_path, tag="t"):
    return harness.run_trial(t, launcher, tmp_path, tmp_path / tag, [str(FAULTS)])


def test_fork_server_is_single_threaded_after_its_imports():
    server = launch.ForkServer(["numpy", str(FAULTS)])
    try:
        assert server.single_threaded, "a multi-threaded fork server would hand out broken children"
    finally:
        server.close()


def test_an_ok_trial_reports_every_digest(launcher, tmp_path, no_orphans):
    got = run(launcher, trial("faults.fresh", iterations=10), tmp_path)
    assert not got.hung and got.harness_error is None
    (worker,) = got.workers
    assert worker.returncode == 0
    assert worker.report.digests == {str(i): digest(1) for i in range(10)}


def test_each_trial_gets_fresh_processes(launcher, tmp_path):
    for k in range(3):
        got = run(launcher, trial("faults.fresh", mode="processes", processes=2, threads=1), tmp_path, f"t{k}")
        assert {d for w in got.workers for d in w.report.digests.values()} == {digest(1)}


def test_a_segfault_becomes_a_signal_with_a_faulthandler_traceback(launcher, tmp_path, no_orphans):
    got = run(launcher, trial("faults.segv"), tmp_path)
    (worker,) = got.workers
    assert worker.signal == "SIGSEGV"
    assert worker.report is None
    assert "Segmentation fault" in worker.fault and "most recent call first" in worker.fault
    assert "faults.py" in worker.fault  # the Python frame that crashed is in the traceback


def test_an_abort_in_one_of_two_processes_leaves_the_other_reported(launcher, tmp_path, no_orphans):
    got = run(launcher, trial("faults.abort", mode="processes", processes=2, threads=1), tmp_path)
    by_worker = {w.worker: w for w in got.workers}
    assert by_worker[0].signal == "SIGABRT"  # worker 0 gets i=2
    assert by_worker[1].returncode == 0 and by_worker[1].report.tasks == 4


def test_a_hang_gets_stacks_then_the_tree_is_killed(launcher, tmp_path, no_orphans):
    started = time.monotonic()
    got = run(launcher, trial("faults.sleep_forever", timeout=1.0), tmp_path)
    assert got.hung
    (worker,) = got.workers
    assert worker.stack_source in ("py-spy", "faulthandler")
    assert "SleepForever" in worker.stacks or "task" in worker.stacks
    assert not psutil.pid_exists(worker.pid) or psutil.Process(worker.pid).status() == "zombie"
    assert time.monotonic() - started < 30


def test_without_py_spy_faulthandler_gives_the_stacks(tmp_path, monkeypatch, no_orphans):
    monkeypatch.setattr(proc, "find_py_spy", lambda: None)
    server = launch.ForkServer([str(FAULTS)])
    try:
        got = run(server, trial("faults.sleep_forever", timeout=1.0), tmp_path)
    finally:
        server.close()
    (worker,) = got.workers
    assert got.hung and worker.stack_source == "faulthandler"
    assert "most recent call first" in worker.stacks and "faults.py" in worker.stacks


def test_a_grandchild_in_its_own_session_does_not_outlive_the_trial(launcher, tmp_path, monkeypatch):
    marker = f"{os.getpid() % 1000}.{time.time_ns() % 10**6}"
    monkeypatch.setenv("THREADPROBE_TEST_SLEEP", marker)
    made = type(launcher)() if isinstance(launcher, launch.SpawnLauncher) else launch.ForkServer([str(FAULTS)])
    try:
        got = run(made, trial("faults.grandchild", timeout=1.5), tmp_path)
    finally:
        made.close()
    assert got.hung
    time.sleep(0.2)
    survivors = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert not [p for p in survivors if p.status() != "zombie"]


def test_an_exit_without_a_report_is_recorded_with_its_code(launcher, tmp_path):
    got = run(launcher, trial("faults.exit", threads=1), tmp_path)
    (worker,) = got.workers
    assert worker.returncode == 3 and worker.report is None and worker.signal is None


def test_processes_start_together_behind_the_barrier(launcher, tmp_path):
    got = run(launcher, trial("faults.fresh", mode="processes", processes=2, threads=1, iterations=4), tmp_path)
    starts = [w.report.t_start for w in got.workers]
    assert max(starts) - min(starts) < 0.05


@pytest.mark.parametrize("how", ["killed", "closed"])
def test_a_dead_fork_server_is_a_harness_error_not_an_exception(tmp_path, how):
    server = launch.ForkServer([str(FAULTS)])
    if how == "killed":
        server._proc.kill()
        server._proc.wait()
    else:
        server.close()
    got = run(server, trial("faults.fresh"), tmp_path)
    assert got.harness_error and "fork server" in got.harness_error
    server.close()


def test_prepare_runs_in_a_child_and_reports_errors(tmp_path):
    plugin = pathlib.Path(__file__).parents[1] / "plugins" / "bad_prepare.py"
    info = next(p for p in registry.discover([plugin], entry_points=False) if p.name == "bad.prepare")
    result = harness.run_prepare(info.ref, launch.SpawnLauncher(), tmp_path / "w", tmp_path / "j", [str(plugin)])
    (err,) = result
    assert err.stage == "prepare" and "disk on fire" in err.message
