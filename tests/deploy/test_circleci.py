""".circleci/config.yml: tests on every branch; on master, the image tested is pushed, deployed."""
import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import yaml

from tests.deploy.stage_requirements import (
    IMAGE_PYTHON,
    REPO,
    load_bodywork_config,
    stage_image,
)
from tests.image import ARCHIVE

CONFIG = REPO / ".circleci" / "config.yml"
CRONJOB = REPO / "deploy" / "cronjob.yaml"


def check_circleci_schema(config: Path) -> "subprocess.CompletedProcess[str]":
    """Validate against CircleCI's JSON schema (SchemaStore's, shipped in check-jsonschema)."""
    command = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert command, f"check-jsonschema is not installed beside {sys.executable}: see tox.ini"
    return subprocess.run(
        [command, "--builtin-schema", "vendor.circle-ci", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def load_config() -> Dict[str, Any]:
    config: Dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return config


def workflow_jobs(config: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The jobs of the one workflow, by name, with their requires and filters."""
    workflows = config["workflows"]
    assert len(workflows) == 1, list(workflows)
    jobs: Dict[str, Dict[str, Any]] = {}
    for entry in next(iter(workflows.values()))["jobs"]:
        name, settings = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
        jobs[name] = settings or {}
    return jobs


def commands(job: Dict[str, Any]) -> List[str]:
    """The shell commands of a job's `run` steps."""
    found = []
    for step in job["steps"]:
        if isinstance(step, dict) and "run" in step:
            run = step["run"]
            found.append(run if isinstance(run, str) else run["command"])
    return found


def test_circleci_s_schema_accepts_the_config() -> None:
    result = check_circleci_schema(CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_circleci_s_schema_rejects_a_misspelt_branch_filter(tmp_path: Path) -> None:
    broken = tmp_path / "config.yml"
    broken.write_text(CONFIG.read_text().replace("only: master", "onli: master"))
    result = check_circleci_schema(broken)
    assert result.returncode == 1, result.stdout + result.stderr


def test_every_branch_gets_static_analysis_and_then_the_tests_master_too() -> None:
    config = load_config()
    assert config["version"] == 2.1
    jobs = workflow_jobs(config)
    for name in ("static-analysis", "test"):
        assert "filters" not in jobs[name], name
    assert "requires" not in jobs["static-analysis"]
    assert jobs["test"]["requires"] == ["static-analysis"]
    assert commands(config["jobs"]["static-analysis"]) == ["make test TOX_ENVS=static"]


def test_the_test_job_runs_every_tox_environment_but_static() -> None:
    tox = configparser.ConfigParser()
    tox.read(REPO / "tox.ini")
    envs = [env.strip() for env in tox["tox"]["envlist"].split(",")]
    run = "\n".join(commands(load_config()["jobs"]["test"]))
    selection = re.search(r'make test TOX_ENVS="\$\((.+)\)"', run)
    assert selection, run
    # Run the job's own selection, with this environment's tox in place of the .venv's.
    tox_here = shutil.which("tox", path=str(Path(sys.executable).parent))
    assert tox_here, f"tox is not installed beside {sys.executable}"
    script = selection[1].replace(".venv/bin/tox", tox_here)
    chosen = subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert chosen.returncode == 0, chosen.stderr
    assert chosen.stdout.strip().split(",") == [env for env in envs if env != "static"]
    assert "image" in envs and "py313-bodywork" in envs


def test_master_only_deploys_with_bodywork_installed_by_the_recipe_on_the_image_s_python() -> None:
    config = load_config()
    jobs = workflow_jobs(config)
    assert set(jobs) == {"static-analysis", "test", "stage-image", "deploy"}
    assert jobs["deploy"]["filters"] == {"branches": {"only": "master"}}
    assert jobs["deploy"]["requires"] == ["stage-image"]
    deploy = config["jobs"]["deploy"]
    assert [image["image"] for image in deploy["docker"]] == [f"cimg/python:{IMAGE_PYTHON}"]
    install, kubeconfig, deployment = commands(deploy)
    wheel = install.index("bash deploy/install_stage_image.sh wheel /tmp/wheels")
    assert wheel < install.index("bash deploy/install_stage_image.sh bodywork /tmp/wheels")
    assert 'export PYTHON="$HOME/bodywork/bin/python"' in install
    assert 'aws eks update-kubeconfig --name "$EKS_CLUSTER_NAME"' in kubeconfig
    assert deployment == 'bodywork create deployment "$BODYWORK_REPO_URL" --branch master'
    tox = configparser.ConfigParser()
    tox.read(REPO / "tox.ini")
    assert tox["testenv:py313-bodywork"]["basepython"] == f"python{IMAGE_PYTHON}"


def test_ci_deploys_the_repository_that_the_weekly_cronjob_deploys() -> None:
    cronjob = yaml.safe_load(CRONJOB.read_text(encoding="utf-8"))
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    url = load_config()["jobs"]["deploy"]["environment"]["BODYWORK_REPO_URL"]
    assert container["args"] == [url, "--branch=master"]


def test_master_pushes_the_image_the_test_job_built_and_tested_unless_docker_hub_has_it() -> None:
    config = load_config()
    assert workflow_jobs(config)["stage-image"] == {
        "requires": ["test"], "filters": {"branches": {"only": "master"}}
    }
    # The test job keeps the image that passed (tests/image) on master, in the workspace.
    tox = configparser.ConfigParser()
    tox.read(REPO / "tox.ini")
    assert ARCHIVE in tox["testenv:image"]["passenv"].split()
    test = config["jobs"]["test"]
    [run] = [command for command in commands(test) if "make test" in command]
    archive = re.search(r'if \[ "\$CIRCLE_BRANCH" = master \]; then\s+export '
                        rf"{ARCHIVE}=(\S+)\s+fi", run)
    assert archive, run
    [kept] = [step["when"] for step in test["steps"] if isinstance(step, dict) and "when" in step]
    assert kept["condition"] == {"equal": ["master", "<< pipeline.git.branch >>"]}
    [persist] = kept["steps"]
    root = Path(persist["persist_to_workspace"]["root"])
    assert [str(root / path) for path in persist["persist_to_workspace"]["paths"]] == [archive[1]]
    # The stage-image job pushes that archive, and builds nothing.
    job = config["jobs"]["stage-image"]
    assert {"attach_workspace": {"at": str(root)}} in job["steps"]
    assert "setup_remote_docker" in job["steps"]
    [script] = commands(job)
    assert "docker build" not in script
    assert f"docker load --input {archive[1]}" in script
    assert script.index('docker manifest inspect "$image"') < script.index("docker load")
    assert script.index('docker image inspect "$image"') < script.index('docker push "$image"')
    # The job's own reading of the image name, run against bodywork.yaml.
    [reading] = [line.strip() for line in script.splitlines() if line.strip().startswith("image=")]
    named = subprocess.run(
        ["bash", "-c", f'{reading}; echo "$image"'], cwd=REPO, capture_output=True, text=True,
        timeout=30,
    )
    wanted = load_bodywork_config()["pipeline"]["docker_image"]
    assert named.stdout.strip() == wanted == stage_image(load_bodywork_config())


def test_the_test_job_installs_every_python_that_tox_environments_ask_for() -> None:
    tox = configparser.ConfigParser()
    tox.read(REPO / "tox.ini")
    envs = [env.strip() for env in tox["tox"]["envlist"].split(",")]
    wanted = {f"{m[1]}.{m[2]}" for env in envs for m in [re.match(r"py(3)(\d+)", env)] if m}
    run = "\n".join(commands(load_config()["jobs"]["test"]))
    listed = re.search(r"for version in ([\d. ]+); do", run)
    assert listed, run
    assert wanted <= set(listed[1].split()), (wanted, listed[1])
