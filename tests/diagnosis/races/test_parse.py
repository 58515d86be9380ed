"""threadprobe.diagnosis.races.parse: valgrind's XML -> race pairs, on stored reports of planted C code
(tests/fixtures/valgrind/make.sh made them) and on reports built here, one per attribution rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from threadprobe.diagnosis.races import parse as races
from threadprobe.records import Frame, RaceStatus
from tests.conftest import HERE

FIXTURES = HERE / "fixtures" / "valgrind"


def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.xml").read_text()


def test_a_planted_race_is_one_pair_naming_its_function_and_line():
    got = races.analyse([fixture("helgrind-racy")], "helgrind", 2, 20)
    assert got.status == RaceStatus.RACY
    assert [p.key for p in got.pairs] == ["libdefects.so: racy_fill <-> racy_fill"]
    pair = got.pairs[0]
    assert pair.count >= 1 and "data race" in pair.what
    assert len(pair.stacks) == 2  # both accesses, with --history-level=full
    for stack in pair.stacks:
        top = races.site(stack)
        assert top is not None and (top.fn, top.file) == ("racy_fill", "defects.c") and top.line


def test_the_same_work_behind_a_mutex_has_only_the_interpreters_own_reports():
    got = races.analyse([fixture("helgrind-mutex")], "helgrind", 2, 20)
    assert got.status == RaceStatus.CLEAN and got.pairs == ()
    assert got.reports > 0 and got.ignored == got.reports  # the GIL's atomics: seen, and left out
    assert "no race in 20 concurrent calls" in got.summary()


def test_drd_names_the_racing_function_and_leaves_segment_stacks_out():
    got = races.analyse([fixture("drd-racy")], "drd", 2, 20)
    assert [p.key for p in got.pairs] == ["libdefects.so: racy_fill"]


def test_a_report_cut_short_still_gives_every_block_it_finished():
    text = fixture("helgrind-racy")
    cut = text[: text.rindex("<error>") - 1]  # a worker killed mid-report
    whole = races.analyse([text], "helgrind", 2, 20)
    part = races.analyse([cut], "helgrind", 2, 20)
    assert 0 < part.reports == whole.reports - 1


def test_a_failed_run_without_pairs_is_failed_not_clean():
    got = races.analyse([fixture("helgrind-mutex")], "helgrind", 2, 3, failure="no progress for 300s")
    assert got.status == RaceStatus.FAILED and "no progress" in got.summary()
    racy = races.analyse([fixture("helgrind-racy")], "helgrind", 2, 3, failure="SIGSEGV")
    assert racy.status == RaceStatus.RACY  # pairs found before the end still count


# One report built per rule: the stack's innermost frame in one kind of object, called from libfoo.
LIB = Frame("/opt/lib/libfoo.so.1", "foo_write", "foo.c", 12)
CALLER_IN_PYTHON = Frame("/usr/lib/libpython3.11.so.1.0", "_PyEval_EvalFrameDefault", "ceval.c", 1)


def report(*frames: Frame) -> races.Report:
    return races.Report("Race", "Possible data race", (tuple(frames), tuple(frames)))


@pytest.mark.parametrize("obj", [
    "/usr/libexec/valgrind/vgpreload_helgrind-amd64-linux.so",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/lib64/ld-linux-x86-64.so.2",
    "/usr/lib/x86_64-linux-gnu/libffi.so.8.1.2",
])
def test_pass_through_code_hands_the_race_to_its_caller(obj):
    got, total, ignored = races.pairs([report(Frame(obj, "memcpy"), LIB)])
    assert (total, ignored) == (1, 0)
    assert [p.key for p in got] == ["libfoo.so.1: foo_write <-> foo_write"]


@pytest.mark.parametrize("obj", [
    "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0",
    "/usr/bin/python3.11",
    "/usr/lib/python3.11/lib-dynload/_ctypes.cpython-311-x86_64-linux-gnu.so",
])
def test_the_interpreters_own_reports_are_left_out(obj):
    got, total, ignored = races.pairs([report(Frame(obj, "take_gil"), LIB)])
    assert got == () and (total, ignored) == (1, 1)


def test_nothing_else_is_left_out():
    """Every other object counts: a Cython wrapper, libhdf5, a probe's own library."""
    for obj in ("/site-packages/netCDF4/_netCDF4.cpython-311-x86_64-linux-gnu.so",
                "/site-packages/h5py.libs/libhdf5-9a8b.so.310", "/tmp/work/libdefects.so"):
        got, _, ignored = races.pairs([report(Frame(obj, "f"), CALLER_IN_PYTHON)])
        assert ignored == 0 and got[0].object == obj.rsplit("/", 1)[-1]


