import importlib
from typing import Optional

import pandas as pd
import pytest

from pipeline.generate_dataset import generate_tranche, to_csv_bytes
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT
from pipeline.data import reading
from pipeline.data.reading import read_tranche
from pipeline.data.validation import TrancheReport, validate_tranche

HEADER = b"hours_to_dispatch,orders_placed,product_code\n"


def good_rows(rows: int = 300) -> bytes:
    return to_csv_bytes(generate_tranche(rows, 3, seed=1).data).split(b"\n", 1)[1]


def check(raw: bytes, previous_rows: Optional[int] = None) -> TrancheReport:
    return validate_tranche(read_tranche(raw), previous_rows)


def test_a_clean_tranche_passes_with_numeric_types_and_every_row() -> None:
    report = check(HEADER + good_rows())
    assert report.refusals == [] and report.warnings == []
    assert len(report.data) == 300
    assert report.data[HOURS].dtype == float and report.data[ORDERS].dtype == float


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not UTF-8"),
        (b'a,b\n"unterminated,1\n1,2,3,4,5\n', "not a readable CSV"),
    ],
)
def test_a_file_that_is_not_a_csv_is_refused_with_the_reason(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check(raw)


def test_missing_columns_are_refused_by_name_and_extra_columns_only_warn() -> None:
    report = check(b"hours_to_dispatch,product_code,colour\n1,A,red\n")
    assert report.refusals == [
        "missing column(s): orders_placed "
        "(expected hours_to_dispatch, orders_placed, product_code)"
    ]
    rows = b"".join(line + b",red\n" for line in good_rows().splitlines())
    report = check(b"hours_to_dispatch,orders_placed,product_code,colour\n" + rows)
    assert report.refusals == []
    assert report.warnings == ["ignoring extra column(s): colour"]
    assert list(report.data.columns) == [HOURS, ORDERS, PRODUCT]


def test_a_header_without_rows_is_refused() -> None:
    assert check(HEADER).refusals == ["the file has a header but no rows"]


def test_every_kind_of_bad_value_is_reported_at_once_when_there_are_many() -> None:
    bad = b"abc,1,A\n-1,5,A\ninf,3,A\n,3,A\n2,,A\n3,4,\n2,inf,A\n2,-3,A\n"
    report = check(HEADER + good_rows(100) + bad)
    assert len(report.refusals) == 1
    refusal = report.refusals[0]
    assert refusal.startswith("8 of 108 rows with bad values")
    for expected in [
        "hours_to_dispatch is not a number: 1 row(s)",
        "hours_to_dispatch is negative: 1 row(s)",
        "hours_to_dispatch is not finite: 1 row(s)",
        "hours_to_dispatch is empty: 1 row(s)",
        "orders_placed is empty: 1 row(s)",
        "orders_placed is not finite: 1 row(s)",
        "orders_placed is negative: 1 row(s)",
        "product_code is empty: 1 row(s)",
    ]:
        assert expected in refusal


def test_a_few_bad_rows_and_repeated_headers_are_dropped_with_a_count() -> None:
    raw = HEADER + good_rows(300) + b"abc,1,SKU001\n" + HEADER + good_rows(100)
    report = check(raw)
    assert report.refusals == []
    assert report.warnings == [
        "dropped 1 repeated header row(s)",
        "dropped 1 of 401 rows with bad values (hours_to_dispatch is not a number: 1 row(s))",
    ]
    assert len(report.data) == 400


def test_products_with_one_row_are_kept_and_a_tranche_where_none_has_enough_is_refused() -> None:
    report = check(HEADER + good_rows() + b"1.0,3,RARE\n")
    assert report.refusals == [] and report.warnings == []
    assert "RARE" in set(report.data[PRODUCT])
    assert check(HEADER + b"1.0,3,A\n2.0,4,B\n").refusals == [
        "no product has the 3 rows needed to fit"
    ]


def test_a_tranche_much_smaller_than_the_last_one_is_refused() -> None:
    report = check(HEADER + good_rows(300), previous_rows=1000)
    assert len(report.refusals) == 1
    assert "only 300 usable rows, under 50% of the 1000" in report.refusals[0]
    assert check(HEADER + good_rows(600), previous_rows=1000).refusals == []


def test_product_codes_stay_text_even_when_they_look_like_numbers() -> None:
    report = check(HEADER + b"".join(b"%d,%d,007\n" % (i, i) for i in range(1, 5)))
    assert list(report.data[PRODUCT].unique()) == ["007"]
    assert isinstance(report.data, pd.DataFrame)


def test_padded_product_codes_are_trimmed_into_one_product_with_a_count() -> None:
    report = check(HEADER + b"1.0,3,SKU001\n2.0,5, SKU001  \n3.0,8,SKU001 \n")
    assert report.refusals == []
    assert report.warnings == ["trimmed spaces around the product code of 2 row(s)"]
    assert report.data[PRODUCT].tolist() == ["SKU001"] * 3


def test_a_code_of_spaces_alone_is_a_bad_row() -> None:
    report = check(HEADER + good_rows(300) + b"1.0,3,   \n")
    assert len(report.data) == 300
    assert any("product_code is empty" in w for w in report.warnings)


def test_crlf_line_endings_and_a_byte_order_mark_read_like_any_csv() -> None:
    clean = check(HEADER + good_rows())
    crlf = check(b"\xef\xbb\xbf" + (HEADER + good_rows()).replace(b"\n", b"\r\n"))
    assert crlf.refusals == [] and crlf.warnings == []
    assert crlf.data.equals(clean.data)


@pytest.mark.parametrize(
    "delimiter, name", [(b";", "semicolons"), (b"\t", "tabs"), (b"|", "pipes")]
)
def test_a_file_delimited_by_something_else_is_refused_naming_the_delimiter(
    delimiter: bytes, name: str
) -> None:
    raw = (HEADER + good_rows(20)).replace(b",", delimiter)
    with pytest.raises(ValueError, match=f"delimited by {name}"):
        check(raw)


def test_a_tranche_read_in_many_blocks_is_the_one_read_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = to_csv_bytes(generate_tranche(5000, 40, seed=2, zipf=1.1).data)
    whole = check(raw).data
    monkeypatch.setattr("pipeline.data.reading._BLOCK_BYTES", 4096)
    chunked = check(raw).data
    assert isinstance(chunked[PRODUCT].dtype, pd.CategoricalDtype)  # no string per row
    pd.testing.assert_frame_equal(
        chunked.astype({PRODUCT: str}), whole.astype({PRODUCT: str})
    )


def test_numeric_looking_codes_keep_their_zeros_even_when_one_block_has_only_those(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("pipeline.data.reading._BLOCK_BYTES", 64)
    rows = b"".join(b"%d,%d,SKU%d\n" % (i, i, i % 2) for i in range(1, 5))
    rows += b"".join(b"%d,%d,007\n" % (i, i) for i in range(1, 5))
    report = check(HEADER + rows)
    assert report.refusals == []
    assert sorted(set(report.data[PRODUCT].astype(str))) == ["007", "SKU0", "SKU1"]


def test_a_product_whose_only_rows_were_dropped_is_not_among_the_products() -> None:
    report = check(HEADER + good_rows() + b"1.5,-5,SKUBAD\n")
    assert report.refusals == [] and len(report.data) == 300
    # value_counts and groupby list every category: SKUBAD must not be one.
    assert sorted(report.data[PRODUCT].value_counts().index) == ["SKU001", "SKU002", "SKU003"]


QUIRKS = (
    # Missing values as pandas spells them, in each column, quoted or not.
    b"1.5,2,NA\n2.5,3,\"\"\n3.5,,SKU002\nnan,4,SKU001\nNULL,5,SKU003\n"
    # Codes quoted, holding a comma, a line end or a quote; non-ASCII; numeric-looking.
    b"1,2,\"SKU,004\"\n2,3,\"SKU\n005\"\n3,4,\"SKU\"\"006\"\n4,5,\xc3\x89T\xc3\x89\n5,6,007\n"
    # Bad values the schema drops: negative, infinite; padding the trim step removes.
    b"-1,2,SKU001\n1,inf,SKU002\n2,3, SKU001 \n1e1,+4,SKU003\n"
)


@pytest.mark.parametrize("block", [64, 1 << 22])
def test_the_fast_reader_reads_a_quirky_file_as_the_general_one_does(
    monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    raw = HEADER + good_rows(2000) + QUIRKS
    monkeypatch.setattr("pipeline.data.reading._BLOCK_BYTES", block)
    blocks = reading._clean_blocks(raw)
    assert blocks is not None
    fast = reading._typed(blocks)
    assert isinstance(fast[PRODUCT].dtype, pd.CategoricalDtype)
    general = reading._read_general(raw)
    a, b = validate_tranche(fast), validate_tranche(general)
    assert a.refusals == b.refusals == [] and a.warnings == b.warnings
    assert "trimmed spaces around the product code of 1 row(s)" in a.warnings
    pd.testing.assert_frame_equal(
        a.data.astype({PRODUCT: str}), b.data.astype({PRODUCT: str})
    )
    assert {"SKU,004", "SKU\n005", 'SKU"006', "\u00c9T\u00c9", "007"} <= set(a.data[PRODUCT])


def test_a_padded_code_among_non_ascii_ones_is_trimmed_into_the_unpadded_one() -> None:
    rows = b"".join(b"%d,%d,\xc3\x89T\xc3\x89%s\n" % (i, i, b" " if i % 2 else b"")
                    for i in range(1, 9))
    report = check(HEADER + rows + b"1,2,\xc3\x89TE\xc2\xa0\n")  # a no-break space pads too
    assert "trimmed spaces around the product code of 5 row(s)" in report.warnings
    assert sorted(set(report.data[PRODUCT])) == ["\u00c9TE", "\u00c9T\u00c9"]


def test_the_fast_reader_reads_as_missing_what_pandas_does() -> None:
    pandas_missing = importlib.import_module("pandas._libs.parsers").STR_NA_VALUES
    assert set(reading.MISSING) == set(pandas_missing)


def test_a_code_is_measured_in_characters_not_bytes() -> None:
    fits, too_long = "\u00c9" * 64, "\u00c9" * 65  # 128 and 130 bytes of UTF-8
    rows = b"".join(b"%d,%d,%s\n" % (i, i, fits.encode()) for i in range(1, 5))
    report = check(HEADER + good_rows(300) + rows + b"1,2,%s\n" % too_long.encode())
    assert fits in set(report.data[PRODUCT]) and too_long not in set(report.data[PRODUCT])
    assert any("is empty or longer than 64 characters: 1 row(s)" in w for w in report.warnings)
