"""Parse a tranche's CSV bytes: a clean drop fast and small, anything else as text.

A clean drop (the three columns, every number a number) is read by pyarrow's CSV reader, in
C++ on every core, and its product codes are numbered there too, or, when there are many,
by their 64-bit keys (code_keys): a million products cost no Python string per row, and
their codes are sorted once. Anything else (a repeated header,
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
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from pipeline.artifact.product_codes import ProductCodes
from pipeline.data import code_bytes, code_keys
from pipeline.data.tranche import COLUMNS, HOURS, ORDERS, PRODUCT

_TYPED: Dict[str, Any] = {HOURS: "float64", ORDERS: "float64", PRODUCT: str}
# What pandas reads as missing by default (its documented na_values), for arrow to read alike.
MISSING = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]
_BLOCK_BYTES = 1 << 24  # parsed in parallel; bigger blocks, fewer codes to unite
# Distinct codes in the file's first _PROBE_BYTES (about 100k rows) from which its codes are
# numbered by their keys. Reading 4M rows (Zipf 0.8), keys against arrow's tables: 1.35 times
# as long at 10k products (9.8k distinct in the first rows), 1.30 at 30k (24k), 1.03 at 100k
# (42k) and at 300k (58k), 0.89 at 786k (68k). So keys from about 300k products on.
KEYED_FROM = 50_000
_PROBE_BYTES = 2 << 20
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

    Arrow parses blocks of the file on every core: each block's codes numbered there, or,
    when the file's first rows show many codes, kept as text and numbered by their keys
    (_keyed_categories). Each column is then copied out block by block, each block let go
    once copied, so that the peak is the table and one block more, not the table twice. A
    quoted code may hold a line end, so a file with any quote is split into blocks the slower
    way that allows it.
    """
    keyed = _many_codes(raw)
    try:
        table = _arrow_table(raw, pa.string() if keyed else pa.dictionary(pa.int32(), pa.string()))
        if sorted(table.column_names) != sorted(COLUMNS):
            return None  # other columns: validation names them
    except (pa.ArrowException, UnicodeDecodeError):  # a word where a number goes, a row of
        return None  # another width, a header that is not UTF-8: the general read says which
    rows = table.num_rows
    codes = list(table.column(PRODUCT).chunks)
    table = table.drop_columns([PRODUCT])
    products = _keyed_categories(codes, rows) if keyed else None
    if products is None:
        if keyed:  # codes that no key holds: numbered by arrow after all
            codes = [pc.dictionary_encode(codes.pop(0)) for _ in range(len(codes))]
        products = _sorted_categories(
            list(pa.chunked_array(codes, pa.dictionary(pa.int32(), pa.string()))
                 .unify_dictionaries().chunks), rows)
    del codes
    numbers = {}
    for column in (HOURS, ORDERS):  # a missing value becomes NaN, as pandas reads it
        chunks = list(table.column(column).chunks)
        table = table.drop_columns([column])
        numbers[column] = _copied(chunks, np.empty(rows))
    del table
    _give_back_freed_memory()
    return pd.DataFrame(
        {HOURS: numbers[HOURS], ORDERS: numbers[ORDERS], PRODUCT: products}, copy=False
    )


def _arrow_table(raw: bytes, codes: pa.DataType) -> pa.Table:
    return pa_csv.read_csv(
        pa.py_buffer(raw),
        read_options=pa_csv.ReadOptions(block_size=_BLOCK_BYTES),
        parse_options=pa_csv.ParseOptions(newlines_in_values=b'"' in raw),
        convert_options=pa_csv.ConvertOptions(
            column_types={HOURS: pa.float64(), ORDERS: pa.float64(), PRODUCT: codes},
            null_values=MISSING, strings_can_be_null=True, quoted_strings_can_be_null=True,
        ),
    )


