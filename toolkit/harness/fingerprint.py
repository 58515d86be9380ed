"""Which builds were actually diagnosed: the interpreter, its packages, the native libraries mapped.

A diagnosis is only as good as its match with the libraries a run will load, so this records
what a fresh interpreter really maps after importing each dependency (``/proc/self/maps``),
not what package metadata claims. Libraries are recognised by what they *export*, not by their
file names: a library that defines ``H5get_libversion`` is an HDF5, whether it is the system's
``libhdf5_serial.so.103``, a wheel's ``libhdf5-2c1f3d08.so.310`` or a conda build (``dladdr``
says which file a symbol lives in, so a library that merely links HDF5 is not counted). Each
copy reports its own version, and HDF5 whether it was built thread-safe
(``H5is_library_threadsafe``). Packages are found by import name, whatever their distribution
is called (Debian registers h5py under another).

``collect_here`` runs in a child of the interpreter being diagnosed (``python -m
threadprobe.harness.fingerprint``, standard library only, so any Python can run it); ``collect`` starts that
child and adds what needs this installation (sonames, read with pyelftools). ``matches`` is the
fast check ``recommend`` uses before trusting a stored diagnosis.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadprobe.harness import gil
from threadprobe.harness.proc import child_env, interpreter_of

if TYPE_CHECKING:
    from threadprobe.records import Fingerprint

SCHEMA = "threadprobe.fingerprint/2"
#: Imported in this order; each library is attributed to the first import that mapped it.
DEPENDENCIES = ("numpy", "netCDF4", "h5py", "cftime", "cf_units", "dask", "iris", "iris.fileformats.netcdf")
#: Import names whose versions matter, found whatever distribution provides them.
PACKAGES = ("numpy", "netCDF4", "h5py", "cftime", "cf_units", "dask", "distributed", "iris", "xarray", "xxhash",
            "mo_pack", "iris_sample_data", "scipy")
#: A family is the set of libraries that define this symbol: the library's own identity.
FAMILIES = {
    "libhdf5": "H5get_libversion",
    "libnetcdf": "nc_inq_libvers",
    "libudunits2": "ut_get_status",
    "libz": "zlibVersion",
    "libcurl": "curl_version",
    "libopenblas": "openblas_get_config",
}
NATIVE = re.compile(r"\.so(\.|$)")
RTLD_NOLOAD = getattr(os, "RTLD_NOLOAD", 4)


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


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


def _handle(path: str) -> ctypes.CDLL | None:
    try:  # RTLD_NOLOAD: a library already mapped, never a new one
        return ctypes.CDLL(path, mode=RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return None


def defines(path: str, symbol: str) -> bool:
    """Does the library at ``path`` itself define ``symbol`` (not one of its dependencies)?"""
    lib = _handle(path)
    if lib is None:
        return False
    try:
        function = getattr(lib, symbol)
    except AttributeError:
        return False
    info = _DlInfo()
    try:
        dladdr = ctypes.CDLL(None).dladdr
    except (OSError, AttributeError):
        return True  # cannot tell: trust the lookup
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    if not dladdr(ctypes.cast(function, ctypes.c_void_p), ctypes.byref(info)) or not info.dli_fname:
        return False
    return bool(os.path.realpath(info.dli_fname.decode()) == os.path.realpath(path))


def family(path: str) -> str:
    """The family a library belongs to: by the symbols it defines, else by its file name."""
    for name, symbol in FAMILIES.items():
        if defines(path, symbol):
            return name
    name = os.path.basename(path).split(".so")[0]
    return re.sub(r"-[0-9a-f]{8}$", "", name)


def reported_version(path: str, fam: str) -> str | None:
    """The version the library reports about itself, for the families that can say."""
    lib = _handle(path)
    if lib is None:
        return None
    try:
        if fam == "libhdf5":
            maj, mnr, rel = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
            lib.H5get_libversion(ctypes.byref(maj), ctypes.byref(mnr), ctypes.byref(rel))
            return f"{maj.value}.{mnr.value}.{rel.value}"
        if fam == "libnetcdf":
            lib.nc_inq_libvers.restype = ctypes.c_char_p
            return str(lib.nc_inq_libvers().decode().split()[0])
        if fam == "libz":
            lib.zlibVersion.restype = ctypes.c_char_p
            return str(lib.zlibVersion().decode())
        if fam == "libcurl":
            lib.curl_version.restype = ctypes.c_char_p
            return str(lib.curl_version().decode().split()[0].split("/")[-1])
        if fam == "libopenblas":
            lib.openblas_get_config.restype = ctypes.c_char_p
            return str(lib.openblas_get_config().decode().split()[1])
    except (OSError, AttributeError, IndexError, UnicodeDecodeError):
        return None
    return None


def hdf5_threadsafe(path: str) -> bool | None:
    lib = _handle(path)
    try:
        flag = ctypes.c_bool()
        if lib is None or lib.H5is_library_threadsafe(ctypes.byref(flag)) < 0:
            return None
        return bool(flag.value)
    except AttributeError:
        return None


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def python_build() -> dict[str, Any]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "compiler": platform.python_compiler(),
        "build": " ".join(platform.python_build()),
        "gil_enabled": gil.enabled(),
        "free_threaded_build": gil.free_threaded_build(),
    }


def package_versions() -> dict[str, dict[str, str | None] | None]:
    """Per import name: its version and the distribution that provides it (None: not importable)."""
    from importlib import metadata
    from importlib.util import find_spec

    try:
        providers = metadata.packages_distributions()
        # By the name each distribution declares: looking a name up again normalises it, which
        # misses names such as Debian's "h5py.-debian-h5py-serial".
        versions: dict[str, str] = {}
        for found in metadata.distributions():
            versions.setdefault(found.metadata["Name"], found.version)
    except Exception:
        providers, versions = {}, {}
    out: dict[str, dict[str, str | None] | None] = {}
    for name in PACKAGES:
        try:
            if find_spec(name) is None:
                out[name] = None
                continue
        except (ImportError, ValueError):
            out[name] = None
            continue
        version: str | None = None
        dist: str | None = None
        for candidate in providers.get(name, []):
            if candidate in versions:
                version, dist = versions[candidate], candidate
                break
        if version is None and name in sys.modules:
            version = getattr(sys.modules[name], "__version__", None)
        out[name] = {"version": str(version) if version is not None else None, "distribution": dist}
    return out


def summarise(libraries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per family of interest: its copies (distinct files by content), their versions and flags."""
    out: dict[str, Any] = {}
    for fam in FAMILIES:
        copies = [lib for lib in libraries if lib["family"] == fam]
        if not copies:
            continue
        out[fam] = {
            "copies": len({lib["sha256"] for lib in copies}),
            "versions": sorted({lib.get("version") or "?" for lib in copies}),
            "threadsafe": sorted({str(lib.get("threadsafe")) for lib in copies}) if fam == "libhdf5" else None,
            "paths": [lib["path"] for lib in copies],
        }
    return out


