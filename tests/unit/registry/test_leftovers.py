import os
import time

import pytest

from pipeline import train_model
from pipeline.registry.leftovers import remove_leftovers
from pipeline.registry.published import artifact_key, load_newest_model, metadata_key
from pipeline.registry.store import LocalStore

HOUR = 3600.0


def _plant(store: LocalStore, key: str, hours_old: float) -> None:
    path = store.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"left over")
    then = time.time() - hours_old * HOUR
    os.utime(path, (then, then))


def test_training_removes_old_leftovers_of_killed_runs_and_says_so(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    published = train_model.main(store_with_tranche)
    for key in (artifact_key(published), metadata_key(published)):  # published long ago
        then = time.time() - 100 * HOUR
        os.utime(store_with_tranche.root / key, (then, then))
    old = {
        "models/.tmp-killed1": 7,
        "datasets/.tmp-killed2": 30,
        artifact_key("20210101T000000000000Z-000000000001"): 7,  # its metadata never written
    }
    recent = {
        "models/.tmp-writing": 1,  # a concurrent run's write in progress
        artifact_key("20210101T000000000000Z-000000000002"): 5.5,  # publication in progress
    }
    for key, hours in {**old, **recent}.items():
        _plant(store_with_tranche, key, hours)
    dataset_keys = store_with_tranche.list_keys("datasets/")

    new = train_model.main(store_with_tranche, force=True)

    for key in old:
        assert not (store_with_tranche.root / key).exists(), key
        assert f"Removed leftover of a failed run {store_with_tranche.location(key)}" in caplog.text
    for key in recent:
        assert (store_with_tranche.root / key).exists(), key
    for version in (published, new):  # published models are never touched
        assert (store_with_tranche.root / artifact_key(version)).exists()
        assert (store_with_tranche.root / metadata_key(version)).exists()
    assert store_with_tranche.list_keys("datasets/") == dataset_keys
    assert load_newest_model(store_with_tranche).metadata.model_version == new


def test_the_age_limit_is_a_setting(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plant(store, "models/.tmp-a", 2)
    monkeypatch.setenv("TTD_LEFTOVER_MAX_AGE_HOURS", "3")
    assert remove_leftovers(store) == []
    monkeypatch.setenv("TTD_LEFTOVER_MAX_AGE_HOURS", "1")
    assert remove_leftovers(store) == [store.location("models/.tmp-a")]
