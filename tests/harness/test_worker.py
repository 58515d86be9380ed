"""One worker's share of a trial, run in-process: dealing, digests, errors, read-back, remedies."""

import json
import os
import threading
import time

from hypothesis import given
from hypothesis import strategies as st

from threadprobe.harness.worker import indices_for, run_together, run_worker
from threadprobe.probe import PURPOSE_ENV, Probe, digest, in_race_pass, in_timing_trial
from threadprobe.records import Purpose, Remedy, RemedyKind, Stage, Trial, WorkerReport


def spec(*args, **kwargs):
    """A trial as the worker receives it (the child parses its spec into the record)."""
    return Trial(*args, **kwargs)


@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 200))
def test_every_index_is_dealt_exactly_once(processes, threads, iterations):
    trial = spec("p", "r", "threads", processes, threads, iterations)
    dealt = [i for w in range(processes) for t in range(threads) for i in indices_for(trial, w, t)]
    assert sorted(dealt) == list(range(iterations))


class Square(Probe):
    name = "t.square"
    dependency = "python"

    def task(self, ctx, i):
        if i == 13:
            raise ValueError("unlucky")
        return i * i


def test_threads_start_together_not_one_after_another():
    # Each body keeps its CPU busy for 200 ms: threads started one after the other would start
    # 200 ms apart; started together, within a switch interval or two (5 ms each), plus what a
    # busy machine adds (12 ms seen beside a second test worker, hence 40 ms).
    starts = {}

    def body(t):
        starts[t] = time.perf_counter()
        until = starts[t] + 0.2
        while time.perf_counter() < until:
            pass

    spreads = []
    for _ in range(5):
        starts.clear()
        run_together(2, body, switch_interval=0.005)
        spreads.append(max(starts.values()) - min(starts.values()))
    assert sorted(spreads)[3] < 0.04, spreads  # 4 of 5 within 40 ms, a fifth of one-after-another


def test_random_start_delays_spread_the_starts():
    starts = {}
    run_together(4, lambda t: starts.__setitem__(t, time.perf_counter()), switch_interval=1e-6, jitter=0.02)
    assert max(starts.values()) - min(starts.values()) > 0.002


def test_every_result_is_digested_and_errors_keep_their_traceback():
    trial = spec("p", "r", "threads", 1, 4, 40)
    report = run_worker(Square(), trial, 0, None)
    assert report.tasks == 40
    assert report.digests["7"] == digest(49)
    assert "13" not in report.digests
    (err,) = report.errors
    assert err.stage == Stage.TASK and err.index == 13 and err.error_type == "ValueError"
    assert "unlucky" in (err.traceback or "")
    assert report.cpu is not None and report.t_end >= report.t_start
    assert WorkerReport.parse(json.dumps(report.to_json())) == report  # as the parent reads it


class Purposeful(Probe):
    name = "t.purposeful"
    dependency = "python"

    def open(self, workdir):
        return in_timing_trial(), in_race_pass()

    def task(self, ctx, i):
        return (ctx, in_timing_trial(), in_race_pass())


def test_the_probe_sees_the_trials_purpose_in_open_and_tasks_and_the_environment_is_restored(monkeypatch):
    monkeypatch.delenv(PURPOSE_ENV, raising=False)
    seen = {purpose: set(run_worker(Purposeful(), spec("p", "r", "threads", 1, 2, 4, purpose=purpose), 0,
                                    None).digests.values())
            for purpose in (Purpose.TIMING, Purpose.RACES, Purpose.STRESS)}
    assert seen[Purpose.TIMING] == {digest(((True, False), True, False))}
    assert seen[Purpose.RACES] == {digest(((False, True), False, True))}  # the race pass's smaller inputs
    assert seen[Purpose.STRESS] == {digest(((False, False), False, False))}
    assert PURPOSE_ENV not in os.environ


class SlowFirstCall(Probe):
    """Its first call in each thread takes 0.3 s (a fresh worker's first-touch costs), the rest 1 ms."""

    name = "t.slow_first"
    dependency = "python"

    def open(self, workdir):
        return threading.local()

    def task(self, ctx, i):
        time.sleep(0.001 if getattr(ctx, "warm", False) else 0.3)
        ctx.warm = True
        return i