def test_a_pair_is_the_same_whichever_access_came_first():
    a, b = Frame("/l/libx.so", "reader"), Frame("/l/libx.so", "writer")
    one = races.Report("Race", "r", ((a,), (b,)))
    two = races.Report("Race", "r", ((b,), (a,)))
    got, _, _ = races.pairs([one, two])
    assert [(p.key, p.count) for p in got] == [("libx.so: reader <-> writer", 2)]


def test_reports_that_are_not_races_are_not_counted():
    misc = races.Report("Misc", "pthread_cond_signal: associated lock is not held", ((LIB,),))
    assert races.pairs([misc]) == ((), 0, 0)


@pytest.mark.parametrize("mangled, name", [
    ("__pyx_pf_7netCDF4_8_netCDF4_8Variable_82_put", "netCDF4._netCDF4.Variable._put"),
    ("__pyx_pw_7netCDF4_8_netCDF4_7Dataset_1__init__", "netCDF4._netCDF4.Dataset.__init__"),
    ("__pyx_pf_7netCDF4_8_netCDF4_8Variable_60__setitem__", "netCDF4._netCDF4.Variable.__setitem__"),
    ("__pyx_pf_7netCDF4_8_netCDF4_7Dataset___init__.constprop.0", "netCDF4._netCDF4.Dataset.__init__"),
    ("__pyx_f_7netCDF4_8_netCDF4__get_vars.constprop.0", "netCDF4._netCDF4._get_vars"),
    ("H5Dread", "H5Dread"),
])
def test_cython_names_are_read_back_as_python_names(mangled, name):
    assert races.cython_name(mangled) == name


def test_a_pair_names_the_python_operation_that_reached_it():
    wrapper = Frame("/site/netCDF4/_netCDF4.abi3.so", "__pyx_pf_7netCDF4_8_netCDF4_8Variable_82_put")
    stack = (Frame("/x/libhdf5.so", "H5FL_reg_free"), Frame("/x/libnetcdf.so", "nc_put_vara"), wrapper,
             Frame("/x/libpython3.11.so.1.0", "_PyEval_EvalFrameDefault"))
    got, _, _ = races.pairs([races.Report("Race", "r", (stack, stack[:1]))])
    assert got[0].operations == ("netCDF4._netCDF4.Variable._put",)
    ctypes_only = (Frame("/tmp/libdefects.so", "racy_fill"),
                   Frame("/py/lib-dynload/_ctypes.cpython-311-x86_64-linux-gnu.so", "_ctypes_callproc"))
    assert races.operation(ctypes_only) is None  # the interpreter's own modules name no operation


EXTENSION = "/site/netCDF4/_netCDF4.cpython-313t-x86_64-linux-gnu.so"


def on(memory: str, alloc: tuple[Frame, ...] = ()) -> races.Report:
    return races.Report("Race", "Possible data race", ((LIB,), (LIB,)), memory, alloc)


@pytest.mark.parametrize("memory, alloc", [
    ('Address 0x4cb72e0 is 0 bytes inside data symbol "_PyRuntime"', ()),
    ("Address 0x4db7bdc is in a rw- mapped file /usr/lib/libpython3.11.so.1.0 segment", ()),
    ("Address 0x200001c0 is in a rw- anonymous segment", ()),  # mimalloc's heap: no malloc block
    ("Address 0x5a1 is 16 bytes inside a block of size 56 alloc'd", (Frame("/x/libc.so.6", "malloc"), CALLER_IN_PYTHON)),
])
def test_a_race_on_the_interpreters_memory_is_left_out_whoever_made_it(memory, alloc):
    assert races.interpreter_memory(on(memory, alloc))
    assert races.pairs([on(memory, alloc)])[0] == ()


