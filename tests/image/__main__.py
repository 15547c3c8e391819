"""Build the stage image as CI does, then run both stages in it with no network.

    python -m tests.image [PYTEST ARGS]     # tox's `image` environment; as root or with sudo -n

1. Debian's mmdebstrap and buildah are installed where missing (tests/apt.py).
2. In a folder of buildah storage made for this run: the Dockerfile's base made from Debian's
   archive (deploy/debian_base.sh) and stored under the name the Dockerfile uses
   (`debian:trixie-slim`), then deploy/Dockerfile built on it by `buildah bud --isolation chroot
   --storage-driver vfs --pull=never`, tagged with the name bodywork.yaml gives the pods. This
   needs the network (Debian's archive, PyPI).
3. pytest runs tests/image in a network namespace with only loopback (tests/deploy/isolated.py):
   SeaweedFS there, and Bodywork's stage runner in containers of the image.
4. When the tests pass and STAGE_IMAGE_ARCHIVE names a file, the image is written there as a
   `docker load` archive: CI pushes that file, the image that passed (.circleci/config.yml).
5. The storage folder is removed whatever happened, so no run reuses another's base, layers or
   containers; the time of each step and the image's size are printed.

It needs root (buildah's vfs storage keeps the image's owners; `unshare --net`): another user
re-runs it through `sudo -n`, and where that cannot be done it is skipped, or fails under CI=true.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from tests.deploy.stage_requirements import load_bodywork_config
from tests.image import ARCHIVE, IMAGE, RESULTS, STORAGE
from tests.image.buildah import (
    Buildah,
    build_image,
    ensure_tools,
    image_size,
    make_base,
    save_archive,
)


def as_root(args: List[str]) -> None:
    """Re-run this command as root through `sudo -n` if need be; exit if it cannot be."""
    if os.geteuid() == 0:
        return
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0:
        os.execv(sudo, [sudo, "-n", "-E", sys.executable, "-m", "tests.image", *args])
    message = "tests.image: needs root or `sudo -n` (buildah's storage, a network namespace)"
    if os.environ.get("CI"):
        sys.exit(f"{message}: failing, as CI=true")
    print(f"{message}: skipped", file=sys.stderr)
    sys.exit(0)


def main(args: List[str]) -> int:
    as_root(args)
    ensure_tools()
    storage = Path(tempfile.mkdtemp(prefix="ttd-stage-image-"))
    buildah = Buildah(storage)
    # The name bodywork.yaml gives the pods (a digest of the image's inputs: py313-bodywork checks).
    name = f"docker.io/{load_bodywork_config()['pipeline']['docker_image']}"
    results = storage / "results.json"
    measured: Dict[str, float] = {}
    passed = False
    try:
        started = time.monotonic()
        make_base(buildah, storage)
        measured["base made and stored, s"] = time.monotonic() - started
        started = time.monotonic()
        image_id = build_image(buildah, name, storage / "build.log")
        measured["image built, s"] = time.monotonic() - started
        measured["image size, MB"] = image_size(buildah, name) / 1e6
        print(f"tests.image: built {name} ({image_id[:12]})", flush=True)
        started = time.monotonic()
        env = {**os.environ, STORAGE: str(storage), IMAGE: name, RESULTS: str(results)}
        tests = subprocess.run(
            [sys.executable, "-m", "tests.deploy.isolated", "-m", "pytest", "-p",
             "no:cacheprovider", "tests/image", *args],
            env=env,
        )
        measured["tests in the image, s"] = time.monotonic() - started
        passed = tests.returncode == 0
        if passed and os.environ.get(ARCHIVE):
            started = time.monotonic()
            save_archive(buildah, name, Path(os.environ[ARCHIVE]))
            measured[f"archive written to {os.environ[ARCHIVE]}, s"] = time.monotonic() - started
    finally:
        if results.exists():
            measured.update(json.loads(results.read_text()))
        shutil.rmtree(storage)
        for what, value in measured.items():
            print(f"tests.image: {what}: {value:.1f}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
