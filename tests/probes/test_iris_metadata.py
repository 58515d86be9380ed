"""The xxhash trap: Iris 3.14.1's metadata comparisons break with xxhash 4.x.

This is the test that catches it again: if a new install pulls xxhash 4 back in, concatenating
cubes with string attributes raises "Strings must be encoded before hashing" here.
"""

from importlib.metadata import version

import pytest

from threadprobe.probes import iris_metadata


def test_concatenate_with_string_attributes_works_serially():
    joined_data, times, attrs, merged = iris_metadata.ConcatenateStringAttributes().task(None, 3)
    assert joined_data.shape == (9, 5) and list(times) == list(range(9)) and merged == 1


@pytest.mark.environment  # this venv's build: Iris 3.14.1 on Python 3.11, which xxhash 4 breaks
def test_the_installed_xxhash_is_one_iris_can_use():
    major = int(version("xxhash").split(".")[0])
    assert major < 4, "xxhash 4.x breaks Iris 3.14.1's metadata hashing: keep the xxhash<4 pin"
