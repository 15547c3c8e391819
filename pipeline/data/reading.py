"""Parse a tranche's CSV bytes: a clean drop fast and small, anything else as text.

A clean drop (the three columns, every number a number) is read by pyarrow's CSV reader, in
C++ on every core, and its product codes are numbered there too: a million products cost
no Python string per row, and their one sort is arrow's. Anything else (a repeated header,
a stray word, other columns, bytes that are not UTF-8) is read by pandas as text, so that
validation can name every problem. Both read the same things as missing (pandas' list:
"", "NA", "null", ...), so a file reads alike either way.
"""
import io
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from pipeline.data.tranche import COLUMNS, HOURS, ORDERS, PRODUCT

_TYPED: Dict[str, Any] = {HOURS: "float64", ORDERS: "float64", PRODUCT: str}
# What pandas reads as missing by default (its documented na_values), for arrow to read alike.
MISSING = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]
_BLOCK_BYTES = 1 << 22  # arrow parses blocks of this size in parallel
_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}
# Arrow's own allocator keeps what the read freed for arrow's later use, which training
# hardly makes; the system's lets numpy reuse it (a tenth off the peak at a million products).
pa.set_memory_pool(pa.system_memory_pool())


def read_tranche(raw: bytes) -> pd.DataFrame:
    """Parse CSV bytes into typed columns (codes as sorted categories), or text ones when a
    value is not a number.

    Raises:
        ValueError: the file is empty or is not CSV text.
    """
    if not raw or raw.isspace():  # isspace stops at the first other byte; strip copies
        raise ValueError("the file is empty")
    typed = _read_typed(raw)
    if typed is not None:
        return typed
    try:
        frame = _read_general(raw)
    except UnicodeDecodeError:
        try:
            raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"the file is not UTF-8 text (byte {exc.start}): not a CSV"
            ) from exc
        raise ValueError("the file is not UTF-8 text: not a CSV") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"the file is not a readable CSV: {str(exc).strip()}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame.columns) == 1:
        header = str(frame.columns[0])
        for delimiter, name in _DELIMITERS.items():
            if header.count(delimiter) >= 1:
                raise ValueError(
                    f"the file is delimited by {name} ({delimiter!r}), not commas: its header "
                    f"is {header[:80]!r}; export it as comma-separated values"
                )
    return frame


def _read_typed(raw: bytes) -> Optional[pd.DataFrame]:
    """Read a clean drop into typed columns, codes as sorted categories; None if it is not one.

    Block by block into arrays sized for the file's lines, so that peak memory is the file,
    the final columns and one block. Arrow splits the file into blocks at line ends; a quoted
    code may hold a line end, so a file with any quote is read the slower way that allows it.
    """
    capacity = raw.count(b"\n") + 1  # rows can be no more than lines
    hours, orders = np.empty(capacity), np.empty(capacity)
    codes = np.empty(capacity, dtype=np.int32)  # each block's own numbering, then the file's
    blocks: List[pa.Array] = []  # each block's distinct codes
    ends: List[int] = []  # and the row after its last
    rows = 0
    try:
        reader = pa_csv.open_csv(
            pa.py_buffer(raw),
            read_options=pa_csv.ReadOptions(block_size=_BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(newlines_in_values=b'"' in raw),
            convert_options=pa_csv.ConvertOptions(
                column_types={HOURS: pa.float64(), ORDERS: pa.float64(),
                              PRODUCT: pa.dictionary(pa.int32(), pa.string())},
                null_values=MISSING, strings_can_be_null=True, quoted_strings_can_be_null=True,
            ),
        )
        if sorted(reader.schema.names) != sorted(COLUMNS):
            return None  # other columns: validation names them
        for batch in reader:
            end = rows + batch.num_rows
            for column, into in ((HOURS, hours), (ORDERS, orders)):
                # A missing value is NaN, as pandas reads it.
                into[rows:end] = batch.column(column).to_numpy(zero_copy_only=False)
            products = batch.column(PRODUCT)
            codes[rows:end] = pc.fill_null(products.indices, -1).to_numpy()
            blocks.append(products.dictionary.cast(pa.large_string()))
            ends.append(end)
            rows = end
    except (pa.ArrowException, UnicodeDecodeError):  # a word where a number goes, a row of
        return None  # another width, a header that is not UTF-8: the general read says which
    products = _sorted_categories(codes[:rows], blocks, ends)
    return pd.DataFrame(
        {HOURS: hours[:rows], ORDERS: orders[:rows], PRODUCT: products}, copy=False
    )


def _sorted_categories(
    codes: np.ndarray, blocks: List[pa.Array], ends: List[int]
) -> pd.Categorical:
    """Renumber each block's codes among the file's distinct codes, sorted once (arrow's
    sort, in UTF-8 order: code point order, as Python sorts)."""
    distinct = pc.dictionary_encode(
        pa.concat_arrays(blocks) if blocks else pa.array([], pa.large_string())
    )
    order = pc.sort_indices(distinct.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    numbered = rank[distinct.indices.to_numpy()]  # the blocks' codes, back to back
    start = first = 0
    for end, block in zip(ends, blocks):
        # A missing code (-1) picks the appended -1.
        renumber = np.append(numbered[first:first + len(block)], np.int32(-1))
        codes[start:end] = renumber[codes[start:end]]
        start, first = end, first + len(block)
    names = distinct.dictionary.take(pa.array(order)).to_numpy(zero_copy_only=False)
    return pd.Categorical.from_codes(  # the numbers were made valid above
        codes, categories=pd.Index(names, dtype=object), validate=False
    )


def _read_general(raw: bytes) -> pd.DataFrame:
    """Read any CSV: numbers typed where every value is one, text otherwise."""
    source = io.BytesIO(raw)
    try:
        return pd.read_csv(source, dtype=_TYPED, encoding="utf-8-sig", keep_default_na=True)
    except (ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, (pd.errors.ParserError, UnicodeDecodeError)):
            raise
    source.seek(0)
    return pd.read_csv(source, dtype=str, encoding="utf-8-sig", keep_default_na=True)
