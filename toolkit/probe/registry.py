"""Finding probes: the ``threadprobe.probes`` entry points and ``--plugin FILE.py``.

Discovery imports probe modules, never the libraries they test (probes import those in
``prepare`` and ``open``). Whether a probe is available is a question for the interpreter that
will run it: ``diagnose`` finds out from a ``ModuleNotFoundError`` in ``prepare`` or ``open``,
and ``harness.available`` asks a child of that interpreter to import each probe's ``preload`` modules.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import inspect
import pathlib
import types
from collections.abc import Iterable, Sequence

from threadprobe.records.errors import UsageError
from threadprobe.probe import Probe
from threadprobe.records import ProbeInfo
from threadprobe.probe.refs import load, load_plugin

ENTRY_POINT_GROUP = "threadprobe.probes"
__all__ = ["discover", "select", "load", "load_plugin", "probe_classes"]


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


def info(cls: type[Probe], ref: str) -> ProbeInfo:
    doc = inspect.getdoc(cls) or ""
    return ProbeInfo(name=cls.name, dependency=cls.dependency or "?", ref=ref, doc=doc.splitlines()[0] if doc else "",
                     preload=tuple(cls.preload), requires=tuple(cls.requires or cls.preload),
                     timing_input=cls.timing_input)


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
