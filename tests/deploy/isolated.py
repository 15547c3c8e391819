"""Run `python ARGS...` in a private network namespace that has only a loopback interface.

    python -m tests.deploy.isolated -m pytest tests/deploy

Bodywork's serve stage binds 0.0.0.0:8000, as in the cluster. In a private namespace that
address reaches nothing beyond the namespace's own loopback, cannot clash with a developer's
`make run` on port 8000, and nothing can reach the internet, which also proves the stages need
no network. Root gets the namespace from `unshare --net`; other users from `unshare --net
--map-root-user` where unprivileged user namespaces are allowed. Where neither works, the
command runs as it is, and the tests that need the namespace skip (or fail, under CI=true).
"""
import os
import shutil
import subprocess
import sys
from typing import List, Optional

INSIDE = "DEPLOY_TESTS_NETNS"  # set in the namespace, so that the launcher runs once


def unshare_command() -> Optional[List[str]]:
    """Return the `unshare` prefix that gives this user a network namespace, if any does."""
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        return None
    command = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--net", "--map-root-user"]
    try:
        probe = subprocess.run(
            [*command, "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return command if probe.returncode == 0 else None


def main(args: List[str]) -> None:
    python = [sys.executable, *args]
    if os.environ.get(INSIDE) == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        os.execv(sys.executable, python)
    command = unshare_command()
    if command is None:
        print(
            "tests.deploy.isolated: cannot create a private network namespace here "
            "(needs unshare and ip, and root or unprivileged user namespaces); running "
            "without one",
            file=sys.stderr,
        )
        os.execv(sys.executable, python)
    os.environ[INSIDE] = "1"
    os.execv(command[0], [*command, sys.executable, "-m", "tests.deploy.isolated", *args])


if __name__ == "__main__":
    main(sys.argv[1:])
