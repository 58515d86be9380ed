"""threadprobe.harness.fpstore: a kept fingerprint is reused while nothing it was made from
changed, and collected afresh the moment anything did. The collection itself is planted (a
fingerprint naming a library file this test owns); the check runs for real in a child."""

from __future__ import annotations

import json
import os
import sys

import pytest

from threadprobe.harness import fingerprint, fpstore


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A store in tmp_path, and a collection that names ``libplanted.so`` and counts its calls."""
    library = tmp_path / "libplanted.so"
    library.write_bytes(b"one build")
    calls = []

    def collect(python=None, timeout=180.0):
        calls.append(python)
        real = fingerprint.light()
        stat = library.stat()
        real["libraries"] = [{"path": str(library), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                              "sha256": fingerprint.sha256(str(library)), "family": "planted"}]
        return real

    monkeypatch.setenv("THREADPROBE_FINGERPRINTS", str(tmp_path / "store"))
    monkeypatch.setattr(fingerprint, "collect", collect)
    return library, calls


def test_an_unchanged_interpreter_reuses_its_fingerprint(planted):
    library, calls = planted
    first = fpstore.collect()
    again = fpstore.collect()
    assert len(calls) == 1 and again == first and first["collected_at"]


def test_a_library_rebuilt_in_place_is_fingerprinted_again(planted):
    library, calls = planted
    fpstore.collect()
    library.write_bytes(b"another build, longer")
    fpstore.collect()
    fpstore.collect()
    assert len(calls) == 2


def test_a_package_added_to_an_import_folder_is_fingerprinted_again(planted, tmp_path):
    library, calls = planted
    fpstore.collect()
    kept = next((tmp_path / "store").glob("*.json"))
    entry = json.loads(kept.read_text())
    assert entry["folders"] and all(os.path.isdir(p) for p in entry["folders"])
    entry["folders"] = {p: t - 1 for p, t in entry["folders"].items()}  # as if one changed since
    kept.write_text(json.dumps(entry))
    fpstore.collect()
    assert len(calls) == 2


def test_an_environment_that_steers_the_loader_has_its_own_fingerprint(planted, monkeypatch):
    library, calls = planted
    fpstore.collect()
    monkeypatch.setenv("LD_PRELOAD", str(library))  # never loaded: only the key changes
    monkeypatch.setattr(fpstore, "check", lambda *a: {"why": [], "folders": {}})
    fpstore.collect()
    assert len(calls) == 2


def test_off_never_reuses_and_a_damaged_store_is_collected_over(planted, tmp_path, monkeypatch):
    library, calls = planted
    fpstore.collect()
    next((tmp_path / "store").glob("*.json")).write_text("{not json")
    fpstore.collect()
    monkeypatch.setenv("THREADPROBE_FINGERPRINTS", "off")
    fpstore.collect()
    fpstore.collect()
    assert len(calls) == 4


def test_import_folders_leave_out_pythonpath_which_the_key_holds(tmp_path, monkeypatch):
    given, found = tmp_path / "given", tmp_path / "found"
    given.mkdir()
    found.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(given))
    monkeypatch.setattr(sys, "path", [str(given), str(found), str(tmp_path / "missing"), ""])
    assert fpstore.import_folders() == {str(found): found.stat().st_mtime_ns}
