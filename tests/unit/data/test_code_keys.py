"""Codes as 64-bit keys: they match and order exactly as the codes do, or are not used."""
import random
from typing import List

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.artifact.product_codes import ProductCodes
from pipeline.data.code_keys import positions_by_key, sort_keys
from pipeline.modelling.code_lookup import positions_in

# Part numbers as catalogues have them: a shared prefix, a few characters that vary.
PART = st.text(st.sampled_from("019AZ-\u00e9"), min_size=0, max_size=5)
PREFIX = st.sampled_from(["SKU", "SKV", "", "P-"])
CODES = st.lists(st.tuples(PREFIX, PART).map("".join), unique=True, max_size=60)


@settings(max_examples=300, deadline=None)
@given(CODES, st.lists(st.tuples(PREFIX, PART).map("".join), max_size=60), st.randoms())
def test_keys_find_the_positions_the_service_finds(
    catalogue_codes: List[str], asked: List[str], shuffler: random.Random
) -> None:
    shuffler.shuffle(catalogue_codes)  # a model's carried codes come after its own
    catalogue = ProductCodes.from_strings(catalogue_codes)
    wanted = ProductCodes.from_strings(asked + catalogue_codes[:5])
    keys = sort_keys(catalogue, wanted)
    if keys is not None:
        assert positions_by_key(*keys).tolist() == catalogue.find_many(wanted.tolist()).tolist()
        assert [catalogue_codes[i] for i in np.argsort(keys[0])] == sorted(catalogue_codes)
    fresh = ProductCodes.from_strings(catalogue_codes)  # not the catalogue's own object
    assert positions_in(fresh, wanted).tolist() == catalogue.find_many(wanted.tolist()).tolist()


def test_codes_that_vary_in_few_bytes_become_keys_and_others_do_not() -> None:
    parts = ProductCodes.from_strings([f"SKU{i:07d}" for i in range(0, 10**6, 997)])
    assert sort_keys(parts) is not None
    assert sort_keys(ProductCodes.from_strings(["ABCDEFGHI", "BCDEFGHIJ"])) is None  # 9 vary
    assert sort_keys(ProductCodes.from_strings(["A" * 33, "B"])) is None  # too long
    assert sort_keys(ProductCodes.from_strings(["A\x00", "A"])) is None  # a NUL: not padding


def test_a_byte_shared_within_each_set_but_not_across_them_still_tells_codes_apart() -> None:
    this_week = ProductCodes.from_strings(["AA1", "AA2"])
    asked = ProductCodes.from_strings(["BB1", "AA2", "AA"])
    keys = sort_keys(this_week, asked)
    assert keys is not None
    assert positions_by_key(*keys).tolist() == [-1, 1, -1]
