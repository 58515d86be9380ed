"""Race evidence reused: the latest race pass of the same build, attached to a diagnosis that ran none.

A race pass takes minutes (valgrind imports Iris in each lane), and a build does not change between
two diagnoses of it. So a diagnosis without a pass of its own takes the one ``make races`` left in
``<out>/races/diagnosis.json``, but only when that file's fingerprint is the build under test: the
same Python, the same package versions, and the same bytes in every native library mapped (a
library that only moved is the same build). Anything else is never reused, and the diagnosis says
that no race pass covers its build, what differs, and how to run one. Either way the diagnosis
records where its race evidence came from (``RaceSource``, in ``config["race_source"]``), which the
console table and the HTML page show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from threadprobe.diagnosis.races import run as racepass
from threadprobe.records import Diagnosis, GilState, Mode, RacePass, Record, Result, with_races
from threadprobe.records.errors import UsageError
from threadprobe import report  # its read() at call time: report's own __init__ imports this module
from threadprobe.report.compare import library_changes, package_changes, python_changes

#: Where ``make races`` leaves its pass, under the report folder.
STORED = Path("races") / "diagnosis.json"
CONFIG_KEY = "race_source"


@dataclass(frozen=True)
class RaceSource(Record):
    """Where a diagnosis's race evidence came from, or why no pass covers it."""

    file: str  # the stored pass looked for
    reused: bool
    created: str | None = None  # when the stored pass was made
    probes: tuple[str, ...] = ()  # whose pass was attached
    why: str = ""  # why nothing was reused
    command: str = ""  # how to run a pass for this build

    def describe(self) -> str:
        if self.reused:
            return (f"race evidence: the race pass of {self.file} ({self.created}), made on this build, for "
                    f"{len(self.probes)} probe(s)")
        return f"no race pass covers this build ({self.why}): run `{self.command}`, then diagnose again"


def differences(stored: Diagnosis, current: Diagnosis) -> list[str]:
    """What makes two diagnoses' builds differ (empty: the same build). Pure."""
    old, new = stored.fingerprint, current.fingerprint
    for name, fp in (("the stored pass", old), ("this diagnosis", new)):
        if fp.get("light") or fp.get("error") or not fp.get("libraries"):
            return [f"the fingerprint of {name} records no native libraries, so the builds cannot be compared"]
    changes = [f"{c.probe}: {c.old} -> {c.new}"
               for c in (*python_changes(stored, current), *package_changes(old, new))]
    families, _others, _moved = library_changes(old, new)
    changes += [f"{c.probe}: {c.old} -> {c.new}" for c in families]
    # By their bytes, wherever they lie: a rebuild that keeps its version is another build too.
    was = {lib.get("sha256"): lib for lib in old["libraries"]}
    now = {lib.get("sha256"): lib for lib in new["libraries"]}
    names = sorted({Path(lib["path"]).name for lib in [*(was[k] for k in was.keys() - now.keys()),
                                                       *(now[k] for k in now.keys() - was.keys())]})
    if names:
        changes.append(f"native libraries with other bytes: {', '.join(names[:4])}"
                       + (f" and {len(names) - 4} more" if len(names) > 4 else ""))
    return changes


def passes(stored: Diagnosis) -> dict[tuple[str, str], RacePass]:
    """The stored race passes by probe and GIL state (a pass alone, ``--no-stress``, sits in a
    threads cell of its own width)."""
    return {(r.probe, str(r.gil)): r.races for r in stored.results
            if r.races is not None and r.mode == Mode.THREADS and r.remedy is None}


def attach(results: tuple[Result, ...], found: dict[tuple[str, str], RacePass]) -> tuple[Result, ...]:
    """Each stored pass joins the cell a pass of its own would have joined (``racepass.cell_for``:
    its width, else the widest threads cell) among the cells of its GIL state, where that cell has
    no pass yet. Pure."""
    out = list(results)
    for (probe, gil), races in found.items():
        at = racepass.cell_for(out, probe, races.threads, GilState(gil))
        if at is not None and out[at].races is None:
            out[at] = with_races(out[at], races)
    return tuple(out)


def command(current: Diagnosis, out: Path) -> str:
    """The race pass alone over what this diagnosis covered: its interpreter and its probe files."""
    python = f" --python {current.config['python']}" if current.config.get("python") else ""
    plugins = "".join(f" --plugin {p}" for p in current.config.get("plugins") or ())
    return f"threadprobe diagnose --races --no-stress{python}{plugins} --out {out / STORED.parent}"


def reuse(current: Diagnosis, out: Path) -> Diagnosis:
    """``current`` with the stored pass of ``out/races`` attached when it is of the same build, and
    in either case its ``RaceSource`` in ``config``."""
    path = out / STORED
    how = command(current, out)
    if not path.exists():
        return _with(current, RaceSource(str(path), False, why=f"no {path}", command=how))
    try:
        stored = report.read(path)
    except UsageError as exc:
        return _with(current, RaceSource(str(path), False, why=str(exc), command=how))
    changed = differences(stored, current)
    found = passes(stored)
    if changed or not found:
        why = ("made on another build: " + "; ".join(changed[:4])) if changed else f"{path} holds no race pass"
        return _with(current, RaceSource(str(path), False, stored.created, why=why, command=how))
    results = attach(current.results, found)
    probes = tuple(sorted({r.probe for r, was in zip(results, current.results) if r.races is not was.races}))
    source = RaceSource(str(path), bool(probes), stored.created, probes,
                        why="" if probes else "its passes match no threads cell of this diagnosis", command=how)
    return _with(current.replace(results=results), source)


def _with(d: Diagnosis, source: RaceSource) -> Diagnosis:
    return d.replace(config={**d.config, CONFIG_KEY: source.to_json()})


def of(d: Diagnosis) -> RaceSource | None:
    """The race source a diagnosis recorded (None: a pass of its own, or made before reuse existed)."""
    data = d.config.get(CONFIG_KEY)
    return RaceSource.from_json(data) if isinstance(data, dict) else None
