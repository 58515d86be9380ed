"""The command line: exit codes, and one clear line (no traceback) for every bad input."""

import json
import pathlib
import subprocess
import sys

import pytest

from tests.conftest import TRIVIAL
from threadprobe.records import DIAGNOSIS_SCHEMA

PLUGINS = pathlib.Path(__file__).parent / "plugins"


def tp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "threadprobe.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["diagnose", "--plugin", "nope.py", "--no-entry-points"], "plugin file not found"),
    (["diagnose", "--plugin", PLUGINS / "no_probes.py", "--no-entry-points"], "defines no probe"),
    (["diagnose", "--probe", "no.such.*"], "matches no probe"),
    (["diagnose", "--threads", "two"], "expected comma-separated integers"),
    (["diagnose", "--budget", "0"], "expected a positive number"),
    (["diagnose", "--python", "/no/such/python3"], "no such executable"),
    (["fingerprint", "--python", "/no/such/python3"], "no such executable"),
    (["report-bug", "cftime.num2date", "--diagnosis", "/no/such.json"], "no such file"),
    (["frobnicate"], "invalid choice"),
    (["diagnose", "--no-stress"], "--no-stress leaves nothing to run without --races"),
    (["diagnose", "--suppressions", "x.supp"], "need --races"),
    (["diagnose", "--races", "tsan"], "invalid choice"),
    (["diagnose", "--trials", "-1"], "expected 0 or a positive integer"),
    (["diagnose", "--timing-trials", "-2"], "expected 0 or a positive integer"),
    (["diagnose", "--target", "-0.1"], "expected a number between 0 and 1"),
    (["diagnose", "--target", "1.5"], "expected a number between 0 and 1"),
    (["diagnose", "--target", "0"], "expected a number between 0 and 1"),
    (["make-data", "--out", "d", "--levels", "-1"], "expected 0 or a positive integer"),
    (["make-data", "--out", "d", "--pairs", "0"], "expected a positive integer"),
    (["bench", "wind", "--data-format", "grib"], "invalid choice: 'grib'"),
    (["run", "load", "--files", "x.pp", "--scheduler", "thread"],
     "invalid choice: 'thread' (choose from 'auto', 'synchronous', 'threads', 'processes', 'distributed')"),
    (["run", "load", "--files", "x.pp", "--cluster", "pbs"], "invalid choice: 'pbs' (choose from 'local', 'slurm')"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, message):
    done = tp(*args, "--out", tmp_path) if args[0] == "diagnose" else tp(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "diagnosis.json").exists()


