"""The pilot: the run's own work, timed on each safe scheduler side by side, before the rest of it.

A workload that can be cut into independent *units* (the wind study's time slabs, the load
study's files) hands the pilot a ``Job``. The pilot does real work, not a rehearsal: every unit
it computes, on whichever candidate, is kept and never computed again, so what it costs is only
the slower candidates' extra time on their share.

1. Two units, synchronously (the first also pays one-time costs): the serial rate, hence the
   expected serial run. A run too short to gain from parallelism by more than a pilot would
   cost (``SHORT_RUN``) is not piloted.
2. Candidates that cannot win are not tried: a LocalCluster runs the same one-thread processes
   as the processes scheduler and only adds start-up.
3. Rounds: each candidate still in play computes a fresh batch, in rotating order so that a
   noisy spell hits them alike. A batch is about ``TARGET`` of the serial run per worker (a
   single unit is too short to time on a shared machine; a parallel candidate gets twice that,
   in one task a worker), and units are weighed by their size (``Job.sizes``: a slab of one
   time step is half a slab of two). Each repetition is projected to the whole run (start-up +
   seconds per size x total size). From the second round on, ``choose.decide`` applies its rule
   and a candidate slower than the pick beyond the noise leaves (synchronous, most often: it
   is the pilot's only real cost). The pilot stops once the ranking is settled (after at least
   ``MIN_ROUNDS``), after ``MAX_ROUNDS``, or once it has done ``SHARE`` of the work.

The rest of the work then runs on the pick, in one compute.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from toolkit import choose
from toolkit.records import Choice, PilotRow
from toolkit.runner.schedulers import Active, activated

SHORT_RUN = 20.0  # seconds of serial work below which a pilot cannot pay for itself on 2 cores
TARGET = 0.01  # of the expected serial run, per worker and batch (at least MIN_BATCH seconds)
MIN_BATCH = 0.4
PARALLEL_BATCH = 2  # a parallel candidate's batch, per worker, in sync batches: its tasks' tail matters less
SHARE = 0.25  # rounds beyond the third stop once the pilot has done this share of the work
MAX_ROUNDS = 6
MIN_ROUNDS = 3  # the least repetitions the rule needs to see a 1.8x gain through 15% noise (tests/test_choose.py)


class Job(Protocol):
    """Work cut into independent units; ``run`` computes some of them on an active scheduler, in
    ``tasks`` tasks, and keeps their results. A job may say how big each unit is (``sizes``)."""

    units: int

    def run(self, active: Active, units: Sequence[int], tasks: int) -> None: ...


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


def _parallelism(c: Choice) -> int:
    return max(1, c.n_workers * c.threads_per_worker)


def _tasks(c: Choice, units: int) -> int:
    """One task a worker: a task has a fixed cost (its sums, 50 MB for the wind study, allocated,
    returned and added up), and tasks of one unit each ran threads 20% slower than the whole run
    does; equal units split evenly leave little tail."""
    return 1 if c.scheduler == "synchronous" else min(units, _parallelism(c))


def run_pilot(job: Job, found: Sequence[Choice], stack: contextlib.ExitStack,
              note: Callable[[str], None] = lambda text: None, share: float = SHARE) -> tuple[Pilot, Active]:
    """Pilot ``job`` on the candidates ``found`` (synchronous first). Returns the pilot and the
    pick's active scheduler (entered on ``stack``, so that the rest of the run uses it)."""
    began = time.perf_counter()
    sync = found[0]
    assert sync.scheduler == "synchronous"
    actives: dict[str, Active] = {}
    sizes = list(getattr(job, "sizes", None) or [1.0] * job.units)
    total = float(sum(sizes))

    def size(units: Sequence[int]) -> float:
        return float(sum(sizes[k] for k in units)) or 1.0

    def active(c: Choice) -> Active:
        key = choose.label(c)
        if key not in actives:
            actives[key] = stack.enter_context(activated(c))
        return actives[key]

    pool = list(range(job.units))

    def take(amount: float) -> list[int]:
        """Units from the front of the pool, about ``amount`` in size, at least one."""
        taken: list[int] = []
        held = 0.0
        while pool and (not taken or held + sizes[pool[0]] / 2 <= amount):
            held += sizes[pool[0]]
            taken.append(pool.pop(0))
        return taken

    first = take(0)  # one-time costs (imports, opening files)
    job.run(active(sync), first, 1)
    second = take(0)
    t0 = time.perf_counter()
    job.run(active(sync), second, 1)
    per_size = (time.perf_counter() - t0) / size(second)
    serial = per_size * total
    pilot = Pilot(sync, done=first + second, serial_estimate=serial)
    parallel = [c for c in found[1:]]
    if any(c.scheduler == "processes" for c in parallel) and not any(c.address or c.cluster != "local"
                                                                     for c in parallel):
        dropped = [c for c in parallel if c.scheduler == "distributed"]
        parallel = [c for c in parallel if c.scheduler != "distributed"]
        if dropped:
            pilot.why += ("not tried: a LocalCluster runs the same one-thread processes as the processes "
                          "scheduler and only adds its start-up",)
    if not parallel:
        pilot.why += ("no concurrent scheduler is safe here: synchronous",)
        pilot.seconds = time.perf_counter() - began
        return pilot, active(sync)
    if serial < SHORT_RUN:
        pick = choose.fallback(found)
        pilot.choice = pick
        pilot.why += (f"not piloted: about {serial:.1f} s of serial work, too short for a pilot to pay for itself "
                      f"(under {SHORT_RUN:.0f} s); took {choose.label(pick)}, the simplest safe concurrent choice",)
        pilot.seconds = time.perf_counter() - began
        return pilot, active(pick)

    tried = [sync] + parallel
    per_worker = max(MIN_BATCH, TARGET * serial) / max(per_size, 1e-9)  # in size
    seconds: dict[str, list[float]] = {choose.label(c): [] for c in tried}
    amount: dict[str, list[float]] = {choose.label(c): [] for c in tried}
    startup: dict[str, float] = {}
    playing = list(tried)
    budget = share * total
    rounds = 0

    def table_rows() -> list[PilotRow]:
        return [_row(choose.label(c), seconds, amount, startup, total) for c in tried if seconds[choose.label(c)]]

    while rounds < MAX_ROUNDS and pool and (rounds < MIN_ROUNDS or size(pilot.done) < budget):
        rounds += 1
        for c in playing[rounds % len(playing):] + playing[:rounds % len(playing)]:
            key = choose.label(c)
            here = active(c)
            startup.setdefault(key, here.started)
            workers = _parallelism(c)
            batch = take(per_worker * workers * (PARALLEL_BATCH if workers > 1 else 1))
            if not batch:
                break
            t0 = time.perf_counter()
            job.run(here, batch, _tasks(c, len(batch)))
            seconds[key].append(time.perf_counter() - t0)
            amount[key].append(size(batch))
            pilot.done += batch
        if rounds >= 2:
            rows = table_rows()
            pick_row, settled, _ = choose.decide(rows)
            note(f"pilot round {rounds}: " + ", ".join(
                f"{r.candidate} {statistics.median(r.projected):.1f}s" for r in rows))
            if settled and rounds >= MIN_ROUNDS:
                break
            # A candidate slower beyond the noise leaves at once (two repetitions can show a 2x gap).
            keep = {r.candidate for r in rows if r is pick_row or not choose.clearly_slower(r, pick_row)}
            playing = [c for c in playing if choose.label(c) in keep]
            if len(playing) == 1:
                break
    rows = table_rows()
    pick_row, settled, why = choose.decide(rows)
    pilot.why += why + ((f"settled after {rounds} rounds",) if settled else (
        f"not settled after {rounds} rounds ({size(pilot.done) / total:.0%} of the work): the simpler candidate "
        "keeps a tie",))
    pick = next(c for c in tried if choose.label(c) == pick_row.candidate)
    pilot.choice, pilot.rows = pick, rows
    pilot.seconds = time.perf_counter() - began
    rate = statistics.median(s / a for s, a in zip(seconds[pick_row.candidate], amount[pick_row.candidate]))
    pilot.cost = max(0.0, pilot.seconds - rate * size(pilot.done))
    for key, here in list(actives.items()):
        if key != pick_row.candidate and here.client is not None:
            here.client.close()  # a cluster that lost: its workers can go now
    return pilot, active(pick)


