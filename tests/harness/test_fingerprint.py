"""The fingerprint knows builds, not wheels: libraries by the symbols they define, versions and
flags from the libraries themselves, packages by import name, and the interpreter's own build."""

import copy
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from threadprobe.harness import fingerprint

FAKE_HDF5 = """
int H5get_libversion(unsigned *maj, unsigned *min, unsigned *rel) { *maj = 9; *min = 8; *rel = 7; return 0; }
int H5is_library_threadsafe(_Bool *flag) { *flag = 1; return 0; }
int H5Eset_auto2(long id, void *f, void *d) { return 0; }
"""
FAKE_NETCDF = 'const char *nc_inq_libvers(void) { return "4.99.1 of Nov 29 2026 $"; }\n'
# Links the fake HDF5 and calls it, as libnetcdf or libhdf5_hl do: it must not count as a copy.
WRAPPER = "int H5get_libversion(unsigned*, unsigned*, unsigned*);\nint wrapped(void) { unsigned a, b, c; return H5get_libversion(&a, &b, &c); }\n"


@pytest.fixture(scope="session")  # session: xdist interleaves modules, which would rebuild a module fixture
def planted_libraries(tmp_path_factory):
    """Builds as a site might make them: odd file names, versions only the code knows."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the planted libraries")
    folder = tmp_path_factory.mktemp("libs")
    for name, source, extra in (("libsite_hdf5_custom.so", FAKE_HDF5, []), ("libnc_by_site.so", FAKE_NETCDF, []),
                                ("libwraps_h5.so", WRAPPER, ["-L", str(folder), "-lsite_hdf5_custom"])):
        (folder / f"{name}.c").write_text(source)
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(folder / name), str(folder / f"{name}.c"), *extra],
                       check=True)
    return folder


def fingerprint_loading(folder, names):
    code = textwrap.dedent(f"""
        import ctypes, json, os, sys
        for name in {list(names)!r}:
            ctypes.CDLL(os.path.join({str(folder)!r}, name), mode=ctypes.RTLD_GLOBAL)
        from threadprobe.harness import fingerprint
        print(json.dumps(fingerprint.collect_here(())))
    """)
    env = dict(os.environ, LD_LIBRARY_PATH=str(folder))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout)


def test_libraries_are_recognised_by_what_they_define_not_their_names(planted_libraries):
    found = fingerprint_loading(planted_libraries, ["libsite_hdf5_custom.so", "libwraps_h5.so", "libnc_by_site.so"])
    by_name = {os.path.basename(lib["path"]): lib for lib in found["libraries"]}
    hdf5 = by_name["libsite_hdf5_custom.so"]
    assert (hdf5["family"], hdf5["version"], hdf5["threadsafe"]) == ("libhdf5", "9.8.7", True)
    assert by_name["libnc_by_site.so"]["family"] == "libnetcdf" and by_name["libnc_by_site.so"]["version"] == "4.99.1"
    assert by_name.get("libwraps_h5.so", {}).get("family") != "libhdf5"  # it calls HDF5; it is not one
    assert found["hdf5_copies"] == 1 and found["netcdf_copies"] == 1
    assert found["families"]["libhdf5"]["threadsafe"] == ["True"]


def test_the_soname_is_read_from_the_library_and_none_where_it_has_none(planted_libraries, tmp_path):
    named = tmp_path / "libsite_named.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libsite_named.so.7", "-o", str(named),
                    str(planted_libraries / "libnc_by_site.so.c")], check=True)
    assert fingerprint.soname(str(named)) == "libsite_named.so.7"
    assert fingerprint.soname(str(planted_libraries / "libnc_by_site.so")) is None  # linked without one
    assert fingerprint.soname(str(planted_libraries / "libnc_by_site.so.c")) is None  # not an ELF file


def test_the_interpreters_build_is_read_not_assumed(monkeypatch):
    import platform

    build = fingerprint.python_build()
    assert build["version"] == platform.python_version() and build["executable"] == sys.executable
    assert build["gil_enabled"] is (sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True)
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert fingerprint.python_build()["gil_enabled"] is False  # a free-threaded build with the GIL off


def test_packages_are_found_by_import_name_whatever_their_distribution_is_called(tmp_path, monkeypatch):
    pkg = tmp_path / "fakelib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("__version__ = '0.0'\n")
    dist = tmp_path / "fakelib.-debian-fakelib-serial-3.7.0.dist-info"  # as Debian registers h5py
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakelib.-debian-fakelib-serial\nVersion: 3.7.0\n")
    (dist / "top_level.txt").write_text("fakelib\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(fingerprint, "PACKAGES", ("fakelib", "no_such_package_anywhere"))
    found = fingerprint.package_versions()
    assert found["fakelib"] == {"version": "3.7.0", "distribution": "fakelib.-debian-fakelib-serial"}
    assert found["no_such_package_anywhere"] is None


@pytest.fixture(scope="session")  # session: xdist interleaves modules, which would rebuild a module fixture
def collected():
    import h5py  # noqa: F401  (maps an HDF5, so that the HDF5 checks below have something to check)

    return fingerprint.collect()


def test_what_this_interpreter_maps_is_described_in_full(collected):
    for lib in collected["libraries"]:
        assert lib["path"].startswith("/") and len(lib["sha256"]) == 64 and lib["size"] > 0
    hdf5 = [lib for lib in collected["libraries"] if lib["family"] == "libhdf5"]
    assert hdf5 and collected["hdf5"], "h5py is imported: its HDF5 must be found"
    assert collected["hdf5_copies"] == len({lib["sha256"] for lib in hdf5})
    for copy_ in collected["hdf5"]:
        assert isinstance(copy_["threadsafe"], bool) and copy_["version"].count(".") == 2
    json.dumps(collected)


def test_matches_is_true_now_and_false_after_a_change(collected, tmp_path):
    ok, why = fingerprint.matches(collected)
    assert ok, why
    changed = copy.deepcopy(collected)
    changed["packages"]["h5py"] = {"version": "0.0.1", "distribution": "h5py"}
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


def test_matches_looks_versions_up_by_distribution_and_agrees_with_the_full_listing(collected, monkeypatch, tmp_path):
    stored = collected["packages"]
    assert fingerprint._versions_now(stored) == fingerprint.package_versions()
    # A distribution registered under a name a lookup normalises away (Debian's h5py): the full listing.
    pkg = tmp_path / "fakelib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    dist = tmp_path / "fakelib.-debian-fakelib-serial-3.7.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakelib.-debian-fakelib-serial\nVersion: 3.7.0\n")
    (dist / "top_level.txt").write_text("fakelib\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(fingerprint, "PACKAGES", ("fakelib", "no_such_package_anywhere"))
    was = {"fakelib": {"version": "3.6.0", "distribution": "fakelib.-debian-fakelib-serial"},
           "no_such_package_anywhere": None}
    assert fingerprint._versions_now(was) == fingerprint.package_versions()
    ok, why = fingerprint.matches({"packages": was, "python": collected["python"]})
    assert not ok and why == ["fakelib 3.6.0 -> 3.7.0"]
