"""Finding probes: the ``threadprobe.probes`` entry points and ``--plugin FILE.py``.

Discovery never imports a probe's library; a probe whose library is missing is listed as
unavailable, the way xarray lists backends. A probe is addressed by a ``ref`` string that a
fresh child process can load on its own: ``package.module:Class`` or ``/abs/file.py:Class``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import pathlib
import sys
import types
from collections.abc import Iterable, Sequence

from toolkit.errors import UsageError
from toolkit.probe import Probe
from toolkit.records import ProbeInfo

ENTRY_POINT_GROUP = "threadprobe.probes"


def probe_classes(obj: object) -> list[type[Probe]]:
    """The probe classes an entry point or plugin provides: a class, or those a module defines."""
    if isinstance(obj, type):
        return [obj] if issubclass(obj, Probe) and obj.name else []
    if isinstance(obj, types.ModuleType):
        found = [
            cls
            for _, cls in inspect.getmembers(obj, inspect.isclass)
            if issubclass(cls, Probe) and cls.name and cls.__module__ == obj.__name__
        ]
        return sorted(found, key=lambda c: c.name)
    return []


def load_plugin(path: str | pathlib.Path) -> types.ModuleType:
    """Import a plugin file under a name derived from its absolute path (stable across processes)."""
    path = pathlib.Path(path).resolve()
    if not path.is_file():
        raise UsageError(f"plugin file not found: {path}")
    tag = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    modname = f"threadprobe_plugin_{path.stem}_{tag}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import plugin {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[modname]
        raise UsageError(f"plugin {path} failed to import: {type(exc).__name__}: {exc}") from None
    return module


#: Probes held in memory, for workers forked straight from this process (ref "inline:KEY").
INLINE: dict[str, type[Probe]] = {}


def load(ref: str) -> type[Probe]:
    """Load the probe class a ref names (in a child process, or anywhere)."""
    if ref.startswith("inline:"):
        return INLINE[ref[len("inline:"):]]
    if ref.startswith("call:"):  # call:module:qualname@inputs.pickle, a function over pickled inputs
        import pickle

        from toolkit.probe import function_probe

        target, _, inputs_path = ref[len("call:"):].partition("@")
        module_name, _, qualname = target.rpartition(":")
        fn: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            fn = getattr(fn, part)
        with open(inputs_path, "rb") as fh:
            return function_probe(fn, pickle.load(fh))
    where, _, qualname = ref.rpartition(":")
    module = load_plugin(where) if where.endswith(".py") else importlib.import_module(where)
    obj: object = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    assert isinstance(obj, type) and issubclass(obj, Probe), ref
    return obj


def load_module_file(name: str) -> str:
    """The source file of a module, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        raise ImportError(f"no source for module {name}")
    return spec.origin


def call_ref(fn: object, inputs: list[object], path: pathlib.Path) -> str:
    """A ref a fresh interpreter can load: an importable function, its inputs pickled to ``path``."""
    import pickle

    with open(path, "wb") as fh:
        pickle.dump(inputs, fh)
    return f"call:{fn.__module__}:{fn.__qualname__}@{path}"  # type: ignore[attr-defined]


def info(cls: type[Probe], ref: str) -> ProbeInfo:
    missing = cls.missing()
    doc = inspect.getdoc(cls) or ""
    return ProbeInfo(
        name=cls.name,
        dependency=cls.dependency,
        ref=ref,
        available=missing is None,
        reason=None if missing is None else f"module {missing!r} is not installed"
        + (f": {cls.unavailable_hint}" if cls.unavailable_hint else ""),
        doc=doc.splitlines()[0] if doc else "",
    )


def discover(plugins: Sequence[str | pathlib.Path] = (), entry_points: bool = True) -> list[ProbeInfo]:
    """Every probe from the entry points (unless disabled) and the plugin files, sorted by name."""
    found: dict[str, ProbeInfo] = {}

    def add(item: ProbeInfo) -> None:
        if item.name in found and found[item.name].ref != item.ref:
            raise UsageError(f"two probes are named {item.name!r}: {found[item.name].ref} and {item.ref}")
        found[item.name] = item

    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
            except Exception as exc:  # a broken third-party probe must not break discovery
                add(ProbeInfo(ep.name, "?", ep.value, False, f"entry point failed: {type(exc).__name__}: {exc}"))
                continue
            for cls in probe_classes(obj):
                add(info(cls, f"{cls.__module__}:{cls.__qualname__}"))
    for plugin in plugins:
        path = pathlib.Path(plugin).resolve()
        classes = probe_classes(load_plugin(path))
        if not classes:
            raise UsageError(f"plugin {path} defines no probe (a subclass of toolkit.Probe with a name)")
        for cls in classes:
            add(info(cls, f"{path}:{cls.__qualname__}"))
    return [found[name] for name in sorted(found)]


def select(infos: Iterable[ProbeInfo], globs: Sequence[str]) -> list[ProbeInfo]:
    """The probes matching any glob (all when none is given); a glob matching nothing is an error."""
    infos = list(infos)
    if not globs:
        return infos
    chosen: dict[str, ProbeInfo] = {}
    for glob in globs:
        hits = [p for p in infos if fnmatch.fnmatchcase(p.name, glob)]
        if not hits:
            raise UsageError(f"--probe {glob!r} matches no probe (see `threadprobe list`)")
        chosen.update((p.name, p) for p in hits)
    return [chosen[name] for name in sorted(chosen)]
