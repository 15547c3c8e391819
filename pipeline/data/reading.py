"""Parse a tranche's CSV bytes: a clean drop fast and small, anything else as text.

A clean drop (the three columns, every number a number) is read by pyarrow's CSV reader, in
C++ on every core, and its product codes are numbered by arrow too: a million products cost
no Python string per row, and their codes are sorted once. Anything else (a repeated header,
a stray word, other columns, bytes that are not UTF-8) is read by pandas as text, so that
validation can name every problem. Both read the same things as missing (pandas' list:
"", "NA", "null", ...), so a file reads alike either way.
"""
import ctypes
import io
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from pipeline.codes.numbering import as_categories, number_codes
from pipeline.data.tranche import COLUMNS, HOURS, ORDERS, PRODUCT

_TYPED: Dict[str, Any] = {HOURS: "float64", ORDERS: "float64", PRODUCT: str}
# What pandas reads as missing by default (its documented na_values), for arrow to read alike.
MISSING = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]
_BLOCK_BYTES = 1 << 24  # parsed in parallel; bigger blocks, fewer dictionaries to unite
_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}
# Arrow's own allocator keeps what the read freed for arrow's later use, which training
# hardly makes; with the system's, numpy can reuse it.
pa.set_memory_pool(pa.system_memory_pool())


def read_tranche(raw: bytes) -> pd.DataFrame:
    """Parse CSV bytes into typed columns (codes as sorted categories), or text ones when a
    value is not a number.

    Raises:
        ValueError: the file is empty or is not CSV text.
    """
    if not raw or raw.isspace():  # isspace stops at the first other byte; strip copies
        raise ValueError("the file is empty")
    blocks = _clean_blocks(raw)
    if blocks is not None:
        del raw  # handed over (steps.FileBytes): the file's bytes go before its columns are
        return _typed(blocks)  # copied out, so that the peak holds one of the two
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


def _clean_blocks(raw: bytes) -> Optional[Dict[str, List[pa.Array]]]:
    """Parse a clean drop with arrow, blocks of the file on every core: each column's blocks;
    None if it is not one.

    A quoted code may hold a line end, so a file with any quote is split into blocks the
    slower way that allows it.
    """
    try:
        table = _arrow_table(raw)
        if sorted(table.column_names) != sorted(COLUMNS):
            return None  # other columns: validation names them
    except (pa.ArrowException, UnicodeDecodeError):  # a word where a number goes, a row of
        return None  # another width, a header that is not UTF-8: the general read says which
    return {column: list(table.column(column).chunks) for column in COLUMNS}


def _typed(blocks: Dict[str, List[pa.Array]]) -> pd.DataFrame:
    """Return a clean drop's columns, codes as sorted categories; the blocks are consumed.

    The codes are numbered among the file's distinct codes sorted (codes.numbering). Each
    number column is copied out block by block, each block let go once copied, so that the
    peak is the blocks and one block more, not the columns twice.
    """
    rows = sum(len(block) for block in blocks[HOURS])
    numbers, products = number_codes(blocks[PRODUCT])  # each block let go once numbered
    # a missing value becomes NaN, as pandas reads it
    hours, orders = (_copied(blocks[column], np.empty(rows)) for column in (HOURS, ORDERS))
    _give_back_freed_memory()
    return pd.DataFrame(
        {HOURS: hours, ORDERS: orders, PRODUCT: as_categories(numbers, products)}, copy=False
    )


def _arrow_table(raw: bytes) -> pa.Table:
    return pa_csv.read_csv(
        pa.py_buffer(raw),
        read_options=pa_csv.ReadOptions(block_size=_BLOCK_BYTES),
        parse_options=pa_csv.ParseOptions(newlines_in_values=b'"' in raw),
        convert_options=pa_csv.ConvertOptions(
            column_types={HOURS: pa.float64(), ORDERS: pa.float64(),
                          PRODUCT: pa.string()},
            null_values=MISSING, strings_can_be_null=True, quoted_strings_can_be_null=True,
        ),
    )


def _copied(chunks: List[pa.Array], into: np.ndarray) -> np.ndarray:
    """Copy the chunks' values into one array, letting each chunk go once copied."""
    start = 0
    while chunks:
        values = chunks.pop(0).to_numpy(zero_copy_only=False)
        into[start:start + len(values)] = values
        start += len(values)
    return into


def _give_back_freed_memory() -> None:
    """Return to the OS what the reader's threads freed.

    glibc keeps memory freed by a thread in that thread's own arena, which numpy, allocating
    on the main thread, never reuses: held to the end of the run and added to its peak.
    Elsewhere (macOS, musl) there is no such call, and no such arenas.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


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
