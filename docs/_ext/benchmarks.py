"""The benchmark pages, made from ``reports/bench*.json`` at every docs build.

Each known benchmark has a title, the command that makes its file, and a short reading: what it
measures and the figure it aims at. The numbers come from the file alone (``render``), with the
machine, the date and the command the file records, and a plot of its raw repetitions. A
benchmark whose file is absent gets a page that says so and how to make it; a file no entry
knows gets a page of its own too, so nothing ``make bench`` writes is left off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_plugin_ft
from threadprobe.harness.proc import cache_home
from threadprobe.report import benchfile


@dataclass(frozen=True)
class Bench:
    stem: str  # reports/<stem>.json
    title: str
    make: str  # the command that writes it (make bench runs them all)
    reading: str  # what it measures and the figure to reach; never a measured number


_BUILDS = ("The runner's experiment on each interpreter and GIL state (a free-threaded build forced off with "
           "`PYTHON_GIL=0`), each from a diagnosis made there with every remedy verified: synchronous, threads as "
           "they are and holding each verified remedy, processes and auto, in rotating order, in fresh processes. "
           "Figures aimed at: with the GIL off, auto at least x1.6 synchronous with every run right; auto within 5% "
           "of the fastest configuration the diagnosis calls safe; no pick the diagnosis calls unsafe. The table "
           "below reads the file against them.")

BENCHMARKS = (
    Bench("bench", "Schedulers on the runner's workloads",
          "threadprobe bench wind --fresh --repeats 10; threadprobe bench load",
          "Every scheduler and `auto` run the wind study (and the load study) side by side, each repetition "
          "starting from a fresh diagnosis, in rotating order. Read the ratios to synchronous measured in the same "
          "repetition, not the seconds: one run against another moves by up to 14% on a shared machine. "
          "*Auto's regret* is its wall time, pilot included, over the fastest explicit scheduler of the same "
          "repetition; the figure aimed at is a regret of at most 1.10. The study's own scale "
          "(`threadprobe bench wind --study-scale --fresh --repeats 3`, files of 1.5 GB each) is the workload "
          "`wind-study`; there the figure aimed at is also a peak memory under 2 GiB whatever the input size."),
    Bench("bench-amplify", "Race amplification",
          "python tests/bench/amplify.py --rounds 100",
          "Each technique changes one thing from the baseline (2 threads, switch interval 1 us, 0.05 s of serial "
          "work per trial, no pinning, no start delay); trials are interleaved round-robin and failures counted per "
          "CPU-second of the workers. The diagnosis keeps the techniques that raise the rate on the defects here: "
          "compare each row with the baseline's, per defect."),
    Bench("bench-detection", "Detection power and verdict reproducibility",
          "python -m pytest -m bench tests/bench/test_detection_power.py",
          "Ten default diagnoses of every built-in probe plus a planted race that spoils a few per cent of "
          "2-thread trials. Aimed at: the planted race found in at least 9 of 10, and at least 99% of probe x mode "
          "cells with the same verdict in all ten."),
    Bench("bench-contention", "Contention classes beside a busy neighbour",
          "python -m pytest -m bench tests/bench/test_contention_noise.py",
          "Each case is a whole diagnosis of one probe while another process keeps a core busy, 20 times; the "
          "class (gil, library_lock, none) must be right in at least 19 of 20."),
    Bench("bench-contention-quick", "Contention classes from quick diagnoses",
          "python -m pytest -m bench tests/bench/test_contention_noise.py",
          "As above, with `--quick` diagnoses, which sample threads in one contention trial per probe."),
    Bench("bench-harness", "The harness's overhead",
          "python -m pytest -m bench tests/bench/test_harness_overhead.py",
          "A diagnosis of one trivial probe against the cost of starting as many fresh interpreters, side by side; "
          "aimed at: at most 3 times that cost."),
    Bench("bench-plugin-overhead", "The pytest plugin's cost on a suite that does not use it",
          "python -m pytest -m bench tests/bench/test_plugin_overhead.py",
          "Iris's PP unit tests with the plugin loaded and disabled, alternately; aimed at: under 5% overhead."),
    Bench("bench-plugin", "The pytest plugin on Iris's own suites",
          "python tests/bench/iris_suites.py",
          "Iris's thread-safety and netCDF suites under `--threadprobe-threads=2`, beside plain pytest and "
          "pytest-run-parallel; every failure's node id and label is kept for a hand check."),
    Bench("bench-plugin-ft", "The pytest plugin on the free-threaded build, beside pytest-run-parallel",
          "python tests/bench/plugin_freethreaded.py --rounds 10 --lock /tmp/threadprobe-heavy.lock",
          "Iris 3.16.2's netCDF suites (`iris/tests/integration/netcdf`, `iris/tests/unit/fileformats/netcdf`) on "
          "`.venv-ft` (CPython 3.13t) with `PYTHON_GIL=0`, in rounds of three sessions side by side in rotating order: "
          "a plain run, threadprobe with `--threadprobe-threads=2`, and pytest-run-parallel 0.10 with "
          "`--parallel-threads=2`. Aimed at: threadprobe's session finishes in at least 9 of 10 rounds, every crash "
          "is named to its test with its signal and frames, and its wall time over the plain run of the same round "
          "is stated. Tests that use `mocker`, `monkeypatch`, `pytest.warns` or `warnings.catch_warnings` run "
          "serially (process-wide tools), so they are named but never run in threads. The tests that fail plain "
          "here fail for this machine's setup, not for threads: Iris looks for `ncdump` and `ncgen` beside the "
          "interpreter, and the shared test data lacks a few files; threadprobe lists them as serial failures. "
          "How to read the labels of a crash: `thread-unsafe` unless the threads, each on its own fixtures, pass "
          "(that control runs only for a test with class- or module-scoped fixtures that can be set up twice); "
          "`shared state` when that control passes its three runs, which a rare library crash can do, so the list "
          "below gives every label a crashed test got across sessions. "
          "threadprobe isolates the test body, not the fixtures pytest sets up in its own process: a fixture that "
          "starts threads there (Iris's `DistributedScheduler` case starts a dask `distributed.Client`) keeps "
          "them running while tests fork, and a crash in pytest's process ends the session, which the section of "
          "dead sessions then shows."),
    Bench("bench-triage", "Not re-entrant or thread-unsafe",
          "python tests/bench/triage.py --busy",
          "Planted tests (one re-using its `tmp_path`, one that may pass once per process, a C race) in fresh "
          "sessions, at 1 and 3 iterations: each must get its own label every time."),
    Bench("bench-repro", "Reproducers",
          "python tests/bench/repro_rate.py reports/repro",
          "Every reproducer the last `make diagnose` wrote, run in fresh interpreters: how often each reproduces "
          "(aimed at: 4 of 5 runs or more)."),
    Bench("bench-races", "The race pass",
          "python tests/bench/races.py",
          "Each repetition a fresh `threadprobe diagnose --races --no-stress`: planted races found, clean code left "
          "clean, the real libraries' verdicts, whole passes' reproducibility, and the cost per probe."),
    Bench("bench-freethreaded", "The free-threaded build, diagnosed whole",
          "python tests/bench/freethreaded.py --lock /tmp/threadprobe-heavy.lock",
          "Fresh runs against `.venv-ft` (CPython 3.13 built with `--disable-gil`): the fingerprint names the module "
          "whose import turned the GIL back on (aimed at 10 of 10); default diagnoses with the GIL forced off find "
          "netCDF4's separate-file reads unsafe (at least 9 of 10) and h5py safe behind its own lock (10 of 10); "
          "the planted GIL-free, mutex and GIL-holding probes are classed `none`, `library_lock` and `gil` beside "
          "a busy neighbour (at least 19 of 20), and the interpreter's own per-object locks never make a class; "
          "a default diagnosis of every built-in probe in both GIL states takes at most 5 minutes. The probe whose "
          "work runs under a `threading.Lock` held by Python code (`ft.pylock`) is measured beside them but is not "
          "yet classed reliably: on this build a `threading.Lock` spins (`sched_yield`) before it parks, so on a "
          "loaded machine many of its waits are spent on a CPU, and in some diagnoses its lock share stays under "
          "the lock-bound 5%. Each planted run keeps the line its class was decided on (`waits`)."),
    Bench("bench-builds-load-pp-gil-off", "The load experiment on the free-threaded build: PP, the GIL forced off",
          "threadprobe bench load --python .venv-ft/bin/python --gil off --repeats 10 --data-format pp "
          "--turn-lock /tmp/threadprobe-heavy.lock",
          _BUILDS + " Read here: with the GIL off, threads as they are crash or fail in every run (heap corruption; "
          "udunits2 failing to parse a unit, since cf-units keeps its parser's state in globals and nothing orders "
          "the calls once the GIL is gone; a dict changed during iteration); the GIL stays off in every run. The "
          "remedy search's narrowest verified lock varies between diagnoses (a lock around all of Iris here; cf-units "
          "with Iris's `_epoch_date_hours` in an earlier one), and threads holding it stay slower than synchronous: "
          "`bench-remedy-share` shows the lock is not what holds them back. Processes are the fastest safe "
          "scheduler and auto picks them every time, without a pilot (the run is under `pilot.SHORT_RUN`): auto "
          "x1.64 of synchronous, the figure's x1.6 met, regret x1.00. Two of auto's ten runs were slow outliers "
          "(x0.75 and x1.05: a busy spell of the shared machine), which the median sets aside. The bench ran from a "
          "working tree that changed between repetitions in ways that touch only runs under 2 s of serial work and "
          "auto's start-up (0.2 s less from about the fifth repetition on)."),
    Bench("bench-builds-load-pp-gil-as_imported", "The load experiment on the free-threaded build: PP, the GIL as "
          "imported", "threadprobe bench load --python .venv-ft/bin/python --gil as_imported --data-format pp "
          "--repeats 10 --turn-lock /tmp/threadprobe-heavy.lock",
          _BUILDS + " Read here: importing netCDF4 turns the GIL back on (every run says so), so this is the "
          "free-threaded build running with a GIL, and no speed figure is set for it. Threads, as they are or "
          "holding a lock, are slower than synchronous; processes are the fastest explicit scheduler. The run is "
          "under the pilot's threshold, so auto takes processes by the diagnosis's speedups every time, without a "
          "pilot, and runs faster than the explicit processes scheduler in most repetitions: auto forks its pool "
          "after loading its two sample files serially, so the workers start with Iris imported, where the "
          "explicit pool's workers import it themselves (the likely cause, not measured apart)."),
    Bench("bench-builds-load-pp", "The load experiment on the GIL build: PP",
          "threadprobe bench load --python .venv/bin/python --repeats 10 --data-format pp",
          _BUILDS + " Read here: the GIL build alone, auto against each explicit scheduler. The run is under the "
          "pilot's threshold (`pilot.SHORT_RUN`), so auto is not piloted: it takes the candidate with the least "
          "projected time by the speedups its diagnosis measured (`choose.without_pilot`), a process pool's start-up "
          "counted. Auto's regret is then what that ranking misses, plus the pilot's two-file serial sample."),
    Bench("bench-builds-load-nc", "The load experiment on the GIL build: netCDF",
          "threadprobe bench load --python .venv/bin/python --repeats 10 --data-format nc --turn-lock /tmp/threadprobe-heavy.lock",
          _BUILDS + " Read here: threads as they are crash in every run (netCDF-C and HDF5 under concurrent opens). "
          "The run is short (1.6 s synchronous, about 1 s of serial work by the pilot's sample): under "
          "`choose.MIN_PARALLEL` auto takes no process pool, and two forked processes ran x0.78 here. Auto takes "
          "synchronous every time and matches it (x0.97 of synchronous per repetition, median of 10); its regret "
          "against the fastest safe scheduler by median (synchronous) is x1.03. Against each repetition's luckiest "
          "explicit run it reads x1.06: with four configurations of 1.6 s timed per repetition, one of them is "
          "often faster than its median by chance."),
    Bench("bench-builds-load-nc-gil-as_imported", "The load experiment with a GIL on both builds: netCDF, 16 big files",
          "threadprobe bench load --python .venv/bin/python --python .venv-ft/bin/python --gil as_imported "
          "--data-format nc --repeats 10 --data /work/bench-data-load --turn-lock /tmp/threadprobe-heavy.lock",
          _BUILDS + " Read here: the netCDF load on 16 files of the wind bench's data (2.6 GiB, 1.1 to 1.5 s "
          "synchronous, most of it the first file's one-time costs), not the load experiment's 128 small files "
          "(bench-builds-load-nc-128-gil-as_imported), on the GIL build and on 3.13t with the GIL as imported "
          "(netCDF4's import turns it back on), side by side. Auto takes synchronous in all 20 runs: the run is "
          "under `choose.MIN_PARALLEL`, where two processes ran x0.58 to x0.64 (their workers, forked from a cold "
          "parent in this bench's code, imported Iris themselves; an explicit forking pool now starts from a "
          "parent that ran the first file). On 3.13t auto is within 5% of the fastest safe scheduler "
          "(synchronous; regret x1.006). On the GIL build threads under one global lock ran x1.15 of synchronous, "
          "faster in all 10 repetitions (an earlier bench, on another machine, read x0.96): regret x1.087, "
          "missed. bench-load-thread finds the gain inside the tasks: the same `iris.load` calls take less on a "
          "worker thread than on the main thread; the diagnosis's speedups cannot foresee it, and a run of a "
          "second cannot pay a pilot."),
    Bench("bench-builds-load-nc-128-gil-as_imported", "The load experiment with a GIL on both builds: netCDF, "
          "128 files",
          "threadprobe bench load --python .venv/bin/python --python .venv-ft/bin/python --gil as_imported "
          "--data-format nc --repeats 10 --turn-lock /tmp/threadprobe-heavy.lock",
          _BUILDS + " Read here: the load experiment's own data (128 netCDF files of 1.5 MB, 1.5 to 2.2 s "
          "synchronous) on the GIL build and on 3.13t with the GIL as imported. On the GIL build threads crash in "
          "every run (SIGSEGV, SIGBUS), as the diagnosis said; auto takes synchronous, the fastest safe scheduler "
          "by median (regret x1.011; bench-builds-load-nc read x1.027 on another machine). On 3.13t the "
          "diagnosis's threads cell was clean in 17 stress trials (a 95% bound of 16% on the failure rate), and "
          "one explicit threads run of 10 crashed (`malloc(): unsorted double linked list corrupted`): within "
          "that bound, and a reason to hold a plain cell to the 29 trials a remedy needs before a choice relies "
          "on it. Auto took synchronous again, where two forked processes ran x1.10 (x0.94 to x1.52): the run's "
          "1 s of serial work is under `choose.MIN_PARALLEL`, a threshold measured on the GIL build, where the "
          "same pool ran x0.98 here. Regret x1.079, missed, by 0.17 s on a 2 s run."),
    Bench("bench-remedy-share", "How far a verified library lock lets threads go (3.13t, GIL off)",
          "python tests/bench/remedy_share.py",
          "Iris's PP loading on the free-threaded build with the GIL off, under the narrowest verified remedy (a "
          "lock around cf-units, one around Iris's `_epoch_date_hours`). The guards sum the seconds they hold their "
          "lock: each lock's share of a serial load, the bound that sets for two threads (Amdahl: the largest lock's "
          "held time, or half the run), and the speed-up two threads reach under the locks, with the cyclic "
          "collector on and off. The locks hold under a tenth of the run, so they allow x2.0; the threads reach far "
          "less, and unevenly (some runs slower than serial): what holds them back is the interpreter (its "
          "per-object locks, which spin in `sched_yield` before they park, and the collector's stop-the-world), "
          "not the remedy."),
    Bench("bench-builds-load-nc-gil-off", "The load experiment on the free-threaded build: netCDF, the GIL forced "
          "off", "threadprobe bench load --python .venv-ft/bin/python --gil off --repeats 10 --data-format nc "
          "--turn-lock /tmp/threadprobe-heavy.lock",
          _BUILDS + " Read here: threads as they are crash or give other answers in 6 of 10 runs (heap corruption, "
          "HDF5 and udunits2 errors). Iris's own netCDF lock (`iris.fileformats.netcdf._thread_safe_nc`) is not "
          "enough once the GIL is off: its 6 stress trials ended corrupt; only one global "
          "lock around every task verified safe (x1.00). The run is short (2.5 s synchronous, about 1 s of serial "
          "work by the pilot's sample, under `choose.MIN_PARALLEL`), where two forked processes ran x0.76: auto "
          "takes synchronous every time, within 5% of the fastest safe scheduler (regret x0.97). No safe "
          "scheduler reaches x1.6 on a run this short; the PP run, twelve times longer, does."),
    Bench("bench-builds-load-nc-640-gil-off", "The load experiment on the free-threaded build: netCDF at 640 "
          "files, the GIL forced off",
          "threadprobe bench load --python .venv-ft/bin/python --gil off --data reports/bench-data/load-640 "
          "--data-format nc --repeats 10 --turn-lock /tmp/threadprobe-heavy.lock --out reports/load-640 (made with "
          "threadprobe make-data --out reports/bench-data/load-640/nc --pairs 320 --size-mb 1.5 --grid 48x64 "
          "--data-format nc)",
          _BUILDS + " Read here: five times the files of the netCDF load above, to see whether a longer run lets "
          "a parallel scheduler reach x1.6. Threads as they are fail in every run (heap corruption, HDF5 and "
          "netCDF errors, a KeyError in Iris's loader). The diagnosis this bench made verified a lock around "
          "cf-units by 12 stress trials, the rule of its day; the real runs refuted it: threads holding it failed "
          "in 6 of 10 (a KeyError on Iris's `EncodedNetCDFDataProxy`, a dictionary changed during iteration, "
          "netCDF's 'Not a valid ID'), which is why a remedy now needs at least 29 clean trials. The later runs "
          "say that the file reads fine alone and name the scheduler. Processes are safe, and auto takes them "
          "every time without a pilot; two forked processes still reach only about x1.2 of synchronous here, "
          "short of x1.6, while the PP load reaches it."),
    Bench("bench-pool-start", "What starting a process pool costs",
          "python tests/bench/pool_start.py",
          "A pool of 2 worker processes, started as the processes scheduler starts it, each running one task that "
          "imports Iris's PP loading, while the parent has imported it already: seconds from creating the pool to "
          "both results, per start method. A choice made without a pilot charges a processes candidate this "
          "start-up (`choose.POOL_START`)."),
    Bench("bench-builds-load", "The load experiment on both builds, both formats and GIL states",
          "threadprobe bench load --python .venv/bin/python --python .venv-ft/bin/python --repeats 10", _BUILDS),
    Bench("bench-builds-wind", "The wind experiment on both builds, both formats and GIL states",
          "threadprobe bench wind --python .venv/bin/python --python .venv-ft/bin/python --repeats 5 "
          "--turn-lock /tmp/threadprobe-heavy.lock",
          _BUILDS + " Read here: the wind study at the bench's size (8 x/y pairs per format on a 960x1280 grid), "
          "about 35 to 40 s of serial work. Every diagnosis calls every scheduler safe for it, in all three "
          "environments, and every run gave synchronous's answer: Iris reads the chunks under its own netCDF "
          "lock, and the arithmetic is numpy's. Threads pay on both builds. With the GIL off auto is within 5% of "
          "the fastest safe scheduler and over x1.6; with a GIL (the GIL build, and 3.13t as imported) it is "
          "8 to 14% slower than the fastest here, a figure missed then and met since (bench-builds-wind-gil-"
          "as_imported, 10 repetitions, no pilot on a run this short). The serial work straddles the pilot's threshold "
          "(`pilot.SHORT_RUN`), so some repetitions pilot and some do not. A pilot costs 3 to 13% of the run, and "
          "it projects processes much slower than they run: on the GIL build's netCDF, 28.6 to 30.1 s projected "
          "against 18.9 s run, while threads were projected at 23.5 to 25.1 s and ran 21.3 s. Each of the pilot's "
          "batches returns every task's sums from the worker processes (about 50 MB a task), where the whole run "
          "does so once per worker; the projection scales that per-batch cost by batches the run does not have. "
          "That is the likely cause, not yet measured apart."),
    Bench("bench-pilot-batch", "What a pilot batch costs whatever its size",
          "python tests/bench/pilot_batch.py --data reports/bench-data",
          "The wind job on the bench data, on 2 threads and 2 forked processes side by side: batches of 2, 4 and "
          "8 units (2 tasks each, as the pilot sends them), in rotating order. A line through each size's median "
          "gives a batch's fixed cost (its intercept: the tasks' graphs sent, their sums allocated and shipped "
          "back) and the cost per unit (its slope). A whole run pays the fixed cost once, so the pilot projects "
          "it once (`pilot.fixed_cost`, from batches of two sizes) instead of scaling it with the work."),
    Bench("bench-builds-wind-gil-as_imported", "The wind experiment with a GIL on both builds, 10 repetitions",
          "threadprobe bench wind --python .venv/bin/python --python .venv-ft/bin/python --gil as_imported "
          "--repeats 10 --turn-lock /tmp/threadprobe-heavy.lock",
          _BUILDS + " Read here: the wind study at the bench's size (8 x/y pairs per format, 960x1280), 43 to 48 "
          "s of serial work, on the GIL build and on 3.13t with the GIL as imported, after the pilot's threshold "
          "became a run's expected length on its fastest measured candidate (120 s; `pilot.SHORT_RUN`). No run "
          "is piloted: auto takes processes by the diagnosis's speedups in all 40, every run gives synchronous's "
          "answer, and no pick is unsafe. Threads and processes tie here (x1.60 to x1.85, within 2% of each "
          "other by median); auto is within 5% of the fastest safe scheduler in all four (regrets x1.035 and "
          "x1.010 on the GIL build's netCDF and PP, x0.982 and x0.994 on 3.13t), where the five repetitions "
          "before the change, half of them piloted, read x1.09 to x1.14."),
    Bench("bench-load-thread", "The GIL build's netCDF load: the main thread against a worker thread",
          "python tests/bench/load_thread.py",
          "Why threads under one global lock beat synchronous on the GIL build's netCDF load (x1.15 in the load "
          "bench, where auto took synchronous and missed its 5%), though the lock runs one task at a time. The 16 "
          "files are loaded side by side in fresh processes: synchronous, threads under the global lock, and one "
          "worker thread with no lock (as serial as synchronous, off the main thread), each task timed. Read here "
          "(6 repetitions): the gain is inside the tasks, not in dask's bookkeeping around them (0.20 s in every "
          "mode). The same `iris.load` calls take less on a worker thread: the first, which pays Iris's first "
          "netCDF load, 0.71 to 0.73 s against 0.78 s, and the other 15 together 0.16 to 0.18 s against 0.22 s. "
          "Threads under the lock run x1.14 of synchronous and one worker thread x1.07. With every thread in one "
          "malloc arena (`MALLOC_ARENA_MAX=1`, bench-load-thread-arena1) the lock's gain turns into a loss "
          "(x0.93) and the worker thread keeps x1.05: glibc's per-thread arenas, which the main thread shares "
          "with everything imported before, are the likely cause, not yet proven."),
    Bench("bench-load-thread-arena1", "The same, with every thread in one malloc arena",
          "MALLOC_ARENA_MAX=1 python tests/bench/load_thread.py --out reports/bench-load-thread-arena1.json",
          "bench-load-thread run with `MALLOC_ARENA_MAX=1`: threads under the global lock x0.93 of synchronous, "
          "one worker thread x1.05 (6 repetitions)."),
    Bench("bench-builds-wind-gil-off", "The wind experiment with the GIL off, beside the GIL build, 10 repetitions",
          "threadprobe bench wind --python .venv/bin/python --python .venv-ft/bin/python --gil off --repeats 10 "
          "--turn-lock /tmp/threadprobe-heavy.lock",
          _BUILDS + " Read here: the wind study at the bench's size (8 x/y pairs per format, 960x1280), 43 to 59 s "
          "of serial work, on 3.13t with the GIL forced off and on the GIL build beside it. No run is piloted "
          "(each is under the pilot's 120 s): auto takes processes by the diagnosis's speedups on both builds' "
          "netCDF and the GIL build's PP, and threads on 3.13t's PP; every run gives synchronous's answer and no "
          "pick is unsafe. With the GIL off auto runs x1.67 (netCDF) and x1.70 (PP) of synchronous, over the "
          "x1.6 asked, within 5% of the fastest safe scheduler (regrets x1.047 and x1.023). On the GIL build's "
          "netCDF auto's regret is x0.995; on its PP x1.065: threads ran x1.81 and processes x1.76 (medians, "
          "ranges overlapping), and auto, taking processes, x1.72. The same case read x1.010 in "
          "bench-builds-wind-gil-as_imported (10 repetitions, the same code path): a tie between threads and "
          "processes that the noise of 10 repetitions on this machine does not settle."),
    Bench("bench-builds-wind-gil-build", "The wind experiment on the GIL build, a third 10 repetitions",
          "threadprobe bench wind --python .venv/bin/python --repeats 10 --data /work/bench-data --out /work/bench-out "
          "--turn-lock /tmp/threadprobe-heavy.lock",
          _BUILDS + " Read here: the GIL build alone, on the same data as the two benches before it (the same "
          "code path: no run piloted), to read the tie they left open. This machine ran the study faster (35 and "
          "28 s of serial work, against 50 and 45 s), and threads led processes more: x1.90 against x1.73 on "
          "netCDF, x1.72 against x1.66 on PP. The diagnosis read threads x1.44 and processes x1.97 and x1.76, so "
          "auto took processes in all 20 runs: its regret to threads x1.050 (netCDF) and x1.075 (PP)."),
    Bench("bench-builds-wind-gil-build-pooled", "The wind experiment on the GIL build: 30 repetitions pooled",
          "python tests/bench/pool_builds.py reports/bench-builds-wind-gil-as_imported.json "
          "reports/bench-builds-wind-gil-off.json reports/bench-builds-wind-gil-build.json --environment "
          "'3.11.7 (GIL build)' --out reports/bench-builds-wind-gil-build-pooled.json",
          _BUILDS + " Read here: the GIL build's runs of the three benches made since a run of this size stopped "
          "piloting, read as one (`builds.pool`: each repetition stays side by side; the benches ran on the same "
          "data, and their diagnoses allowed the same schedulers). Threads lead processes by 2.1% on netCDF and "
          "1.4% on PP (medians of the per-repetition ratio; faster in 19 and 17 of 30), and auto, taking "
          "processes every time by the diagnosis's speedups, runs 1.2% and 2.7% behind an explicit processes run "
          "(the second serial unit it times before deciding). Auto's regret to threads: x1.033 on netCDF and "
          "x1.039 on PP, within the 5% asked, but not by much: resampled, a 10-repetition median crosses x1.05 in "
          "14% (netCDF) and 46% (PP) of draws, and the two earlier benches read PP x1.010 and x1.065, this one "
          "x1.075. The cause is measured in bench-wind-probe-scale: the probe the choice rests on favours "
          "processes."),
    Bench("bench-builds-wind-pp-72-gil-off", "The wind experiment long enough to pilot: PP, 72 pairs, both builds",
          "threadprobe bench wind --python .venv/bin/python --python .venv-ft/bin/python --gil off --data "
          "/work/bench-data-72 --pairs 72 --data-format pp --repeats 2 --turn-lock /tmp/threadprobe-heavy.lock "
          "(stopped after its first repetition)",
          _BUILDS + " Read here: one repetition only, so a demonstration, not a figure. 144 PP files (28 GiB, more "
          "than the machine's 23.5 GiB of memory: whole runs read from disk) make 270 to 320 s of serial work, so "
          "auto pilots. On both builds the pilot found threads and processes within its noise, sampled them "
          "longer (6 rounds, half the work) and broke the tie on the spread, taking processes both times. On the "
          "GIL build that was right (processes x2.27, threads x1.82); auto ran x2.12, regret x1.068, its pilot "
          "costing 8 s beyond the pick. On 3.13t with the GIL off it was wrong (threads x1.73, processes x1.41), "
          "but half the work had run in the pilot, half of that on threads: auto x1.68, regret x1.030. The "
          "pilot's projections (107 to 151 s for processes, 118 to 145 s for threads) fell short of the whole runs "
          "(143 to 191 s and 157 to 177 s): batches of 3 to 8 s do not see what a run 20 times longer pays."),
    Bench("bench-builds-wind-timing-input", "The wind experiment after the probes time the study's task, both builds",
          "threadprobe bench wind --data /work/bench-data --python .venv/bin/python --python .venv-ft/bin/python "
          "--gil off --repeats 10 --turn-lock /tmp/threadprobe-heavy.lock (stopped after 8 repetitions)",
          _BUILDS + " Read here: the first bench since the wind probes time the study's own arithmetic on a task "
          "of its size, with three timing trials a cell, their threads cells topped up to 29 trials, and a choice "
          "without a pilot that needs a 15% lead to leave the simpler candidate. 8 repetitions (stopped to close the "
          "session), no run piloted. The diagnoses now read threads and processes within 15% on both builds, so "
          "auto took threads in every run: on 3.13t's netCDF holding a lock around dask._expr, because the top-up "
          "saw the netCDF wind probe crash under 2 threads with the GIL off (SIGSEGV in dask._expr, at its 24th "
          "trial). Regrets: GIL build netCDF x1.014 (threads x1.95, processes x1.64), PP x1.073 (threads x1.65 and "
          "processes x1.67, a tie; auto on threads ran x1.57, 5% behind an explicit threads run: its two serial "
          "units before deciding, and noise); 3.13t with the GIL off netCDF x1.025, PP x0.982. Auto over "
          "synchronous with the GIL off: x1.57 (netCDF, under the x1.6 asked, where processes ran x1.64 and the "
          "earlier bench read auto x1.67) and x1.71 (PP). Every run right, no unsafe pick."),
    Bench("bench-builds-wind-opening", "The wind experiment with auto opening on threads, both builds, 10 repetitions",
          "threadprobe bench wind --data /work/bench-data --python .venv/bin/python --python .venv-ft/bin/python "
          "--gil off --repeats 10 --turn-lock /tmp/threadprobe-heavy.lock",
          _BUILDS + " Read here: the first bench since a run whose diagnosis favours threads opens on them (one "
          "batch of two units a thread, where two units ran serially before the choice). No run piloted; the "
          "diagnoses (this bench's own) saw no crash, so no remedy was verified and auto took plain threads in "
          "all 40 runs. Deciding took a median 0.59 to 0.87 s for 4 units, against 0.5 to 1.3 s for 2 serial "
          "units in bench-builds-wind-timing-input. Auto's regret to the fastest safe scheduler: GIL build "
          "netCDF x1.032 (threads x1.98, processes x1.78), PP x0.990 (threads x1.71 and processes x1.73, the "
          "tie); 3.13t with the GIL off netCDF x1.048 (threads x1.60, processes x1.64), PP x1.002. All four "
          "within the 5% asked, as medians of 10. Auto over synchronous with the GIL off: x1.56 (netCDF, below "
          "x1.6: the fastest safe scheduler ran x1.64 there) and x1.71 (PP). Every run right, no unsafe pick."),
    Bench("bench-builds-load-nc-128-gil-as_imported-rebench",
          "The netCDF load experiment with the GIL as imported, both builds, re-benched",
          "threadprobe bench load --python .venv/bin/python --python .venv-ft/bin/python --gil as_imported "
          "--data-format nc --repeats 10 --turn-lock /tmp/threadprobe-heavy.lock",
          _BUILDS + " Read here: bench-builds-load-nc-128-gil-as_imported again, on this version (the same 128 "
          "files, about 1.8 s runs). Auto took synchronous in all 20 runs. On 3.13t synchronous was the fastest "
          "safe scheduler this time (processes x0.99), and auto ran x1.053 of it, missing the 5% by 0.003: on a "
          "run this short, deciding (the diagnosis read, the candidates, two units timed) is what auto loses. "
          "Every run right (the earlier bench had one failed threads run), no unsafe pick. GIL build: regret "
          "x0.989."),
    Bench("bench-wind-probe-scale", "The wind probe's speedups against the wind study's, by field size",
          "python tests/bench/wind_probe_scale.py --repeats 7",
          "A run too short to pilot takes its scheduler by the diagnosis's speedups of the workload's probe. "
          "This times the wind probe's own task (since this version, the study's own arithmetic: float64, masks, "
          "bands of rows) serially, on 2 threads and on 2 forked processes, side by side (7 repetitions), on its "
          "stress input's fields (240x320), twice them and four times them (the wind bench's 960x1280), on the "
          "GIL build. Read here: on 240x320 a task takes 50 ms, and Python's per-task overhead holds threads to "
          "x1.36 (PP) and x1.55 (netCDF), behind processes (x1.57, x1.68), where the study runs threads at x1.78 "
          "and x1.86 and processes at x1.77 and x1.81 (bench-builds-wind-gil-build-pooled). On 480x640, where a "
          "task reads and sums as many points as a unit of the study does on the bench, threads read x1.74 in "
          "both formats, and processes x1.78 (PP) and x1.93 (netCDF). That is the wind probes' timing input now "
          "(their stress input tiled 2 x 2). The model still puts processes ahead of threads by up to 11% where "
          "the study puts threads ahead by up to 3%: the margin a choice without a pilot needs "
          "(`choose.ESTIMATE_MARGIN`, 15%). The previous version of this bench (the probe's float32 arithmetic) "
          "read PP threads x1.26 and processes x1.93 on 240x320."),
    Bench("bench-recommend", "Answer time of `threadprobe recommend`",
          "python -m pytest -m bench tests/bench/test_recommend_speed.py",
          "`recommend` from a diagnosis that matches the installed libraries; aimed at: under a second."),
)

RAW_JSON_LIMIT = 12_000  # characters: larger files are linked to, not printed


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                      for x in v)


def _fmt(v: Any) -> str:
    if _numbers(v) and len(v) > 3:
        return f"median {statistics.median(v):.4g} ({min(v):.4g} to {max(v):.4g}; n={len(v)})"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        text = json.dumps(v)
        return text if len(text) <= 80 else text[:77] + "..."
    return "" if v is None else str(v)


def _cell(v: Any) -> str:
    return _fmt(v).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _rows_of_dicts(d: dict[str, Any]) -> bool:
    """A dict whose values are dicts of short values: one table, a row per key."""
    return len(d) > 0 and all(isinstance(v, dict) and v and all(_scalar(x) or _numbers(x) for x in v.values())
                              for v in d.values())


def render_value(name: str, value: Any, depth: int = 1) -> list[str]:
    """Markdown for one part of a benchmark file: tables where the shape allows, else JSON."""
    title = "#" * (depth + 1) + f" `{name}`" if name else ""  # under the page's "## The data"
    if isinstance(value, dict) and _rows_of_dicts(value):
        columns = list(dict.fromkeys(k for v in value.values() for k in v))
        return [title, "", *_table(["", *columns], [[k, *(v.get(c) for c in columns)] for k, v in value.items()])]
    if isinstance(value, dict) and value:
        flat = [[k, v] for k, v in value.items() if _scalar(v) or _numbers(v)]
        lines = [title, ""] if title else []
        if flat:
            lines += _table(["field", "value"], flat)
        for k, v in value.items():
            if not (_scalar(v) or _numbers(v)):
                lines += render_value(k, v, depth + 1) if depth < 3 else [f"`{k}`: {_cell(v)}", ""]
        return lines
    return [title, "", f"{_cell(value)}", ""]


def series(value: Any, path: str = "") -> list[tuple[str, list[float]]]:
    """Every list of numbers in the file (raw repetitions), by where it sits."""
    if _numbers(value) and len(value) > 1:
        return [(path, [float(x) for x in value])]
    out: list[tuple[str, list[float]]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out += series(v, f"{path}.{k}" if path else str(k))
    return out


@functools.cache
def _drawing_code() -> bytes:
    """What draws the plots: these extensions, the runner's bench modules, and matplotlib's version."""
    import matplotlib

    from threadprobe.scheduling.runs import bench as runner_bench, builds

    files = sorted(Path(__file__).parent.glob("*.py")) + [Path(runner_bench.__file__), Path(builds.__file__)]
    return b"".join(f.read_bytes() for f in files) + matplotlib.__version__.encode()


def drawn(path: Path, source: bytes, draw: Callable[[Path], Any]) -> None:
    """``draw(path)``, or the picture it drew before: a plot is a pure function of the file it is
    drawn from and of the code that draws it, so both key it, in threadprobe's cache folder
    (matplotlib took 7 of a docs build's 25 s)."""
    key = hashlib.sha256(_drawing_code() + path.name.encode() + source).hexdigest()[:32]
    kept = cache_home() / "docs-plots" / f"{key}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kept.exists():
        shutil.copyfile(kept, path)
        return
    draw(path)
    kept.parent.mkdir(parents=True, exist_ok=True)
    tmp = kept.with_suffix(f".{path.stem}.tmp")
    shutil.copyfile(path, tmp)
    tmp.replace(kept)


def plot(found: list[tuple[str, list[float]]], path: Path, limit: int = 24) -> bool:
    """A dot per repetition, a tick at the median, one panel per kind of figure (the last key)."""
    if not found:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[tuple[str, list[float]]]] = {}
    for where, xs in found[:limit]:
        panels.setdefault(where.rsplit(".", 1)[-1], []).append((where, xs))
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 0.9 + sum(0.32 * len(v) + 0.5 for v in panels.values())),
                             squeeze=False, gridspec_kw={"height_ratios": [len(v) for v in panels.values()]})
    for ax, (kind, rows) in zip(axes[:, 0], panels.items()):
        for k, (where, xs) in enumerate(rows):
            ax.scatter(xs, [k] * len(xs), s=12, color="#1565c0", zorder=3)
            ax.plot([statistics.median(xs)] * 2, [k - 0.3, k + 0.3], color="#c62828", linewidth=2)
        ax.set_yticks(range(len(rows)), [w for w, _ in rows], fontsize=7)
        ax.set_title(kind, fontsize=8, loc="left")
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def page(bench: Bench, reports: Path, out: Path) -> str:
    """The page of one benchmark: its reading, then the file's stamp, data and plots, or its absence."""
    source = reports / f"{bench.stem}.json"
    lines = [f"# {bench.title}", "", bench.reading, "", f"Made by `{bench.make}` (part of `make bench`).", ""]
    if not source.exists():
        return "\n".join(lines + [
            "```{warning}", f"No `reports/{bench.stem}.json` in this build: this benchmark has not been run on the "
            "machine that built these pages, and no figure is shown. Run the command above, then `make docs`.", "```",
            ""])
    try:
        bf = benchfile.read(source)
    except ValueError as exc:
        return "\n".join(lines + ["```{warning}", f"`reports/{bench.stem}.json` could not be read: {exc}", "```", ""])
    lines += _table(["", ""], [["file", f"reports/{bench.stem}.json"], ["machine", bf.machine], ["date", bf.date],
                                ["command", bf.command]])
    result = _builds(bench, bf)
    drawn_from = source.read_bytes()
    lines += own_reading(result)
    for name in own_plots(bench, bf, result, drawn_from, out):
        lines += [f"```{{image}} {name}", f":alt: {name}, drawn from reports/{bench.stem}.json", "```", ""]
    body = bf.body()
    if bench.stem == bench_plugin_ft.STEM:
        lines += bench_plugin_ft.lines(bf.data, out)
        body = {k: v for k, v in body.items() if k not in bench_plugin_ft.RAW}
    found = series(body)
    if found:
        drawn(out / f"{bench.stem}-repetitions.png", drawn_from, lambda path: plot(found, path))
        lines += ["Every list of numbers in the file, one dot per repetition, the median marked:", "",
                  f"```{{image}} {bench.stem}-repetitions.png", f":alt: raw repetitions of {bench.stem}", "```", ""]
    lines += ["## The data", "", *render_value("", body)]
    raw = json.dumps(bf.data, indent=1)
    if len(raw) <= RAW_JSON_LIMIT:
        lines += ["## The whole file", "", "```json", raw, "```", ""]
    else:
        lines += [f"The whole file ({len(raw):,} characters) is `reports/{bench.stem}.json`.", ""]
    return "\n".join(lines)


