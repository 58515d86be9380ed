"""From a happens-before detector's XML reports to race pairs: which native code raced, and where.

Pure: text in, a ``RacePass`` out, so that it is tested on stored reports of planted C code.

**Attribution.** A report is two stacks (the access, and the earlier one it conflicts with). The
*site* of a stack is its innermost frame once pass-through code is skipped (libc's ``memcpy``,
the dynamic loader, libffi's call bridge, valgrind's preload, threadprobe's scheduling shim): a
race in ``memcpy`` is its caller's. A site is the interpreter's own doing when it lies in the
interpreter (libpython, the python executable, CPython's own extension modules in
``lib-dynload``: the GIL's drop-request atomics, obmalloc at exit; on a free-threaded build,
mimalloc, QSBR, the parking lot) or is a function of CPython's C API inlined into another object
(``Py_INCREF``, ``_Py_atomic_add_ssize``: a name in CPython's ``Py``/``_Py`` namespace from a
header file, seen when the object has debug information). A report counts only when one of its sites lies in another
native object, the library under test: libhdf5, libnetcdf, libudunits2, a Cython wrapper, a
probe's ctypes library.

**The memory.** A report is left out, whoever made it, when the memory raced on is the
interpreter's: a block the interpreter allocated (its alloc stack's site is the interpreter's), a
global of CPython's (``_PyRuntime``, ``_Py_NoneStruct``), the interpreter's own segment, or
anonymous memory that is no malloc block (the detector replaces malloc, so this is the
interpreter's own allocator: mimalloc's heap of objects on a free-threaded build). There a
library's accesses are reference counts and object headers (on a free-threaded build, biased
reference counts inlined into every extension module), which the interpreter orders, not the
library. A library's own state (its globals, the blocks it allocates) is never left out.

**Pairs.** Counted reports are grouped by the object of the first counted site and the two sites'
functions, sorted, so that A <-> B and B <-> A are one pair. The first report's stacks are kept.
helgrind gives both accesses' stacks; DRD gives only the second access's (and where the other
thread's segment began and ended), so a DRD pair names one function.

Reports are read block by block, so a worker killed mid-report (a timeout, a crash) still gives
every report it finished writing.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeGuard

from threadprobe.records import Frame, RacePair, RacePass, RaceStatus, RaceTool

#: Kinds that are data races: helgrind's and DRD's names for them.
RACE_KINDS = frozenset({"Race", "ConflictingAccess"})

#: Code that only passes a call through; the site of an access is the caller.
PASS_THROUGH = (
    (re.compile(r"/vgpreload_[^/]*\.so$|/valgrind/"), "valgrind's own preload and tools"),
    (re.compile(r"/(libc|libpthread|libdl|libm|librt)[.-][^/]*$"), "the C library: memcpy and friends act for their caller"),
    (re.compile(r"/ld-linux[^/]*$"), "the dynamic loader"),
    (re.compile(r"/libffi[.-][^/]*$"), "libffi: ctypes' call bridge into the library"),
    (re.compile(r"/overlap-[0-9a-f]+\.so$"), "threadprobe's scheduling shim (harness/overlap.c)"),
)
#: The interpreter: a site here is the interpreter's own, not the library's.
INTERPRETER = (
    (re.compile(r"/libpython3[^/]*\.so[^/]*$"), "libpython: the GIL's drop-request atomics, obmalloc"),
    (re.compile(r"/python3(\.\d+)?t?$|/python$"), "a statically linked interpreter executable (Debian's)"),
    (re.compile(r"/lib-dynload/"), "CPython's standard extension modules (_ctypes, _thread...)"),
)


def _matches(rules: tuple[tuple[re.Pattern[str], str], ...], obj: str) -> bool:
    return any(pattern.search(obj) for pattern, _ in rules)


def site(stack: tuple[Frame, ...]) -> Frame | None:
    """The frame an access is attributed to: the innermost one that is not pass-through."""
    return next((f for f in stack if f.obj and not _matches(PASS_THROUGH, f.obj)), None)


#: CPython's C API namespace: a function so named, inlined from a header, is the interpreter's
#: code in another object (a reference count taken by an extension module).
CAPI = re.compile(r"^_?Py[A-Z_]")


def inlined_capi(frame: Frame) -> bool:
    return bool(CAPI.match(frame.fn)) and (frame.file or "").endswith(".h")


def in_library(frame: Frame | None) -> TypeGuard[Frame]:
    """Is this site in the library under test (not the interpreter, not pass-through code)?"""
    return frame is not None and not _matches(INTERPRETER, frame.obj) and not inlined_capi(frame)


#: What the memory raced on is, from the detector's description of the address.
MAPPED = re.compile(r"is in a [rwx-]+ mapped file (\S+) segment")
SYMBOL = re.compile(r'inside data symbol "([^"]+)"')
ANONYMOUS = re.compile(r"is in a [rwx-]+ anonymous segment")
ALLOCATED = re.compile(r"inside a block of size \d+ alloc'd|Allocation context")


def interpreter_memory(report: "Report") -> str | None:
    """Why the memory a report races on is the interpreter's (None: it is the library's, or unknown)."""
    where = report.memory
    mapped, symbol = MAPPED.search(where), SYMBOL.search(where)
    if mapped and _matches(INTERPRETER, mapped.group(1)):
        return "the interpreter's own data"
    if symbol and CAPI.match(symbol.group(1)):
        return "a global of CPython's"
    if ANONYMOUS.search(where):
        return "the interpreter's object heap (anonymous memory, no malloc block)"
    if report.alloc and not in_library(site(report.alloc)):
        return "a block the interpreter allocated"
    return None


@dataclass(frozen=True)
class Report:
    """One error block of the detector's XML."""

    kind: str
    what: str
    stacks: tuple[tuple[Frame, ...], ...]
    memory: str = ""  # the detector's description of the address ("inside data symbol ...")
    alloc: tuple[Frame, ...] = ()  # where the block raced on was allocated, when it is one


