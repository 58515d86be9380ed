"""The page of the plugin on the free-threaded build (``reports/bench-plugin-ft.json``), read against its targets.

The generic page prints a benchmark file's tables; this one also says, from the file alone, how the
figures stand against issue 31's targets (threadprobe's session finishes in at least 9 of 10 runs,
every crash named to its test with its frames, the overhead against a plain run stated), lists the
crashes with the head of their faulthandler output, and redraws the bench's own plot with the
bench's own code. The sessions' raw records stay in the file, not on the page.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any

STEM = "bench-plugin-ft"
SCRIPT = Path(__file__).resolve().parents[2] / "tests" / "bench" / "plugin_freethreaded.py"
RAW = ("sessions",)  # per-session records: in the file, too long for the page
FINISHED_SHARE = 0.9  # the target: at least 9 sessions of 10 finish


def _spread(s: dict[str, Any] | None, unit: str = "") -> str:
    if not s or s.get("median") is None:
        return "none"
    return f"median {s['median']:g}{unit} ({s['min']:g} to {s['max']:g})"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def ends(sessions: list[dict[str, Any]]) -> str:
    """How the sessions that did not finish ended: a signal, or pytest's exit status with no summary."""
    found = Counter(s["signal"] or (s["status"] if s["status"] == "timeout" else f"exit {s['status']}")
                    for s in sessions if not s["finished"])
    return ", ".join(f"{k} x{v}" for k, v in found.items()) or "none"


def table(figures: dict[str, Any], sessions: dict[str, Any] | None = None) -> list[str]:
    """One row per mode: sessions finished, tests ran and named, how sessions died, wall time."""
    lines = ["| session | finished | tests ran | tests named | died by | wall time | over plain (finished) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for mode, f in figures.items():
        died = ends((sessions or {}).get(mode, []))
        lines.append(f"| {mode} | {f['finished']} of {f['sessions']} | {_spread(f['ran'])} | {_spread(f['named'])} | "
                     f"{died} | {_spread(f['seconds'], ' s')} | {_spread(f['over_plain'], 'x')} |")
    return lines + [""]


def targets(figures: dict[str, Any], sessions: dict[str, Any] | None = None) -> list[str]:
    """The issue's targets, each with the figure the file gives."""
    tp = figures.get("threadprobe")
    if not tp:
        return []
    finished = tp["finished"] >= FINISHED_SHARE * tp["sessions"]
    unnamed = tp.get("crashes_not_named", [])
    rp = figures.get("run-parallel", {})
    labels = ", ".join(f"{k} {v}" for k, v in tp.get("labels", {}).items())
    bare = sorted({f"`{n['nodeid']}` ({n['label']})" for s in (sessions or {}).get("threadprobe", [])
                   for n in s["named"] if n.get("signal") and not n["frames"]})
    return [
        "## Against the targets", "",
        f"- threadprobe's session finished in {tp['finished']} of {tp['sessions']} runs (target: at least 9 of 10): "
        f"{_met(finished)}.",
        f"- Crashes that failed a test (the JUnit files): {tp.get('crashes_in_junit', 0)}; not named in the "
        f"summary: {len(unnamed)} (target: every crash named to its test): {_met(not unnamed)}.",
        f"- Crashes the summary names, those of its controls too: {tp.get('crashes_named', 0)}, "
        f"{tp.get('crashes_with_frames', 0)} with the crashing thread's frames"
        + (f"; without: {', '.join(bare)}" if bare else "") + ".",
        f"- Overhead against a plain run of the same round: {_spread(tp['over_plain'], 'x')} (target: stated).",
        f"- pytest-run-parallel finished {rp.get('finished', 0)} of {rp.get('sessions', 0)} sessions.",
        f"- Labels over all sessions: {labels}.", "",
    ]


def crashes(data: dict[str, Any]) -> list[str]:
    """Each crashed test, how often, and the head of one fault of it."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for s in data.get("sessions", {}).get("threadprobe", []):
        for n in s["named"]:
            if n.get("signal"):
                seen.setdefault(n["nodeid"], []).append(n)
    if not seen:
        return []
    lines = ["## The crashes threadprobe named", ""]
    for nodeid, found in sorted(seen.items(), key=lambda kv: -len(kv[1])):
        signals = ", ".join(sorted({n["signal"] for n in found}))
        lines += [f"`{nodeid}`: {len(found)} of {len(data['sessions']['threadprobe'])} sessions ({signals}), "
                  f"labelled {', '.join(sorted({n['label'] for n in found}))}", ""]
        lines += ["```text", *crashing_thread(found), "```", ""]
    return lines


def crashing_thread(found: list[dict[str, Any]], limit: int = 10) -> list[str]:
    """The first line of one fault of a test and its crashing thread's frames ("Current thread"),
    or, when the kept head of the fault stops before that thread, the frames the summary gave."""
    for n in found:
        fault = n.get("fault") or []
        start = next((i for i, line in enumerate(fault) if line.startswith("Current thread")), None)
        if start is not None:
            return [*fault[:1], *fault[start:start + limit]]
    first = next((n["fault"][:1] for n in found if n.get("fault")), [])
    return [*first, "frames the summary gave:", *next((n["frames"] for n in found if n["frames"]), [])]


def deaths(data: dict[str, Any]) -> list[str]:
    """Each threadprobe session that died: the test it was in, and the crashing thread of its own fault."""
    dead = [(k, s) for k, s in enumerate(data.get("sessions", {}).get("threadprobe", []), 1) if not s["finished"]]
    if not dead:
        return []
    lines = ["## threadprobe's sessions that died", "",
             "The pytest process itself died here, not a forked child: what killed it ran in pytest's own process.", ""]
    for k, s in dead:
        fault = s.get("fault") if isinstance(s.get("fault"), list) else []
        start = next((i for i, line in enumerate(fault) if line.startswith("Current thread")), 0)
        where = (f"in `{s['last_started']}`" if s.get("last_started") else  # its outcome printed: in its teardown
                 f"after the last line printed, `{' '.join(s['tail']).strip()}` (its teardown, or between tests)")
        lines += [f"Round {k}: {s['signal'] or s['status']} after {s['ran']} tests, {where}", ""]
        if fault:
            lines += ["```text", *fault[:2], *fault[start:start + 14], "```", ""]
    return lines


def plot(data: dict[str, Any], out: Path) -> str | None:
    """The bench's own plot, redrawn from the file by the bench's own code; its file name."""
    if not data.get("sessions") or not SCRIPT.exists():
        return None
    spec = importlib.util.spec_from_file_location("plugin_freethreaded", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out.mkdir(parents=True, exist_ok=True)
    bench.plot(data["sessions"], data["tests"], out / f"{STEM}.png")
    return f"{STEM}.png"


def lines(data: dict[str, Any], out: Path) -> list[str]:
    """The page's own part: the plot, the table, the targets and the crashes."""
    found = ["## Sessions side by side", ""]
    name = plot(data, out)
    if name:
        found += [f"```{{image}} {name}", f":alt: each session's wall time and tests run, from reports/{STEM}.json",
                  "```", ""]
    done, planned = data.get("rounds_done"), data.get("rounds")
    if done is not None and planned is not None and done < planned:
        found += [f"Only {done} of the {planned} rounds planned ran to the end: the figures are of those.", ""]
    found += table(data.get("figures", {}), data.get("sessions"))
    return found + targets(data.get("figures", {}), data.get("sessions")) + crashes(data) + deaths(data)
