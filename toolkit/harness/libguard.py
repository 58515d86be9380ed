"""One lock around every call into one library, put there from outside the library.

This is the ``library_lock`` remedy, applied the same way by a trial's workers
(``threadprobe.harness.worker``) and by the runner (``threadprobe.scheduling.locks``), as Iris
wraps netCDF4 by hand in ``iris.fileformats.netcdf._thread_safe_nc``, but for any library and
without its help. Standard library only: workers run under any interpreter.

Profile hooks cannot do it: ``sys.setprofile`` reports no ``c_call`` for a Cython function
(cf_units' ``_udunits2.parse``, netCDF4's methods), on 3.11 as on 3.13t. So the library's
callables are wrapped, in every module of the library (``name`` and ``name.*``):

- functions (Python, builtin or Cython) are replaced by locked ones, and every other module that
  imported them by name is rebound to the locked one;
- classes that can be changed (Python classes; Cython's heap types on the GIL build) keep their
  identity and get their methods, slots and properties wrapped in place;
- classes that cannot (Cython's immutable types on 3.13t) are replaced by a stand-in: calling it
  builds the object under the lock and returns a proxy, which holds the lock around each use
  (attribute, item, call, iteration, ``with``) and wraps what it returns in turn. ``isinstance``
  works on both, and a subclass of the stand-in subclasses the real class (unlocked).

The lock is taken once per outermost call (a per-thread depth: the library calling itself costs
a counter), and each outermost call is counted by entry point (``counts``: which calls the lock
covered). Not covered: references a module keeps other than as a global (a default argument, a
class attribute, a closure), and a generator's steps after a ``send``.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
import time
import types
from collections.abc import Callable, Collection, Generator, Iterator
from typing import Any  # Any: the guarded library's own objects, wrapped without knowing their types

IMMUTABLE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE (3.10+)
GENERATOR = 0x20  # CO_GENERATOR
_CALLABLE_TYPES = (types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType,
                   types.WrapperDescriptorType, types.ClassMethodDescriptorType)
#: Left as they are: the machinery of attribute access and of the class itself. Pickling's hooks
#: are wrapped like any method: ``__setstate__`` calls into the library (cf_units parses the unit).
_SKIP = frozenset({"__init_subclass__", "__subclasshook__", "__class_getitem__", "__getattribute__",
                   "__setattr__", "__delattr__", "__dict__", "__weakref__", "__class__", "__doc__", "__module__",
                   "__qualname__", "__slots__", "__sizeof__", "__dir__", "__format__", "__del__", "__dealloc__"})


class Guard:
    """The lock of one library in this process, and the calls it covered."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.library, _, self.function = target.partition(":")  # "module:function": that function alone
        self.lock = threading.Lock()
        self.local = threading.local()
        self.counts: dict[str, int] = {}
        #: Seconds the lock was held, summed over outermost calls: the share of a run the lock
        #: makes serial, which bounds what threads can gain under it (Amdahl).
        self.held = 0.0
        self.on = True  # off: calls go straight through (a runner timing another scheduler)
        self._undo: list[Callable[[], None]] = []
        self._standins: dict[type, Standin] = {}

    # ---- calls -------------------------------------------------------------------------------
    def call(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             count: bool = True) -> Any:
        local = self.local
        args = tuple(unwrap(a) for a in args)
        kwargs = {k: unwrap(v) for k, v in kwargs.items()} if kwargs else kwargs
        if getattr(local, "depth", 0) or not self.on:
            return fn(*args, **kwargs)  # the library inside itself: its own objects, bare
        with self.lock:
            local.depth = 1
            if count:
                self.counts[name] = self.counts.get(name, 0) + 1
            began = time.perf_counter()
            try:
                return self.out(fn(*args, **kwargs))
            finally:
                self.held += time.perf_counter() - began
                local.depth = 0

    def locked(self, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
        """``fn``, holding the lock (a generator function: around each step)."""
        code = getattr(fn, "__code__", None)
        if code is not None and code.co_flags & GENERATOR:
            def steps(*args: Any, **kwargs: Any) -> Generator[Any, None, Any]:
                it = self.call(name, fn, args, kwargs)
                while True:
                    try:
                        value = self.call(name, next, (it,), {})
                    except StopIteration as stop:
                        return stop.value
                    yield value
            return functools.wraps(fn)(steps)

        def guarded(*args: Any, **kwargs: Any) -> Any:
            return self.call(name, fn, args, kwargs)

        try:
            return functools.wraps(fn)(guarded)
        except (AttributeError, TypeError):
            return guarded

    def out(self, value: Any) -> Any:
        """A result: an object of one of the library's unchangeable classes comes back proxied,
        and so do those in a dict, list or tuple it returns (``Dataset.variables``)."""
        if not self._standins:
            return value
        standin = self._standins.get(type(value))
        if standin is not None:
            return Proxy(value, self, standin.cls.__name__)
        if isinstance(value, dict) and any(type(v) in self._standins for v in value.values()):
            return {k: self.out(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)) and any(type(v) in self._standins for v in value):
            return type(value)(self.out(v) for v in value) if type(value) in (list, tuple) else value
        return value

    # ---- install -----------------------------------------------------------------------------
    def modules(self) -> list[types.ModuleType]:
        return [m for n, m in list(sys.modules.items())
                if isinstance(m, types.ModuleType) and (n == self.library or n.startswith(self.library + "."))]

    def mine(self, obj: Any) -> bool:
        module = getattr(obj, "__module__", None)
        return isinstance(module, str) and (module == self.library or module.startswith(self.library + "."))

    def install(self) -> Guard:
        """Wrap the library's entry points (importing it first), and rebind their importers."""
        module = importlib.import_module(self.library)
        replaced: dict[int, Any] = {}
        if self.function:
            value = getattr(module, self.function, None)
            if not callable(value):
                raise LookupError(f"{self.target}: {self.library} has no function {self.function}")
            new = self.locked(value, self.function)
            replaced[id(value)] = (value, new)
            self._set(module, self.function, new)
            self._rebind(replaced)
            return self
        for module in self.modules():
            for name, value in list(vars(module).items()):
                new = self._replacement(value, f"{module.__name__.rpartition('.')[2]}.{name}")
                if new is not None:
                    replaced[id(value)] = (value, new)
                    self._set(module, name, new)
        self._rebind(replaced)
        return self

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()
        self._standins.clear()

    def _set(self, owner: Any, name: str, new: Any) -> None:
        old = owner.__dict__[name] if isinstance(owner, type) else vars(owner)[name]
        setattr(owner, name, new)
        self._undo.append(lambda: setattr(owner, name, old))

    def _replacement(self, value: Any, name: str) -> Any:
        if isinstance(value, type):
            if value in self._standins:
                return self._standins[value]
            if not self.mine(value) or issubclass(value, BaseException):
                return None
            if value.__flags__ & IMMUTABLE:
                standin = self._standins[value] = Standin(value, self)
                return standin
            self._wrap_class(value)
            return None
        if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)) or type(value).__name__ in (
                "cython_function_or_method", "fused_cython_function"):
            return self.locked(value, getattr(value, "__name__", name)) if self.mine(value) else None
        return None

    def _wrap_class(self, cls: type) -> None:
        """Wrap a changeable class's own methods, slots and properties in place."""
        if getattr(cls, "__threadprobe_guard__", None) is self:
            return
        for name, attr in list(cls.__dict__.items()):
            if name in _SKIP or (name == "__new__" and not isinstance(attr, staticmethod)):  # a C type's own
                continue
            label = f"{cls.__name__}.{name}"
            new: Any = None
            if isinstance(attr, (staticmethod, classmethod)):
                new = type(attr)(self.locked(attr.__func__, label))
            elif isinstance(attr, property):
                get, put, drop = (self.locked(f, label) if f else None for f in (attr.fget, attr.fset, attr.fdel))
                new = property(get, put, drop, attr.__doc__)
            elif isinstance(attr, types.GetSetDescriptorType | types.MemberDescriptorType):
                new = property(self.locked(attr.__get__, label), self.locked(attr.__set__, label))
            elif isinstance(attr, _CALLABLE_TYPES) or type(attr).__name__ == "cython_function_or_method":
                new = self.locked(attr, label)
            if new is not None:
                try:
                    self._set(cls, name, new)
                except (AttributeError, TypeError):
                    pass
        self._set_marker(cls)

    def _set_marker(self, cls: type) -> None:
        cls.__threadprobe_guard__ = self  # type: ignore[attr-defined]
        self._undo.append(lambda: delattr(cls, "__threadprobe_guard__"))

    def _rebind(self, replaced: dict[int, Any]) -> None:
        """Every other module's global that is a replaced original now names its replacement."""
        mine = {id(m) for m in self.modules()}
        for module in list(sys.modules.values()):
            if not isinstance(module, types.ModuleType) or id(module) in mine:
                continue
            try:
                names = list(vars(module).items())
            except TypeError:
                continue
            for name, value in names:
                hit = replaced.get(id(value))
                if hit is not None and hit[0] is value:
                    self._set(module, name, hit[1])


