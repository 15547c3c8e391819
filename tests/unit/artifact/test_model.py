"""The served model: plain numbers, floored estimates, an artifact that needs no library."""
from pathlib import Path

import joblib
import numpy as np
import pytest

from pipeline.artifact.model import ProductLinearModel
from pipeline.codes.product_codes import ProductCodes
from pipeline.registry.published import serialise_model


def test_estimates_are_never_negative_and_unknown_products_raise() -> None:
    model = ProductLinearModel(("A",), (-5.0,), (0.1,))
    assert model.predict_one("A", 0) == 0.0
    assert list(model.predict(["A", "A"], np.array([0, 100]))) == [0.0, 5.0]
    with pytest.raises(KeyError):
        model.predict_one("B", 1)


def test_artifact_is_numpy_arrays_that_round_trip_without_any_model_library(
    tmp_path: Path,
) -> None:
    model = ProductLinearModel(("A", "Bé", "C c"), (0.1, -0.2, 3.0), (0.12, 0.08, 0.0))
    path = tmp_path / "model.joblib"
    path.write_bytes(serialise_model(model))
    artifact = joblib.load(path)
    assert {type(v) for k, v in artifact.items() if k != "format"} == {np.ndarray}
    assert all(v.dtype != object for k, v in artifact.items() if k != "format")
    loaded = ProductLinearModel.from_artifact(artifact)
    assert loaded.product_codes.tolist() == ["A", "Bé", "C c"]
    assert loaded.predict_one("Bé", 10) == model.predict_one("Bé", 10)
    assert loaded.intercepts.tolist() == [0.1, -0.2, 3.0]


def test_an_artifact_of_the_list_format_still_loads() -> None:
    old = {"format": "time-to-dispatch/per-product-linear/1", "product_codes": ["A", "B"],
           "intercepts": [0.5, 1.0], "slopes": [0.1, 0.2]}
    model = ProductLinearModel.from_artifact(old)
    assert model.predict_one("B", 10) == 1.0 + 0.2 * 10 and not model.knows("C")


def test_loading_an_artifact_of_another_format_says_which_format_it_is() -> None:
    with pytest.raises(ValueError, match="'something-else/2'"):
        ProductLinearModel.from_artifact({"format": "something-else/2"})


def test_codes_are_found_exactly_among_many_even_when_unknown_or_odd() -> None:
    codes = [f"SKU{i:06d}" for i in range(100_000)] + ["", "x\x00", "ü-ß", "a" * 64]
    model = ProductLinearModel(codes, np.arange(len(codes), dtype=float), np.zeros(len(codes)))
    asked = ["SKU000042", "SKU099999", "SKU100000", "x\x00", "x", "ü-ß", "a" * 63, "\ud800"]
    expected = [42, 99999, -1, 100_001, -1, 100_002, -1, -1]
    assert model.product_codes.find_many(asked).tolist() == expected
    assert [model.position(c) for c in asked] == expected


def test_codes_know_when_others_are_their_own_first_codes() -> None:
    model = ProductLinearModel(["A", "Bé", "CC", "D"], np.zeros(4), np.zeros(4))
    codes = ProductCodes.from_strings
    assert model.product_codes.starts_with(codes(["A", "Bé", "CC"]))
    assert model.product_codes.starts_with(codes(["A", "Bé", "CC", "D"]))
    assert not model.product_codes.starts_with(codes(["A", "BéC", "C"]))  # same bytes
    assert not model.product_codes.starts_with(codes(["A", "CC"]))
    assert not model.product_codes.starts_with(codes(["A", "Bé", "CC", "D", "E"]))


def test_codes_are_measured_in_characters() -> None:
    codes = ProductCodes.from_strings(["SKU001", "", "Bé", "\u00c9" * 64, "\U0001f600x"])
    assert codes.lengths().tolist() == [6, 0, 2, 64, 2]
