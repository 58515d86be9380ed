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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from threadprobe.records import (Diagnosis, Fingerprint, GilState, Mode, RaceStatus, Record, Result, Verdict, is_clean,
                             is_failing, is_unavailable, is_unsafe, race_keys, serial_failures)

#: A relative fall in speedup larger than this is reported (it never gates). Measured on this
#: 2-core machine over chains of default diagnoses of an unchanged install, each against the one
#: before (tests/soak/noise.py): p95 0.12-0.15, p99 0.23-0.25 of the relative falls.
SCALING_NOISE = 0.35
#: Version 1 fingerprints named packages by distribution; version 2 by import name.
IMPORT_NAMES = {"scitools-iris": "iris", "cf-units": "cf_units", "iris-sample-data": "iris_sample_data"}
IGNORED_PACKAGES = {"threadprobe", "toolkit", "gilknocker", "py-spy"}
WATCHED = ("libhdf5", "libnetcdf", "libudunits2", "libz", "libcurl")
#: A summary fits on one screen.
SUMMARY_LINES = 40


@dataclass(frozen=True)
class Change(Record):
    probe: str
    mode: str
    workers: int
    old: str
    new: str
    detail: str = ""
    gil: GilState = GilState.AS_IMPORTED  # the new cell's GIL state

    @property
    def cell(self) -> str:
        return f"{self.mode} {self.workers}" + (", GIL off" if self.gil == GilState.OFF else "")

    @property
    def where(self) -> str:
        return self.probe if self.mode in (Mode.SERIAL, "library", "package", "python") else f"{self.probe} ({self.cell})"


#: A cell of a diagnosis: probe, mode, workers and GIL state.
Key = tuple[str, str, int, GilState]


def _change(key: Key, old: str, new: str, detail: str = "") -> Change:
    probe, mode, workers, gil = key
    return Change(probe, mode, workers, old, new, detail, gil)


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
    faster: tuple[Change, ...] = ()  # speedups that rose beyond the noise (never gated)
    contention: tuple[Change, ...] = ()  # contention classes that changed
    gil: tuple[str, str] = ("", "")  # the GIL of each side, in words

    @property
    def regressed(self) -> bool:
        return bool(self.worse)


def _key(r: Result) -> Key:
    return (r.probe, str(r.mode), r.workers, r.gil)


def _baseline(before: dict[Key, Result], key: Key, forced: bool) -> tuple[Result | None, str]:
    """The baseline's cell for ``key``: the same cell, or (for a cell with the GIL forced off, against
    a baseline that never forced it off: another build, or one state) its cell with the GIL as
    imported, which is what that build ran. The second value says which, when it is not the same."""
    was = before.get(key)
    if was is not None or key[3] != GilState.OFF or forced:
        return was, ""
    was = before.get((*key[:3], GilState.AS_IMPORTED))
    return was, "against the baseline's cell with the GIL as imported" if was is not None else ""


def gil_words(d: Diagnosis) -> str:
    """The GIL of a diagnosis in a few words: a GIL build; or a free-threaded one, its GIL as the
    imports left it (and which module turned it on), and whether cells forced it off."""
    python = d.fingerprint.get("python") or {}
    if not python.get("free_threaded_build"):
        return "GIL build"
    on = python.get("gil_reenabled_by") or []
    imported = f"on (turned on by {', '.join(on)})" if on and python.get("gil_enabled") else "off"
    forced = any(r.gil == GilState.OFF for r in d.results)
    return f"free-threaded build; GIL as imported {imported}" + ("; cells with the GIL forced off" if forced else "")


def _evidence(r: Result) -> str:
    return r.safety.evidence[0].summary if r.safety.evidence else ""


def failing_fraction(r: Result) -> float:
    """The fraction of trials that failed; a result with no trials that still failed counts as 1."""
    if r.trials <= 0:
        return 1.0 if is_failing(r.verdict) else 0.0
    return r.failed_trials / r.trials


def contradicts(was: Result | None, now: Result) -> bool:
    """Whether a failing result contradicts the baseline's safe claim (its 95% failure-rate bound)."""
    if was is None or was.trials <= 0:
        return True
    return failing_fraction(now) > was.safety.failure_rate_upper95


def _failing_kinds(d: Diagnosis) -> dict[tuple[str, str, GilState], str]:
    """(probe, mode kind, GIL state) -> one failing result of that kind, e.g. 'threads 4: crash'."""
    out: dict[tuple[str, str, GilState], str] = {}
    for r in d.results:
        if r.remedy is None and is_failing(r.verdict) and r.mode != Mode.SERIAL:
            out.setdefault((r.probe, str(r.mode), r.gil), f"{r.label}: {r.verdict}")
    return out


def _counts(was: Result | None, now: Result) -> str:
    text = f"{now.failed_trials} of {now.trials} trials failed"
    if was is not None and was.trials > 0:
        text += f"; baseline: 0 of {was.trials}, failure rate below {was.safety.failure_rate_upper95:.0%}"
    return text