def collect_here(dependencies: tuple[str, ...] = DEPENDENCIES) -> Fingerprint:
    """Import each dependency in turn in *this* process and describe what got mapped."""
    first_seen: dict[str, str] = {p: "python" for p in mapped_libraries()}
    imports: dict[str, str | None] = {}
    reenabled: list[str] = []
    for module in dependencies:
        try:
            with gil.watching() as turned_on:
                importlib.import_module(module)
            imports[module] = None
        except Exception as exc:
            imports[module] = f"{type(exc).__name__}: {exc}"
        reenabled += turned_on
        for path in mapped_libraries():
            first_seen.setdefault(path, module)
    libraries = []
    for path, by in sorted(first_seen.items()):
        fam = family(path)
        if by == "python" and fam not in FAMILIES and "-packages" not in path:
            continue  # the interpreter's own and the C runtime: not what is diagnosed
        stat = os.stat(path)
        entry: dict[str, Any] = {"path": path, "family": fam, "version": reported_version(path, fam),
                                 "loaded_by": by, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                 "sha256": sha256(path)}
        if fam == "libhdf5":
            entry["threadsafe"] = hdf5_threadsafe(path)
        libraries.append(entry)
    families = summarise(libraries)
    alone = gil.each_alone(dependencies) if gil.free_threaded_build() else {}
    every = list(dict.fromkeys(reenabled + [m for named in alone.values() for m in named]))
    return {
        "schema": SCHEMA,
        # gil_reenabled_by: every module that turns the GIL on, each dependency imported alone (in
        # one process only the first one says so); by_import: which dependency brings which.
        "python": {**python_build(), "gil_reenabled_by": every,
                   "gil_reenabled_by_import": {m: named for m, named in alone.items() if named}},
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        "imports": imports,
        "libraries": libraries,
        "families": families,
        "hdf5_copies": (families.get("libhdf5") or {}).get("copies", 0),
        "netcdf_copies": (families.get("libnetcdf") or {}).get("copies", 0),
        "hdf5": [{"path": lib["path"], "version": lib["version"], "threadsafe": lib.get("threadsafe"),
                  "loaded_by": lib["loaded_by"]} for lib in libraries if lib["family"] == "libhdf5"],
    }


