"""GET /api/v0.1/model, /docs without internet, and what start-up says about the model served."""
import logging
import re
from datetime import datetime
from typing import Iterator, List, Set

import pytest
from fastapi.testclient import TestClient

from pipeline import serve_model, train_model
from pipeline.generate_dataset import generate_tranche
from pipeline.registry.metadata import ModelMetadata
from pipeline.registry.published import (
    ModelVerificationError,
    artifact_key,
    load_model,
    load_newest_model,
    new_model_version,
    publish_model,
    published_versions,
    serialise_model,
    sha256,
)
from pipeline.service.app import MODEL_PATH, create_app
from pipeline.registry.store import LocalStore
from tests.conftest import put_tranche
from tests.processes import free_port

KEY = b"a signing key for the tests"


def test_the_model_endpoint_describes_the_first_model_from_its_metadata(
    store_with_tranche: LocalStore,
) -> None:
    train_model.main(store_with_tranche)
    metadata = load_newest_model(store_with_tranche).metadata
    with TestClient(create_app(lambda: load_newest_model(store_with_tranche))) as client:
        info = client.get(MODEL_PATH).json()
    assert info == {
        "model_version": metadata.model_version,
        "created_at": metadata.created_at,
        "tranche": metadata.dataset["key"],
        "rows": metadata.dataset["rows_used"],
        "products": 5,
        "weeks": 1,
        "r2": metadata.metrics["r2"],
        "mae": metadata.metrics["mae"],
        "promise_coverage": metadata.metrics["promise_coverage"],
        "comparison": None,
        "signed": False,
        "pinned": False,
        "newest_published": metadata.model_version,
        "serving_newest": True,
    }


def test_a_later_model_shows_how_the_live_one_did_on_the_new_week_and_its_signature(
    store_with_tranche: LocalStore,
) -> None:
    first = train_model.main(store_with_tranche, signing_key=KEY)
    put_tranche(
        store_with_tranche, generate_tranche(rows=1000, skus=5, seed=8).data, datetime(2021, 7, 16)
    )
    train_model.main(store_with_tranche, signing_key=KEY)
    with TestClient(create_app(lambda: load_newest_model(store_with_tranche, KEY))) as client:
        info = client.get(MODEL_PATH).json()
    assert info["signed"] is True and info["weeks"] == 2
    assert info["tranche"] == "datasets/time_to_dispatch_2021-07-16T00:00:00.csv"
    assert info["comparison"]["live_version"] == first
    assert info["comparison"]["live_mae"] > 0 and info["comparison"]["rows"] > 0
    assert 0.8 < info["promise_coverage"] < 1.0
    assert 0.8 < info["comparison"]["live_promise_coverage"] < 1.0
    assert 0.8 < info["comparison"]["new_promise_coverage"] < 1.0


def test_a_pinned_older_model_says_it_is_pinned_and_not_the_newest(
    store_with_tranche: LocalStore,
) -> None:
    older = train_model.main(store_with_tranche)
    newest = train_model.main(store_with_tranche, force=True)
    app = create_app(lambda: load_model(store_with_tranche, older), newest, pinned=True)
    with TestClient(app) as client:
        info = client.get(MODEL_PATH).json()
    assert info["model_version"] == older and info["newest_published"] == newest
    assert info["pinned"] is True and info["serving_newest"] is False


def test_the_model_endpoint_is_in_the_api_docs(store_with_tranche: LocalStore) -> None:
    train_model.main(store_with_tranche)
    with TestClient(create_app(lambda: load_newest_model(store_with_tranche))) as client:
        schema = client.get("/openapi.json").json()
    assert "ModelInfo" in str(schema["paths"][MODEL_PATH]["get"]["responses"]["200"])


@pytest.fixture
def docs_client(store_with_tranche: LocalStore) -> Iterator[TestClient]:
    train_model.main(store_with_tranche)
    with TestClient(create_app(lambda: load_newest_model(store_with_tranche))) as client:
        yield client