@pytest.mark.parametrize("memory, alloc", [
    ('Address 0x5962220 is 0 bytes inside data symbol "shared_buf"', ()),
    ("Address 0x5a1 is 0 bytes inside a block of size 64 alloc'd", (Frame("/x/libc.so.6", "malloc"), LIB)),
    ("", ()),  # no description: the library's, as before
])
def test_a_race_on_the_librarys_own_memory_counts(memory, alloc):
    assert races.interpreter_memory(on(memory, alloc)) is None
    assert [p.key for p in races.pairs([on(memory, alloc)])[0]] == ["libfoo.so.1: foo_write <-> foo_write"]


def test_cpythons_inline_functions_in_an_extension_are_the_interpreters_code():
    incref = Frame(EXTENSION, "Py_INCREF", "refcount.h", 240)
    atomic = Frame(EXTENSION, "_Py_atomic_add_ssize", "pyatomic_gcc.h", 40)
    wrapper = Frame(EXTENSION, "__pyx_pf_7netCDF4_8_netCDF4_7Dataset___init__", "_netCDF4.c", 9)
    for frame in (incref, atomic):
        assert races.pairs([report(frame, wrapper)])[0] == ()
    # A library's own function of that name pattern, in its own source, is still the library's.
    numpy = Frame("/site/numpy/_multiarray_umath.so", "PyArray_NewFromDescr", "ctors.c", 900)
    assert races.pairs([report(numpy, CALLER_IN_PYTHON)])[0][0].functions == ("PyArray_NewFromDescr",) * 2


def test_the_address_and_its_allocation_stack_are_read_from_the_xml():
    found = [r for r in races.reports(fixture("helgrind-racy")) if r.kind == "Race"]
    assert any('data symbol "shared_buf"' in r.memory for r in found)
    assert all(len(r.stacks) <= 2 for r in found)  # the allocation stack is not an access


# The free-threaded build with the GIL off (tests/fixtures/valgrind/make-ft.sh made these).
def counted_sites(name: str) -> list[tuple[str, str | None]]:
    """(function, why its memory is the interpreter's) for each report with a site in a library."""
    out = []
    for r in races.reports(fixture(name)):
        sites = [s for s in (races.site(stack) for stack in r.stacks[:2]) if races.in_library(s)]
        if r.kind in races.RACE_KINDS and sites:
            out.append((sites[0].fn, races.interpreter_memory(r)))
    return out


def test_free_threaded_interpreters_own_reports_are_all_left_out():
    """References to one shared object from a GIL-free extension: mimalloc's heap, the
    interpreter's own data and blocks, all the interpreter's, none the extension's."""
    got = races.analyse([fixture("ft-references")], "helgrind", 2, 20)
    assert got.status == RaceStatus.CLEAN and got.reports == got.ignored > 0
    reasons = {races.interpreter_memory(r) for r in races.reports(fixture("ft-references"))}
    assert {"the interpreter's object heap (anonymous memory, no malloc block)", "the interpreter's own data",
            "a block the interpreter allocated"} <= reasons  # each memory rule, read from real XML


def test_free_threaded_extensions_own_race_is_still_named():
    got = races.analyse([fixture("ft-racy-static")], "helgrind", 2, 20)
    assert [p.key for p in got.pairs] == ["shared_object.cpython-313t-x86_64-linux-gnu.so: racy <-> racy"]
    assert got.ignored == got.reports - sum(p.count for p in got.pairs)


def test_a_recycled_python_buffer_is_not_the_librarys_race():
    """Per-call ctypes buffers come from mimalloc, which hands a freed block to another thread with
    nothing the detector sees ordering it: racy_fill's writes there are left out, its writes to
    its own static are not."""
    sites = counted_sites("ft-racy-fill")
    assert ("racy_fill", "the interpreter's object heap (anonymous memory, no malloc block)") in sites
    assert ("racy_fill", None) in sites
    got = races.analyse([fixture("ft-racy-fill")], "helgrind", 2, 20)
    assert [p.key for p in got.pairs] == ["libdefects.so: racy_fill <-> racy_fill"]
