"""The race pass: each probe's concurrent work once under a happens-before race detector.

A stress trial can only say that no trial *happened* to fail; a race detector says whether two
threads touched the same memory with nothing ordering them, whether or not that run's timing made
them collide. So the pass is one more kind of trial (``Purpose.RACES``), run through the same
harness and worker side as every other trial, but under ``valgrind --tool=helgrind`` (or DRD):

- **Cost.** Importing Iris under helgrind takes minutes, so the pass keeps fork servers under the
  detector that import the probes' libraries once, and each probe's trial is a fork of one (a
  forked child stays under valgrind, with an XML report of its own). ``servers`` starts a light
  one for the probes that import little, whose passes run while the heavy one imports Iris, and
  lends both to every lane. valgrind runs one thread at a time, so the pass runs one lane per core.
- **Order.** Within a budget, probes go in order of what a pass settles per second: a probe whose
  concurrent cells are clean first (only a pass can say more there), then failing ones (a pass
  names the racing code), cheapest first within each. Without one, the longest go first within
  each, so that both lanes end at about the same time.
- **Size.** A pass is time-boxed: each thread stops taking calls after the box, the user's
  ``--race-seconds``, else the probe's own ``race_seconds``, else ten seconds (``box_for``), and
  the pass states its power from the calls it made. Its workers see their trial's purpose
  (``Purpose.RACES``, ``threadprobe.probe.in_race_pass``): a probe
  whose calls take tens of seconds under the detector reads a smaller input of the same layout
  there (the pass needs calls that overlap in the same native code, not big data).
- **Verdicts** are ``records.with_races``'s: a clean cell with race pairs becomes ``racy``.

Probes are prepared (their input files written) natively, before the pass.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from threadprobe.diagnosis import detect
from threadprobe.diagnosis.races import parse as races
from threadprobe.diagnosis.races import servers
from threadprobe.probe import registry
from threadprobe.diagnosis.diagnose import Diagnoser, ProbeRun, safe_name
from threadprobe.diagnosis.options import Options, RaceOptions
from threadprobe.harness import launch, proc, trial as harness
from threadprobe.diagnosis.plan import SERIAL, Request
from threadprobe.harness.valgrind import ENV, READY_TIMEOUT, Detector, shim
from threadprobe.records import (GilState, Kind, Mode, Purpose, RacePass, RaceSchedule, RaceStatus, RaceTool, Result, Safety, Trial,
                                 TrialRun, is_failing, is_unavailable, verdict_of, with_races)

#: Calls per probe when the probe names none (``race_calls``); ``RaceOptions.seconds`` of calls cap
#: them. Under the GIL two calls are unordered only while both threads have released it; the
#: scheduling shim (harness/overlap.c) makes them meet, and counts the calls that did, which is
#: what a clean pass states as its power. A netCDF4 call takes about half a second under
#: helgrind, so the time cap decides for the real libraries (tests/bench/races.py, part power).
DEFAULT_CALLS = 2000
#: Threads per pass: with two, at most one pair of calls overlaps per call; with eight, about four
#: (measured: 4.4 per call on the planted probes). A probe whose first round of calls would not
#: fit in the time box (each thread makes one call before it can stop) gets fewer, at least two.
MAX_THREADS = 8
#: The GIL hands over at every chance: valgrind runs one thread at a time, and two calls into the
#: library overlap (and so can race unordered) only when a thread switch falls inside one. At
#: CPython's default 5 ms, helgrind saw no race in 40 calls of the planted race on every call;
#: at 1 us it did (measured with the harness's own start barrier).
SWITCH_INTERVAL = 1e-6
#: How many times slower a call runs under helgrind than natively, to give a slow probe fewer
#: threads. Measured in ``make races`` (a lane's seconds per call, over the serial oracle's native
#: seconds per call; a busy 2-core machine, 2026-12-07): 84 to 1,192, median about 390, and Iris's
#: calls at 270 to 680. The earlier 60 gave Iris probes 5 to 8 threads whose first calls alone took
#: 35 to 85 s a probe, past the 10 s time box, for 5 to 8 unordered calls.
SLOWDOWN = 200.0
#: The time box when neither the user nor the probe chose one (``box_for``).
DEFAULT_SECONDS = RaceOptions.seconds


def calls_for(cls: type, options: RaceOptions) -> int:
    return options.calls or getattr(cls, "race_calls", None) or DEFAULT_CALLS


def box_for(run: ProbeRun, options: RaceOptions) -> float:
    """A pass's time box: the user's ``--race-seconds`` when it is not the default, else the
    probe's own ``race_seconds`` when it declares one (what its calls need: a probe whose pass
    cannot see much more in more seconds asks for fewer), else the default. The pass states its
    power from the calls it made, whatever the box."""
    if options.seconds != DEFAULT_SECONDS:
        return options.seconds
    info = getattr(run, "info", None)  # a ProbeRun; the tests' stand-ins may have none
    declared = getattr(registry.load(info.ref), "race_seconds", None) if info is not None else None
    return float(declared) if declared else options.seconds


def priority(run: ProbeRun, results: Sequence[Result], options: RaceOptions = RaceOptions()) -> tuple[int, float]:
    """Sort key, lowest first: clean concurrent cells (or none diagnosed) before failing ones,
    then by the pass's expected seconds: cheapest first within a budget (the most settled per
    second), else longest first, so that the lanes end together (the last probe taken is short)."""
    mine = [r for r in results if r.probe == run.name and r.mode != Mode.SERIAL]
    failing = any(is_failing(r.verdict) for r in mine)
    cost = expected_seconds(run, options)
    return (1 if failing else 0, cost if options.budget is not None else -cost)


def expected_seconds(run: ProbeRun, options: RaceOptions) -> float:
    """A pass's seconds of calls, roughly: the time box, or one round of calls when that is longer
    (each thread makes a call before it may stop); the time box when the probe was not timed."""
    box, cost = box_for(run, options), per_call(run)
    return box if cost is None else max(box, threads_for(run, options) * cost)


def per_call(run: ProbeRun) -> float | None:
    """A call's seconds under the detector, estimated from the probe's serial oracle."""
    seconds = [o.seconds / max(o.tasks, 1) for o in run.outcomes(SERIAL) if o.seconds]
    return min(seconds) * SLOWDOWN if seconds else None


def threads_for(run: ProbeRun, options: RaceOptions) -> int:
    """The user's threads, else as many as fit one round of calls in the time box (2 to MAX_THREADS)."""
    if options.threads is not None:
        return options.threads
    cost = per_call(run)
    return MAX_THREADS if not cost else max(2, min(MAX_THREADS, int(box_for(run, options) / cost)))


