"""Hypothesis strategies for data layouts: shape, dtype, chunking, compression, fill value."""

from hypothesis import strategies as st

from threadprobe.probes._common import Layout


@st.composite
def layouts(draw, max_side: int = 9) -> Layout:
    shape = draw(st.tuples(st.integers(1, 5), st.integers(1, max_side), st.integers(1, max_side)))
    dtype = draw(st.sampled_from(["f4", "f8", "i2", "i4"]))
    chunks = draw(st.none() | st.tuples(*(st.integers(1, n) for n in shape)))
    compression = draw(st.booleans())
    fill = draw(st.none() | st.sampled_from([-999.0, 1.0e20 if dtype.startswith("f") else -32000.0]))
    return Layout(shape=shape, dtype=dtype, chunks=chunks, compression=compression, fill_value=fill)


def with_layout(cls, layout: Layout):
    """The probe class with its input layout replaced."""
    return type(cls.__name__, (cls,), {"layout": layout})
