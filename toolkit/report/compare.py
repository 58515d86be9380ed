"""What changed between two diagnoses: the gate for new library builds, and a diff a person reads.

- **Verdicts**: a regression is a result that was safe and is now unsafe (``records.is_unsafe``,
  the one definition ``--fail-on unsafe`` uses too) *more often than the baseline's own bound
  allowed*. A safe verdict after n clean trials
  claims a failure rate below its 95% bound (about 3/n); a new run whose failing fraction of
  trials exceeds that bound contradicts the claim, and that is what gates. A baseline with no
  evidence (unavailable, not diagnosed, no trials) bounds nothing, so any failure gates.
  Two kinds of failure are listed as "unsafe now, not a regression the baseline can confirm"
  and do not gate (``--fail-on unsafe`` gates on any unsafe verdict):

  - a failure within the bound (1 failing trial of 5 against a bound of 45%): as likely a rare
    defect that the baseline's few trials missed as a change in the build;
  - a probe the baseline already saw fail in another mode of the same kind (threads 4 crashed,
    threads 2 was "safe"): a race needs no particular thread count, so the probe was already
    unsafe under threads, and the clean baseline run was luck.

  Fixes are the reverse. A change between two failing kinds (crash -> error) is listed, not
  gated: both were already unsafe. Probes that became unavailable are counted, not listed.
- **Race pairs** (the race pass, ``diagnose --races``): a pair the new pass found that the
  baseline's pass of the same cell did not is a regression; one the baseline had and a new pass
  that ran to the end did not is a fix. Against a baseline with no race pass, a pair is listed as
  unconfirmed: nothing says it is new.
- **Builds**: the interpreter, then libraries by family (libnetcdf 4.10.1 -> 4.9.0; libhdf5 with
  its copies and thread-safe flag), then package versions. Libraries whose path alone changed
  (a new venv, the same bytes) are folded into one count.
- **Scaling**: speedups that fell by more than ``SCALING_NOISE`` (a relative drop), never gated.

Exit codes of the gate: 0 when nothing got worse, 1 when a safety verdict regressed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from threadprobe.records import (Diagnosis, Mode, RaceStatus, Record, Result, Verdict, is_clean, is_failing,
                             is_unavailable, is_unsafe, race_keys, serial_failures)

#: A relative fall in speedup larger than this is reported (it never gates). Measured on this
#: 2-core machine over chains of default diagnoses of an unchanged install, each against the one
#: before (tests/soak/noise.py): p95 0.12-0.15, p99 0.23-0.25 of the relative falls.
SCALING_NOISE = 0.35
#: Version 1 fingerprints named packages by distribution; version 2 by import name.
IMPORT_NAMES = {"scitools-iris": "iris", "cf-units": "cf_units", "iris-sample-data": "iris_sample_data"}
IGNORED_PACKAGES = {"threadprobe", "toolkit", "gilknocker", "py-spy"}
WATCHED = ("libhdf5", "libnetcdf", "libudunits2", "libz", "libcurl")


@dataclass(frozen=True)
class Change(Record):
    probe: str
    mode: str
    workers: int
    old: str
    new: str
    detail: str = ""

    @property
    def where(self) -> str:
        return self.probe if self.mode in ("serial", "library", "package", "python") else \
            f"{self.probe} ({self.mode} {self.workers})"


@dataclass(frozen=True)
class Comparison(Record):
    worse: tuple[Change, ...] = ()
    unconfirmed: tuple[Change, ...] = ()  # failing now, but not a change the baseline can confirm
    better: tuple[Change, ...] = ()
    changed: tuple[Change, ...] = ()
    unavailable: tuple[Change, ...] = ()  # results that became (or stopped being) unavailable
    libraries: tuple[Change, ...] = ()  # one per library family that changed
    other_libraries: int = 0  # libraries outside those families that changed, appeared or went
    moved_libraries: int = 0  # the same bytes at another path
    packages: tuple[Change, ...] = ()
    python: tuple[Change, ...] = ()
    scaling: tuple[Change, ...] = ()
    noise_threshold: float = SCALING_NOISE
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def regressed(self) -> bool:
        return bool(self.worse)


def _key(r: Result) -> tuple[str, str, int]:
    return (r.probe, str(r.mode), r.workers)


def _evidence(r: Result) -> str:
    return r.evidence[0].summary if r.evidence else ""


def failing_fraction(r: Result) -> float:
    """The fraction of trials that failed; a result with no trials that still failed counts as 1."""
    if r.trials <= 0:
        return 1.0 if is_failing(r.verdict) else 0.0
    return r.failed_trials / r.trials


def contradicts(was: Result | None, now: Result) -> bool:
    """Whether a failing result contradicts the baseline's safe claim (its 95% failure-rate bound)."""
    if was is None or was.trials <= 0:
        return True
    return failing_fraction(now) > was.failure_rate_upper95


