"""A tranche's codes are numbered in code order, and its rows matched against catalogues."""
from typing import List

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from pipeline.codes.numbering import (
    as_categories,
    codes_of,
    factorize_products,
    from_arrow,
    number_codes,
    row_positions,
)
from pipeline.codes.product_codes import ProductCodes

CODES = ["SKU001", "", "\u00c9T\u00c9", "a,b", "SKU001x"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.text(max_size=12), st.text(st.sampled_from("SKU0129-"), min_size=6, max_size=6),
    st.text(st.sampled_from("AB09-\u00e9"), min_size=1, max_size=9).map("SKU".__add__),
    st.text(min_size=30, max_size=40),
)))
def test_codes_are_numbered_as_python_sorts_them(codes: List[str]) -> None:
    numbers, distinct = number_codes(pa.array(codes, pa.string()))
    assert distinct.tolist() == sorted(set(codes))
    assert [distinct[int(n)] for n in numbers] == codes


def test_missing_codes_are_numbered_minus_one_and_blocks_share_one_numbering() -> None:
    blocks = pa.chunked_array([pa.array(["B", None, "A"]), pa.array(["C", "A", None])])
    numbers, distinct = number_codes(blocks)
    assert distinct.tolist() == ["A", "B", "C"]
    assert numbers.tolist() == [1, -1, 0, 2, 0, -1]


def test_codes_in_any_form_become_the_same_bytes_in_order() -> None:
    expected = ProductCodes.from_strings(CODES)
    assert codes_of(CODES) == expected
    assert codes_of(pd.Index(CODES, dtype=object)) == expected
    assert codes_of(pd.Index(CODES, dtype="str")) == expected
    assert codes_of(np.array(CODES, dtype=object)) == expected
    assert from_arrow(pa.array(["x"] + CODES).slice(1)) == expected  # offset arrays
    assert codes_of(expected) is expected
    assert codes_of(np.array([7, "007"], dtype=object)).tolist() == ["7", "007"]


def test_categories_keep_their_codes_and_give_them_back_as_they_are() -> None:
    numbers, distinct = number_codes(pa.array(["B", "A", None, "B"]))
    column = pd.Series(as_categories(numbers, distinct))
    assert column.tolist()[:2] == ["B", "A"] and column.isna().tolist() == [
        False, False, True, False]
    assert codes_of(column.cat.categories) == distinct


@pytest.mark.parametrize("categorical", [True, False])
def test_rows_are_numbered_among_the_products_present_in_code_order(categorical: bool) -> None:
    texts = pd.Series(["C", "A", "C", "B"])
    # As categories: with one no row has, in an order not sorted.
    rows = texts.astype(pd.CategoricalDtype(["C", "Z", "A", "B"])) if categorical else texts
    numbers, products = factorize_products(rows)
    assert products.tolist() == ["A", "B", "C"]
    assert numbers.tolist() == [2, 0, 2, 1]


def test_each_row_is_found_in_a_catalogue_as_its_code_is() -> None:
    catalogue = ProductCodes.from_strings(["B", "GONE", "A", "\u00c9", "C"])
    rows = pd.Series(["A", "NEW", "\u00c9", "A", "C"])
    expected = [2, -1, 3, 2, 4]
    assert row_positions(catalogue, rows).tolist() == expected
    numbers, distinct = number_codes(pa.array(rows.tolist()))
    as_read = pd.Series(as_categories(numbers, distinct))
    assert row_positions(catalogue, as_read).tolist() == expected
