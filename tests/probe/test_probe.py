"""The digest: equal results digest equally across processes, different results differently."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from threadprobe.probe import Probe, digest

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(), st.binary())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner), max_leaves=12)


@given(values)
def test_digest_is_a_function_of_the_value(value):
    assert digest(value) == digest(value)


@given(values, values)
def test_different_values_digest_differently(a, b):
    if repr(a) != repr(b):
        assert digest(a) != digest(b)


@settings(max_examples=50)
@given(hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(max_dims=3, max_side=5)))
def test_array_digest_sees_every_element(arr):
    if arr.size == 0 or arr.dtype.kind in "OVUSmM" or arr.dtype.kind == "c":
        return
    other = arr.copy()
    flat = other.reshape(-1)
    flat[0] = flat[0] + 1 if arr.dtype.kind != "b" else not flat[0]
    if arr.dtype.kind == "f" and (np.isnan(arr.reshape(-1)[0]) or np.isinf(arr.reshape(-1)[0])):
        return
    if np.array_equal(arr, other, equal_nan=True):
        return  # +1 lost in float rounding: nothing changed, so nothing to see
    assert digest(arr) != digest(other)


def test_dtype_and_shape_are_part_of_an_array_digest():
    a = np.arange(6, dtype="i4")
    assert digest(a) != digest(a.astype("i8"))
    assert digest(a) != digest(a.reshape(2, 3))


def test_masked_values_are_ignored_but_the_mask_is_not():
    a = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])
    b = np.ma.masked_array([1.0, 99.0, 3.0], mask=[False, True, False])
    c = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, False, False])
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_digest_is_stable_across_processes():
    value = (np.linspace(0, 1, 7), "x", b"y", 3, 2.5, [None, True])
    code = "import numpy as np; from threadprobe.probe import digest; " \
           "print(digest((np.linspace(0, 1, 7), 'x', b'y', 3, 2.5, [None, True])))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120).stdout.strip()
    assert out == digest(value)


def test_undigestable_results_are_refused():
    with pytest.raises(TypeError, match="cannot digest"):
        digest(object())


def test_exceptions_are_digested_with_their_message_or_without_it():
    a, b = ValueError("[UT_SUCCESS] bad unit"), ValueError("[UT_UNKNOWN] bad unit")
    assert digest(a) != digest(b) and digest(a, messages=False) == digest(b, messages=False)
    assert digest(TypeError("x"), messages=False) != digest(ValueError("x"), messages=False)
    assert digest((1, "text")) == digest((1, "text"), messages=False)  # strings are data
