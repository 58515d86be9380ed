"""The seed's two experiments on both builds, in one bench: ``threadprobe bench load|wind --python A
--python B``.

Each interpreter is an *environment*, and a free-threaded one is two: the GIL as the workload's
imports leave it, and the GIL forced off (``PYTHON_GIL=0``). Every environment gets, once, a
diagnosis of the workload's probes made in it, with every remedy searched (``--remedies all``:
each suspect library's lock and the global lock, verified by stress trials in that GIL state).
Then each repetition runs, per environment and format, in a fresh subprocess of that interpreter
(running this threadprobe's sources) and in an order rotated per repetition: synchronous, threads
as they are, threads holding each remedy the diagnosis verified, processes, and ``auto`` (safety
from that diagnosis, a pilot on the input, no cache).

Per environment and format: medians and the spread of every configuration, its speedup over
synchronous per repetition, whether every run gave synchronous's answer, auto's regret against the
fastest explicit configuration that the diagnosis calls safe (as it is or under a verified remedy),
and whether auto's pick was one the diagnosis allows (``auto_safe``: it must always be).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from threadprobe.diagnosis.progress import NullProgress, Progress
from threadprobe.harness.proc import child_env, interpreter_of
from threadprobe.records import (BENCH_SCHEMA, Choice, Diagnosis, GilState, Record, Remedy, RemedyKind, RunRequest,
                                 Scheduler, is_clean)
from threadprobe.records.errors import UsageError
from threadprobe.scheduling import choose
from threadprobe.scheduling.runs import bench
from threadprobe.scheduling.workloads import WORKLOADS

_ABOUT = ("import sys, sysconfig, platform; print(platform.python_version() + "
          "('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))")


@dataclass(frozen=True)
class Summary(bench.Summary):
    """One environment's and format's runs: the bench's summary, where they ran, which explicit
    configurations its diagnosis calls safe (as they are or under a verified remedy), and whether
    each of auto's picks was one the diagnosis allows."""

    environment: str = ""
    python: str = ""
    gil: GilState | None = None  # None: a GIL build
    safe_explicit: tuple[str, ...] = ()
    diagnosis: str = ""
    auto_safe: tuple[bool | None, ...] = ()
    remedies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result(Record):
    """The bench across builds (``threadprobe.bench/1``): a summary per environment and format."""

    workload: str
    repeats: int
    environments: tuple[Summary, ...]
    schema: str = BENCH_SCHEMA


@dataclass(frozen=True)
class Env:
    """Where a configuration runs: an interpreter, and on a free-threaded one a GIL state."""

    python: str
    version: str  # "3.11.7", or "3.13.5t" for a free-threaded build
    gil: GilState | None = None  # None: a GIL build

    @property
    def label(self) -> str:
        if self.gil is None:
            return f"{self.version} (GIL build)"
        return f"{self.version}, GIL {'off' if self.gil == GilState.OFF else 'as imported'}"

    def environ(self, cache: Path) -> dict[str, str]:
        """This threadprobe's sources on the path (another interpreter's own venv otherwise), the
        GIL forced off where asked, and a choice cache of its own."""
        _, foreign = interpreter_of(self.python)
        env = child_env(foreign=foreign)
        env.pop("PYTHON_GIL", None)
        if self.gil == GilState.OFF:
            env["PYTHON_GIL"] = "0"
        env["THREADPROBE_CACHE"] = str(cache)
        return env


def environments(pythons: Sequence[str], states: Sequence[GilState] = tuple(GilState)) -> list[Env]:
    """One environment per GIL build, one per state asked for on a free-threaded build."""
    out = []
    for python in pythons or (sys.executable,):
        path, foreign = interpreter_of(python)
        version = subprocess.run([path, "-c", _ABOUT], capture_output=True, text=True, timeout=60,
                                 env=child_env(foreign=foreign)).stdout.strip()
        out += [Env(path, version, s) for s in states] if version.endswith("t") else [Env(path, version)]
    return out


def diagnose(python: str, folder: Path, workload: str, formats: Sequence[str], budget: float,
             state: GilState | None = None) -> Path:
    """The workload's probes (and the fork-safety ones) diagnosed in ``python``, every remedy
    searched and verified: in ``state`` alone when one is given (a free-threaded build benched in
    one GIL state), else in every state the build has."""
    probes = [p for fmt in formats for p in WORKLOADS[workload].probes_for(fmt)] + ["fork_safety.*"]
    args = [sys.executable, "-m", "threadprobe.cli", "diagnose", "--quiet", "--remedies", "all", "--out", str(folder),
            "--python", python, "--budget", str(budget)] + [x for p in probes for x in ("--probe", p)]
    args += ["--gil", str(state)] if state is not None else []
    subprocess.run(args, check=True, capture_output=True, timeout=3600)
    return folder / "diagnosis.json"


