"""Which builds were actually diagnosed: packages, native libraries mapped, HDF5 copies.

A diagnosis is only as good as its match with the libraries a run will load, so this records
what a fresh interpreter really maps after importing each dependency (``/proc/self/maps``),
not what the package metadata claims: PyPI's netCDF4 and h5py wheels each bundle their own
libhdf5, and both end up in one process. For every native library: path, soname, the version
the library reports where it has a function for it, size, mtime and sha256; for every HDF5
copy, whether it was built thread-safe (``H5is_library_threadsafe``).

The collection runs in a child (``python -m toolkit.fingerprint``) so that the parent's own
imports do not pollute it. ``matches`` is the fast check ``recommend`` uses before trusting a
stored diagnosis: package versions plus each library's size and mtime, hashing only on doubt.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from toolkit.records import FINGERPRINT_SCHEMA

#: Imported in this order; each library is attributed to the first import that mapped it.
DEPENDENCIES = ("numpy", "netCDF4", "h5py", "cftime", "cf_units", "dask", "iris", "iris.fileformats.netcdf")
PACKAGES = (
    "threadprobe", "scitools-iris", "numpy", "dask", "distributed", "netCDF4", "h5py", "cf-units",
    "cftime", "xxhash", "iris-sample-data", "mo_pack", "gilknocker", "py-spy", "scipy",
)
NATIVE = re.compile(r"\.so(\.|$)")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def mapped_libraries() -> list[str]:
    """Paths of the shared libraries mapped into this process."""
    paths = set()
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/") and NATIVE.search(parts[5]):
                    paths.add(parts[5].strip())
    except OSError:
        pass
    return sorted(paths)


def soname(path: str) -> str | None:
    try:
        from elftools.elf.dynamic import DynamicSection
        from elftools.elf.elffile import ELFFile

        with open(path, "rb") as fh:
            for section in ELFFile(fh).iter_sections():
                if isinstance(section, DynamicSection):
                    for tag in section.iter_tags():
                        if tag.entry.d_tag == "DT_SONAME":
                            return str(tag.soname)
    except Exception:
        return None
    return None


def family(path: str) -> str:
    """The library's family, without bundling hashes or version suffixes: libhdf5, libnetcdf..."""
    name = os.path.basename(path).split(".so")[0]
    return re.sub(r"-[0-9a-f]{8}$", "", name)


def reported_version(path: str, fam: str) -> str | None:
    """The version the library reports about itself, for the families that can say."""
    try:
        lib = ctypes.CDLL(path)  # already mapped: this returns the same copy, it loads nothing new
        if fam == "libhdf5":
            maj, mnr, rel = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
            lib.H5get_libversion(ctypes.byref(maj), ctypes.byref(mnr), ctypes.byref(rel))
            return f"{maj.value}.{mnr.value}.{rel.value}"
        if fam == "libnetcdf":
            lib.nc_inq_libvers.restype = ctypes.c_char_p
            return lib.nc_inq_libvers().decode().split()[0]
        if fam == "libz":
            lib.zlibVersion.restype = ctypes.c_char_p
            return lib.zlibVersion().decode()
        if fam == "libcurl":
            lib.curl_version.restype = ctypes.c_char_p
            return lib.curl_version().decode().split()[0]
    except (OSError, AttributeError):
        return None
    return None


def hdf5_threadsafe(path: str) -> bool | None:
    try:
        flag = ctypes.c_bool()
        if ctypes.CDLL(path).H5is_library_threadsafe(ctypes.byref(flag)) < 0:
            return None
        return bool(flag.value)
    except (OSError, AttributeError):
        return None


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def python_build() -> dict[str, Any]:
    gil = getattr(sys, "_is_gil_enabled", None)
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "gil_enabled": bool(gil()) if gil else True,
        "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    }


def collect_here(dependencies: tuple[str, ...] = DEPENDENCIES) -> dict[str, Any]:
    """Import each dependency in turn in *this* process and describe what got mapped."""
    first_seen: dict[str, str] = {p: "python" for p in mapped_libraries()}
    imports: dict[str, str | None] = {}
    for module in dependencies:
        try:
            importlib.import_module(module)
            imports[module] = None
        except Exception as exc:
            imports[module] = f"{type(exc).__name__}: {exc}"
        for path in mapped_libraries():
            first_seen.setdefault(path, module)
    libraries = []
    for path, by in sorted(first_seen.items()):
        if by == "python" and "site-packages" not in path:
            continue  # the interpreter's own and the system's C runtime: not what is diagnosed
        fam = family(path)
        stat = os.stat(path)
        entry: dict[str, Any] = {
            "path": path,
            "soname": soname(path),
            "family": fam,
            "version": reported_version(path, fam),
            "loaded_by": by,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": sha256(path),
        }
        if fam == "libhdf5":
            entry["threadsafe"] = hdf5_threadsafe(path)
        libraries.append(entry)
    hdf5 = [lib for lib in libraries if lib["family"] == "libhdf5"]
    netcdf = [lib for lib in libraries if lib["family"] == "libnetcdf"]
    return {
        "schema": FINGERPRINT_SCHEMA,
        "python": python_build(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "imports": imports,
        "libraries": libraries,
        "hdf5_copies": len({lib["sha256"] for lib in hdf5}) if hdf5 else 0,
        "netcdf_copies": len({lib["sha256"] for lib in netcdf}) if netcdf else 0,
        "hdf5": [
            {"path": lib["path"], "version": lib["version"], "threadsafe": lib.get("threadsafe"),
             "loaded_by": lib["loaded_by"]}
            for lib in hdf5
        ],
    }


def light() -> dict[str, Any]:
    """The minimum a report needs (python, platform, packages), without a child or any hashing."""
    return {
        "schema": FINGERPRINT_SCHEMA, "python": python_build(), "platform": platform.platform(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "packages": package_versions(),
        "libraries": [], "hdf5_copies": 0, "netcdf_copies": 0, "light": True,
    }


def collect(timeout: float = 120.0) -> dict[str, Any]:
    """The fingerprint of a fresh interpreter (never this one, whose imports would pollute it)."""
    from toolkit.isolation import child_env

    done = subprocess.run(
        [sys.executable, "-m", "toolkit.fingerprint"], capture_output=True, text=True, timeout=timeout,
        env=child_env(),
    )
    if done.returncode != 0:
        return {
            "schema": FINGERPRINT_SCHEMA, "python": python_build(), "platform": platform.platform(),
            "packages": package_versions(), "libraries": [], "hdf5_copies": 0, "netcdf_copies": 0,
            "error": (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1],
        }
    return json.loads(done.stdout)


def matches(stored: dict[str, Any]) -> tuple[bool, list[str]]:
    """Is the stored fingerprint still what would be loaded now? Fast: no imports of the libraries."""
    why: list[str] = []
    now = package_versions()
    for name, version in (stored.get("packages") or {}).items():
        if name in now and now[name] != version:
            why.append(f"{name} {version} -> {now[name]}")
    for lib in stored.get("libraries") or []:
        path = Path(lib["path"])
        try:
            stat = path.stat()
        except OSError:
            why.append(f"{path} is gone")
            continue
        if (stat.st_size, stat.st_mtime_ns) != (lib.get("size"), lib.get("mtime_ns")) and sha256(str(path)) != lib.get(
            "sha256"
        ):
            why.append(f"{path} changed")
    if (stored.get("python") or {}).get("version") != platform.python_version():
        why.append(f"python {(stored.get('python') or {}).get('version')} -> {platform.python_version()}")
    return not why, why


if __name__ == "__main__":
    json.dump(collect_here(), sys.stdout, indent=1)
