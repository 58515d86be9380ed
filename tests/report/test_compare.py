"""Baseline comparison: what regressed, what improved, what changed, and the gate's exit code."""

import copy

from threadprobe.report.compare import SCALING_NOISE, compare, summary
from threadprobe.diagnosis.detect import failure_upper95
from threadprobe.records import Diagnosis, RacePair, RacePass, RaceStatus, Result, Safety, Speed, with_races


def r(probe, verdict, mode="threads", workers=2, speedup=None, trials=4, failed=None):
    failed = (0 if verdict == "safe" else trials) if failed is None else failed
    return Result(probe=probe, dependency="d", mode=mode, workers=workers, processes=1, threads=workers, trials=trials,
                  verdict=verdict, safety=Safety({"ok": trials - failed, **({verdict: failed} if failed else {})},
                                                 failure_upper95(failed, trials)),
                  speed=Speed(speedup=speedup))


def diag(results, libraries=()):
    return Diagnosis(created="t", threadprobe="0", config={}, results=tuple(results),
                     fingerprint={"python": {"version": "3.11", "gil_enabled": True}, "platform": "x", "packages": {},
                                  "libraries": list(libraries), "hdf5_copies": 2})


LIB = {"path": "/x/libhdf5-a.so", "family": "libhdf5", "soname": "libhdf5-a.so", "loaded_by": "h5py",
       "version": "1.14.0", "sha256": "a" * 64}


def test_safe_to_failing_is_a_regression_named_in_the_first_line():
    c = compare(diag([r("p.one", "safe"), r("p.two", "safe")]), diag([r("p.one", "crash"), r("p.two", "safe")]))
    assert c.regressed and [x.probe for x in c.worse] == ["p.one"]
    assert summary(c)[0].startswith("REGRESSION: p.one (threads 2) safe -> crash")


def test_a_failure_within_the_baselines_bound_is_listed_but_does_not_gate():
    # 0 of 5 clean bounds the rate at 45%: 1 failing trial of 5 (20%) does not contradict it, 3 of 5 (60%) does.
    old = diag([r("rare", "safe", trials=5), r("often", "safe", trials=5)])
    c = compare(old, diag([r("rare", "corrupt", trials=5, failed=1), r("often", "corrupt", trials=5, failed=3)]))
    assert [x.probe for x in c.worse] == ["often"] and [x.probe for x in c.unconfirmed] == ["rare"]
    assert "1 of 5 trials failed" in c.unconfirmed[0].detail and "below 45%" in c.unconfirmed[0].detail
    lines = summary(c)
    assert lines[0] == "REGRESSION: often (threads 2) safe -> corrupt"
    assert any(line.startswith("unsafe now, not a regression the baseline can confirm") for line in lines)
    quiet = compare(old, diag([r("rare", "corrupt", trials=5, failed=1), r("often", "safe", trials=5)]))
    assert not quiet.regressed and summary(quiet)[0] == "no safety regression against the baseline"


def test_a_probe_already_failing_in_another_mode_of_that_kind_does_not_gate():
    # threads 4 crashed in the baseline and threads 2 was clean by luck: now threads 2 crashes.
    old = diag([r("p", "safe", trials=6), r("p", "crash", workers=4, trials=6, failed=3),
                r("q", "safe", trials=6), r("q", "safe", workers=4, trials=6),
                r("p", "safe", mode="processes", trials=6)])
    new = diag([r("p", "crash", trials=6, failed=3), r("p", "crash", workers=4, trials=6, failed=3),
                r("q", "crash", trials=6, failed=3), r("q", "safe", workers=4, trials=6),
                r("p", "crash", mode="processes", trials=6, failed=3)])
    c = compare(old, new)
    assert [(x.probe, x.mode) for x in c.worse] == [("p", "processes"), ("q", "threads")]
    (known,) = c.unconfirmed
    assert (known.probe, known.workers) == ("p", 2) and "already unsafe in the baseline (threads 4: crash)" in known.detail


def test_more_baseline_trials_tighten_the_gate():
    # The same 1 failing trial of 5 contradicts a baseline of 30 clean trials (bound about 10%).
    c = compare(diag([r("p", "safe", trials=30)]), diag([r("p", "crash", trials=5, failed=1)]))
    assert c.regressed and [x.probe for x in c.worse] == ["p"]


