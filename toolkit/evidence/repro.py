"""Plain reproducers: a short script that needs only the library, to paste into an upstream issue.

A probe that can be reproduced carries ``reproducer``: the source of ``setup(workdir)`` (make
the inputs, return what the threads share) and ``task(ctx, i)`` (one unit of work, returning
plain comparable data), written against the library alone. ``script`` wraps it in a fixed
driver of a few dozen lines: a serial run for the expected results, then threads started
together with a tiny switch interval, attempt after attempt, until a result differs, a task
raises, the process hangs (faulthandler prints every stack and exits) or the library kills it.
HDF5's automatic error printing, which otherwise floods the terminal from every thread of a
thread-safe build, is silenced unless ``SHOW_HDF5_ERRORS=1``.

Exit status: 0 not reproduced; 1 a different result, an exception or a hang; death by a signal
(negative status from a shell's point of view: 128 + N) when the crash reproduced.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from threadprobe.probe import registry
from threadprobe.records import Mode, Result

DRIVER = '''\
import ctypes, faulthandler, hashlib, os, shutil, sys, tempfile, threading

THREADS, ITERATIONS, ATTEMPTS, TIMEOUT = {threads}, {iterations}, {attempts}, {timeout}


def quiet_hdf5():  # HDF5 prints an error stack per failed call and thread; SHOW_HDF5_ERRORS=1 keeps it
    libs = set() if os.environ.get("SHOW_HDF5_ERRORS") else {{ln.split()[-1] for ln in open("/proc/self/maps") if "libhdf5" in ln}}
    for lib in libs:
        try:
            ctypes.CDLL(lib).H5Eset_auto2(ctypes.c_int64(0), None, None)
        except (OSError, AttributeError):
            pass


def shown(value):
    return f"{{len(value)}} bytes, sha1 {{hashlib.sha1(value).hexdigest()[:12]}}" if isinstance(value, bytes) else repr(value)[:300]


def main():
    global ATTEMPTS
    if "--races" in sys.argv and not os.environ.get("REPRO_UNDER_VALGRIND"):  # once more, under helgrind
        env = dict(os.environ, REPRO_UNDER_VALGRIND="1", PYTHONMALLOC="malloc", OPENBLAS_NUM_THREADS="1")
        vg = ["valgrind", "--tool=helgrind", "--fair-sched=yes", "--vex-guest-max-insns=4", sys.executable, *sys.argv]
        os.execvpe("valgrind", vg, env) if shutil.which("valgrind") else sys.exit("--races needs valgrind")
    ATTEMPTS = 1 if os.environ.get("REPRO_UNDER_VALGRIND") else ATTEMPTS  # the detector needs one run, not luck
    faulthandler.enable(all_threads=True)
    ctx = setup(tempfile.mkdtemp(prefix="repro-"))
    quiet_hdf5()
    expected = {{i: task(ctx, i) for i in range(ITERATIONS)}}
    for attempt in range(1, ATTEMPTS + 1):
        faulthandler.dump_traceback_later(TIMEOUT, exit=True)  # a hang: print every stack, exit 1
        got, errors, barrier = {{}}, [], threading.Barrier(THREADS)

        def worker(t):
            quiet_hdf5()
            barrier.wait()
            for i in range(t, ITERATIONS, THREADS):
                try:
                    got[i] = task(ctx, i)
                except Exception as exc:
                    errors.append((i, exc))

        sys.setswitchinterval(1e-6)
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        faulthandler.cancel_dump_traceback_later()
        bad = [i for i in sorted(got) if got[i] != expected[i]]
        if errors or bad:
            i, what = (errors[0][0], repr(errors[0][1])) if errors else (bad[0], shown(got[bad[0]]))
            sys.exit(f"attempt {{attempt}}: task {{i}} gave {{what}} in threads, {{shown(expected[i])}} serially")
    print(f"not reproduced in {{ATTEMPTS}} attempts")


main()
'''


def script(result: Result, ref: str, iterations: int, attempts: int = 40, timeout: float = 30.0) -> str | None:
    """The text of a plain reproducer for ``result``'s probe and threads, or None when the probe
    has no reproducer (or failed only across processes, which a thread driver cannot show)."""
    cls = registry.load(ref)
    body = getattr(cls, "reproducer", None)
    if not body or result.mode != Mode.THREADS:
        return None
    head = (f'"""{result.probe}: {result.verdict} under {result.threads} threads ({result.failed_trials} of '
            f'{result.trials} trials); needs only {result.dependency}.\nUsage: python {safe(result.probe)}.py [--races]\n'
            f'Exit 0: not reproduced. 1: a different result, an exception or a hang (stacks printed). Killed by a '
            f'signal: the crash reproduced.\n--races: one run under valgrind\'s helgrind: its "Possible data race" '
            f'reports name both racing stacks."""\n')
    driver = DRIVER.format(threads=result.threads, iterations=getattr(cls, "reproducer_iterations", None) or iterations,
                           attempts=attempts, timeout=timeout)
    imports, _, rest = driver.partition("\n\n")
    return head + imports + "\n\n" + textwrap.dedent(body).strip() + "\n\n" + rest


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write(result: Result, ref: str, iterations: int, folder: Path, **options: object) -> Path | None:
    text = script(result, ref, iterations, **options)  # type: ignore[arg-type]
    if text is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{safe(result.probe)}.py"
    path.write_text(text)
    path.chmod(0o755)
    return path
