"""Product codes as the bytes a model stores (ProductCodes), converted once per catalogue.

A run measures, checks for padding, matches and publishes the tranche's million codes
several times. As Python strings each pass cost a call per code; here the codes become one
UTF-8 buffer and its offsets once (the reader hands over the bytes arrow already holds), and
every later pass is array work on them. Training only: arrow converts the text.
"""
from collections import OrderedDict
from typing import Sequence, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.artifact.product_codes import ProductCodes

Codes = Union[ProductCodes, pd.Index, np.ndarray, Sequence[str]]

_REMEMBERED: "OrderedDict[int, Tuple[object, ProductCodes]]" = OrderedDict()
_REMEMBER = 4  # the reader's categories, the trimmed ones, the fitted products', another


def product_codes(codes: Codes) -> ProductCodes:
    """Return these codes as ProductCodes, in order; an index already converted is not again."""
    if isinstance(codes, ProductCodes):
        return codes
    key = id(codes)
    hit = _REMEMBERED.get(key)
    if hit is not None and hit[0] is codes:
        _REMEMBERED.move_to_end(key)
        return hit[1]
    converted = _converted(codes)
    if isinstance(codes, pd.Index):  # an index does not change; an array might
        remember(codes, converted)
    return converted


def remember(codes: pd.Index, converted: ProductCodes) -> None:
    """Keep the ProductCodes of an index (held, so that its id is not reused meanwhile)."""
    _REMEMBERED[id(codes)] = (codes, converted)
    _REMEMBERED.move_to_end(id(codes))
    while len(_REMEMBERED) > _REMEMBER:
        _REMEMBERED.popitem(last=False)


def from_arrow(texts: pa.Array) -> ProductCodes:
    """Return arrow's strings (no nulls) as ProductCodes: their bytes, offsets widened."""
    return ProductCodes(*arrow_buffers(texts))


def arrow_buffers(texts: pa.Array) -> Tuple[np.ndarray, np.ndarray]:
    """Return the UTF-8 bytes and offsets (from 0) of arrow's strings, over arrow's memory."""
    _, offsets_buffer, data_buffer = texts.buffers()
    wide = pa.types.is_large_string(texts.type) or pa.types.is_large_binary(texts.type)
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if wide else np.int32)
    offsets = offsets[texts.offset:][:len(texts) + 1]
    data = (np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None
            else np.empty(0, np.uint8))
    start, end = (int(offsets[0]), int(offsets[-1])) if len(offsets) else (0, 0)
    return data[start:end], offsets - start


def to_arrow(codes: ProductCodes) -> pa.Array:
    """Return the codes as arrow binary values over the same memory (no copy)."""
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(codes), [None, pa.py_buffer(codes.offsets),
                                        pa.py_buffer(codes.utf8)],
    )


def _converted(codes: Codes) -> ProductCodes:
    texts = np.asarray(codes, dtype=object)
    try:
        array = pa.array(texts, pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text (numbers in a notebook's frame)
        return ProductCodes.from_strings(texts)
    if array.null_count:
        return ProductCodes.from_strings(texts)  # str() of a missing one, as before
    return from_arrow(array)
