"""The ``threadprobe`` command line: the parser, and one small function per command that hands
the work to the stage that does it.

Exit codes: 0 when the command completed (a diagnosis that finds crashes still completed),
1 when a gate failed (a regression, ``--fail-on unsafe``), 2 for bad usage or bad input,
which always gets one line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from threadprobe.report import benchfile, bugreport
from threadprobe.harness import fpstore
from threadprobe.report import html as htmlreport
from threadprobe.scheduling import pipeline
from threadprobe.probe import registry
from threadprobe.harness import available
from threadprobe import report
from threadprobe.report.compare import compare, summary
from threadprobe.diagnosis.options import (EvidenceOptions, Grid, Launch, Options, Output, Planner, RaceOptions,
                                           Selection)
from threadprobe.diagnosis.races.run import DEFAULT_CALLS, MAX_THREADS
from threadprobe.records.errors import UsageError
from threadprobe.harness.proc import free_threaded, interpreter_of
from threadprobe.records import (DIAGNOSIS_SCHEMA, SCHEDULERS, Auto, Cluster, GilState, RaceSchedule, RaceTool,
                                 RemedySearch, RunRequest, Start)
from threadprobe.harness.valgrind import TOOLS, valgrind
from threadprobe.diagnosis.progress import make_progress
from threadprobe.scheduling import pilot
from threadprobe.scheduling.runs import bench, builds
from threadprobe.scheduling.runs.wind import RunResult
from threadprobe.scheduling.runs.data import DataSpec, make_data
from threadprobe.scheduling.schedulers import WorkersLost, as_env, as_yaml, parse_lock, parse_scheduler
from threadprobe.scheduling.workloads import WORKLOADS
from threadprobe.scheduling.runs.wind import CIRCULAR_HELP
from threadprobe.report.validate import errors

DATA_FORMATS = ("nc", "pp")
QUIET_HELP = "no progress display (the results are still shown)"
DEFAULT_BUDGET = 130.0  # seconds for all trials but the relied-on probes' (RELY_BUDGET); evidence comes on top
QUICK_BUDGET = 40.0  # the same for --quick: < 60 s in all (45 s made 61 s)
EXTRA_STATE = 0.75  # of a budget, per GIL state beyond the first (free-threaded builds: both by default)
#: Seconds per GIL state beyond the budget for the probes a scheduler choice relies on
#: (plan.Policy.rely_budget): on 2 cores their trials took 123 s of a make diagnose with their
#: threads cells at 29 trials and three timing trials a cell, where they took 18 s of the budget
#: before (and the other probes 101 s).
RELY_BUDGET = 100.0
# MiB per file: 8 pairs make 35 to 46 s of serial work per format here (a run of about 22 s on 2
# cores, too short to pilot: pilot.SHORT_RUN), on the bench's grid (--grid, N640's size), whose
# fields weigh what model output's do.
BENCH_DATA_DIR = "reports/bench-data"
BENCH_DATA = {"nc": 192.0, "pp": 200.0}
#: The Met Office study's files were 1.5 GB each: two x/y pairs of them per format, at least 1.5 GB
#: each on disk (MiB of data per file: netCDF's zlib keeps 85% of it, PP stores it whole).
STUDY_FILES = 2
STUDY_SIZE_MB = {"nc": 1700.0, "pp": 1536.0}
STUDY_DATA = "reports/bench-data/study"
#: The load experiment across builds: many files of many small fields (metadata-only loading costs
#: per field): 128 files of 128 fields, about 30 s of serial loading of PP here, beyond the pilot's
#: SHORT_RUN (64 files took 15 to 17 s: auto never piloted and took its fallback).
LOAD_DATA, LOAD_FILES, LOAD_SIZE_MB, LOAD_GRID = "reports/bench-data/load", 64, 1.5, "48x64"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _positive(text: str, convert: type, what: str) -> Any:
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _positive(text, int, "a positive integer")


def count(text: str) -> int:
    """A count that may be zero (trials of a kind, model levels)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A probability bound: strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {text!r}")
    return value


def positive_float(text: str) -> float:
    return _positive(text, float, "a positive number")


