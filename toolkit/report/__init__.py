"""Writing and reading ``diagnosis.json``, and the console table.

The HTML page lives in ``threadprobe.report.html`` and the baseline comparison in ``threadprobe.report.compare``;
this module owns the JSON file and what a terminal shows.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Iterable
from typing import IO, Any

from threadprobe.records.errors import UsageError
from threadprobe.harness.proc import write_json_atomic
from collections.abc import Sequence

from threadprobe.records import (READABLE_DIAGNOSES, Corruption, Diagnosis, GilState, Kind, Mode, Remedy, RemedyKind, Result,
                             is_clean, is_unavailable, unsafe_results)
from threadprobe.report.compare import gil_effects, gil_words
from threadprobe.report import racesource, strength

VERDICT_STYLE = {
    "safe": "green",
    "crash": "bold red",
    "corrupt": "bold magenta",
    "hang": "bold yellow",
    "error": "red",
    "racy": "bold dark_orange",
    "unavailable": "dim",
}


#: What --quick leaves out (threadprobe.evidence.gather stops after the reproducers).
QUICK_NOTE = ("quick diagnosis: no lock audit, no native frames of crashes, no py-spy waits and no remedies "
              "(diagnose without --quick for them)")


def write(diagnosis: Diagnosis, out: Path) -> Path:
    data = diagnosis.to_json()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "diagnosis.json"
    write_json_atomic(path, data)
    return path


def load_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a threadprobe diagnosis (top level is not an object)")
    return data


def read(path: str | Path) -> Diagnosis:
    """Load a diagnosis, with a one-line UsageError for anything that is not one."""
    data = load_json(path)
    if data.get("schema") not in READABLE_DIAGNOSES:
        raise UsageError(f"{path} is not a threadprobe diagnosis (schema: {data.get('schema')!r}; "
                         f"readable: {', '.join(READABLE_DIAGNOSES)})")
    try:
        return Diagnosis.from_json(data)
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise UsageError(f"{path} is a malformed diagnosis: {exc}") from None


def unsafe(diagnosis: Diagnosis) -> list[str]:
    """One line per result that fails under concurrency (see records.unsafe_results)."""
    return [f"{r.probe} ({mode_label(r)}): {verdict_text(r)}" for r in unsafe_results(diagnosis.results)]


def verdict_text(r: Result) -> str:
    """The verdict, with corruption's severity: 'corrupt (data)' or 'corrupt (message only)'."""
    if r.safety.corruption:
        return f"{r.verdict} ({'message only' if r.safety.corruption == Corruption.MESSAGE else 'data'})"
    return str(r.verdict)


def mode_label(r: Result) -> str:
    return r.label


def matrix(results: Iterable[Result]) -> tuple[list[str], dict[str, dict[str, Result]]]:
    """The mode labels in order of appearance, and per probe its result in each mode."""
    modes: list[str] = []
    rows: dict[str, dict[str, Result]] = {}
    for r in results:
        label = mode_label(r)
        if label not in modes:
            modes.append(label)
        rows.setdefault(r.probe, {})[label] = r
    return modes, rows


def cell(r: Result) -> str:
    """A matrix cell: its verdict (a clean one in the words of its evidence, ``strength``), counts or
    bound, speedup, GIL mark, and after ``|`` the race pass."""
    if is_unavailable(r.verdict):
        return str(r.verdict)
    counts = ", ".join(f"{n} {k}" for k, n in r.safety.outcomes.items() if n and k != Kind.OK)
    text = strength.label(r) if is_clean(r.verdict) else verdict_text(r)
    if counts:
        text += f" [{counts} of {r.trials}]"
    if r.speed.speedup is not None:
        text += f" x{r.speed.speedup:.2f}"
    text += gil_mark(r)
    races = race_text(r)
    return f"{text} | {races}" if races else text  # beside the stress bound, never mixed with it


def gil_mark(r: Result) -> str:
    """Where the GIL was not what the column says: on in a free-threaded build's workers (an import
    turned it back on), or not off although forced off."""
    if r.gil == GilState.OFF and r.gil_enabled:
        return " (GIL NOT off)"
    if r.gil_reenabled_by and r.gil_enabled and r.mode == Mode.THREADS:
        return " (GIL on)"
    return ""


def race_text(r: Result) -> str:
    return strength.race_text(r)


SHOWN_PAIRS = 3  # per probe on a terminal: the most reported first