def _frame(node: ET.Element) -> Frame:
    line = node.findtext("line")
    return Frame(obj=node.findtext("obj") or "", fn=node.findtext("fn") or "",
                 file=node.findtext("file"), line=int(line) if line and line.isdigit() else None)


def reports(xml: str) -> list[Report]:
    """Every complete ``<error>`` block in one XML file (a truncated tail is ignored)."""
    found = []
    for block in re.findall(r"<error>.*?</error>", xml, re.S):
        try:
            node = ET.fromstring(block)
        except ET.ParseError:
            continue
        what = node.findtext("xwhat/text") or node.findtext("what") or ""
        found.append(Report(node.findtext("kind") or "", what, *_stacks(node)))
    return found


def _stacks(node: ET.Element) -> tuple[tuple[tuple[Frame, ...], ...], str, tuple[Frame, ...]]:
    """The accesses' stacks, the description of the address, and the stack that allocated it.

    Only direct children: DRD nests where the other thread's segment began and ended (in
    other_segment_*), which is context, not the conflicting access. A stack that follows the
    address's description ("... alloc'd") is where the block was allocated."""
    stacks: list[tuple[Frame, ...]] = []
    alloc: tuple[Frame, ...] = ()
    memory, after_address = "", False
    for child in node:
        if child.tag == "auxwhat" and (child.text or "").startswith("Address"):
            memory, after_address = child.text or "", ALLOCATED.search(child.text or "") is not None
        elif child.tag == "stack":
            frames = tuple(_frame(f) for f in child.iter("frame"))
            if after_address:
                alloc, after_address = frames, False
            else:
                stacks.append(frames)
    return tuple(stacks), memory, alloc


EXTENSION = re.compile(r"\.(cpython-[^/]*|abi3)\.so$")
CYTHON = re.compile(r"^__pyx_p?[fw]_(\d.*)$")
CLONE = re.compile(r"(\.(constprop|isra|part|cold|lto_priv)(\.\d+)?)+$")  # the compiler's copies