def race_trial(run: ProbeRun, calls: int, options: RaceOptions, index: int) -> Trial:
    return Trial(probe=run.name, ref=run.info.ref, mode=Mode.THREADS, processes=1, threads=threads_for(run, options),
                 iterations=calls, index=index, rounds=1, timeout=options.timeout, switch_interval=SWITCH_INTERVAL,
                 purpose=Purpose.RACES, deadline=box_for(run, options))


def race_env(options: Options) -> dict[str, str]:
    """The detector's environment for the interpreter under test. A free-threaded build refuses
    ``PYTHONMALLOC=malloc`` ("unknown allocator"): it keeps mimalloc, whose reports the parser
    attributes to the interpreter."""
    env = {**ENV, **options.child_env()}
    if proc.free_threaded(options.launch.python):
        env.pop("PYTHONMALLOC", None)
    return env


def failure_of(got: TrialRun, tool: RaceTool) -> str | None:
    """Why a pass did not run to the end, in one line (None when it did)."""
    if got.harness_error:
        return f"the worker could not start under {tool}: {got.harness_error}"
    if got.hung:
        return f"no progress for {got.trial.timeout:g}s under {tool} (a timeout)"
    for w in got.workers:
        if w.signal is not None:
            hint = " (an instruction valgrind cannot run?)" if w.signal == "SIGILL" else ""
            return f"the worker died by {w.signal} under {tool}{hint}"
        if w.report is None:
            return f"the worker exited with code {w.returncode} under {tool} before reporting"
    return None


