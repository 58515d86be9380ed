"""Probes of h5py and the HDF5 it bundles: gzip reads and writes, same file and separate files.

h5py serializes every call into HDF5 behind one global lock (``phil``), so it should be safe
under threads and should not scale: these probes check both claims.
"""

from __future__ import annotations

from threadprobe.probes._common import LIBRARY_RACE_SECONDS, Layout, create_h5_dataset, out_dir, write_h5
from threadprobe.probe import Probe

NFILES = 8
LAYOUT = Layout(shape=(24, 96, 128), chunks=(1, 96, 128))


class _H5(Probe):
    dependency = "h5py"
    preload = ("numpy", "h5py")
    layout = LAYOUT
    nfiles = 1
    race_seconds = LIBRARY_RACE_SECONDS

    def prepare(self, workdir):
        for k in range(self.nfiles):
            write_h5(workdir / f"in{k}.h5", self.layout, seed=k)


class ReadSharedFile(_H5):
    """Threads read slices of one gzip dataset through one shared h5py.File."""

    name = "h5py.read_shared_file.gzip"

    def open(self, workdir):
        import h5py

        return h5py.File(workdir / "in0.h5", "r")

    def task(self, fh, i):
        return fh["v"][i % self.layout.shape[0]]

    def close(self, fh):
        fh.close()


class ReadSeparateFiles(_H5):
    """Threads open, read and close different gzip files."""

    name = "h5py.read_separate_files.gzip"
    nfiles = NFILES

    def open(self, workdir):
        return workdir

    def task(self, workdir, i):
        import h5py

        with h5py.File(workdir / f"in{i % self.nfiles}.h5", "r") as fh:
            return fh["v"][(i // self.nfiles) % self.layout.shape[0]]


class WriteSeparateFiles(_H5):
    """Each task writes its own gzip file; read back serially."""

    name = "h5py.write_separate_files.gzip"
    iterations = 40
    layout = Layout(shape=(4, 48, 64), chunks=(1, 48, 64))

    def prepare(self, workdir):
        pass

    def open(self, workdir):
        return out_dir(workdir)

    def task(self, out, i):
        return write_h5(out / f"{i}.h5", self.layout, seed=i)

    def readback(self, out, i, path):
        import h5py

        with h5py.File(path, "r") as fh:
            return fh["v"][...]


class WriteSharedFile(_H5):
    """Threads create different gzip datasets in one open file; read back serially."""

    name = "h5py.write_shared_file.gzip"
    iterations = 40
    layout = Layout(shape=(4, 48, 64), chunks=(1, 48, 64))

    def prepare(self, workdir):
        pass

    def open(self, workdir):
        import h5py

        return h5py.File(out_dir(workdir) / "shared.h5", "w")

    def task(self, fh, i):
        create_h5_dataset(fh, self.layout, seed=i, var=f"v{i}")
        return f"v{i}"

    def readback(self, fh, i, var):
        fh.flush()
        return fh[var][...]

    def close(self, fh):
        fh.close()
