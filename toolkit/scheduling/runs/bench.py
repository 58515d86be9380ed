"""Benchmark of the runner: the same workload on the same data under every scheduler, and auto.

Each repetition may start from a fresh diagnosis (``--fresh``: the wind probes and the
fork-safety probes, into a folder of its own, and an empty choice cache), then runs every
configuration in a fresh subprocess, in an order rotated per repetition so that a noisy spell
hits them alike: synchronous, threads, processes (fork), distributed, ``auto`` (safety from that
diagnosis, a pilot on the input), and ``auto`` again (the cached choice). Every result is
checked against the synchronous one.

Figures, per repetition, side by side: auto's regret (its time over the fastest safe explicit
configuration's), the best speedup over synchronous, the pilot's cost (its time beyond what the
pick would have taken, as a share of auto's run) and the cached choice's cost. Writes
``reports/bench.json`` (``threadprobe.bench/1``) and a plot.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

from threadprobe.diagnosis.progress import Count, NullProgress, Progress, Update, phase
from threadprobe.harness.proc import die_with_parent, signal_name
from threadprobe.records import BENCH_SCHEMA, Choice, PilotRow, Record, RunRequest, Scheduler
from threadprobe.report import benchfile
from threadprobe.scheduling.workloads import WORKLOADS

#: A run's answer, compared between configurations: every 97th value of each 2-D output variable
#: (wind), or the merged cubes' summary lines (load).
Digest: TypeAlias = list[list[float]] | list[str]

CONFIGS: tuple[tuple[str, RunRequest], ...] = (
    ("synchronous", RunRequest(scheduler=Scheduler.SYNCHRONOUS)),
    ("threads", RunRequest(scheduler=Scheduler.THREADS)),
    ("processes", RunRequest(scheduler=Scheduler.PROCESSES)),
    ("distributed", RunRequest(scheduler=Scheduler.DISTRIBUTED)),
    ("auto", RunRequest(cache=False)),
    ("auto cached", RunRequest(cache=True)),
)
EXPLICIT = ("synchronous", "threads", "processes", "distributed")
#: At the study's scale (files of 1.5 GB): auto, synchronous and the explicit schedulers that can
#: be fastest here. Distributed is left out: on 2 cores its LocalCluster ran at x0.77 to x0.79 of
#: synchronous at the smaller scale (a scheduler and nannies beside two workers), and each of its
#: runs here would cost minutes.
STUDY_CONFIGS = ("synchronous", "threads", "processes", "auto")


@dataclass(frozen=True)
class Inputs(Record):
    """A bench's input files, as globs: the wind pairs' two halves, and every file (load)."""

    x: str
    y: str
    files: str


@dataclass(frozen=True)
class Spec(Record):
    """What one timed run is asked to do, written by the bench and read by its subprocess (benchrun)."""

    workload: str
    inputs: Inputs
    request: RunRequest


@dataclass(frozen=True)
class Run(Record):
    """One timed run of a configuration, as its subprocess reported it, or why it gave nothing."""

    _omit_none: ClassVar[bool] = True

    seconds: float | None = None  # None: the run failed (``failed`` says how)
    failed: str | None = None
    digest: Digest | None = None
    choice: str | None = None  # the choice, described
    choice_record: Choice | None = None
    source: str | None = None  # where the choice came from
    gil_enabled: bool | None = None
    pilot_seconds: float | None = None
    pilot_cost: float | None = None  # of the pilot, what running its units on the pick would not have cost
    pilot_table: tuple[PilotRow, ...] | None = None
    rationale: tuple[str, ...] | None = None
    peak_memory: int | None = None  # bytes (wind)
    compute_seconds: float | None = None  # the units after the pilot (wind)
    decide_seconds: float | None = None  # choosing the scheduler (wind)


@dataclass(frozen=True)
class Repetition(Record):
    """One repetition, its configurations side by side: seconds, failures, and auto against the
    fastest safe explicit configuration (``regret``) and synchronous (``best_speedup``)."""

    _omit_none: ClassVar[bool] = True

    seconds: dict[str, float | None]
    failures: dict[str, str]
    fastest_explicit: str | None
    regret: float | None = None
    auto_choice: str | None = None
    pilot_share: float | None = None  # the pilot's cost, as a share of auto's run
    pilot_seconds: float | None = None
    best_speedup: float | None = None
    cached_regret: float | None = None
    cached_source: str | None = None
    cached_decide_seconds: float | None = None
    peak_memory: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Summary(Record):
    """One input format's runs: per repetition, and over them (medians, spread, correctness)."""

    format: str
    input_bytes: int
    input_files: int
    repetitions: tuple[Repetition, ...]
    median_seconds: dict[str, float]
    speedup: dict[str, float]  # median synchronous over each median
    seconds_range: dict[str, tuple[float, ...]]  # (lowest, highest)
    ratios_to_synchronous: dict[str, tuple[float | None, ...]]  # per repetition, against its own synchronous run
    peak_memory_max: dict[str, int]
    regrets: tuple[float | None, ...]
    pilot_shares: tuple[float | None, ...]
    best_speedups: tuple[float | None, ...]
    cached_decide_seconds: tuple[float | None, ...]
    correct: dict[str, bool]  # every run gave synchronous's answer
    pilot_tables: tuple[tuple[PilotRow, ...] | None, ...]
    runs: dict[str, tuple[Run, ...]]  # their digests left out


