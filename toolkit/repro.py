"""Standalone reproducer scripts for unsafe verdicts (``reports/repro/<probe>.py``).

A reproducer must run in a fresh interpreter with only the dependency installed: no threadprobe.
So it carries its own copies of the sources it needs, as strings, and registers them as modules
under their real names before running: ``toolkit/probe.py`` (the ``Probe`` base class and
``digest``, nothing else), and the probe's own module with any ``probes.*`` modules it uses.
The probe code then runs unchanged. A short driver computes the serial oracle, then repeats the
failing mode until a result differs, a task raises, the process hangs (faulthandler dumps the
stacks and exits) or the library kills it.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from toolkit import probe as probe_module
from toolkit import registry
from toolkit.records import Result

DRIVER = r'''
def _main():
    import faulthandler, os, pathlib, sys, tempfile, threading, time, traceback
    from toolkit import digest
    faulthandler.enable(all_threads=True)
    cls = getattr(sys.modules[PROBE_MODULE], PROBE_CLASS)
    work = pathlib.Path(tempfile.mkdtemp(prefix="threadprobe-repro-"))
    probe = cls()
    probe.prepare(work)

    def final(ctx, i, value):
        return probe.readback(ctx, i, value) if hasattr(probe, "readback") else value

    def shown(value):
        text = repr(value)
        return text if len(text) < 400 else text[:400] + "..."

    ctx = probe.open(work)
    raw = {i: probe.task(ctx, i) for i in range(ITERATIONS)}
    expected = {i: shown(final(ctx, i, v)) for i, v in raw.items()}
    oracle = {i: digest(final(ctx, i, v)) for i, v in raw.items()}
    probe.close(ctx)
    print(f"{PROBE_NAME}: serial oracle of {ITERATIONS} tasks computed; trying {MODE} x{WORKERS}", flush=True)

    def one_process(indices_of, report):
        ctx = probe.open(work)
        digests, errors = {}, []
        barrier = threading.Barrier(THREADS)
        lock = threading.Lock()

        def body(t):
            barrier.wait()
            for i in indices_of(t):
                try:
                    value = probe.task(ctx, i)
                    digests[i] = value
                except Exception:
                    with lock:
                        errors.append((i, traceback.format_exc()))
        sys.setswitchinterval(1e-6)
        threads = [threading.Thread(target=body, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        sys.setswitchinterval(0.005)
        out = {}
        for i, value in digests.items():
            value = final(ctx, i, value)
            out[i] = (digest(value), shown(value))
        probe.close(ctx)
        report(out, errors)

    for attempt in range(1, ATTEMPTS + 1):
        faulthandler.dump_traceback_later(TIMEOUT, exit=True)  # a hang: dump every stack, exit 1
        got, errors = {}, []
        if PROCESSES == 1:
            def report(out, errs):
                got.update(out)
                errors.extend(errs)
            one_process(lambda t: range(t, ITERATIONS, THREADS), report)
        else:
            import multiprocessing
            ctx = multiprocessing.get_context("fork")
            queue = ctx.SimpleQueue()
            procs = [ctx.Process(target=one_process, args=(
                (lambda p: (lambda t: range(p * THREADS + t, ITERATIONS, WORKERS)))(p),
                lambda out, errs: queue.put((out, errs)))) for p in range(PROCESSES)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
                if p.exitcode:
                    print(f"attempt {attempt}: a worker process died with exit code {p.exitcode}", flush=True)
                    sys.exit(1)
            while not queue.empty():
                out, errs = queue.get()
                got.update(out)
                errors.extend(errs)
        faulthandler.cancel_dump_traceback_later()
        if errors:
            i, tb = errors[0]
            print(f"attempt {attempt}: task {i} raised:\n{tb}", flush=True)
            sys.exit(1)
        bad = sorted(i for i in got if got[i][0] != oracle.get(i))
        if bad:
            i = bad[0]
            print(f"attempt {attempt}: {len(bad)} results differ from the serial run. First, i={i}:\n"
                  f"  serial:     {expected[i]}\n  concurrent: {got[i][1]}", flush=True)
            sys.exit(1)
    print(f"no failure in {ATTEMPTS} attempts", flush=True)


if __name__ == "__main__":
    _main()
'''

LOADER = r'''
import sys
import types


def _install(name, source, filename):
    module = types.ModuleType(name)
    module.__file__ = filename
    if "." in name:
        parent = name.rsplit(".", 1)[0]
        if parent not in sys.modules:
            package = types.ModuleType(parent)
            package.__path__ = []
            sys.modules[parent] = package
        setattr(sys.modules[parent], name.rsplit(".", 1)[1], module)
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return module

'''


def modules_for(module_name: str, source: str, seen: set[str] | None = None) -> list[tuple[str, Path]]:
    """The ``probes.*`` modules a probe module imports, dependencies first, itself last."""
    seen = set() if seen is None else seen
    order: list[tuple[str, Path]] = []
    for dep in sorted(set(re.findall(r"\bprobes\.(\w+)", source))):
        name = f"probes.{dep}"
        if name in seen or name == module_name:
            continue
        seen.add(name)
        path = Path(registry.load_module_file(name))
        order.extend(modules_for(name, path.read_text(), seen))
        order.append((name, path))
    return order


def script(result: Result, ref: str, iterations: int, attempts: int = 20, timeout: float = 30.0) -> str:
    """The text of a standalone reproducer for ``result`` (its probe, mode and workers)."""
    cls = registry.load(ref)
    module = sys.modules[cls.__module__]
    path = Path(inspect.getsourcefile(module) or "")
    source = path.read_text()
    parts = [(n, p) for n, p in modules_for(cls.__module__, source)]
    parts.append((cls.__module__, path))
    toolkit_path = Path(inspect.getsourcefile(probe_module) or "")
    lines = [
        "#!/usr/bin/env python3",
        f'"""Reproducer for {result.probe}: {result.verdict} under {result.mode} x{result.workers}.',
        "",
        f"Written by threadprobe. Needs only {result.dependency} (no threadprobe): python {safe(result.probe)}.py",
        f"It runs {iterations} tasks serially for the oracle, then up to {attempts} attempts in the failing mode.",
        "Exit status: 0 = not reproduced, 1 = results differ, a task raised or it hung (stacks printed),",
        "death by a signal (faulthandler prints every thread's stack) = the crash reproduced.",
        '"""',
        LOADER,
        f"_install('toolkit', {toolkit_path.read_text()!r}, {str(toolkit_path)!r})",
    ]
    for name, mpath in parts:
        lines.append(f"_install({name!r}, {mpath.read_text()!r}, {str(mpath)!r})")
    lines += [
        "",
        f"PROBE_NAME = {result.probe!r}",
        f"PROBE_MODULE = {cls.__module__!r}",
        f"PROBE_CLASS = {cls.__qualname__!r}",
        f"MODE = {result.mode!r}",
        f"PROCESSES = {result.processes}",
        f"THREADS = {result.threads}",
        f"WORKERS = {result.workers}",
        f"ITERATIONS = {iterations}",
        f"ATTEMPTS = {attempts}",
        f"TIMEOUT = {timeout}",
        DRIVER,
    ]
    return "\n".join(lines)


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write(result: Result, ref: str, iterations: int, folder: Path, timeout: float = 30.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{safe(result.probe)}.py"
    path.write_text(script(result, ref, iterations, timeout=timeout))
    path.chmod(0o755)
    return path
