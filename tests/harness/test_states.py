"""Thread states from /proc: parsing and classification, then live threads that wait on the GIL or a lock."""

import ctypes
import pathlib
import os
import threading
import time
from collections import Counter

import pytest

from threadprobe.harness import states
from threadprobe.harness.proc import name_thread

CALLS = states.SYSCALLS["x86_64"]


def test_a_line_of_proc_syscall_is_a_state():
    runtime = (0x1000, 0x2000)
    assert states.classify(states.parse("running"), runtime, CALLS) == "running"
    assert states.classify(states.parse("202 0x1800 0x80 0x0 0x0 0x0 0x0 0x7ff 0x7f"), runtime, CALLS) == "gil"
    assert states.classify(states.parse("202 0x5555 0x80 0x0 0x0 0x0 0x0 0x7ff 0x7f"), runtime, CALLS) == "lock"
    assert states.classify(states.parse("0 0x3 0x7f 0x20000 0x0 0x0 0x0 0x7ff 0x7f"), runtime, CALLS) == "io"
    assert states.classify(states.parse("230 0x1 0x0 0x7f 0x0 0x0 0x0 0x7ff 0x7f"), runtime, CALLS) == "sleep"
    assert states.classify(states.QUEUED, runtime, CALLS) == "queued"
    assert states.classify(states.parse("202 0x1800 0x80"), None, CALLS) == "lock"  # no runtime: not the GIL


def test_the_runtime_of_this_interpreter_is_found_in_its_own_map():
    found = states.runtime_range(states.memory_map(os.getpid()))
    assert found is not None and found[1] - found[0] > 10_000
    # The GIL lives in it: CPython keeps its state there, and ctypes can see the symbol's address.
    address = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, "_PyRuntime"))
    assert found[0] == address


needs_proc = pytest.mark.skipif(not states.ThreadStates().available, reason="needs Linux /proc")


def _child_with_waiting_threads(ready_w: int) -> None:
    """In a forked child: one thread waits for a lock that is never released, one for the GIL,
    which a C call (through PyDLL, which keeps the GIL) holds for good."""
    lock = threading.Lock()
    lock.acquire()

    def on_lock():
        name_thread("probe-0")
        lock.acquire()

    def on_gil():
        name_thread("probe-1")
        while True:
            sum(range(1000))  # Python: it needs the GIL

    for target in (on_lock, on_gil):
        threading.Thread(target=target, daemon=True).start()
    time.sleep(0.1)
    os.write(ready_w, b"r")
    ctypes.PyDLL(None).usleep(5_000_000)
    os._exit(0)


def _sample_child(child, seconds: float, sampler=None) -> tuple[dict[str, int], list[dict[str, int]]]:
    """Fork a child running ``child(ready_w)``, sample its threads for ``seconds`` once it is
    ready (with ``sampler``, or a new one), kill it, and return the sampler's counts and windows."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            child(ready_w)
        finally:
            os._exit(1)
    try:
        os.read(ready_r, 1)
        sampler = sampler or states.ThreadStates(interval=0.002)
        sampler.start([pid])
        time.sleep(seconds)
        counts = sampler.stop()
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return counts, sampler.windows


@needs_proc
def test_threads_blocked_on_the_gil_and_on_a_lock_are_told_apart():
    counts, windows = _sample_child(_child_with_waiting_threads, 0.4)
    assert counts.get("gil", 0) > 20 and counts.get("lock", 0) > 20, counts
    shares = {k: v / sum(counts.values()) for k, v in counts.items()}
    assert shares["gil"] > 0.3 and shares["lock"] > 0.3, shares
    # Both threads wait all along: every window holds both waits, and they add up to the whole.
    assert len(windows) >= 3 and all(w.get("gil") and w.get("lock") for w in windows)
    assert sum(w.get("gil", 0) for w in windows) <= counts["gil"]


def _child_with_one_thread(ready_w: int) -> None:
    """In a forked child: a single probe thread, waiting for a lock (as the last thread of a
    trial does, with its peers done)."""
    lock = threading.Lock()
    lock.acquire()

    def alone():
        name_thread("probe-0")
        lock.acquire()

    threading.Thread(target=alone, daemon=True).start()
    time.sleep(0.1)
    os.write(ready_w, b"r")
    time.sleep(5)
    os._exit(0)


@needs_proc
def test_windows_with_one_thread_alive_are_left_out():
    counts, windows = _sample_child(_child_with_one_thread, 0.3)
    assert counts.get("lock", 0) > 20, counts  # sampled, but no window has two threads to contend
    assert windows == []


# --------------------------------------------------------------------------------------------
# The free-threaded interpreter's own locks: parked on the waiter's stack

def test_a_futex_on_the_waiters_own_stack_is_named_by_the_frames_above_it():
    line = "202 0x7ffd0010 0x80 0x0 0x0 0x0 0x0 0x7ffd0000 0x7f12"
    sample, sp = states.parse(line), states.stack_pointer(line)
    assert sp == 0x7ffd0000 and states.on_own_stack(sample[1], sp)
    assert not states.on_own_stack(0x5555, sp)
    parking = ["_PySemaphore_Wait", "_PyParkingLot_Park", "PyMutex_Lock"]
    assert states.parked(parking + ["_PyCriticalSection_BeginSlow", "dict_get"]) == "interp"
    assert states.parked(parking + ["lock_PyThread_acquire_lock"]) == "lock"  # a threading.Lock: Python code's
    assert states.parked(["some_library_function", None]) == "lock"  # no parking lot: as before
    runtime = (0x1000, 0x2000)
    assert states.classify(sample, runtime, CALLS, "interp") == "interp"
    assert states.classify(states.parse("202 0x1800 0x80"), runtime, CALLS, "interp") == "gil"  # the GIL wins


def test_interpreter_return_addresses_are_picked_out_of_a_stack():
    import struct

    ranges = ((0x400000, 0x500000, "/x/python3.13t"),)
    memory = struct.pack("<6Q", 0x7f00, 0x400010, 0x1234, 0x4fffff, 0x500000, 0x400000)
    assert states.return_addresses(memory, ranges) == (0x400010, 0x4fffff, 0x400000)


FT = pathlib.Path(__file__).resolve().parents[2] / ".venv-ft" / "bin" / "python"
needs_ft = pytest.mark.skipif(not FT.exists(), reason=".venv-ft is missing (.ci/freethreaded-up builds it)")

PARKERS = r"""
import ctypes, gc, threading, time
from threadprobe.harness.proc import name_thread
held = threading.Lock(); held.acquire()
def on_lock():  # a Python lock: parks under lock_PyThread_acquire_lock
    name_thread("probe-0"); held.acquire()
