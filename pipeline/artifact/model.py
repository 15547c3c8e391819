"""The served model: one straight line per product, as plain numbers.

Training fits it with a scikit-learn estimator (pipeline/modelling/estimator.py), but what is saved
and served is only codes, intercepts and slopes: loading it never depends on the library
versions that trained it (version skew on unpickling is what breaks peers' services), and
the service imports neither scikit-learn nor scipy.

The artifact is numpy arrays (format 2): a million products load in a fraction of a second
and take about 40 bytes each, where format 1's Python lists took seconds and hundreds of
bytes each. Format 1 artifacts (every model published before) still load.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Optional, Sequence, Union

import numpy as np

from pipeline.codes.product_codes import ProductCodes

Numbers = Union[Sequence[float], np.ndarray]

# The largest queue the API takes: far above any day's, and every estimate up to it must be
# a number (registry.check_model_parameters).
MAX_ORDERS_PLACED = 1_000_000

ARTIFACT_FORMAT = "time-to-dispatch/per-product-linear/2"
LIST_FORMAT = "time-to-dispatch/per-product-linear/1"  # Python lists, before the arrays
READABLE_FORMATS = (ARTIFACT_FORMAT, LIST_FORMAT)


def line_hours(intercepts: np.ndarray, slopes: np.ndarray, at: Any, orders: Any) -> Any:
    """Return the lines' hours at these queues, not floored (a promise starts from them).

    `at` is a position or an array of them, `orders` a number or an array: the same IEEE
    operations either way, so one order's answer equals the batch's.
    """
    return intercepts[at] + slopes[at] * orders


def served_hours(hours: Any) -> Any:
    """Return hours as served: never below zero (and 0.0, never -0.0); for one order as
    for many, the same IEEE operations (a ufunc call on one number would cost more than
    the rest of its estimate)."""
    if isinstance(hours, np.ndarray):
        return np.maximum(hours, 0.0) + 0.0
    return max(float(hours), 0.0) + 0.0


@dataclass(frozen=True)
class CatalogueState:
    """Which products the model carries, and which it has dropped (and for how long).

    `weeks_missing[i]` counts the tranches in a row product i has been missing from (0: it had
    rows in the one this model learned from). `dropped` are products retired and not seen
    since, with the tranches since each was dropped: the service says "dropped" for them.
    """

    weeks_missing: np.ndarray
    dropped: ProductCodes
    weeks_dropped: np.ndarray


@dataclass(frozen=True, eq=False)
class ProductLinearModel:
    """Hours to dispatch = intercept[product] + slope[product] * orders placed."""

    product_codes: ProductCodes
    intercepts: np.ndarray
    slopes: np.ndarray
    catalogue: CatalogueState = field(default=None, compare=False)  # type: ignore[assignment]

    def __init__(
        self,
        product_codes: Union[ProductCodes, Iterable[str]],
        intercepts: Numbers,
        slopes: Numbers,
        catalogue: Optional[CatalogueState] = None,
    ) -> None:
        codes = ProductCodes.of(product_codes)
        a = np.array(intercepts, dtype=np.float64)
        b = np.array(slopes, dtype=np.float64)
        if not len(codes) == len(a) == len(b) or a.ndim != 1 or b.ndim != 1:
            raise ValueError("product_codes, intercepts and slopes differ in length")
        if catalogue is None:
            catalogue = CatalogueState(
                np.zeros(len(codes), np.int16), ProductCodes.from_strings(()),
                np.zeros(0, np.int16),
            )
        if len(catalogue.weeks_missing) != len(codes):
            raise ValueError("weeks_missing differs in length from product_codes")
        a.flags.writeable = b.flags.writeable = False
        object.__setattr__(self, "product_codes", codes)
        object.__setattr__(self, "intercepts", a)
        object.__setattr__(self, "slopes", b)
        object.__setattr__(self, "catalogue", catalogue)

    def __len__(self) -> int:
        return len(self.product_codes)

    def position(self, product_code: str) -> int:
        """Return the product's position, -1 for one the model does not answer."""
        return self.product_codes.find(product_code)

    def knows(self, product_code: str) -> bool:
        return self.position(product_code) >= 0

    def line(self, at: Any, orders_placed: Any) -> Any:
        """Return the lines' hours of the products at `at`, not floored (line_hours)."""
        return line_hours(self.intercepts, self.slopes, at, orders_placed)

    def hours(self, at: Any, orders_placed: Any) -> Any:
        """Return the hours served for the products at `at` (one or many positions)."""
        return served_hours(self.line(at, orders_placed))

    def predict_one(self, product_code: str, orders_placed: float) -> float:
        """Estimate one order's hours, never below zero. KeyError for an unknown product."""
        i = self.position(product_code)
        if i < 0:
            raise KeyError(product_code)
        return float(self.hours(i, orders_placed))

    def predict(self, product_codes: Sequence[str], orders_placed: np.ndarray) -> np.ndarray:
        """Estimate many orders at once, never below zero. KeyError for an unknown product."""
        idx = self.product_codes.find_many(list(product_codes))
        if (idx < 0).any():
            raise KeyError(product_codes[int(np.flatnonzero(idx < 0)[0])])
        hours: np.ndarray = self.hours(idx, np.asarray(orders_placed, float))
        return hours

    def to_artifact(self) -> Dict[str, Any]:
        """Return plain numpy arrays: loadable by any numpy version, with no other library."""
        state = self.catalogue
        return {
            "format": ARTIFACT_FORMAT,
            "codes_utf8": self.product_codes.utf8,
            "code_offsets": _narrowed(self.product_codes.offsets),
            "intercepts": np.asarray(self.intercepts),
            "slopes": np.asarray(self.slopes),
            "weeks_missing": np.asarray(state.weeks_missing, dtype=np.int16),
            "dropped_utf8": state.dropped.utf8,
            "dropped_offsets": _narrowed(state.dropped.offsets),
            "weeks_dropped": np.asarray(state.weeks_dropped, dtype=np.int16),
        }

    @classmethod
    def from_artifact(cls, artifact: Any) -> "ProductLinearModel":
        """Rebuild a model from `to_artifact` data (either format); ValueError if it is not one.

        A format 1 artifact knows nothing of carried or dropped products: its metadata does
        (registry.catalogue_state).
        """
        found = artifact.get("format") if isinstance(artifact, dict) else type(artifact)
        if found not in READABLE_FORMATS:
            raise ValueError(f"artifact format is {found!r}, this code reads {READABLE_FORMATS}")
        if found == LIST_FORMAT:
            return cls(
                [str(c) for c in artifact["product_codes"]],
                [float(v) for v in artifact["intercepts"]],
                [float(v) for v in artifact["slopes"]],
            )
        state = CatalogueState(
            _ints(artifact["weeks_missing"]),
            ProductCodes(artifact["dropped_utf8"], artifact["dropped_offsets"]),
            _ints(artifact["weeks_dropped"]),
        )
        if len(state.dropped) != len(state.weeks_dropped):
            raise ValueError("weeks_dropped differs in length from the dropped codes")
        return cls(
            ProductCodes(artifact["codes_utf8"], artifact["code_offsets"]),
            _floats(artifact["intercepts"]),
            _floats(artifact["slopes"]),
            state,
        )


def _narrowed(offsets: np.ndarray) -> np.ndarray:
    """Offsets as 32-bit integers when they fit (codes under 2 GiB in all): every reader
    widens them back, and a million products' artifact is 4 MB smaller."""
    narrow: np.ndarray = offsets.astype(np.int32) if offsets[-1] < 2**31 else offsets
    return narrow


def _floats(values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind != "f":
        raise ValueError(f"expected float arrays, found {array.dtype}")
    return array


def _ints(values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise ValueError(f"expected integer arrays, found {array.dtype}")
    return array.astype(np.int16, copy=False)
