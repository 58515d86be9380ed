"""threadprobe.harness.valgrind and the shipped suppressions, under the real valgrind.

Per shipped suppression: the report it hides (shown by a run without it), and that a real race
beside it is still reported. The planted program (tests/planted/suppressed.c) is plain C with
two pthreads, so these runs take about a second and do not depend on the interpreter's timing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from threadprobe.diagnosis.races import parse as races
from threadprobe.harness.valgrind import SHIPPED, TOOLS, Detector, shim, valgrind

pytestmark = pytest.mark.skipif(valgrind() is None, reason="valgrind is not installed (.ci/run installs it)")
SOURCE = Path(__file__).parents[1] / "planted" / "suppressed.c"


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("supp") / "suppressed"
    subprocess.run(["gcc", "-O1", "-g", "-pthread", "-o", str(exe), str(SOURCE)], check=True)
    return exe


def keys(program: Path, folder: Path, tool: str, shipped: bool) -> set[str]:
    folder.mkdir()
    detector = Detector(tool, folder)
    command = detector.prefix()
    if not shipped:
        command = [c for c in command if c != f"--suppressions={SHIPPED}"]
    subprocess.run([*command, str(program)], check=True, capture_output=True, timeout=120)
    texts = [p.read_text() for p in folder.glob("vg.*.xml")]
    return {p.key for p in races.analyse(texts, tool, 2, 0).pairs}


@pytest.mark.parametrize("tool", TOOLS)
def test_hdf5_recursive_mutex_suppression_hides_its_report_and_nothing_else(program, tmp_path, tool):
    without = keys(program, tmp_path / "without", tool, shipped=False)
    with_it = keys(program, tmp_path / "with", tool, shipped=True)
    assert any("H5TS_mutex_lock" in k for k in without), without  # the report it exists to hide
    assert not any("H5TS_mutex_lock" in k for k in with_it), with_it
    # Nothing else is hidden: the real race beside it (helgrind names planted_real_race; DRD, which
    # does not read inlining, may name its caller) is reported with and without the entry.
    assert with_it and {k for k in without if "H5TS" not in k} == with_it, (without, with_it)


def test_every_shipped_suppression_says_why():
    """Each entry follows a comment, or directly follows its sibling for the other tool."""
    lines = [line.strip() for line in SHIPPED.read_text().splitlines() if line.strip()]
    opens = [k for k, line in enumerate(lines) if line == "{"]
    assert opens
    for k in opens:
        assert k > 0 and (lines[k - 1].startswith("#") or lines[k - 1] == "}"), lines[k + 1]


def test_users_suppressions_follow_the_shipped_ones(tmp_path):
    mine = tmp_path / "mine.supp"
    mine.write_text("")
    command = Detector("helgrind", tmp_path, (str(mine),)).prefix()
    assert command.index(f"--suppressions={SHIPPED}") < command.index(f"--suppressions={mine}")
    assert f"--xml-file={tmp_path}/vg.%p.xml" in command and "--tool=helgrind" in command


def test_the_shim_is_preloaded_with_its_mode_and_folder(tmp_path):
    built = tmp_path / "overlap-0123456789ab.so"
    env = Detector("helgrind", tmp_path, schedule="natural").env(built)
    assert env["LD_PRELOAD"].split()[0] == str(built)
    assert env["THREADPROBE_OVERLAP_DIR"] == str(tmp_path) and env["THREADPROBE_OVERLAP"] == "count"
    assert Detector("helgrind", tmp_path).env(built)["THREADPROBE_OVERLAP"] == "meet"
    assert Detector("helgrind", tmp_path).env(None) == {}  # not built: nothing preloaded


def test_the_shims_counts_are_summed_over_a_workers_threads(tmp_path):
    detector = Detector("helgrind", tmp_path)
    (tmp_path / "overlap.41").write_text("100 120 80 150\n100 110 90 150\n")
    assert detector.overlap_of(41) == (200, 230, 170, 150)  # pairs: each counted by both its sections
    assert detector.overlap_of(42) is None
    (tmp_path / "overlap.43").write_text("100 120\n")
    assert detector.overlap_of(43) is None  # not the shim's format


def test_the_shim_builds_here_and_is_rebuilt_only_when_its_source_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built, why = shim()
    assert built is not None and built.exists(), why
    assert shim() == (built, "") and built.parent == tmp_path / "threadprobe"