def test_a_timing_trial_warms_each_thread_untimed_and_a_stress_trial_does_not():
    timing = run_worker(SlowFirstCall(), spec("p", "r", "threads", 1, 2, 8, purpose=Purpose.TIMING), 0, None)
    stress = run_worker(SlowFirstCall(), spec("p", "r", "threads", 1, 2, 8, purpose=Purpose.STRESS), 0, None)
    assert timing.tasks == stress.tasks == 8  # the warm-up call is not counted
    assert timing.t_end - timing.t_start < 0.2 <= stress.t_end - stress.t_start
    assert timing.digests == stress.digests == {str(i): digest(i) for i in range(8)}  # and its result checked


class Writer(Probe):
    name = "t.writer"
    dependency = "python"

    def open(self, workdir):
        return {"store": {}, "threads": set()}

    def task(self, ctx, i):
        ctx["threads"].add(threading.get_ident())
        ctx["store"][i] = str(i)
        return i

    def readback(self, ctx, i, value):
        assert threading.current_thread() is threading.main_thread()  # serially, after the threads
        return ctx["store"][value] + "!"


def test_readback_runs_serially_and_its_value_is_what_gets_digested():
    report = run_worker(Writer(), spec("p", "r", "threads", 1, 3, 9), 0, None)
    assert report.digests == {str(i): digest(f"{i}!") for i in range(9)}


class Flaky(Probe):
    """Returns a different value the second time an index comes round."""

    name = "t.flaky"
    dependency = "python"

    def open(self, workdir):
        return {}

    def task(self, seen, i):
        seen[i] = seen.get(i, 0) + 1
        return i if seen[i] == 1 else -i


def test_a_later_round_that_deviates_is_what_the_parent_sees():
    report = run_worker(Flaky(), spec("p", "r", "serial", 1, 1, 5, rounds=3), 0, None)
    assert report.tasks == 15
    assert report.digests["3"] == digest(-3)


class Overlap(Probe):
    """Counts how many threads are inside task at once."""

    name = "t.overlap"
    dependency = "python"

    def open(self, workdir):
        return {"inside": 0, "most": 0, "lock": threading.Lock()}

    def task(self, ctx, i):
        import time

        with ctx["lock"]:
            ctx["inside"] += 1
            ctx["most"] = max(ctx["most"], ctx["inside"])
        time.sleep(0.002)
        with ctx["lock"]:
            ctx["inside"] -= 1
        return i


def test_the_global_lock_remedy_serializes_every_task():
    probe = Overlap()
    free = {}
    locked = {}
    probe.open = lambda workdir: free.setdefault("ctx", Overlap.open(probe, workdir))
    run_worker(probe, spec("p", "r", "threads", 1, 4, 40), 0, None)
    probe.open = lambda workdir: locked.setdefault("ctx", Overlap.open(probe, workdir))
    run_worker(probe, spec("p", "r", "threads", 1, 4, 40, remedy=Remedy(RemedyKind.GLOBAL_LOCK)), 0, None)
    assert free["ctx"]["most"] > 1
    assert locked["ctx"]["most"] == 1


class BrokenOpen(Probe):
    name = "t.broken"
    dependency = "python"

    def open(self, workdir):
        raise OSError("no such file: in.nc")


def test_an_error_in_open_is_reported_and_no_task_runs():
    calls = []
    report = run_worker(BrokenOpen(), spec("p", "r", "threads", 1, 2, 10), 0, None, ready=lambda: calls.append(1))
    assert calls == [1]  # the parent's barrier must not wait for this worker
    assert report.errors[0].stage == Stage.OPEN and report.tasks == 0


class Message(Probe):
    """Returns an exception: its message is part of the result, and of the full digest only."""

    name = "t.message"
    dependency = "python"

    def task(self, ctx, i):
        return ("error", ValueError(f"message {i}")) if i % 2 else i


def test_results_with_exceptions_also_carry_a_digest_without_their_messages():
    report = run_worker(Message(), spec("p", "r", "serial", 1, 1, 4), 0, None)
    assert set(report.data_digests) == {"1", "3"}
    assert report.data_digests["1"] == digest(("error", ValueError("anything else")), messages=False)
    assert report.digests["1"] != report.data_digests["1"]


def test_a_missing_module_in_open_names_it():
    class NeedsIt(Probe):
        name = "t.needs"
        dependency = "label-only"

        def open(self, workdir):
            import no_such_module_for_threadprobe  # noqa: F401

    report = run_worker(NeedsIt(), spec("p", "r", "serial", 1, 1, 4), 0, None)
    assert report.errors[0].missing == "no_such_module_for_threadprobe"
