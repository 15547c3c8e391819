"""What the endpoints answer with: the model's lines and promises, built once at start-up.

Both the routes and the fast path answer through `Served`, so an estimate, a promise and
their rounding are computed one way (pipeline/artifact/: one formula each) for one order and
for ten thousand.
"""
import json
from typing import Any, Optional, Sequence

import numpy as np

from pipeline.artifact.promise import Promises
from pipeline.codes.product_codes import ProductCodes
from pipeline.registry.published import LoadedModel


def round_hours(hours: Any) -> Any:
    """Round to 3 decimals exactly as Python's round(h, 3) does, for one value or an array.

    rint(h * 1000) / 1000 gives the same float as round() unless h * 1000 lies within its
    own rounding error of a half (where round() decides on h's exact decimal value): those
    few are rounded by round() itself.
    """
    if not isinstance(hours, np.ndarray):
        return round(float(hours), 3)
    scaled = hours * 1000.0
    rounded: np.ndarray = np.rint(scaled) / 1000.0
    near_half = np.abs(scaled - np.floor(scaled) - 0.5) <= 1e-9 * (1.0 + scaled)
    for i in np.flatnonzero(near_half):
        rounded[i] = round(float(hours[i]), 3)
    return rounded


class Served:
    """The model served, ready to answer: its codes' look-up built before any request."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.model = loaded.model
        self.model.product_codes.build_index()
        self.dropped: ProductCodes = loaded.model.catalogue.dropped
        self.carry_weeks = loaded.metadata.catalogue_section().max_carry_weeks
        self.model_version = loaded.metadata.model_version
        self.promises = Promises(loaded.promise) if loaded.promise is not None else None
        version = json.dumps(self.model_version).encode()
        self.single_tail = b',"model_version":' + version + b"}"  # after the estimate
        self.batch_head = b'{"model_version":' + version + b',"estimates":'

    def position(self, product_code: str) -> int:
        """Return the product's position, -1 for one the model does not answer."""
        return self.model.position(product_code)

    def positions(self, product_codes: Sequence[str]) -> np.ndarray:
        return self.model.product_codes.find_many(product_codes)

    def estimate(self, at: Any, orders_placed: Any) -> Any:
        """The hours answered for one order (a position and a queue) or many, rounded."""
        return round_hours(self.model.hours(at, orders_placed))

    def promise(self, at: Any, orders_placed: Any, probability: float) -> Any:
        """The promise answered for one order or many, rounded (the model has promises)."""
        assert self.promises is not None
        line = self.model.line(at, orders_placed)
        return round_hours(self.promises.hours(at, line, orders_placed, probability))

    def dropped_code(self, product_code: str) -> bool:
        """Say whether an unknown product is one the model has dropped (not never seen)."""
        return self.dropped.find(product_code) >= 0


def promise_tail(promise: float, probability: float) -> bytes:
    """Return `,"promise_hours_to_dispatch":…,"promise_probability":…}`."""
    return (b',"promise_hours_to_dispatch":' + repr(promise).encode()
            + b',"promise_probability":' + repr(probability).encode() + b"}")


def current(state: object) -> Optional[Served]:
    """The app state's Served, None until the model is loaded."""
    served: Optional[Served] = getattr(state, "served", None)
    return served
