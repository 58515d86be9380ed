"""The choice cache: a pick is found again for the same work, builds and machine, and only then."""

from __future__ import annotations

import dask.array as da

from threadprobe.records import Choice
from threadprobe.scheduling import cache


def test_a_stored_choice_is_found_by_its_key_and_survives_a_corrupt_file(tmp_path, monkeypatch):
    monkeypatch.setenv("THREADPROBE_CACHE", str(tmp_path / "choices.json"))
    sig = cache.signature("nc", [da.zeros((4, 96, 128), dtype="f4", chunks=(1, 96, 128))], files=8)
    build = cache.builds({"python": {"version": "3.11"}, "packages": {"iris": {"version": "3.14"}}, "libraries": []})
    k = cache.key("wind", sig, build, ("iris_netcdf.wind_chunks",))
    assert cache.lookup(k) is None
    cache.store(k, Choice("wind", "threads", 1, 2))
    assert cache.lookup(k) == Choice("wind", "threads", 1, 2)
    other = cache.key("wind", sig, dict(build, python="3.13"), ("iris_netcdf.wind_chunks",))
    assert other != k and cache.lookup(other) is None  # another build: pilot again
    (tmp_path / "choices.json").write_text("{not json")
    assert cache.lookup(k) is None


def test_similar_input_has_the_same_signature_and_twice_the_size_does_not():
    small = cache.signature("nc", [da.zeros((4, 96, 128), dtype="f4", chunks=(1, 96, 128))], files=8)
    assert small == cache.signature("nc", [da.zeros((4, 96, 128), dtype="f4", chunks=(1, 96, 128))], files=9)  # 9 files ~ 8
    assert small != cache.signature("nc", [da.zeros((8, 96, 128), dtype="f4", chunks=(1, 96, 128))], files=8)
    assert small != cache.signature("pp", [da.zeros((4, 96, 128), dtype="f4", chunks=(1, 96, 128))], files=8)


def test_a_choice_made_in_one_gil_state_is_never_found_in_the_other(tmp_path, monkeypatch):
    monkeypatch.setenv("THREADPROBE_CACHE", str(tmp_path / "choices.json"))
    sig, build = cache.signature("pp", [], files=64), cache.builds({"python": {"version": "3.13.5"}})
    off = cache.key("load", sig, build, ("p",), {"state": "off", "enabled": False})
    cache.store(off, Choice("load", "threads", 1, 2))
    assert cache.lookup(off) is not None
    for other in ({"state": "as_imported", "enabled": True}, {"state": "as_imported", "enabled": False}, None):
        assert cache.lookup(cache.key("load", sig, build, ("p",), other)) is None