def cython_name(fn: str) -> str:
    """``__pyx_pf_7netCDF4_8_netCDF4_8Variable_82_put`` -> ``netCDF4._netCDF4.Variable._put``.

    Cython writes each dotted part as its length and text, joined by ``_``; a Python function's
    own name follows a counter (``_82`` + ``_put``, ``_1`` + ``__init__``), a C function's
    (``__pyx_f_``) follows directly."""
    match = CYTHON.match(CLONE.sub("", fn))
    if not match:
        return fn
    parts: list[str] = []
    rest = match.group(1)
    while (digits := re.match(r"\d+", rest)) is not None:
        n, body = int(digits.group()), rest[len(digits.group()):]
        part = body[:n]
        if len(body) <= n or body[n] != "_" or not re.search(r"[A-Za-z0-9]", part):
            return ".".join(parts + [body])  # the digits were a counter: the name follows
        parts.append(part)
        rest = body[n + 1:]
    return ".".join(parts + [rest])


def operation(stack: tuple[Frame, ...]) -> str | None:
    """The Python-level operation that reached the race: the innermost frame of a Python extension
    module outside the interpreter (a Cython wrapper such as netCDF4's ``Variable._put``)."""
    for f in stack:
        if EXTENSION.search(f.obj) and not _matches(INTERPRETER, f.obj) and f.fn:
            return cython_name(f.fn)
    return None


def _base(obj: str) -> str:
    return obj.rsplit("/", 1)[-1]


def pairs(found: Iterable[Report]) -> tuple[tuple[RacePair, ...], int, int]:
    """Race pairs in the library under test, the number of race reports, and how many were ignored."""
    groups: dict[tuple[str, tuple[str, ...]], list[Report]] = {}
    total = ignored = 0
    for report in found:
        if report.kind not in RACE_KINDS:
            continue
        total += 1
        sites = [site(stack) for stack in report.stacks[:2]] or [None]
        counted = [s for s in sites if in_library(s)]
        if not counted or interpreter_memory(report):
            ignored += 1
            continue
        functions = tuple(sorted((s.fn or "???") if s is not None else "???" for s in sites))
        groups.setdefault((_base(counted[0].obj), functions), []).append(report)
    out = tuple(RacePair(object=obj, functions=fns, count=len(got), what=got[0].what, stacks=got[0].stacks[:2],
                         operations=_operations(got))
                for (obj, fns), got in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    return out, total, ignored


def _operations(found: list[Report], limit: int = 5) -> tuple[str, ...]:
    """The operations that reached a pair, most frequent first. Only the first stack reaches that
    far: helgrind keeps 8 frames of the earlier access."""
    counts: dict[str, int] = {}
    for report in found:
        op = operation(report.stacks[0]) if report.stacks else None
        if op:
            counts[op] = counts.get(op, 0) + 1
    return tuple(sorted(counts, key=lambda k: (-counts[k], k))[:limit])


def analyse(xml_texts: Iterable[str], tool: RaceTool, threads: int, calls: int, failure: str | None = None,
            seconds: float = 0.0) -> RacePass:
    """A probe's race pass from its workers' XML reports. ``failure`` says why the run did not
    finish (a timeout, a crash, valgrind's own error): without pairs, such a pass is not clean."""
    found = [r for text in xml_texts for r in reports(text)]
    got, total, ignored = pairs(found)
    if got:
        status = RaceStatus.RACY
    elif failure:
        status = RaceStatus.FAILED
    else:
        status = RaceStatus.CLEAN
    return RacePass(tool=tool, threads=threads, calls=calls, status=status, pairs=got, reason=failure,
                    reports=total, ignored=ignored, seconds=round(seconds, 2))


def stack_text(stack: tuple[Frame, ...], limit: int = 12) -> str:
    """A stack as indented lines, innermost first, for reports and issue bodies."""
    return "\n".join(f"    {f.text()}" for f in stack[:limit])
