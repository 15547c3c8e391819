"""Headless Chromium for the tests that check what a person sees, installed when missing.

Debian's `chromium` package is installed with apt-get (as root) the first time a test needs
it (tests/apt.py).
"""
import subprocess
from pathlib import Path
from typing import List

from tests.apt import ensure_program

# No background networking, so the closed network of CI raises no connection errors.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
]


def ensure_chromium() -> str:
    """Return the path of chromium, installing Debian's package if it is not there."""
    return ensure_program("chromium", "chromium")


def run_chromium(args: List[str], user_data: Path) -> str:
    """Run headless Chromium with a fresh profile; return what it printed on stdout."""
    result = subprocess.run(
        [ensure_chromium(), *FLAGS, f"--user-data-dir={user_data}", *args],
        capture_output=True, text=True, timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout
