"""Products missing from a week keep last week's line for a while, then are dropped."""
from typing import Dict, List

import numpy as np

from pipeline.modelling.catalogue import carry_forward
from pipeline.artifact.model import CatalogueState, ProductLinearModel
from pipeline.codes.product_codes import ProductCodes


def live_model(missing: Dict[str, int], dropped: Dict[str, int]) -> ProductLinearModel:
    """Last week's model of A, B, C, with weeks missing and dropped products as given."""
    codes = ["A", "B", "C"]
    state = CatalogueState(
        np.array([missing.get(c, 0) for c in codes], np.int16),
        ProductCodes.from_strings(dropped), np.array(list(dropped.values()), np.int16),
    )
    return ProductLinearModel(codes, (0.1, 0.2, 0.3), (0.11, 0.12, 0.13), state)


def weeks_missing(model: ProductLinearModel) -> Dict[str, int]:
    codes = model.product_codes.tolist()
    return {c: int(w) for c, w in zip(codes, model.catalogue.weeks_missing) if w}


def dropped(model: ProductLinearModel) -> Dict[str, int]:
    state = model.catalogue
    return dict(zip(state.dropped.tolist(), state.weeks_dropped.tolist()))


def test_a_product_missing_this_week_keeps_the_live_line_and_is_marked_carried() -> None:
    live = live_model({}, {})
    fitted = ProductLinearModel(("A", "D"), (1.0, 2.0), (0.5, 0.6))
    catalogue = carry_forward(fitted, live)
    assert sorted(catalogue.model.product_codes.tolist()) == ["A", "B", "C", "D"]
    assert catalogue.model.predict_one("A", 10) == 1.0 + 0.5 * 10  # this week's line wins
    assert catalogue.model.predict_one("B", 10) == live.predict_one("B", 10)
    assert weeks_missing(catalogue.model) == {"B": 1, "C": 1}
    assert (catalogue.carried, catalogue.dropped, catalogue.newly_dropped) == (2, 0, 0)


def test_a_product_missing_longer_than_allowed_is_dropped_and_remembered() -> None:
    fitted = ProductLinearModel(("A",), (1.0,), (0.5,))
    catalogue = carry_forward(fitted, live_model({"B": 4, "C": 2}, {"OLD": 3}), max_weeks=4)
    assert weeks_missing(catalogue.model) == {"C": 3}
    assert catalogue.newly_dropped == 1 and catalogue.newly_dropped_examples == ["B"]
    assert dropped(catalogue.model) == {"OLD": 4, "B": 0}
    assert not catalogue.model.knows("B")


def test_a_dropped_product_is_forgotten_after_max_dropped_weeks() -> None:
    fitted = ProductLinearModel(("A", "B", "C"), (1.0,) * 3, (0.5,) * 3)
    catalogue = carry_forward(
        fitted, live_model({}, {"YEAR": 52, "MONTH": 4}), max_dropped_weeks=52
    )
    assert dropped(catalogue.model) == {"MONTH": 5}


def test_a_dropped_product_that_comes_back_is_answered_and_no_longer_dropped() -> None:
    fitted = ProductLinearModel(("A", "OLD"), (1.0, 1.0), (0.5, 0.5))
    catalogue = carry_forward(fitted, live_model({}, {"OLD": 1}))
    assert dropped(catalogue.model) == {} and catalogue.model.knows("OLD")


def test_with_no_live_model_nothing_is_carried() -> None:
    fitted = ProductLinearModel(("A",), (1.0,), (0.5,))
    catalogue = carry_forward(fitted, None)
    assert catalogue.model is fitted and catalogue.carried == 0


def test_a_large_catalogue_is_carried_and_dropped_exactly() -> None:
    rng = np.random.default_rng(3)
    codes: List[str] = [f"P{i:06d}" for i in range(200_000)]
    live_weeks = rng.integers(0, 3, len(codes))
    live = ProductLinearModel(
        codes, rng.normal(size=len(codes)), rng.normal(size=len(codes)),
        CatalogueState(live_weeks.astype(np.int16), ProductCodes.from_strings(()),
                       np.zeros(0, np.int16)),
    )
    ordered = rng.random(len(codes)) < 0.6
    this_week = [c for c, o in zip(codes, ordered) if o]
    fitted = ProductLinearModel(this_week, np.zeros(len(this_week)), np.zeros(len(this_week)))
    catalogue = carry_forward(fitted, live, max_weeks=2)
    missing = ~ordered & (live_weeks + 1 <= 2)
    gone = ~ordered & (live_weeks + 1 > 2)
    assert catalogue.carried == int(missing.sum()) and catalogue.newly_dropped == int(gone.sum())
    model = catalogue.model
    assert len(model) == int(ordered.sum() + missing.sum())
    sample = rng.choice(len(codes), 2000, replace=False)
    for i in sample.tolist():
        assert model.knows(codes[i]) == bool(ordered[i] or missing[i])
        if missing[i]:
            assert model.predict_one(codes[i], 7) == live.predict_one(codes[i], 7)
    assert set(model.catalogue.dropped.tolist()) == {c for c, g in zip(codes, gone) if g}
