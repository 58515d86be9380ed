"""Benchmark files carry the machine, the date and the command beside their data, and read back
with "not recorded" for a file written before the stamp existed."""

from __future__ import annotations

import datetime
import json

import pytest

from threadprobe.report import benchfile


def test_a_written_file_carries_machine_date_and_command(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    path = benchfile.write(tmp_path / "sub" / "bench-x.json", {"seconds": [1.0, 2.0]},
                           argv=["tests/bench/x.py", "--rounds", "3"])
    data = json.loads(path.read_text())
    assert data["seconds"] == [1.0, 2.0]
    assert data["command"] == "python tests/bench/x.py --rounds 3"
    assert data["machine"]["cores"] and data["machine"]["python"]
    age = datetime.datetime.now(datetime.timezone.utc) - datetime.datetime.fromisoformat(data["date"])
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=1)
    back = benchfile.read(path)
    assert back.command == data["command"] and back.date == data["date"]
    assert f"{data['machine']['cores']} cores" in back.machine
    assert back.body() == {"seconds": [1.0, 2.0]}


@pytest.mark.parametrize("argv, expected", [
    (["/x/.venv/bin/threadprobe", "bench", "wind"], "threadprobe bench wind"),
    (["/x/site-packages/pytest/__main__.py", "-m", "bench"], "python -m pytest -m bench"),
    (["tests/bench/races.py", "--parts", "rare race"], "python tests/bench/races.py --parts 'rare race'"),
])
def test_the_command_reads_as_one_would_type_it(argv, expected, monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    assert benchfile.command(argv) == expected


def test_under_pytest_the_command_names_the_benchmark_test(monkeypatch):
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/bench/test_x.py::test_y (call)")
    assert benchfile.command(["pytest"]).endswith("# tests/bench/test_x.py::test_y")


def test_a_file_without_a_stamp_says_so(tmp_path):
    path = tmp_path / "bench-old.json"
    path.write_text(json.dumps({"rows": [1]}))
    old = benchfile.read(path)
    assert old.machine == old.date == old.command == benchfile.NOT_RECORDED
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a benchmark result"):
        benchfile.read(path)