def _failing_kinds(d: Diagnosis) -> dict[tuple[str, str], str]:
    """(probe, mode kind) -> one failing result of that kind, e.g. 'threads 4: crash'."""
    out: dict[tuple[str, str], str] = {}
    for r in d.results:
        if r.remedy is None and is_failing(r.verdict) and r.mode != Mode.SERIAL:
            out.setdefault((r.probe, str(r.mode)), f"{r.mode} {r.workers}: {r.verdict}")
    return out


def _counts(was: Result | None, now: Result) -> str:
    text = f"{now.failed_trials} of {now.trials} trials failed"
    if was is not None and was.trials > 0:
        text += f"; baseline: 0 of {was.trials}, failure rate below {was.failure_rate_upper95:.0%}"
    return text


def compare(old: Diagnosis, new: Diagnosis, threshold: float = SCALING_NOISE) -> Comparison:
    """Pure: the differences between two diagnoses."""
    before = {_key(r): r for r in old.results if r.remedy is None}
    after = {_key(r): r for r in new.results if r.remedy is None}
    already_unsafe = _failing_kinds(old)
    broken = serial_failures(new.results)  # errs serially too: a broken probe, unsafe nowhere
    worse: list[Change] = []
    unconfirmed: list[Change] = []
    better, changed, unavailable, scaling = [], [], [], []
    for key, r in sorted(after.items()):
        was = before.get(key)
        old_verdict = str(was.verdict) if was is not None else "not diagnosed"
        verdict = str(r.verdict)
        if _race_only(old_verdict, verdict):
            continue  # safe <-> racy: the race pairs below say what changed
        if verdict == old_verdict:
            if was is not None and was.speedup and r.speedup and r.speedup < was.speedup * (1 - threshold):
                scaling.append(Change(*key, f"x{was.speedup:.2f}", f"x{r.speedup:.2f}",
                                      f"speedup fell {1 - r.speedup / was.speedup:.0%} (noise threshold {threshold:.0%})"))
            continue
        change = Change(*key, old_verdict, verdict, _evidence(r))
        if is_unavailable(verdict) or (is_unavailable(old_verdict) and not is_failing(verdict)):
            unavailable.append(change)  # a failure where nothing was known before still gates, below
        elif is_failing(verdict) and not is_failing(old_verdict) and is_unsafe(r, r.probe in broken):
            bounded = was if is_clean(old_verdict) else None
            sibling = already_unsafe.get((r.probe, str(r.mode))) if bounded is not None else None
            why = f"already unsafe in the baseline ({sibling})" if sibling else None
            change = Change(*key, old_verdict, verdict, "; ".join(filter(None, [_counts(bounded, r), why, _evidence(r)])))
            (worse if contradicts(bounded, r) and not sibling else unconfirmed).append(change)
        elif is_failing(old_verdict) and not is_failing(verdict):
            better.append(change)
        else:
            changed.append(change)
    for kind, change in race_changes(before, after):
        {"worse": worse, "unconfirmed": unconfirmed, "better": better}[kind].append(change)
    notes = tuple(f"{p} ({m} {w}) is no longer diagnosed (was {before[(p, m, w)].verdict})"
                  for (p, m, w) in sorted(set(before) - set(after)))
    families, others, moved = library_changes(old.fingerprint, new.fingerprint)
    return Comparison(tuple(worse), tuple(unconfirmed), tuple(better), tuple(changed), tuple(unavailable),
                      tuple(families), others, moved, tuple(package_changes(old.fingerprint, new.fingerprint)),
                      tuple(python_changes(old, new)), tuple(scaling), threshold, notes)


