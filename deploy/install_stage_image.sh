#!/usr/bin/env bash
# The stage image's install recipe, in two steps. deploy/Dockerfile runs both, and so does
# tox's py312-bodywork environment (into a fresh venv), so that what is tested is what is built.
#
#   PYTHON=python3.9  deploy/install_stage_image.sh wheel DIR     # Bodywork's wheel, into DIR
#   PYTHON=python3.12 deploy/install_stage_image.sh install DIR   # the stage image's packages
#
# wheel:   build Bodywork 3.0.12's wheel on Python 3.9. Its sdist declares
#          python_requires=">=3.7.*", which setuptools 66 and later refuse, and setuptools 65
#          does not run on 3.12; the wheel itself is pure Python, for any Python 3.
# install: on Python 3.12, install git if missing, that wheel (--no-deps: its 2022 pins do not
#          install there), Bodywork's requirements as deploy/bodywork_requirements.txt pins
#          them, and exactly the stages' pinned requirements from bodywork.yaml, in one resolve;
#          then check that Bodywork's own `pip install` of those at pod start finds each
#          satisfied, with no index at all, and that Bodywork's stage runner imports.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-python3}"
bodywork_pin="bodywork==3.0.12"

usage() {
    echo "usage: PYTHON=python3.X $0 wheel|install DIR" >&2
    exit 2
}
[[ $# -eq 2 ]] || usage
step="$1"
wheels="$2"

case "$step" in
wheel)
    mkdir -p "$wheels"
    PIP_CONSTRAINT="$repo/constraints_bodywork.txt" \
        PIP_BUILD_CONSTRAINT="$repo/constraints_bodywork.txt" \
        "$python" -m pip wheel --quiet --no-deps --use-pep517 "$bodywork_pin" -w "$wheels"
    ;;
install)
    if ! command -v git >/dev/null; then
        # Bodywork's stage runner clones the project with git.
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends git ca-certificates
        rm -rf /var/lib/apt/lists/*
    fi
    shopt -s nullglob
    wheel=("$wheels"/bodywork-3.0.12-py3-none-any.whl)
    [[ ${#wheel[@]} -eq 1 ]] || { echo "no Bodywork wheel in $wheels: run the wheel step" >&2; exit 1; }
    "$python" -m pip install --quiet --no-deps --ignore-requires-python "${wheel[0]}"
    # PyYAML first, to read bodywork.yaml as Bodywork does (SafeLoader).
    "$python" -m pip install --quiet "$(grep -i '^PyYAML==' "$here/bodywork_requirements.txt")"
    stage_requirements="$(mktemp)"
    trap 'rm -f "$stage_requirements"' EXIT
    "$python" - "$repo/bodywork.yaml" >"$stage_requirements" <<'PY'
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as config:
    stages = yaml.safe_load(config)["stages"]
pins = {pin: None for stage in stages.values() for pin in stage.get("requirements", [])}
print("\n".join(pins))
PY
    # pip reports Bodywork's own 2022 pins as conflicts here: expected, as they are replaced.
    "$python" -m pip install --quiet -r "$here/bodywork_requirements.txt" -r "$stage_requirements"
    # As Bodywork runs it at pod start; --no-index: it must need nothing from anywhere.
    "$python" -m pip install --quiet --no-index -r "$stage_requirements"
    "$python" -c "import bodywork.cli.cli, bodywork.stage_execution"
    echo "stage image packages installed for $("$python" --version): $bodywork_pin and" \
        "$(grep -c . "$stage_requirements") stage requirements from bodywork.yaml"
    ;;
*)
    usage
    ;;
esac
