"""deploy/Dockerfile: the stage image bodywork.yaml names, every package installed by one recipe.

The image itself is built and run by tox's `image` environment (tests/image). These tests check
what holds it together: its name is a digest of its inputs, it installs nothing but through
deploy/install_stage_image.sh (whose `wheel` and `bodywork` steps this environment, like CI's
deploy job, ran for Bodywork's command line), its base is the Debian release deploy/debian_base.sh
makes, and a build is sent the files it copies and nothing else.
"""
import fnmatch
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, metadata, requires, version
from pathlib import Path
from typing import Dict, List, Tuple

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.stage_requirements import (
    IMAGE_INPUTS,
    IMAGE_PYTHON,
    REPO,
    all_stage_requirements,
    load_bodywork_config,
    stage_image,
)

DOCKERFILE = REPO / "deploy" / "Dockerfile"
RECIPE = "deploy/install_stage_image.sh"
BASE = "debian:trixie-slim"


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
    assert config["pipeline"]["docker_image"] == wanted, (
        "an input of the stage image changed (a stage pin, or one of "
        f"{', '.join(IMAGE_INPUTS)}): set pipeline.docker_image in bodywork.yaml to {wanted} "
        "(`python -m tests.deploy.stage_requirements --image`); CI builds, tests and pushes it"
    )
    assert wanted.split(":")[1].startswith(f"py{IMAGE_PYTHON}-")


def test_both_build_stages_start_from_the_debian_release_that_the_base_recipe_makes() -> None:
    wheel, final = build_stages()
    assert wheel[0] == ("FROM", f"{BASE} AS bodywork-wheel")
    assert final[0] == ("FROM", BASE)
    assert ("COPY", "--from=bodywork-wheel /wheels /wheels") in final
    release = BASE.split(":")[1].split("-")[0]
    base_recipe = (REPO / "deploy" / "debian_base.sh").read_text()
    assert re.search(rf"--variant=minbase .*\n.*\n\s+{release} ", base_recipe), base_recipe
    for suite in (release, f"{release}-updates", f"{release}-security"):
        assert f" {suite} main" in base_recipe, f"the base's sources lack {suite}"


def test_every_package_in_the_image_is_installed_by_the_recipe() -> None:
    wheel, final = build_stages()
    [wheel_run] = [rest for keyword, rest in wheel if keyword == "RUN"]
    final_runs = [rest for keyword, rest in final if keyword == "RUN"]
    recipe = f"bash /build/{RECIPE}"
    assert f"{recipe} system " in wheel_run and f"{recipe} wheel /wheels" in wheel_run
    assert f"{recipe} system " in final_runs[0] and f"{recipe} install /wheels" in final_runs[0]
    for run in [wheel_run, *final_runs]:
        assert not re.search(r"\bpip\b|apt-get|\bapt\b|curl|wget", run), f"not the recipe: {run}"
    copied = " ".join(rest for keyword, rest in final if keyword == "COPY")
    for name in ("deploy/install_stage_image.sh", "deploy/bodywork_requirements.txt",
                 "bodywork.yaml"):
        assert name in copied, f"{name} is not copied into the image"
    assert ("USER", "bodywork") in final and final[-1] == ("WORKDIR", "/home/bodywork")


def test_the_build_is_sent_exactly_the_files_the_dockerfile_copies() -> None:
    copied = set()
    for keyword, rest in instructions():
        if keyword == "COPY" and not rest.startswith("--from="):
            copied.update(rest.split()[:-1])
    patterns = [line for line in (REPO / ".dockerignore").read_text().splitlines()
                if line and not line.startswith("#")]

    def sent(path: str) -> bool:
        included = False
        for pattern in patterns:
            if fnmatch.fnmatch(path, pattern.lstrip("!")):
                included = pattern.startswith("!")
        return included

    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert {path for path in tracked if sent(path)} == copied


def test_ci_s_deploy_job_and_tox_install_bodywork_by_the_recipe() -> None:
    tox = (REPO / "tox.ini").read_text()
    assert f"env PYTHON={{envpython}} bash {RECIPE} wheel {{envtmpdir}}/wheels" in tox
    assert f"env PYTHON={{envpython}} bash {RECIPE} bodywork {{envtmpdir}}/wheels" in tox
    ci = (REPO / ".circleci" / "config.yml").read_text()
    assert f"bash {RECIPE} wheel" in ci and f"bash {RECIPE} bodywork" in ci


def test_the_image_s_bodywork_requirements_are_exact_and_take_no_stage_package() -> None:
    bodywork = pinned_versions(bodywork_requirements())
    stages = pinned_versions(all_stage_requirements(load_bodywork_config()))
    assert not set(bodywork) & set(stages), "pin a stage's package in bodywork.yaml only"
    assert bodywork["pyyaml"].startswith("6.") and int(bodywork["setuptools"].split(".")[0]) < 81
    assert tuple(int(p) for p in bodywork["click"].split(".")[:2]) < (8, 2)
    assert tuple(int(p) for p in bodywork["urllib3"].split(".")[:2]) < (2, 6)


def test_this_environment_holds_bodywork_as_the_recipe_builds_and_installs_it() -> None:
    """Bodywork's wheel, built here by the recipe, declares what the recipe says it fixed."""
    assert sys.version_info >= (3, 11)
    wanted = {"bodywork": "3.0.12", **pinned_versions(bodywork_requirements())}
    found: Dict[str, str] = {}
    for name in wanted:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    assert found == wanted
    assert metadata("bodywork")["Requires-Python"] == ">=3.7"
    declared = [r for r in requires("bodywork") or [] if "extra ==" not in r]
    assert pinned_versions(declared) == pinned_versions(bodywork_requirements())