def _many_codes(raw: bytes) -> bool:
    """Say whether the file's first rows (about 100k) hold more than KEYED_FROM distinct
    codes: arrow's hash tables of codes then outgrow the processor's cache, and numbering
    the codes' integer keys is faster."""
    head = raw[:_PROBE_BYTES]
    if len(raw) <= _PROBE_BYTES or b'"' in head:  # small, or quoted: arrow's way
        return False
    try:
        probe = _arrow_table(head[:head.rfind(b"\n") + 1], pa.string())
        return bool(pc.count_distinct(probe.column(PRODUCT)).as_py() > KEYED_FROM)
    except (pa.ArrowException, KeyError, UnicodeDecodeError):
        return False  # the whole read says what is wrong


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
    on the main thread, never reuses: 140 to 190 MB at 4M rows, held to the end of the run
    and added to its peak. Elsewhere (macOS, musl) there is no such call, and no such arenas.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


def _keyed_categories(texts: List[pa.Array], rows: int) -> Optional[pd.Categorical]:
    """Number each row's code among the file's distinct codes sorted, by their 64-bit keys
    (code_keys); None when the codes do not fit one.

    pandas' hash table of integers numbers the rows' keys and numpy sorts the distinct ones:
    no string is hashed or compared, and the distinct codes' text is rebuilt from their keys.
    A missing code is numbered -1.
    """
    present = (np.concatenate([text.is_valid().to_numpy(zero_copy_only=False) for text in texts])
               if any(text.null_count for text in texts) else None)
    found = code_keys.keyed(
        [code_bytes.arrow_buffers(text.drop_null() if text.null_count else text)
         for text in texts]
    )
    if found is None:
        return None
    keys, layout = found
    texts.clear()  # keyed: the blocks' text goes
    seen, distinct = pd.factorize(np.concatenate(keys) if keys else np.empty(0, np.uint64))
    del keys
    order = np.argsort(distinct)
    rank = _ranks(order)
    if present is None:
        numbers = rank[seen]
    else:
        numbers = np.full(rows, -1, dtype=np.int32)
        numbers[present] = rank[seen]
    del seen
    return _categorical(numbers, code_keys.codes_of(distinct[order], layout))


def _sorted_categories(blocks: List[pa.DictionaryArray], rows: int) -> pd.Categorical:
    """Sort the file's distinct codes once (arrow's sort, in UTF-8 order: code point order,
    as Python sorts) and number each row's code among them.

    The blocks share one dictionary (the file's distinct codes); they are let go as copied.
    """
    dictionary = blocks[0].dictionary if blocks else pa.array([], pa.string())
    order = _code_order(dictionary)
    rank = _ranks(order)
    texts = dictionary.take(pa.array(order))
    del dictionary
    numbers, start = np.empty(rows, dtype=np.int32), 0
    while blocks:
        indices = pc.fill_null(blocks.pop(0).indices, -1).to_numpy()
        numbers[start:start + len(indices)] = rank[indices]
        start += len(indices)
    return _categorical(numbers, code_bytes.from_arrow(texts))


def _ranks(order: np.ndarray) -> np.ndarray:
    """Each code's rank among the sorted, from the order that sorts them; a missing code
    (-1) picks the -1 after them."""
    rank = np.empty(len(order) + 1, dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    rank[-1] = -1
    return rank


def _categorical(numbers: np.ndarray, codes: ProductCodes) -> pd.Categorical:
    """The rows' numbers among these sorted distinct codes, as categories whose bytes are
    remembered for what follows (the numbers were made valid by their callers)."""
    names = pd.Index(codes.tolist(), dtype=object)
    code_bytes.remember(names, codes)
    return pd.Categorical.from_codes(numbers, categories=names, validate=False)


def _code_order(texts: pa.Array) -> np.ndarray:
    """Return the order of distinct codes by their bytes (UTF-8 order: code point order):
    numpy's sort of their keys when they fit one (code_keys), arrow's sort otherwise."""
    keys = code_keys.sort_keys(code_bytes.from_arrow(texts))
    order: np.ndarray = pc.sort_indices(texts).to_numpy() if keys is None else np.argsort(keys[0])
    return order


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
