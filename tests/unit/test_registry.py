import json
from datetime import datetime, timezone

import pytest

from pipeline import train_model
from pipeline.model import ProductLinearModel
from pipeline.registry import (
    ModelVerificationError,
    artifact_key,
    load_newest_model,
    load_pinned_model,
    metadata_key,
    new_model_version,
    published_versions,
    serialise_model,
    sha256,
)
from pipeline.store import LocalStore


def test_versions_sort_by_creation_time_and_never_collide() -> None:
    early = new_model_version(datetime(2021, 7, 9, 23, tzinfo=timezone.utc))
    late = new_model_version(datetime(2021, 7, 10, 0, tzinfo=timezone.utc))
    assert early < late
    same = datetime(2021, 7, 9, 23, tzinfo=timezone.utc)
    assert len({new_model_version(same) for _ in range(200)}) == 200


def test_newest_published_model_is_loaded(store_with_tranche: LocalStore) -> None:
    first = train_model.main(store_with_tranche)
    second = train_model.main(store_with_tranche)
    assert published_versions(store_with_tranche) == [second, first]
    assert load_newest_model(store_with_tranche).metadata.model_version == second


def test_an_artifact_without_metadata_is_not_yet_published(store_with_tranche: LocalStore) -> None:
    version = train_model.main(store_with_tranche)
    store_with_tranche.put_new(artifact_key("99990101T000000000000Z-aaaaaa"), b"half-way")
    assert load_newest_model(store_with_tranche).metadata.model_version == version


def test_a_tampered_artifact_is_skipped_and_the_previous_model_served(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    good = train_model.main(store_with_tranche)
    bad = train_model.main(store_with_tranche)
    path = store_with_tranche.root / artifact_key(bad)
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
    forged = train_model.main(store_with_tranche, signing_key=KEY)
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
    train_model.main(store_with_tranche, signing_key=b"another key")
    with pytest.raises(ModelVerificationError, match="none of the 2"):
        load_newest_model(store_with_tranche, KEY)
    signed = train_model.main(store_with_tranche, signing_key=KEY)
    assert load_newest_model(store_with_tranche, KEY).metadata.model_version == signed


def test_a_pinned_version_is_loaded_instead_of_the_newest(store_with_tranche: LocalStore) -> None:
    first = train_model.main(store_with_tranche)
    train_model.main(store_with_tranche)
    assert load_pinned_model(store_with_tranche, first).metadata.model_version == first
    with pytest.raises(ModelVerificationError, match="'nope' is not published in"):
        load_pinned_model(store_with_tranche, "nope")