def verified(diag: Diagnosis, probes: Sequence[str], state: GilState | None) -> list[Remedy]:
    """The lock remedies verified clean in ``state`` for every one of ``probes`` that needs one
    (each remedy once, as the workers applied it)."""
    mine = [r for r in choose.in_state(diag.remedies, state) if r.probe in probes and r.remedy is not None
            and r.remedy.kind != RemedyKind.PROCESSES and is_clean(r.verdict)]
    return list(dict.fromkeys(r.remedy.key for r in mine if r.remedy is not None))


def configs(diag: Diagnosis, env: Env, workload: str, fmt: str) -> list[tuple[str, RunRequest, bool]]:
    """The configurations of one environment and format: (name, run options, safe by the diagnosis)."""
    probes = WORKLOADS[workload].probes_for(fmt)
    found, _ = choose.candidates(diag.results, probes, choose.Machine(os.cpu_count() or 1, 64.0, env.gil),
                                 workload, diag.remedies)
    kinds = {c.scheduler for c in found if not c.locks}
    out: list[tuple[str, RunRequest, bool]] = [
        ("synchronous", RunRequest(scheduler=Scheduler.SYNCHRONOUS), True),
        ("threads", RunRequest(scheduler=Scheduler.THREADS), Scheduler.THREADS in kinds)]
    for remedy in verified(diag, probes, env.gil):
        name = f"threads + {' + '.join(remedy.libraries)} lock" if remedy.libraries else "threads + global lock"
        out.append((name, RunRequest(scheduler=Scheduler.THREADS, locks=(remedy,)), True))
    out.append(("processes", RunRequest(scheduler=Scheduler.PROCESSES), Scheduler.PROCESSES in kinds))
    out.append(("auto", RunRequest(cache=False), True))
    return out


def allowed(diag: Diagnosis, env: Env, workload: str, fmt: str, picked: Choice | None) -> bool | None:
    """Is auto's pick one the diagnosis of this state allows (a safe candidate, its locks held)?"""
    if picked is None:
        return None
    probes = WORKLOADS[workload].probes_for(fmt)
    found, _ = choose.candidates(diag.results, probes, choose.Machine(os.cpu_count() or 1, 64.0, env.gil),
                                 workload, diag.remedies)
    return any(c.scheduler == picked.scheduler and {r.key for r in c.locks} <= {r.key for r in picked.locks}
               for c in found)


def one(env: Env, spec: bench.Spec, timeout: float, cache: Path) -> bench.Run:
    return bench.timed([env.python, "-m", "threadprobe.scheduling.runs.benchrun", json.dumps(spec.to_json())], timeout,
                       env.environ(cache))


@contextlib.contextmanager
def turn(lock: Path | None) -> Iterator[None]:
    """One run's turn on a machine shared with other heavy jobs: ``lock`` (a file that they too
    ``flock``) held exclusively for the block, waiting for it first. A whole bench under one lock
    kept every other job off the machine for most of an hour; a turn per run lets them in between
    runs, never during one."""
    if lock is None:
        yield
        return
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


def run(workload: str, data: Path, formats: list[str], envs: Sequence[Env], repeats: int = 5,
        budget: float = 120.0, timeout: float = 1800.0, progress: Progress | None = None,
        lock: Path | None = None, keep: Path | None = None,
        done: Callable[[Result], object] | None = None) -> Result:
    """The bench: each environment's diagnosis, then the repetitions, each diagnosis and each run
    in a ``turn`` of its own on ``lock`` (when given). The diagnoses are kept in ``keep`` (the
    results name them), else made in a temporary folder that goes with the bench. ``done`` gets the
    result of the repetitions so far after each one: a bench of hours that stops early (a killed
    run, a machine taken back) keeps what it measured."""
    with contextlib.ExitStack() as stack:
        if keep is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="threadprobe-builds-")))
        else:
            work = keep
            work.mkdir(parents=True, exist_ok=True)
        return _run(workload, data, formats, envs, repeats, budget, timeout, progress, lock, work, done)