def asset_urls(html: str) -> List[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


@pytest.mark.parametrize(
    "page, kinds", [("/docs", {"javascript", "css"}), ("/redoc", {"javascript"})]
)
def test_docs_pages_load_their_assets_from_the_service_itself_not_a_cdn(
    docs_client: TestClient, page: str, kinds: Set[str]
) -> None:
    html = docs_client.get(page).text
    assert "://" not in html  # no absolute URL: nothing fetched from another host
    urls = asset_urls(html)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls)
    seen = set()
    for url in urls:
        response = docs_client.get(url)
        assert response.status_code == 200, url
        kind = response.headers["content-type"].split(";")[0].split("/")[-1]
        seen.add(kind)
        if kind == "javascript":
            assert len(response.content) > 100_000  # the real bundle, not a stub
    assert kinds <= seen


def publish_copies(store: LocalStore, copies: int) -> List[str]:
    """Publish the newest model again under new versions (as further weekly runs would)."""
    loaded = load_newest_model(store)
    artifact = serialise_model(loaded.model)
    for _ in range(copies):
        version = new_model_version()
        metadata = loaded.metadata.model_copy(
            update={
                "model_version": version,
                "artifact_key": artifact_key(version),
                "artifact_sha256": sha256(artifact),
            }
        )
        publish_model(store, version, artifact, metadata)
    return published_versions(store)


def test_an_unknown_pinned_version_lists_the_five_newest_published(
    store_with_tranche: LocalStore,
) -> None:
    train_model.main(store_with_tranche)
    versions = publish_copies(store_with_tranche, 6)
    with pytest.raises(ModelVerificationError) as refused:
        serve_model.main(str(store_with_tranche.root), port=free_port(), model_version="v-typo")
    message = str(refused.value)
    assert "'v-typo' is not published" in message
    assert ", ".join(versions[:5]) in message and "(and 2 older)" in message
    assert versions[5] not in message


def test_start_up_warns_when_the_newest_model_is_skipped_naming_both_versions(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    good = train_model.main(store_with_tranche)
    bad = train_model.main(store_with_tranche, force=True)
    (store_with_tranche.root / artifact_key(bad)).write_bytes(b"tampered")
    loaded = load_newest_model(store_with_tranche)
    with caplog.at_level(logging.WARNING):
        serve_model.warn_about_served_model(loaded, bad, pinned=False, signing_key=None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(good in w and bad in w and "failed verification" in w for w in warnings)


def test_start_up_warns_when_pinned_and_when_signatures_go_unchecked(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    older = train_model.main(store_with_tranche, signing_key=KEY)
    newest = train_model.main(store_with_tranche, signing_key=KEY, force=True)
    with caplog.at_level(logging.WARNING):
        serve_model.warn_about_served_model(
            load_model(store_with_tranche, older), newest, pinned=True, signing_key=None
        )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(older in w and newest in w and "pinned" in w for w in warnings)
    assert any("TTD_SIGNING_KEY is not set" in w and "unchecked" in w for w in warnings)


def test_start_up_says_nothing_when_serving_the_newest_with_its_key(
    store_with_tranche: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    newest = train_model.main(store_with_tranche, signing_key=KEY)
    with caplog.at_level(logging.WARNING):
        serve_model.warn_about_served_model(
            load_model(store_with_tranche, newest, KEY), newest, pinned=False, signing_key=KEY
        )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_unreadable_comparison_is_left_out_rather_than_stopping_the_service(
    store_with_tranche: LocalStore,
) -> None:
    train_model.main(store_with_tranche)
    loaded = load_newest_model(store_with_tranche)
    document = {**loaded.metadata.model_dump(), "comparison": {"live_mae": "not a number"}}
    odd = loaded._replace(metadata=ModelMetadata.model_validate(document))
    with TestClient(create_app(lambda: odd)) as client:
        response = client.get(MODEL_PATH)
    assert response.status_code == 200 and response.json()["comparison"] is None