def _row(key: str, seconds: dict[str, list[float]], amount: dict[str, list[float]], startup: dict[str, float],
         total: float) -> PilotRow:
    projected = tuple(round(startup.get(key, 0.0) + s / max(a, 1e-9) * total, 3)
                      for s, a in zip(seconds[key], amount[key]))
    return PilotRow(key, tuple(round(s, 4) for s in seconds[key]), round(startup.get(key, 0.0), 3), projected)


def rows_table(choice: Choice) -> list[str]:
    """A choice's pilot table (when it has one) and its rationale."""
    lines = []
    if choice.pilot:
        lines.append(f"{'candidate':22s} {'repetitions (s)':34s} {'start-up':>8s} {'projected run':>14s}")
        for row in choice.pilot:
            reps = ", ".join(f"{s:.2f}" for s in row.seconds[:6])
            lines.append(f"{row.candidate:22s} {reps:34s} {row.startup:7.2f}s "
                         f"{statistics.median(row.projected or row.seconds):13.1f}s")
    return lines + list(choice.rationale)


def table(pilot: Pilot) -> list[str]:
    """The pilot's table and rule, for a log or a terminal."""
    if not pilot.rows:
        return list(pilot.why)
    lines = [f"{'candidate':22s} {'repetitions (s)':34s} {'start-up':>8s} {'projected run':>14s}"]
    for row in pilot.rows:
        reps = ", ".join(f"{s:.2f}" for s in row.seconds[:6])
        lines.append(f"{row.candidate:22s} {reps:34s} {row.startup:7.2f}s {statistics.median(row.projected):13.1f}s")
    lines += list(pilot.why)
    lines.append(f"pilot: {pilot.seconds:.1f} s on {len(pilot.done)} units, of which {pilot.cost:.1f} s "
                 "beyond what the pick would have taken")
    return lines