@dataclass
class _Lists:
    """The changes ``compare`` sorts, as it sorts them."""

    worse: list[Change] = field(default_factory=list)
    unconfirmed: list[Change] = field(default_factory=list)
    better: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    unavailable: list[Change] = field(default_factory=list)
    scaling: list[Change] = field(default_factory=list)
    faster: list[Change] = field(default_factory=list)
    contention: list[Change] = field(default_factory=list)


def _speed_and_contention(key: Key, was: Result, r: Result, threshold: float, lists: _Lists, how: str) -> None:
    """Speedups beyond the noise either way, and a changed contention class (never gated)."""
    if was.speed.speedup and r.speed.speedup and r.speed.speedup < was.speed.speedup * (1 - threshold):
        lists.scaling.append(_change(key, f"x{was.speed.speedup:.2f}", f"x{r.speed.speedup:.2f}", "; ".join(filter(None, [
            f"speedup fell {1 - r.speed.speedup / was.speed.speedup:.0%} (noise threshold {threshold:.0%})", how]))))
    elif was.speed.speedup and r.speed.speedup and r.speed.speedup > was.speed.speedup / (1 - threshold):
        lists.faster.append(_change(key, f"x{was.speed.speedup:.2f}", f"x{r.speed.speedup:.2f}", how))
    if was.contention.kind and r.contention.kind and was.contention.kind != r.contention.kind:
        lists.contention.append(_change(key, str(was.contention.kind), str(r.contention.kind), how))


def _verdict_change(key: Key, was: Result | None, r: Result, how: str, context: tuple[dict[tuple[str, str, GilState], str],
                    set[str]], lists: _Lists) -> None:
    """Sort one cell whose verdict changed (see the module's docstring)."""
    already_unsafe, broken = context
    old_verdict = str(was.verdict) if was is not None else "not diagnosed"
    verdict = str(r.verdict)
    change = _change(key, old_verdict, verdict, "; ".join(filter(None, [_evidence(r), how])))
    if is_unavailable(verdict) or (is_unavailable(old_verdict) and not is_failing(verdict)):
        lists.unavailable.append(change)  # a failure where nothing was known before still gates, below
    elif is_failing(verdict) and not is_failing(old_verdict) and is_unsafe(r, r.probe in broken):
        bounded = was if is_clean(old_verdict) else None
        sibling = already_unsafe.get((r.probe, str(r.mode), was.gil if was is not None else r.gil)) \
            if bounded is not None else None
        why = f"already unsafe in the baseline ({sibling})" if sibling else None
        change = _change(key, old_verdict, verdict, "; ".join(filter(None, [_counts(bounded, r), why, how, _evidence(r)])))
        (lists.worse if contradicts(bounded, r) and not sibling else lists.unconfirmed).append(change)
    elif is_failing(old_verdict) and not is_failing(verdict):
        lists.better.append(change)
    else:
        lists.changed.append(change)


def compare(old: Diagnosis, new: Diagnosis, threshold: float = SCALING_NOISE) -> Comparison:
    """Pure: the differences between two diagnoses, cell by cell (probe, mode, workers, GIL state)."""
    before = {_key(r): r for r in old.results if r.remedy is None}
    after = {_key(r): r for r in new.results if r.remedy is None}
    forced = any(k[3] == GilState.OFF for k in before)
    context = (_failing_kinds(old), serial_failures(new.results))  # errs serially too: a broken probe
    lists = _Lists()
    matched: set[Key] = set()
    for key, r in sorted(after.items()):
        was, how = _baseline(before, key, forced)
        if was is not None:
            matched.add(_key(was))
        old_verdict = str(was.verdict) if was is not None else "not diagnosed"
        if _race_only(old_verdict, str(r.verdict)):
            continue  # safe <-> racy: the race pairs below say what changed
        if str(r.verdict) == old_verdict:
            if was is not None:
                _speed_and_contention(key, was, r, threshold, lists, how)
            continue
        _verdict_change(key, was, r, how, context, lists)
    for kind, change in race_changes(before, after):
        getattr(lists, kind).append(change)
    notes = tuple(f"{p} ({m} {w}{', GIL off' if g == GilState.OFF else ''}) is no longer diagnosed "
                  f"(was {before[(p, m, w, g)].verdict})" for (p, m, w, g) in sorted(set(before) - set(after) - matched))
    families, others, moved = library_changes(old.fingerprint, new.fingerprint)
    return Comparison(tuple(lists.worse), tuple(lists.unconfirmed), tuple(lists.better), tuple(lists.changed),
                      tuple(lists.unavailable), tuple(families), others, moved,
                      tuple(package_changes(old.fingerprint, new.fingerprint)), tuple(python_changes(old, new)),
                      tuple(lists.scaling), threshold, notes, tuple(lists.faster), tuple(lists.contention),
                      (gil_words(old), gil_words(new)))


def _race_only(old: str, new: str) -> bool:
    """A change that only a race pass made (safe, or nothing, <-> racy); racy in both is no change,
    and its speed and contention are compared as any other cell's."""
    return old != new and Verdict.RACY in (old, new) and {old, new} <= {Verdict.SAFE, Verdict.RACY, "not diagnosed"}