class Lane:
    """One lane of the pass: it forks each probe's trial from a server it borrows, one at a time."""

    def __init__(self, session: Diagnoser, options: RaceOptions,
                 built: tuple[Path | None, str] = (None, "not built")) -> None:
        self.session = session
        self.options = options
        self.shim, self.shim_note = built

    def run(self, run: ProbeRun, server: servers.Server, detector: Detector) -> RacePass:
        began = time.monotonic()
        trial = race_trial(run, calls_for(registry.load(run.info.ref), self.options), self.options, index=0)
        folder = self.session.root / "jobs" / safe_name(run.name) / f"races-{self.options.tool}"
        got = harness.run_trial(trial, server.lend(), run.workdir, folder, self.session.options.selection.plugins)
        outcome = detect.classify(got, run.oracle)
        reports = [detector.xml_of(w.pid) for w in got.workers]
        texts = [path.read_text(errors="replace") for path in reports if path.exists()]
        failure = failure_of(got, self.options.tool)
        if failure is None and not texts:
            failure = f"{self.options.tool} wrote no report"
        found = races.analyse(texts, self.options.tool, trial.threads, outcome.tasks, failure,
                              time.monotonic() - began)
        return self.with_power(found, got, detector)

    def with_power(self, found: RacePass, got: TrialRun, detector: Detector) -> RacePass:
        """The pass with what the shim counted in its workers, and the GIL they ran with."""
        counts = [detector.overlap_of(w.pid) for w in got.workers if w.pid]
        gil = [w.report.gil_enabled for w in got.workers if w.report is not None]
        gil_enabled = None if not gil or None in gil else any(gil)
        if self.shim is None or not counts or None in counts:
            note = self.shim_note if self.shim is None else "the scheduling shim counted nothing"
            return found.replace(gil_enabled=gil_enabled, power_note=note)
        _, sections, unordered, pairs = (sum(c[k] for c in counts if c) for k in range(4))
        return found.replace(schedule=self.options.schedule, sections=sections, unordered=unordered,
                             overlap_pairs=pairs, gil_enabled=gil_enabled)


def new_server(session: Diagnoser, options: RaceOptions, built: tuple[Path | None, str], preload: Sequence[str],
               name: str) -> tuple[servers.Server, Detector]:
    """A fork server under the detector with its report folder ``races/<name>``; not yet started."""
    folder = session.root / "races" / name
    folder.mkdir(parents=True, exist_ok=True)
    detector = Detector(options.tool, folder, options.suppressions, options.schedule)
    launchers = launch.Launchers(session.options.launch.start, session.options.launch.python,
                                 session.options.selection.plugins, prefix=detector.prefix(),
                                 env={**race_env(session.options), **detector.env(built[0])},
                                 ready_timeout=READY_TIMEOUT)
    return servers.Server(launchers, tuple(preload), folder), detector


def light_preload(session: Diagnoser, preloads: Sequence[Sequence[str]]) -> tuple[str, ...] | None:
    """The light server's modules (``servers.groups``), priced natively; None when there is none."""
    made = servers.groups(preloads, servers.steady_costs(session.options.launch.python, servers.shared_first(preloads)))
    return made[0] if len(made) > 1 else None


