"""Process plumbing: atomic writes, file tails, signal names, a child's environment."""

from __future__ import annotations

import json
import os
import threading

from threadprobe.harness import proc


def test_an_atomic_write_leaves_no_temporary_and_replaces_whole(tmp_path):
    target = tmp_path / "report.json"
    proc.write_json_atomic(target, {"a": 1})
    proc.write_text_atomic(target, json.dumps({"b": 2}))
    assert json.loads(target.read_text()) == {"b": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_tail_reads_the_end_and_a_missing_file_is_empty(tmp_path):
    path = tmp_path / "out"
    path.write_bytes(b"x" * 100 + b"the end \xff")
    assert proc.tail(path, 9).startswith("the end") and proc.tail(tmp_path / "none") == ""


def test_signal_names():
    assert proc.signal_name(-11) == "SIGSEGV" and proc.signal_name(-4) == "SIGILL"
    assert proc.signal_name(0) is None and proc.signal_name(None) is None and proc.signal_name(-99) == "signal 99"


def test_a_childs_environment_adds_what_it_is_given(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = proc.child_env({"PYTHONMALLOC": "malloc"})
    assert env["PYTHONMALLOC"] == "malloc" and env["PYTHONPATH"].endswith("/elsewhere")
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(proc.ROOT)


def test_a_named_thread_shows_its_name_to_the_kernel():
    seen = []

    def body() -> None:
        proc.name_thread("probe-7")
        seen.append(open(f"/proc/self/task/{threading.get_native_id()}/comm").read().strip())

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == ["probe-7"]