def _race_only(old: str, new: str) -> bool:
    """A change that only a race pass made (safe, or nothing, <-> racy)."""
    return Verdict.RACY in (old, new) and {old, new} <= {Verdict.SAFE, Verdict.RACY, "not diagnosed"}


def _ran(r: Result | None) -> bool:
    """Did a race pass run on this cell to the end (so that a missing pair means something)?"""
    return r is not None and r.races is not None and r.races.status != RaceStatus.FAILED


def race_changes(before: dict[tuple[str, str, int], Result],
                 after: dict[tuple[str, str, int], Result]) -> list[tuple[str, Change]]:
    """New race pairs (worse when the baseline's pass ran, else unconfirmed), and pairs gone (better)."""
    out: list[tuple[str, Change]] = []
    for key, r in sorted(after.items()):
        was = before.get(key)
        new, old = race_keys(r), race_keys(was) if was is not None else frozenset()
        tool = r.races.tool if r.races is not None else ""
        for pair in sorted(new - old):
            detail = f"{tool}: not in the baseline's pass" if _ran(was) else "the baseline ran no race pass"
            out.append(("worse" if _ran(was) else "unconfirmed", Change(*key, "no race pair", f"race {pair}", detail)))
        if _ran(r):
            out += [("better", Change(*key, f"race {pair}", "race pair gone")) for pair in sorted(old - new)]
    return out


# --------------------------------------------------------------------------------------------
# Builds


def _family_of(lib: dict[str, Any]) -> str:
    return str(lib.get("family") or lib.get("path", "?"))


def describe_family(libraries: list[dict[str, Any]]) -> str:
    """'2.0.0, 2.2.0 (2 copies, not thread-safe)', '1.10.8 (thread-safe)', or 'absent'."""
    if not libraries:
        return "absent"
    versions = sorted({str(lib.get("version") or "?") for lib in libraries})
    copies = len({lib.get("sha256") or lib["path"] for lib in libraries})
    notes = [f"{copies} copies"] if copies > 1 else []
    flags = {lib.get("threadsafe") for lib in libraries if "threadsafe" in lib}
    if flags:
        notes.append("thread-safe" if flags == {True} else "not thread-safe" if flags == {False} else "thread-safe: mixed")
    return ", ".join(versions) + (f" ({', '.join(notes)})" if notes else "")


def library_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[Change], int, int]:
    """Changes per watched family, then a count of other libraries that changed, and of those
    that only moved (same bytes, another path)."""
    a: dict[str, list[dict[str, Any]]] = defaultdict(list)
    b: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for lib in old.get("libraries") or []:
        a[_family_of(lib)].append(lib)
    for lib in new.get("libraries") or []:
        b[_family_of(lib)].append(lib)
    changes = []
    for fam in WATCHED:
        was, now = describe_family(a.get(fam, [])), describe_family(b.get(fam, []))
        if was != now:
            changes.append(Change(fam, "library", 0, was, now))
    others = moved = 0
    old_rest = {lib.get("sha256"): lib for f, libs in a.items() if f not in WATCHED for lib in libs}
    new_rest = {lib.get("sha256"): lib for f, libs in b.items() if f not in WATCHED for lib in libs}
    for digest in set(old_rest) | set(new_rest):
        x, y = old_rest.get(digest), new_rest.get(digest)
        if x is not None and y is not None:
            moved += x["path"] != y["path"]
        else:
            others += 1
    return changes, others, moved


