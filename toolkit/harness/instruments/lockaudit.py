"""Lock coverage audit: which lines of Iris call into netCDF4 without Iris's own lock held?

Iris routes every netCDF4 access through ``iris.fileformats.netcdf._thread_safe_nc``, which
takes ``_GLOBAL_NETCDF4_LOCK`` around each access to a wrapped object. This audit, installed in
a worker process before the probe runs, checks that claim call by call:

- the lock is replaced by ``OwnedLock``, the same lock that also remembers its owner thread;
- the ``netCDF4`` module Iris sees is replaced by a shim whose ``Dataset`` returns ``Audited``
  proxies; every netCDF4 object reached through a proxy (variables, dimensions, groups, bound
  methods) is proxied too;
- every access through a proxy (attribute, call, item get/set, and the deallocation of a
  Dataset that is still open, which closes it inside the C library) asks: does this thread hold
  the lock? If not, it counts the access under the first caller outside this module, by file:line.

The result turns "crashes sometimes" into "this line calls netCDF4 unlocked". It runs serially:
coverage is a property of each call, so no concurrency is needed to see a gap, and none can
crash the audit before it reports.
"""

from __future__ import annotations

import sys
import threading
import types
from collections import Counter
from typing import Any  # Any: netCDF4's objects as Iris holds them, audited without knowing their types

from threadprobe.records import AuditTally, UnlockedCalls

_HERE = __file__
_calls: Counter[tuple[str, str]] = Counter()  # (stage, operation)
_unlocked: Counter[tuple[str, str, str]] = Counter()  # (stage, operation, caller)
_state: dict[str, Any] = {"lock": None, "stage": "open"}


def stage(name: str) -> None:
    """Attribute what follows to a stage: "open" (once per worker) or "tasks" (what runs concurrently)."""
    _state["stage"] = name


class OwnedLock:
    """A lock that remembers which thread holds it (threading.Lock does not say)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner: int | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            self.owner = threading.get_ident()
        return got

    def release(self) -> None:
        self.owner = None
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def held(self) -> bool:
        return self.owner == threading.get_ident()


def _caller() -> str:
    frame: types.FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename == _HERE:
        frame = frame.f_back
    if frame is None:
        return "?"
    path = frame.f_code.co_filename
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    return f"{path}:{frame.f_lineno} ({frame.f_code.co_name})"


def _record(what: str) -> None:
    where = _state["stage"]
    _calls[(where, what)] += 1
    lock = _state["lock"]
    if lock is not None and not lock.held():
        _unlocked[(where, what, _caller())] += 1


def _is_netcdf(value: Any) -> bool:
    return type(value).__module__.startswith("netCDF4")


def _wrap(value: Any, label: str) -> Any:
    if isinstance(value, Audited):
        return value
    if _is_netcdf(value) and not isinstance(value, type):
        return Audited(value, type(value).__name__)
    if isinstance(value, dict) and any(_is_netcdf(v) for v in value.values()):
        return {k: _wrap(v, label) for k, v in value.items()}
    if isinstance(value, (tuple, list)) and any(_is_netcdf(v) for v in value):
        return type(value)(_wrap(v, label) for v in value)
    return value


class _AuditedMethod:
    """A bound netCDF4 method: the call, not the attribute lookup, is what touches the library."""

    __slots__ = ("_fn", "_label")

    def __init__(self, fn: Any, label: str) -> None:
        self._fn = fn
        self._label = label

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _record(f"{self._label}()")
        args = tuple(a._obj if isinstance(a, Audited) else a for a in args)
        return _wrap(self._fn(*args, **kwargs), self._label)


class Audited:
    """A proxy for a netCDF4 object that audits every access against the lock."""

    __slots__ = ("_obj", "_label")

    def __init__(self, obj: Any, label: str) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_label", label)

    def __getattr__(self, name: str) -> Any:
        label = f"{self._label}.{name}"
        value = getattr(self._obj, name)  # raises AttributeError like the real object would
        if callable(value) and not isinstance(value, type) and _is_netcdf(getattr(value, "__self__", None)):
            return _AuditedMethod(value, label)
        _record(label)
        return _wrap(value, label)

    def __setattr__(self, name: str, value: Any) -> None:
        _record(f"{self._label}.{name}=")
        setattr(self._obj, name, value)

    def __getitem__(self, key: Any) -> Any:
        _record(f"{self._label}[]")
        return _wrap(self._obj[key], self._label)

    def __setitem__(self, key: Any, value: Any) -> None:
        _record(f"{self._label}[]=")
        self._obj[key] = value

    def __bool__(self) -> bool:  # without this, defining __len__ would make a Dataset falsy
        return True

    def __len__(self) -> int:
        _record(f"{self._label}.__len__")
        return len(self._obj)

    def __iter__(self) -> Any:
        _record(f"{self._label}.__iter__")
        return iter(self._obj)

    def __enter__(self) -> Audited:
        return self

    def __exit__(self, *exc: object) -> None:
        _record(f"{self._label}.close()")
        self._obj.close()

    def __repr__(self) -> str:
        return f"Audited({self._obj!r})"

    def __del__(self) -> None:
        # The real Dataset dies with this proxy when nobody else holds it: its C dealloc then
        # closes the file inside netCDF4, a call like any other.
        obj = self._obj
        try:
            if self._label == "Dataset" and sys.getrefcount(obj) <= 3 and obj.isopen():
                _record("Dataset.__dealloc__ (close by garbage collection)")
        except Exception:
            pass


def install() -> bool:
    """Instrument Iris's netCDF layer in this process. False when Iris has no such layer."""
    try:
        import netCDF4
        from iris.fileformats.netcdf import _thread_safe_nc as tsn
    except ImportError:
        return False
    lock = OwnedLock()
    _state["lock"] = lock
    tsn._GLOBAL_NETCDF4_LOCK = lock

    def dataset(*args: Any, **kwargs: Any) -> Audited:
        _record("netCDF4.Dataset()")
        return Audited(netCDF4.Dataset(*args, **kwargs), "Dataset")

    shim = types.ModuleType("netCDF4")
    shim.__dict__.update({k: v for k, v in vars(netCDF4).items() if not k.startswith("__")})
    shim.Dataset = dataset  # type: ignore[attr-defined]
    tsn.netCDF4 = shim
    tsn.DatasetWrapper.CONTAINED_CLASS = staticmethod(dataset)  # a plain function would bind
    return True


def snapshot() -> dict[str, AuditTally]:
    """What the audit saw, per stage: all accesses, and the unlocked ones by caller."""
    return {where: AuditTally(
        calls=sum(n for (s, _), n in _calls.items() if s == where),
        unlocked=sum(n for (s, _, _), n in _unlocked.items() if s == where),
        unlocked_by_caller=tuple(UnlockedCalls(op, caller, n)
                                 for (s, op, caller), n in _unlocked.most_common() if s == where),
    ) for where in sorted({s for s, _ in _calls})}