@dataclass(frozen=True)
class Result(Record):
    """The runner's bench of one workload (``threadprobe.bench/1``)."""

    workload: str
    repeats: int
    fresh_diagnosis: bool
    formats: dict[str, Summary]
    schema: str = BENCH_SCHEMA


def inputs(data: Path, fmt: str) -> Inputs:
    return Inputs(str(data / fmt / f"x_wind_*.{fmt}"), str(data / fmt / f"y_wind_*.{fmt}"), str(data / fmt / f"*.{fmt}"))


def _subprocess(spec: Spec, timeout: float, env: dict[str, str]) -> Run:
    return timed([sys.executable, "-m", "threadprobe.scheduling.runs.benchrun", json.dumps(spec.to_json())], timeout, env)


def timed(command: list[str], timeout: float, env: dict[str, str]) -> Run:
    """A run in a subprocess (``benchrun``): its last line of output, or why there was none. The
    run dies with the bench: a bench stopped mid-run leaves no run computing on."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                              preexec_fn=die_with_parent)
    except subprocess.TimeoutExpired:
        return Run(failed=f"no result within {timeout:.0f}s")
    if done.returncode != 0:
        why = signal_name(done.returncode) or f"exit code {done.returncode}"
        tail = (done.stderr.strip().splitlines() or [""])[-1][:200]
        return Run(failed=f"{why}: {tail}" if tail else why)
    return Run.from_json(json.loads(done.stdout.strip().splitlines()[-1]))


def same(a: Digest | None, b: Digest | None) -> bool:
    import numpy as np

    if a is None or b is None or len(a) != len(b):
        return False
    if a and isinstance(a[0], str):
        return a == b
    return all(np.allclose(np.asarray(x, float), np.asarray(y, float), rtol=1e-5, atol=1e-6, equal_nan=True)
               for x, y in zip(a, b))


def fresh_diagnosis(folder: Path, formats: list[str], workload: str) -> Path:
    """A diagnosis of what ``auto`` needs, made now, in a folder of its own."""
    probes = [p for fmt in formats for p in WORKLOADS[workload].probes_for(fmt)] + ["fork_safety.*"]
    args = [sys.executable, "-m", "threadprobe.cli", "diagnose", "--quiet", "--no-evidence", "--out", str(folder),
            "--budget", "20"] + [x for p in probes for x in ("--probe", p)]
    subprocess.run(args, check=True, capture_output=True, timeout=900)
    return folder / "diagnosis.json"


def bench(workload: str, data: Path, formats: list[str], repeats: int = 3, fresh: bool = False,
          diagnosis: str | None = None, timeout: float = 1800.0, progress: Progress | None = None,
          configs: tuple[str, ...] | None = None) -> Result:
    """``configs``: which of ``CONFIGS`` to run (default: all)."""
    shown = progress or NullProgress()
    with phase(shown, f"bench {workload}"):
        return _bench(workload, data, formats, repeats, fresh, diagnosis, timeout, shown, configs)


def _bench(workload: str, data: Path, formats: list[str], repeats: int, fresh: bool, diagnosis: str | None,
           timeout: float, shown: Progress, configs: tuple[str, ...] | None) -> Result:
    with tempfile.TemporaryDirectory(prefix="threadprobe-bench-") as folder:  # choice caches, fresh diagnoses
        return _repeat(workload, data, formats, repeats, fresh, diagnosis, timeout, shown, configs, Path(folder))


def _repeat(workload: str, data: Path, formats: list[str], repeats: int, fresh: bool, diagnosis: str | None,
            timeout: float, shown: Progress, configs: tuple[str, ...] | None, work: Path) -> Result:
    names = [name for name, _ in CONFIGS if configs is None or name in configs]
    runs: dict[str, dict[str, list[Run]]] = {fmt: {name: [] for name in names} for fmt in formats}
    for rep in range(repeats):
        env = dict(os.environ, THREADPROBE_CACHE=str(work / f"cache-{rep}.json"))
        if fresh:
            shown.note(f"repetition {rep + 1}/{repeats}: a fresh diagnosis")
            diagnosis = str(fresh_diagnosis(work / f"diagnosis-{rep}", formats, workload))
        rotating = [n for n in names if n != "auto cached"]
        shift = rep % len(rotating)
        order = rotating[shift:] + rotating[:shift] + [n for n in names if n == "auto cached"]  # after a pilot
        for fmt in formats:
            for name in order:
                ran = sum(len(by_name) for by_format in runs.values() for by_name in by_format.values())
                shown.update(Update(f"{workload} {fmt} {name}", f"repetition {rep + 1}/{repeats}",
                                    run=Count(ran, "runs", repeats * len(formats) * len(names))))
                request = dict(CONFIGS)[name].replace(diagnosis=diagnosis)
                runs[fmt][name].append(_subprocess(Spec(workload, inputs(data, fmt), request), timeout, env))
    return Result(workload, repeats, fresh, {fmt: summarise(runs[fmt], data, fmt) for fmt in formats})


def _repetition(row: dict[str, Run], reference: Digest | None, explicit: tuple[str, ...]) -> Repetition:
    ok = {name: r for name, r in row.items() if r.seconds is not None and same(r.digest, reference)}
    timed = {name: seconds for name in explicit if name in ok and (seconds := ok[name].seconds) is not None}
    best = min(timed, key=timed.__getitem__) if timed else None
    found: dict[str, Any] = {}
    auto, cached, sync = ok.get("auto"), ok.get("auto cached"), ok.get("synchronous")
    if best and auto is not None and auto.seconds:
        found.update(regret=round(auto.seconds / timed[best], 3), auto_choice=auto.choice,
                     pilot_share=round((auto.pilot_cost or 0.0) / auto.seconds, 4),
                     pilot_seconds=round(auto.pilot_seconds or 0.0, 2))
    if best and sync is not None and sync.seconds:
        found.update(best_speedup=round(sync.seconds / timed[best], 3))
    if best and cached is not None and cached.seconds:
        found.update(cached_regret=round(cached.seconds / timed[best], 3), cached_source=cached.source,
                     cached_decide_seconds=round(cached.decide_seconds or 0.0, 3))
    return Repetition({name: r.seconds for name, r in row.items()},
                      {name: r.failed for name, r in row.items() if r.failed is not None}, best,
                      peak_memory={name: r.peak_memory for name, r in row.items() if r.peak_memory}, **found)


def over_runs(runs: Mapping[str, Sequence[Run]]) -> tuple[dict[str, float], dict[str, float],
                                                            dict[str, tuple[float, ...]], dict[str, int]]:
    """Per configuration, over its runs: the median seconds, the speedup (synchronous's median over
    its median), the range of seconds, and the highest peak memory."""
    seconds = {name: [r.seconds for r in rs if r.seconds is not None] for name, rs in runs.items()}
    medians = {name: statistics.median(xs) for name, xs in seconds.items() if xs}
    speedup = ({name: round(medians["synchronous"] / s, 3) for name, s in medians.items()} if "synchronous" in medians
               else {})
    ranges: dict[str, tuple[float, ...]] = {name: (round(min(xs), 2), round(max(xs), 2))
                                           for name, xs in seconds.items() if xs}
    peaks = {name: max(xs) for name, rs in runs.items() if (xs := [r.peak_memory for r in rs if r.peak_memory])}
    return medians, speedup, ranges, peaks


def summarise(runs: dict[str, list[Run]], data: Path, fmt: str, explicit: tuple[str, ...] = EXPLICIT) -> Summary:
    """Per repetition and over them: seconds, ratios to synchronous, correctness, and auto's regret
    against the fastest of ``explicit`` (the configurations that count as safe)."""
    reference = next((r.digest for r in runs["synchronous"] if r.digest is not None), None)
    per_rep = [_repetition({name: runs[name][k] for name in runs}, reference, explicit)
               for k in range(len(runs["synchronous"]))]
    medians, speedup, seconds_range, peaks = over_runs(runs)

    def ratio(row: Repetition, name: str) -> float | None:
        mine, sync = row.seconds.get(name), row.seconds.get("synchronous")
        return round(sync / mine, 3) if mine and sync else None

    return Summary(
        format=fmt,
        input_bytes=sum(p.stat().st_size for p in (data / fmt).glob(f"*.{fmt}")),
        input_files=len(list((data / fmt).glob(f"*.{fmt}"))),
        repetitions=tuple(per_rep),
        median_seconds=medians,
        speedup=speedup,
        seconds_range=seconds_range,
        ratios_to_synchronous={name: tuple(ratio(row, name) for row in per_rep) for name in runs},
        peak_memory_max=peaks,
        regrets=tuple(r.regret for r in per_rep),
        pilot_shares=tuple(r.pilot_share for r in per_rep),
        best_speedups=tuple(r.best_speedup for r in per_rep),
        cached_decide_seconds=tuple(r.cached_decide_seconds for r in per_rep),
        correct={name: all(same(r.digest, reference) for r in rs) for name, rs in runs.items()},
        pilot_tables=tuple(r.pilot_table for r in runs.get("auto", ())),
        runs={name: tuple(r.replace(digest=None) for r in rs) for name, rs in runs.items()},
    )


def plot(result: Result, path: Path) -> Path:
    """Seconds per configuration per repetition (dots) and median (bar), one panel per format."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formats = list(result.formats.values())
    fig, axes = plt.subplots(1, len(formats), figsize=(6 * len(formats), 4.2), squeeze=False)
    for ax, res in zip(axes[0], formats):
        names = list(res.median_seconds)
        ax.barh(names, [res.median_seconds[n] for n in names], color="#90caf9")
        for k, n in enumerate(names):
            xs = [r.seconds for r in res.runs[n] if r.seconds is not None]
            ax.scatter(xs, [k] * len(xs), color="#0d47a1", s=10, zorder=3)
            ax.text(res.median_seconds[n], k, f" x{res.speedup.get(n, 0):.2f}", va="center", fontsize=8)
        regrets = [r for r in res.regrets if r]
        ax.set_title(f"{result.workload} {res.format} ({res.input_bytes / 2**30:.2f} GiB): auto's regret "
                     f"{min(regrets):.2f}-{max(regrets):.2f}" if regrets else res.format, fontsize=9)
        ax.set_xlabel("seconds (bar: median; dots: each repetition)")
        ax.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(result: Result, out: Path, workload: str) -> Path:
    """Merge this workload's results into reports/bench.json (other workloads' entries stay)."""
    path = out / "bench.json"
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != BENCH_SCHEMA:
            data = {}
    except (OSError, ValueError):
        data = {}
    data["schema"] = BENCH_SCHEMA
    data.setdefault("workloads", {})[workload] = benchfile.stamp(result.to_json())  # each workload says how it was made
    return benchfile.write(path, data)

