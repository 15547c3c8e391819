import json
import math
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, List, Tuple

import pytest
from fastapi.testclient import TestClient

from pipeline import train_model
from pipeline.artifact.model import ProductLinearModel
from pipeline.registry.published import (
    ModelVerificationError,
    artifact_key,
    check_model_parameters,
    load_newest_model,
    load_pinned_model,
    metadata_key,
    new_model_version,
    publish_model,
    published_versions,
    serialise_model,
    sha256,
)
from pipeline.service.app import API_PATH, create_app
from pipeline.registry.store import LocalStore
from tests.conftest import put_tranche


def test_versions_sort_by_creation_time_and_never_collide() -> None:
    early = new_model_version(datetime(2021, 7, 9, 23, tzinfo=timezone.utc))
    late = new_model_version(datetime(2021, 7, 10, 0, tzinfo=timezone.utc))
    assert early < late
    same = datetime(2021, 7, 9, 23, tzinfo=timezone.utc)
    assert len({new_model_version(same) for _ in range(200)}) == 200


def test_newest_published_model_is_loaded(store_with_tranche: LocalStore) -> None:
    first = train_model.main(store_with_tranche)
    second = train_model.main(store_with_tranche, force=True)
    assert published_versions(store_with_tranche) == [second, first]
    assert load_newest_model(store_with_tranche).metadata.model_version == second


def test_an_artifact_without_metadata_is_not_yet_published(store_with_tranche: LocalStore) -> None:
    version = train_model.main(store_with_tranche)
    store_with_tranche.put_new(artifact_key("99990101T000000000000Z-aaaaaa"), b"half-way")
    assert load_newest_model(store_with_tranche).metadata.model_version == version


def good_then_newer(store: LocalStore) -> Tuple[str, str, Path]:
    """Publish two models; return both versions and the newer one's artifact, to spoil it."""
    good = train_model.main(store)
    newer = train_model.main(store, force=True)
    return good, newer, store.root / artifact_key(newer)


