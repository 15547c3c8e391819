"""Check a tranche before training, reporting every problem rather than the first.

What refuses a tranche (nothing is published, the run fails):
- an empty file, or one that is not a CSV of text, or one delimited by something other than
  commas (named in the refusal);
- a missing column;
- more than MAX_BAD_ROW_FRACTION of rows with bad values;
- no product with enough rows to fit;
- fewer than MIN_SIZE_RATIO times the rows of the tranche the current model was trained on.

What only warns (the run goes on):
- extra columns (ignored);
- repeated header rows, and up to MAX_BAD_ROW_FRACTION of rows with a null, a wrong type, or
  a negative or non-finite value (those rows are dropped, with a count per problem);
- product codes padded with spaces (trimmed, so " SKU001 " and "SKU001" are one product).

CRLF line endings and a UTF-8 byte-order mark are read as they are, without comment.
"""
import re
from typing import Any, List, NamedTuple, Optional, Set, Tuple

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
from pandera.errors import SchemaErrors

from pipeline.codes.numbering import as_categories, distinct_codes, number_codes
from pipeline.codes.product_codes import ProductCodes
from pipeline.data.tranche import COLUMNS, HOURS, MAX_PRODUCT_CODE_LENGTH, ORDERS, PRODUCT

MAX_BAD_ROW_FRACTION = 0.01
MIN_SIZE_RATIO = 0.5
MIN_ROWS_PER_PRODUCT = 3  # at least one product must have a line of its own to learn from


class TrancheReport(NamedTuple):
    data: pd.DataFrame  # the rows fit for training, with proper types
    refusals: List[str]  # any one of these refuses the tranche
    warnings: List[str]


def _finite(series: pd.Series) -> pd.Series:
    finite: pd.Series = pd.Series(np.isfinite(series.to_numpy(dtype=float)), index=series.index)
    return finite


def _code_length(series: pd.Series) -> pd.Series:
    """Check each code is 1 to MAX_PRODUCT_CODE_LENGTH characters, once per distinct code.

    A tranche has millions of rows but thousands of codes, so this measures the codes once.
    """
    numbers, codes = distinct_codes(series)
    lengths = codes.lengths()
    fine = np.append((lengths >= 1) & (lengths <= MAX_PRODUCT_CODE_LENGTH), True)
    return pd.Series(fine[numbers], index=series.index)  # -1 (null) is not_nullable's


ROW_SCHEMA = pa.DataFrameSchema(
    {
        HOURS: pa.Column(float, [pa.Check.ge(0), pa.Check(_finite, name="finite")]),
        ORDERS: pa.Column(float, [pa.Check.ge(0), pa.Check(_finite, name="finite")]),
        # Text, held as categories once read (one string per distinct code, not per row).
        PRODUCT: pa.Column(None, pa.Check(_code_length, name="code_length")),
    },
)  # extra columns are reported by validate_tranche, then ignored


