"""The fingerprint records what a fresh interpreter really maps, and notices a changed build."""

import copy
import json
import shutil

import pytest

from toolkit import fingerprint


@pytest.fixture(scope="module")
def collected():
    return fingerprint.collect()


def test_the_pypi_wheels_bring_two_hdf5_copies_and_say_whether_they_are_threadsafe(collected):
    hdf5 = [lib for lib in collected["libraries"] if lib["family"] == "libhdf5"]
    loaders = {lib["loaded_by"] for lib in hdf5}
    assert collected["hdf5_copies"] == len({lib["sha256"] for lib in hdf5}) >= 1
    if {"netCDF4", "h5py"} <= loaders:  # both wheels bundle their own
        assert collected["hdf5_copies"] == 2
    for copy_ in collected["hdf5"]:
        assert isinstance(copy_["threadsafe"], bool) and copy_["version"].count(".") == 2
    assert collected["netcdf_copies"] == 1


def test_every_library_has_identity(collected):
    for lib in collected["libraries"]:
        assert lib["path"].startswith("/") and len(lib["sha256"]) == 64 and lib["size"] > 0
    names = {lib["family"] for lib in collected["libraries"]}
    assert {"libnetcdf", "libhdf5"} <= names
    netcdf = next(lib for lib in collected["libraries"] if lib["family"] == "libnetcdf")
    assert netcdf["version"] and netcdf["soname"]


def test_python_build_and_packages(collected):
    assert collected["python"]["gil_enabled"] in (True, False)
    assert collected["packages"]["netCDF4"] and collected["packages"]["scitools-iris"]
    json.dumps(collected)


def test_matches_is_true_now_and_false_after_a_change(collected, tmp_path):
    ok, why = fingerprint.matches(collected)
    assert ok, why
    changed = copy.deepcopy(collected)
    changed["packages"]["h5py"] = "0.0.1"
    ok, why = fingerprint.matches(changed)
    assert not ok and any("h5py" in w for w in why)
    # A library whose bytes differ (same path, different content) is a different build.
    lib = changed["libraries"][0]
    fake = tmp_path / "libfake.so"
    shutil.copy(lib["path"], fake)
    with open(fake, "ab") as fh:
        fh.write(b"rebuilt")
    lib["path"] = str(fake)
    ok, why = fingerprint.matches(changed)
    assert not ok and any("libfake" in w for w in why)
