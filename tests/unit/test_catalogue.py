"""Products missing from a week keep last week's line for a while, then are dropped."""
from pipeline.catalogue import carry_forward
from pipeline.model import ProductLinearModel

LIVE = ProductLinearModel(("A", "B", "C"), (0.1, 0.2, 0.3), (0.11, 0.12, 0.13))


def test_a_product_missing_this_week_keeps_the_live_line_and_is_marked_carried() -> None:
    fitted = ProductLinearModel(("A", "D"), (1.0, 2.0), (0.5, 0.6))
    catalogue = carry_forward(fitted, LIVE, {}, [])
    assert catalogue.model.product_codes == ("A", "B", "C", "D")
    assert catalogue.model.predict_one("A", 10) == 1.0 + 0.5 * 10  # this week's line wins
    assert catalogue.model.predict_one("B", 10) == LIVE.predict_one("B", 10)
    assert catalogue.carried == {"B": 1, "C": 1}
    assert catalogue.dropped == [] and catalogue.newly_dropped == []


def test_a_product_missing_longer_than_allowed_is_dropped_and_remembered() -> None:
    fitted = ProductLinearModel(("A",), (1.0,), (0.5,))
    catalogue = carry_forward(fitted, LIVE, {"B": 4, "C": 2}, ["OLD"], max_weeks=4)
    assert catalogue.carried == {"C": 3}
    assert catalogue.newly_dropped == ["B"]
    assert catalogue.dropped == ["B", "OLD"]
    assert not catalogue.model.knows("B")


def test_a_dropped_product_that_comes_back_is_answered_and_no_longer_dropped() -> None:
    fitted = ProductLinearModel(("A", "OLD"), (1.0, 1.0), (0.5, 0.5))
    catalogue = carry_forward(fitted, LIVE, {}, ["OLD"])
    assert catalogue.dropped == [] and catalogue.model.knows("OLD")


def test_with_no_live_model_nothing_is_carried() -> None:
    fitted = ProductLinearModel(("A",), (1.0,), (0.5,))
    catalogue = carry_forward(fitted, None, {}, [])
    assert catalogue.model == fitted and catalogue.carried == {}
