"""The pilot: the run's own work, timed on each safe scheduler side by side, before the rest of it.

A workload that can be cut into independent *units* (the wind study's time slabs, the load
study's files) hands the pilot a ``Job``. The pilot does real work, not a rehearsal: every unit
it computes, on whichever candidate, is kept and never computed again, so what it costs is only
the slower candidates' extra time on their share.

1. The serial rate, hence the expected serial run. When the diagnosis's measured speedups alone
   favour a pool of threads, the run opens on it, and that speedup scales its rate back to serial:
   one batch first, whose rate (one-time costs in it) bounds the run's from above, then, only when
   that bound leaves the run long enough to pilot, a few more for a closer rate.
   A run that is not piloted then loses only a batch's fixed cost to it, where two units run
   serially cost it about one unit's time (2% of the wind bench's runs). Otherwise, or when that opening fails on
   this input, two units run synchronously (the first for one-time costs). A run whose expected
   length on the fastest measured candidate is too short for a pilot's cost to stay a small share
   of it (``SHORT_RUN``) is not piloted: the diagnosis's measured speedups of the candidates, with
   a process pool's start-up, choose (``choose.without_pilot``).
2. Candidates that cannot win are not tried: a LocalCluster runs the same one-thread processes
   as the processes scheduler and only adds start-up.
3. Rounds: each candidate still in play computes a fresh batch, in rotating order so that a
   noisy spell hits them alike. A batch is about ``TARGET`` of the serial run per worker (a
   single unit is too short to time on a shared machine; a parallel candidate gets twice that,
   in one task a worker), and units are weighed by their size (``Job.sizes``: a slab of one
   time step is half a slab of two). A parallel candidate's batches alternate between two sizes
   (``BATCH_STEPS``), which separate a batch's fixed cost (a task's graph sent, its results shipped
   back) from what grows with its size. Each repetition is projected to the whole run (start-up +
   the fixed cost once + the rest of its seconds per size x total size). From the second round on,
   ``choose.decide`` applies its rule and a candidate slower than the pick beyond the noise leaves
   (synchronous, most often: it is the pilot's only real cost). The pilot stops once the ranking is settled (after at least
   ``MIN_ROUNDS``), after ``MAX_ROUNDS``, or once it has done ``SHARE`` of the work.
4. A tie: when the two candidates left are within the pilot's own noise, it samples them longer
   (to ``TIE_ROUNDS`` and ``TIE_SHARE``: nearly free, since they run at about the same speed and
   every unit is kept). Still unsettled, ``choose.break_tie`` takes the one whose repetitions
   promise the least time once their spread is counted.

A candidate's library locks are held only while it is timed (``locks.only``), then the pick's.
A candidate whose batch raises is dropped, and its batch goes back to the pool: the diagnosis
called it safe (as it is, or under a verified remedy) but this input showed otherwise, and a
run must not fail for a scheduler that the run itself could still avoid. A crash ends the
process: no pilot can catch that.

The rest of the work then runs on the pick, in one compute.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from threadprobe.scheduling import choose, locks
from threadprobe.records import Choice, Cluster, PilotRow, Scheduler
from threadprobe.records.errors import one_line
from threadprobe.scheduling.schedulers import Active, activated

#: What a pilot costs beyond its pick's own run, in seconds: the median over the 16 piloted runs of
#: the wind bench on both builds (35 to 46 s of serial work, reports/bench-builds-wind.json of
#: 2026-12-07: auto x1.13 of an explicit run of its own pick), where the 14 runs not piloted cost
#: 0.05 s (x1.00). Its rounds, the synchronous batches and the pool that loses make a floor that a
#: short run cannot spread.
PILOT_COST = 3.0
#: The share of the expected run a pilot may cost: half the 5% the choice may lose to the fastest.
PILOT_SHARE = 0.025
#: Seconds of expected run (the serial work over the diagnosis's best measured speedup, the serial
#: work itself when none is measured) below which a run is not piloted: the diagnosis's measured
#: speedups choose (``choose.without_pilot``). 120 s: a run of 35 to 46 s of serial work (the wind
#: bench's, about 22 s on the pick) is not piloted; the study's own files (1.5 GB each) are.
SHORT_RUN = PILOT_COST / PILOT_SHARE
TARGET = 0.01  # of the expected serial run, per worker and batch (at least MIN_BATCH seconds)
MIN_BATCH = 0.4
PARALLEL_BATCH = 2  # a parallel candidate's batch, per worker, in sync batches: its tasks' tail matters less
#: A parallel candidate's batches alternate between these multiples of ``PARALLEL_BATCH`` (their
#: mean is 1): two sizes separate what a batch costs whatever its size from what grows with it.
#: A batch of the wind job's pays a fixed cost (its tasks' graphs sent, 50 MB of sums a task
#: allocated and shipped back): 0.53 s on 2 forked processes and 0.05 s on 2 threads, where a unit
#: costs 0.13 and 0.15 s (reports/bench-pilot-batch.json: 8 netCDF pairs, batches of 2, 4 and 8
#: units). Scaled from one batch size, as if it grew with the work, it projected processes at 28.6
#: to 30.1 s where they ran 18.9 s. The whole run pays it once.
BATCH_STEPS = (0.5, 1.5)
SIZES_APART = 1.5  # the least ratio of two batch sizes that a fixed cost is drawn from
FIXED_AT_MOST = 0.75  # of a candidate's quickest batch
SHARE = 0.25  # rounds beyond the third stop once the pilot has done this share of the work
MAX_ROUNDS = 6
#: Two leaders within the noise: sampling them longer costs little (they run at about the same
#: speed, and every unit is kept), so a tie may go on to these many rounds and this share.
TIE_ROUNDS = 12
TIE_SHARE = 0.5
#: The opening on threads. Its first batch, ``OPENING_FIRST`` units a worker in one task each,
#: bounds the run's rate from above: it pays one-time costs, and a pool of threads started fresh
#: runs slow for several batches (the wind job, a unit a thread: 0.20, 0.15, 0.15, 0.11, 0.10 and
#: 0.09 s a unit on the PP bench data, 0.28, 0.19, 0.15 and 0.14 s on netCDF). A run that bound
#: leaves too short to pilot goes on at once. Any other takes batches of one unit a worker, up to
#: ``OPENING_BATCHES``, and the quickest: one batch of one unit a worker put the netCDF data's serial
#: work at 58 to 78 s where it is 38 s. Each batch has a fixed cost (a task's 50 MB of sums
#: allocated and added up): five of them cost the wind bench's runs 0.6 to 0.8 s beyond the
#: units' own time, more than the two serial units they replaced.
OPENING_FIRST = 2
OPENING_BATCHES = 5
MIN_ROUNDS = 3  # the least repetitions the rule needs to see a 1.8x gain through 15% noise (tests/scheduling/test_choose.py)


class Job(Protocol):
    """Work cut into independent units; ``run`` computes some of them on an active scheduler, in
    ``tasks`` tasks, and keeps their results once all of them are computed (a call that raises
    keeps none: the pilot computes them again elsewhere). A job may say how big each unit is
    (``sizes``), and states its input's shape of work (``signature``), which keys the choice cache."""

    units: int

    def run(self, active: Active, units: Sequence[int], tasks: int) -> None: ...

    def signature(self, fmt: str | None) -> dict[str, object]: ...


