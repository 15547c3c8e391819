"""Which products the new model answers: this week's, plus last week's carried for a while.

A product the live model served that has no rows this week keeps last week's line for up
to MAX_CARRY_WEEKS tranches in a row (a slow product is not ordered every week), counted in
the artifact; after that it is dropped, and the service says so when asked, for
MAX_DROPPED_WEEKS tranches (about a year of weekly drops); then it is forgotten, and an
order for it is refused as an unknown product. A product ordered again is fitted afresh.

Everything is array work over the catalogue (one look-up of the live codes among this
week's): a million products cost a fraction of a second, not a Python loop over them.
"""
from typing import List, NamedTuple, Optional

import numpy as np

from pipeline.artifact.model import CatalogueState, ProductLinearModel

MAX_CARRY_WEEKS = 4
MAX_DROPPED_WEEKS = 52
SHOWN_CODES = 5  # codes named in a log line; the rest are counted


class Catalogue(NamedTuple):
    model: ProductLinearModel  # this week's lines and the carried ones, with their state
    carried: int  # products carried forward from the live model
    dropped: int  # products the service says were dropped
    newly_dropped: int
    newly_dropped_examples: List[str]
    carried_from: np.ndarray  # each carried product's position in the model it came from


def carry_forward(
    fitted: ProductLinearModel,
    live: Optional[ProductLinearModel],
    max_weeks: int = MAX_CARRY_WEEKS,
    max_dropped_weeks: int = MAX_DROPPED_WEEKS,
) -> Catalogue:
    """Add the live model's products missing from this week, or drop them once too old."""
    if live is None or not len(live):
        return Catalogue(fitted, 0, 0, 0, [], np.zeros(0, np.int64))
    this_week = fitted.product_codes
    missing = np.ones(len(live), dtype=bool)
    found = live.product_codes.find_many(this_week)  # as the champion comparison asks again
    missing[found[found >= 0]] = False
    weeks = live.catalogue.weeks_missing.astype(np.int64) + 1
    carry = np.flatnonzero(missing & (weeks <= max_weeks))
    newly = np.flatnonzero(missing & (weeks > max_weeks))
    codes = fitted.product_codes.concat(live.product_codes.take(carry))

    # Dropped before and still not ordered, one tranche older; then the newly dropped.
    before = live.catalogue.dropped
    seen_again = this_week.find_many(before) >= 0
    older = live.catalogue.weeks_dropped.astype(np.int64) + 1
    kept = np.flatnonzero(~seen_again & (older <= max_dropped_weeks))
    dropped = before.take(kept).concat(live.product_codes.take(newly))
    state = CatalogueState(
        np.concatenate([np.zeros(len(fitted), np.int16), weeks[carry].astype(np.int16)]),
        dropped,
        np.concatenate([older[kept], np.zeros(len(newly), np.int64)]).astype(np.int16),
    )
    model = ProductLinearModel(
        codes,
        np.concatenate([fitted.intercepts, live.intercepts[carry]]),
        np.concatenate([fitted.slopes, live.slopes[carry]]),
        state,
    )
    examples = live.product_codes.take(newly[:SHOWN_CODES]).tolist()
    return Catalogue(model, len(carry), len(dropped), len(newly), examples, carry)