def test_a_tampered_artifact_is_skipped_and_the_previous_model_served(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad, path = good_then_newer(store_with_tranche)
    path.write_bytes(path.read_bytes() + b"\x00")
    assert load_newest_model(store_with_tranche).metadata.model_version == good
    assert f"skipping model {bad}" in caplog.text
    assert "SHA-256 differs" in caplog.text


def test_no_model_that_verifies_is_an_error_that_says_so(store_with_tranche: LocalStore) -> None:
    with pytest.raises(ModelVerificationError, match="no published model .* run `python -m"):
        load_newest_model(store_with_tranche)
    version = train_model.main(store_with_tranche)
    path = store_with_tranche.root / metadata_key(version)
    metadata = json.loads(path.read_text())
    metadata["artifact_sha256"] = "0" * 64
    path.write_text(json.dumps(metadata))
    with pytest.raises(ModelVerificationError, match="none of the 1 model"):
        load_newest_model(store_with_tranche)


def test_metadata_that_is_not_metadata_is_refused(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    version = train_model.main(store_with_tranche)
    (store_with_tranche.root / metadata_key(version)).write_text("{not json")
    with pytest.raises(ModelVerificationError, match="none of the 1 model"):
        load_newest_model(store_with_tranche)
    assert "metadata is not valid: document: Invalid JSON" in caplog.text


KEY = b"weekly-signing-key"


def _forge(store: LocalStore, version: str) -> None:
    """Replace a model's artifact and fix up its SHA-256, as an attacker with write access."""
    forged = serialise_model(ProductLinearModel(("SKU001",), (0.0,), (100.0,)))
    (store.root / artifact_key(version)).write_bytes(forged)
    path = store.root / metadata_key(version)
    metadata = json.loads(path.read_text())
    metadata["artifact_sha256"] = sha256(forged)
    path.write_text(json.dumps(metadata))


def test_with_a_signing_key_a_forged_model_is_refused_and_the_signed_one_served(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    good = train_model.main(store_with_tranche, signing_key=KEY)
    forged = train_model.main(store_with_tranche, signing_key=KEY, force=True)
    _forge(store_with_tranche, forged)
    assert load_newest_model(store_with_tranche, KEY).metadata.model_version == good
    assert "signature does not match TTD_SIGNING_KEY" in caplog.text
    # Without a key only the hash protects, and a forger who rewrites it gets through:
    # which is why production sets TTD_SIGNING_KEY.
    assert load_newest_model(store_with_tranche).metadata.model_version == forged


def test_with_a_signing_key_unsigned_models_and_other_keys_are_refused(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    train_model.main(store_with_tranche)
    with pytest.raises(ModelVerificationError, match="none of the 1"):
        load_newest_model(store_with_tranche, KEY)
    assert "unsigned, and TTD_SIGNING_KEY is set" in caplog.text
    train_model.main(store_with_tranche, signing_key=b"another key", force=True)
    with pytest.raises(ModelVerificationError, match="none of the 2"):
        load_newest_model(store_with_tranche, KEY)
    signed = train_model.main(store_with_tranche, signing_key=KEY, force=True)
    assert load_newest_model(store_with_tranche, KEY).metadata.model_version == signed


def test_a_pinned_version_is_loaded_instead_of_the_newest(store_with_tranche: LocalStore) -> None:
    first = train_model.main(store_with_tranche)
    train_model.main(store_with_tranche, force=True)
    assert load_pinned_model(store_with_tranche, first).metadata.model_version == first
    with pytest.raises(ModelVerificationError, match="'nope' is not published in"):
        load_pinned_model(store_with_tranche, "nope")


def _publish(store: LocalStore, model: ProductLinearModel) -> str:
    """Publish a model as training would, with a SHA-256 that matches: only its numbers are
    wrong, as after a bug or by someone who can write to the bucket."""
    good = load_newest_model(store).metadata
    version = new_model_version()
    artifact = serialise_model(model)
    metadata = good.model_copy(
        update={
            "model_version": version,
            "artifact_key": artifact_key(version),
            "artifact_sha256": sha256(artifact),
        }
    )
    # Written around publish_model, which would refuse it (check_servable).
    store.put_new(metadata.artifact_key, artifact)
    store.put_new(metadata_key(version), metadata.model_dump_json(exclude_unset=True).encode())
    return version


def test_publishing_a_model_the_service_would_refuse_writes_nothing(
    store_with_tranche: LocalStore,
) -> None:
    train_model.main(store_with_tranche)
    good = load_newest_model(store_with_tranche).metadata
    before = store_with_tranche.list_keys("models/")
    version = new_model_version()
    artifact = serialise_model(ProductLinearModel(("SKU001",), (math.nan,), (0.1,)))
    metadata = good.model_copy(update={
        "model_version": version, "artifact_key": artifact_key(version),
        "artifact_sha256": sha256(artifact),
    })
    with pytest.raises(ModelVerificationError, match="intercept not finite"):
        publish_model(store_with_tranche, version, artifact, metadata)
    assert store_with_tranche.list_keys("models/") == before


@pytest.mark.parametrize(
    "intercept, slope, message",
    [
        (math.inf, 0.05, "intercept not finite or beyond ±10,000 h for SKU002 (inf)"),
        (math.nan, 0.05, "intercept not finite or beyond ±10,000 h for SKU002 (nan)"),
        (2.0, 1e306, "slope not finite or beyond ±100 h/order for SKU002 (1e+306)"),
        (-1e5, 0.05, "intercept not finite or beyond ±10,000 h for SKU002 (-100000.0)"),
        (2.0, -math.inf, "slope not finite or beyond ±100 h/order for SKU002 (-inf)"),
    ],
)
def test_a_model_with_absurd_parameters_is_skipped_naming_the_product(
    store_with_tranche: LocalStore,
    caplog: pytest.LogCaptureFixture,
    intercept: float,
    slope: float,
    message: str,
) -> None:
    good = train_model.main(store_with_tranche)
    absurd = _publish(
        store_with_tranche,
        ProductLinearModel(("SKU001", "SKU002"), (2.0, intercept), (0.05, slope)),
    )
    app = create_app(lambda: load_newest_model(store_with_tranche))
    with TestClient(app) as client:
        response = client.post(API_PATH, json={"product_code": "SKU002", "orders_placed": 100})
    assert response.status_code == 200
    assert response.json()["model_version"] == good
    assert math.isfinite(response.json()["est_hours_to_dispatch"])
    assert f"skipping model {absurd}" in caplog.text
    assert message in caplog.text


def test_parameters_within_bounds_pass_the_check() -> None:
    check_model_parameters(ProductLinearModel(("A", "B"), (-10_000.0, 9_999.0), (-100.0, 100.0)))
    with pytest.raises(ModelVerificationError, match=r"for A \(inf\), B .*E \(inf\) and 1 more"):
        check_model_parameters(
            ProductLinearModel(tuple("ABCDEF"), (math.inf,) * 6, (0.0,) * 6)
        )


def test_metadata_over_the_size_limit_is_skipped_unread(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    good = train_model.main(store_with_tranche)
    planted = new_model_version()
    store_with_tranche.put_new(metadata_key(planted), b" " * (1024 * 1024 + 1))
    assert load_newest_model(store_with_tranche).metadata.model_version == good
    assert f"skipping model {planted}" in caplog.text
    assert "is 1,048,577 bytes, over the limit of 1,048,576: not reading it" in caplog.text


def test_an_artifact_that_is_a_named_pipe_is_refused_at_once_not_waited_on(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    good, piped, path = good_then_newer(store_with_tranche)
    path.unlink()
    os.mkfifo(path)
    loaded: List[str] = []
    reader = threading.Thread(
        target=lambda: loaded.append(
            load_newest_model(store_with_tranche).metadata.model_version
        ),
        daemon=True,
    )
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # blocked opening the pipe: let it go before failing
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
        pytest.fail("loading blocked on a named pipe")
    assert loaded == [good]
    assert f"skipping model {piped}" in caplog.text
    assert "not a regular file (a named pipe); refusing it" in caplog.text


def test_training_refuses_a_model_over_a_size_limit_naming_it_and_the_live_model_stays(
    store_with_tranche: LocalStore, monkeypatch: pytest.MonkeyPatch, tranche: Any
) -> None:
    live = train_model.main(store_with_tranche)
    put_tranche(store_with_tranche, tranche.sample(frac=1.0, random_state=3),
                datetime(2021, 7, 16, 23))
    monkeypatch.setenv("TTD_MAX_ARTIFACT_BYTES", "300")
    keys = store_with_tranche.list_keys("models/")
    with pytest.raises(train_model.TrainingRefused, match=r"over TTD_MAX_ARTIFACT_BYTES \(300 "):
        train_model.main(store_with_tranche, force=True)
    assert store_with_tranche.list_keys("models/") == keys  # not even a report
    monkeypatch.delenv("TTD_MAX_ARTIFACT_BYTES")
    with TestClient(create_app(lambda: load_newest_model(store_with_tranche))) as client:
        response = client.post(API_PATH, json={"product_code": "SKU001", "orders_placed": 9})
    assert response.json()["model_version"] == live
