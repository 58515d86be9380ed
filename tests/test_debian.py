"""A second real build, diagnosed from this one install: Debian's own netCDF4 and h5py, on the
system libnetcdf and its thread-safe libhdf5, run by Debian's python3.11 (.ci/debian-up)."""

import json
import subprocess
import sys

import pytest

DEBIAN = "/usr/bin/python3.11"
PROBES = ("netcdf4.read_shared_dataset.zlib", "netcdf4.read_separate_files.zlib", "h5py.read_shared_file.gzip",
          "iris_netcdf.load_realise")


def has_debian_build() -> bool:
    try:
        return subprocess.run([DEBIAN, "-c", "import netCDF4, h5py"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = [pytest.mark.slow, pytest.mark.environment, pytest.mark.xdist_group("debian"), pytest.mark.skipif(not has_debian_build(),
                                                   reason=f"{DEBIAN} with Debian's python3-netcdf4 and python3-h5py "
                                                          "is needed (.ci/debian-up installs them)")]


def diagnose(tmp_path, name, *extra):
    """A diagnosis started (the fingerprint and availability are what these tests read, so the
    least budget), and a way to wait for its report."""
    args = [sys.executable, "-m", "threadprobe.cli", "diagnose", "--quiet", "--no-evidence", "--budget", "1",
            "--out", str(tmp_path / name), *[x for p in PROBES for x in ("--probe", p)], *extra]
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def report():
        _, err = child.communicate(timeout=600)
        assert child.returncode == 0, err
        return json.loads((tmp_path / name / "diagnosis.json").read_text())
    return report


@pytest.fixture(scope="session")  # session: xdist interleaves modules, which would rebuild a module fixture
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("builds")
    wheels, debian = diagnose(tmp, "wheels"), diagnose(tmp, "debian", "--python", DEBIAN)  # side by side
    return wheels(), debian(), tmp


def test_the_report_describes_the_interpreter_it_diagnosed(both):
    wheels, debian, _ = both
    assert debian["interpreter"] == DEBIAN and debian["fingerprint"]["python"]["executable"] == DEBIAN
    assert wheels["interpreter"] != DEBIAN


def test_the_facts_that_differ_between_the_builds(both):
    wheels, debian, _ = both
    w, d = wheels["fingerprint"]["families"], debian["fingerprint"]["families"]
    # Debian: one system HDF5, built thread-safe; the wheels: two bundled copies, neither thread-safe.
    assert d["libhdf5"]["copies"] == 1 and d["libhdf5"]["threadsafe"] == ["True"]
    assert w["libhdf5"]["copies"] == 2 and w["libhdf5"]["threadsafe"] == ["False"]
    assert d["libhdf5"]["versions"][0].startswith("1.10.") and not w["libhdf5"]["versions"][0].startswith("1.10.")
    assert d["libnetcdf"]["versions"] != w["libnetcdf"]["versions"]
    assert debian["fingerprint"]["packages"]["h5py"]["distribution"] != "h5py"  # registered under another name
    # What Debian lacks (Iris) is unavailable there, with the reason.
    iris = [r for r in debian["results"] if r["probe"] == "iris_netcdf.load_realise"]
    assert {r["verdict"] for r in iris} == {"unavailable"} and "No module named" in iris[0]["safety"]["evidence"][0]["summary"]


def test_their_diff_fits_one_screen_and_names_every_change(both):
    _, _, tmp = both
    done = subprocess.run([sys.executable, "-m", "threadprobe.cli", "compare", str(tmp / "wheels" / "diagnosis.json"),
                           str(tmp / "debian" / "diagnosis.json")], capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert len(lines) <= 30, done.stdout
    text = done.stdout
    assert "libhdf5: " in text and "(2 copies, not thread-safe) -> 1.10." in text and "(thread-safe)" in text
    assert "libnetcdf: 4." in text and "python: " in text and f"{DEBIAN} 3.11" in text
    assert "netCDF4 " in text and "h5py " in text and "numpy " in text
    assert "unavailable now" in text
