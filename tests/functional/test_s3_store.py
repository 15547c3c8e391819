"""The S3 backend and the stages on it, against a real S3 server through real boto3."""
import re
import socket
import threading
import time
from datetime import datetime
from typing import Dict, Iterator

import httpx
import pytest

from pipeline import generate_dataset, train_model
from pipeline.registry.published import (
    artifact_key,
    load_model,
    load_newest_model,
    published_versions,
)
from pipeline.registry.store import KeyExistsError, S3Store, open_store
from pipeline.data.tranche import tranche_key
from tests.processes import (
    free_port,
    run_stage,
    run_stages_at_once,
    stage_env,
    start_service,
    stop_service,
)
from tests.seaweedfs import S3Server


def test_s3_store_lists_reads_and_writes_under_a_prefix(
    s3_env: Dict[str, str], bucket: str
) -> None:
    store = open_store(f"s3://{bucket}/team/a")
    assert isinstance(store, S3Store)
    assert store.list_keys("datasets/") == []
    store.put_new("datasets/one.csv", b"1")
    store.put_new("datasets/two.csv", b"2")
    store.put_new("models/m.json", b"3")
    assert store.list_keys("datasets/") == ["datasets/one.csv", "datasets/two.csv"]
    assert store.get_bytes("datasets/two.csv") == b"2"
    assert open_store(f"s3://{bucket}").list_keys("team/a/models/") == ["team/a/models/m.json"]


def test_s3_store_never_overwrites_an_object(s3_env: Dict[str, str], bucket: str) -> None:
    store = open_store(f"s3://{bucket}")
    store.put_new("models/m.joblib", b"first")
    with pytest.raises(KeyExistsError, match=f"s3://{bucket}/models/m.joblib exists already"):
        store.put_new("models/m.joblib", b"second")
    assert store.get_bytes("models/m.joblib") == b"first"


def test_s3_store_lists_beyond_one_page(s3_env: Dict[str, str], bucket: str) -> None:
    store = open_store(f"s3://{bucket}")
    assert isinstance(store, S3Store)
    for i in range(1005):
        store.client.put_object(Bucket=bucket, Key=f"datasets/k{i:04d}.csv", Body=b"")
    assert len(store.list_keys("datasets/")) == 1005


def test_train_and_serve_on_s3_publish_and_answer_with_the_same_model(
    s3_env: Dict[str, str], bucket: str
) -> None:
    uri = f"s3://{bucket}"
    generate_dataset.main(open_store(uri), rows=1000, skus=5)
    env = stage_env(s3_env)
    trained = run_stage(["-m", "pipeline.train_model", uri], env=env)
    assert trained.returncode == 0, trained.stderr
    version = load_newest_model(open_store(uri)).metadata.model_version
    assert f"Published model {version} to s3://{bucket}/models/" in trained.stderr
    port = free_port()
    service = start_service(["-m", "pipeline.serve_model", uri, "--port", str(port)], port, env)
    try:
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/v0.1/time_to_dispatch",
            json={"product_code": "SKU003", "orders_placed": 40},
        )
    finally:
        stop_service(service)
    assert response.status_code == 200
    assert response.json()["model_version"] == version


def _assert_one_clear_error_line(output: str, expected: str, secret: str) -> None:
    errors = [line for line in output.splitlines() if " - ERROR - " in line]
    assert len(errors) == 1, output
    assert re.search(expected, errors[0]), errors[0]
    assert "Traceback" not in output
    assert secret not in output


@pytest.mark.parametrize("stage", ["train_model", "serve_model"])
def test_a_missing_bucket_fails_fast_with_one_line_saying_so(
    s3_env: Dict[str, str], stage: str
) -> None:
    result = run_stage(["-m", f"pipeline.{stage}", "s3://no-such-bucket-here"], stage_env(s3_env))
    assert result.returncode == 1
    _assert_one_clear_error_line(
        result.stderr,
        r"s3://no-such-bucket-here/.*the bucket does not exist",
        s3_env["AWS_SECRET_ACCESS_KEY"],
    )


def test_a_missing_prefix_says_there_is_no_tranche_or_model(
    s3_env: Dict[str, str], bucket: str
) -> None:
    uri = f"s3://{bucket}/no/such/prefix"
    trained = run_stage(["-m", "pipeline.train_model", uri], stage_env(s3_env))
    assert trained.returncode == 1
    assert f"no tranche found in {uri}/datasets/" in trained.stderr
    served = run_stage(["-m", "pipeline.serve_model", uri], stage_env(s3_env))
    assert served.returncode == 1
    assert f"no published model in {uri}/models/" in served.stderr


@pytest.mark.parametrize(
    "key, secret",
    [("test-admin-access-key", "not-the-secret-1234"), ("nobody-key", "nobody-secret-5678")],
)
def test_wrong_credentials_are_refused_with_one_line_and_no_secret_in_the_log(
    s3_env: Dict[str, str], bucket: str, key: str, secret: str
) -> None:
    env = stage_env({**s3_env, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret})
    result = run_stage(["-m", "pipeline.train_model", f"s3://{bucket}"], env)
    assert result.returncode == 1
    _assert_one_clear_error_line(result.stderr, r"access refused \(\w+\): check the AWS", secret)