DESCRIPTION = """\
Measure whether the Iris stack's native libraries (netCDF-C, HDF5, udunits2 and the Python
packages around them) are safe and fast under threads and processes, and choose a dask scheduler
from what was measured.

Start with `threadprobe diagnose` (writes reports/diagnosis.json and .html), then
`threadprobe recommend` or `threadprobe run` for a workload. Each command has its own --help.

Exit codes: 0 done (a diagnosis that finds crashes is still done), 1 a gate failed
(--baseline regression, --fail-on unsafe), 2 bad usage or input (one line, no traceback)."""


def _version() -> str:
    try:
        return importlib.metadata.version("threadprobe")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="threadprobe", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"threadprobe {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_diagnose, _add_report_readers, _add_recommend_and_data, _add_run, _add_bench):
        add(sub)
    return parser


def _add_diagnose(sub: Any) -> None:
    """``diagnose``: which probes, which modes, how long, the race pass and the gates."""
    d = sub.add_parser("diagnose", help="run the probes in isolated children and write reports/diagnosis.json")
    d.add_argument("--probe", action="append", default=[], metavar="GLOB", help="probes to run (repeatable)")
    d.add_argument("--plugin", action="append", default=[], metavar="FILE.py", help="load probes from a file")
    d.add_argument("--no-entry-points", action="store_true", help="only the probes of --plugin files")
    d.add_argument("--gil", choices=[*(g.value for g in GilState), "both"], default=None,
                   help="the GIL states of the threads modes on a free-threaded interpreter (--python): as the "
                        "imports leave it (as_imported), forced off (off: PYTHON_GIL=0), or both side by side "
                        "(both, the default there); a GIL build has only as_imported")
    d.add_argument("--threads", type=int_list, default=None, metavar="N,M",
                   help=f"thread counts (default {','.join(map(str, Grid.threads))})")
    d.add_argument("--processes", type=int_list, default=None, metavar="N",
                   help=f"process counts (default {','.join(map(str, Grid.processes))})")
    d.add_argument("--trials", type=count, default=None, metavar="N",
                   help=f"stress trials every concurrent mode gets before the adaptive ones (default {Planner.trials}: "
                        "the timing trials count)")
    d.add_argument("--timing-trials", type=count, default=None, metavar="N",
                   help=f"bare timing trials per mode, for speedups and thread states (default {Planner.timing_trials})")
    d.add_argument("--target", type=fraction, default=None, metavar="BOUND",
                   help=f"a clean mode stops when its failure-rate bound is this low (default {Planner.target:g})")
    d.add_argument("--python", default=None, metavar="PATH",
                   help="diagnose another interpreter's libraries (a system Python, a conda env, a build tree's "
                        "venv): only the libraries under test need to be installed there")
    d.add_argument("--iterations", type=positive_int, default=None, metavar="K",
                   help="tasks per trial (default: the probe's own, else 100)")
    d.add_argument("--budget", type=positive_float, default=None, metavar="SECONDS",
                   help=f"seconds for the trials (default {DEFAULT_BUDGET:g}, with --quick {QUICK_BUDGET:g}); the "
                        f"adaptive trials stop there, and up to {RELY_BUDGET:g} s more per GIL state (not with "
                        "--quick) top up the threads cells a scheduler choice relies on")
    d.add_argument("--timeout", type=positive_float, default=None, metavar="SECONDS",
                   help=f"no progress for this long is a hang (default {Launch.timeout:g})")
    d.add_argument("--quick", action="store_true", help="widest modes only, stop a mode at its first failure")
    d.add_argument("--start", choices=[s.value for s in Start], default=Launch.start.value,
                   help="fork workers from a warm fork server (default) or spawn fresh interpreters")
    d.add_argument("--out", default="reports", metavar="DIR", help="report folder (default reports)")
    d.add_argument("--no-evidence", action="store_true", help="skip reproducers, remedies and the lock audit")
    d.add_argument("--remedies", choices=[r.value for r in RemedySearch], default=EvidenceOptions.remedies.value,
                   help="remedies to verify for probes unsafe under threads: for the first of each dependency, the "
                        "narrowest lock that holds (first, the default); every suspect library's lock and the global "
                        "lock, for every unsafe probe (all); none")
    d.add_argument("--keep", action="store_true", help="keep the trial folders (printed at the end)")
    d.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    d.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    d.add_argument("--baseline", default=None, metavar="OLD.json",
                   help="compare with an earlier diagnosis; exit 1 if a safety verdict regressed")
    d.add_argument("--fail-on", choices=("unsafe",), default=None,
                   help="exit 1 if any probe fails under concurrency (a gate with no baseline)")
    d.add_argument("--races", nargs="?", const=RaceTool.HELGRIND.value, choices=[t.value for t in TOOLS], default=None,
                   help="also run each probe's concurrent work under valgrind's happens-before race detector "
                        "(helgrind, or drd): race pairs in the library make a cell racy")
    d.add_argument("--no-stress", action="store_true", help="with --races: the race pass alone, no stress trials")
    d.add_argument("--suppressions", action="append", default=[], metavar="FILE",
                   help="valgrind suppressions of your own, after threadprobe's (repeatable)")
    d.add_argument("--race-seconds", type=positive_float, default=None, metavar="S",
                   help=f"seconds of calls per probe under the detector (default {RaceOptions.seconds:g})")
    d.add_argument("--race-calls", type=positive_int, default=None, metavar="N",
                   help=f"calls per probe under the detector, at most (default: the probe's, else {DEFAULT_CALLS})")
    d.add_argument("--race-budget", type=positive_float, default=None, metavar="S",
                   help="seconds for the whole race pass; probes past it are not run (default: no limit)")
    d.add_argument("--race-threads", type=positive_int, default=None, metavar="T",
                   help=f"threads per probe under the detector (default: {MAX_THREADS}, fewer for a probe whose calls are slow; "
                        "more threads, more unordered pairs per call)")
    d.add_argument("--race-schedule", choices=[s.value for s in RaceSchedule], default=None,
                   help="meet (default): a thread that releases the GIL waits for another to release it too, "
                        "so their calls run unordered; natural: valgrind's own thread switches")