def test_a_baseline_without_evidence_bounds_nothing():
    for old in (r("p", "unavailable", trials=0, failed=0), r("p", "safe", trials=0)):
        c = compare(diag([old]), diag([r("p", "crash", trials=5, failed=1)]))
        assert c.regressed, old


def test_changes_between_failing_kinds_and_fixes_do_not_gate():
    c = compare(diag([r("a", "crash"), r("b", "crash")]), diag([r("a", "error"), r("b", "safe")]))
    assert not c.regressed
    assert [x.probe for x in c.changed] == ["a"] and [x.probe for x in c.better] == ["b"]
    assert summary(c)[0] == "no safety regression against the baseline"


def test_a_new_probe_that_fails_counts_and_a_removed_probe_is_noted():
    c = compare(diag([r("old", "safe")]), diag([r("new", "hang")]))
    assert c.regressed and c.worse[0].old == "not diagnosed"
    assert any("no longer diagnosed" in n for n in c.notes)


def test_a_changed_library_is_reported_by_family_and_a_safe_build_passes():
    newer = dict(LIB, version="1.14.1", sha256="b" * 64, path="/y/libhdf5_serial.so.103")
    c = compare(diag([r("p", "safe")], [LIB]), diag([r("p", "safe")], [newer]))
    assert not c.regressed
    (lib,) = c.libraries
    assert (lib.probe, lib.old, lib.new) == ("libhdf5", "1.14.0", "1.14.1")


def test_hdf5_copies_and_their_thread_safe_flags_are_one_line():
    wheels = [dict(LIB, version="2.0.0", sha256="a" * 64, threadsafe=False),
              dict(LIB, version="2.2.0", sha256="c" * 64, path="/z/libhdf5-b.so", threadsafe=False)]
    debian = [dict(LIB, version="1.10.8", sha256="d" * 64, path="/usr/lib/libhdf5_serial.so.103", threadsafe=True)]
    (lib,) = compare(diag([], wheels), diag([], debian)).libraries
    assert f"{lib.probe}: {lib.old} -> {lib.new}" == \
        "libhdf5: 2.0.0, 2.2.0 (2 copies, not thread-safe) -> 1.10.8 (thread-safe)"


def test_a_library_that_only_moved_is_folded_into_a_count():
    moved = dict(LIB, family="_cffi_backend", path="/venv2/_cffi_backend.so")
    c = compare(diag([], [dict(LIB, family="_cffi_backend")]), diag([], [moved]))
    assert c.moved_libraries == 1 and not c.libraries
    assert any("1 only moved" in line for line in summary(c))


def test_packages_by_import_name_and_the_python_are_reported():
    old = diag([])
    new = diag([])
    old.fingerprint["packages"] = {"netCDF4": "1.7.5", "scitools-iris": "3.14.1"}  # format 1: distributions
    new.fingerprint["packages"] = {"netCDF4": {"version": "1.6.2", "distribution": "netCDF4"}, "iris": None}
    new.fingerprint["python"] = {"version": "3.11.2", "executable": "/usr/bin/python3.11", "gil_enabled": True}
    c = compare(old, new)
    assert [(x.probe, x.old, x.new) for x in c.packages] == [("iris", "3.14.1", "not installed"),
                                                            ("netCDF4", "1.7.5", "1.6.2")]
    assert c.python and "3.11 " in c.python[0].old and "/usr/bin/python3.11 3.11.2" in c.python[0].new


def test_scaling_drops_beyond_the_noise_threshold_are_reported():
    small = 1.8 * (1 - SCALING_NOISE / 2)
    big = 1.8 * (1 - SCALING_NOISE * 1.5)
    c = compare(diag([r("a", "safe", speedup=1.8), r("b", "safe", speedup=1.8)]),
                diag([r("a", "safe", speedup=small), r("b", "safe", speedup=big)]))
    assert [x.probe for x in c.scaling] == ["b"] and not c.regressed


def test_identical_diagnoses_compare_clean():
    d = diag([r("a", "safe", speedup=1.5), r("b", "crash")], [LIB])
    c = compare(d, copy.deepcopy(d))
    assert not (c.worse or c.better or c.changed or c.libraries or c.scaling or c.packages or c.python)


def raced(probe, *pairs, status=RaceStatus.RACY):
    found = RacePass("helgrind", 2, 40, status if pairs or status != RaceStatus.RACY else RaceStatus.CLEAN,
                     tuple(RacePair("libnetcdf.so.22", (a, b), 1) for a, b in pairs))
    return with_races(r(probe, "safe"), found)


