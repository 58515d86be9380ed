"""Small wind data sets, made once per session."""

import pytest

from toolkit.runner.data import DataSpec, make_data


@pytest.fixture(scope="session")
def wind_nc(tmp_path_factory):
    out = tmp_path_factory.mktemp("wind_nc")
    make_data(DataSpec(out, files=3, size_mb=1.0, fmt="nc", ny=45, nx=60), quiet=True)
    return out


@pytest.fixture(scope="session")
def wind_pp(tmp_path_factory):
    out = tmp_path_factory.mktemp("wind_pp")
    make_data(DataSpec(out, files=3, size_mb=1.0, fmt="pp", ny=45, nx=60), quiet=True)
    return out
