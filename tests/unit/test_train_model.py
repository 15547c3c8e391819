import json
from datetime import datetime

import pandas as pd
import pytest

from pipeline import train_model
from pipeline.generate_dataset import generate_tranche
from pipeline.registry.published import load_newest_model, metadata_key
from pipeline.registry.store import LocalStore
from pipeline.data.tranche import HOURS, PRODUCT
from tests.conftest import put_tranche


def test_train_publishes_a_model_with_its_metadata_and_logs_each_step(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    version = train_model.main(store_with_tranche)
    metadata = json.loads(store_with_tranche.get_bytes(metadata_key(version)))
    assert metadata["model_version"] == version
    assert metadata["metrics"]["r2"] > 0.8 and metadata["metrics"]["mae"] < 1.0
    assert metadata["dataset"]["key"] == "datasets/time_to_dispatch_2021-07-09T23:00:00.csv"
    assert len(metadata["dataset"]["sha256"]) == 64
    assert metadata["dataset"]["rows_used"] == 1000
    assert metadata["dataset"]["train_rows"] + metadata["dataset"]["test_rows"] == 1000
    assert "product_codes" not in metadata  # they live in the artifact
    assert metadata["catalogue"]["products"] == 5
    codes = load_newest_model(store_with_tranche).model.product_codes.tolist()
    assert codes == ["SKU001", "SKU002", "SKU003", "SKU004", "SKU005"]
    assert set(metadata["library_versions"]) >= {"python", "numpy", "pandas", "joblib"}
    assert set(metadata["timings_seconds"]) == {"load_and_validate", "fit", "evaluate_and_check"}
    assert "git_commit" in metadata
    assert "Starting train-model stage." in caplog.text
    assert f"Published model {version}" in caplog.text


def test_train_uses_the_newest_tranche_by_name(store: LocalStore, tranche: pd.DataFrame) -> None:
    put_tranche(store, tranche, datetime(2021, 7, 16))
    put_tranche(store, tranche.iloc[:900], datetime(2021, 7, 9))  # written later, dated earlier
    train_model.main(store)
    dataset = load_newest_model(store).metadata.dataset
    assert dataset["key"] == "datasets/time_to_dispatch_2021-07-16T00:00:00.csv"
    assert dataset["rows_used"] == 1000


def test_train_with_no_tranche_says_how_to_get_one(store: LocalStore) -> None:
    with pytest.raises(train_model.TrainingRefused, match="python -m pipeline.generate_dataset"):
        train_model.main(store)


def test_train_refuses_when_r2_is_below_the_error_threshold_and_publishes_nothing(
    store_with_tranche: LocalStore,
) -> None:
    with pytest.raises(train_model.TrainingRefused, match="below the error threshold 0.9999"):
        train_model.main(store_with_tranche, r2_error_threshold=0.9999)
    assert store_with_tranche.list_keys("models/") == []


def test_train_warns_when_r2_is_below_the_warning_threshold_only(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    train_model.main(store_with_tranche, r2_warning_threshold=0.9999)
    assert "below the warning threshold 0.9999" in caplog.text
    train_model.main(store_with_tranche, r2_warning_threshold=0.5)
    assert caplog.text.count("below the warning threshold") == 1


def test_train_refuses_a_model_whose_estimates_fall_with_orders(store: LocalStore) -> None:
    data = generate_tranche(1000, 5, seed=7).data
    falling = data[PRODUCT] == "SKU003"
    data.loc[falling, HOURS] = (60 - data.loc[falling, HOURS]).clip(lower=0)
    put_tranche(store, data)
    with pytest.raises(train_model.TrainingRefused, match="do not rise .* SKU003"):
        train_model.main(store)
    assert store.list_keys("models/") == []


def test_train_refuses_a_bad_tranche_naming_its_key_and_each_problem(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    key = put_tranche(store, pd.DataFrame({HOURS: [1.0], PRODUCT: ["A"]}))
    with pytest.raises(train_model.TrainingRefused, match="refused"):
        train_model.main(store)
    assert f"tranche {store.location(key)}: missing column(s): orders_placed" in caplog.text
    assert store.list_keys("models/") == []


def test_train_refuses_a_truncated_tranche_after_a_full_one(
    store_with_tranche: LocalStore, tranche: pd.DataFrame
) -> None:
    train_model.main(store_with_tranche)
    put_tranche(store_with_tranche, tranche.iloc[:200], datetime(2021, 7, 16))
    with pytest.raises(train_model.TrainingRefused):
        train_model.main(store_with_tranche)
    assert len(store_with_tranche.list_keys("models/")) == 4  # the first model, untouched


def test_a_rerun_on_the_same_tranche_with_the_same_code_publishes_nothing_new(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    first = train_model.main(store_with_tranche)
    assert train_model.main(store_with_tranche) == first
    assert "was trained on this same tranche by this same code and settings: nothing to do" \
        in caplog.text
    assert len(store_with_tranche.list_keys("models/")) == 4  # artifact, report, state, metadata
    other = train_model.main(store_with_tranche, r2_warning_threshold=0.6)  # other settings
    forced = train_model.main(store_with_tranche, r2_warning_threshold=0.6, force=True)
    assert len({first, other, forced}) == 3


def test_training_writes_a_review_report_beside_the_model(store_with_tranche: LocalStore) -> None:
    version = train_model.main(store_with_tranche)
    report = store_with_tranche.get_bytes(
        f"models/time_to_dispatch_model_{version}_report.html"
    ).decode()
    assert f"Model review: {version}" in report
    assert report.count("data:image/png;base64,") == 5
    assert 'id="worst-products"' in report and 'id="history"' in report
    assert 'alt="Promises: share of held-out orders within, against the probability' in report
    assert 'alt="Promises at 0.9: share of held-out orders within, by quintile' in report
    assert 'id="calibration"' in report and 'id="calibration-by-quintile"' in report
    assert "live model" not in report.split('id="calibration"')[1].split("</table>")[0]


def test_with_an_s3_store_the_no_tranche_hint_never_suggests_synthetic_data() -> None:
    from pipeline.registry.store import S3Store

    store = S3Store("bucket", "", client=None)  # type: ignore[arg-type]
    store.list_keys = lambda prefix: []  # type: ignore[method-assign]  # an empty bucket
    with pytest.raises(train_model.TrainingRefused) as refused:
        train_model.newest_tranche_key(store)
    assert "upload the week's tranche there" in str(refused.value)
    assert "generate_dataset" not in str(refused.value)
