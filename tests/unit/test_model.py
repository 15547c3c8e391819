"""The served model: plain numbers, floored estimates, an artifact that needs no library."""
from pathlib import Path

import joblib
import numpy as np
import pytest

from pipeline.model import ProductLinearModel
from pipeline.registry import serialise_model


def test_estimates_are_never_negative_and_unknown_products_raise() -> None:
    model = ProductLinearModel(("A",), (-5.0,), (0.1,))
    assert model.predict_one("A", 0) == 0.0
    assert list(model.predict(["A", "A"], np.array([0, 100]))) == [0.0, 5.0]
    with pytest.raises(KeyError):
        model.predict_one("B", 1)


def test_artifact_is_plain_data_that_round_trips_without_any_model_library(
    tmp_path: Path,
) -> None:
    model = ProductLinearModel(("A", "B"), (0.1, -0.2), (0.12, 0.08))
    path = tmp_path / "model.joblib"
    path.write_bytes(serialise_model(model))
    artifact = joblib.load(path)
    assert set(map(type, artifact["intercepts"])) == {float}
    assert set(artifact) == {"format", "product_codes", "intercepts", "slopes"}
    assert ProductLinearModel.from_artifact(artifact) == model


def test_loading_an_artifact_of_another_format_says_which_format_it_is() -> None:
    with pytest.raises(ValueError, match="'something-else/2'"):
        ProductLinearModel.from_artifact({"format": "something-else/2"})