def _add_report_readers(sub: Any) -> None:
    """The commands that read probes, builds and reports: list, fingerprint, report-bug, compare, validate."""
    ls = sub.add_parser("list", help="every probe, its dependency, and whether it is available")
    ls.add_argument("--plugin", action="append", default=[], metavar="FILE.py")
    ls.add_argument("--python", default=None, metavar="PATH", help="whether another interpreter can run them")
    fp = sub.add_parser("fingerprint", help="print the fingerprint of the library builds as JSON")
    fp.add_argument("--python", default=None, metavar="PATH", help="another interpreter's builds")

    bug = sub.add_parser("report-bug", help="a Markdown issue body for an unsafe probe: builds, counts, frames, "
                                            "remedy and a plain reproducer")
    bug.add_argument("probe", metavar="PROBE")
    bug.add_argument("--diagnosis", default="reports/diagnosis.json", metavar="FILE")
    bug.add_argument("--out-file", default=None, metavar="FILE.md", help="write here (default: standard output)")

    c = sub.add_parser("compare", help="what changed between two diagnoses; exit 1 if a safety verdict regressed")
    c.add_argument("old", metavar="OLD.json")
    c.add_argument("new", metavar="NEW.json")
    c.add_argument("--json", action="store_true", help="print the comparison as JSON")
    c.add_argument("--html", default=None, metavar="FILE.html",
                   help="also write both diagnoses side by side, cell by cell, as an HTML page")

    v = sub.add_parser("validate", help=f"check a diagnosis.json against its JSON Schema ({DIAGNOSIS_SCHEMA}, or the "
                                          "older format it names)")
    v.add_argument("file", metavar="FILE")



