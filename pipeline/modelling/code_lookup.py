"""Match one set of product codes against another in one hash join, for training.

A weekly run matches catalogues of a million codes several times (this week's against the
live model's, its dropped ones, the tranche's categories). Matching them as Python strings
cost a hash and a string per code each time; arrow matches the models' code bytes where they
lie (ProductCodes is already arrow's binary layout: one buffer and its offsets), in C++.
The service does not use this: it looks codes up one request at a time (ProductCodes.find).
"""
from typing import Any, List, Sequence, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.artifact.product_codes import ProductCodes

Codes = Union[ProductCodes, pd.Index, Sequence[str]]


def positions_in(catalogue: ProductCodes, codes: Codes) -> np.ndarray:
    """Return each code's position in `catalogue` (-1: not one of its codes)."""
    if not len(codes):
        return np.empty(0, dtype=np.int64)
    wanted = _binary(codes)
    if _starts(catalogue, wanted):  # a model's own products, as its training rows have them
        return np.arange(len(codes), dtype=np.int64)
    found = pc.index_in(wanted, value_set=_binary(catalogue))
    positions: np.ndarray = pc.fill_null(found, -1).to_numpy().astype(np.int64)
    return positions


def _starts(catalogue: ProductCodes, codes: pa.Array) -> bool:
    """Say whether these codes are the catalogue's first ones, in order: two memory compares."""
    if len(codes) > len(catalogue):
        return False
    offsets = np.frombuffer(codes.buffers()[1], dtype=np.int64)[codes.offset:][:len(codes) + 1]
    stored = codes.buffers()[2]
    data = np.frombuffer(stored, dtype=np.uint8) if stored is not None else np.empty(0, np.uint8)
    start, end = int(offsets[0]), int(offsets[-1])
    return bool(np.array_equal(offsets - start, catalogue.offsets[:len(codes) + 1])
                and np.array_equal(data[start:end], catalogue.utf8[:end - start]))


def _binary(codes: Codes) -> pa.Array:
    if isinstance(codes, ProductCodes):
        return pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), len(codes), [None, pa.py_buffer(codes.offsets),
                                            pa.py_buffer(codes.utf8)],
        )
    if isinstance(codes, pd.Index):
        if _converted[0] is not codes:  # the tranche's categories, matched against each model
            _converted[:] = [codes, _text_to_binary(codes)]
        converted: pa.Array = _converted[1]
        return converted
    return _text_to_binary(codes)


_converted: List[Any] = [None, None]  # the last index converted, and its arrow array


def _text_to_binary(codes: Union[pd.Index, Sequence[str]]) -> pa.Array:
    texts = np.asarray(codes, dtype=object)
    return pa.array(texts, pa.large_string()).cast(pa.large_binary())  # a view, not a copy
