"""An upstream-ready issue body for one unsafe probe, from a diagnosis: ``threadprobe report-bug``.

It says what a maintainer asks first, in that order: what happens (mode, counts, the 95% bound
of the clean modes), on which builds (the interpreter, the library families' versions, copies
and thread-safe flags, the packages), where (the native frames of the crash), what makes it go
away (the remedies verified), and how to see it (a plain reproducer of a few dozen lines that
needs only the library). Pure text from records: nothing is run.
"""

from __future__ import annotations

from threadprobe.probe import registry
from threadprobe.evidence import repro
from threadprobe.report.compare import describe_family
from threadprobe.records.errors import UsageError
from threadprobe.diagnosis.races.parse import stack_text
from threadprobe.records import Diagnosis, Mode, Result, is_clean, is_failing, unsafe_results
from threadprobe.report import remedy_summary

FAMILIES = ("libnetcdf", "libhdf5", "libudunits2")


def _environment(d: Diagnosis, dependency: str) -> list[str]:
    fp = d.fingerprint
    python = fp.get("python") or {}
    lines = [f"- Python {python.get('version', '?')} ({python.get('implementation', 'CPython')}, "
             f"GIL {'on' if python.get('gil_enabled', True) else 'off'}): `{python.get('executable') or d.interpreter}`",
             f"- platform: {fp.get('platform', '?')}, {fp.get('cpu_count', '?')} CPUs"]
    by_family: dict[str, list[dict]] = {}
    for lib in fp.get("libraries") or []:
        by_family.setdefault(str(lib.get("family")), []).append(lib)
    for fam in FAMILIES:
        if fam in by_family:
            paths = ", ".join(f"`{lib['path']}`" for lib in by_family[fam][:3])
            lines.append(f"- {fam} {describe_family(by_family[fam])}: {paths}")
    packages = []
    for name, value in (fp.get("packages") or {}).items():
        version = value.get("version") if isinstance(value, dict) else value
        if version and name in ("numpy", "netCDF4", "h5py", "cftime", "cf_units", "iris", "dask", "xarray",
                                "cf-units", "scitools-iris"):
            packages.append(f"{name} {version}")
    if packages:
        lines.append(f"- packages: {', '.join(packages)}")
    return lines


def markdown(d: Diagnosis, probe: str) -> str:
    mine = [r for r in d.results if r.probe == probe and r.remedy is None]
    if not mine:
        raise UsageError(f"{probe} is not in this diagnosis (see `threadprobe list`)")
    failing = [r for r in unsafe_results(d.results) if r.probe == probe]
    if not failing:
        raise UsageError(f"{probe} is not unsafe in this diagnosis: nothing to report")
    worst = max(failing, key=lambda r: (r.mode == Mode.THREADS, r.failed_trials, -r.workers))
    dependency = worst.dependency
    lines = [f"# {dependency}: {worst.verdict} under {worst.threads if worst.mode == Mode.THREADS else worst.workers} "
             f"{worst.mode} ({probe})", ""]
    doc = next((i.doc for i in registry.discover(d.config.get("plugins", ())) if i.name == probe), "")
    if doc:
        lines += [f"**What the threads do:** {doc}", ""]
    lines += ["## What happens", "", "| mode | verdict | failed trials | 95% bound on the failure rate |",
              "| --- | --- | --- | --- |"]
    for r in mine:
        bound = f"< {r.safety.failure_rate_upper95:.0%}" if is_clean(r.verdict) and r.trials else "—"
        lines.append(f"| {r.label} | {r.verdict} | {r.failed_trials} of {r.trials} | {bound} |")
    found = worst.safety.evidence
    evidence = next((e for e in found if e.kind == str(worst.verdict)), found[0] if found else None)
    if evidence is not None:
        lines += ["", f"First evidence: {evidence.summary}."]
    lines += ["", "## Environment", "", *_environment(d, dependency)]
    lines += _race_section(mine)
    native = next((e.native for r in failing for e in r.safety.evidence if e.native), None)
    if native:
        lines += ["", "## Native frames of the crashing thread (gdb, from a core dump)", "", "```",
                  *native.splitlines()[:25], "```"]
    remedies = remedy_summary([r for r in d.remedies if r.probe == probe])
    if remedies:
        lines += ["", "## Remedies verified", "", *(f"- {line}" for line in remedies)]
    script = _reproducer(d, probe, worst)
    if script:
        lines += ["", f"## Reproducer ({len(script.splitlines())} lines, needs only {dependency})", "",
                  "```python", script.rstrip(), "```", "",
                  "Exit status 0: not reproduced; 1: a different result, an exception or a hang; killed by a "
                  "signal: the crash. `SHOW_HDF5_ERRORS=1` keeps HDF5's own error stacks."]
    lines += ["", f"_Found by threadprobe {d.threadprobe} on {d.created}._", ""]
    return "\n".join(lines)


def _race_section(mine: list[Result]) -> list[str]:
    """Each race pair the race pass found, with both stacks: where the unordered accesses are."""
    passes = [r for r in mine if r.races is not None and r.races.pairs]
    if not passes:
        return []
    out = ["", "## Data races (valgrind, happens-before analysis)", ""]
    for r in passes:
        races = r.races
        assert races is not None
        out.append(f"{races.summary()} ({r.label}).")
        for pair in races.pairs:
            via = f", reached through `{'`, `'.join(pair.operations)}`" if pair.operations else ""
            out += ["", f"**{pair.key}** ({pair.count} report(s){via}): {pair.what}", "", "```"]
            for k, stack in enumerate(pair.stacks):
                out += ["this access:" if k == 0 else "conflicts with:", stack_text(stack)]
            out.append("```")
    return out


def _reproducer(d: Diagnosis, probe: str, worst: Result) -> str | None:
    info = next((i for i in registry.discover(d.config.get("plugins", ())) if i.name == probe), None)
    if info is None:
        return None
    iterations = int((d.config.get("iterations") or {}).get(probe) or 100)
    threads = [r for r in d.results if r.probe == probe and r.mode == Mode.THREADS and r.remedy is None
               and is_failing(r.verdict)]
    target = max(threads, key=lambda r: r.failed_trials) if threads else worst
    return repro.script(target, info.ref, iterations)
