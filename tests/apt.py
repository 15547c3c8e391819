"""Install a Debian package the first time a test needs a program or a file from it.

As root (the development container), or through `sudo -n` for another user (CircleCI's
machine), with apt-get update first; a lock shared by every such install keeps two tox
environments from running apt-get at once.
"""
import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Optional

LOCK = Path("/tmp/ttd-apt-install.lock")


def _ensure(
    find: Callable[[], Optional[str]], what: str, package: str, recommends: bool
) -> str:
    """Return find()'s answer, installing `package` with apt-get first if it has none."""
    found = find()
    if found:
        return found
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = find()
        if found:
            return found
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        sudo = ["sudo", "-n", "-E"] if os.geteuid() != 0 and shutil.which("sudo") else []
        for command in ([*sudo, "apt-get", "update", "-q"],
                        [*sudo, "apt-get", "install", "-y", "-q",
                         *([] if recommends else ["--no-install-recommends"]), package]):
            result = subprocess.run(command, capture_output=True, text=True, env=env,
                                    timeout=900)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed: {result.stderr[-2000:]}")
    found = find()
    if not found:
        raise RuntimeError(f"{what} is still missing after apt-get install {package}")
    return found


def ensure_program(program: str, package: str, recommends: bool = True) -> str:
    """Return the path of `program`, installing Debian's `package` if it is not there.

    `recommends=False` leaves out the packages it only recommends (for prometheus: its node
    exporter, a daemon that the tests do not want)."""
    return _ensure(lambda: shutil.which(program), program, package, recommends)


def ensure_file(path: Path, package: str) -> Path:
    """Return `path`, installing Debian's `package`, which ships it, if it is not there."""
    return Path(_ensure(lambda: str(path) if path.exists() else None, str(path), package, True))
