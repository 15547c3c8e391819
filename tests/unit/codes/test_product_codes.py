"""Codes are found exactly, one request's, a batch's or a catalogue's, whatever they hold."""
from typing import Dict, List

import numpy as np
from hypothesis import given, settings, strategies as st

from pipeline.codes.product_codes import ProductCodes

ODD = ["SKU001", "", "a\x00b", "a\x00", "a", "\u00c9T\u00c9", "x" * 64, "SKU 001", "sku001",
       "007", "7", "\U0001f600"]


def expected_positions(catalogue: List[str], asked: List[str]) -> List[int]:
    first: Dict[str, int] = {}
    for i, code in enumerate(catalogue):
        first.setdefault(code, i)
    return [first.get(code, -1) for code in asked]


def test_odd_codes_are_found_exactly_and_near_misses_are_not() -> None:
    catalogue = ODD[1:] + [f"P{i}" for i in range(5000)]
    asked = ODD + ["P0", "P4999", "P5000", "\u00c9T", "SKU0011", "a\x00\x00", "\ud800"]
    codes = ProductCodes.from_strings(catalogue)
    expected = expected_positions(catalogue, asked)
    assert expected[0] == -1 and expected[1] == 0 and expected[3] == 2
    assert codes.find_many(asked).tolist() == expected
    assert codes.find_many(ProductCodes.from_strings(asked[:-1])).tolist() == expected[:-1]
    assert [codes.find(code) for code in asked] == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(st.sampled_from("AB\x00\u00e9 9"), max_size=5), unique=True),
    st.lists(st.text(st.sampled_from("AB\x00\u00e9 9"), max_size=5)),
)
def test_every_look_up_finds_what_a_dict_would(catalogue: List[str], asked: List[str]) -> None:
    codes = ProductCodes.from_strings(catalogue)
    expected = expected_positions(catalogue, asked)
    assert codes.find_many(asked).tolist() == expected
    assert [codes.find(code) for code in asked] == expected
    shuffled = ProductCodes.from_strings(catalogue[::-1])  # unsorted: looked up alike
    assert shuffled.find_many(catalogue).tolist() == list(range(len(catalogue)))[::-1]


def test_a_catalogues_own_first_codes_and_a_longer_one_are_found_in_place() -> None:
    catalogue = ProductCodes.from_strings(["A", "BB", "C", "DDD"])
    first = ProductCodes.from_strings(["A", "BB"])
    assert catalogue.find_many(first).tolist() == [0, 1]
    longer = ProductCodes.from_strings(["A", "BB", "C", "DDD", "E"])
    assert catalogue.find_many(longer).tolist() == [0, 1, 2, 3, -1]
    assert catalogue.find_many(ProductCodes.from_strings(["A", "B"])).tolist() == [0, -1]


def test_nothing_is_found_in_an_empty_catalogue_and_no_codes_give_no_positions() -> None:
    assert ProductCodes.from_strings([]).find_many(["SKU001"]).tolist() == [-1]
    assert ProductCodes.from_strings([]).find("SKU001") == -1
    assert ProductCodes.from_strings(["SKU001"]).find_many([]).tolist() == []
    assert ProductCodes.from_strings(["", ""]).find_many([""]).tolist() == [0]


def test_codes_taken_and_joined_keep_their_bytes_and_order() -> None:
    codes = ProductCodes.from_strings(ODD)
    taken = codes.take(np.array([5, 0, 1]))
    assert taken.tolist() == [ODD[5], ODD[0], ODD[1]]
    assert taken.concat(codes).tolist() == taken.tolist() + ODD
    assert codes == ProductCodes.from_strings(ODD) and codes != taken
