"""What a choice needs to know of the machine and the interpreter a run happens on, read here so
that ``choose`` stays a pure function of records: cores, memory, and the run's GIL state.

On a free-threaded build a run is in one of the diagnosis's two GIL states: ``off`` when it forced
the GIL off (``PYTHON_GIL=0`` or ``-X gil=0``: ``sys.flags.gil`` is 0), else ``as_imported``, the
GIL as the run's imports leave it (Python turns it back on for a module not declared GIL-free).
Only the diagnosis cells of that state say what is safe for the run.
"""

from __future__ import annotations

import os
import sys

from threadprobe.harness import gil
from threadprobe.records import Diagnosis, GilState, Mode
from threadprobe.scheduling.choose import Machine


def run_gil() -> GilState | None:
    """This run's GIL state (None: a GIL build, where only ``as_imported`` exists)."""
    if not gil.free_threaded_build():
        return None
    return GilState.OFF if getattr(sys.flags, "gil", None) == 0 else GilState.AS_IMPORTED


def machine() -> Machine:
    try:
        import psutil

        memory = psutil.virtual_memory().total / 2**30
    except Exception:
        memory = 4.0
    return Machine(os.cpu_count() or 1, memory, run_gil())


def words(state: GilState | None) -> str:
    if state is None:
        return "a GIL build"
    return "a free-threaded build, GIL forced off" if state == GilState.OFF else "a free-threaded build, GIL as imported"


def describe() -> str:
    """The run's build and GIL state, and whether the GIL is on now (after the workload's imports)."""
    state = run_gil()
    if state is None:
        return "this run: a GIL build"
    return f"this run: {words(state)} (the GIL is {'on' if gil.enabled() else 'off'} after its imports)"


def cache_state() -> dict[str, object] | None:
    """What of the GIL keys a cached choice (None on a GIL build)."""
    state = run_gil()
    return {"state": str(state), "enabled": gil.enabled()} if state is not None else None


def mismatch(diag: Diagnosis, probes: tuple[str, ...] | list[str]) -> str | None:
    """Why ``diag`` cannot speak for this run's build and GIL state (None: it can)."""
    then = (diag.fingerprint.get("python") or {}).get("free_threaded_build")
    now = gil.free_threaded_build()
    if then is not None and bool(then) != now:
        built = "a free-threaded" if then else "a GIL"
        return f"it was made on {built} build, and this run is on {words(run_gil())}"
    state = run_gil() or GilState.AS_IMPORTED
    threads = [r for r in diag.results if r.mode == Mode.THREADS and r.remedy is None]
    have = {r.probe for r in threads if r.gil == state}
    missing = [p for p in probes if p not in have and any(r.probe == p for r in threads)]
    if missing:
        other = sorted({str(r.gil) for r in threads if r.probe in missing})
        return (f"it has no cells of {', '.join(missing)} with the GIL {'off' if state == GilState.OFF else 'as imported'}"
                f" (only {', '.join(other)}), the state of this run ({words(run_gil())})")
    return None
