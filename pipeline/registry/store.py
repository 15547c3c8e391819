"""The store: a local folder or an S3 bucket with the same layout (datasets/, models/).

All storage I/O of the pipeline lives here, and this is the one place that creates an S3
client. Every failure is re-raised as StoreError, whose message names the location and says
what to check, so that a stage can print one line instead of a traceback.
"""
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, NamedTuple, Optional, Union

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from pipeline.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any


class StoreError(Exception):
    """A storage operation failed; the message says where and what to check."""


class KeyExistsError(StoreError):
    """A write would have replaced an existing object: the store never overwrites."""


class ObjectTooLargeError(StoreError):
    """An object is larger than its reader allows, and was not read."""


class StoredObject(NamedTuple):
    key: str
    size: int
    modified: float  # seconds since the epoch, as the store reports it


def _too_large(location: str, size: int, max_bytes: int) -> ObjectTooLargeError:
    return ObjectTooLargeError(
        f"{location} is {size:,} bytes, over the limit of {max_bytes:,}: not reading it"
    )


def make_s3_client() -> S3Client:
    """Create the S3 client from boto3's standard configuration.

    Credentials come from the usual chain (environment, profile, instance role) and an
    S3-compatible server is selected with AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL. Retries
    and timeouts are bounded (TTD_S3_MAX_ATTEMPTS, TTD_S3_CONNECT_TIMEOUT, TTD_S3_READ_TIMEOUT).
    """
    settings = Settings()
    config = Config(
        retries={"total_max_attempts": settings.s3_max_attempts, "mode": "standard"},
        connect_timeout=settings.s3_connect_timeout,
        read_timeout=settings.s3_read_timeout,
    )
    return boto3.client("s3", config=config)