def _run(workload: str, data: Path, formats: list[str], envs: Sequence[Env], repeats: int, budget: float,
         timeout: float, progress: Progress | None, lock: Path | None, work: Path,
         done: Callable[[Result], object] | None = None) -> Result:
    say = (progress or NullProgress()).note
    diagnoses: dict[str, tuple[Path, Diagnosis]] = {}
    for env in envs:
        if env.python not in diagnoses:
            states = {e.gil for e in envs if e.python == env.python and e.gil is not None}
            only = next(iter(states)) if len(states) == 1 else None
            say(f"diagnosing {env.python} ({f'GIL {only}' if only else 'every GIL state it has'}, every remedy)")
            with turn(lock):
                path = diagnose(env.python, work / f"diagnosis-{len(diagnoses)}", workload, formats, budget, only)
            diagnoses[env.python] = (path, Diagnosis.from_json(json.loads(path.read_text())))
    plan = {(env, fmt): configs(diagnoses[env.python][1], env, workload, fmt) for env in envs for fmt in formats}
    runs: dict[tuple[Env, str], dict[str, list[bench.Run]]] = {
        key: {name: [] for name, _, _ in cfgs} for key, cfgs in plan.items()}
    for rep in range(repeats):
        for (env, fmt), cfgs in plan.items():
            shift = rep % len(cfgs)
            for name, request, _ in cfgs[shift:] + cfgs[:shift]:
                say(f"repetition {rep + 1}/{repeats}: {workload} {fmt} on {env.label}: {name}")
                spec = bench.Spec(workload, bench.inputs(data, fmt), request.replace(diagnosis=str(diagnoses[env.python][0])))
                with turn(lock):
                    runs[(env, fmt)][name].append(one(env, spec, hang_after(runs[(env, fmt)], timeout),
                                                      work / f"cache-{rep}.json"))
        if done is not None and rep + 1 < repeats:
            done(_result(workload, rep + 1, plan, runs, diagnoses, data))
    return _result(workload, repeats, plan, runs, diagnoses, data)


#: A run this many times slower than the slowest run already seen in its environment and format
#: is taken to hang (a deadlocked pool): it fails then, not after the whole ``timeout``.
HANG_FACTOR = 10.0


def hang_after(seen: dict[str, list[bench.Run]], timeout: float) -> float:
    """How long a run may take, from the runs of its environment and format so far."""
    done = [r.seconds for rs in seen.values() for r in rs if r.seconds is not None]
    return min(timeout, max(60.0, HANG_FACTOR * max(done))) if done else timeout


def _result(workload: str, repeats: int, plan: dict[tuple[Env, str], list[tuple[str, RunRequest, bool]]],
            runs: dict[tuple[Env, str], dict[str, list[bench.Run]]],
            diagnoses: dict[str, tuple[Path, Diagnosis]], data: Path) -> Result:
    """The summaries of the runs made so far, ``repeats`` repetitions of them."""
    results = []
    for (env, fmt), cfgs in plan.items():
        diag = diagnoses[env.python][1]
        safe = tuple(name for name, _, ok in cfgs if ok and name != "auto")
        summary = bench.summarise(runs[(env, fmt)], data, fmt, explicit=safe)
        results.append(Summary(
            **vars(summary), environment=env.label, python=env.python, gil=env.gil, safe_explicit=safe,
            diagnosis=str(diagnoses[env.python][0]), remedies=tuple(_remedy_lines(diag, env, workload, fmt)),
            auto_safe=tuple(allowed(diag, env, workload, fmt, r.choice_record) for r in runs[(env, fmt)]["auto"])))
    return Result(workload, repeats, tuple(results))


def _remedy_lines(diag: Diagnosis, env: Env, workload: str, fmt: str) -> list[str]:
    from threadprobe.report import remedy_summary

    probes = WORKLOADS[workload].probes_for(fmt)
    return remedy_summary([r for r in diag.remedies if r.probe in probes and r.gil == (env.gil or GilState.AS_IMPORTED)])


def pool(results: Sequence[Result], environments: Sequence[str] = ()) -> Result:
    """Benches of one workload as one: per environment and format, their repetitions one after the
    other, and medians, spread and correctness over all of them. Each repetition stays a side-by-side
    comparison of its own; pooling only gives the medians more of them, to read a tie between two
    schedulers that one bench's ten repetitions leave open. ``environments`` keeps those alone.
    Benches that ran on other data, or whose diagnoses allowed other schedulers, are refused."""
    if not results:
        raise UsageError("nothing to pool")
    if len({r.workload for r in results}) > 1:
        raise UsageError(f"benches of different workloads: {', '.join(sorted({r.workload for r in results}))}")
    groups: dict[tuple[str, str], list[Summary]] = {}
    for result in results:
        for res in result.environments:
            if not environments or res.environment in environments:
                groups.setdefault((res.environment, res.format), []).append(res)
    if not groups:
        raise UsageError(f"no bench ran {' or '.join(environments)}")
    return Result(results[0].workload, sum(r.repeats for r in results),
                  tuple(_pooled(key, parts) for key, parts in groups.items()))


