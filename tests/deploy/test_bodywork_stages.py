"""Both stages run by Bodywork's own stage runner, as each Kubernetes pod runs them.

`bodywork stage <git-url> <stage>` is the command of every pod Bodywork creates: it clones the
repo, pip-installs the stage's requirements from bodywork.yaml, and runs `python <module> ARGS`
from the module's folder with the clone on PYTHONPATH. Here it clones this repo through a
file:// URL, so what runs is what is committed, against a real S3 server (SeaweedFS) reached
through the standard AWS variables, as the cluster reaches the production bucket.

The serve stage binds 0.0.0.0:8000 as in production, so the test runs only in a private
network namespace (tests/deploy/isolated.py, used by tox), where that is its own loopback.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator

import httpx
import pandas as pd
import pytest

from pipeline.generate_dataset import best_estimate, generate_tranche, to_csv_bytes
from pipeline.data.tranche import ORDERS, PRODUCT
from tests.deploy.stage_requirements import REPO, load_bodywork_config
from tests.seaweedfs import S3Server, make_bucket, running_seaweedfs

BUCKET = "bodywork-time-to-dispatch"
TRANCHE_KEY = "datasets/time_to_dispatch_2021-07-09T23:00:00.csv"
SERVE_PORT = 8000  # from bodywork.yaml's serve_model args, as in the cluster
STAGE_TIMEOUT = 300.0


@pytest.fixture
def private_network() -> None:
    """Skip (fail under CI) unless loopback is the only network interface."""
    interfaces = sorted(name for _, name in socket.if_nameindex())
    if interfaces != ["lo"]:
        message = (
            f"not in a private network namespace (interfaces: {', '.join(interfaces)}): the "
            "serve stage would bind 0.0.0.0:8000 here; run `tox -e py39-bodywork`, as root or "
            "with unprivileged user namespaces"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with running_seaweedfs(tmp_path / "seaweedfs") as server:
        make_bucket(server, BUCKET)
        yield server


def bodywork() -> str:
    found = shutil.which("bodywork", path=str(Path(sys.executable).parent))
    assert found, f"bodywork is not installed beside {sys.executable}: see tox.ini"
    return found


def stage_environment(server: S3Server) -> Dict[str, str]:
    """This environment (its bin first on PATH, as Bodywork runs `pip` and `python` from PATH)
    with the S3 server as the AWS endpoint, the variables that bodywork.yaml's secrets set, and
    no settings of the developer's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TTD_"))}
    env.update(server.env())
    env["TTD_SIGNING_KEY"] = "test-signing-key"  # from the secret model-signing in the cluster
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_bodywork_stage(stage: str, workdir: Path, env: Dict[str, str]) -> "subprocess.Popen[str]":
    """Start `bodywork stage file://REPO STAGE` in its own process group, logging to a file."""
    workdir.mkdir()
    log = open(workdir / "bodywork.log", "w")
    try:
        return subprocess.Popen(
            [bodywork(), "stage", f"file://{REPO}", stage],
            cwd=workdir,  # Bodywork clones into ./bodywork_project
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    finally:
        log.close()


def committed_head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def uncommitted_changes() -> str:
    """What Bodywork will not see: it clones HEAD, not the working tree."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--", "bodywork.yaml", "pipeline", "tests/deploy"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return f"\n(Bodywork ran the last commit; not committed:\n{status})" if status else ""


def stop_group(process: "subprocess.Popen[str]", signum: int = signal.SIGTERM) -> None:
    """Signal the stage's whole process group: Bodywork and the server it started."""
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def wait_until_ready(process: "subprocess.Popen[str]", log: Path) -> str:
    """Poll /ready until it answers 200 (return the model version) or the stage exits."""
    deadline = time.monotonic() + STAGE_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            response = httpx.get(f"http://127.0.0.1:{SERVE_PORT}/ready", timeout=2)
            if response.status_code == 200:
                version: str = response.json()["model_version"]
                return version
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # polling interval, not a wait for an outcome
    pytest.fail(f"serve stage not ready (exit code {process.poll()}):\n{log.read_text()}")


def wait_for_line(log: Path, line: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if line in log.read_text():
            return True
        time.sleep(0.1)  # polling interval, not a wait for an outcome
    return False


def test_bodywork_trains_a_model_into_s3_and_serves_estimates_from_it(
    private_network: None, s3: S3Server, tmp_path: Path
) -> None:
    serve_args = load_bodywork_config()["stages"]["serve_model"]["args"]
    assert serve_args[serve_args.index("--port") + 1] == str(SERVE_PORT)
    tranche = generate_tranche(rows=1000, skus=5, seed=11)
    s3.client().put_object(Bucket=BUCKET, Key=TRANCHE_KEY, Body=to_csv_bytes(tranche.data))
    env = stage_environment(s3)

    train = run_bodywork_stage("train_model", tmp_path / "train", env)
    try:
        train.wait(timeout=STAGE_TIMEOUT)
    finally:
        stop_group(train, signal.SIGKILL)
    train_log = (tmp_path / "train" / "bodywork.log").read_text()
    assert train.returncode == 0, train_log + uncommitted_changes()
    assert "Successfully ran stage = train_model" in train_log
    published = re.search(r"Published model (\S+) to s3://bodywork-time-to-dispatch/", train_log)
    assert published, train_log
    metadata_key = f"models/time_to_dispatch_model_{published[1]}.json"
    metadata = json.loads(s3.client().get_object(Bucket=BUCKET, Key=metadata_key)["Body"].read())
    assert metadata["dataset"]["key"] == TRANCHE_KEY
    assert metadata["git_commit"] == committed_head(), "Bodywork ran another commit than HEAD"

    serve = run_bodywork_stage("serve_model", tmp_path / "serve", env)
    serve_log = tmp_path / "serve" / "bodywork.log"
    try:
        assert wait_until_ready(serve, serve_log) == published[1]
        request = {"product_code": "SKU003", "orders_placed": 120}
        response = httpx.post(
            f"http://127.0.0.1:{SERVE_PORT}/api/v0.1/time_to_dispatch", json=request, timeout=10
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model_version"] == published[1]
        asked = pd.DataFrame({PRODUCT: ["SKU003"], ORDERS: [120]})
        expected = best_estimate(tranche.products, asked)[0]
        assert abs(answer["est_hours_to_dispatch"] - expected) < 0.5, (answer, expected)
        # As Kubernetes stops a pod: SIGTERM, here to Bodywork and the server it started.
        stop_group(serve)
        finished = wait_for_line(serve_log, "Finished server process", time.monotonic() + 60)
        assert finished, f"the server did not shut down on SIGTERM:\n{serve_log.read_text()}"
    finally:
        stop_group(serve, signal.SIGKILL)
        serve.wait(timeout=30)
    log = serve_log.read_text()
    assert "Installing required Python packages: boto3==" in log
    assert "Application shutdown complete" in log, log
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{SERVE_PORT}/health", timeout=2)