def _builds(bench: Bench, bf: benchfile.BenchFile) -> Any:
    """The bench across builds in this file, read by its own code, or None for another benchmark."""
    if not bench.stem.startswith("bench-builds-") or not bf.data.get("environments"):
        return None
    from threadprobe.scheduling.runs import builds

    return builds.Result.from_json(bf.body())


def own_reading(result: Any) -> list[str]:
    """A benchmark's figures against its targets, computed from its file by its own code (the
    bench across builds, ``result``: ``builds.read``)."""
    if result is None:
        return []
    from threadprobe.scheduling.runs import builds

    rows = []
    for found in (builds.read(res) for res in result.environments):
        low_high = "-".join(f"{x:.2f}" for x in found.auto_over_sync_range)
        rows.append([found.environment, found.format, found.repetitions,
                     f"x{found.auto_over_sync} ({low_high})" + (f", target x{found.target_speedup}"
                                                                if found.target_speedup else ""),
                     ", ".join(f"{k} {n}" for k, n in found.auto_picks.items()),
                     f"{found.fastest_safe} x{found.fastest_safe_over_sync}", f"{found.regret} "
                     f"({'-'.join(f'{x:.2f}' for x in found.regret_range)})",
                     ", ".join(found.met) or "none", ", ".join(found.missed) or "none"])
    return ["## Against the targets", "", *_table(
        ["environment", "format", "repetitions", "auto over synchronous (median, range)", "auto's picks",
         "fastest safe explicit", "auto's regret", "met", "missed"], rows)]