class LocalStore:
    """A folder laid out exactly like the bucket: the embedded default for laptops."""

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)
        self.uri = str(self.root)

    def location(self, key: str) -> str:
        return str(self.root / key)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StoreError(f"key {key!r} points outside the store {self.uri}")
        return path

    def list_keys(self, prefix: str) -> List[str]:
        folder = self.root / prefix
        if not folder.is_dir():  # a store that does not exist yet holds nothing
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def list_objects(self, prefix: str, hidden: bool = False) -> List[StoredObject]:
        """List regular files under `prefix` with their size and age; hidden ones on demand
        (the temporary files of writes in progress, or of writes that were killed)."""
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        found = []
        for path in folder.rglob("*"):
            if path.name.startswith(".") and not hidden:
                continue
            try:
                info = path.lstat()
            except OSError:  # removed meanwhile
                continue
            if stat.S_ISREG(info.st_mode):
                key = path.relative_to(self.root).as_posix()
                found.append(StoredObject(key, info.st_size, info.st_mtime))
        return sorted(found)

    def get_bytes(self, key: str, max_bytes: Optional[int] = None) -> bytes:
        """Read a whole object; refuse one larger than `max_bytes` without reading it.

        Raises:
            ObjectTooLargeError: over `max_bytes`.
            StoreError: missing, unreadable, or not a regular file. A named pipe or a device
                is refused before any read, which would block or never end.
        """
        location = self.location(key)
        try:
            # Non-blocking, so that opening a named pipe returns at once instead of waiting
            # for a writer that may never come.
            fd = os.open(self._path(key), os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise StoreError(f"cannot read {location}: {exc.strerror}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(
                    f"cannot read {location}: not a regular file "
                    f"({_file_type(info.st_mode)}); refusing it"
                )
            if max_bytes is not None and info.st_size > max_bytes:
                raise _too_large(location, info.st_size, max_bytes)
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
        except OSError as exc:
            raise StoreError(f"cannot read {location}: {exc.strerror}") from exc
        finally:
            os.close(fd)
        if max_bytes is not None and len(data) > max_bytes:  # it grew while being read
            raise _too_large(location, len(data), max_bytes)
        return data

    def remove_leftover(self, key: str) -> None:
        """Delete one regular file: only for leftovers of failed runs (registry/leftovers.py)."""
        path = self.root / key  # not resolved: a symlink is refused, never its target removed
        self._path(str(Path(key).parent / "x"))  # the folder must be inside the store
        try:
            if not stat.S_ISREG(path.lstat().st_mode):
                raise StoreError(f"cannot remove {self.location(key)}: not a regular file")
            path.unlink()
        except OSError as exc:
            raise StoreError(f"cannot remove {self.location(key)}: {exc.strerror}") from exc

    def put_new(self, key: str, data: bytes) -> None:
        """Write an object that must not exist yet, atomically.

        The bytes go to a hidden temporary file first and are then hard-linked into place,
        which fails if the key exists: a reader never sees half an object, and two writers
        never replace each other's work.
        """
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.link(tmp, path)
            finally:
                os.unlink(tmp)
        except FileExistsError as exc:
            raise KeyExistsError(f"{self.location(key)} exists already; not overwriting") from exc
        except OSError as exc:
            raise StoreError(f"cannot write {self.location(key)}: {exc.strerror}") from exc


class S3Store:
    """An S3 bucket (optionally a prefix inside it) reached through boto3."""

    def __init__(self, bucket: str, prefix: str, client: S3Client) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def list_keys(self, prefix: str) -> List[str]:
        keys: List[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                keys.extend(obj["Key"][len(self.prefix):] for obj in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(_explain("list", self.location(prefix), exc)) from exc
        return sorted(keys)

    def list_objects(self, prefix: str, hidden: bool = False) -> List[StoredObject]:
        """List objects under `prefix` with their size and last-modified time (S3 has no
        temporary objects: a PUT is visible whole or not at all, so `hidden` changes nothing)."""
        found: List[StoredObject] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                found.extend(
                    StoredObject(
                        obj["Key"][len(self.prefix):], obj["Size"], obj["LastModified"].timestamp()
                    )
                    for obj in page.get("Contents", [])
                )
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(_explain("list", self.location(prefix), exc)) from exc
        return sorted(found)

    def get_bytes(self, key: str, max_bytes: Optional[int] = None) -> bytes:
        """Read a whole object; refuse one larger than `max_bytes` from its Content-Length,
        before reading its body."""
        location = self.location(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            body = response["Body"]
            try:
                size = response["ContentLength"]
                if max_bytes is not None and size > max_bytes:
                    raise _too_large(location, size, max_bytes)
                data = body.read() if max_bytes is None else body.read(max_bytes + 1)
            finally:
                body.close()
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(_explain("read", location, exc)) from exc
        if max_bytes is not None and len(data) > max_bytes:
            raise _too_large(location, len(data), max_bytes)
        return data

    def remove_leftover(self, key: str) -> None:
        """Delete one object: only for leftovers of failed runs (pipeline/registry/leftovers.py)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(_explain("remove", self.location(key), exc)) from exc

    def put_new(self, key: str, data: bytes) -> None:
        """Write an object that must not exist yet.

        S3 makes a single PUT visible whole, so readers never see half an object. The key is
        checked first, and the PUT is conditional (If-None-Match) where the server honours it.
        """
        full_key = self.prefix + key
        try:
            self.client.head_object(Bucket=self.bucket, Key=full_key)
        except ClientError as exc:
            if _error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
                raise StoreError(_explain("check", self.location(key), exc)) from exc
        except BotoCoreError as exc:
            raise StoreError(_explain("check", self.location(key), exc)) from exc
        else:
            raise KeyExistsError(f"{self.location(key)} exists already; not overwriting")
        try:
            self.client.put_object(Bucket=self.bucket, Key=full_key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if _error_code(exc) in ("PreconditionFailed", "412"):
                raise KeyExistsError(
                    f"{self.location(key)} exists already; not overwriting"
                ) from exc
            raise StoreError(_explain("write", self.location(key), exc)) from exc
        except BotoCoreError as exc:
            raise StoreError(_explain("write", self.location(key), exc)) from exc


Store = Union[LocalStore, S3Store]


# Anything that starts like a URI scheme (`s3:`, `S3:`, `gs:`) or like a mistyped `s3://`
# (`s3//x`): as a local path it would create a folder named after the typo.
_URI_LIKE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:|s3/{2,})", re.IGNORECASE)


def open_store(uri: str, s3_client: Optional[Callable[[], S3Client]] = None) -> Store:
    """Open a store from its URI: `s3://bucket[/prefix]` or a local folder path.

    Raises:
        StoreError: the URI is neither, e.g. `s3:/bucket`, `S3://bucket`, `s3:bucket`.
    """
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        if not bucket:
            raise StoreError(f"store URI {uri!r} names no bucket: use s3://bucket[/prefix]")
        return S3Store(bucket, prefix, (s3_client or make_s3_client)())
    if not uri.strip():
        raise StoreError("the store is empty: give s3://bucket[/prefix] or a local folder")
    if _URI_LIKE.match(uri):
        raise StoreError(
            f"store URI {uri!r} is neither s3://bucket[/prefix] (lower-case s3, two slashes) "
            "nor a local folder"
        )
    return LocalStore(uri)


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "a special file"


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _explain(action: str, location: str, exc: Exception) -> str:
    """Turn a boto error into one line that says what failed and what to check."""
    if isinstance(exc, NoCredentialsError):
        hint = "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
    elif isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        hint = (
            "cannot reach the S3 endpoint: check AWS_ENDPOINT_URL_S3/AWS_ENDPOINT_URL "
            "and the network"
        )
    elif isinstance(exc, ReadTimeoutError):
        hint = "the S3 endpoint stopped answering: check the server's health"
    elif isinstance(exc, ClientError):
        code = _error_code(exc)
        if code == "NoSuchBucket":
            hint = "the bucket does not exist: check the store URI"
        elif code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            hint = f"access refused ({code}): check the AWS credentials and their permissions"
        elif code in ("NoSuchKey", "404", "NotFound"):
            hint = "no such object"
        else:
            hint = f"S3 error {code}: {exc.response.get('Error', {}).get('Message', '')}".strip()
    else:
        hint = f"{type(exc).__name__}: {exc}"
    return f"cannot {action} {location}: {hint}"