def _pooled(key: tuple[str, str], parts: Sequence[Summary]) -> Summary:
    first = parts[0]
    for res in parts[1:]:
        if res.safe_explicit != first.safe_explicit:
            raise UsageError(f"{' '.join(key)}: one bench's diagnosis allowed {', '.join(res.safe_explicit)}, "
                             f"another's {', '.join(first.safe_explicit)}: their regrets are not against the same "
                             "schedulers")
        if (res.input_bytes, res.input_files) != (first.input_bytes, first.input_files):
            raise UsageError(f"{' '.join(key)}: the benches ran on different data ({first.input_files} files of "
                             f"{first.input_bytes} bytes, and {res.input_files} of {res.input_bytes})")
    names = [n for n in first.runs if all(n in res.runs for res in parts)]
    runs = {n: tuple(run for res in parts for run in res.runs[n]) for n in names}
    medians, speedup, seconds_range, peaks = bench.over_runs(runs)

    def joined(field: str) -> tuple[object, ...]:
        return tuple(x for res in parts for x in getattr(res, field))

    return first.replace(
        repetitions=joined("repetitions"), median_seconds=medians, speedup=speedup, seconds_range=seconds_range,
        ratios_to_synchronous={n: tuple(x for res in parts for x in res.ratios_to_synchronous[n]) for n in names},
        peak_memory_max=peaks,
        regrets=joined("regrets"), pilot_shares=joined("pilot_shares"), best_speedups=joined("best_speedups"),
        cached_decide_seconds=joined("cached_decide_seconds"), pilot_tables=joined("pilot_tables"),
        correct={n: all(res.correct.get(n, False) for res in parts) for n in names}, runs=runs,
        auto_safe=joined("auto_safe"), diagnosis=", ".join(res.diagnosis for res in parts),
        remedies=tuple(dict.fromkeys(line for res in parts for line in res.remedies)))


#: The issue's figures: auto over synchronous on a free-threaded build with the GIL off, and auto's
#: regret against the fastest explicit configuration the diagnosis calls safe.
AUTO_OVER_SYNC_GIL_OFF = 1.6
REGRET_AT_MOST = 1.05


@dataclass(frozen=True)
class Reading(Record):
    """One environment's and format's figures against the issue's targets, over the repetitions:
    auto's speedup over synchronous (median of per-repetition ratios and their range), its regret,
    whether every run gave synchronous's answer and every pick was one the diagnosis allows."""

    environment: str
    format: str
    repetitions: int
    auto_over_sync: float | None
    auto_over_sync_range: tuple[float, ...]
    auto_picks: dict[str, int]
    fastest_safe: str | None  # the explicit safe configuration with the least median time
    fastest_safe_over_sync: float | None
    regret: float | None
    regret_range: tuple[float, ...]
    every_run_right: bool
    auto_always_safe: bool
    target_speedup: float | None  # the figure for auto over synchronous here (None: none set)
    met: tuple[str, ...]
    missed: tuple[str, ...]


def _spread(xs: Sequence[float | None]) -> tuple[float | None, tuple[float, ...]]:
    found = [x for x in xs if x is not None]
    return (round(statistics.median(found), 3), (min(found), max(found))) if found else (None, ())


def to_fastest(res: Summary, fastest: str) -> list[float | None]:
    """Per repetition, auto's time over ``fastest``'s in the same repetition (from the ratios to
    that repetition's synchronous run). This is the regret the figure means: against the fastest
    safe scheduler, the one with the least median time. A repetition's own best of the explicit
    runs is an order statistic: on the netCDF load (1.6 s runs, four configurations timed) it
    made a synchronous auto look 6% slower than synchronous, whose median it matched."""
    auto, lead = res.ratios_to_synchronous.get("auto", ()), res.ratios_to_synchronous.get(fastest, ())
    return [round(b / a, 3) if a and b else None for a, b in zip(auto, lead)]


