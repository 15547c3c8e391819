"""A clean tranche is read by arrow, a messy one by pandas: the same rows, codes as text."""
from typing import List

import pandas as pd
import pytest

from pipeline.data.reading import read_tranche
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT

HEADER = b"hours_to_dispatch,orders_placed,product_code\n"


def tranche(codes: List[str]) -> bytes:
    rows = [f"{1 + i % 7}.5,{i % 50},{code}\n" for i, code in enumerate(codes * 40)]
    return HEADER + "".join(rows).encode("utf-8")


CATALOGUES = {
    "part numbers": [f"SKU{i:07d}" for i in range(0, 10**6, 3331)],
    "mixed lengths": [f"P{i}" for i in range(300)] + ["P", "Q12", "Z"],
    "non-ASCII": [f"\u00c9T{i:03d}" for i in range(200)] + ["\u00e9", "caf\u00e9"],
    "missing codes": [f"SKU{i:04d}" for i in range(250)] + ["", "NA", "null"],
}


@pytest.mark.parametrize("name", sorted(CATALOGUES))
def test_codes_read_as_categories_in_code_order_as_pandas_reads_them(name: str) -> None:
    raw = tranche(CATALOGUES[name])
    read = read_tranche(raw)
    texts = read_tranche(raw + b"a stray line that is not numbers,x,y\n")  # pandas, as text
    assert isinstance(read[PRODUCT].dtype, pd.CategoricalDtype)
    assert list(read[PRODUCT].cat.categories) == sorted(set(read[PRODUCT].dropna()))
    assert read[PRODUCT].astype(object).tolist() == texts[PRODUCT][:-1].astype(object).tolist()
    assert read[ORDERS].tolist() == pd.to_numeric(texts[ORDERS][:-1]).tolist()
    assert read[HOURS].dtype == float
    if name == "missing codes":
        assert read[PRODUCT].isna().sum() == 3 * 40
