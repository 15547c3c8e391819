"""Fixtures of the functional tests: a real S3 server (SeaweedFS, on 127.0.0.1), and a live
service with its metrics port, as Prometheus scrapes it."""
import uuid
from typing import Dict, Iterator

import httpx
import pytest

from pipeline import train_model
from pipeline.registry.store import LocalStore
from pipeline.service.app import API_PATH, BATCH_PATH
from tests.processes import Service, free_port, start_service, stop_service
from tests.prometheus import Live
from tests.seaweedfs import S3Server, make_bucket, running_seaweedfs


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A new, empty bucket for each test."""
    name = f"ttd-{uuid.uuid4().hex[:12]}"
    make_bucket(s3_server, name)
    return name


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Dict[str, str]:
    """Point boto3 at the test server through the standard AWS variables only."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server.env()


@pytest.fixture
def live(store_with_tranche: LocalStore) -> Iterator[Live]:
    """A service that has answered an estimate, a batch and a refusal."""
    train_model.main(store_with_tranche)
    port, metrics_port = free_port(), free_port()
    service: Service = start_service(
        ["-m", "pipeline.serve_model", str(store_with_tranche.root), "--port", str(port),
         "--metrics-port", str(metrics_port)],
        port,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        order = {"product_code": "SKU001", "orders_placed": 40}
        assert httpx.post(base + API_PATH, json=order).status_code == 200
        assert httpx.post(base + BATCH_PATH, json={"orders": [order] * 3}).status_code == 200
        refused = httpx.post(base + API_PATH, json={"product_code": "SKU999", "orders_placed": 1})
        assert refused.status_code == 422
        yield Live(port, metrics_port)
    finally:
        stop_service(service)