def test_read_only_credentials_cannot_publish_and_nothing_is_published(
    s3_server: S3Server, s3_env: Dict[str, str], bucket: str
) -> None:
    uri = f"s3://{bucket}"
    generate_dataset.main(open_store(uri), rows=500, skus=3)
    env = stage_env(
        {
            **s3_env,
            "AWS_ACCESS_KEY_ID": s3_server.readonly_access_key,
            "AWS_SECRET_ACCESS_KEY": s3_server.readonly_secret_key,
        }
    )
    result = run_stage(["-m", "pipeline.train_model", uri], env)
    assert result.returncode == 1
    _assert_one_clear_error_line(
        result.stderr, r"cannot (check|write) s3://.*access refused", s3_server.readonly_secret_key
    )
    assert open_store(uri).list_keys("models/") == []


def test_an_unreachable_endpoint_fails_within_bounded_time(s3_env: Dict[str, str]) -> None:
    env = stage_env({**s3_env, "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{free_port()}"})
    started = time.monotonic()
    result = run_stage(["-m", "pipeline.train_model", "s3://bucket"], env)
    assert result.returncode == 1
    assert time.monotonic() - started < 60
    _assert_one_clear_error_line(
        result.stderr, r"cannot reach the S3 endpoint: check AWS_ENDPOINT_URL_S3", "secret"
    )


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback server that accepts connections and never answers: a hung S3."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_hung_endpoint_is_given_up_on_after_bounded_retries(
    s3_env: Dict[str, str], silent_endpoint: str
) -> None:
    env = stage_env(
        {
            **s3_env,
            "AWS_ENDPOINT_URL_S3": silent_endpoint,
            "TTD_S3_READ_TIMEOUT": "1",
            "TTD_S3_MAX_ATTEMPTS": "2",
        }
    )
    started = time.monotonic()
    result = run_stage(["-m", "pipeline.train_model", "s3://bucket"], env)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed < 30, elapsed
    _assert_one_clear_error_line(result.stderr, r"stopped answering", "secret")


def test_a_bad_tranche_on_s3_is_refused_by_name_and_the_served_model_stays(
    s3_env: Dict[str, str], bucket: str
) -> None:
    uri = f"s3://{bucket}"
    store = open_store(uri)
    generate_dataset.main(store, rows=1000, skus=5, when=datetime(2021, 7, 9))
    env = stage_env(s3_env)
    assert run_stage(["-m", "pipeline.train_model", uri], env=env).returncode == 0
    before = store.list_keys("models/")
    bad_key = tranche_key(datetime(2021, 7, 16))
    store.put_new(bad_key, b"hours_to_dispatch,product_code\n1.5,SKU001\n")
    result = run_stage(["-m", "pipeline.train_model", uri], env=env)
    assert result.returncode == 1
    assert f"tranche s3://{bucket}/{bad_key}: missing column(s): orders_placed" in result.stderr
    assert store.list_keys("models/") == before
    assert store.get_bytes(bad_key) == b"hours_to_dispatch,product_code\n1.5,SKU001\n"


def test_two_training_runs_on_s3_at_once_publish_two_whole_models(
    s3_env: Dict[str, str], bucket: str
) -> None:
    uri = f"s3://{bucket}"
    generate_dataset.main(open_store(uri), rows=1000, skus=5)
    runs = run_stages_at_once(["-m", "pipeline.train_model", uri], 2, stage_env(s3_env))
    assert [code for code, _ in runs] == [0, 0], runs
    store = open_store(uri)
    versions = published_versions(store)
    assert len(versions) == 2
    for version in versions:
        assert load_model(store, version).metadata.model_version == version


def test_serving_from_s3_skips_a_tampered_model_and_serves_the_previous_one(
    s3_env: Dict[str, str], bucket: str
) -> None:
    uri = f"s3://{bucket}"
    store = open_store(uri)
    assert isinstance(store, S3Store)
    generate_dataset.main(store, rows=1000, skus=5)
    good = train_model.main(store)
    tampered = train_model.main(store, force=True)
    key = artifact_key(tampered)
    body = store.get_bytes(key) + b"\x00"
    store.client.put_object(Bucket=bucket, Key=key, Body=body)  # an attacker's overwrite
    port = free_port()
    service = start_service(
        ["-m", "pipeline.serve_model", uri, "--port", str(port)], port, stage_env(s3_env)
    )
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/ready").json()
    finally:
        output = stop_service(service)
    assert answer["model_version"] == good
    assert f"skipping model {tampered}: s3://{bucket}/{key}: SHA-256 differs" in output


def test_training_on_s3_removes_unpublished_artifacts_past_the_age_limit_only(
    s3_env: Dict[str, str], bucket: str
) -> None:
    uri = f"s3://{bucket}"
    store = open_store(uri)
    generate_dataset.main(store, rows=1000, skus=5)
    published = train_model.main(store)
    orphan = artifact_key("20210101T000000000000Z-000000000001")  # its run died before metadata
    store.put_new(orphan, b"half-published")
    # Just written: it may be a concurrent run's publication in progress, so it stays.
    kept = run_stage(["-m", "pipeline.train_model", uri, "--force"], stage_env(s3_env))
    assert kept.returncode == 0, kept.stderr
    assert orphan in store.list_keys("models/")
    removed = run_stage(
        ["-m", "pipeline.train_model", uri, "--force"],
        stage_env({**s3_env, "TTD_LEFTOVER_MAX_AGE_HOURS": "0"}),
    )
    assert removed.returncode == 0, removed.stderr
    assert f"Removed leftover of a failed run s3://{bucket}/{orphan}" in removed.stderr
    keys = store.list_keys("models/")
    assert orphan not in keys
    assert len(published_versions(store)) == 3
    assert all(artifact_key(v) in keys for v in published_versions(store))
    assert published in published_versions(store)