def _add_recommend_and_data(sub: Any) -> None:
    """``recommend`` (a scheduler for a workload) and ``make-data`` (the runner's inputs)."""
    r = sub.add_parser("recommend", help="the dask scheduler a workload should use, from the diagnosis")
    r.add_argument("--diagnosis", default=None, metavar="FILE",
                   help="a diagnosis.json (default reports/diagnosis.json; re-diagnosed quickly if its "
                        "fingerprint no longer matches the installed libraries)")
    r.add_argument("--workload", default="wind", help="wind or load (the runner's subcommands)")
    r.add_argument("--data-format", choices=DATA_FORMATS, default=None, help="judge only this data format's probes")
    r.add_argument("--format", choices=("json", "yaml", "env"), default="json",
                   help="json, a dask config file (yaml), or shell exports (env)")
    r.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    r.add_argument("--x-wind", default=None, metavar="GLOB", help="with --y-wind: pilot the wind workload on this input")
    r.add_argument("--y-wind", default=None, metavar="GLOB")
    r.add_argument("--files", default=None, metavar="GLOB", help="pilot the load workload on these files")

    m = sub.add_parser("make-data", help="write UM-like x_wind/y_wind files for the runner")
    m.add_argument("--out", required=True, metavar="DIR")
    m.add_argument("--pairs", type=positive_int, default=8, metavar="N", help="x/y file pairs (default 8)")
    m.add_argument("--size-mb", type=positive_float, default=64.0, help="data per file, uncompressed (default 64; "
                   "the study's files were 1500)")
    m.add_argument("--data-format", choices=DATA_FORMATS, default="nc", help="netCDF (nc, the default) or PP")
    m.add_argument("--grid", default="480x640", metavar="NYxNX", help="latitudes x longitudes (default 480x640)")
    m.add_argument("--levels", type=count, default=0, help="model levels (default none)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--quiet", action="store_true", help=QUIET_HELP)



def _add_run(sub: Any) -> None:
    """``run wind`` and ``run load``, with the scheduler options both share."""
    run = sub.add_parser("run", help="run a study workload on the recommended (or a chosen) dask scheduler")
    runs = run.add_subparsers(dest="workload", required=True, parser_class=_Parser)

    w = runs.add_parser("wind", help="wind speed and direction from x/y wind, and their variances over time",
                        description="Load x_wind and y_wind lazily with Iris, derive wind speed and "
                                    "wind_from_direction (degrees, meteorological), and save the variance of "
                                    f"speed over time and the circular variance of direction. The {CIRCULAR_HELP}.")
    w.add_argument("--x-wind", required=True, metavar="GLOB", help="files with x_wind (may be the same as --y-wind)")
    w.add_argument("--y-wind", required=True, metavar="GLOB", help="files with y_wind")
    w.add_argument("--out-file", required=True, metavar="FILE.nc", help="written atomically")
    ld = runs.add_parser("load", help="parallel metadata-only iris.load of many files, merged into one CubeList")
    ld.add_argument("--files", required=True, metavar="GLOB")
    for p in (w, ld):
        p.add_argument("--scheduler", default=Auto.AUTO.value,
                       choices=[Auto.AUTO.value, *(s.value for s in SCHEDULERS)],
                       help="auto (default) takes the recommendation from the diagnosis")
        p.add_argument("--lock", action="append", default=[], metavar="LIBRARY|global",
                       help="with --scheduler threads: hold a lock around every call into this library (its package "
                            "name, e.g. cf_units), or one global lock around every task (repeatable)")
        p.add_argument("--workers", type=positive_int, default=None, help="processes or distributed workers")
        p.add_argument("--threads-per-worker", type=positive_int, default=None)
        p.add_argument("--address", default=None, metavar="tcp://HOST:PORT", help="an existing dask scheduler")
        p.add_argument("--cluster", choices=[c.value for c in Cluster], default=Cluster.LOCAL.value,
                       help="local (LocalCluster) or slurm (dask-jobqueue, configured in dask's config files)")
        p.add_argument("--adapt", default=None, metavar="MIN:MAX", help="adaptive scaling of distributed workers")
        p.add_argument("--diagnosis", default=None, metavar="FILE", help="for --scheduler auto")
        p.add_argument("--no-cache", action="store_true", help="pilot again even if this input's choice is cached")
        p.add_argument("--quiet", action="store_true", help=QUIET_HELP)



