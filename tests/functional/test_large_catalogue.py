"""A catalogue past the old 1 MiB metadata cliff (60k products): trained and served as
processes with the default settings, and one of its rarest products answered."""
from datetime import datetime
from pathlib import Path

import httpx

from pipeline.generate_dataset import generate_tranche
from pipeline.registry.published import metadata_key, published_versions
from pipeline.registry.store import LocalStore
from pipeline.data.tranche import PRODUCT
from tests.conftest import put_tranche
from tests.processes import free_port, run_stage, start_service, stop_service

OLD_METADATA_LIMIT = 1024 * 1024  # the default cap, which listed codes crossed at ~40k


def test_sixty_thousand_products_publish_and_serve_with_the_default_settings(
    tmp_path: Path,
) -> None:
    store = LocalStore(str(tmp_path / "artifacts"))
    data = generate_tranche(rows=240_000, skus=60_000, seed=5, zipf=0.3).data
    rarest = str(data[PRODUCT].value_counts().index[-1])
    put_tranche(store, data, datetime(2026, 11, 6, 23))
    products = data[PRODUCT].nunique()
    assert products > 55_000

    trained = run_stage(["-m", "pipeline.train_model", store.uri])
    assert trained.returncode == 0, trained.stderr
    version = published_versions(store)[0]
    assert len(store.get_bytes(metadata_key(version))) < OLD_METADATA_LIMIT // 4

    port = free_port()
    service = start_service(["-m", "pipeline.serve_model", store.uri, "--port", str(port)], port)
    try:
        base = f"http://127.0.0.1:{port}"
        answer = httpx.post(f"{base}/api/v0.1/time_to_dispatch",
                            json={"product_code": rarest, "orders_placed": 40})
        info = httpx.get(f"{base}/api/v0.1/model").json()
    finally:
        stop_service(service)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == version
    assert info["products"] == products
