#!/usr/bin/env python3
"""Independent stress scripts: the ground truth the diagnosis is checked against.

No threadprobe code here: plain threads (or processes), plain files, plain comparisons with a
serial run. Usage: stress.py CASE MODE [ROUNDS]; MODE is threads or processes.
Exit status: 0 = every result matched serial; 1 = a mismatch or an exception; killed by a signal
(negative status) = the library crashed the process.
"""

import multiprocessing
import os
import sys
import tempfile
import threading
import warnings

import numpy as np

warnings.simplefilter("ignore")
WORKERS = 4


def netcdf_file(path, seed):
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        for name, n in (("t", 24), ("y", 64), ("x", 64)):
            ds.createDimension(name, n)
        v = ds.createVariable("v", "f4", ("t", "y", "x"), zlib=True, chunksizes=(1, 64, 64))
        v[:] = np.random.default_rng(seed).random((24, 64, 64), dtype=np.float32)


def setup_netcdf_shared(d):
    netcdf_file(f"{d}/a.nc", 0)
    import netCDF4

    ds = netCDF4.Dataset(f"{d}/a.nc")
    return lambda i: np.array(ds.variables["v"][i % 24])


def setup_netcdf_per_thread(d):
    netcdf_file(f"{d}/a.nc", 0)
    import netCDF4

    local = threading.local()

    def read(i):
        if not hasattr(local, "ds"):
            local.ds = netCDF4.Dataset(f"{d}/a.nc")
        return np.array(local.ds.variables["v"][i % 24])
    return read


def setup_h5py_shared(d):
    import h5py

    with h5py.File(f"{d}/a.h5", "w") as fh:
        fh.create_dataset("v", data=np.random.default_rng(0).random((24, 64, 64)), chunks=(1, 64, 64),
                          compression="gzip")
    fh = h5py.File(f"{d}/a.h5", "r")
    return lambda i: fh["v"][i % 24]


def setup_cfunits_mixed(d):
    import cf_units

    strings = ["m s-1", "not_a_unit", "K", "@@", "hPa", "days since", "W m-2", "s-1-1"]

    def parse(i):
        cf_units.Unit("m")  # the same previous call every time: the message depends on it
        try:
            return str(cf_units.Unit(strings[i % len(strings)]))
        except ValueError as exc:
            return str(exc)
    return parse


def setup_cftime(d):
    import cftime

    cals = ["standard", "noleap", "360_day", "julian"]
    return lambda i: [x.isoformat() for x in cftime.num2date(np.arange(200.0) + i, "days since 1900-01-01",
                                                              calendar=cals[i % 4])]


def iris_files(d):
    import iris
    from iris.coords import DimCoord
    from iris.cube import Cube

    for k in range(4):
        t = DimCoord(np.arange(8.0) + k, standard_name="time", units="hours since 1970-01-01")
        y = DimCoord(np.linspace(-80, 80, 40), standard_name="latitude", units="degrees")
        x = DimCoord(np.linspace(0, 350, 60), standard_name="longitude", units="degrees")
        cube = Cube(np.random.default_rng(k).random((8, 40, 60), dtype=np.float32), standard_name="x_wind",
                    units="m s-1", dim_coords_and_dims=[(t, 0), (y, 1), (x, 2)])
        iris.save(cube, f"{d}/w{k}.nc", zlib=True, chunksizes=(1, 40, 60))
        iris.save(cube, f"{d}/w{k}.pp")


def setup_iris_load(d):
    import iris

    iris_files(d)
    return lambda i: iris.load_cube(f"{d}/w{i % 4}.nc").data


def setup_iris_lazy(d):
    import iris

    iris_files(d)
    lazy = iris.load_cube(f"{d}/w0.nc").core_data()
    return lambda i: lazy[i % 8].compute(scheduler="synchronous")


def setup_iris_pp(d):
    import iris

    iris_files(d)
    return lambda i: iris.load_cube(f"{d}/w{i % 4}.pp").data


CASES = {name[len("setup_"):]: fn for name, fn in globals().items() if name.startswith("setup_")}


def run_threads(fn, n, oracle):
    bad = []
    barrier = threading.Barrier(WORKERS)

    def body(t):
        barrier.wait()
        for i in range(t, n, WORKERS):
            if not np.array_equal(np.asarray(fn(i), dtype=object), np.asarray(oracle[i], dtype=object)):
                bad.append(i)

    sys.setswitchinterval(1e-6)
    threads = [threading.Thread(target=body, args=(t,)) for t in range(WORKERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return bad


def main():
    case, mode = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with tempfile.TemporaryDirectory() as d:
        fn = CASES[case](d)
        n = 128
        oracle = [fn(i) for i in range(n)]
        for _ in range(rounds):
            if mode == "threads":
                bad = run_threads(fn, n, oracle)
            else:
                ctx = multiprocessing.get_context("spawn")
                with ctx.Pool(2, initializer=_init, initargs=(case, d)) as pool:
                    got = pool.map(_call, range(n))
                bad = [i for i in range(n) if not np.array_equal(np.asarray(got[i], dtype=object),
                                                                 np.asarray(oracle[i], dtype=object))]
            if bad:
                print(f"{case} {mode}: {len(bad)} results differ from serial", flush=True)
                sys.exit(1)
    print(f"{case} {mode}: no failure", flush=True)


_fn = None


def _init(case, d):
    """Each pool process writes its own copy of the (deterministic) inputs, then keeps its reader."""
    global _fn
    warnings.simplefilter("ignore")
    mine = os.path.join(d, f"p{os.getpid()}")
    os.makedirs(mine)
    _fn = CASES[case](mine)


def _call(i):
    return _fn(i)


if __name__ == "__main__":
    main()