def race_lines(results: Iterable[Result]) -> list[str]:
    """One line per race pair, and one per pass that could not finish: what a reader acts on."""
    lines = []
    for r in results:
        if r.races is None:
            continue
        for p in r.races.pairs[:SHOWN_PAIRS]:
            via = f" via {', '.join(p.operations[:2])}" if p.operations else ""
            lines.append(f"{r.probe} ({mode_label(r)}): race {p.key} x{p.count}{via} [{r.races.tool}]")
        if len(r.races.pairs) > SHOWN_PAIRS:
            lines.append(f"{r.probe} ({mode_label(r)}): and {len(r.races.pairs) - SHOWN_PAIRS} more race pairs "
                         "(all of them, with both stacks, in the HTML report and the JSON)")
        if r.races.reason:
            lines.append(f"{r.probe} ({mode_label(r)}): {r.races.summary()}")
    return lines


def console_table(diagnosis: Diagnosis, stream: IO[str] | None = None) -> None:
    """Probe x mode, coloured by verdict, with the failure-rate bound and the speedup."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, width=160) if stream is not None else Console(width=160)
    modes, by_probe = matrix(diagnosis.results)
    table = Table(title="threadprobe diagnosis", show_lines=False)
    table.add_column("probe", no_wrap=True)
    for label in modes:
        table.add_column(label)
    for probe, row in by_probe.items():
        cells = []
        for label in modes:
            r = row.get(label)
            cells.append("" if r is None else f"[{strength.style(r) or VERDICT_STYLE.get(r.verdict, '')}]{cell(r)}[/]")
        table.add_row(probe, *cells)
    console.print(table)
    if diagnosis.results:
        console.print("[dim]clean cells: N/M trials failed (<X%: the 95% upper bound on the per-trial failure "
                      "rate); xS: throughput against serial.[/]")
        for line in strength.legend_lines():
            console.print(f"[dim]  {line}[/]", highlight=False)
    source = racesource.of(diagnosis)
    if source is not None:
        console.print(source.describe(), style="dim" if source.reused else "yellow", markup=False, highlight=False,
                      soft_wrap=True)  # a path and a command to copy, whole
    if any(r.races is not None for r in diagnosis.results):
        console.print("[dim]race pass (after |): a statement about the code paths run under a happens-before "
                      "detector, not a bound; racy: race pairs in the library under test.[/]")
        for line in race_lines(diagnosis.results):
            console.print(line, markup=False, highlight=False)
    effects = gil_effects(diagnosis.results)
    if effects:
        console.print("[bold]forcing the GIL off[/] (PYTHON_GIL=0), against the GIL as imported "
                      "(verdict, speedup, contention):")
        for line in effects:
            console.print(f"  {line}", markup=False, highlight=False)
    if diagnosis.config.get("quick"):
        console.print(f"[dim]{QUICK_NOTE}[/]")
    if diagnosis.interpreter:
        console.print(f"[dim]interpreter diagnosed: {diagnosis.interpreter} ({gil_words(diagnosis)})[/]")
    for name, rec in diagnosis.recommendations.items():
        safe = next((line for line in rec.rationale if line.startswith("safe candidates")), "")
        console.print(f"[bold]{name}[/]: {safe}; a run pilots them on its own input")


def remedy_summary(remedies: Sequence[Result]) -> list[str]:
    """One line per probe (and GIL state): each remedy tried, narrowest first, with its verdict,
    bound, speed and, for a lock around a library, the calls it covered."""
    by_probe: dict[tuple[str, str], list[Result]] = {}
    for r in remedies:
        if r.remedy is not None:
            by_probe.setdefault((r.probe, "" if r.gil == GilState.AS_IMPORTED else ", GIL off"), []).append(r)
    lines = []
    for (probe, state), got in sorted(by_probe.items()):
        parts = []
        for r in got:
            remedy = r.remedy or Remedy(RemedyKind.GLOBAL_LOCK)
            speed = f", speedup x{r.speed.speedup:.2f}" if r.speed.speedup is not None else ""
            what = f"{r.workers} processes" if remedy.kind == RemedyKind.PROCESSES else remedy.describe()
            trials = f" in {remedy.trials} stress trials" if remedy.trials else ""
            parts.append(f"{what}: {r.verdict}{trials} (bound {r.safety.failure_rate_upper95:.0%}{speed})")
        lines.append(f"{probe}{state}: " + "; ".join(parts))
    return lines