def own_plots(bench: Bench, bf: benchfile.BenchFile, result: Any, source: bytes, out: Path) -> list[str]:
    """The plots a benchmark draws itself, redrawn from its file by its own code (the runner's
    bench; the bench across builds, ``result``)."""
    if result is not None:
        from threadprobe.scheduling.runs import builds

        drawn(out / f"{bench.stem}.png", source, lambda path: builds.plot(result, path))
        return [f"{bench.stem}.png"]
    if bench.stem != "bench":
        return []
    from threadprobe.scheduling.runs import bench as runner_bench

    names = []
    for workload, result in sorted((bf.data.get("workloads") or {}).items()):
        if isinstance(result, dict) and result.get("formats"):
            drawn(out / f"bench-{workload}.png", source,
                  lambda path, found=result: runner_bench.plot(runner_bench.Result.from_json(found), path))
            names.append(f"bench-{workload}.png")
    return names


def known(reports: Path) -> list[Bench]:
    """The registry, then every other ``bench*.json`` found, under its file name."""
    stems = {b.stem for b in BENCHMARKS}
    extra = [Bench(p.stem, p.stem, "see the file's command", "A benchmark file with no reading written for it yet.")
             for p in sorted(reports.glob("bench*.json")) if p.stem not in stems]
    return [*BENCHMARKS, *extra]