@dataclass
class Pilot:
    """What the pilot did: its pick, its table, the units it already computed, what it cost."""

    choice: Choice
    rows: list[PilotRow] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    seconds: float = 0.0  # wall time spent in the pilot
    cost: float = 0.0  # of that, what running those units on the pick would not have cost
    serial_estimate: float | None = None
    why: tuple[str, ...] = ()


#: What deciding a run's scheduler gives: the choice, the scheduler to run the rest on (entered on
#: the caller's exit stack), and the pilot when one ran (its units are done).
Decision = tuple[Choice, Active, Pilot | None]
#: How a run gets its scheduler, given its job and the exit stack the scheduler lives on.
Decider = Callable[[Job, contextlib.ExitStack], Decision]


def _parallelism(c: Choice) -> int:
    return max(1, c.n_workers * c.threads_per_worker)


def _tasks(c: Choice, units: int) -> int:
    """One task a worker: a task has a fixed cost (its sums, 50 MB for the wind study, allocated,
    returned and added up), and tasks of one unit each ran threads 20% slower than the whole run
    does; equal units split evenly leave little tail."""
    return 1 if _parallelism(c) == 1 else min(units, _parallelism(c))


def _give_back(pool: _Pool, batch: list[int], pilot: Pilot, key: str, exc: Exception, where: str) -> str:
    """A candidate's batch raised on this input: its units back in the pool, the drop in the
    pilot's rationale. Returns what it raised, in one line."""
    pool.left[:0] = batch
    raised = f"{type(exc).__name__}: {one_line(exc, 200)}"
    pilot.why += (f"dropped: {key} failed on this input in {where} ({raised}), although the diagnosis called it safe",)
    return raised


