"""Run the stages as real processes, the way an engineer or Kubernetes runs them."""
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stage_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Return an environment with the repo importable, as Bodywork sets PYTHONPATH.

    No metrics port unless a test asks for one (--metrics-port): services started at once,
    by tests running in parallel, would all want the default one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TTD_"))}
    env["PYTHONPATH"] = str(REPO)
    env["TTD_METRICS_PORT"] = "0"
    env.update(extra or {})
    return env


# Runs a command as a child and prints its wall time and max RSS (KiB), measured by the OS.
_MEASURE = (
    "import resource, subprocess, sys, time; t = time.perf_counter(); "
    "code = subprocess.run(sys.argv[2:], cwd=sys.argv[1], capture_output=True).returncode; "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
    "code)"
)


def measure(command: List[str], cwd: Path = REPO, env: Optional[Dict[str, str]] = None
            ) -> Tuple[float, float, int]:
    """Return (seconds, peak MiB, exit code) of one run of a command as its own process,
    as the OS measures them (for benchmarks)."""
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(cwd), *command],
        capture_output=True, text=True, check=True, env=env or stage_env(),
    ).stdout.split()
    return float(out[0]), float(out[1]) / 1024, int(out[2])


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


def run_stages_at_once(
    args: List[str], copies: int, env: Optional[Dict[str, str]] = None
) -> List[Tuple[int, str]]:
    """Start several copies of one stage together; return each one's exit code and log."""
    runs = [
        subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env=env or stage_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(copies)
    ]
    logs = [run.communicate(timeout=300)[1] for run in runs]
    return [(run.returncode, log) for run, log in zip(runs, logs)]


class Service:
    """A service process whose output goes to a file: a pipe nobody reads would fill up
    under load and stall the server."""

    def __init__(
        self, args: List[str], env: Dict[str, str], cwd: Path, open_files: Optional[int] = None
    ) -> None:
        self.log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=None if open_files is None else _limit_open_files(open_files),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> Optional[int]:
        return self.process.returncode

    def poll(self) -> Optional[int]:
        return self.process.poll()

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def peak_rss_mb(self) -> float:
        """The process's peak resident memory so far (VmHWM), read while it is alive."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmHWM for pid {self.pid}")


def _limit_open_files(count: int) -> Callable[[], None]:
    def limit() -> None:  # runs in the child, before it executes Python
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))

    return limit


def start_service(
    args: List[str],
    port: int,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[Path] = None,
    timeout: float = 60.0,
    open_files: Optional[int] = None,
) -> Service:
    """Start the serving stage and return once /ready answers 200 (or raise with its log).

    `open_files` caps the process's file descriptors (ulimit -n), as a small pod would."""
    service = Service(args, env or stage_env(), cwd or REPO, open_files)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise RuntimeError(f"service exited {service.returncode}:\n{service.output()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return service
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling interval, not a wait for an outcome
    stop_service(service)
    raise RuntimeError(f"service not ready on port {port} within {timeout}s")


def stop_service(service: Service, timeout: float = 30.0) -> str:
    """Send SIGTERM as Kubernetes does, wait for the exit, and return the output."""
    if service.poll() is None:
        service.send_signal(signal.SIGTERM)
    try:
        service.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait()
    output = service.output()
    service.log.close()
    return output
