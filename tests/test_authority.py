"""One authority: verdicts are turned into safe or unsafe only in threadprobe.records (toolkit/records/).

An AST scan fails when any other module compares a verdict with a string literal, and a property
test shows that the two gates, ``--baseline`` (compare) and ``--fail-on unsafe`` (records), agree:
whatever compare calls a regression, records calls unsafe.
"""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given, settings, strategies as st

from threadprobe.report.compare import compare
from threadprobe.diagnosis.detect import failure_upper95
from threadprobe.records import Diagnosis, Result, Safety, Verdict, unsafe_results
from tests.astscan import literals, name

TOOLKIT = Path(__file__).parents[1] / "toolkit"
VERDICTS = {v.value for v in Verdict}


def _is_verdict(node: ast.AST) -> bool:
    return "verdict" in name(node)


def verdict_literals(source: str) -> list[int]:
    """Lines where a verdict (a name or attribute called *verdict*) meets a verdict string literal."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_verdict(s) for s in sides) and any(v in VERDICTS for s in sides for v in literals(s)):
                lines.append(node.lineno)
    return lines


def test_the_scan_finds_a_planted_literal():
    assert verdict_literals("if r.verdict == 'safe': pass\nok = verdict in ('crash', 'hang')\n") == [1, 2]
    assert verdict_literals("if r.verdict == Verdict.SAFE: pass\nx = kind == 'crash'\n") == []


def test_no_module_but_records_compares_verdicts_with_literals():
    found = {str(p.relative_to(TOOLKIT)): verdict_literals(p.read_text())
             for p in TOOLKIT.rglob("*.py") if p.relative_to(TOOLKIT).as_posix() != "records/__init__.py"}
    assert {k: v for k, v in found.items() if v} == {}


VERDICT = st.sampled_from(["safe", "crash", "error", "corrupt", "racy"])


def result(probe: str, mode: str, verdict: str, trials: int) -> Result:
    failed = 0 if verdict in ("safe", "racy") else trials
    return Result(probe=probe, dependency="d", mode=mode, workers=1 if mode == "serial" else 2, processes=1,
                  threads=1 if mode == "serial" else 2, trials=trials, verdict=verdict,
                  safety=Safety({"ok": trials - failed, verdict: failed}, failure_upper95(failed, trials)))


def diagnosis(cells: list[tuple[str, str]], trials: int) -> Diagnosis:
    results = [result(f"p{k}", mode, v, trials) for k, (serial, threads) in enumerate(cells)
               for mode, v in (("serial", serial), ("threads", threads))]
    return Diagnosis(created="t", threadprobe="0", config={}, fingerprint={}, results=tuple(results))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(VERDICT, VERDICT), min_size=1, max_size=4), st.data(), st.integers(1, 30))
def test_baseline_and_fail_on_agree(old_cells, data, trials):
    new_cells = data.draw(st.lists(st.tuples(VERDICT, VERDICT), min_size=len(old_cells), max_size=len(old_cells)))
    old, new = diagnosis(old_cells, trials), diagnosis(new_cells, trials)
    regressed = {x.probe for x in compare(old, new).worse}
    assert regressed <= {r.probe for r in unsafe_results(new.results)}


def test_a_probe_that_fails_serially_too_gates_neither_way():
    """The case that made the two gates disagree: its input broke, so it errs in every mode."""
    old = diagnosis([("safe", "safe")], 10)
    new = diagnosis([("error", "error")], 10)
    assert unsafe_results(new.results) == [] and not compare(old, new).regressed