class _Pool:
    """The job's units not computed yet, their sizes, and the schedulers entered so far."""

    def __init__(self, job: Job, stack: contextlib.ExitStack) -> None:
        self.job, self.stack = job, stack
        self.sizes = list(getattr(job, "sizes", None) or [1.0] * job.units)
        self.total = float(sum(self.sizes))
        self.left = list(range(job.units))
        self.actives: dict[str, Active] = {}

    def size(self, units: Sequence[int]) -> float:
        return float(sum(self.sizes[k] for k in units)) or 1.0

    def active(self, c: Choice) -> Active:
        key = choose.label(c)
        if key not in self.actives:
            self.actives[key] = self.stack.enter_context(activated(c))
        return self.actives[key]

    def take(self, amount: float) -> list[int]:
        """Units from the front of the pool, about ``amount`` in size, at least one."""
        taken: list[int] = []
        held = 0.0
        while self.left and (not taken or held + self.sizes[self.left[0]] / 2 <= amount):
            held += self.sizes[self.left[0]]
            taken.append(self.left.pop(0))
        return taken

    def close_losers(self, pick: str) -> None:
        for key, here in list(self.actives.items()):
            if key != pick and here.client is not None:
                here.client.close()  # a cluster that lost: its workers can go now


def _worth_trying(pilot: Pilot, found: Sequence[Choice]) -> list[Choice]:
    """The parallel candidates that can win (step 2)."""
    parallel = list(found[1:])
    present = {c.scheduler for c in parallel}
    dropped = [c for c in parallel if c.row.shadowed_by in present and not c.address and c.row.client
               and c.cluster == Cluster.LOCAL]
    for c in dropped:
        pilot.why += (f"not tried: {choose.label(c)} on a LocalCluster runs the same workers as the "
                      f"{c.row.shadowed_by} scheduler and only adds its start-up",)
    return [c for c in parallel if c not in dropped]


@dataclass
class _Rounds:
    """The timed repetitions of each candidate (step 3): seconds and size per batch, start-ups."""

    tried: list[Choice]
    total: float
    seconds: dict[str, list[float]] = field(default_factory=dict)
    amount: dict[str, list[float]] = field(default_factory=dict)
    startup: dict[str, float] = field(default_factory=dict)
    played: int = 0
    dropped: dict[str, str] = field(default_factory=dict)  # candidate: what its failed batch raised

    def fixed(self, key: str) -> float:
        """``key``'s fixed cost a batch (``fixed_cost``)."""
        return fixed_cost(self.seconds[key], self.amount[key])

    def rows(self) -> list[PilotRow]:
        return [_row(key, self.seconds[key], self.amount[key], self.startup.get(key, 0.0), self.fixed(key), self.total)
                for key in map(choose.label, self.tried) if self.seconds.get(key) and key not in self.dropped]

    def play(self, pool: _Pool, playing: list[Choice], per_worker: float, pilot: Pilot) -> None:
        """One round: a fresh batch per candidate still in play, in rotating order."""
        self.played += 1
        turn = self.played % len(playing)
        for c in playing[turn:] + playing[:turn]:
            key, here = choose.label(c), pool.active(c)
            self.startup.setdefault(key, here.started)
            workers = _parallelism(c)
            step = PARALLEL_BATCH * BATCH_STEPS[(self.played - 1) % len(BATCH_STEPS)] if workers > 1 else 1
            batch = pool.take(per_worker * workers * step)
            if not batch:
                break
            locks.only(c)  # its library locks held, no other candidate's
            t0 = time.perf_counter()
            try:
                pool.job.run(here, batch, _tasks(c, len(batch)))
            except Exception as exc:  # noqa: BLE001 - whatever the candidate raised, it is out
                if c.scheduler == Scheduler.SYNCHRONOUS:
                    raise  # the serial run fails too: the input's fault, not a scheduler's
                self.drop(key, exc, batch, pool, pilot)
                continue
            self.seconds.setdefault(key, []).append(time.perf_counter() - t0)
            self.amount.setdefault(key, []).append(pool.size(batch))
            pilot.done += batch

    def drop(self, key: str, exc: Exception, batch: list[int], pool: _Pool, pilot: Pilot) -> None:
        """``key`` failed on this input: out of the pilot, its batch back in the pool."""
        self.dropped[key] = _give_back(pool, batch, pilot, key, exc, "the pilot")

    def in_play(self, playing: list[Choice]) -> list[Choice]:
        return [c for c in playing if choose.label(c) not in self.dropped]

    def still_in_play(self, playing: list[Choice], note: Callable[[str], None]) -> list[Choice] | None:
        """Who stays after this round; None when the ranking is settled."""
        rows = self.rows()
        pick_row, settled, _ = choose.decide(rows)
        note(f"pilot round {self.played}: " + ", ".join(
            f"{r.candidate} {statistics.median(r.projected):.1f}s" for r in rows))
        if settled and self.played >= MIN_ROUNDS:
            return None
        # A candidate slower beyond the noise leaves at once (two repetitions can show a 2x gap).
        keep = {r.candidate for r in rows if r is pick_row or not choose.clearly_slower(r, pick_row)}
        return [c for c in playing if choose.label(c) in keep]


