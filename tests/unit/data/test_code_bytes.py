import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.artifact.product_codes import ProductCodes
from pipeline.data import code_bytes

CODES = ["SKU001", "", "\u00c9T\u00c9", "a,b", "SKU001x"]


def test_codes_in_any_form_become_the_same_bytes_in_order() -> None:
    expected = ProductCodes.from_strings(CODES)
    assert code_bytes.product_codes(CODES) == expected
    assert code_bytes.product_codes(pd.Index(CODES, dtype=object)) == expected
    assert code_bytes.product_codes(np.array(CODES, dtype=object)) == expected
    assert code_bytes.from_arrow(pa.array(["x"] + CODES).slice(1)) == expected  # offset arrays
    assert code_bytes.product_codes(expected) is expected


def test_codes_that_are_not_text_are_converted_as_their_text() -> None:
    assert code_bytes.product_codes(np.array([7, "007"], dtype=object)).tolist() == ["7", "007"]


def test_arrow_sees_the_codes_bytes_as_they_are() -> None:
    codes = ProductCodes.from_strings(CODES)
    assert code_bytes.to_arrow(codes).to_pylist() == [c.encode() for c in CODES]
