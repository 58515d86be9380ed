"""The plugin's triage (threadprobe.pytest.triage): a pure rule from typed outcomes to a label.
The planted sessions that reach each label are in tests/pytest/test_plugin.py."""

import pytest

from threadprobe.pytest.triage import Control, Label, triage
from threadprobe.records import Kind

OK, CRASH, HANG, ERROR, CORRUPT = Kind.OK, Kind.CRASH, Kind.HANG, Kind.ERROR, Kind.CORRUPT


@pytest.mark.parametrize("threaded, control, own, again, label", [
    (ERROR, Control(OK), None, None, Label.THREAD_UNSAFE),  # only concurrently, nothing wider to share
    (CRASH, Control(OK), None, None, Label.THREAD_UNSAFE),
    (CRASH, Control(OK), CRASH, None, Label.THREAD_UNSAFE),  # each thread on its own state crashes too: the library
    (CORRUPT, Control(OK), ERROR, None, Label.THREAD_UNSAFE),  # fails on its own state, if otherwise
    (CRASH, Control(OK), OK, None, Label.SHARED_STATE),  # only while they share the test's fixtures
    (ERROR, Control(OK), OK, None, Label.SHARED_STATE),
    (CRASH, Control(OK), OK, CRASH, Label.SHARED_STATE),  # sharing brings it back, own fixtures never
    (CRASH, Control(OK), OK, OK, Label.THREAD_UNSAFE),  # rare: sharing did not bring it back either
    (ERROR, Control(OK), OK, OK, Label.THREAD_UNSAFE),
    (ERROR, Control(ERROR, 1), None, None, Label.NOT_REENTRANT),  # the second run in one thread fails too
    (ERROR, Control(ERROR, 1), OK, None, Label.NOT_REENTRANT),  # the control decides before own state
    (CRASH, Control(ERROR, 1), None, None, Label.THREAD_UNSAFE),  # only the threads died: concurrency
    (HANG, Control(ERROR, 1), None, None, Label.THREAD_UNSAFE),
    (ERROR, Control(ERROR, 0), None, None, Label.SERIAL_FAILURE),  # the first run fails: not about threads
    (ERROR, Control(ERROR), None, None, Label.SERIAL_FAILURE),
    (CRASH, Control(CRASH), None, None, Label.SERIAL_FAILURE),  # one thread, own fixtures: a library crash
    (CRASH, Control(CRASH, 1), None, None, Label.SERIAL_FAILURE),  # the control died: nothing after is known
    (ERROR, Control(HANG), None, None, Label.SERIAL_FAILURE),
])
def test_triage_is_a_pure_rule(threaded, control, own, again, label):
    assert triage(threaded, control, own, again) is label


def test_labels_print_as_the_summary_names_them():
    assert str(Label.THREAD_UNSAFE) == "thread-unsafe" and f"{Label.SHARED_STATE}" == "shared state"