def run_pilot(job: Job, found: Sequence[Choice], stack: contextlib.ExitStack,
              note: Callable[[str], None] = lambda text: None, share: float = SHARE,
              measured: Sequence[choose.Estimate] = ()) -> tuple[Pilot, Active]:
    """Pilot ``job`` on the candidates ``found`` (synchronous first). Returns the pilot and the
    pick's active scheduler (entered on ``stack``, so that the rest of the run uses it). A run too
    short to pilot takes the fastest candidate by the diagnosis's speedups (``measured``:
    ``choose.estimates``)."""
    began = time.perf_counter()
    sync = found[0]
    assert sync.scheduler == Scheduler.SYNCHRONOUS
    pool = _Pool(job, stack)
    pilot = Pilot(sync)
    found = list(found)
    serial = _open_on_threads(pool, found, measured, pilot, lambda work: _too_short(work, measured))
    if serial is None:
        serial = _open_serially(pool, sync, pilot)
    per_size = serial / pool.total
    pilot.serial_estimate = serial
    parallel = _worth_trying(pilot, found)
    if not parallel or not pool.left or _too_short(serial, measured):
        pick, why = (sync, ()) if not parallel else choose.without_pilot(found, measured, serial)
        pilot.choice = pick
        pilot.why += (_not_piloted(parallel, pool, serial, measured), *why)
        pilot.seconds = time.perf_counter() - began
        active = pool.active(pick)
        locks.only(pick)  # its locks alone, whichever candidate opened the run
        return pilot, active
    rounds = _Rounds([sync] + parallel, pool.total)
    per_worker = max(MIN_BATCH, TARGET * serial) / max(per_size, 1e-9)  # in size
    playing: list[Choice] | None = list(rounds.tried)
    while playing and pool.left and _more(rounds.played, len(playing), pool.size(pilot.done) / pool.total, share):
        rounds.play(pool, playing, per_worker, pilot)
        playing = rounds.in_play(playing)
        if len(playing) < 2:
            break
        if rounds.played >= 2:
            playing = rounds.still_in_play(playing, note)
            playing = playing if playing is None or len(playing) > 1 else None
    done = _conclude(pilot, rounds, pool, began)
    locks.only(done.choice)
    return done, pool.active(done.choice)


def _too_short(serial: float, measured: Sequence[choose.Estimate]) -> bool:
    """A run of ``serial`` seconds of serial work too short for a pilot to pay (``SHORT_RUN``)."""
    return expected_run(serial, measured) < SHORT_RUN


