"""A poisoned store: a huge file planted as the newest model's metadata, by anyone who can
write to the bucket, must not make the stages slow or large (the pod has 384 MB)."""
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline import generate_dataset, train_model
from pipeline.registry.published import metadata_key, new_model_version
from pipeline.registry.store import LocalStore, Store, open_store
from tests.processes import REPO, free_port, stage_env, start_service, stop_service

HUGE_BYTES = 100 * 1024 * 1024
MAX_STARTUP_SECONDS = 5.0
MAX_PEAK_RSS_MB = 400.0

# Reports the peak memory of the one child it runs: a parent of its own, so that no other
# process this test session waited for is counted.
PEAK_RSS_OF_CHILD = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n"
    "sys.exit(code)\n"
)


def huge_metadata() -> bytes:
    """Valid JSON that a parser would spend many seconds and gigabytes on."""
    head = b'{"model_version": "x", "padding": ['
    return head + b"0," * ((HUGE_BYTES - len(head)) // 2) + b"0]}"


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_huge_metadata_file_is_skipped_unread_by_serving_and_training(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "s3":
        env = stage_env(request.getfixturevalue("s3_env"))
        uri = f"s3://{request.getfixturevalue('bucket')}"
    else:
        env = stage_env()
        uri = str(tmp_path / "store")
    store: Store = open_store(uri) if backend == "s3" else LocalStore(uri)
    generate_dataset.main(store, rows=500, skus=3)
    good = train_model.main(store)
    planted = new_model_version()
    store.put_new(metadata_key(planted), huge_metadata())

    port = free_port()
    started = time.monotonic()
    service = start_service(["-m", "pipeline.serve_model", uri, "--port", str(port)], port, env)
    try:
        startup = time.monotonic() - started
        peak = service.peak_rss_mb()
        served = httpx.get(f"http://127.0.0.1:{port}/ready").json()["model_version"]
    finally:
        output = stop_service(service)
    assert served == good
    assert f"skipping model {planted}: {store.location(metadata_key(planted))} is " in output
    assert "over the limit of 1,048,576: not reading it (TTD_MAX_METADATA_BYTES)" in output
    assert startup < MAX_STARTUP_SECONDS, startup
    assert peak < MAX_PEAK_RSS_MB, peak

    trained = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_OF_CHILD, sys.executable, "-m", "pipeline.train_model"]
        + [uri],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert trained.returncode == 0, trained.stderr
    assert f"skipping model {planted}" in trained.stderr
    assert float(trained.stdout.strip()) < MAX_PEAK_RSS_MB, trained.stdout
