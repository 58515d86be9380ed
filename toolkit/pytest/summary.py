"""What the plugin says: a test's failure message, and the session's summary at the end.

The summary has a section per label (``triage.Label``) listing each test with why; a crashed test
also shows its signal and its crashing thread's innermost frames (faulthandler's; the test's
failure shows its whole output). Then the GIL the session ran in and which module turned it back
on, threads alive at forks, and the diagnosis gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from threadprobe.pytest.body import BodyRun
from threadprobe.pytest.triage import Label
from threadprobe.records import Kind

if TYPE_CHECKING:
    from threadprobe.pytest.session import Threadprobe

TITLES = {
    Label.THREAD_UNSAFE: "failed only concurrently, each thread with its own fixtures too, or too rarely to put "
                         "down to shared fixtures: a library or the code under test, its globals included",
    Label.RACY: "race pairs in native code under valgrind, whatever the answers",
    Label.RACES_NOT_RUN: "not run to the end under the race detector (not clean)",
    Label.SERIAL_FAILURE: "failed in one thread too, on the test's own fixtures: not about threads",
    Label.SHARED_STATE: "failed only while the threads shared the test's class or module fixtures: test state",
    Label.NOT_REENTRANT: "failed when re-run in one thread too: test state",
    Label.SERIAL: "never in threads: marked, or an unsafe fixture or call",
}
RED = (Label.THREAD_UNSAFE, Label.RACY, Label.SERIAL_FAILURE)


def why(label: Label, threaded: BodyRun, control: BodyRun, own: BodyRun | None, again: BodyRun | None = None) -> str:
    """One line for the summary."""
    if label == Label.SERIAL_FAILURE:
        return control.headline
    if label == Label.NOT_REENTRANT:
        return f"{threaded.headline}; serially: {control.headline}"
    if label == Label.SHARED_STATE:
        return f"{threaded.headline}; each thread with its own fixtures: fine{recurred(again)}"
    return f"{threaded.headline}{alone(own, 'each thread with its own fixtures too: ')}{recurred(again)}"


def recurred(again: BodyRun | None) -> str:
    """What the threads did sharing the fixtures again, once their own fixtures passed."""
    if again is None:
        return ""
    if again.kind == Kind.OK:
        return "; sharing the fixtures again: fine too (a rare failure, not shown to need the shared fixtures)"
    return f"; sharing the fixtures again: {again.headline}"


def alone(own: BodyRun | None, lead: str) -> str:
    """What the threads did each on its own fixtures, after ``lead``; nothing when that did not run."""
    if own is None:
        return ""
    if own.open_error is not None:
        return f"; each thread with its own fixtures: not run (a fixture could not be set up again: {own.open_error})"
    return f"; {lead}{own.headline or 'fine'}"


def failure(label: Label, threads: int, threaded: BodyRun, control: BodyRun, own: BodyRun | None,
            wider: Sequence[str], again: BodyRun | None = None) -> str:
    """The test's failure message (for a label that is listed only, what ``--threadprobe-strict`` shows)."""
    if label == Label.SERIAL_FAILURE:
        return f"failed serially too (in threadprobe's control run, one thread): {control.headline}\n{control.text}"
    if label == Label.NOT_REENTRANT:
        return (f"not re-entrant: fails under {threads} threads, and also when run again in one thread, sharing "
                f"fixtures as each thread does (test state, not a library bug): {control.headline}\n{control.text}")
    if label == Label.SHARED_STATE:
        return (f"shared state: fails under {threads} threads sharing the test's fixtures ({', '.join(wider)}), "
                f"and not when each thread has its own (test state, not a library bug): {threaded.headline}\n"
                f"{threaded.text}")
    serially = "fine" if control.kind == Kind.OK else f"{control.headline}, which is not this"
    return (f"thread-unsafe: {threaded.headline} (the same runs one after another, sharing fixtures as the threads "
            f"do: {serially}{alone(own, 'each thread with its own fixtures: ')}{recurred(again)})\n{threaded.text}")


def write(out: Any, session: Threadprobe) -> None:
    """The session's summary, through pytest's terminal reporter."""
    groups: dict[Label, list[Any]] = {}
    for finding in session.findings:
        groups.setdefault(finding.label, []).append(finding)
    for label in TITLES:
        found = groups.get(label, [])
        if not found:
            continue
        out.section(f"threadprobe: {len(found)} {label} ({TITLES[label]})", sep="-" if label == Label.SERIAL else "=",
                    red=label in RED)
        for f in found:
            out.line(f"{f.nodeid}: {f.why}")
            for frame in f.frames:
                out.line(f"    {frame}")
    if session.gil.runs or session.gil.free_threaded:
        out.line(f"threadprobe: {session.gil.describe()}")
    if session.forks_with_threads:
        out.line(f"threadprobe: other threads were alive when tests forked "
                 f"({', '.join(sorted(session.forks_with_threads)[:5])}); their thread pools were reset in the children")
    if session.gate:
        path, uses, unsafe = session.gate
        out.section("threadprobe: diagnosis gate", sep="=", red=bool(unsafe), green=not unsafe)
        what = f"for {', '.join(uses)}" if uses else "for every dependency"
        if unsafe:
            out.line(f"{path} finds unsafe verdicts {what}; the session fails:")
            for line in unsafe:
                out.line(f"  {line}")
        else:
            out.line(f"{path}: no unsafe verdict {what}")