def _ran(r: Result | None) -> bool:
    """Did a race pass run on this cell to the end (so that a missing pair means something)?"""
    return r is not None and r.races is not None and r.races.status != RaceStatus.FAILED


def race_changes(before: dict[Key, Result], after: dict[Key, Result]) -> list[tuple[str, Change]]:
    """New race pairs (worse when the baseline's pass ran, else unconfirmed), and pairs gone (better)."""
    out: list[tuple[str, Change]] = []
    for key, r in sorted(after.items()):
        was = before.get(key)
        new, old = race_keys(r), race_keys(was) if was is not None else frozenset()
        tool = r.races.tool if r.races is not None else "race pass"
        for pair in sorted(new - old):
            detail = f"{tool}: not in the baseline's pass" if _ran(was) else "the baseline ran no race pass"
            out.append(("worse" if _ran(was) else "unconfirmed", _change(key, "no race pair", f"race {pair}", detail)))
        if _ran(r):
            out += [("better", _change(key, f"race {pair}", "race pair gone")) for pair in sorted(old - new)]
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


def library_changes(old: Fingerprint, new: Fingerprint) -> tuple[list[Change], int, int]:
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


def _packages(fingerprint: Fingerprint) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, value in (fingerprint.get("packages") or {}).items():
        name = IMPORT_NAMES.get(name, name)
        if name in IGNORED_PACKAGES:
            continue
        out[name] = value.get("version") if isinstance(value, dict) else value
    return out


def package_changes(old: Fingerprint, new: Fingerprint) -> list[Change]:
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
        parts = [f"{x.cell}: {x.old} -> {x.new}" if x.mode != Mode.SERIAL else f"serial: {x.old} -> {x.new}"
                 for x in changes]
        detail = next((x.detail for x in changes if x.detail), "")
        lines.append(f"  {probe}: " + "; ".join(parts) + (f"  [{detail[:160]}]" if detail else ""))
    return lines


def summary(c: Comparison) -> list[str]:
    """Human lines, one screen: the first names every probe that regressed (or says nothing did);
    then the builds (interpreter, library families, packages), then the verdicts."""
    if c.worse:
        lines = ["REGRESSION: " + "; ".join(f"{x.where} {x.old} -> {x.new}" for x in c.worse[:6])
                 + (f" and {len(c.worse) - 6} more" if len(c.worse) > 6 else "")]
    else:
        lines = ["no safety regression against the baseline"]
    for x in c.python:
        lines.append(f"python: {x.old} -> {x.new}")
    if c.gil[0] != c.gil[1] or "free-threaded" in c.gil[1]:
        lines.append(f"GIL: {c.gil[0] or '?'} -> {c.gil[1] or '?'}")
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
                         ("got better", c.better), ("changed between failing kinds", c.changed),
                         ("contention changed", c.contention), (f"faster beyond the noise ({c.noise_threshold:.0%})",
                                                                c.faster)):
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
    return _fold(lines)


def _fold(lines: list[str], limit: int = SUMMARY_LINES) -> list[str]:
    """One screen: past ``limit`` lines, the tail is counted, not shown (``--json`` has it all)."""
    if len(lines) <= limit:
        return lines
    return lines[:limit - 1] + [f"... and {len(lines) - limit + 1} more lines (threadprobe compare --json has every change)"]


def _short(names: list[str], limit: int = 4) -> str:
    families = sorted({n.split(".")[0] for n in names})
    return ", ".join(families[:limit]) + (" ..." if len(families) > limit else "")


# --------------------------------------------------------------------------------------------
# The two GIL states of one diagnosis


def gil_effects(results: Sequence[Result]) -> list[str]:
    """What forcing the GIL off changes, one line per probe: each threads cell against the same
    mode with the GIL as imported (verdict, speedup, contention). Empty on a GIL build."""
    cells = {_key(r): r for r in results if r.remedy is None and r.mode == Mode.THREADS}
    lines = []
    for probe in dict.fromkeys(k[0] for k in cells if k[3] == GilState.OFF):
        parts = []
        for key, off in sorted((k, r) for k, r in cells.items() if k[0] == probe and k[3] == GilState.OFF):
            on = cells.get((*key[:3], GilState.AS_IMPORTED))
            if on is not None:
                parts.append(f"{off.mode} {off.workers}: {_brief(on)} -> {_brief(off)}")
        if parts:
            on_by = next((r.gil_reenabled_by for k, r in cells.items() if k[0] == probe and r.gil_enabled), ())
            note = f" [as imported, the GIL was on: {', '.join(on_by)}]" if on_by else ""
            lines.append(f"{probe}: " + "; ".join(parts) + note)
    return lines


def _brief(r: Result) -> str:
    """A cell in a few words: verdict, speedup, contention class."""
    speed = f" x{r.speed.speedup:.2f}" if r.speed.speedup is not None else ""
    return f"{r.verdict}{speed}" + (f" {r.contention.kind}" if r.contention.kind else "")
