#!/usr/bin/env bash
# The stage image's install recipe. deploy/Dockerfile installs nothing but through this script
# (tests/deploy/test_stage_image.py checks), and the same `wheel` and `bodywork` steps install
# Bodywork's command line for CI's deploy job and tox's bodywork environment.
#
#   deploy/install_stage_image.sh system                    # Debian's Python 3, venv and git
#   PYTHON=VENV/bin/python deploy/install_stage_image.sh wheel DIR      # Bodywork's wheel -> DIR
#   PYTHON=VENV/bin/python deploy/install_stage_image.sh bodywork DIR   # its command line, from DIR
#   PYTHON=VENV/bin/python deploy/install_stage_image.sh install DIR    # the stage image's packages
#
# system:   as root on Debian: python3, python3-venv, git (Bodywork clones the project with it)
#           and ca-certificates, from Debian's archive; nothing it only recommends.
# wheel:    build Bodywork 3.0.12's wheel on this Python (3.11 to 3.13). Its only release is a
#           2022 sdist (checked against its SHA-256) whose setup.py declares
#           python_requires=">=3.7.*", which setuptools 66 and later refuse, exact 2022 pins that
#           do not install on these Pythons, and a request to Bodywork's usage counter at build
#           time. Its metadata is fixed before building: ">=3.7", the pins of
#           deploy/bodywork_requirements.txt as its requirements, no request. Its code is as
#           released; the wheel is pure Python.
# bodywork: install Bodywork's requirements (deploy/bodywork_requirements.txt), then that wheel
#           with --no-deps; check that every installed package's requirements hold and that
#           Bodywork imports.
# install:  the same with exactly the stages' pins from bodywork.yaml, in one resolve with
#           Bodywork's requirements; then also check that Bodywork's own `pip install` of the
#           pins at pod start finds each satisfied, with no index at all.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="${PYTHON:-python3}"
requirements="$here/bodywork_requirements.txt"
sdist_url="https://files.pythonhosted.org/packages/b8/cb/90b2b4e9d4e11fa5c8fbb9e9327142a0b0b9c5ed49b4d5e7a1d66e3cb26d/bodywork-3.0.12.tar.gz"
sdist_sha256="96c796392ee071005ff34a053324ba46aac0db06fba20c532e854f4b2a5a2602"
wheel_name="bodywork-3.0.12-py3-none-any.whl"

usage() {
    echo "usage: $0 system | PYTHON=VENV/bin/python $0 wheel|bodywork|install DIR" >&2
    exit 2
}

the_wheel() {
    [[ -f "$1/$wheel_name" ]] || { echo "no $wheel_name in $1: run the wheel step" >&2; exit 1; }
    echo "$1/$wheel_name"
}

check_bodywork() {
    "$python" -m pip check
    # Bodywork imports pkg_resources, deprecated (setuptools<81 keeps it): silence its warning.
    "$python" -W "ignore:pkg_resources is deprecated" \
        -c "import bodywork.cli.cli, bodywork.stage_execution"
}

[[ $# -ge 1 ]] || usage
step="$1"
case "$step" in
system)
    [[ $# -eq 1 ]] || usage
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends python3 python3-venv git ca-certificates
    apt-get clean
    rm -rf /var/lib/apt/lists/*
    ;;
wheel)
    [[ $# -eq 2 ]] || usage
    wheels="$2"
    build="$(mktemp -d)"
    trap 'rm -rf "$build"' EXIT
    # Bodywork's requirements name the setuptools that builds it, too.
    "$python" -m pip install --quiet "$(grep -i '^setuptools==' "$requirements")"
    "$python" - "$sdist_url" "$sdist_sha256" "$requirements" "$build" <<'PY'
import hashlib
import sys
import tarfile
import urllib.request
from pathlib import Path

url, sha256, requirements, build = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
sdist = build / "bodywork-3.0.12.tar.gz"
with urllib.request.urlopen(url, timeout=60) as response:
    sdist.write_bytes(response.read())
found = hashlib.sha256(sdist.read_bytes()).hexdigest()
if found != sha256:
    sys.exit(f"{url}: SHA-256 {found}, not {sha256}")
with tarfile.open(sdist) as archive:
    archive.extractall(build, filter="data")
source = build / "bodywork-3.0.12"


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    if text.count(old) != 1:
        sys.exit(f"{path.name}: expected {old!r} once: not the sdist this script fixes")
    path.write_text(text.replace(old, new), encoding="utf-8")


setup = source / "setup.py"
replace_once(setup, 'python_requires=">=3.7.*",', 'python_requires=">=3.7",')
text = setup.read_text(encoding="utf-8")
setup.write_text(text[: text.index("query_string = parse.urlencode")], encoding="utf-8")
pins = [line.split("#")[0].strip() for line in requirements.read_text().splitlines()]
(source / "requirements_pkg.txt").write_text("\n".join(pin for pin in pins if pin) + "\n")
PY
    mkdir -p "$wheels"
    "$python" -m pip wheel --quiet --no-deps --no-build-isolation "$build/bodywork-3.0.12" \
        -w "$wheels"
    echo "built $(the_wheel "$wheels") on $("$python" --version)"
    ;;
bodywork)
    [[ $# -eq 2 ]] || usage
    wheel="$(the_wheel "$2")"
    "$python" -m pip install --quiet -r "$requirements"
    "$python" -m pip install --quiet --no-deps "$wheel"
    check_bodywork
    echo "Bodywork 3.0.12 installed for $("$python" --version)"
    ;;
install)
    [[ $# -eq 2 ]] || usage
    command -v git >/dev/null || { echo "git is missing: Bodywork clones with it" >&2; exit 1; }
    wheel="$(the_wheel "$2")"
    # PyYAML first, to read bodywork.yaml as Bodywork does (SafeLoader).
    "$python" -m pip install --quiet "$(grep -i '^PyYAML==' "$requirements")"
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
    "$python" -m pip install --quiet -r "$requirements" -r "$stage_requirements"
    "$python" -m pip install --quiet --no-deps "$wheel"
    # As Bodywork runs it at pod start; --no-index: it must need nothing from anywhere.
    "$python" -m pip install --quiet --no-index -r "$stage_requirements"
    check_bodywork
    echo "stage image packages installed for $("$python" --version): bodywork==3.0.12 and" \
        "$(grep -c . "$stage_requirements") stage requirements from bodywork.yaml"
    ;;
*)
    usage
    ;;
esac
