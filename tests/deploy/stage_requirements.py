"""Read bodywork.yaml the way Bodywork does, and list the stages' pinned requirements.

`python -m tests.deploy.stage_requirements OUT.txt` writes the pins as a requirements file,
so that tox can install them before the tests: Bodywork's own `pip install` of them during
a test then finds them installed, and needs no network.

`python -m tests.deploy.stage_requirements --image` prints the stage image that bodywork.yaml
must name: its tag is a digest of everything the image is built from, so that a change to
any of them (a pin, the recipe, the base's) needs a new tag, which CI then builds, tests and
pushes.
"""
import hashlib
import sys
from pathlib import Path
from typing import Any, Dict, List

import yaml

REPO = Path(__file__).resolve().parent.parent.parent
BODYWORK_YAML = REPO / "bodywork.yaml"
IMAGE_REPOSITORY = "bodyworkml/time-to-dispatch-stage"
# The Dockerfile, what it copies in (bodywork.yaml aside: only its pins are an input) and the
# recipe of the base it is built on (tests/image).
IMAGE_INPUTS = (
    "deploy/Dockerfile",
    "deploy/install_stage_image.sh",
    "deploy/bodywork_requirements.txt",
    "deploy/debian_base.sh",
)
IMAGE_PYTHON = "3.13"  # Debian 13's


def load_bodywork_config(path: Path = BODYWORK_YAML) -> Dict[str, Any]:
    """Parse bodywork.yaml with the loader Bodywork uses (PyYAML's SafeLoader)."""
    config: Dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return config


def stage_requirements(config: Dict[str, Any], stage: str) -> List[str]:
    requirements: List[str] = config["stages"][stage].get("requirements", [])
    return requirements


def all_stage_requirements(config: Dict[str, Any]) -> List[str]:
    """Every stage's requirements, each once, in the order they first appear."""
    seen: Dict[str, None] = {}
    for stage in config["stages"]:
        seen.update(dict.fromkeys(stage_requirements(config, stage)))
    return list(seen)


def stage_image(config: Dict[str, Any]) -> str:
    """Return the image name and tag that the image's inputs and the stages' pins give."""
    digest = hashlib.sha256()
    for name in IMAGE_INPUTS:
        digest.update(name.encode() + b"\0" + (REPO / name).read_bytes() + b"\0")
    digest.update("\n".join(all_stage_requirements(config)).encode())
    return f"{IMAGE_REPOSITORY}:py{IMAGE_PYTHON}-{digest.hexdigest()[:12]}"


def main(argv: List[str]) -> int:
    if argv == ["--image"]:
        print(stage_image(load_bodywork_config()))
        return 0
    if len(argv) != 1:
        print(
            "usage: python -m tests.deploy.stage_requirements OUT.txt | --image",
            file=sys.stderr,
        )
        return 2
    pins = all_stage_requirements(load_bodywork_config())
    Path(argv[0]).write_text("".join(f"{pin}\n" for pin in pins), encoding="utf-8")
    print(f"{len(pins)} stage requirements from {BODYWORK_YAML} written to {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
