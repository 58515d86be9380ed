"""The console table, the HTML page and the issue body show a race pass beside the stress bound,
with the pairs (and both stacks) one step away."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

from threadprobe.report import bugreport
from threadprobe.report import html as htmlreport
from threadprobe import report
from threadprobe.report import racesource, strength
from threadprobe.report.compare import compare, summary
from threadprobe.report.validate import errors
from threadprobe.records import (Contention, Diagnosis, Frame, Kind, RacePair, RacePass, RaceStatus, Result, Safety, Scaling, Speed,
                                 ThreadState, Waits, with_races)
from tests.records.test_records import as_format_4

STACK = (Frame("/x/libnetcdf.so.19", "add_to_NCList", "nclistmgr.c", 42),
         Frame("/site/netCDF4/_netCDF4.abi3.so", "__pyx_pf_7netCDF4_8_netCDF4_7Dataset___init__"))
PAIR = RacePair("libnetcdf.so.19", ("add_to_NCList", "add_to_NCList"), 7, "Possible data race during write",
                (STACK, STACK[:1]), ("netCDF4._netCDF4.Dataset.__init__",))


def result(probe: str, races: RacePass | None, mode: str = "threads") -> Result:
    base = Result(probe=probe, dependency="netCDF4", mode=mode, workers=2 if mode == "threads" else 1, processes=1,
                  threads=2 if mode == "threads" else 1, trials=6, verdict="safe",
                  safety=Safety(outcomes={"ok": 6}, failure_rate_upper95=0.39))
    return with_races(base, races) if races is not None else base


def diagnosis() -> Diagnosis:
    return Diagnosis(created="t", threadprobe="0", config={"cores": 2}, results=(
        result("netcdf4.read_separate_files.raw", None, "serial"),
        result("netcdf4.read_separate_files.raw", RacePass("helgrind", 2, 40, RaceStatus.RACY, (PAIR,))),
        result("netcdf4.read_shared_dataset.raw", RacePass("helgrind", 2, 40, RaceStatus.CLEAN)),
        result("strong", RacePass("helgrind", 2, 2000, RaceStatus.CLEAN, sections=2000, unordered=1850,
                                  overlap_pairs=1800)),
        result("thin", RacePass("helgrind", 2, 2000, RaceStatus.CLEAN, sections=2000, unordered=40, overlap_pairs=40)),
        result("blind", RacePass("helgrind", 2, 2000, RaceStatus.CLEAN, sections=0, unordered=0, overlap_pairs=0)),
        result("netcdf4.bad_input.empty", RacePass("helgrind", 2, 0, RaceStatus.FAILED, reason="no progress for 300s")),
    ), fingerprint={"python": {"version": "3.11", "gil_enabled": True, "executable": "/usr/bin/python3.11"},
                    "platform": "x", "packages": {}})


def test_console_shows_the_pass_beside_the_bound_and_names_the_pairs():
    out = io.StringIO()
    report.console_table(diagnosis(), out)
    text = out.getvalue()
    assert "racy | 1 race pair(s)" in text and "no failure seen 0/6 trials (<39%) | clean (unknown): 40 calls" in text
    flat = " ".join(text.replace("│", " ").split())  # cells wrapped over lines, read as one
    assert "clean (strong): 2,000 calls, 1,850 unordered; misses paths rarer than 1 in ~803" in flat
    assert "clean (thin): 2,000 calls, 40 unordered; misses paths rarer than 1 in ~17" in flat
    assert "clean (blind): 2,000 calls, none unordered" in flat
    assert "race libnetcdf.so.19: add_to_NCList <-> add_to_NCList x7 via netCDF4._netCDF4.Dataset.__init__" in text
    assert "not run to the end" in text and "no progress for 300s" in text
    assert report.unsafe(diagnosis()) == ["netcdf4.read_separate_files.raw (threads 2): racy"]


def test_a_quick_diagnosis_says_what_evidence_it_left_out():
    quick, full = io.StringIO(), io.StringIO()
    report.console_table(dataclasses.replace(diagnosis(), config={"cores": 2, "quick": True}), quick)
    report.console_table(diagnosis(), full)
    assert "quick diagnosis: no lock audit" in quick.getvalue().replace("\n", " ")
    assert "quick diagnosis" not in full.getvalue()


def test_html_links_a_racy_cell_to_its_pairs_and_stacks():
    page = htmlreport.render(diagnosis())
    assert 'href="#ev-netcdf4_read_separate_files_raw-threads-2">racy</a>' in page
    assert "add_to_NCList (nclistmgr.c:42) in libnetcdf.so.19" in page
    assert "reached through netCDF4._netCDF4.Dataset.__init__" in page
    assert "clean (unknown): 40 calls (helgrind)" in page and "helgrind: not run to the end" in page
    cells = {r.probe: r for r in diagnosis().results if r.races is not None}
    strong, thin = strength.css(cells["strong"]), strength.css(cells["thin"])
    assert strong != thin and strength.of(cells["thin"]) != strength.Strength.RACE_CLEAN  # a thin pass is not painted strong
    assert strong in page and "a path taken by fewer than 1 call in ~803 may be missed" in page  # the statement, on hover


def test_the_issue_body_carries_the_pair_and_both_stacks():
    text = bugreport.markdown(diagnosis(), "netcdf4.read_separate_files.raw")
    assert "## Data races (valgrind, happens-before analysis)" in text
    assert "**libnetcdf.so.19: add_to_NCList <-> add_to_NCList** (7 report(s), reached through" in text
    assert text.count("add_to_NCList (nclistmgr.c:42) in libnetcdf.so.19") == 2  # this access, and the other


def test_a_format_4_file_is_read_shown_compared_and_reused_as_its_format_5_twin(tmp_path: Path):
    timed = dataclasses.replace(diagnosis().results[2], speed=Speed(10.0, 1.6, 0.8, Scaling.SCALES, 0.9, 0.05),
                                contention=Waits(Contention.LIBRARY_LOCK, ("lock 0.4",), {ThreadState.LOCK: 0.4}))
    library = {"path": "/x/libnetcdf.so.19", "family": "libnetcdf", "sha256": "ab" * 32, "soname": "libnetcdf.so.19",
               "version": "4.9.2", "loaded_by": "netCDF4"}
    every = Safety({k: 6 if k == Kind.OK else 0 for k in Kind}, 0.39)
    made = dataclasses.replace(diagnosis(), fingerprint={**diagnosis().fingerprint, "libraries": [library]}, results=tuple(
        dataclasses.replace(r, safety=every) for r in (*diagnosis().results[:2], timed, *diagnosis().results[3:])))
    assert errors(made.to_json()) == [] and errors(as_format_4(made.to_json())) == []
    (tmp_path / "races").mkdir()
    (tmp_path / "5.json").write_text(json.dumps(made.to_json()))
    (tmp_path / "races" / "diagnosis.json").write_text(json.dumps(as_format_4(made.to_json())))
    old, new = report.read(tmp_path / "races" / "diagnosis.json"), report.read(tmp_path / "5.json")
    assert old.schema == "threadprobe.diagnosis/4" and old.results == new.results == made.results
    assert htmlreport.render(old) == htmlreport.render(new) and "library_lock" in htmlreport.render(old)
    probe = "netcdf4.read_separate_files.raw"
    assert bugreport.markdown(old, probe) == bugreport.markdown(new, probe)
    tables = [io.StringIO(), io.StringIO()]
    report.console_table(old, tables[0])
    report.console_table(new, tables[1])
    assert tables[0].getvalue() == tables[1].getvalue()
    nothing = compare(old, new)  # a format 4 baseline against a format 5 diagnosis of the same cells
    assert not (nothing.worse or nothing.better or nothing.changed or nothing.scaling), summary(nothing)
    slower = dataclasses.replace(timed, speed=dataclasses.replace(timed.speed, speedup=0.8))
    assert compare(old, dataclasses.replace(new, results=(slower,))).scaling  # and its speeds are still read
    bare = dataclasses.replace(new, results=tuple(dataclasses.replace(r, races=None) for r in new.results), config={})
    reused = racesource.reuse(bare, tmp_path)  # a pass stored by make races in format 4
    assert [r.races for r in reused.results] == [r.races for r in made.results]
