"""The runner's command line: which scheduler and why, progress, and one-line errors."""

import subprocess
import sys

import pytest


def tp(*args, **kw):
    return subprocess.run([sys.executable, "-m", "threadprobe.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kw)


def test_run_says_which_scheduler_and_why(tmp_path):
    from threadprobe.scheduling.runs.data import DataSpec, make_data

    make_data(DataSpec(tmp_path / "d", files=2, size_mb=4, fmt="nc", ny=240, nx=320))
    done = tp("run", "wind", "--x-wind", tmp_path / "d" / "x_wind_*.nc", "--y-wind", tmp_path / "d" / "y_wind_*.nc",
              "--out-file", tmp_path / "o.nc", "--scheduler", "synchronous")
    assert done.returncode == 0, done.stderr
    assert "scheduler: synchronous (single-threaded) [command line]" in done.stderr
    assert "[threadprobe] wind: compute; 0/1 tasks in the run" in done.stderr and "\r" not in done.stderr  # a log
    (summary,) = done.stdout.splitlines()  # one line: scheduler, times, memory, output
    assert summary.startswith("wind: synchronous") and "peak memory" in summary and str(tmp_path / "o.nc") in summary


@pytest.mark.parametrize("args, message", [
    (["run", "wind", "--x-wind", "/nowhere/*.nc", "--y-wind", "/nowhere/*.nc", "--out-file", "o.nc"], "matches no file"),
    (["run", "wind", "--x-wind", "X", "--y-wind", "X", "--out-file", "o.nc", "--scheduler", "threads", "--adapt", "1:2"],
     "need --scheduler distributed"),
    (["make-data", "--out", "d", "--grid", "big"], "--grid expects NYxNX"),
    (["run", "load", "--files", "/nowhere/*.pp"], "matches no file"),
])
def test_bad_runner_input_is_one_line(tmp_path, args, message):
    done = tp(*args, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_a_file_without_x_wind_names_the_file(wind_nc, tmp_path):
    done = tp("run", "wind", "--x-wind", wind_nc / "y_wind_000.nc", "--y-wind", wind_nc / "y_wind_*.nc",
              "--out-file", tmp_path / "o.nc", "--scheduler", "synchronous")
    assert done.returncode == 2 and "no x_wind" in done.stderr and "y_wind_000.nc" in done.stderr
    assert not (tmp_path / "o.nc").exists()