def unwrap(value: Any) -> Any:
    return object.__getattribute__(value, "_target") if type(value) is Proxy else value


class Standin:
    """What an unchangeable class of the library is replaced by: builds proxies under the lock."""

    def __init__(self, cls: type, guard: Guard) -> None:
        self.cls, self.guard = cls, guard
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__
        self.__doc__ = cls.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.guard.call(self.cls.__name__, self.cls, args, kwargs)

    def __instancecheck__(self, obj: Any) -> bool:
        return isinstance(unwrap(obj), self.cls)

    def __subclasscheck__(self, sub: type) -> bool:
        return issubclass(sub, self.cls)

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type]:
        return (self.cls,)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.cls, name)
        return self.guard.locked(value, f"{self.cls.__name__}.{name}") if callable(value) else value


class Proxy:
    """An object of an unchangeable library class, used only under the library's lock."""

    __slots__ = ("_target", "_guard", "_kind")

    def __init__(self, target: Any, guard: Guard, kind: str) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_guard", guard)
        object.__setattr__(self, "_kind", kind)

    def _do(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        guard: Guard = object.__getattribute__(self, "_guard")
        return guard.call(f"{object.__getattribute__(self, '_kind')}.{name}", fn, args, {})

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(proxy, RealClass) holds
        return type(object.__getattribute__(self, "_target"))

    def __getattr__(self, name: str) -> Any:
        target = object.__getattribute__(self, "_target")
        guard: Guard = object.__getattribute__(self, "_guard")
        label = f"{object.__getattribute__(self, '_kind')}.{name}"
        value = guard.call(label, getattr, (target, name), {}, count=False)
        if callable(value) and not isinstance(value, (type, Proxy)):
            return guard.locked(value, label)  # counted when called
        guard.counts[label] = guard.counts.get(label, 0) + 1
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        self._do(name, setattr, object.__getattribute__(self, "_target"), name, value)

    def __delattr__(self, name: str) -> None:
        self._do(name, delattr, object.__getattribute__(self, "_target"), name)

    def __getitem__(self, key: Any) -> Any:
        return self._do("__getitem__", lambda t, k: t[k], object.__getattribute__(self, "_target"), key)

    def __setitem__(self, key: Any, value: Any) -> None:
        def put(t: Any, k: Any, v: Any) -> None:
            t[k] = v
        self._do("__setitem__", put, object.__getattribute__(self, "_target"), key, value)

    def __len__(self) -> int:
        return int(self._do("__len__", len, object.__getattribute__(self, "_target")))

    def __iter__(self) -> Iterator[Any]:
        return iter(self._do("__iter__", list, object.__getattribute__(self, "_target")))

    def __contains__(self, item: Any) -> bool:
        return bool(self._do("__contains__", lambda t, i: i in t, object.__getattribute__(self, "_target"), item))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        guard: Guard = object.__getattribute__(self, "_guard")
        return guard.call(f"{object.__getattribute__(self, '_kind')}.__call__",
                          object.__getattribute__(self, "_target"), args, kwargs)

    def __enter__(self) -> Any:
        got = self._do("__enter__", lambda t: t.__enter__(), object.__getattribute__(self, "_target"))
        return self if got is object.__getattribute__(self, "_target") else got

    def __exit__(self, *exc: Any) -> Any:
        return self._do("__exit__", lambda t, *e: t.__exit__(*e), object.__getattribute__(self, "_target"), *exc)

    def __repr__(self) -> str:
        return str(self._do("__repr__", repr, object.__getattribute__(self, "_target")))

    def __str__(self) -> str:
        return str(self._do("__str__", str, object.__getattribute__(self, "_target")))

    def __bool__(self) -> bool:
        return bool(self._do("__bool__", bool, object.__getattribute__(self, "_target")))

    def __eq__(self, other: object) -> bool:
        return bool(self._do("__eq__", lambda t, o: t == o, object.__getattribute__(self, "_target"), unwrap(other)))

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return int(self._do("__hash__", hash, object.__getattribute__(self, "_target")))

    def __reduce_ex__(self, protocol: Any) -> Any:  # pickled (another process): the object itself
        return object.__getattribute__(self, "_target").__reduce_ex__(protocol)


_GUARDS: dict[str, Guard] = {}
_USERS: dict[str, int] = {}
_INSTALL = threading.Lock()


def guard(library: str) -> Guard:
    """This process's guard of ``library`` (a package, a module, or ``module:function``), installed
    at its first user (importing the library), and holding its lock from then on."""
    with _INSTALL:
        found = _GUARDS.get(library)
        if found is None:
            found = _GUARDS[library] = Guard(library).install()
        _USERS[library] = _USERS.get(library, 0) + 1
        found.on = True
        return found


def release(library: str) -> None:
    """One user less; after the last one, calls go straight through again. The wrappers stay:
    objects made under the guard (a run's cubes, with their units) hold proxies that only the
    wrappers unwrap when they go back into the library."""
    with _INSTALL:
        _USERS[library] = _USERS.get(library, 1) - 1
        found = _GUARDS.get(library)
        if found is not None and _USERS[library] <= 0:
            found.on = False


def remove(library: str) -> None:
    """Take the wrappers off altogether (the library's own entry points again): for tests, where
    nothing made under the guard outlives it."""
    with _INSTALL:
        found = _GUARDS.pop(library, None)
        _USERS.pop(library, None)
    if found is not None:
        found.uninstall()


def counts(guards: Collection[Guard]) -> dict[str, int]:
    """The outermost calls each guard covered so far, by entry point (all guards together)."""
    total: dict[str, int] = {}
    for found in guards:
        for name, n in list(found.counts.items()):
            total[name] = total.get(name, 0) + n
    return total


def only(libraries: Collection[str]) -> None:
    """Hold the locks of ``libraries``, of the installed guards that have users, and no other's (a
    pilot timing candidates that need different locks in one process)."""
    with _INSTALL:
        for name, found in _GUARDS.items():
            found.on = name in libraries and _USERS.get(name, 0) > 0
