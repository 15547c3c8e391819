"""A tranche with many codes is numbered by the codes' keys: it reads exactly as arrow's way."""
from typing import List

import pandas as pd
import pytest

from pipeline.data import reading
from pipeline.data.tranche import PRODUCT

HEADER = b"hours_to_dispatch,orders_placed,product_code\n"


def tranche(codes: List[str]) -> bytes:
    rows = [f"{1 + i % 7}.5,{i % 50},{code}\n" for i, code in enumerate(codes * 40)]
    return HEADER + "".join(rows).encode("utf-8")


CATALOGUES = {
    "part numbers": [f"SKU{i:07d}" for i in range(0, 10**6, 3331)],
    "mixed lengths": [f"P{i}" for i in range(300)] + ["P", "Q12", "Z"],
    "non-ASCII": [f"\u00c9T{i:03d}" for i in range(200)] + ["\u00e9", "caf\u00e9"],
    "missing codes": [f"SKU{i:04d}" for i in range(250)] + ["", "NA", "null"],
    "too varied for a key": [f"{i:09d}{i * 7919 % 1000:03d}X" for i in range(300)],
}


@pytest.mark.parametrize("name", sorted(CATALOGUES))
def test_many_codes_read_as_arrow_reads_them(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tranche(CATALOGUES[name])
    arrows = reading.read_tranche(raw)  # a small file: arrow numbers the codes
    monkeypatch.setattr(reading, "_PROBE_BYTES", 4096)
    monkeypatch.setattr(reading, "KEYED_FROM", 10)
    assert reading._many_codes(raw)
    keyed = reading.read_tranche(raw)
    pd.testing.assert_frame_equal(keyed, arrows)
    assert list(keyed[PRODUCT].cat.categories) == sorted(set(arrows[PRODUCT].dropna()))
    if name == "missing codes":
        assert keyed[PRODUCT].isna().sum() == 3 * 40


def test_a_file_whose_first_rows_show_few_codes_is_numbered_by_arrow(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tranche([f"SKU{i:03d}" for i in range(30)])
    monkeypatch.setattr(reading, "_PROBE_BYTES", 4096)
    assert not reading._many_codes(raw)  # 30 codes, far below KEYED_FROM
    monkeypatch.setattr(reading, "KEYED_FROM", 10)
    assert reading._many_codes(raw)
    assert not reading._many_codes(raw.replace(b"SKU001\n", b'"SKU001"\n'))  # quoted