def _add_bench(sub: Any) -> None:
    """``bench``: the runner's workloads under every scheduler, side by side."""
    bn = sub.add_parser("bench", help="the runner's workloads under every scheduler, side by side")
    bn.add_argument("workload", choices=("wind", "load"))
    bn.add_argument("--data", default=BENCH_DATA_DIR, metavar="DIR",
                    help="bench data (made here if missing: 8 x/y pairs per format, 2.5 to 4 GiB each)")
    bn.add_argument("--data-format", action="append", choices=DATA_FORMATS, default=None,
                    help="nc or pp (repeatable; default both)")
    bn.add_argument("--repeats", type=positive_int, default=3)
    bn.add_argument("--fresh", action="store_true", help="start every repetition from a fresh diagnosis")
    bn.add_argument("--pairs", type=positive_int, default=8, metavar="N",
                    help="x/y file pairs of bench data to make (default 8)")
    bn.add_argument("--size-mb", type=positive_float, default=None,
                    help="MiB per file of bench data (default 192 for nc, 200 for pp)")
    bn.add_argument("--grid", default="960x1280", metavar="NYxNX", help="grid of bench data (default 960x1280)")
    bn.add_argument("--study-scale", action="store_true",
                    help=f"the study's own scale: {STUDY_FILES} x/y pairs of files of 1.5 GB or more per format "
                         f"(kept in {STUDY_DATA}), and auto, synchronous, threads and processes only")
    bn.add_argument("--diagnosis", default=None, metavar="FILE", help="for auto, and to judge which modes are safe")
    bn.add_argument("--out", default="reports", metavar="DIR")
    bn.add_argument("--python", action="append", default=[], metavar="PATH",
                    help="run on these interpreters side by side (repeatable; a free-threaded one runs with the GIL "
                         "as imported and forced off), each from a diagnosis made in it with every remedy verified, "
                         "threads also holding each verified remedy; writes reports/bench-builds-WORKLOAD.json "
                         "(-FORMAT with one --data-format, -gil-STATE with one --gil state)")
    bn.add_argument("--gil", choices=("as_imported", "off", "both"), default="both",
                    help="with --python, the GIL states of a free-threaded interpreter (default both)")
    bn.add_argument("--budget", type=positive_float, default=120.0, metavar="SECONDS",
                    help="with --python, seconds of trials for each interpreter's diagnosis (default 120)")
    bn.add_argument("--turn-lock", default=None, metavar="FILE",
                    help="with --python, flock FILE around each diagnosis and each run (a turn per run on a machine "
                         "shared with other heavy jobs that lock the same file)")


def cmd_diagnose(args: argparse.Namespace) -> int:
    out = Path(args.out)
    for plugin in args.plugin:
        if not Path(plugin).is_file():
            raise UsageError(f"plugin file not found: {plugin}")
    if args.python:
        interpreter_of(args.python)  # a missing interpreter fails before any work
    check_races(args)
    options = options_of(args, out)
    # Read the baseline first: it may be the very file this diagnosis is about to overwrite.
    baseline = report.read(args.baseline) if args.baseline else None
    diagnosis = pipeline.diagnose(options, progress=make_progress(args.quiet))
    comparison = None
    if baseline is not None:
        comparison = compare(baseline, diagnosis)
    path = report.write(diagnosis, out)
    page = htmlreport.write(diagnosis, out, comparison)
    report.console_table(diagnosis)
    print(f"wrote {path} and {page}", file=sys.stderr)
    code = 0
    if comparison is not None:
        print("\n".join(summary(comparison)))
        code = 1 if comparison.regressed else 0
    if args.fail_on == "unsafe":
        unsafe = report.unsafe(diagnosis)
        if unsafe:
            print(f"UNSAFE: {'; '.join(unsafe)}")
            code = 1
    return code


#: The probes whose threads cells ``run``, ``recommend`` and ``threadprobe.scheduler`` rely on: the
#: workloads'. A diagnosis tops their threads cells up first (``plan.Policy.rely``).
RELIED = frozenset(p for w in WORKLOADS.values() for p in w.probes_for())


def options_of(args: argparse.Namespace, out: Path) -> Options:
    """The diagnosis the flags ask for; a flag not given leaves the record's default."""
    states = gil_states(args.gil, args.python)
    return Options(
        Selection(tuple(args.probe), tuple(str(Path(p).resolve()) for p in args.plugin), not args.no_entry_points),
        Grid(**given(threads=args.threads, processes=args.processes), gil=states, quick=args.quick),
        Planner(**given(trials=args.trials, timing_trials=args.timing_trials, iterations=args.iterations,
                        target=args.target), stress=not args.no_stress,
                budget=args.budget or default_budget(args.quick, states), rely=RELIED,
                rely_budget=0.0 if args.quick else RELY_BUDGET * len(states)),
        Launch(Start(args.start), args.python, **given(timeout=args.timeout)),
        evidence=None if args.no_evidence else EvidenceOptions(remedies=RemedySearch(args.remedies)),
        races=race_options(args),
        output=Output(str(out), args.workdir, args.keep),
    )


