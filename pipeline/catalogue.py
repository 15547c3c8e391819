"""Which products the new model answers: this week's, plus last week's carried for a while.

A product the live model served that has no rows this week keeps last week's line for up
to MAX_CARRY_WEEKS tranches in a row (a slow product is not ordered every week), marked as
carried in the metadata; after that it is dropped, and the service says so when asked.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence

from pipeline.model import ProductLinearModel

MAX_CARRY_WEEKS = 4


class Catalogue(NamedTuple):
    model: ProductLinearModel  # this week's lines and the carried ones
    carried: Dict[str, int]  # product -> tranches in a row it has been missing from
    dropped: List[str]  # every product dropped and not seen since, sorted
    newly_dropped: List[str]


def carry_forward(
    fitted: ProductLinearModel,
    live: Optional[ProductLinearModel],
    live_carried: Dict[str, int],
    live_dropped: Sequence[str],
    max_weeks: int = MAX_CARRY_WEEKS,
) -> Catalogue:
    """Add the live model's products missing from this week, or drop them once too old."""
    codes = list(fitted.product_codes)
    intercepts = list(fitted.intercepts)
    slopes = list(fitted.slopes)
    carried: Dict[str, int] = {}
    newly_dropped: List[str] = []
    for i, code in enumerate(live.product_codes if live is not None else ()):
        if fitted.knows(code):
            continue
        weeks = int(live_carried.get(code, 0)) + 1
        if weeks > max_weeks:
            newly_dropped.append(code)
            continue
        carried[code] = weeks
        codes.append(code)
        intercepts.append(live.intercepts[i] if live is not None else 0.0)
        slopes.append(live.slopes[i] if live is not None else 0.0)
    order = sorted(range(len(codes)), key=codes.__getitem__)
    model = ProductLinearModel(
        tuple(codes[i] for i in order),
        tuple(intercepts[i] for i in order),
        tuple(slopes[i] for i in order),
    )
    dropped = sorted((set(live_dropped) | set(newly_dropped)) - set(model.product_codes))
    return Catalogue(model, carried, dropped, newly_dropped)
