"""What changed between two diagnoses: the gate for new library builds.

- **Verdicts**: a regression is a result that was safe and now fails (crash, corrupt, hang or
  error) *more often than the baseline's own bound allowed*. A safe verdict after n clean trials
  claims a failure rate below its 95% bound (about 3/n); a new run whose failing fraction of
  trials exceeds that bound contradicts the claim, and that is what gates. A baseline with no
  evidence (unavailable, not diagnosed, no trials) bounds nothing, so any failure gates.
  Two kinds of failure are listed as "unsafe now, not a regression the baseline can confirm"
  and do not gate (``--fail-on unsafe`` gates on any unsafe verdict):

  - a failure within the bound (1 failing trial of 5 against a bound of 45%): as likely a rare
    defect that the baseline's few trials missed as a change in the build;
  - a probe the baseline already saw fail in another mode of the same kind (threads 4 crashed,
    threads 2 was "safe"): a race needs no particular thread count, so the probe was already
    unsafe under threads, and the clean baseline run was luck (measured: netCDF4's shared read
    fails ~40% of 2-thread trials, so six clean ones happen in ~5% of diagnoses).

  Fixes are the reverse. A change between two failing kinds (crash -> error) is listed, not
  gated: both were already unsafe.
- **Libraries**: native libraries whose path, version or sha256 changed, appeared or went away.
  A changed library with safe verdicts is reported and does not fail the gate.
- **Scaling**: speedups that fell by more than ``SCALING_NOISE`` (a relative drop). The
  threshold is measured: see ``SCALING_NOISE`` and the README.

Exit codes of the gate: 0 when nothing got worse, 1 when a safety verdict regressed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toolkit.records import Diagnosis, Record, Result

FAILING = frozenset({"crash", "corrupt", "hang", "error"})
#: A relative fall in speedup larger than this is reported (it never gates). Measured on this
#: 2-core machine over chains of default diagnoses of an unchanged install, each against the one
#: before (tests/soak/noise.py): 20 pairs with three timing trials per mode (1671 probe x mode
#: speedup pairs: p95 0.15, p99 0.25, max 0.47) and 8 pairs with the current two (671 pairs:
#: p95 0.12, p99 0.23, max 0.61). 0.35 reports 5 of those 2342 pairs (0.2%).
SCALING_NOISE = 0.35


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
        return self.probe if self.mode == "serial" else f"{self.probe} ({self.mode} {self.workers})"


@dataclass(frozen=True)
class Comparison(Record):
    worse: tuple[Change, ...] = ()
    unconfirmed: tuple[Change, ...] = ()  # failing now, but not a change the baseline can confirm
    better: tuple[Change, ...] = ()
    changed: tuple[Change, ...] = ()
    libraries: tuple[Change, ...] = ()
    scaling: tuple[Change, ...] = ()
    noise_threshold: float = SCALING_NOISE
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def regressed(self) -> bool:
        return bool(self.worse)


def _key(r: Result) -> tuple[str, str, int]:
    return (r.probe, r.mode, r.workers)


def _evidence(r: Result) -> str:
    return r.evidence[0].summary if r.evidence else ""


def failed_trials(r: Result) -> int:
    return sum(r.outcomes.get(kind, 0) for kind in FAILING)


def failing_fraction(r: Result) -> float:
    """The fraction of trials that failed; a result with no trials that still failed counts as 1."""
    if r.trials <= 0:
        return 1.0 if r.verdict in FAILING else 0.0
    return failed_trials(r) / r.trials


def contradicts(was: Result | None, now: Result) -> bool:
    """Whether a failing result contradicts the baseline's safe claim (its 95% failure-rate bound)."""
    if was is None or was.trials <= 0:
        return True
    return failing_fraction(now) > was.failure_rate_upper95


def _failing_kinds(d: Diagnosis) -> dict[tuple[str, str], str]:
    """(probe, mode kind) -> one failing result of that kind, e.g. 'threads 4: crash'."""
    out: dict[tuple[str, str], str] = {}
    for r in d.results:
        if r.remedy is None and r.verdict in FAILING and r.mode != "serial":
            out.setdefault((r.probe, r.mode), f"{r.mode} {r.workers}: {r.verdict}")
    return out


def _counts(was: Result | None, now: Result) -> str:
    text = f"{failed_trials(now)} of {now.trials} trials failed"
    if was is not None and was.trials > 0:
        text += f"; baseline: 0 of {was.trials}, failure rate below {was.failure_rate_upper95:.0%}"
    return text