def given(**flags: Any) -> dict[str, Any]:
    """The flags the user gave (argparse leaves the others None), so that a default is the record's."""
    return {name: value for name, value in flags.items() if value is not None}


def race_options(args: argparse.Namespace) -> RaceOptions | None:
    """The race pass the user asked for (--races and its --race-* flags), or None."""
    if not args.races:
        return None
    schedule = RaceSchedule(args.race_schedule) if args.race_schedule else None
    return RaceOptions(RaceTool(args.races), suppressions=tuple(str(Path(p).resolve()) for p in args.suppressions),
                       **given(threads=args.race_threads, calls=args.race_calls, seconds=args.race_seconds,
                               budget=args.race_budget, schedule=schedule))


def default_budget(quick: bool, states: tuple[GilState, ...]) -> float:
    """Seconds for the trials: a second GIL state doubles the threads cells, so it adds most of a
    budget's worth. A default diagnosis of the GIL build took 4 min 47 s on 2 cores (2026-12-08)."""
    return (QUICK_BUDGET if quick else DEFAULT_BUDGET) * (1 + EXTRA_STATE * (len(states) - 1))


def gil_states(asked: str | None, python: str | None) -> tuple[GilState, ...]:
    """The GIL states to diagnose: both by default on a free-threaded interpreter, where forcing the
    GIL off is the point; the one state of a GIL build, where asking for ``off`` is an error."""
    ft = free_threaded(python)
    if asked in ("off", "both") and not ft:
        raise UsageError(f"--gil {asked} needs a free-threaded interpreter (CPython built with --disable-gil); "
                         f"{interpreter_of(python)[0]} has the GIL")
    if asked == "both" or (asked is None and ft):
        return (GilState.AS_IMPORTED, GilState.OFF)
    return (GilState(asked),) if asked else (GilState.AS_IMPORTED,)


def check_races(args: argparse.Namespace) -> None:
    """The race pass's options make sense, and valgrind is there, before any work."""

    if args.no_stress and not args.races:
        raise UsageError("--no-stress leaves nothing to run without --races")
    if (args.suppressions or args.race_seconds or args.race_calls or args.race_budget or args.race_threads
            or args.race_schedule) and not args.races:
        raise UsageError("--suppressions and --race-* options need --races")
    if args.races and valgrind() is None:
        raise UsageError("--races needs valgrind, which is not installed here (Debian: apt-get install valgrind)")
    if args.race_threads is not None and args.race_threads < 2:
        raise UsageError("--race-threads needs at least 2 threads: a race is between two")
    for path in args.suppressions:
        if not Path(path).is_file():
            raise UsageError(f"suppressions file not found: {path}")


def cmd_list(args: argparse.Namespace) -> int:
    table = Table(title=f"threadprobe probes ({args.python or sys.executable})")
    for col in ("probe", "dependency", "available", "what it does"):
        table.add_column(col)
    for info in available.availability(registry.discover(args.plugin), args.python):
        table.add_row(info.name, info.dependency, "yes" if info.available else f"no: {info.reason}", info.doc)
    Console(width=200).print(table)
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    if args.python:
        interpreter_of(args.python)
    json.dump(fpstore.collect(args.python), sys.stdout, indent=1)
    print()
    return 0


