"""Run the stages as real processes, the way an engineer or Kubernetes runs them."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stage_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Return an environment with the repo importable, as Bodywork sets PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TTD_"))}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def run_stage(
    args: List[str], env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None
) -> "subprocess.CompletedProcess[str]":
    """Run `python -m pipeline.<stage> ARGS` (or a script) to completion, capturing output."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd or REPO,
        env=env or stage_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def start_service(
    args: List[str],
    port: int,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[Path] = None,
    timeout: float = 60.0,
) -> "subprocess.Popen[str]":
    """Start the serving stage and return once /ready answers 200 (or raise with its log)."""
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd or REPO,
        env=env or stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output, _ = process.communicate()
            raise RuntimeError(f"service exited {process.returncode}:\n{output}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling interval, not a wait for an outcome
    stop_service(process)
    raise RuntimeError(f"service not ready on port {port} within {timeout}s")


def stop_service(process: "subprocess.Popen[str]", timeout: float = 30.0) -> str:
    """Send SIGTERM as Kubernetes does, wait for the exit, and return the output."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output or ""
