"""Drift between the live model's training data and a new tranche, named with PSI."""
import pandas as pd
import pytest

from pipeline.data.drift import compare, describe_drift, profile, psi
from pipeline.generate_dataset import generate_tranche
from pipeline.data.tranche import ORDERS, PRODUCT


def test_the_psi_of_identical_distributions_is_zero_and_grows_with_the_shift() -> None:
    same = psi([0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25])
    small = psi([0.25, 0.25, 0.25, 0.25], [0.3, 0.25, 0.25, 0.2])
    large = psi([0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1])
    assert same == pytest.approx(0.0) and 0 < small < 0.1 < 0.25 < large


@pytest.mark.parametrize("seed", range(5))
def test_another_week_of_the_same_catalogue_raises_no_drift_warning(seed: int) -> None:
    live = profile(generate_tranche(100_000, 2000, seed=100 + seed, zipf=1.1).data)
    new = generate_tranche(100_000, 2000, seed=200 + seed, zipf=1.1).data
    assert describe_drift(compare(live, new)) == []


def test_longer_queues_are_named_as_drift_in_orders_and_hours() -> None:
    week = generate_tranche(20_000, 5, seed=1).data
    live = profile(week)
    busier = generate_tranche(20_000, 5, seed=2).data
    busier[ORDERS] = (busier[ORDERS] * 1.8).round()
    warnings = describe_drift(compare(live, busier))
    assert any("the tranche: orders_placed shifted: median" in w for w in warnings)
    assert any(w.startswith("drift in orders_placed of 5 product(s)") and "SKU001 (median" in w
               for w in warnings)


def test_a_changed_mix_of_products_is_named() -> None:
    week = generate_tranche(20_000, 5, seed=1).data
    live = profile(week)
    mixed = pd.concat([week[week[PRODUCT] == "SKU004"]] * 4 + [week], ignore_index=True)
    warnings = describe_drift(compare(live, mixed))
    assert any("mix of products changed" in w and "SKU004" in w for w in warnings)


def test_the_profile_is_compact_whatever_the_catalogue_size() -> None:
    data = generate_tranche(200_000, 10_000, seed=3, zipf=1.1).data
    assert len(pd.Series([profile(data)]).to_json()) < 30_000
    assert compare(None, data) == []


def test_codes_held_as_categories_profile_and_compare_as_text_does() -> None:
    # As read, codes are sorted categories; the top products are then found by binary
    # search, not by hashing every category.
    before = generate_tranche(20_000, 300, seed=3, zipf=1.1).data
    after = generate_tranche(20_000, 300, seed=4, zipf=0.9).data
    after = after[after[PRODUCT] != "SKU002"]  # a top product gone
    as_text = profile(before)
    assert profile(before.astype({PRODUCT: "category"})) == as_text
    shifts = compare(as_text, after)
    assert compare(as_text, after.astype({PRODUCT: "category"})) == shifts
    mix = next(s for s in shifts if s["statistic"] == "rows_per_product")
    assert mix["most_changed"]["SKU002"][1] == 0