def test_a_new_race_pair_is_a_regression_and_one_gone_is_a_fix():
    c = compare(diag([raced("p")]), diag([raced("p", ("add_to_NCList", "add_to_NCList"))]))
    assert c.regressed and c.worse[0].new == "race libnetcdf.so.22: add_to_NCList <-> add_to_NCList"
    assert summary(c)[0].startswith("REGRESSION: p (threads 2)")
    back = compare(diag([raced("p", ("add_to_NCList", "add_to_NCList"))]), diag([raced("p")]))
    assert not back.regressed and [x.new for x in back.better] == ["race pair gone"]


def test_a_cell_racy_in_both_still_has_its_speed_compared():
    pair = ("add_to_NCList", "add_to_NCList")
    was, now = raced("p", pair), raced("p", pair)
    c = compare(diag([was.replace(speed=Speed(speedup=1.8))]),
                diag([now.replace(speed=Speed(speedup=1.8 * (1 - SCALING_NOISE * 1.5)))]))
    assert [x.probe for x in c.scaling] == ["p"] and not c.worse


def test_a_pair_against_a_baseline_without_a_race_pass_is_unconfirmed():
    c = compare(diag([r("p", "safe")]), diag([raced("p", ("f", "g"))]))
    assert not c.regressed and [x.new for x in c.unconfirmed] == ["race libnetcdf.so.22: f <-> g"]


def test_a_pass_that_did_not_finish_fixes_nothing():
    c = compare(diag([raced("p", ("f", "g"))]), diag([raced("p", status=RaceStatus.FAILED)]))
    assert c.better == () and not c.regressed


# --------------------------------------------------------------------------------------------
# Two builds side by side: a GIL build against a free-threaded one with both GIL states

def ft_diag(results):
    d = diag(results)
    python = {"version": "3.13.5", "gil_enabled": True, "free_threaded_build": True,
              "gil_reenabled_by": ["netCDF4._netCDF4"]}
    return d.replace(fingerprint={**d.fingerprint, "python": python})


def test_a_cell_with_the_gil_forced_off_is_set_against_the_gil_builds_cell_of_the_same_mode():
    from threadprobe.records import GilState

    old = diag([r("nc", "safe", speedup=0.9, trials=30), r("h5", "safe", speedup=0.8, trials=30)])
    off = GilState.OFF
    new = ft_diag([r("nc", "safe", speedup=0.9, trials=30), r("nc", "crash", trials=30, failed=5).replace(gil=off),
                   r("h5", "safe", speedup=0.8, trials=30), r("h5", "safe", speedup=1.6, trials=30).replace(gil=off)])
    c = compare(old, new)
    assert [x.where for x in c.worse] == ["nc (threads 2, GIL off)"]
    assert "against the baseline's cell with the GIL as imported" in c.worse[0].detail
    assert [(x.where, x.old, x.new) for x in c.faster] == [("h5 (threads 2, GIL off)", "x0.80", "x1.60")]
    lines = summary(c)
    assert "GIL: GIL build -> free-threaded build; GIL as imported on (turned on by netCDF4._netCDF4); " \
           "cells with the GIL forced off" in lines
    assert not c.notes  # the GIL build's cells were all matched


def test_the_summary_fits_one_screen():
    old = diag([r(f"p{k}", "safe", trials=30) for k in range(80)])
    c = compare(old, diag([r(f"p{k}", "crash", trials=30) for k in range(80)]))
    lines = summary(c)
    assert len(lines) == 40 and lines[-1].startswith("... and ") and "--json" in lines[-1]


def test_what_forcing_the_gil_off_changes_one_line_per_probe():
    from threadprobe.records import GilState
    from threadprobe.report.compare import gil_effects

    off = GilState.OFF
    on = r("nc", "safe", speedup=0.9).replace(gil_enabled=True, gil_reenabled_by=("netCDF4._netCDF4",))
    results = [on, r("nc", "crash").replace(gil=off),
               r("h5", "safe", speedup=0.8), r("h5", "safe", speedup=1.6).replace(gil=off)]
    assert gil_effects(results) == [
        "nc: threads 2: safe x0.90 -> crash [as imported, the GIL was on: netCDF4._netCDF4]",
        "h5: threads 2: safe x0.80 -> safe x1.60"]
    assert gil_effects([r("p", "safe")]) == []  # a GIL build: nothing to say
