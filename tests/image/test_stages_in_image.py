"""Both stages run in the stage image by Bodywork's own stage runner, as each pod runs them.

`bodywork stage <git-url> <stage>` is the command of every pod Bodywork creates: it clones the
repo, runs `pip install` of the stage's requirements from bodywork.yaml, and runs `python
<module> ARGS` from the module's folder with the clone on PYTHONPATH. Here each stage runs in a
fresh container of the image that `python -m tests.image` just built (tests/image/__main__.py),
as the image's user, in its working directory, with the image's PATH: Bodywork's `pip` and
`python` are the image's venv. It clones this repo's committed HEAD (a bare copy, mounted
read-only), and reaches a real S3 server (SeaweedFS) through the standard AWS variables, as a
pod reaches the production bucket.

Everything runs in a network namespace with only loopback (tests/deploy/isolated.py): the
serve stage binds 0.0.0.0:8000 as in production, and nothing can reach the internet, so the
stages, and Bodywork's `pip install` at their start, need no network at all.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Tuple

import httpx
import pandas as pd
import pytest

from pipeline.data.tranche import ORDERS, PRODUCT
from pipeline.generate_dataset import best_estimate, generate_tranche, to_csv_bytes, true_quantile
from tests.deploy.stage_requirements import REPO, all_stage_requirements, load_bodywork_config
from tests.image import IMAGE, RESULTS, STORAGE
from tests.image.buildah import (
    Buildah,
    Container,
    image_config,
    new_container,
    run_in_container,
)
from tests.seaweedfs import S3Server, make_bucket, running_seaweedfs

BUCKET = "bodywork-time-to-dispatch"
TRANCHE_KEY = "datasets/time_to_dispatch_2021-07-09T23:00:00.csv"
SERVE_PORT = 8000  # from bodywork.yaml's serve_model args, as in the cluster
STAGE_TIMEOUT = 300.0
REPO_IN_IMAGE = "/srv/time-to-dispatch.git"


class BuiltImage(NamedTuple):
    buildah: Buildah
    name: str


@pytest.fixture
def image() -> BuiltImage:
    if not os.environ.get(STORAGE) or not os.environ.get(IMAGE):
        pytest.fail("no stage image was built for this run: run `python -m tests.image`")
    return BuiltImage(Buildah(Path(os.environ[STORAGE])), os.environ[IMAGE])


@pytest.fixture
def private_network() -> None:
    """Fail unless loopback is the only network interface (tests/deploy/isolated.py)."""
    interfaces = sorted(name for _, name in socket.if_nameindex())
    assert interfaces == ["lo"], (
        f"not in a private network namespace (interfaces: {', '.join(interfaces)}): "
        "run `python -m tests.image`"
    )


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with running_seaweedfs(tmp_path / "seaweedfs") as server:
        make_bucket(server, BUCKET)
        yield server


@pytest.fixture
def containers(image: BuiltImage) -> Iterator[List[Container]]:
    """The containers a test makes (each stage gets a fresh one, as a pod does); removed after."""
    made: List[Container] = []
    yield made
    for container in made:
        image.buildah.run("rm", container.name)


def record(measurements: Dict[str, float]) -> None:
    """Add measurements to the results that `python -m tests.image` prints."""
    path = Path(os.environ[RESULTS])
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(measurements)
    path.write_text(json.dumps(results))


def image_user(container: Container, name: str) -> Tuple[int, int]:
    """The uid and gid of the image's user `name`, from the image's own /etc/passwd."""
    for line in (container.rootfs / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"the image has no user {name}")


def committed_repository(destination: Path, uid: int, gid: int) -> Path:
    """A bare clone of this repo's HEAD, owned by the image's user, as a remote would serve it."""
    subprocess.run(
        ["git", "clone", "--quiet", "--bare", "--no-hardlinks", str(REPO), str(destination)],
        check=True,
    )
    for folder, _, files in os.walk(destination):
        os.chown(folder, uid, gid)
        for name in files:
            os.chown(os.path.join(folder, name), uid, gid)
    return destination


def committed_head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def stage_environment(server: S3Server) -> Dict[str, str]:
    """What bodywork.yaml's secrets give a pod, with the S3 server as the AWS endpoint; the
    rest (PATH first of all) is the image's own."""
    return {**server.env(), "TTD_SIGNING_KEY": "test-signing-key"}


def fresh_container(image: BuiltImage, containers: List[Container]) -> Container:
    """A new container of the image, as each pod gets, removed after the test."""
    container = new_container(image.buildah, image.name)
    containers.append(container)
    return container


def start_stage(
    image: BuiltImage,
    container: Container,
    stage: str,
    repository: Path,
    env: Dict[str, str],
    log: Path,
) -> "subprocess.Popen[str]":
    """Run `bodywork stage file://REPO STAGE` in the container, as a pod's command."""
    return run_in_container(
        image.buildah,
        container,
        ["bodywork", "stage", f"file://{REPO_IN_IMAGE}", stage],
        env=env,
        volumes=[(repository, REPO_IN_IMAGE)],
        log=log,
    )


