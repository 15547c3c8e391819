"""Matching catalogues in one hash join: the same positions as the service's look-up."""
import numpy as np
import pandas as pd

from pipeline.artifact.product_codes import ProductCodes
from pipeline.modelling.code_lookup import positions_in

ODD = ["SKU001", "", "a\x00b", "\u00c9T\u00c9", "x" * 64, "SKU 001", "sku001", "007", "7"]


def test_positions_are_those_the_service_finds_whatever_the_codes() -> None:
    catalogue = ProductCodes.from_strings(ODD[1:] + [f"P{i}" for i in range(5000)])
    asked = ODD + ["P0", "P4999", "P5000", "\u00c9T", "SKU0011"]
    expected = catalogue.find_many(asked).tolist()
    assert expected[0] == -1 and expected[1] == 0 and -1 in expected
    for codes in (asked, pd.Index(asked, dtype=object), ProductCodes.from_strings(asked)):
        assert positions_in(catalogue, codes).tolist() == expected


def test_nothing_matches_an_empty_catalogue_and_no_codes_give_no_positions() -> None:
    assert positions_in(ProductCodes.from_strings([]), ["SKU001"]).tolist() == [-1]
    assert positions_in(ProductCodes.from_strings(["SKU001"]), []).tolist() == []


def test_a_catalogues_first_codes_are_found_in_place_and_others_are_not_mistaken_for_them(
) -> None:
    catalogue = ProductCodes.from_strings(["A", "BB", "", "C", "DDD"])
    assert positions_in(catalogue, ["A", "BB", ""]).tolist() == [0, 1, 2]
    every = pd.Index(["A", "BB", "", "C", "DDD"])
    assert positions_in(catalogue, every).tolist() == [0, 1, 2, 3, 4]
    assert positions_in(catalogue, ["A", "B"]).tolist() == [0, -1]  # same bytes, other split
    assert positions_in(catalogue, ["AB", "B"]).tolist() == [-1, -1]
    assert positions_in(catalogue, catalogue.take(np.array([1, 2, 3]))).tolist() == [1, 2, 3]
    assert positions_in(catalogue, ["A", "BB", "", "C", "DDD", "E"]).tolist() == [
        0, 1, 2, 3, 4, -1]
    empty = ProductCodes.from_strings(["", ""])
    assert positions_in(empty, [""]).tolist() == [0]


def test_a_join_asked_the_other_way_round_gives_the_positions_a_join_would() -> None:
    live = ProductCodes.from_strings(["B", "GONE", "A", "\u00c9", "C"])
    this_week = ProductCodes.from_strings(["A", "B", "C", "NEW", "\u00c9", "D"])
    assert positions_in(this_week, live).tolist() == [1, -1, 0, 4, 2]
    assert positions_in(live, this_week).tolist() == [2, 0, 4, -1, 3, -1]  # the reverse
    fresh = ProductCodes.from_strings(this_week.tolist())  # another catalogue, joined anew
    assert positions_in(live, fresh).tolist() == [2, 0, 4, -1, 3, -1]
