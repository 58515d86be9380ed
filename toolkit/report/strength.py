"""How much a clean cell's evidence is worth, in words and colours the console and the HTML share.

A ``safe`` verdict says that no trial failed; what that is worth depends on what ran. Eleven clean
trials bound the per-trial failure rate at 24%, which rules out little, while a clean pass under a
happens-before race detector says that no two accesses in the library went unordered in the calls
it made, whatever their timing. So a clean cell is shown with its evidence (trials, the 95% bound,
and the race pass when one ran), and in one of three greens:

- ``race clean``: a race pass ran on this cell and saw no race, and it was strong (the strongest
  green; a thin one leaves the cell the green of its trials, and says how thin it was);
- ``narrow bound``: trials alone, with a bound of at most ``WIDE_BOUND``;
- ``wide bound``: trials alone with a wider bound: the cell reads "no failure seen", pale and
  dashed, not "safe".

The serial cell is the oracle the others are compared with, not a thread-safety claim: it reads
"ok (oracle)". The verdict itself is not changed here (``threadprobe.records`` decides it); this
module only decides how a clean one is shown, for ``threadprobe.report`` and ``threadprobe.report.html``.
"""

from __future__ import annotations

import enum
import html

from threadprobe.records import STRONG_FROM, Mode, RacePass, RacePower, RaceStatus, Result, is_clean

#: A clean cell's 95% bound on the per-trial failure rate above which trials alone are called
#: weak: the default diagnosis stops a clean cell at 2%, and a bound over 5% means the cell got
#: fewer than about 60 trials (a budget spent elsewhere, or --quick).
WIDE_BOUND = 0.05


class Strength(str, enum.Enum):
    RACE_CLEAN = "race clean"
    NARROW = "narrow bound"
    WIDE = "wide bound"
    ORACLE = "oracle"


#: Per strength: the word a cell shows, its HTML background, its border, its rich style, and what it means.
SHOWN: dict[Strength, tuple[str, str, str, str, str]] = {
    Strength.RACE_CLEAN: ("safe", "#66bb6a", "1px solid #2e7d32", "bold green",
                          "no trial failed, and a happens-before race pass over this cell saw no race, strong enough "
                          f"to find a racing path taken by 1 call in {STRONG_FROM}, 9 times in 10"),
    Strength.NARROW: ("safe", "#a5d6a7", "1px solid #66bb6a", "green",
                      f"no trial failed, and the 95% bound on the failure rate is at most {WIDE_BOUND:.0%}; "
                      "no strong race pass"),
    Strength.WIDE: ("no failure seen", "#f1f8e9", "1px dashed #9ccc65", "dim green",
                    f"no trial failed, but the bound is over {WIDE_BOUND:.0%} and no strong race pass covers the cell: "
                    "more trials (--budget) or make races would say more"),
    Strength.ORACLE: ("ok (oracle)", "#f5f5f5", "1px solid #ccc", "",
                      "the serial run every other cell is compared with"),
}


def race_evidence(races: RacePass | None) -> bool:
    """Does a race pass vouch for this cell: it ran to the end, saw no race, and was strong enough to
    find a path taken by 1 call in STRONG_FROM (``RacePass.power``)? A thin, blind or uncounted pass
    does not: the cell keeps the green of its trials, and the race text says how thin the pass was."""
    return races is not None and races.status == RaceStatus.CLEAN and races.calls > 0 and races.power() == RacePower.STRONG


def of(r: Result) -> Strength | None:
    """The strength of a clean cell's evidence; None for any other verdict."""
    if not is_clean(r.verdict):
        return None
    if r.mode == Mode.SERIAL:
        return Strength.ORACLE
    if race_evidence(r.races):
        return Strength.RACE_CLEAN
    return Strength.NARROW if r.trials and r.safety.failure_rate_upper95 <= WIDE_BOUND else Strength.WIDE


def word(r: Result) -> str | None:
    """What a clean cell is called ("safe", "no failure seen", "ok (oracle)"); None for other verdicts."""
    s = of(r)
    return SHOWN[s][0] if s is not None else None


def trials_text(r: Result) -> str:
    """The stress evidence: failing of total trials and, for a clean concurrent cell, the bound (the
    oracle's runs are what the others are compared with, not a claim about concurrency)."""
    if not r.trials:
        return "no stress trials"
    bound = f" (<{r.safety.failure_rate_upper95:.0%})" if is_clean(r.verdict) and r.mode != Mode.SERIAL else ""
    return f"{r.failed_trials}/{r.trials} trials{bound}"


def race_text(r: Result) -> str:
    """The race evidence, beside (never mixed with) the stress bound; for a clean threads cell with
    none, that it has none (a pass cannot cover separate processes, so theirs stay silent)."""
    races = r.races
    if races is None:
        return "no race pass" if of(r) in (Strength.NARROW, Strength.WIDE) and r.mode == Mode.THREADS else ""
    if races.status == RaceStatus.RACY:
        return f"{len(races.pairs)} race pair(s) ({races.tool})"
    if races.status == RaceStatus.FAILED:
        return f"{races.tool}: not run to the end"
    return f"{races.short_text()} ({races.tool})"  # the record words how strong a clean pass was


def label(r: Result) -> str:
    """A clean cell's words: what it is called, then its trials and bound."""
    return f"{word(r)} {trials_text(r)}" if of(r) is not None else str(r.verdict)


def style(r: Result) -> str | None:
    """The rich style of a clean cell; None for other verdicts."""
    s = of(r)
    return SHOWN[s][3] if s is not None else None


def css(r: Result) -> str | None:
    """The inline CSS of a clean cell in the HTML matrix; None for other verdicts."""
    s = of(r)
    return f"background:{SHOWN[s][1]};border:{SHOWN[s][2]}" if s is not None else None


def legend_lines() -> list[str]:
    """The key to the greens, one line each, for a terminal."""
    return [f"{SHOWN[s][0]}{'' if s.value in SHOWN[s][0] else f' ({s.value})'}: {SHOWN[s][4]}" for s in Strength]


def legend_html() -> str:
    """The key to the greens as an HTML table (the report's legend and the docs' example)."""
    rows = "".join(f'<tr><td class="cell" style="background:{bg};border:{border}">{html.escape(name)}</td>'
                   f"<td>{html.escape(s.value)}</td><td>{html.escape(meaning)}</td></tr>"
                   for s, (name, bg, border, _, meaning) in SHOWN.items())
    return f'<table class="evidence-legend"><tr><th>cell</th><th>evidence</th><th>meaning</th></tr>{rows}</table>'
