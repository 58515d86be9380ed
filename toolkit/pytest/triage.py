"""Why a test failed under threads: one pure rule over typed outcomes, and the labels it gives.

The plugin runs a test's body in threads; when that fails, it runs controls and asks ``triage``
what the failure was. Being pure (outcome kinds in, a ``Label`` out), the rule is tested without
pytest or processes (tests/pytest/test_triage.py).

The controls:

- **one thread**: the threaded run's runs one after another in one thread, each fixture instance
  used for its thread's runs in a row (``body.Layout``). Its first run uses fixtures of its own,
  as a plain run does.
- **own state** (only for a test with fixtures wider than a function, below the session): the
  threads again, each with its own instance of every fixture the test owns (class, module,
  package scope too), so that they share nothing the suite shares between tests.
- **shared again** (only when own state passed): the threads as they first ran, sharing the
  fixtures, again. Own state passing says little about a rare failure: a library crash that comes
  once in ten runs passes three runs on any state (on Iris's suites one did, in another session of
  the same test). Only a failure that comes back with the fixtures shared, and never without, is
  put down to them.
"""

from __future__ import annotations

from dataclasses import dataclass

from threadprobe.records import Kind, _Text

#: Kinds that end a run: what would have come after them is unknown.
DIED = frozenset({Kind.CRASH, Kind.HANG})


class Label(_Text):
    """What the plugin concluded about one test (its summary lists each)."""

    THREAD_UNSAFE = "thread-unsafe"  # fails only concurrently, each thread on its own state
    SHARED_STATE = "shared state"  # fails concurrently only while the threads share the test's fixtures
    NOT_REENTRANT = "not re-entrant"  # fails when re-run in one thread too: test state
    SERIAL_FAILURE = "serial failure"  # fails in one thread on its own fixtures: not about threads
    RACY = "racy"  # race pairs in native code under valgrind, whatever the answers
    RACES_NOT_RUN = "races not run"  # the race detector could not finish: not clean
    SERIAL = "ran serially"  # never run in threads (thread_unsafe marker, unsafe fixture or call)


#: Labels that fail the test; test state (``TEST_STATE``) fails it only under ``--threadprobe-strict``.
FAILS = frozenset({Label.THREAD_UNSAFE, Label.SERIAL_FAILURE, Label.RACY})
TEST_STATE = frozenset({Label.SHARED_STATE, Label.NOT_REENTRANT})


@dataclass(frozen=True)
class Finding:
    """One test's label, why, and for a crash its signal and innermost frames."""

    nodeid: str
    label: Label
    why: str
    signal: str | None = None
    frames: tuple[str, ...] = ()


@dataclass(frozen=True)
class Control:
    """A control run's outcome, and which of its runs failed first (None: no run's index known)."""

    kind: Kind
    failed_index: int | None = None


def triage(threaded: Kind, one_thread: Control, own_state: Kind | None = None,
           shared_again: Kind | None = None) -> Label:
    """The label of a test whose threaded run failed (``threaded``, not ok).

    - The one-thread control's first run fails, or the control dies: an ordinary failure, in one
      thread on the test's own fixtures (a crash there is the library's, threads or not).
    - A later run of that control fails: the body fails when re-run, so the threaded failure may
      be that too: **not re-entrant**, unless only the threads died (a crash or hang the control
      never showed is a concurrency bug whatever the test's state).
    - The control passes, the threads with their own state (``own_state``, when it ran) pass, and
      the threads sharing the fixtures fail again (``shared_again``; not run: taken as failing):
      the failure needs the threads to share the test's fixtures: **shared state**.
    - Otherwise **thread-unsafe**: a library or the code under test, with nothing shared that the
      test owns, or a rare failure that sharing did not bring back.
    """
    control = one_thread.kind
    if control != Kind.OK and (one_thread.failed_index in (None, 0) or control in DIED):
        return Label.SERIAL_FAILURE
    if control != Kind.OK and not (threaded in DIED and control not in DIED):
        return Label.NOT_REENTRANT
    if own_state == Kind.OK and shared_again != Kind.OK:
        return Label.SHARED_STATE
    return Label.THREAD_UNSAFE
