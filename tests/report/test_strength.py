"""A clean cell is shown with its evidence, in a green as strong as that evidence, and the console
table and the HTML page say the same thing about every cell."""

from __future__ import annotations

import html
import io
import re

import pytest

from threadprobe import report
from threadprobe.diagnosis.detect import failure_upper95
from threadprobe.records import Diagnosis, RacePass, RaceStatus, Result, Safety, with_races
from threadprobe.report import html as htmlreport
from threadprobe.report import strength
from threadprobe.report.strength import Strength

CLEAN = RacePass("helgrind", 2, 2000, RaceStatus.CLEAN, sections=2000, unordered=1900, overlap_pairs=1900)  # strong


def cell(probe: str, trials: int, races: RacePass | None = None, mode: str = "threads", verdict: str = "safe") -> Result:
    ok = trials if verdict == "safe" else trials - 1
    r = Result(probe=probe, dependency="lib", mode=mode, workers=1 if mode == "serial" else 2,
               processes=2 if mode == "processes" else 1, threads=2 if mode == "threads" else 1, trials=trials,
               verdict=verdict,
               safety=Safety(outcomes={"ok": ok, "crash": trials - ok}, failure_rate_upper95=failure_upper95(trials - ok, trials)))
    return with_races(r, races) if races is not None else r


CASES = {
    "race_clean_few_trials": (cell("a.race_clean", 11, CLEAN), Strength.RACE_CLEAN, "safe"),
    "narrow_bound_no_pass": (cell("a.narrow", 149), Strength.NARROW, "safe"),
    "wide_bound_no_pass": (cell("a.wide", 11), Strength.WIDE, "no failure seen"),
    "pass_not_finished": (cell("a.failed_pass", 11, RacePass("helgrind", 2, 0, RaceStatus.FAILED, reason="timeout")),
                          Strength.WIDE, "no failure seen"),
    "pass_with_no_calls": (cell("a.no_calls", 11, RacePass("helgrind", 2, 0, RaceStatus.CLEAN)), Strength.WIDE,
                           "no failure seen"),
    "thin_pass": (cell("a.thin", 11, RacePass("helgrind", 2, 2000, RaceStatus.CLEAN, sections=2000, unordered=20)),
                  Strength.WIDE, "no failure seen"),  # a pass that could miss a path of 1 call in 9 is no vouch
    "uncounted_pass": (cell("a.uncounted", 149, RacePass("helgrind", 2, 2000, RaceStatus.CLEAN)), Strength.NARROW, "safe"),
    "processes_wide": (cell("a.processes", 11, mode="processes"), Strength.WIDE, "no failure seen"),
    "serial_oracle": (cell("a.serial", 1, mode="serial"), Strength.ORACLE, "ok (oracle)"),
}


@pytest.mark.parametrize("name", CASES)
def test_each_clean_cell_gets_the_strength_of_its_evidence(name):
    r, expected, word = CASES[name]
    assert strength.of(r) == expected and strength.word(r) == word


def test_other_verdicts_are_left_to_their_own_colours():
    crashed = cell("a.crash", 5, verdict="crash")
    assert strength.of(crashed) is None and strength.css(crashed) is None and strength.style(crashed) is None


def test_a_wide_bound_without_race_evidence_is_not_the_green_of_a_clean_race_pass():
    strong, weak = CASES["race_clean_few_trials"][0], CASES["wide_bound_no_pass"][0]
    assert strong.safety.failure_rate_upper95 == weak.safety.failure_rate_upper95  # the same trials: only the pass differs
    assert strength.css(strong) != strength.css(weak) and strength.style(strong) != strength.style(weak)
    assert len({strength.SHOWN[s][1] for s in Strength}) == len(Strength)  # every strength its own background


def test_the_label_carries_trials_bound_and_race_evidence():
    r = CASES["race_clean_few_trials"][0]
    assert strength.label(r) == "safe 0/11 trials (<24%)"
    assert strength.race_text(r) == ("clean (strong): 2,000 calls, 1,900 unordered; misses paths rarer than 1 in ~825 "
                                     "(helgrind)")
    assert strength.race_text(CASES["wide_bound_no_pass"][0]) == "no race pass"
    assert strength.race_text(CASES["processes_wide"][0]) == ""  # a pass cannot cover separate processes
    assert strength.label(CASES["serial_oracle"][0]) == "ok (oracle) 0/1 trials"  # no bound: not a concurrency claim


def diagnosis() -> Diagnosis:
    return Diagnosis(created="t", threadprobe="0", config={"cores": 2}, results=tuple(r for r, _, _ in CASES.values()),
                     fingerprint={"python": {"version": "3.11", "gil_enabled": True, "executable": "/usr/bin/python3"},
                                  "platform": "x", "packages": {}})


def html_cells(page: str) -> dict[str, tuple[str, str]]:
    """Per probe of the matrix: its cell's style and text."""
    out = {}
    for row in re.findall(r"<tr><td>([\w.]+)</td>(.*?)</tr>", page, re.S):
        found = re.search(r'<td class="cell[^"]*" style="([^"]*)"[^>]*>(.*?)</td>', row[1], re.S)
        if found:
            out[row[0]] = (found.group(1), html.unescape(re.sub(r"<[^>]+>", " ", found.group(2))))
    return out


def test_the_console_and_the_html_page_agree_on_every_cell():
    out = io.StringIO()
    report.console_table(diagnosis(), out)
    console = out.getvalue()
    cells = html_cells(htmlreport.render(diagnosis()))
    for r, expected, word in CASES.values():
        css, text = cells[r.probe]
        assert css == strength.css(r), (r.probe, css)
        assert word in text and word in report.cell(r)
        assert strength.race_text(r) in text and strength.race_text(r) in report.cell(r)
        assert strength.trials_text(r) in text and strength.trials_text(r) in report.cell(r)
    assert all(line.split(":")[0] in console for line in strength.legend_lines())


def test_the_legend_shows_every_green_with_its_meaning():
    legend = strength.legend_html()
    for s, (word, background, _, _, meaning) in strength.SHOWN.items():
        assert background in legend and word in legend and s.value in legend
