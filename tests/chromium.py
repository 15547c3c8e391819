"""Headless Chromium for the tests that check what a person sees, installed when missing.

Debian's `chromium` package is installed with apt-get (as root) the first time a test needs
it; a lock keeps two tox environments from running apt-get at once.
"""
import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import List

LOCK = Path("/tmp/ttd-chromium-install.lock")
# No background networking, so the closed network of CI raises no connection errors.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]


def ensure_chromium() -> str:
    """Return the path of chromium, installing Debian's package if it is not there."""
    found = shutil.which("chromium")
    if found:
        return found
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which("chromium")
        if found:
            return found
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", "chromium"]):
            result = subprocess.run(command, capture_output=True, text=True, env=env,
                                    timeout=900)
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed: {result.stderr[-2000:]}")
    found = shutil.which("chromium")
    if not found:
        raise RuntimeError("chromium is still missing after apt-get install chromium")
    return found


def run_chromium(args: List[str], user_data: Path) -> str:
    """Run headless Chromium with a fresh profile; return what it printed on stdout."""
    result = subprocess.run(
        [ensure_chromium(), *FLAGS, f"--user-data-dir={user_data}", *args],
        capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout
