"""Gross outliers are dropped per product, honest rows never are."""
import pandas as pd
import pytest

from pipeline.generate_dataset import OUTLIER_HOURS, generate_tranche
from pipeline.modelling.outliers import screen_outliers
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT


@pytest.mark.parametrize("seed", range(5))
def test_no_honest_row_of_a_real_shaped_tranche_is_dropped(seed: int) -> None:
    data = generate_tranche(50_000, 2000, seed=seed, zipf=1.1).data
    screened = screen_outliers(data)
    assert screened.outliers.empty
    assert len(screened.data) == len(data)
    assert screened.noise_sd == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("seed", range(5))
def test_a_data_entry_slip_of_9999_hours_is_dropped(seed: int) -> None:
    data = generate_tranche(1000, 5, seed=seed, quirks=["outlier"]).data
    screened = screen_outliers(data)
    assert screened.outliers[HOURS].tolist() == [OUTLIER_HOURS]
    assert len(screened.data) == 999


def test_a_moderate_slip_is_judged_against_its_own_products_line() -> None:
    data = generate_tranche(4000, 40, seed=3, zipf=1.1).data
    rare = data[PRODUCT].value_counts().index[-1]
    slips = pd.DataFrame(
        {HOURS: [40.0, 60.0], ORDERS: [20, 30], PRODUCT: ["SKU001", rare]}
    )
    honest_far = pd.DataFrame({HOURS: [45.0], ORDERS: [300], PRODUCT: ["SKU001"]})
    screened = screen_outliers(pd.concat([data, slips, honest_far], ignore_index=True))
    assert sorted(screened.outliers[HOURS].tolist()) == [40.0, 60.0]


def test_screening_a_million_rows_at_a_time_is_screening_them_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = generate_tranche(3000, 20, seed=5, quirks=["outlier"]).data
    whole = screen_outliers(data)
    monkeypatch.setattr("pipeline.modelling.outliers.CHUNK_ROWS", 64)
    chunked = screen_outliers(data.astype({PRODUCT: "category"}))
    assert chunked.outliers[HOURS].tolist() == whole.outliers[HOURS].tolist() == [OUTLIER_HOURS]
    assert chunked.noise_sd == pytest.approx(whole.noise_sd)