def test_races_without_valgrind_is_one_line_and_exit_code_2(tmp_path):
    """A machine without valgrind: the PATH here has python's folder and nothing else."""
    env = {"PATH": str(pathlib.Path(sys.executable).parent), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "threadprobe.cli", "diagnose", "--races", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--races needs valgrind" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "diagnosis.json").exists()


def test_diagnose_writes_the_report_and_exits_0_even_when_it_finds_crashes(planted, tmp_path):
    done = tp("diagnose", "--plugin", planted, "--no-entry-points", "--probe", "planted.crash", "--threads", "2",
              "--processes", "2", "--budget", "2", "--out", tmp_path, "--no-evidence", "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "diagnosis.json").read_text())
    assert report["schema"] == DIAGNOSIS_SCHEMA and report["interpreter"] == sys.executable
    verdicts = {(r["mode"], r["workers"]): r["verdict"] for r in report["results"]}
    assert verdicts[("threads", 2)] == "crash" and verdicts[("serial", 1)] == "safe"
    assert "planted.crash" in done.stdout and "[threadprobe]" not in done.stderr  # --quiet: results, no progress
    for r in report["results"]:
        assert set(r["safety"]["outcomes"]) == {"ok", "crash", "corrupt", "error", "hang"}
        assert 0 < r["safety"]["failure_rate_upper95"] <= 1


def test_progress_lines_go_to_stderr_when_not_a_terminal(tmp_path):
    done = tp("diagnose", "--plugin", TRIVIAL, "--no-entry-points", "--budget", "1", "--out", tmp_path,
              "--no-evidence")
    assert done.returncode == 0
    assert "[threadprobe] trials: trivial.square" in done.stderr and "trials done in" in done.stderr
    assert "trivial.square" in done.stdout  # the console table


def test_list_shows_availability_from_the_imports(tmp_path):
    done = tp("list", "--plugin", PLUGINS / "unavailable.py")
    assert done.returncode == 0
    rows = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("│ missing.")}
    assert "no: cannot import no_such_library_for_threadprobe" in rows["missing.in_prepare"]
    assert "yes" in rows["missing.label_only"]  # a label is no module name
    assert "netcdf4.read_shared_dataset.zlib" in done.stdout


SWITCH = PLUGINS / "switchable.py"


def start_switch(tmp_path, build, *extra):
    """A diagnosis of the switchable plugin, started; ``.communicate()`` waits for it."""
    import os

    env = {**os.environ, "THREADPROBE_TEST_BUILD": build}
    return subprocess.Popen([sys.executable, "-m", "threadprobe.cli", "diagnose", "--plugin", str(SWITCH),
                             "--no-entry-points", "--threads", "2", "--processes", "2", "--budget", "1",
                             "--no-evidence", "--quiet", "--out", str(tmp_path), *map(str, extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finished(child):
    out, err = child.communicate(timeout=300)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def diagnose_switch(tmp_path, build, *extra):
    return finished(start_switch(tmp_path, build, *extra))


def test_a_planted_regression_and_an_unsafe_probe_each_exit_1(tmp_path):
    good = diagnose_switch(tmp_path / "good", "good")
    assert good.returncode == 0, good.stderr
    # The two gated runs need only the baseline: side by side.
    started = [start_switch(tmp_path / name, name.replace("again", "good"), "--baseline",
                            tmp_path / "good" / "diagnosis.json", "--fail-on", "unsafe") for name in ("again", "bad")]
    again, bad = (finished(child) for child in started)
    # --quiet silences the progress, not the results: the table comes first, then the gates.
    assert again.returncode == 0 and "threadprobe diagnosis" in again.stdout.splitlines()[0]
    assert "no safety regression against the baseline" in again.stdout.splitlines()
    assert "UNSAFE" not in again.stdout
    assert bad.returncode == 1, bad.stdout + bad.stderr
    first = next(line for line in bad.stdout.splitlines() if line.startswith("REGRESSION:"))
    assert first.startswith("REGRESSION:") and "switch.native_build" in first and "crash" in first
    assert "UNSAFE: switch.native_build" in bad.stdout  # the gate that needs no baseline fires too
    assert (tmp_path / "bad" / "diagnosis.html").exists()
    compared = tp("compare", tmp_path / "good" / "diagnosis.json", tmp_path / "bad" / "diagnosis.json")
    assert compared.returncode == 1 and "switch.native_build" in compared.stdout.splitlines()[0]


def test_a_bad_baseline_fails_before_any_work(tmp_path):
    (tmp_path / "junk.json").write_text("{not json")
    done = diagnose_switch(tmp_path / "x", "good", "--baseline", tmp_path / "junk.json")
    assert done.returncode == 2 and "is not JSON" in done.stderr and not (tmp_path / "x").exists()


def test_rich_progress_on_a_terminal_and_none_with_quiet(tmp_path):
    import os
    import pty

    def on_a_tty(*extra):
        controller, terminal = pty.openpty()
        proc = subprocess.Popen([sys.executable, "-m", "threadprobe.cli", "diagnose", "--plugin", str(TRIVIAL),
                                 "--no-entry-points", "--budget", "2", "--no-evidence", "--out", str(tmp_path), *extra],
                                stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True)
        os.close(terminal)
        chunks = []
        while True:
            try:
                data = os.read(controller, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=300)
        os.close(controller)
        return b"".join(chunks).decode("utf-8", "replace")

    shown = on_a_tty()
    assert "trivial.square" in shown and "failed" in shown and "━" in shown  # rich's bar, live
    assert "[threadprobe] trials" not in shown  # the plain lines are for logs, not terminals
    assert "budget left" in shown
    quiet = on_a_tty("--quiet")
    assert "budget left" not in quiet and "threadprobe diagnosis" in quiet  # no progress; the results still


def test_report_bug_writes_an_issue_body_for_an_unsafe_probe(planted, tmp_path):
    done = tp("diagnose", "--plugin", planted, "--no-entry-points", "--probe", "planted.race", "--threads", "2",
              "--processes", "2", "--budget", "2", "--out", tmp_path, "--no-evidence", "--quiet")
    assert done.returncode == 0, done.stderr
    bug = tp("report-bug", "planted.race", "--diagnosis", tmp_path / "diagnosis.json", "--out-file", tmp_path / "bug.md")
    assert bug.returncode == 0, bug.stderr
    text = (tmp_path / "bug.md").read_text()
    assert text.startswith("# planted: corrupt under 2 threads") and "```python" in text and "## Environment" in text


def flag_meanings(parser) -> dict[str, dict[tuple, list[str]]]:
    """Every long option of every command, by what it takes: its action (given once or repeated
    alike), its type, the kind of its metavar (FILE.md and FILE.nc are both a file) and its
    choices. A name with two of these means two things."""
    import argparse

    found: dict[str, dict[tuple, list[str]]] = {}

    def walk(parser, command):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{command} {name}".strip())
            elif action.help != argparse.SUPPRESS:
                kind = type(action).__name__.replace("_AppendAction", "_StoreAction")
                metavar = action.metavar.split(".")[0] if isinstance(action.metavar, str) else action.metavar
                meaning = (kind, getattr(action.type, "__name__", None), metavar, tuple(action.choices or ()))
                for option in action.option_strings:
                    if option.startswith("--") and option not in ("--help", "--version"):
                        found.setdefault(option, {}).setdefault(meaning, []).append(command)

    walk(parser, "")
    return found


def test_every_flag_name_means_one_thing_across_commands():
    from threadprobe.cli import build_parser

    parser = build_parser()
    assert {name: meanings for name, meanings in flag_meanings(parser).items() if len(meanings) > 1} == {}
    # A planted second meaning is found: --out as a file in one more command.
    parser._subparsers._group_actions[0].choices["compare"].add_argument("--out", metavar="FILE.txt")
    assert set(flag_meanings(parser)["--out"]) == {("_StoreAction", None, "DIR", ()),
                                                   ("_StoreAction", None, "FILE", ())}


def test_load_of_files_iris_cannot_merge_is_one_line_naming_them(tmp_path):
    """Two PP files holding the same field at the same time: iris raises DuplicateDataError."""
    import shutil

    from threadprobe.scheduling.runs.data import DataSpec, make_data

    make_data(DataSpec(tmp_path, files=2, size_mb=0.01, fmt="pp", ny=45, nx=60))
    shutil.copy(tmp_path / "x_wind_000.pp", tmp_path / "x_wind_copy.pp")
    done = tp("run", "load", "--files", tmp_path / "*.pp", "--scheduler", "synchronous", "--quiet")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    [line] = done.stderr.strip().splitlines()
    assert "cannot merge the 5 files" in line and "Duplicate 'x_wind' cube" in line
    assert f"{tmp_path / 'x_wind_000.pp'}, {tmp_path / 'x_wind_copy.pp'}" in line and "y_wind" not in line
