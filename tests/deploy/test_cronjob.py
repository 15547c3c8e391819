"""deploy/cronjob.yaml: a batch/v1 CronJob that current Kubernetes accepts, run every Saturday."""
import copy
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import yaml

from tests.deploy.stage_requirements import IMAGE_REPOSITORY, REPO, load_bodywork_config

CRONJOB = REPO / "deploy" / "cronjob.yaml"
OLDEST_KUBERNETES = (1, 27)  # the first release where CronJob's timeZone is GA


def schema_versions() -> List[str]:
    """Every Kubernetes version from 1.27 whose strict schemas kubernetes-validate ships."""
    spec = importlib.util.find_spec("kubernetes_validate")
    assert spec and spec.origin, "kubernetes-validate is not installed: see tox.ini"
    found = []
    for folder in (Path(spec.origin).parent / "kubernetes-json-schema").iterdir():
        match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)-local-strict", folder.name)
        if match and (int(match[1]), int(match[2])) >= OLDEST_KUBERNETES:
            found.append((int(match[1]), int(match[2]), int(match[3])))
    return [".".join(map(str, version)) for version in sorted(found)]


def kubernetes_validate(manifest: Path, versions: List[str]) -> "subprocess.CompletedProcess[str]":
    """Validate against Kubernetes' OpenAPI schemas, rejecting unknown fields (--strict)."""
    command = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
    assert command, f"kubernetes-validate is not installed beside {sys.executable}: see tox.ini"
    options = [option for version in versions for option in ("-k", version)]
    return subprocess.run(
        [command, "--strict", *options, str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def load_cronjob() -> Dict[str, Any]:
    manifest: Dict[str, Any] = yaml.safe_load(CRONJOB.read_text(encoding="utf-8"))
    return manifest


def container(manifest: Dict[str, Any]) -> Dict[str, Any]:
    containers: List[Dict[str, Any]] = manifest["spec"]["jobTemplate"]["spec"]["template"][
        "spec"
    ]["containers"]
    assert len(containers) == 1
    return containers[0]


def passed_versions(result: "subprocess.CompletedProcess[str]") -> List[str]:
    """The versions it passed: for a kind or apiVersion it has no schema for, it only warns."""
    return re.findall(
        r"passed for resource cronjob/time-to-dispatch-weekly against version (\S+)",
        result.stdout + result.stderr,
    )


def test_every_kubernetes_release_from_1_27_accepts_the_cronjob() -> None:
    versions = schema_versions()
    assert {"1.30.0", "1.33.0"} <= set(versions), versions
    result = kubernetes_validate(CRONJOB, versions)
    assert result.returncode == 0, result.stdout + result.stderr
    assert passed_versions(result) == [v.rsplit(".", 1)[0] for v in versions], result.stdout


def _misspell_a_field(manifest: Dict[str, Any]) -> None:
    manifest["spec"]["concurencyPolicy"] = manifest["spec"].pop("concurrencyPolicy")


def _give_a_number_a_string(manifest: Dict[str, Any]) -> None:
    manifest["spec"]["successfulJobsHistoryLimit"] = "three"


def _put_a_pod_field_on_the_job(manifest: Dict[str, Any]) -> None:
    manifest["spec"]["jobTemplate"]["spec"]["serviceAccountName"] = "bodywork-workflow-controller"


def _use_the_v1beta1_api_that_bodywork_creates(manifest: Dict[str, Any]) -> None:
    manifest["apiVersion"] = "batch/v1beta1"  # no longer served from Kubernetes 1.25


@pytest.mark.parametrize(
    "mistake",
    [
        _misspell_a_field,
        _give_a_number_a_string,
        _put_a_pod_field_on_the_job,
        _use_the_v1beta1_api_that_bodywork_creates,
    ],
)
def test_the_schema_check_fails_a_cronjob_with_a_mistake(
    tmp_path: Path, mistake: Callable[[Dict[str, Any]], None]
) -> None:
    manifest = copy.deepcopy(load_cronjob())
    mistake(manifest)
    broken = tmp_path / "cronjob.yaml"
    broken.write_text(yaml.safe_dump(manifest), encoding="utf-8")
    result = kubernetes_validate(broken, [schema_versions()[0], schema_versions()[-1]])
    assert passed_versions(result) == [], result.stdout + result.stderr


def test_the_workflow_runs_every_saturday_at_midnight_utc_never_twice_at_once() -> None:
    spec = load_cronjob()["spec"]
    minute, hour, day_of_month, month, day_of_week = spec["schedule"].split()
    assert (minute, hour, day_of_month, month, day_of_week) == ("0", "0", "*", "*", "6")
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert 0 < spec["startingDeadlineSeconds"] <= 24 * 3600
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    job = spec["jobTemplate"]["spec"]
    assert 0 < job["activeDeadlineSeconds"] <= 6 * 3600
    assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_the_job_deploys_master_with_bodywork_as_bodywork_configure_cluster_set_it_up() -> None:
    manifest = load_cronjob()
    assert manifest["apiVersion"] == "batch/v1"
    assert manifest["metadata"]["namespace"] == "bodywork-deployment-jobs"
    pod = manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "bodywork-workflow-controller"
    bodywork = container(manifest)
    # The stages' image: any tag of it has Bodywork, so the tag may lag bodywork.yaml's.
    stage_image = load_bodywork_config()["pipeline"]["docker_image"]
    assert bodywork["image"].split(":")[0] in (stage_image.split(":")[0], IMAGE_REPOSITORY)
    assert bodywork["command"] == ["bodywork", "create", "deployment"]
    url, branch = bodywork["args"]
    assert url.startswith("https://") and branch == "--branch=master"
