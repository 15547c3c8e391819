"""The three commands, run as processes against the embedded local store."""
import re
from pathlib import Path

import httpx

from pipeline.registry.published import load_model, published_versions
from pipeline.registry.store import LocalStore
from tests.processes import (
    REPO,
    free_port,
    run_stage,
    run_stages_at_once,
    stage_env,
    start_service,
    stop_service,
)

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - (INFO|WARNING|ERROR) - \w+\.\w+ - ")


def test_generate_train_serve_answers_an_estimate_from_the_published_model(tmp_path: Path) -> None:
    store = str(tmp_path / "artifacts")
    generated = run_stage(["-m", "pipeline.generate_dataset", store, "--date", "2021-07-09T23:00"])
    assert generated.returncode == 0, generated.stderr
    trained = run_stage(["-m", "pipeline.train_model", store])
    assert trained.returncode == 0, trained.stderr
    lines = trained.stderr.splitlines()
    assert "train_model.main - Starting train-model stage." in lines[0]
    assert all(LOG_LINE.match(line) for line in lines), trained.stderr
    version = re.search(r"Published model (\S+)", trained.stderr).group(1)  # type: ignore

    port = free_port()
    service = start_service(["-m", "pipeline.serve_model", store, "--port", str(port)], port)
    try:
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/v0.1/time_to_dispatch",
            json={"product_code": "SKU001", "orders_placed": 112},
        )
        assert response.status_code == 200
        body = response.json()
        assert body["model_version"] == version
        assert 0 < body["est_hours_to_dispatch"] < 20
    finally:
        output = stop_service(service)
    assert service.returncode == 0, output


def test_stages_run_as_bodywork_runs_them_from_the_pipeline_folder(tmp_path: Path) -> None:
    store = str(tmp_path / "artifacts")
    assert run_stage(["-m", "pipeline.generate_dataset", store]).returncode == 0
    trained = run_stage(["train_model.py", store], cwd=REPO / "pipeline")
    assert trained.returncode == 0, trained.stderr
    port = free_port()
    service = start_service(
        ["serve_model.py", store, "--port", str(port)], port, env=stage_env(), cwd=REPO / "pipeline"
    )
    assert stop_service(service) is not None and service.returncode == 0


def test_an_empty_store_fails_each_stage_with_a_message_saying_what_to_do(tmp_path: Path) -> None:
    store = str(tmp_path / "empty")
    trained = run_stage(["-m", "pipeline.train_model", store])
    assert trained.returncode == 1
    assert "no tranche found in" in trained.stderr
    assert "python -m pipeline.generate_dataset" in trained.stderr
    assert "Traceback" not in trained.stderr
    served = run_stage(["-m", "pipeline.serve_model", store, "--port", str(free_port())])
    assert served.returncode == 1
    assert "no published model in" in served.stderr
    assert "python -m pipeline.train_model" in served.stderr


def test_generate_refuses_to_overwrite_a_tranche(tmp_path: Path) -> None:
    store = str(tmp_path / "artifacts")
    args = ["-m", "pipeline.generate_dataset", store, "--date", "2021-07-09"]
    assert run_stage(args).returncode == 0
    again = run_stage(args + ["--rows", "10"])
    assert again.returncode == 1
    assert "exists already; not overwriting" in again.stderr


def test_a_signing_key_in_the_environment_signs_at_training_and_is_enforced_at_serving(
    tmp_path: Path,
) -> None:
    store = str(tmp_path / "artifacts")
    assert run_stage(["-m", "pipeline.generate_dataset", store]).returncode == 0
    signed = stage_env({"TTD_SIGNING_KEY": "key-a"})
    trained = run_stage(["-m", "pipeline.train_model", store], env=signed)
    assert trained.returncode == 0 and ", signed" in trained.stderr
    wrong = run_stage(
        ["-m", "pipeline.serve_model", store, "--port", str(free_port())],
        env=stage_env({"TTD_SIGNING_KEY": "key-b"}),
    )
    assert wrong.returncode == 1
    assert "signature does not match TTD_SIGNING_KEY" in wrong.stderr
    assert "key-a" not in wrong.stderr and "key-b" not in wrong.stderr
    port = free_port()
    args = ["-m", "pipeline.serve_model", store, "--port", str(port)]
    service = start_service(args, port, signed)
    assert stop_service(service) and service.returncode == 0


def test_two_training_runs_at_once_publish_two_whole_models(tmp_path: Path) -> None:
    store = str(tmp_path / "artifacts")
    assert run_stage(["-m", "pipeline.generate_dataset", store]).returncode == 0
    # --force: without it, a run that starts after the other has published finds the same
    # tranche trained by the same code and rightly does nothing (a race on a busy machine).
    runs = run_stages_at_once(["-m", "pipeline.train_model", store, "--force"], copies=2)
    assert [code for code, _ in runs] == [0, 0], runs
    local = LocalStore(store)
    versions = published_versions(local)
    assert len(versions) == 2
    for version in versions:
        assert load_model(local, version).metadata.model_version == version


def test_serving_can_be_pinned_to_an_earlier_model_to_roll_back(tmp_path: Path) -> None:
    store = str(tmp_path / "artifacts")
    assert run_stage(["-m", "pipeline.generate_dataset", store]).returncode == 0
    assert run_stage(["-m", "pipeline.train_model", store]).returncode == 0
    assert run_stage(["-m", "pipeline.train_model", store, "--force"]).returncode == 0
    earlier, newest = sorted(published_versions(LocalStore(store)))
    port = free_port()
    args = ["-m", "pipeline.serve_model", store, "--port", str(port)]
    service = start_service(args, port, stage_env({"TTD_MODEL_VERSION": earlier}))
    try:
        pinned = httpx.get(f"http://127.0.0.1:{port}/ready").json()["model_version"]
    finally:
        stop_service(service)
    assert pinned == earlier != newest
    missing = run_stage(args + ["--model-version", "20990101T000000000000Z-000000"])
    assert missing.returncode == 1
    assert "model version '20990101T000000000000Z-000000' is not published in" in missing.stderr