def _packages(fingerprint: dict[str, Any]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, value in (fingerprint.get("packages") or {}).items():
        name = IMPORT_NAMES.get(name, name)
        if name in IGNORED_PACKAGES:
            continue
        out[name] = value.get("version") if isinstance(value, dict) else value
    return out


def package_changes(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    a, b = _packages(old), _packages(new)
    return [Change(name, "package", 0, str(a.get(name) or "not installed"), str(b.get(name) or "not installed"))
            for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]


def python_changes(old: Diagnosis, new: Diagnosis) -> list[Change]:
    def text(d: Diagnosis) -> str:
        python = d.fingerprint.get("python") or {}
        gil = "GIL on" if python.get("gil_enabled", True) else "free-threaded, GIL off"
        return f"{python.get('executable') or d.interpreter or '?'} {python.get('version', '?')} ({gil})"

    was, now = text(old), text(new)
    return [Change("python", "python", 0, was, now)] if was != now else []


# --------------------------------------------------------------------------------------------
# The one-screen summary


def _grouped(items: tuple[Change, ...]) -> list[str]:
    """One line per probe: its modes' changes side by side."""
    by_probe: dict[str, list[Change]] = defaultdict(list)
    for x in items:
        by_probe[x.probe].append(x)
    lines = []
    for probe, changes in by_probe.items():
        parts = [f"{x.mode} {x.workers}: {x.old} -> {x.new}" if x.mode != "serial" else f"serial: {x.old} -> {x.new}"
                 for x in changes]
        detail = next((x.detail for x in changes if x.detail), "")
        lines.append(f"  {probe}: " + "; ".join(parts) + (f"  [{detail[:160]}]" if detail else ""))
    return lines


def summary(c: Comparison) -> list[str]:
    """Human lines, one screen: the first names every probe that regressed (or says nothing did);
    then the builds (interpreter, library families, packages), then the verdicts."""
    if c.worse:
        lines = ["REGRESSION: " + "; ".join(f"{x.where} {x.old} -> {x.new}" for x in c.worse)]
    else:
        lines = ["no safety regression against the baseline"]
    for x in c.python:
        lines.append(f"python: {x.old} -> {x.new}")
    if c.libraries or c.other_libraries or c.moved_libraries:
        lines.append("native libraries:")
        lines.extend(f"  {x.probe}: {x.old} -> {x.new}" for x in c.libraries)
        rest = []
        if c.other_libraries:
            rest.append(f"{c.other_libraries} other libraries changed, appeared or went away")
        if c.moved_libraries:
            rest.append(f"{c.moved_libraries} only moved (same bytes, another path)")
        if rest:
            lines.append("  (" + "; ".join(rest) + ")")
    if c.packages:
        lines.append("packages: " + "; ".join(f"{x.probe} {x.old} -> {x.new}" for x in c.packages))
    for title, items in (("got worse", c.worse),
                         ("unsafe now, not a regression the baseline can confirm (not gated; more trials tell)",
                          c.unconfirmed),
                         ("got better", c.better), ("changed between failing kinds", c.changed)):
        if items:
            lines.append(f"{title}:")
            lines.extend(_grouped(items))
    if c.unavailable:
        gone = sorted({x.probe for x in c.unavailable if x.new == "unavailable"})
        back = sorted({x.probe for x in c.unavailable if x.old == "unavailable"})
        if gone:
            lines.append(f"unavailable now: {len(gone)} probes ({_short(gone)})")
        if back:
            lines.append(f"available again: {len(back)} probes ({_short(back)})")
    if c.scaling:
        lines.append("scaling fell: " + "; ".join(f"{x.where} {x.old} -> {x.new}" for x in c.scaling[:6])
                     + (f" and {len(c.scaling) - 6} more" if len(c.scaling) > 6 else ""))
    lines.extend(c.notes[:3])
    return lines


def _short(names: list[str], limit: int = 4) -> str:
    families = sorted({n.split(".")[0] for n in names})
    return ", ".join(families[:limit]) + (" ..." if len(families) > limit else "")
