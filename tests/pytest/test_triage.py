"""The plugin's triage (threadprobe.pytest.triage): a pure rule from typed outcomes to a label.
The planted sessions that reach each label are in tests/pytest/test_plugin.py."""

import pytest

from threadprobe.pytest.triage import Control, Label, triage
from threadprobe.records import Kind

OK, CRASH, HANG, ERROR, CORRUPT = Kind.OK, Kind.CRASH, Kind.HANG, Kind.ERROR, Kind.CORRUPT


@pytest.mark.parametrize("threaded, control, own, label", [
    (ERROR, Control(OK), None, Label.THREAD_UNSAFE),  # only concurrently, nothing wider to share
    (CRASH, Control(OK), None, Label.THREAD_UNSAFE),
    (CRASH, Control(OK), CRASH, Label.THREAD_UNSAFE),  # each thread on its own state crashes too: the library
    (CORRUPT, Control(OK), ERROR, Label.THREAD_UNSAFE),  # fails on its own state, if otherwise
    (CRASH, Control(OK), OK, Label.SHARED_STATE),  # only while they share the test's fixtures
    (ERROR, Control(OK), OK, Label.SHARED_STATE),
    (ERROR, Control(ERROR, 1), None, Label.NOT_REENTRANT),  # the second run in one thread fails too
    (ERROR, Control(ERROR, 1), OK, Label.NOT_REENTRANT),  # the control decides before own state
    (CRASH, Control(ERROR, 1), None, Label.THREAD_UNSAFE),  # only the threads died: concurrency
    (HANG, Control(ERROR, 1), None, Label.THREAD_UNSAFE),
    (ERROR, Control(ERROR, 0), None, Label.SERIAL_FAILURE),  # the first run fails: not about threads
    (ERROR, Control(ERROR), None, Label.SERIAL_FAILURE),
    (CRASH, Control(CRASH), None, Label.SERIAL_FAILURE),  # one thread, own fixtures: a library crash
    (CRASH, Control(CRASH, 1), None, Label.SERIAL_FAILURE),  # the control died: nothing after is known
    (ERROR, Control(HANG), None, Label.SERIAL_FAILURE),
])
def test_triage_is_a_pure_rule(threaded, control, own, label):
    assert triage(threaded, control, own) is label


def test_labels_print_as_the_summary_names_them():
    assert str(Label.THREAD_UNSAFE) == "thread-unsafe" and f"{Label.SHARED_STATE}" == "shared state"