def validate_tranche(
    frame: pd.DataFrame, previous_rows: Optional[int] = None
) -> TrancheReport:
    """Return the trainable rows of a parsed tranche, with every refusal and warning found."""
    refusals: List[str] = []
    warnings: List[str] = []
    missing = [c for c in COLUMNS if c not in frame.columns]
    extra = [c for c in frame.columns if c not in COLUMNS]
    if missing:
        refusals.append(f"missing column(s): {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    if extra:
        warnings.append(f"ignoring extra column(s): {', '.join(extra)}")
    if missing:
        return TrancheReport(frame.iloc[0:0], refusals, warnings)
    if frame.empty:
        return TrancheReport(frame, ["the file has a header but no rows"], warnings)

    if not pd.api.types.is_float_dtype(frame[HOURS]):  # a typed parse has no header rows
        headers = (frame[list(COLUMNS)] == list(COLUMNS)).all(axis=1)
        if headers.any():
            warnings.append(f"dropped {int(headers.sum())} repeated header row(s)")
            frame = frame[~headers]

    frame, padded = _trim_codes(frame)
    if padded:
        warnings.append(f"trimmed spaces around the product code of {padded} row(s)")

    clean, bad = _drop_bad_rows(frame)
    if bad and bad[0] > MAX_BAD_ROW_FRACTION * len(frame):
        refusals.append(f"{bad[1]}: more than {MAX_BAD_ROW_FRACTION:.0%} of rows")
        clean = frame
    elif bad:
        warnings.append(f"dropped {bad[1]}")

    codes, names = distinct_codes(clean[PRODUCT])
    rows_per_code = np.bincount(codes[codes >= 0], minlength=len(names))
    if not refusals and not (rows_per_code >= MIN_ROWS_PER_PRODUCT).any():
        refusals.append(f"no product has the {MIN_ROWS_PER_PRODUCT} rows needed to fit")
    if previous_rows and len(clean) < MIN_SIZE_RATIO * previous_rows:
        refusals.append(
            f"only {len(clean)} usable rows, under {MIN_SIZE_RATIO:.0%} of the "
            f"{previous_rows} the current model was trained on: is the tranche truncated?"
        )
    if isinstance(clean[PRODUCT].dtype, pd.CategoricalDtype) and (rows_per_code == 0).any():
        # Only the codes that have rows left: a notebook's groupby or value_counts on pandas
        # 2 would otherwise list products with none. (Rare: a product's every row was bad.)
        clean = clean.assign(**{PRODUCT: clean[PRODUCT].cat.remove_unused_categories()})
    return TrancheReport(clean.reset_index(drop=True), refusals, warnings)


# White space (as str.strip sees it) after or before a NUL, in codes joined by and wrapped in
# NULs: a code that starts or ends with it. A NUL inside a code can only make it match when
# nothing is padded, which the full check then settles.
_PADDED = re.compile(r"\0\s|\s\0")
_ASCII_SPACE = np.array([chr(c).isspace() for c in range(128)])


def _any_padded(codes: ProductCodes) -> bool:
    """Say whether any code may start or end with white space: each code's first and last
    byte, in numpy, when they are ASCII; not a Python call per code."""
    if not codes.isascii():
        joined = "\0" + "\0".join(codes.tolist()) + "\0"
        return _PADDED.search(joined) is not None
    starts, ends = codes.offsets[:-1], codes.offsets[1:]
    filled = ends > starts
    beside = np.concatenate([codes.utf8[starts[filled]], codes.utf8[ends[filled] - 1]])
    return bool(_ASCII_SPACE[beside].any())


def _trim_codes(frame: pd.DataFrame) -> Tuple[pd.DataFrame, int]:
    """Strip spaces around product codes, once per distinct code; return how many rows changed.

    The codes come back as categories, whichever way they were read.
    """
    categorical = isinstance(frame[PRODUCT].dtype, pd.CategoricalDtype)
    numbers, codes = distinct_codes(frame[PRODUCT])
    if not _any_padded(codes):
        if categorical:
            return frame, 0  # already one category per code: nothing to rebuild
        return frame.assign(**{PRODUCT: as_categories(numbers, codes)}), 0
    texts = codes.tolist()
    stripped = [text.strip() for text in texts]
    changed = np.flatnonzero([a != b for a, b in zip(texts, stripped)])
    padded = int(np.isin(numbers, changed).sum())
    # " SKU001" and "SKU001" become one category.
    renumber, products = number_codes(pa_arrow.array(stripped, type=pa_arrow.large_string()))
    trimmed = as_categories(np.append(renumber, np.int32(-1))[numbers], products)
    return frame.assign(**{PRODUCT: trimmed}), padded


def _drop_bad_rows(frame: pd.DataFrame) -> Tuple[pd.DataFrame, Optional[Tuple[int, str]]]:
    """Return the rows whose values pass the row schema, and how many did not, described
    with a count per problem (None: every row passed)."""
    frame, not_numbers = _to_numbers(frame)
    numbers = ~not_numbers.any(axis=1)
    schema_rows, problems = _bad_rows(frame if numbers.all() else frame[numbers])
    bad_rows = not_numbers.index[not_numbers.any(axis=1)].union(pd.Index(list(schema_rows)))
    problems = [
        f"{column} is not a number: {int(not_numbers[column].sum())} row(s)"
        for column in not_numbers.columns
        if not_numbers[column].any()
    ] + problems
    # The rows left have passed the schema: select its columns rather than check again.
    if not len(bad_rows):
        return frame[list(COLUMNS)], None
    summary = f"{len(bad_rows)} of {len(frame)} rows with bad values ({'; '.join(problems)})"
    return frame.drop(index=bad_rows)[list(COLUMNS)], (len(bad_rows), summary)


def _to_numbers(frame: pd.DataFrame) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Convert the numeric columns; return the frame and where a value was not a number."""
    not_numbers = pd.DataFrame(index=frame.index)
    converted = {}
    for column in (HOURS, ORDERS):
        if pd.api.types.is_float_dtype(frame[column]):
            not_numbers[column] = False
            continue
        numbers = pd.to_numeric(frame[column], errors="coerce")
        not_numbers[column] = frame[column].notna() & numbers.isna()
        converted[column] = numbers.astype(float)
    return (frame.assign(**converted) if converted else frame), not_numbers


def _bad_rows(frame: pd.DataFrame) -> Tuple[Set[Any], List[str]]:
    """Return the index of rows failing the row schema and a count per problem."""
    try:
        ROW_SCHEMA.validate(frame, lazy=True, inplace=True)  # no copy: nothing is coerced
        return set(), []
    except SchemaErrors as exc:
        cases = exc.failure_cases
    cases = cases[cases["index"].notna()]
    problems = []
    for (column, check), group in cases.groupby(["column", "check"], sort=True):
        rows = group["index"].nunique()
        problems.append(f"{column} {_describe(str(check))}: {rows} row(s)")
    return set(cases["index"].tolist()), problems


def _describe(check: str) -> str:
    if check == "not_nullable":
        return "is empty"
    if check.startswith("greater_than_or_equal_to"):
        return "is negative"
    if check == "finite":
        return "is not finite"
    if check == "code_length":
        return f"is empty or longer than {MAX_PRODUCT_CODE_LENGTH} characters"
    return f"fails {check}"
