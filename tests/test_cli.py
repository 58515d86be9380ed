"""The command line: exit codes, and one clear line (no traceback) for every bad input."""

import json
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import TRIVIAL

PLUGINS = pathlib.Path(__file__).parent / "plugins"


def tp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["diagnose", "--plugin", "nope.py", "--no-entry-points"], "plugin file not found"),
    (["diagnose", "--plugin", PLUGINS / "no_probes.py", "--no-entry-points"], "defines no probe"),
    (["diagnose", "--probe", "no.such.*"], "matches no probe"),
    (["diagnose", "--threads", "two"], "expected comma-separated integers"),
    (["diagnose", "--trials", "0"], "expected a positive integer"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    done = tp(*args, "--out", tmp_path) if args[0] == "diagnose" else tp(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "diagnosis.json").exists()


def test_diagnose_writes_the_report_and_exits_0_even_when_it_finds_crashes(planted, tmp_path):
    done = tp("diagnose", "--plugin", planted, "--no-entry-points", "--probe", "planted.crash", "--threads", "2",
              "--processes", "2", "--trials", "2", "--out", tmp_path, "--no-evidence", "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "diagnosis.json").read_text())
    assert report["schema"] == "threadprobe.diagnosis/1"
    verdicts = {(r["mode"], r["workers"]): r["verdict"] for r in report["results"]}
    assert verdicts[("threads", 2)] == "crash" and verdicts[("serial", 1)] == "safe"
    for r in report["results"]:
        assert set(r["outcomes"]) == {"ok", "crash", "corrupt", "error", "hang"}
        assert 0 < r["failure_rate_upper95"] <= 1


def test_progress_lines_go_to_stderr_when_not_a_terminal(tmp_path):
    done = tp("diagnose", "--plugin", TRIVIAL, "--no-entry-points", "--trials", "1", "--out", tmp_path,
              "--no-evidence")
    assert done.returncode == 0
    assert "[threadprobe] trivial.square" in done.stderr and "done in" in done.stderr
    assert "trivial.square" in done.stdout  # the console table


def test_list_shows_availability(tmp_path):
    done = tp("list", "--plugin", PLUGINS / "unavailable.py")
    assert done.returncode == 0
    assert "missing.library" in done.stdout and "not installed" in done.stdout
    assert "netcdf4.read_shared_dataset.zlib" in done.stdout
