"""The review report's table of the worst products, as pandas' groupby would give it."""
import numpy as np
import pandas as pd
import pytest

from pipeline.data.tranche import HOURS, PRODUCT
from pipeline.training.report import worst_products


@pytest.mark.parametrize("as_categories", [True, False])
def test_the_worst_products_are_those_with_the_largest_mean_error(as_categories: bool) -> None:
    rng = np.random.default_rng(3)
    codes = [f"P{c:03d}" for c in rng.integers(0, 300, 5000)]
    held_out = pd.DataFrame({PRODUCT: codes, HOURS: rng.gamma(2.0, 3.0, 5000)})
    held_out["estimate"] = held_out[HOURS] + rng.normal(0, 1, 5000) * rng.integers(1, 4, 5000)
    if as_categories:  # as validation leaves them, with a category that has no rows
        held_out[PRODUCT] = pd.Categorical(codes, categories=sorted(set(codes)) + ["UNUSED"])
    expected = (
        held_out.assign(error=(held_out[HOURS] - held_out["estimate"]).abs())
        .groupby(PRODUCT, observed=True)
        .agg(rows=("error", "size"), mae=("error", "mean"), mean_hours=(HOURS, "mean"))
        .sort_values("mae", ascending=False).head(10).reset_index()
    )
    worst = worst_products(held_out, 10)
    assert list(worst[PRODUCT].astype(str)) == list(expected[PRODUCT].astype(str))
    columns = ["rows", "mae", "mean_hours"]
    assert np.allclose(worst[columns], expected[columns])
