"""The wind workload on a real single-node SLURM cluster (started by .ci/slurm-up).

dask-jobqueue's SLURMCluster is configured the way its users configure it: a dask config file
(jobqueue.slurm.*), found through DASK_CONFIG. The result must equal the synchronous one.
"""

import shutil
import subprocess
import sys

import netCDF4
import numpy as np
import pytest

pytestmark = pytest.mark.slurm


def slurm_is_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return done.returncode == 0 and any(s in done.stdout for s in ("idle", "mixed"))


CONFIG = """jobqueue:
  slurm:
    cores: 1
    memory: 2GB
    processes: 1
    walltime: "00:20:00"
    local-directory: {tmp}
    log-directory: {tmp}/slurm-logs
    death-timeout: 60
"""


def test_wind_on_slurm_equals_synchronous(wind_nc, tmp_path):
    if not slurm_is_up():
        pytest.skip("no SLURM cluster here: run .ci/slurm-up as root (CI does)")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jobqueue.yaml").write_text(CONFIG.format(tmp=tmp_path))
    args = ["--x-wind", str(wind_nc / "x_wind_*.nc"), "--y-wind", str(wind_nc / "y_wind_*.nc"), "--quiet"]
    cli = [sys.executable, "-m", "threadprobe.cli", "run", "wind"]
    env = {**__import__("os").environ, "DASK_CONFIG": str(tmp_path / "config")}
    sync = subprocess.run(cli + args + ["--out-file", str(tmp_path / "sync.nc"), "--scheduler", "synchronous"],
                          capture_output=True, text=True, timeout=600)
    assert sync.returncode == 0, sync.stderr
    slurm = subprocess.run(cli + args + ["--out-file", str(tmp_path / "slurm.nc"), "--scheduler", "distributed",
                                         "--cluster", "slurm", "--workers", "2"],
                           capture_output=True, text=True, timeout=900, env=env)
    assert slurm.returncode == 0, slurm.stderr
    assert "SLURM via dask-jobqueue" in slurm.stdout
    with netCDF4.Dataset(tmp_path / "sync.nc") as a, netCDF4.Dataset(tmp_path / "slurm.nc") as b:
        for name in ("wind_speed_variance", "wind_from_direction_circular_variance"):
            assert np.allclose(a.variables[name][:], b.variables[name][:], rtol=1e-6)
    queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=30).stdout
    assert not queue.strip(), f"SLURM jobs left behind: {queue}"