def pip_installed_nothing(log: str) -> None:
    """Assert Bodywork's `pip install -v` found every pin installed and fetched nothing."""
    start = log.index("Installing required Python packages: ")
    end = log.index("Successfully installed all Python packages.", start)
    pip = log[start:end]
    for pin in all_stage_requirements(load_bodywork_config()):
        name, version = pin.split("==")
        satisfied = rf"Requirement already satisfied: {re.escape(name)}=={re.escape(version)} "
        assert re.search(satisfied, pip, re.I), f"pip did not find {pin} installed:\n{pip}"
    for sign in ("Collecting", "Downloading", "Installing collected packages",
                 "Successfully installed", "Retrying"):
        assert sign not in pip, f"Bodywork's pip install did more than check ({sign}):\n{pip}"


def stage_process(runner: "subprocess.Popen[str]", module: str) -> int:
    """The pid of the stage's own process (`python MODULE ...`) under the container's runner."""
    children: Dict[int, List[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    pending, found = [runner.pid], []
    while pending:
        pid = pending.pop()
        pending.extend(children.get(pid, []))
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:2] == [module.encode()]:
            found.append(pid)
    assert len(found) == 1, f"{len(found)} processes run {module} under {runner.pid}"
    return found[0]


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
        time.sleep(0.1)  # polling interval, not a wait for an outcome
    pytest.fail(f"serve stage not ready (exit code {process.poll()}):\n{log.read_text()}")


def test_the_image_runs_its_venv_s_python_and_pip_as_an_unprivileged_user(
    image: BuiltImage,
) -> None:
    config = image_config(image.buildah, image.name)
    assert config["User"] == "bodywork"
    assert config["WorkingDir"] == "/home/bodywork"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].split(":")[0] == "/opt/venv/bin", env["PATH"]
    assert env["VIRTUAL_ENV"] == "/opt/venv"


def test_bodywork_trains_into_s3_and_serves_estimates_and_promises_in_the_image(
    private_network: None,
    image: BuiltImage,
    containers: List[Container],
    s3: S3Server,
    tmp_path: Path,
) -> None:
    serve_args = load_bodywork_config()["stages"]["serve_model"]["args"]
    assert serve_args[serve_args.index("--port") + 1] == str(SERVE_PORT)
    tranche = generate_tranche(rows=1000, skus=5, seed=11)
    s3.client().put_object(Bucket=BUCKET, Key=TRANCHE_KEY, Body=to_csv_bytes(tranche.data))
    container = fresh_container(image, containers)
    # The image's user owns its home, not the venv: a stage cannot change what is installed.
    user = image_user(container, "bodywork")
    assert user == (1000, 1000)
    assert (container.rootfs / "home" / "bodywork").stat().st_uid == user[0]
    venv = container.rootfs / "opt" / "venv"
    assert venv.stat().st_uid == 0 and not venv.stat().st_mode & 0o022
    repository = committed_repository(tmp_path / "repo.git", *user)
    env = stage_environment(s3)

    started = time.monotonic()
    train_log = tmp_path / "train.log"
    train = start_stage(image, container, "train_model", repository, env, train_log)
    try:
        train.wait(timeout=STAGE_TIMEOUT)
    finally:
        if train.poll() is None:
            os.killpg(train.pid, signal.SIGKILL)
            train.wait()
    record({"train stage, start to exit, s": time.monotonic() - started})
    log = train_log.read_text()
    assert train.returncode == 0, log
    assert "Successfully ran stage = train_model" in log
    pip_installed_nothing(log)
    published = re.search(r"Published model (\S+) to s3://bodywork-time-to-dispatch/", log)
    assert published, log
    metadata_key = f"models/time_to_dispatch_model_{published[1]}.json"
    metadata = json.loads(s3.client().get_object(Bucket=BUCKET, Key=metadata_key)["Body"].read())
    assert metadata["dataset"]["key"] == TRANCHE_KEY
    assert metadata["git_commit"] == committed_head(), "Bodywork ran another commit than HEAD"

    serve_log = tmp_path / "serve.log"
    container = fresh_container(image, containers)
    started = time.monotonic()
    serve = start_stage(image, container, "serve_model", repository, env, serve_log)
    try:
        assert wait_until_ready(serve, serve_log) == published[1]
        record({"serve stage, start to ready, s": time.monotonic() - started})
        request = {"product_code": "SKU003", "orders_placed": 120, "promise_probability": 0.9}
        response = httpx.post(
            f"http://127.0.0.1:{SERVE_PORT}/api/v0.1/time_to_dispatch", json=request, timeout=10
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model_version"] == published[1]
        asked = pd.DataFrame({PRODUCT: ["SKU003"], ORDERS: [120]})
        expected = best_estimate(tranche.products, asked)[0]
        assert abs(answer["est_hours_to_dispatch"] - expected) < 0.5, (answer, expected)
        assert answer["promise_probability"] == 0.9
        promised = true_quantile(tranche.products, asked, 0.9)[0]
        assert abs(answer["promise_hours_to_dispatch"] - promised) < 0.5, (answer, promised)
        # The server drains and exits on SIGTERM, and Bodywork reports its stage run.
        server = stage_process(serve, "serve_model.py")
        assert Path(f"/proc/{server}").stat().st_uid == user[0], "not the image's user"
        os.kill(server, signal.SIGTERM)
        serve.wait(timeout=60)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
    log = serve_log.read_text()
    assert serve.returncode == 0, log
    pip_installed_nothing(log)
    assert "Finished server process" in log and "Application shutdown complete" in log, log
    assert "Successfully ran stage = serve_model" in log, log
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{SERVE_PORT}/health", timeout=2)
