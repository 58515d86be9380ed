"""What the probes share: the tiled timing input folds back to the stress input's result."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from threadprobe.probe import digest
from threadprobe.probes._common import Layout, fold, tiled, tiled_values, values

TILES = st.tuples(st.integers(1, 4), st.integers(1, 4))


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)), tiles=TILES, seed=st.integers(0, 99))
def test_results_on_tiled_data_fold_back_to_the_stress_inputs(shape, tiles, seed):
    layout = Layout(shape=shape, chunks=None, fill_value=None)
    small = values(layout, seed)
    big = tiled_values(layout, seed, tiles)
    assert big.shape == tiled(layout, tiles).shape
    # Elementwise work, then a reduction over time: what the wind task does.
    work = lambda a: (np.sqrt(a * a).sum(axis=0), np.cos(a).sum(axis=0))  # noqa: E731
    assert digest(fold(work(big), tiles)) == digest(work(small))


@given(tiles=TILES.filter(lambda t: t != (1, 1)), where=st.tuples(st.integers(0, 7), st.integers(0, 11)))
def test_a_wrong_value_in_any_tile_leaves_the_result_unfolded_so_the_oracle_sees_it(tiles, where):
    layout = Layout(shape=(2, 8, 12), chunks=None, fill_value=None)
    small, big = values(layout, 1), tiled_values(layout, 1, tiles)
    y, x = where[0] * tiles[0], where[1] * tiles[1]  # a point anywhere in the tiled grid
    big[:, y, x] += 1.0
    folded = fold((big.sum(axis=0),), tiles)
    assert digest(folded) != digest((small.sum(axis=0),))


def test_a_tiled_layout_keeps_its_chunks_one_tile_wide_per_chunk():
    layout = Layout(shape=(16, 240, 320), chunks=(1, 240, 320), fill_value=None)
    assert tiled(layout, (4, 4)) == Layout(shape=(16, 960, 1280), chunks=(1, 960, 1280), fill_value=None)
