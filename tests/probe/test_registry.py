"""Discovery: entry points, plugin files, unavailable probes, and one-line errors for bad input."""

import pathlib
import subprocess
import sys

import pytest

from threadprobe.probe import registry
from threadprobe.harness import available
from threadprobe.records.errors import UsageError
from tests.conftest import HERE

PLUGINS = HERE / "plugins"


def test_builtin_probes_come_from_the_entry_point_group():
    names = {p.name for p in registry.discover()}
    for expected in ("netcdf4.read_shared_dataset.zlib", "h5py.read_shared_file.gzip", "cf_units.parse",
                     "cftime.num2date", "iris_netcdf.load_realise", "iris_pp.load_realise.sample",
                     "two_hdf5.netcdf4_and_h5py", "fork_safety.netcdf4_inherited_dataset"):
        assert expected in names


def test_a_probe_with_a_timing_input_says_so_in_its_info():
    infos = {p.name: p for p in registry.discover()}
    assert infos["iris_pp.wind_chunks"].timing_input and infos["iris_netcdf.wind_chunks"].timing_input
    assert not infos["iris_netcdf.load_realise"].timing_input


def test_discovery_does_not_import_the_libraries_under_test():
    code = ("import sys; from threadprobe.probe import registry; registry.discover(); "
            "print(sorted(m for m in ('netCDF4', 'h5py', 'iris', 'cf_units', 'cftime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    assert out.strip() == "[]"


def test_availability_comes_from_importing_in_the_target_interpreter():
    infos = {i.name: i for i in available.availability(registry.discover([PLUGINS / "unavailable.py"],
                                                                          entry_points=False))}
    assert not infos["missing.in_prepare"].available
    assert "no_such_library_for_threadprobe" in infos["missing.in_prepare"].reason
    assert infos["missing.label_only"].available and infos["missing.label_only"].dependency == "canary"


def test_plugin_refs_load_in_a_fresh_process():
    (info,) = registry.discover([PLUGINS / "trivial.py"], entry_points=False)
    code = f"from threadprobe.probe import registry; print(registry.load({info.ref!r})().task(None, 7))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    assert out.strip() == "49"


@pytest.mark.parametrize(
    "plugin, message",
    [(PLUGINS / "does_not_exist.py", "plugin file not found"), (PLUGINS / "no_probes.py", "defines no probe")],
)
def test_bad_plugins_are_usage_errors(plugin, message):
    with pytest.raises(UsageError, match=message):
        registry.discover([plugin], entry_points=False)


def test_a_glob_that_matches_nothing_is_a_usage_error():
    infos = registry.discover([PLUGINS / "trivial.py"], entry_points=False)
    assert [p.name for p in registry.select(infos, ["trivial.*"])] == ["trivial.square"]
    with pytest.raises(UsageError, match="matches no probe"):
        registry.select(infos, ["nothing.*"])


def test_two_probes_with_one_name_are_refused(tmp_path):
    clone = tmp_path / "clone.py"
    clone.write_text((PLUGINS / "trivial.py").read_text())
    with pytest.raises(UsageError, match="two probes are named"):
        registry.discover([PLUGINS / "trivial.py", clone], entry_points=False)