def attached():  # a C call that keeps its thread attached (PyDLL): a stop-the-world waits for it
    name_thread("other"); ctypes.PyDLL(None).usleep(30_000_000)
def collect():  # the interpreter's own wait: the collector's stop-the-world, parked until the call ends
    name_thread("probe-1"); gc.collect()
for target in (on_lock, attached):
    threading.Thread(target=target, daemon=True).start()
time.sleep(0.2); print("ready", flush=True)
threading.Thread(target=collect, daemon=True).start()
time.sleep(30)
"""


@needs_ft
@needs_proc
def test_on_the_free_threaded_build_object_locks_are_the_interpreters_and_a_python_lock_is_a_lock():
    import subprocess

    from threadprobe.harness.proc import child_env

    child = subprocess.Popen([str(FT), "-c", PARKERS], stdout=subprocess.PIPE, text=True,
                             env=child_env({"PYTHON_GIL": "0"}, foreign=True))
    try:
        assert child.stdout.readline().strip() == "ready"
        sampler = states.ThreadStates(interval=0.002)
        sampler.start([child.pid])
        time.sleep(1.0)
        counts = sampler.stop()
    finally:
        child.kill()
        child.wait()
    # probe-0 waits on the Python lock all along, probe-1 on the interpreter's stop-the-world. The
    # collector wakes to re-check now and then, so beside busy processes it is mostly queued for a CPU
    # and how many of its samples find it parked depends on the load. What must not depend on it: the
    # Python lock is a lock in every sample, and the collector's wait is never one.
    lock, total = counts.get("lock", 0), sum(counts.values())
    assert lock >= 100, counts
    probe_1 = total - lock  # each sweep reads both threads (probe-1 starts a sweep or two late)
    assert abs(lock - probe_1) <= max(10, lock // 20), counts
    assert counts.get("interp", 0) >= 1 and counts.get("gil", 0) == 0, counts


def test_a_threads_blocked_time_is_its_wall_time_off_the_cpu_and_out_of_the_queue():
    ms = 1_000_000
    first, last = (0, 0, 0), (100 * ms, 10 * ms, 75 * ms)  # 100 ms: 10 on a CPU, 75 queued
    split = states.split_time(first, last, Counter({"lock": 6, "interp": 2}))
    assert split == pytest.approx({"running": 0.010, "queued": 0.075, "lock": 0.01125, "interp": 0.00375})
    assert states.split_time(first, last, Counter()) == pytest.approx(
        {"running": 0.010, "queued": 0.075, "other": 0.015})  # blocked, but no sample saw on what
    assert states.split_time(first, (10 * ms, 6 * ms, 5 * ms), Counter()) == pytest.approx(
        {"running": 0.006, "queued": 0.005})  # counters a little ahead of the clock: never negative


def _child_with_threads_on_one_mutex(ready_w: int) -> None:
    """In a forked child: four threads take turns on one lock, each holding it for 2 ms of sleep."""
    lock = threading.Lock()

    def turn(k):
        name_thread(f"probe-{k}")
        while True:
            with lock:
                time.sleep(0.002)

    for k in range(4):
        threading.Thread(target=turn, args=(k,), daemon=True).start()
    time.sleep(0.1)
    os.write(ready_w, b"r")
    time.sleep(5)
    os._exit(0)


@needs_proc
def test_the_time_each_thread_waited_is_measured_and_shared_out_by_what_it_waited_on():
    sampler = states.ThreadStates(interval=0.002)
    counts, _ = _sample_child(_child_with_threads_on_one_mutex, 0.4, sampler)
    times = sampler.times
    # Three of four threads wait for the lock at any time; the holder sleeps: blocked all along,
    # in a lock wait or a sleep, never much on a CPU.
    assert 4 * 0.15 < sum(times.values()) < 4 * 0.5 + 0.1, times  # 0.4 s each, less a starved sampler's first sweeps
    assert times.get("lock", 0) > 0.5 * sum(times.values()), (times, counts)
    assert times.get("running", 0) < 0.2 * sum(times.values()), times
