"""bodywork.yaml: valid for Bodywork 3.0.12, pinned like requirements_pipe.txt, production-bound."""
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.stage_requirements import (
    BODYWORK_YAML,
    REPO,
    load_bodywork_config,
    stage_requirements,
)

BUCKET = "s3://bodywork-time-to-dispatch"
AWS_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def bodywork_validate(config: Path) -> "subprocess.CompletedProcess[str]":
    """Run Bodywork's own validator, as `make test` and a developer would."""
    bodywork = shutil.which("bodywork", path=str(Path(sys.executable).parent))
    assert bodywork, f"bodywork is not installed beside {sys.executable}: see tox.ini"
    return subprocess.run(
        [bodywork, "validate", "--file", config.name, "--check-files"],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def pipeline_requirements() -> Dict[str, Requirement]:
    """requirements_pipe.txt, by canonical package name."""
    lines = (REPO / "requirements_pipe.txt").read_text(encoding="utf-8").splitlines()
    requirements = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
    return {canonicalize_name(r.name): r for r in requirements}


def pins(requirements: List[str]) -> Dict[str, str]:
    """Map each requirement's canonical name to its exact `==` version (assert it has one)."""
    pinned: Dict[str, str] = {}
    for line in requirements:
        requirement = Requirement(line)
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", (
            f"{line!r} is not pinned to one exact version with =="
        )
        pinned[canonicalize_name(requirement.name)] = specifiers[0].version
    return pinned


def test_bodywork_validates_the_config_and_finds_both_stage_modules() -> None:
    result = bodywork_validate(BODYWORK_YAML)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bodywork.yaml is a valid Bodywork config file" in result.stdout


def test_bodywork_validate_rejects_the_config_where_the_stage_modules_do_not_exist(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "bodywork.yaml"
    shutil.copy(BODYWORK_YAML, copy)
    result = bodywork_validate(copy)
    assert result.returncode == 1
    assert "stages.train_model.executable_module_path -> does not exist" in result.stdout
    assert "stages.serve_model.executable_module_path -> does not exist" in result.stdout


def test_both_stages_install_the_same_exact_versions_within_requirements_pipe() -> None:
    config = load_bodywork_config()
    train = stage_requirements(config, "train_model")
    serve = stage_requirements(config, "serve_model")
    assert train == serve, "a model trained with one set of versions must load in the other"
    pinned = pins(train)
    wanted = pipeline_requirements()
    assert sorted(pinned) == sorted(wanted), (
        "pin exactly the packages of requirements_pipe.txt: "
        f"missing {sorted(set(wanted) - set(pinned))}, extra {sorted(set(pinned) - set(wanted))}"
    )
    for name, version in pinned.items():
        assert wanted[name].specifier.contains(version, prereleases=True), (
            f"{name}=={version} is outside requirements_pipe.txt's {wanted[name]}"
        )


def test_the_pipeline_trains_then_serves_from_the_production_bucket() -> None:
    config = load_bodywork_config()
    assert config["version"] == "1.1"
    assert config["pipeline"]["DAG"] == "train_model >> serve_model"
    assert config["pipeline"]["usage_stats"] is False
    train, serve = config["stages"]["train_model"], config["stages"]["serve_model"]
    assert train["executable_module_path"] == "pipeline/train_model.py"
    assert train["args"] == [BUCKET]
    assert "batch" in train and train["batch"]["retries"] >= 1
    assert serve["executable_module_path"] == "pipeline/serve_model.py"
    assert serve["args"] == [
        BUCKET, "--host", "0.0.0.0", "--port", str(serve["service"]["port"]),
        "--metrics-port", "8001",
    ]
    assert serve["service"]["replicas"] == 2
    assert serve["service"]["ingress"] is True


def test_both_stages_get_aws_credentials_and_the_signing_key_from_the_secrets_group() -> None:
    config = load_bodywork_config()
    assert config["pipeline"]["secrets_group"] == "prod"
    wanted = {variable: "aws-credentials" for variable in AWS_VARIABLES}
    wanted["TTD_SIGNING_KEY"] = "model-signing"
    for stage in ("train_model", "serve_model"):
        assert config["stages"][stage]["secrets"] == wanted, stage