def run_races(session: Diagnoser, options: RaceOptions, results: Sequence[Result] = (),
              on_done: Callable[[str, RacePass], None] | None = None) -> dict[str, RacePass]:
    """Run the pass over the session's probes; a pass per probe name.

    The servers import under the detector (minutes, for Iris) while this thread prepares the
    probes and runs any missing serial oracle natively; then each lane takes the next probe that
    a ready server can fork (``servers.Board``), in ``priority`` order."""
    available = [run for run in session.probes if run.failed is None]
    preloads = [run.info.preload for run in available]
    lanes = max(1, min(options.lanes or min(2, os.cpu_count() or 1), len(available)))
    done: dict[str, RacePass] = {}
    guard = threading.Lock()
    began = [time.monotonic()]
    built = shim()
    # The server with every module first: every Iris probe waits for its import, and its modules
    # need no pricing. The light one's are priced natively while it imports.
    made = [new_server(session, options, built, servers.shared_first(preloads), "all")] if available else []
    detectors = {id(server): detector for server, detector in made}
    board: servers.Board[ProbeRun] = servers.Board([s for s, _ in made], lambda run: run.info.preload)

    def serve(server: servers.Server) -> None:
        server.start(options.tool)
        with guard:
            session.launchers.notes.append(
                f"race pass server {server.folder.name}: " + (server.failed or (
                    f"{options.tool} imported {len(server.preload)} modules in {server.startup:.0f}s, "
                    "once, for every lane")))
        board.wake()

    def lane_loop(n: int) -> None:
        lane = Lane(session, options, built)
        while (taken := board.take()) is not None:
            if options.budget is not None and time.monotonic() - began[0] > options.budget:
                board.stop()  # past the budget: left out, and said so by their absence
                break
            run, server = taken
            got = lane.run(run, server, detectors[id(server)]) if server.failed is None else RacePass(
                options.tool, threads_for(run, options), 0, RaceStatus.FAILED, reason=server.failed)
            with guard:
                done[run.name] = got
            if on_done is not None:
                on_done(run.name, got)

    with ThreadPoolExecutor(max_workers=lanes + 2) as pool:
        starting = [pool.submit(serve, server) for server, _ in made]
        futures = []
        try:
            try:
                light = light_preload(session, preloads) if made else None
                if light is not None:
                    made.insert(0, new_server(session, options, built, light, "light"))
                    detectors[id(made[0][0])] = made[0][1]
                    board.add_first(made[0][0])
                    starting.append(pool.submit(serve, made[0][0]))
                futures = [pool.submit(lane_loop, n) for n in range(lanes)]
                board.put(sorted(_ready(session), key=lambda run: priority(run, results, options)))
            finally:
                began[0] = time.monotonic()
                board.put([])  # no more probes, whatever happened
            for future in [*starting, *futures]:
                future.result()
        finally:  # on an error too: every server that started is closed
            for server, _ in made:
                server.close()
    return done


def _ready(session: Diagnoser) -> list[ProbeRun]:
    """Prepared probes with a serial oracle (run natively when the stress trials did not)."""
    todo = [run for run in session.probes if session.prepare(run)]
    for run in todo:
        if run.oracle is None:  # a pass alone (--no-stress): the serial oracle, to check results by
            session.trial(run, Request(run.name, SERIAL, Purpose.ORACLE))
    return [run for run in todo if run.failed is None]


def cell_for(results: Sequence[Result], probe: str, threads: int, state: GilState = GilState.AS_IMPORTED) -> int | None:
    """Where a pass of ``threads`` threads in GIL state ``state`` joins: its probe's threads cell of
    that state and width, else that state's widest threads cell (a race between two threads is there
    whatever the width), else none."""
    cells = [(r.threads == threads, r.threads, k) for k, r in enumerate(results) if r.probe == probe
             and r.mode == Mode.THREADS and r.processes == 1 and r.remedy is None and r.gil == state
             and not is_unavailable(r.verdict)]
    return max(cells)[2] if cells else None


def attach(results: Sequence[Result], passes: dict[str, RacePass], dependencies: dict[str, str],
           state: GilState = GilState.AS_IMPORTED) -> list[Result]:
    """Pure: each pass, run in GIL state ``state``, joins its probe's threads cell of that state
    (``cell_for``; a cell of its own when the diagnosis has none: a pass alone, ``--no-stress``),
    through ``records.with_races``."""
    out = list(results)
    for probe, found in passes.items():
        at = cell_for(out, probe, found.threads, state)
        if at is not None:
            out[at] = with_races(out[at], found)
            continue
        if any(r.probe == probe and is_unavailable(r.verdict) for r in out):
            continue
        out.append(with_races(Result(
            probe=probe, dependency=dependencies.get(probe, ""), mode=Mode.THREADS, workers=found.threads, processes=1,
            threads=found.threads, trials=0, verdict=verdict_of(Kind.OK), safety=Safety({k: 0 for k in Kind}, 1.0),
            seconds=found.seconds, gil=state), found))
    return out