def read(res: Summary) -> Reading:
    """``res`` against the targets: which are met and which missed, in words a table can show."""
    speed, speed_range = _spread(res.ratios_to_synchronous.get("auto", ()))
    safe = {n: res.median_seconds[n] for n in res.safe_explicit if n in res.median_seconds and res.correct.get(n)}
    fastest = min(safe, key=safe.__getitem__) if safe else None
    regret, regret_range = _spread(to_fastest(res, fastest) if fastest else res.regrets)
    picks: dict[str, int] = {}
    for row in res.repetitions:
        picks[row.auto_choice or "failed"] = picks.get(row.auto_choice or "failed", 0) + 1
    right = all(res.correct.get(n, False) for n in (*res.safe_explicit, "auto"))
    target = AUTO_OVER_SYNC_GIL_OFF if res.gil == GilState.OFF else None
    checks = {f"auto >= x{target} synchronous": speed is not None and speed >= target} if target else {}
    checks[f"auto within {REGRET_AT_MOST - 1:.0%} of the fastest safe"] = regret is not None and regret <= REGRET_AT_MOST
    checks["every safe run right"] = right
    checks["no unsafe pick"] = bool(res.auto_safe) and all(res.auto_safe)
    return Reading(res.environment, res.format, len(res.repetitions), speed, speed_range, picks, fastest,
                   res.speedup.get(fastest) if fastest else None, regret, regret_range, right,
                   bool(res.auto_safe) and all(res.auto_safe), target,
                   tuple(k for k, ok in checks.items() if ok), tuple(k for k, ok in checks.items() if not ok))


def table(result: Result) -> list[str]:
    """One table: per environment and format, each configuration's median, spread and speedup."""
    lines = [f"{'environment':28s} {'fmt':3s} {'configuration':26s} {'median':>8s} {'range':>15s} {'x sync':>7s}  "
             "per repetition / notes"]
    for res in result.environments:
        for name, runs in res.runs.items():
            failed = sorted({r.failed for r in runs if r.failed})
            if name not in res.median_seconds:
                lines.append(f"{res.environment:28s} {res.format:3s} {name:26s} {'':>8s} {'':>15s} {'':>7s}  "
                             f"every run failed: {'; '.join(failed)}")
                continue
            median = res.median_seconds[name]
            low, high = res.seconds_range.get(name, (median, median))
            ratios = list(res.ratios_to_synchronous.get(name, ()))
            note = "" if res.correct.get(name) else f"  (answers differ or runs failed: {'; '.join(failed)})"
            if name == "auto":
                note += f"  picks {statistics.mode(r.auto_choice or '?' for r in res.repetitions)}; " \
                        f"over each repetition's best {list(res.regrets)}; safe {list(res.auto_safe)}"
            lines.append(f"{res.environment:28s} {res.format:3s} {name:26s} {median:7.2f}s "
                         f"{low:6.2f}-{high:6.2f}s x{res.speedup.get(name, 0):5.2f}  {ratios}{note}")
    for found in (read(res) for res in result.environments):
        lines.append(f"{found.environment} {found.format}: auto x{found.auto_over_sync} of synchronous "
                     f"{list(found.auto_over_sync_range)}, regret to {found.fastest_safe} {found.regret} "
                     f"{list(found.regret_range)}; "
                     f"met: {', '.join(found.met) or 'none'}; missed: {', '.join(found.missed) or 'none'}")
    return lines


def plot(result: Result, path: Path) -> Path:
    """Seconds per configuration (bar: median; dots: repetitions), a panel per format, grouped by
    environment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formats = sorted({res.format for res in result.environments})
    rows = max(sum(len(r.runs) for r in result.environments if r.format == fmt) for fmt in formats)
    fig, axes = plt.subplots(1, len(formats), figsize=(11 * len(formats), 1.5 + 0.4 * rows), squeeze=False)
    colours = ["#90caf9", "#ffcc80", "#a5d6a7", "#ce93d8"]
    for ax, fmt in zip(axes[0], formats):
        labels, k = [], 0
        for e, res in enumerate(r for r in result.environments if r.format == fmt):
            for name, runs in res.runs.items():
                median = res.median_seconds.get(name, 0.0)
                ax.barh(k, median, color=colours[e % len(colours)])
                xs = [r.seconds for r in runs if r.seconds is not None]
                ax.scatter(xs, [k] * len(xs), color="#263238", s=8, zorder=3)
                failed = sorted({r.failed.split(":")[0] for r in runs if r.failed})
                ax.text(median, k, (f" x{res.speedup[name]:.2f}" if name in res.speedup else "")
                        + (f"  {len([r for r in runs if r.failed])} of {len(runs)} failed ({', '.join(failed)})"
                           if failed else ""), va="center", fontsize=7)
                labels.append(f"{res.environment}: {name}")
                k += 1
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{result.workload} {fmt}: medians of {result.repeats} (dots: each run)", fontsize=9)
        ax.set_xlabel("seconds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
