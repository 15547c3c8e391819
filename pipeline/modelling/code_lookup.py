"""Match one set of product codes against another in one pass, for training.

A weekly run matches catalogues of a million codes several times (this week's against the
live model's, its dropped ones, the tranche's categories). Matching them as Python strings
cost a hash and a string per code each time. Codes that fit 64-bit keys (code_keys) are
matched by numpy's binary search over the keys; any others by arrow's hash join of the
models' code bytes where they lie (ProductCodes is already arrow's binary layout), in C++.
The service does not use this: it looks codes up one request at a time (ProductCodes.find).
"""
from typing import List, Tuple

import numpy as np
import pyarrow.compute as pc

from pipeline.artifact.product_codes import ProductCodes
from pipeline.data.code_bytes import Codes, product_codes, to_arrow
from pipeline.data.code_keys import positions_by_key, sort_keys


def positions_in(catalogue: ProductCodes, codes: Codes) -> np.ndarray:
    """Return each code's position in `catalogue` (-1: not one of its codes)."""
    if not len(codes):
        return np.empty(0, dtype=np.int64)
    wanted = product_codes(codes)
    if catalogue.starts_with(wanted):  # a model's own products, as its training rows have them
        return np.arange(len(codes), dtype=np.int64)
    for earlier in _recent:
        if earlier[0] is catalogue and earlier[1] is wanted:
            return earlier[2]  # the same join, made for another score of the same rows
        if earlier[0] is wanted and earlier[1] is catalogue:
            return _inverse(earlier[2], len(wanted))  # the join the other way round, made
    keys = sort_keys(catalogue, wanted)
    positions: np.ndarray
    if keys is not None:
        positions = positions_by_key(*keys)
    else:
        found = pc.index_in(to_arrow(wanted), value_set=to_arrow(catalogue))
        positions = pc.fill_null(found, -1).to_numpy().astype(np.int64)
    positions.flags.writeable = False  # handed out again
    _recent[:] = [(catalogue, wanted, positions)] + _recent[:_RECENT - 1]
    return positions


# The last few joins (catalogue, codes, positions; each held, so no id is reused): a run
# scores the same models on the same rows several times; carrying products forward matches
# the live model's codes among this week's, and the champion comparison then asks the
# reverse. A catalogue's codes are distinct.
_recent: List[Tuple[ProductCodes, ProductCodes, np.ndarray]] = []
_RECENT = 8


def _inverse(positions: np.ndarray, size: int) -> np.ndarray:
    """Each catalogue code's position among the codes, from the codes' among it (both are
    distinct codes, so the match is one to one)."""
    inverse = np.full(size, -1, dtype=np.int64)
    found = np.flatnonzero(positions >= 0)
    inverse[positions[found]] = found
    return inverse
