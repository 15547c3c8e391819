"""The three commands, run as processes against the embedded local store."""
import re
from pathlib import Path

import httpx

from tests.processes import REPO, free_port, run_stage, stage_env, start_service, stop_service

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
