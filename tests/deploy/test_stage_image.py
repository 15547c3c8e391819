"""deploy/Dockerfile: the stage image bodywork.yaml names, built by the recipe tox tests.

No Docker engine runs the tests, so the image is not built here: instead the Dockerfile is
checked to install everything through deploy/install_stage_image.sh, the script that tox's
py312-bodywork environment runs into its fresh venv before Bodywork runs the stages there.
"""
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.stage_requirements import (
    IMAGE_INPUTS,
    REPO,
    all_stage_requirements,
    load_bodywork_config,
    stage_image,
)

DOCKERFILE = REPO / "deploy" / "Dockerfile"
RECIPE = "deploy/install_stage_image.sh"
FALLBACK_IMAGE = "bodyworkml/bodywork-core:3.0"  # README, "The stage image"


def instructions(dockerfile: Path = DOCKERFILE) -> List[Tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def build_stages() -> List[List[Tuple[str, str]]]:
    """The instructions of each build stage, each list starting with its FROM."""
    stages: List[List[Tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            stages.append([])
        stages[-1].append((keyword, rest))
    return stages


def python_of(stage: List[Tuple[str, str]]) -> Tuple[int, int]:
    """The Python version of a stage's official python image (`FROM python:3.12-slim`)."""
    found = re.match(r"python:(\d+)\.(\d+)\b", stage[0][1])
    assert found, f"not an official python image: FROM {stage[0][1]}"
    return int(found[1]), int(found[2])


def pinned_versions(lines: List[str]) -> Dict[str, str]:
    pins: Dict[str, str] = {}
    for line in lines:
        requirement = Requirement(line)
        [specifier] = list(requirement.specifier)
        assert specifier.operator == "==", line
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def bodywork_requirements() -> List[str]:
    path = REPO / "deploy" / "bodywork_requirements.txt"
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_bodywork_yaml_names_the_image_that_its_inputs_give() -> None:
    config = load_bodywork_config()
    wanted = stage_image(config)
    if config["pipeline"]["docker_image"] == FALLBACK_IMAGE:
        pytest.skip(f"the documented fallback, {FALLBACK_IMAGE}, is named: {wanted} is not used")
    assert config["pipeline"]["docker_image"] == wanted, (
        "an input of the stage image changed (a stage pin, or one of "
        f"{', '.join(IMAGE_INPUTS)}): set pipeline.docker_image in bodywork.yaml to {wanted} "
        "(`python -m tests.deploy.stage_requirements --image`); CI builds and pushes it"
    )


def test_the_image_runs_python_3_12_or_later_and_makes_bodywork_s_wheel_on_3_9() -> None:
    *builders, final = build_stages()
    assert python_of(final) >= (3, 12)
    [wheel] = builders
    assert python_of(wheel) == (3, 9)
    assert wheel[0][1].endswith(" AS bodywork-wheel")
    assert ("COPY", "--from=bodywork-wheel /wheels /wheels") in final


def test_every_package_in_the_image_is_installed_by_the_recipe_that_tox_runs() -> None:
    wheel, final = build_stages()
    runs = [rest for keyword, rest in wheel + final if keyword == "RUN"]
    assert f"PYTHON=python bash /build/{RECIPE} wheel /wheels" in runs[0]
    assert any(f"PYTHON=python bash /build/{RECIPE} install /wheels" in run for run in runs)
    for run in runs:
        assert not re.search(r"\bpip\b|apt-get", run), f"installs outside the recipe: {run}"
    copied = " ".join(rest for keyword, rest in final if keyword == "COPY")
    for name in (*IMAGE_INPUTS[1:], "bodywork.yaml"):
        assert name in copied, f"{name} is not copied into the image"
    tox = (REPO / "tox.ini").read_text()
    assert f"env PYTHON=python3.9 bash {RECIPE} wheel {{envtmpdir}}/wheels" in tox
    assert f"env PYTHON={{envpython}} bash {RECIPE} install {{envtmpdir}}/wheels" in tox


def test_the_image_s_bodywork_requirements_are_exact_and_take_no_stage_package() -> None:
    bodywork = pinned_versions(bodywork_requirements())
    stages = pinned_versions(all_stage_requirements(load_bodywork_config()))
    assert not set(bodywork) & set(stages), "pin a stage's package in bodywork.yaml only"
    assert bodywork["pyyaml"].startswith("6.") and int(bodywork["setuptools"].split(".")[0]) < 81
    assert tuple(int(p) for p in bodywork["click"].split(".")[:2]) < (8, 2)
    assert tuple(int(p) for p in bodywork["urllib3"].split(".")[:2]) < (2, 6)


def test_this_environment_holds_what_the_recipe_installs_on_the_image_s_python() -> None:
    """Only in py312-bodywork (the recipe's venv): the same Python and the same versions."""
    if sys.version_info[:2] != python_of(build_stages()[-1]):
        pytest.skip("not the stage image's Python: this is checked in py312-bodywork")
    wanted = {
        "bodywork": "3.0.12",
        **pinned_versions(bodywork_requirements()),
        **pinned_versions(all_stage_requirements(load_bodywork_config())),
    }
    found: Dict[str, str] = {}
    for name in wanted:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    assert found == wanted
