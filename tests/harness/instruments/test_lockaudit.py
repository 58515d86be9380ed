"""The lock audit counts exactly the netCDF4 calls made without Iris's lock held."""

import subprocess
import sys
import textwrap

import pytest

from threadprobe.harness.instruments import lockaudit


def test_owned_lock_knows_its_owner():
    lock = lockaudit.OwnedLock()
    assert not lock.held()
    with lock:
        assert lock.held() and lock.locked()
    assert not lock.held()


AUDIT_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    warnings.simplefilter("ignore")
    import netCDF4, numpy as np
    path = sys.argv[1]
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 4)
        ds.createVariable("v", "f4", ("x",))[:] = np.arange(4)
    from iris.fileformats.netcdf import _thread_safe_nc as tsn
    from threadprobe.harness.instruments import lockaudit
    assert lockaudit.install()
    lockaudit.stage("tasks")
    ds = tsn.DatasetWrapper(path)
    var = ds.variables["v"]
    locked_read = var[:]                    # through the wrapper: under the lock
    names = var.ncattrs()                   # the bound method is called after the lock is released
    with tsn._GLOBAL_NETCDF4_LOCK:         # planted: closed with the lock held (through the
        ds._contained_instance.close()      # contained object: the wrapper would take the lock again)
    print(json.dumps(lockaudit.snapshot()["tasks"].to_json()))
""")


def test_an_unlocked_call_is_counted_with_its_caller(tmp_path):
    pytest.importorskip("iris")
    script = tmp_path / "audit_me.py"
    script.write_text(AUDIT_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "a.nc")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    import json

    tasks = json.loads(done.stdout.strip().splitlines()[-1])
    unlocked = {(row["operation"], row["caller"].split(":")[0].rsplit("/", 1)[-1]) for row in tasks["unlocked_by_caller"]}
    assert ("Variable.ncattrs()", "audit_me.py") in unlocked
    assert not any(op == "Dataset.close()" for op, _ in unlocked)  # that one held the lock
    assert not any(op == "Variable[]" for op, _ in unlocked)
    assert tasks["calls"] > tasks["unlocked"] >= 1