def soname(path: str) -> str | None:
    """The library's DT_SONAME, from its dynamic segment: a library has a dozen segments against
    thirty-odd sections, and walking the segments halves the time over a stack's 200 objects."""
    try:
        from elftools.elf.dynamic import DynamicSegment
        from elftools.elf.elffile import ELFFile

        with open(path, "rb") as fh:
            for segment in ELFFile(fh).iter_segments():
                if isinstance(segment, DynamicSegment):
                    for tag in segment.iter_tags():
                        if tag.entry.d_tag == "DT_SONAME":
                            return str(tag.soname)  # type: ignore[attr-defined]  # pyelftools sets it at parse time
    except Exception:
        return None
    return None


def light(python: str | None = None) -> Fingerprint:
    """The minimum a report needs (python, platform, packages), without a child or any hashing."""
    return {
        "schema": SCHEMA, "python": python_build(), "platform": platform.platform(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "packages": package_versions(), "libraries": [], "families": {},
        "hdf5_copies": 0, "netcdf_copies": 0, "light": True,
    }


def collect(python: str | None = None, timeout: float = 180.0) -> Fingerprint:
    """The fingerprint of a fresh interpreter (``python``, else this one's executable; never this
    process, whose imports would pollute it)."""
    executable, foreign = interpreter_of(python)
    done = subprocess.run([executable, "-m", "threadprobe.harness.fingerprint"], capture_output=True, text=True,
                          timeout=timeout, env=child_env(foreign=foreign))
    if done.returncode != 0:
        found = light()
        found["python"]["executable"] = executable
        found["error"] = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return found
    found = dict(json.loads(done.stdout))
    for lib in found.get("libraries", []):
        lib["soname"] = soname(lib["path"])
    return found


def _versions_now(stored: dict[str, Any]) -> dict[str, dict[str, str | None] | None]:
    """``package_versions`` for the stored packages, looked up by the distribution each came from:
    a few file lookups, where listing every installed distribution takes a quarter of a second,
    which a run of ``auto`` pays before its first task. Any package the shortcut cannot settle (no
    distribution stored, or one gone or renamed) sends the whole to ``package_versions``."""
    from importlib import metadata
    from importlib.util import find_spec

    out: dict[str, dict[str, str | None] | None] = {}
    for name in PACKAGES:
        was = stored.get(name)
        dist = was.get("distribution") if isinstance(was, dict) else None
        try:
            missing = find_spec(name) is None
            if missing and was is None:  # missing then, missing now
                out[name] = None
                continue
            if missing or not dist:
                return package_versions()
            found = metadata.distribution(dist)
        except (ImportError, ValueError, metadata.PackageNotFoundError):
            return package_versions()
        if found.metadata["Name"] != dist:  # another distribution answered to the name
            return package_versions()
        out[name] = {"version": found.version, "distribution": dist}
    return out


def matches(stored: Fingerprint) -> tuple[bool, list[str]]:
    """Is the stored fingerprint still what this interpreter would load? Fast: no imports."""
    why: list[str] = []
    now = _versions_now(stored.get("packages") or {})
    for name, was in (stored.get("packages") or {}).items():
        if name not in now:
            continue
        old = was.get("version") if isinstance(was, dict) else was
        new = (now[name] or {}).get("version") if now[name] else None
        if old != new:
            why.append(f"{name} {old} -> {new}")
    for lib in stored.get("libraries") or []:
        path = Path(lib["path"])
        try:
            stat = path.stat()
        except OSError:
            why.append(f"{path} is gone")
            continue
        if (stat.st_size, stat.st_mtime_ns) != (lib.get("size"), lib.get("mtime_ns")) and sha256(str(path)) != lib.get(
                "sha256"):
            why.append(f"{path} changed")
    python = (stored.get("python") or {})
    if python.get("version") != platform.python_version():
        why.append(f"python {python.get('version')} -> {platform.python_version()}")
    return not why, why


if __name__ == "__main__":
    json.dump(collect_here(), sys.stdout, indent=1)
