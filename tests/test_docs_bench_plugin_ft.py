"""The free-threaded plugin bench's page (docs/_ext/bench_plugin_ft.py) reads its targets from the file alone."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "_ext"))
import bench_plugin_ft  # noqa: E402


def spread(x: float) -> dict[str, float]:
    return {"median": x, "min": x, "max": x}


def figures(finished: int, not_named: list[str], with_frames: int = 2) -> dict[str, Any]:
    mode = {"finished": finished, "sessions": 10, "ran": spread(600), "named": spread(300), "died_by": {},
            "seconds": spread(150), "over_plain": spread(4.0)}
    return {"plain": mode, "run-parallel": {**mode, "finished": 0, "died_by": {"SIGSEGV": 10}},
            "threadprobe": {**mode, "finished": finished, "crashes_in_junit": 2 + len(not_named), "crashes_named": 2,
                            "crashes_with_frames": with_frames, "crashes_not_named": not_named,
                            "labels": {"thread-unsafe": 2}}}


@pytest.mark.parametrize(("finished", "not_named", "finish", "named"), [
    (10, [], "met", "met"),
    (9, [], "met", "met"),
    (8, [], "**missed**", "met"),
    (10, ["iris.tests.x::test_y"], "met", "**missed**"),
])
def test_the_targets_are_met_or_missed_as_the_figures_say(finished: int, not_named: list[str], finish: str,
                                                          named: str) -> None:
    text = "\n".join(bench_plugin_ft.targets(figures(finished, not_named)))
    assert f"finished in {finished} of 10 runs (target: at least 9 of 10): {finish}." in text
    assert f"(target: every crash named to its test): {named}." in text
    assert "median 4x (4 to 4)" in text


def test_a_named_crash_without_frames_is_listed() -> None:
    bare = {"nodeid": "iris/tests/t.py::test_b", "label": "thread-unsafe", "signal": "SIGSEGV", "frames": []}
    text = "\n".join(bench_plugin_ft.targets(figures(10, [], with_frames=1), {"threadprobe": [{"named": [bare]}]}))
    assert "2 with the crashing thread's frames" not in text
    assert "1 with the crashing thread's frames; without: `iris/tests/t.py::test_b` (thread-unsafe)." in text


def test_each_crashed_test_is_listed_with_the_head_of_its_fault() -> None:
    crash = {"nodeid": "iris/tests/t.py::test_a", "label": "thread-unsafe", "signal": "SIGSEGV", "frames": ["File x"],
             "fault": ["Fatal Python error: Segmentation fault", "Current thread 0x1 (most recent call first):"]}
    sessions = [{"named": [crash]}, {"named": []}]
    text = "\n".join(bench_plugin_ft.crashes({"sessions": {"threadprobe": sessions}}))
    assert "`iris/tests/t.py::test_a`: 1 of 2 sessions (SIGSEGV), labelled thread-unsafe" in text
    assert "Fatal Python error: Segmentation fault" in text