def compare(old: Diagnosis, new: Diagnosis, threshold: float = SCALING_NOISE) -> Comparison:
    """Pure: the differences between two diagnoses."""
    before = {_key(r): r for r in old.results if r.remedy is None}
    after = {_key(r): r for r in new.results if r.remedy is None}
    already_unsafe = _failing_kinds(old)
    worse, unconfirmed, better, changed, scaling = [], [], [], [], []
    for key, r in sorted(after.items()):
        was = before.get(key)
        old_verdict = was.verdict if was is not None else "not diagnosed"
        if r.verdict == old_verdict:
            if was is not None and was.speedup and r.speedup and r.speedup < was.speedup * (1 - threshold):
                scaling.append(Change(*key, f"x{was.speedup:.2f}", f"x{r.speedup:.2f}",
                                      f"speedup fell {1 - r.speedup / was.speedup:.0%} (noise threshold {threshold:.0%})"))
            continue
        change = Change(*key, old_verdict, r.verdict, _evidence(r))
        if r.verdict in FAILING and old_verdict not in FAILING:
            bounded = was if old_verdict == "safe" else None
            sibling = already_unsafe.get((r.probe, r.mode)) if bounded is not None else None
            why = f"already unsafe in the baseline ({sibling})" if sibling else None
            change = Change(*key, old_verdict, r.verdict,
                            "; ".join(filter(None, [_counts(bounded, r), why, _evidence(r)])))
            (worse if contradicts(bounded, r) and not sibling else unconfirmed).append(change)
        elif old_verdict in FAILING and r.verdict not in FAILING:
            better.append(change)
        else:
            changed.append(change)
    notes = tuple(f"{p} ({m} {w}) is no longer diagnosed (was {before[(p, m, w)].verdict})"
                  for (p, m, w) in sorted(set(before) - set(after)))
    return Comparison(tuple(worse), tuple(unconfirmed), tuple(better), tuple(changed),
                      tuple(library_changes(old, new)), tuple(scaling), threshold, notes)


def library_changes(old: Diagnosis, new: Diagnosis) -> list[Change]:
    def index(d: Diagnosis) -> dict[str, dict]:
        out = {}
        for lib in d.fingerprint.get("libraries") or []:
            out[f"{lib.get('loaded_by', '?')}:{lib.get('family', lib['path'])}:{lib.get('soname') or lib['path']}"] = lib
        return out

    a, b = index(old), index(new)
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        name = (y or x or {}).get("family", key)
        if x is None:
            out.append(Change(name, "library", 0, "absent", y["path"], f"new: {y.get('version') or ''} {y['sha256'][:12]}"))
        elif y is None:
            out.append(Change(name, "library", 0, x["path"], "absent", "no longer loaded"))
        elif (x.get("sha256"), x.get("version"), x.get("path")) != (y.get("sha256"), y.get("version"), y.get("path")):
            what = [f"{k}: {x.get(k)} -> {y.get(k)}" for k in ("path", "version") if x.get(k) != y.get(k)]
            if x.get("sha256") != y.get("sha256"):
                what.append(f"sha256: {x['sha256'][:12]} -> {y['sha256'][:12]}")
            out.append(Change(name, "library", 0, str(x.get("version")), str(y.get("version")), "; ".join(what)))
    old_copies, new_copies = old.fingerprint.get("hdf5_copies"), new.fingerprint.get("hdf5_copies")
    if old_copies is not None and new_copies is not None and old_copies != new_copies:
        out.append(Change("libhdf5 copies", "library", 0, str(old_copies), str(new_copies), "HDF5 copies in one process"))
    return out


def summary(c: Comparison) -> list[str]:
    """Human lines; the first names every probe that regressed (or says nothing did)."""
    if c.worse:
        lines = ["REGRESSION: " + "; ".join(f"{x.where} {x.old} -> {x.new}" for x in c.worse)]
    else:
        lines = ["no safety regression against the baseline"]
    for title, items in (("got worse", c.worse),
                         ("unsafe now, not a regression the baseline can confirm (not gated; more --trials tell)",
                          c.unconfirmed),
                         ("got better", c.better), ("changed between failing kinds", c.changed),
                         ("native libraries changed", c.libraries), ("scaling fell", c.scaling)):
        if items:
            lines.append(f"{title}:")
            lines.extend(f"  {x.where}: {x.old} -> {x.new}" + (f"  [{x.detail}]" if x.detail else "") for x in items)
    lines.extend(c.notes)
    return lines