def _not_piloted(parallel: Sequence[Choice], pool: _Pool, serial: float, measured: Sequence[choose.Estimate]) -> str:
    """Why a run is not piloted, in one line."""
    if not parallel:
        return "no concurrent scheduler is safe here: synchronous"
    if not pool.left:
        return f"not piloted: its {pool.job.units} units all ran while the serial rate was measured"
    return (f"not piloted: about {serial:.1f} s of serial work, a run of about {expected_run(serial, measured):.1f} s "
            f"on the fastest measured candidate, too short for a pilot's {PILOT_COST:.0f} s to stay under "
            f"{PILOT_SHARE:.1%} of it (under {SHORT_RUN:.0f} s)")


def _opening(found: Sequence[Choice], measured: Sequence[choose.Estimate]) -> tuple[Choice, float] | None:
    """The pool of threads the diagnosis's speedups alone pick, with its measured speedup (None:
    they pick another candidate, or measured none)."""
    if not measured:
        return None
    pick, _ = choose.without_pilot(found, measured)
    speedup = choose.speedup_of(pick, measured)
    if pick.scheduler != Scheduler.THREADS or _parallelism(pick) < 2 or not speedup:
        return None
    return pick, speedup


def _open_on_threads(pool: _Pool, found: list[Choice], measured: Sequence[choose.Estimate], pilot: Pilot,
                     short: Callable[[float], bool]) -> float | None:
    """Step 1 on the threads the speedups favour: a batch of ``OPENING_FIRST`` units a worker, whose
    rate (one-time costs and a fresh pool's slow start in it) bounds the run's from above; when
    even that bound makes a run ``short`` (too short to pilot), the rest runs on them at once.
    Otherwise more batches of one unit a worker, to ``OPENING_BATCHES``: the quickest rate times
    the measured speedup is the serial work. None, with the failed batch back in the pool, when
    there is no such candidate or a batch raised (then it leaves ``found``: this input showed it
    unsafe, as a pilot's dropped candidate)."""
    opening = _opening(found, measured)
    if opening is None:
        return None
    c, speedup = opening
    here, key = pool.active(c), choose.label(c)
    locks.only(c)
    per_batch = _parallelism(c) * pool.total / max(1, pool.job.units)
    rates: list[float] = []
    serial: float | None = None
    while pool.left and len(rates) < OPENING_BATCHES and not (serial is not None and short(serial)):
        batch = pool.take(per_batch * (1 if rates else OPENING_FIRST))
        t0 = time.perf_counter()
        try:
            pool.job.run(here, batch, _tasks(c, len(batch)))
        except Exception as exc:  # noqa: BLE001 - whatever it raised, the serial opening decides
            _give_back(pool, batch, pilot, key, exc, "its opening batch")
            found.remove(c)
            return None
        rates.append((time.perf_counter() - t0) / pool.size(batch))
        pilot.done += batch
        serial = min(rates) * speedup * pool.total
    pilot.why += (f"opened on {key}: {len(pilot.done)} units in {len(rates)} batch(es), the serial work estimated "
                  f"from the quickest and its measured x{speedup:.2f}",)
    return serial


def _open_serially(pool: _Pool, sync: Choice, pilot: Pilot) -> float:
    """Step 1 synchronously: one unit for one-time costs (imports, opening files), one timed."""
    locks.only(sync)
    first = pool.take(0)
    pool.job.run(pool.active(sync), first, 1)
    second = pool.take(0)
    t0 = time.perf_counter()
    pool.job.run(pool.active(sync), second, 1)
    pilot.done += first + second
    return (time.perf_counter() - t0) / pool.size(second) * pool.total


def expected_run(serial: float, measured: Sequence[choose.Estimate] = ()) -> float:
    """The run's expected seconds on the fastest candidate the diagnosis measured (``serial`` when
    none is measured: then only a pilot can tell, and it is given every chance to run)."""
    runs = [t for e in measured if (t := e.seconds(serial)) is not None]
    return min(runs, default=serial)


def _more(played: int, playing: int, done: float, share: float) -> bool:
    """Another round? At least ``MIN_ROUNDS``; then up to ``MAX_ROUNDS`` and ``share`` of the work,
    or, when two leaders are left within the noise, up to ``TIE_ROUNDS`` and ``TIE_SHARE``."""
    if played < MIN_ROUNDS:
        return True
    if playing == 2:
        return played < TIE_ROUNDS and done < max(share, TIE_SHARE)
    return played < MAX_ROUNDS and done < share


