"""What an operator sees when a setting, a store URI or a port is wrong: one ERROR line, exit 1.

The stages run as real processes, as `make run`, Bodywork and Kubernetes run them.
"""
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import httpx
import pytest

from pipeline import train_model
from pipeline.settings import Settings
from pipeline.registry.store import LocalStore
from tests.processes import REPO, free_port, run_stage, stage_env, start_service, stop_service
from tests.scrape import parse_metrics, value

STAGES = ["generate_dataset", "train_model", "serve_model"]


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - [A-Z]+ - ")


def error_lines(stderr: str) -> List[str]:
    """The ERROR lines of a failed run: exactly one, every line a log line, no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert all(LOG_LINE.match(line) for line in lines), stderr
    errors = [line for line in lines if " - ERROR - " in line]
    assert len(errors) == 1, stderr
    return errors


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other process listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize(
    "variable, bad",
    [("TTD_S3_MAX_ATTEMPTS", "x"), ("TTD_DEBUG", "maybe"),
     ("TTD_CORS_ORIGINS", "https://ui.example.com/")],
)
def test_a_bad_setting_is_one_error_line_naming_the_variable(
    tmp_path: Path, stage: str, variable: str, bad: str
) -> None:
    result = run_stage(
        ["-m", f"pipeline.{stage}", str(tmp_path / "store")],
        stage_env({variable: bad}),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert variable in line and repr(bad) in line
    assert list(tmp_path.iterdir()) == []


def test_a_bad_signing_key_setting_is_never_echoed(tmp_path: Path) -> None:
    """Only TTD_DEBUG is wrong here, but the key is in the environment: it must not leak."""
    env = stage_env({"TTD_DEBUG": "maybe", "TTD_SIGNING_KEY": "s3cr3t-key-value"})
    result = run_stage(["-m", "pipeline.train_model", str(tmp_path)], env, cwd=tmp_path)
    assert result.returncode == 1 and "s3cr3t" not in result.stderr + result.stdout


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("uri", ["s3:/bucket", "s3//bucket", "S3://bucket", "s3:bucket"])
def test_a_mistyped_s3_uri_is_refused_and_creates_nothing(
    tmp_path: Path, stage: str, uri: str
) -> None:
    args = ["-m", f"pipeline.{stage}", uri]
    if stage == "serve_model":
        args += ["--port", str(free_port())]
    result = run_stage(args, cwd=tmp_path)
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert repr(uri) in line and "s3://bucket[/prefix]" in line
    assert list(tmp_path.iterdir()) == []  # no folder named like `s3:` appeared


def test_a_busy_port_is_one_line_naming_it_and_how_to_choose_another(
    tmp_path: Path, busy_port: int
) -> None:
    result = run_stage(
        ["-m", "pipeline.serve_model", str(tmp_path), "--port", str(busy_port)], cwd=tmp_path
    )
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert f"port {busy_port}" in line and "--port" in line and "PORT=" in line


def test_a_busy_metrics_port_is_one_line_naming_it_and_how_to_choose_another(
    tmp_path: Path, busy_port: int
) -> None:
    result = run_stage(
        ["-m", "pipeline.serve_model", str(tmp_path), "--port", str(free_port()),
         "--metrics-port", str(busy_port)],
        cwd=tmp_path,
    )
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert f"port {busy_port}" in line and "--metrics-port" in line and "TTD_METRICS_PORT" in line


def test_check_port_only_checks(tmp_path: Path, busy_port: int) -> None:
    busy = run_stage(["-m", "pipeline.serve_model", "--check-port", "--port", str(busy_port)])
    assert busy.returncode == 1 and f"port {busy_port}" in busy.stderr
    free = run_stage(["-m", "pipeline.serve_model", "--check-port", "--port", str(free_port())])
    assert free.returncode == 0, free.stderr


def test_make_run_checks_the_port_before_generating_or_training(
    tmp_path: Path, busy_port: int
) -> None:
    """With the run's install already done (a venv whose python is this one)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    (venv / ".installed-run").touch()
    store = tmp_path / "store"
    result = subprocess.run(
        ["make", "run", f"VENV={venv}", f"STORE={store}", f"PORT={busy_port}"],
        cwd=REPO,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"port {busy_port}" in result.stderr and "PORT=" in result.stderr
    assert "generate_dataset" not in result.stdout and not store.exists()


@pytest.mark.parametrize("stage", ["generate_dataset", "train_model", "serve_model", "models"])
def test_help_shows_every_options_default_and_the_ttd_variables(stage: str) -> None:
    result = run_stage(["-m", f"pipeline.{stage}", "--help"])
    assert result.returncode == 0
    # Each argument's entry: from its indented name to the next entry or section heading.
    entries = re.findall(r"^  ((?:--|store)[\w-]*.*?)(?=^  [-\w]|^\S|\Z)", result.stdout,
                         re.MULTILINE | re.DOTALL)
    documented = [entry for entry in entries if not entry.startswith("--help")]
    assert len(documented) >= 3, result.stdout
    assert all("(default:" in entry for entry in documented), documented
    for name in Settings.model_fields:
        assert f"TTD_{name.upper()}" in result.stdout


def test_a_service_pinned_to_an_older_model_says_so_at_start_and_in_its_metrics(
    tmp_path: Path, store_with_tranche: LocalStore
) -> None:
    older = train_model.main(store_with_tranche)
    newest = train_model.main(store_with_tranche, force=True)
    port, metrics_port = free_port(), free_port()
    service = start_service(
        ["-m", "pipeline.serve_model", str(store_with_tranche.root), "--port", str(port),
         "--metrics-port", str(metrics_port), "--model-version", older],
        port,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        samples = parse_metrics(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text)
        public = httpx.get(f"{base}/metrics")
        info = httpx.get(f"{base}/api/v0.1/model").json()
    finally:
        output = stop_service(service)
    assert value(samples, "ttd_serving_newest_model") == 0
    assert public.status_code == 404, "the public port must not answer /metrics"
    assert public.json()["detail"][0]["type"] == "http_404"
    assert f"Metrics on http://127.0.0.1:{metrics_port}/metrics (not on port {port})" in output
    assert info["pinned"] is True and info["newest_published"] == newest
    warnings = [line for line in output.splitlines() if " - WARNING - " in line]
    assert any(older in line and newest in line for line in warnings), output


def test_inverted_r2_thresholds_are_refused_before_anything_is_read(tmp_path: Path) -> None:
    store = tmp_path / "artifacts"
    result = run_stage(["-m", "pipeline.train_model", str(store), "--r2-error-threshold", "0.9",
                        "--r2-warning-threshold", "0.5"])
    assert result.returncode == 2
    assert "--r2-error-threshold 0.9 is above --r2-warning-threshold 0.5" in result.stderr
    assert "swap them" in result.stderr and not store.exists()
