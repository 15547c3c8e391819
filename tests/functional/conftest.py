"""A real S3 server (SeaweedFS, on 127.0.0.1) for the functional tests."""
import uuid
from typing import Dict, Iterator

import pytest

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