def _conclude(pilot: Pilot, rounds: _Rounds, pool: _Pool, began: float) -> Pilot:
    """The pick, its table and why, and what the pilot cost beyond running its units on the pick."""
    rows = rounds.rows()  # never empty: synchronous plays last in the first round, after any drop
    pick_row, settled, why = choose.decide(rows)
    if not settled:
        pick_row, tie = choose.break_tie(rows, pick_row)
        why += tie
    pilot.why += why + ((f"settled after {rounds.played} rounds",) if settled else (
        f"not settled after {rounds.played} rounds ({pool.size(pilot.done) / pool.total:.0%} of the work)",))
    pilot.choice = next(c for c in rounds.tried if choose.label(c) == pick_row.candidate)
    pilot.rows = rows
    pilot.seconds = time.perf_counter() - began
    key = pick_row.candidate
    fixed = rounds.fixed(key)
    rate = statistics.median((s - fixed) / a for s, a in zip(rounds.seconds[key], rounds.amount[key]))
    pilot.cost = max(0.0, pilot.seconds - fixed - rate * pool.size(pilot.done))
    for row in rows:
        if (f := rounds.fixed(row.candidate)) > 0:
            pilot.why += (f"a batch's fixed cost on {row.candidate}: {f:.2f} s (from batches of two sizes), counted "
                          "once in its projected run",)
    pool.close_losers(key)
    return pilot


def fixed_cost(seconds: Sequence[float], amount: Sequence[float]) -> float:
    """What each of a candidate's batches cost whatever its size: the intercept of the line
    through the median time of its smallest and of its largest batches (0 when all its batches
    were one size, or when the noise puts the line through or below the origin), never more than
    ``FIXED_AT_MOST`` of its quickest batch (a noisy line must leave every batch some work to scale)."""
    sizes = sorted(set(amount))
    if len(sizes) < 2 or sizes[-1] < SIZES_APART * sizes[0]:
        return 0.0  # one size, or sizes that differ by a unit's weight: no line to draw
    small, large = sizes[0], sizes[-1]
    t_small = statistics.median(s for s, a in zip(seconds, amount) if a == small)
    t_large = statistics.median(s for s, a in zip(seconds, amount) if a == large)
    per_size = (t_large - t_small) / (large - small)
    if per_size <= 0:
        return 0.0
    return max(0.0, min(t_small - per_size * small, FIXED_AT_MOST * min(seconds)))


def _row(key: str, seconds: Sequence[float], amount: Sequence[float], startup: float, fixed: float,
         total: float) -> PilotRow:
    """Each repetition projected to the whole run: start-up, the fixed cost of a batch once, and
    the rest of the batch's time scaled by size."""
    projected = tuple(round(startup + fixed + (s - fixed) / max(a, 1e-9) * total, 3) for s, a in zip(seconds, amount))
    return PilotRow(key, tuple(round(s, 4) for s in seconds), round(startup, 3), projected)


def _table(rows: Sequence[PilotRow]) -> list[str]:
    """Candidates, their repetitions, start-up and projected run: one line each, with a header."""
    if not rows:
        return []
    lines = [f"{'candidate':22s} {'repetitions (s)':34s} {'start-up':>8s} {'projected run':>14s}"]
    for row in rows:
        reps = ", ".join(f"{s:.2f}" for s in row.seconds[:6])
        lines.append(f"{row.candidate:22s} {reps:34s} {row.startup:7.2f}s "
                     f"{statistics.median(row.projected or row.seconds):13.1f}s")
    return lines


def rows_table(choice: Choice) -> list[str]:
    """A choice's pilot table (when it has one) and its rationale."""
    return _table(choice.pilot) + list(choice.rationale)


def table(pilot: Pilot) -> list[str]:
    """The pilot's table and rule, for a log or a terminal."""
    if not pilot.rows:
        return list(pilot.why)
    lines = _table(pilot.rows) + list(pilot.why)
    lines.append(f"pilot: {pilot.seconds:.1f} s on {len(pilot.done)} units, of which {pilot.cost:.1f} s "
                 "beyond what the pick would have taken")
    return lines
