"""buildah, as root, on storage of its own: the stage image's base, its build and its containers.

Every command gets `--root`, `--runroot` and `--storage-driver vfs` for one folder that the run
makes (tests/image/__main__.py): nothing is shared with another run or kept for the next, and
removing the folder removes every image and container the run made. Builds and runs use
`--isolation chroot` (no OCI runtime: crun cannot set RLIMIT_NPROC in this kind of
container) and never pull: no image registry is needed, or reachable here.
"""
import json
import os
import re
import ssl
import subprocess
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from tests.apt import ensure_file, ensure_program

REPO = Path(__file__).resolve().parent.parent.parent
DOCKERFILE = REPO / "deploy" / "Dockerfile"
BASE_RECIPE = REPO / "deploy" / "debian_base.sh"
# Where a build's RUN steps find the host's CA bundle (mounted read-only, never in the image).
BUILD_CA = "/run/build-ca.crt"


class Buildah(NamedTuple):
    """buildah on the storage under `storage`, which nothing else uses."""

    storage: Path

    def command(self, *args: str) -> List[str]:
        return [
            "buildah",
            "--root", str(self.storage / "root"),
            "--runroot", str(self.storage / "run"),
            "--storage-driver", "vfs",
            *args,
        ]

    def run(self, *args: str, timeout: float = 600) -> str:
        """Run a buildah command, return its standard output, raise with its errors."""
        result = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(self.command(*args))} failed ({result.returncode}):\n"
                f"{result.stderr[-4000:]}"
            )
        return result.stdout.strip()


def ensure_tools() -> None:
    """Install Debian's mmdebstrap, buildah and Debian's archive keys where they are missing."""
    ensure_program("mmdebstrap", "mmdebstrap")
    ensure_program("buildah", "buildah")
    ensure_file(Path("/usr/share/keyrings/debian-archive-keyring.gpg"), "debian-archive-keyring")


def base_image_name(dockerfile: Path = DOCKERFILE) -> str:
    """The image every FROM of the Dockerfile names, in full as a registry would serve it."""
    bases = set(re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(encoding="utf-8"), re.M))
    assert len(bases) == 1, f"{dockerfile} builds on {sorted(bases)}, not one base"
    [base] = bases
    name = base if "/" in base else f"library/{base}"
    return name if "." in name.split("/")[0] else f"docker.io/{name}"


def make_base(buildah: Buildah, workdir: Path) -> str:
    """Make the Dockerfile's base from Debian's archive and store it under the name it uses."""
    tarball = workdir / "debian-base.tar"
    subprocess.run(["bash", str(BASE_RECIPE), str(tarball)], check=True, timeout=1200)
    try:
        container = buildah.run("from", "scratch")
        buildah.run("add", container, str(tarball), "/")
        buildah.run("config", "--cmd", "bash", container)
        name = base_image_name()
        buildah.run("commit", "--rm", container, name)
    finally:
        tarball.unlink()
    return name


def host_ca_bundle() -> Optional[Path]:
    """The CA bundle this host's pip and Python trust (a TLS-inspecting proxy's CA with it)."""
    candidates = [os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                  ssl.get_default_verify_paths().cafile, "/etc/ssl/certs/ca-certificates.crt"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def build_image(buildah: Buildah, name: str, log: Path) -> str:
    """Build deploy/Dockerfile on the stored base (never pulled) as `name`; return its ID."""
    trust: List[str] = []
    ca = host_ca_bundle()
    if ca is not None:
        trust = ["--volume", f"{ca}:{BUILD_CA}:ro",
                 "--build-arg", f"PIP_CERT={BUILD_CA}", "--build-arg", f"SSL_CERT_FILE={BUILD_CA}"]
    command = buildah.command(
        "bud", "--isolation", "chroot", "--pull=never", *trust,
        "-f", str(DOCKERFILE), "-t", name, str(REPO),
    )
    with log.open("w") as output:
        result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"buildah bud failed ({result.returncode}):\n{log.read_text()[-6000:]}")
    return buildah.run("inspect", "--type", "image", "--format", "{{.FromImageID}}", name)


def image_size(buildah: Buildah, name: str) -> int:
    """The image's size in bytes: its layers' unpacked sizes, as `docker images` reports it."""
    manifest = json.loads(json.loads(buildah.run("inspect", "--type", "image", name))["Manifest"])
    return sum(int(layer["size"]) for layer in manifest["layers"])


def image_config(buildah: Buildah, name: str) -> Dict[str, Any]:
    """The image's OCI configuration (User, Env, WorkingDir, ...)."""
    config: Dict[str, Any] = json.loads(
        buildah.run("inspect", "--type", "image", name)
    )["OCIv1"]["config"]
    return config


def save_archive(buildah: Buildah, name: str, archive: Path) -> None:
    """Write the image as a `docker load` archive tagged `name` (what CI pushes)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    buildah.run("push", name, f"docker-archive:{archive}:{name}", timeout=1800)


class Container(NamedTuple):
    """A working container of the image, and where its root filesystem lies on the host."""

    name: str
    rootfs: Path


def new_container(buildah: Buildah, image: str) -> Container:
    """A fresh container of `image`, as a pod gets (never pulled)."""
    name = buildah.run("from", "--pull=never", image)
    return Container(name, Path(buildah.run("mount", name)))


def run_in_container(
    buildah: Buildah,
    container: Container,
    command: Sequence[str],
    env: Dict[str, str],
    volumes: Sequence[Tuple[Path, str]],
    log: Path,
) -> "subprocess.Popen[str]":
    """Start `command` in the container as the image's user, in its working directory, with
    the image's environment and `env`, in this network namespace; output to `log`."""
    options: List[str] = ["--isolation", "chroot"]
    for key, value in env.items():
        options += ["--env", f"{key}={value}"]
    for source, target in volumes:
        options += ["--volume", f"{source}:{target}:ro"]
    with log.open("w") as output:
        return subprocess.Popen(
            buildah.command("run", *options, container.name, "--", *command),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
