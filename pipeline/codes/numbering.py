"""Number a tranche's product codes, and find its rows' products in a catalogue (training).

A tranche's codes are numbered once, when it is read: each row's number is its code's rank
among the distinct codes sorted by their bytes (UTF-8 order, which is code point order, as
Python sorts), so that the products a model is fitted on are in code order. pandas holds
them as categories whose values are arrow strings, so the codes' bytes are handed on as
arrow holds them, never as a Python string per code; every later match of rows against a
catalogue is ProductCodes.find_many on those bytes.
"""
from typing import List, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.codes.product_codes import ProductCodes

Texts = Union[pa.Array, pa.ChunkedArray]
Values = Union[pd.Index, pd.Series, np.ndarray, Sequence[str]]
# pandas' default text type since 3.0: values held by arrow, missing values as NaN.
ARROW_TEXT = pd.StringDtype("pyarrow", na_value=np.nan)


def number_codes(texts: Union[Texts, List[pa.Array]]) -> Tuple[np.ndarray, ProductCodes]:
    """Return each code's rank among the distinct codes sorted by their bytes (-1: missing),
    and those codes. A list of blocks is consumed: each goes once numbered.

    Arrow numbers the codes of every block in one pass, into one dictionary shared by the
    blocks (numbering each block apart, as a dictionary read does, and uniting the blocks'
    dictionaries after, hashes every distinct code once per block: at a million products,
    more than the pass costs).
    """
    blocks = texts if isinstance(texts, list) else (
        list(texts.chunks) if isinstance(texts, pa.ChunkedArray) else [texts])
    chunked = pa.chunked_array(blocks, blocks[0].type if blocks else pa.string())
    blocks.clear()
    chunked = pc.dictionary_encode(chunked)  # text: one dictionary, shared by the blocks
    dictionary = (chunked.chunk(0).dictionary if chunked.num_chunks
                  else pa.array([], pa.string()))
    order = pc.sort_indices(dictionary).to_numpy()
    rank = np.empty(len(order) + 1, dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    rank[-1] = -1  # a missing code's index (null, filled with -1) picks this
    numbers, start = np.empty(len(chunked), dtype=np.int32), 0
    blocks = list(chunked.chunks)
    del chunked
    while blocks:
        indices = pc.fill_null(blocks.pop(0).indices, -1).to_numpy()
        numbers[start:start + len(indices)] = rank[indices]
        start += len(indices)
    return numbers, from_arrow(dictionary.take(pa.array(order)))


def from_arrow(texts: pa.Array) -> ProductCodes:
    """Return arrow's strings (no nulls) as ProductCodes: their bytes, over arrow's memory."""
    _, offsets_buffer, data_buffer = texts.buffers()
    wide = pa.types.is_large_string(texts.type) or pa.types.is_large_binary(texts.type)
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if wide else np.int32)
    offsets = offsets[texts.offset:][:len(texts) + 1]
    data = (np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None
            else np.empty(0, np.uint8))
    start, end = (int(offsets[0]), int(offsets[-1])) if len(offsets) else (0, 0)
    return ProductCodes(data[start:end], offsets - start if start else offsets)


def codes_of(values: Union[ProductCodes, Values]) -> ProductCodes:
    """Return these codes (none missing) as ProductCodes, in order: arrow's bytes as they lie
    when pandas holds them in arrow, converted otherwise."""
    if isinstance(values, ProductCodes):
        return values
    texts = _arrow_texts(values)
    if texts.null_count:
        return ProductCodes.from_strings(map(str, values))  # str() of a missing one
    return from_arrow(texts)


def distinct_codes(column: pd.Series) -> Tuple[np.ndarray, ProductCodes]:
    """Return each row's number among the column's distinct codes (-1: missing) and those
    codes: categories as they are, text numbered in code order."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(), codes_of(column.cat.categories)
    return number_codes(_arrow_texts(column))


def as_categories(numbers: np.ndarray, codes: ProductCodes) -> pd.Categorical:
    """Return rows numbered among these sorted distinct codes as pandas categories, whose
    values stay in arrow (the numbers were made valid by the caller; -1: missing)."""
    names = pd.Index(pd.array(_to_arrow(codes), dtype=ARROW_TEXT))
    return pd.Categorical.from_codes(numbers, categories=names, validate=False)


def factorize_products(column: pd.Series) -> Tuple[np.ndarray, ProductCodes]:
    """Return each row's product number and the products, sorted by code (as served).

    Only the codes present count: a category with no rows left is not a product.
    """
    if not isinstance(column.dtype, pd.CategoricalDtype):
        numbers, products = number_codes(_arrow_texts(column))
        if len(numbers) and numbers.min() < 0:
            raise ValueError("product codes must not be empty")
        return numbers.astype(np.int64), products
    category = column.cat.codes.to_numpy()
    if len(category) and category.min() < 0:
        raise ValueError("product codes must not be empty")
    categories = column.cat.categories
    used = np.flatnonzero(np.bincount(category, minlength=len(categories)))
    if len(used) == len(categories) and categories.is_monotonic_increasing:
        return category.astype(np.int64), codes_of(categories)  # as the reader leaves them
    ranks, products = number_codes(_arrow_texts(categories[used]))
    renumber = np.full(len(categories), -1, dtype=np.int64)
    renumber[used] = ranks
    return renumber[category], products


def row_positions(catalogue: ProductCodes, column: pd.Series) -> np.ndarray:
    """Return each row's position in `catalogue` (-1: not one of its codes), each distinct
    code looked up once."""
    numbers, distinct = distinct_codes(column)
    if catalogue.starts_with(distinct):  # its own first codes (a model's training rows'):
        return numbers.astype(np.int64)  # each row's number is its position
    found = catalogue.find_many(distinct)
    positions: np.ndarray = np.append(found, -1)[numbers]  # a missing code picks the -1
    return positions


def _arrow_texts(values: Values) -> pa.Array:
    """The values as arrow strings (missing ones null): as they lie when arrow holds them,
    each one's str() when they are not all text (numbers in a notebook's frame)."""
    try:
        texts = pa.array(values, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        texts = pa.array([None if pd.isna(v) else str(v) for v in values], pa.large_string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    return texts


def _to_arrow(codes: ProductCodes) -> pa.Array:
    """The codes as arrow strings over the same memory (no copy)."""
    return pa.LargeStringArray.from_buffers(
        len(codes), pa.py_buffer(codes.offsets), pa.py_buffer(codes.utf8)
    )
