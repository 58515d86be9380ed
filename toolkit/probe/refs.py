"""Probe references: how a fresh child (of any interpreter) finds the probe class it must run.

A ref is ``package.module:Class``, ``/abs/plugin.py:Class``, ``inline:KEY`` (a class held in
memory, for workers forked straight from this process) or ``call:module:function@inputs.pickle``
(a function over pickled inputs). Standard library only: the worker side imports this.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pathlib
import sys
import types
from typing import Any

from threadprobe.records.errors import UsageError
from threadprobe.probe import Probe, function_probe

#: Probes held in memory, for workers forked straight from this process (ref "inline:KEY").
INLINE: dict[str, type[Probe]] = {}


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


def load(ref: str) -> type[Probe]:
    """The probe class a ref names (in a child process, or anywhere)."""
    if ref.startswith("inline:"):
        return INLINE[ref[len("inline:"):]]
    if ref.startswith("call:"):
        import pickle

        target, _, inputs_path = ref[len("call:"):].partition("@")
        module_name, _, qualname = target.rpartition(":")
        fn: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            fn = getattr(fn, part)
        with open(inputs_path, "rb") as fh:
            return function_probe(fn, pickle.load(fh))
    where, _, qualname = ref.rpartition(":")
    module = load_plugin(where) if where.endswith(".py") else importlib.import_module(where)
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Probe)):
        raise UsageError(f"{ref} is not a probe class")
    return obj


def call_ref(fn: Any, inputs: list[Any], path: pathlib.Path) -> str:
    """A ref a fresh interpreter can load: an importable function, its inputs pickled to ``path``."""
    import pickle

    with open(path, "wb") as fh:
        pickle.dump(inputs, fh)
    return f"call:{fn.__module__}:{fn.__qualname__}@{path}"