def cmd_report_bug(args: argparse.Namespace) -> int:
    text = bugreport.markdown(report.read(args.diagnosis), args.probe)
    if args.out_file:
        Path(args.out_file).write_text(text)
        print(f"wrote {args.out_file}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    pipeline.workload(args.workload)  # bad names fail before any work
    if args.x_wind or args.y_wind or args.files:
        choice = pipeline.pilot_only(args.workload, args.x_wind, args.y_wind, args.files, args.diagnosis,
                                     progress=make_progress(args.quiet))
    else:
        choice = pipeline.recommend(args.workload, args.diagnosis, args.data_format,
                                    progress=make_progress(args.quiet))
    if args.format == "json":
        print(json.dumps(choice.to_json(), indent=1))
    elif args.format == "yaml":
        print(as_yaml(choice), end="")
    else:
        print(as_env(choice), end="")
    for line in pilot.rows_table(choice):
        print(f"  {line}", file=sys.stderr)
    return 0


def parse_grid(text: str) -> tuple[int, int]:
    try:
        ny, nx = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--grid expects NYxNX, got {text!r}") from None
    if ny < 2 or nx < 2:
        raise UsageError(f"--grid needs at least 2x2 points, got {text!r}")
    return ny, nx


def cmd_make_data(args: argparse.Namespace) -> int:
    ny, nx = parse_grid(args.grid)
    spec = DataSpec(Path(args.out), args.pairs, args.size_mb, args.data_format, ny, nx, args.levels, args.seed)
    written = make_data(spec, progress=make_progress(args.quiet))
    total = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} files ({spec.times} time steps each, {total / 2**20:.0f} MiB on disk) to {spec.out}",
          file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    progress = make_progress(args.quiet)
    request = RunRequest(scheduler=parse_scheduler(args.scheduler), workers=args.workers,
                         threads_per_worker=args.threads_per_worker, address=args.address, cluster=Cluster(args.cluster),
                         adapt=args.adapt, diagnosis=args.diagnosis, cache=not args.no_cache,
                         locks=tuple(parse_lock(x) for x in args.lock))
    result = (pipeline.run_wind(args.x_wind, args.y_wind, Path(args.out_file), request, progress)
              if args.workload == "wind" else pipeline.run_load(args.files, request, progress))
    choice = result.choice
    table = pilot.table(result.pilot) if result.pilot is not None else []
    why = [f"scheduler: {choice.describe()} [{choice.source}]",
           *(f"  {line}" for line in dict.fromkeys([*choice.rationale, *table]))]  # the pilot's rule is in both
    print("\n".join(why), file=sys.stderr)
    spent = f"pilot {result.pilot.seconds:.1f}s, " if result.pilot is not None and result.pilot.rows else ""
    if isinstance(result, RunResult):
        memory = f", peak memory {result.peak_memory / 2**30:.2f} GiB" if result.peak_memory else ""
        print(f"wind: {choice.describe()} in {result.seconds:.1f}s ({spent}compute {result.compute_seconds:.1f}s)"
              f"{memory}; wrote {result.out}")
    else:
        piloted = f" ({spent.rstrip(', ')})" if spent else ""
        print(f"load: {choice.describe()} in {result.seconds:.1f}s{piloted}; {result.files} files "
              f"into {result.cubes} cube(s)")
        for line in result.summary:
            print(f"  {line}")
    return 0




def cmd_bench(args: argparse.Namespace) -> int:
    formats = list(dict.fromkeys(args.data_format or DATA_FORMATS))
    study = args.study_scale
    data = bench_data(args, formats)
    if args.python:
        return bench_builds(args, data, formats)
    result = bench.bench(args.workload, data, formats, args.repeats, args.fresh, args.diagnosis,
                         progress=make_progress(),
                         configs=bench.STUDY_CONFIGS if study else None)
    out = Path(args.out)
    name = f"{args.workload}-study" if study else args.workload
    path = bench.write(result, out, name)
    picture = bench.plot(result, out / f"bench-{name}.png")
    for res in result.formats.values():
        print(f"{args.workload} {res.format} ({res.input_bytes / 2**30:.2f} GiB, {res.input_files} files), "
              f"medians of {args.repeats}:")
        for config, seconds in res.median_seconds.items():
            mark = "" if res.correct.get(config) else "  (results differ or runs failed)"
            low, high = res.seconds_range.get(config, (seconds, seconds))
            peak = res.peak_memory_max.get(config)
            memory = f"  peak {peak / 2**30:.2f} GiB" if peak else ""
            print(f"  {config:12s} {seconds:8.2f}s ({low:.1f} to {high:.1f})  x{res.speedup.get(config, 0):.2f} "
                  f"(per repetition: {list(res.ratios_to_synchronous.get(config, ()))}){memory}{mark}")
        print(f"  auto's regret per repetition: {list(res.regrets)}")
        print(f"  pilot cost per repetition (share of auto's run): {list(res.pilot_shares)}")
        print(f"  best explicit scheduler's speedup over synchronous per repetition: {list(res.best_speedups)}")
        if any(x is not None for x in res.cached_decide_seconds):
            print(f"  a cached answer's decision, seconds per repetition: {list(res.cached_decide_seconds)}")
    kept = f"; the data is kept in {data} (rm -rf it to free the disk)" if study else ""
    print(f"wrote {path} and {picture}{kept}", file=sys.stderr)
    return 0


