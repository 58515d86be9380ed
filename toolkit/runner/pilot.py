"""The pilot: the run's own work, timed on each safe scheduler side by side, before the rest of it.

A workload that can be cut into independent *units* (the wind study's time slabs, the load
study's files) hands the pilot a ``Job``. The pilot does real work, not a rehearsal: every unit
it computes, on whichever candidate, is kept and never computed again, so what it costs is only
the slower candidates' extra time on their share.

1. Two units, synchronously (the first also pays one-time costs): the serial rate, hence the
   expected serial run. A run too short to
   gain from parallelism by more than a pilot would cost (``SHORT_RUN``) is not piloted.
2. Candidates that cannot win are not tried: a LocalCluster runs the same one-thread processes
   as the processes scheduler and only adds start-up.
3. Rounds: each remaining candidate computes a fresh batch of units (one per worker: a unit
   is a fraction of a per cent of the run), in rotating order, so that a noisy spell hits them
   alike. Each repetition is
   projected to the whole run (start-up + fixed cost per compute + rate x units). After three
   repetitions, ``choose.decide`` applies its rule; candidates clearly slower than the pick are
   dropped. The pilot stops once the pick is settled, or after ``MAX_ROUNDS``, or once it has
   done ``SHARE`` of the work.

The rest of the work then runs on the pick, in one compute.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from toolkit import choose
from toolkit.records import Choice, PilotRow
from toolkit.runner.schedulers import Active, activated

SHORT_RUN = 20.0  # seconds of serial work below which a pilot cannot pay for itself on 2 cores
SHARE = 0.1  # rounds beyond the third stop once the pilot has done this share of the units
MAX_ROUNDS = 5
MIN_ROUNDS = 3  # three repetitions each: complete separation then means p = 1/20


class Job(Protocol):
    """Work cut into independent units; ``run`` computes some of them on an active scheduler, in
    ``tasks`` tasks, and keeps their results."""

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


def _overhead(active: Active) -> float:
    """A compute's fixed cost on this scheduler (a process pool starts per compute, for one)."""
    import dask

    best = float("inf")
    for _ in range(2):
        began = time.perf_counter()
        active.compute(dask.delayed(int)(0))
        best = min(best, time.perf_counter() - began)
    return best


def run_pilot(job: Job, found: Sequence[Choice], stack: contextlib.ExitStack,
              note: Callable[[str], None] = lambda text: None, share: float = SHARE) -> tuple[Pilot, Active]:
    """Pilot ``job`` on the candidates ``found`` (synchronous first). Returns the pilot and the
    pick's active scheduler (entered on ``stack``, so that the rest of the run uses it)."""
    began = time.perf_counter()
    sync = found[0]
    assert sync.scheduler == "synchronous"
    actives: dict[str, Active] = {}

    def active(c: Choice) -> Active:
        key = choose.label(c)
        if key not in actives:
            actives[key] = stack.enter_context(activated(c))
        return actives[key]

    pool = list(range(job.units))

    def take(n: int) -> list[int]:
        taken = pool[:n]
        del pool[:n]
        return taken

    first = take(2)
    times = []
    for k in first:  # the first unit also pays for one-time costs (imports, opening files): the second is the rate
        t0 = time.perf_counter()
        job.run(active(sync), [k], 1)
        times.append(time.perf_counter() - t0)
    unit = times[-1]
    serial = unit * job.units
    pilot = Pilot(sync, done=list(first), serial_estimate=serial)
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
    seconds: dict[str, list[float]] = {choose.label(c): [] for c in tried}
    units_of: dict[str, list[int]] = {choose.label(c): [] for c in tried}
    seconds[choose.label(sync)].append(unit)
    units_of[choose.label(sync)].append(1)
    fixed: dict[str, float] = {choose.label(sync): 0.0}
    startup: dict[str, float] = {choose.label(sync): 0.0}
    playing = list(tried)
    budget = max(len(tried) * 2, int(share * job.units))
    rounds = 0

    def table_rows() -> list[PilotRow]:
        return [_row(choose.label(c), seconds, units_of, fixed, startup, job.units) for c in tried
                if seconds[choose.label(c)]]

    while rounds < MAX_ROUNDS and pool and (rounds < MIN_ROUNDS or len(pilot.done) < budget):
        rounds += 1
        for c in playing[rounds % len(playing):] + playing[:rounds % len(playing)]:
            key = choose.label(c)
            here = active(c)
            startup.setdefault(key, here.started)
            if key not in fixed:
                fixed[key] = _overhead(here)
            if c.scheduler == "synchronous" and rounds == 1:
                continue  # its first repetition was the first unit
            batch = take(_parallelism(c))
            if not batch:
                break
            t0 = time.perf_counter()
            job.run(here, batch, min(len(batch), _parallelism(c)))
            seconds[key].append(time.perf_counter() - t0)
            units_of[key].append(len(batch))
            pilot.done += batch
        if rounds >= MIN_ROUNDS:
            rows = table_rows()
            pick_row, settled, _ = choose.decide(rows)
            note(f"pilot round {rounds}: " + ", ".join(
                f"{r.candidate} {statistics.median(r.projected):.1f}s" for r in rows))
            if settled:
                break
            keep = {r.candidate for r in rows if r is pick_row or not choose.clearly_slower(r, pick_row)}
            playing = [c for c in playing if choose.label(c) in keep]
    rows = table_rows()
    pick_row, settled, why = choose.decide(rows)
    pilot.why += why + ((f"settled after {rounds} rounds",) if settled else (
        f"not settled after {rounds} rounds ({len(pilot.done)} of {job.units} units): the simpler candidate "
        "keeps a tie",))
    pick = next(c for c in tried if choose.label(c) == pick_row.candidate)
    pilot.choice, pilot.rows = pick, rows
    pilot.seconds = time.perf_counter() - began
    rate = _rate(seconds[pick_row.candidate], units_of[pick_row.candidate], fixed[pick_row.candidate])
    pilot.cost = max(0.0, pilot.seconds - rate * len(pilot.done))
    for key, here in list(actives.items()):
        if key != pick_row.candidate and here.client is not None:
            here.client.close()  # a cluster that lost: its workers can go now
    return pilot, active(pick)


def _rate(seconds: list[float], units: list[int], fixed: float) -> float:
    """Median seconds per unit, the fixed cost of each compute taken out."""
    return statistics.median(max(0.0, s - fixed) / max(1, n) for s, n in zip(seconds, units))


def _row(key: str, seconds: dict[str, list[float]], units: dict[str, list[int]], fixed: dict[str, float],
         startup: dict[str, float], total: int) -> PilotRow:
    base = fixed.get(key, 0.0)
    projected = tuple(round(startup.get(key, 0.0) + base + max(0.0, s - base) / max(1, n) * total, 3)
                      for s, n in zip(seconds[key], units[key]))
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