def bench_data(args: argparse.Namespace, formats: list[str]) -> Path:
    """Where the bench's input is, made there first if missing: the study's scale, the load
    experiment's many small files (with --python), or the wind bench's big ones."""
    study, load = args.study_scale, args.python and args.workload == "load" and args.data == BENCH_DATA_DIR
    data = Path(STUDY_DATA if study and args.data == BENCH_DATA_DIR else LOAD_DATA if load else args.data)
    files = STUDY_FILES if study else LOAD_FILES if load else args.pairs
    for fmt in formats:
        found = len(list((data / fmt).glob(f"x_wind_*.{fmt}")))
        if not found or (load and found < files):  # the load data's own folder: remade when it has too few
            print(f"threadprobe: making bench data in {data / fmt}", file=sys.stderr)
            ny, nx = parse_grid(LOAD_GRID if load else args.grid)
            size = STUDY_SIZE_MB[fmt] if study else LOAD_SIZE_MB if load else (args.size_mb or BENCH_DATA[fmt])
            make_data(progress=make_progress(), spec=DataSpec(data / fmt, files=files, size_mb=size, fmt=fmt, ny=ny, nx=nx))
    return data


def bench_builds(args: argparse.Namespace, data: Path, formats: list[str]) -> int:
    """``bench --python A --python B``: the workload on every interpreter and GIL state, one table."""
    states = tuple(GilState) if args.gil == "both" else (GilState(args.gil),)
    envs = builds.environments(args.python, states)
    out, name = Path(args.out), f"bench-builds-{args.workload}" + (f"-{formats[0]}" if len(formats) == 1 else "")
    name += f"-gil-{states[0]}" if len(states) == 1 and any(e.gil for e in envs) else ""  # one state: a file of its own

    def write(result: builds.Result) -> tuple[Path, Path]:
        return benchfile.write(out / f"{name}.json", result.to_json()), builds.plot(result, out / f"{name}.png")

    result = builds.run(args.workload, data, formats, envs, args.repeats, args.budget, progress=make_progress(),
                        lock=Path(args.turn_lock) if args.turn_lock else None, keep=out / f"{name}-diagnoses",
                        done=write)
    path, picture = write(result)
    print("\n".join(builds.table(result)))
    print(f"wrote {path} and {picture}", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    old, new = report.read(args.old), report.read(args.new)
    comparison = compare(old, new)
    if args.json:
        print(json.dumps(comparison.to_json(), indent=1))
    else:
        print("\n".join(summary(comparison)))
    if args.html:
        print(f"wrote {htmlreport.write_pair(old, new, comparison, Path(args.html))}", file=sys.stderr)
    return 1 if comparison.regressed else 0


def cmd_validate(args: argparse.Namespace) -> int:
    problems = errors(report.load_json(args.file))
    if problems:
        raise UsageError(f"{args.file} is not a valid report ({len(problems)} problems); first: {problems[0]}")
    print(f"{args.file}: valid")
    return 0


COMMANDS: dict[str, Any] = {
    "diagnose": cmd_diagnose,
    "list": cmd_list,
    "fingerprint": cmd_fingerprint,
    "recommend": cmd_recommend,
    "make-data": cmd_make_data,
    "run": cmd_run,
    "bench": cmd_bench,
    "compare": cmd_compare,
    "validate": cmd_validate,
    "report-bug": cmd_report_bug,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(COMMANDS[args.command](args))
    except UsageError as exc:
        print(f"threadprobe: error: {exc}", file=sys.stderr)
        return 2
    except WorkersLost as exc:
        print(f"threadprobe: run failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("threadprobe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
