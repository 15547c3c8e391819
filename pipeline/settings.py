"""Settings that come from the environment: secrets and per-deployment values, in one place."""
from typing import Optional

from pydantic import Field, SecretStr
from typing_extensions import Literal
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STORE = "artifacts"


class Settings(BaseSettings):
    """Read from TTD_* environment variables (AWS settings stay boto3's own)."""

    model_config = SettingsConfigDict(env_prefix="TTD_")

    store: str = DEFAULT_STORE
    # When set, training signs each model's metadata with HMAC-SHA256, and serving refuses
    # any model that is unsigned or whose signature does not match.
    signing_key: Optional[SecretStr] = None
    debug: bool = False
    # Serve this published model version instead of the newest: how a bad model is rolled
    # back without touching the store.
    model_version: Optional[str] = None
    # S3 calls retry with backoff ("standard" mode) and time out, so that a stage facing a
    # dead or hanging endpoint gives up in bounded time instead of holding a Kubernetes job.
    s3_max_attempts: int = 3
    s3_connect_timeout: float = 3.0
    s3_read_timeout: float = 10.0
    # The HTTP server's limits (README, "Failure modes"): a client that opens a connection
    # or starts a request must send its headers, then its body, within these many seconds;
    # beyond max_connections open at once a new connection gets a 503 and is closed; on
    # SIGTERM, idle keep-alive connections are kept open for drain_grace seconds so that a
    # request already on its way is still answered (with Connection: close).
    http_parser: Literal["h11", "httptools"] = "h11"
    http_header_timeout: float = Field(10.0, gt=0)
    http_body_timeout: float = Field(10.0, gt=0)
    http_keep_alive_timeout: int = Field(5, gt=0)
    http_max_connections: int = Field(1000, gt=0)
    http_drain_grace: float = Field(2.0, ge=0)
    # Model metadata is a few kilobytes; anything larger is skipped unread, so that a
    # planted file cannot exhaust the pod's memory. An artifact is ~50 bytes per product.
    max_metadata_bytes: int = Field(1024 * 1024, gt=0)
    max_artifact_bytes: int = Field(64 * 1024 * 1024, gt=0)
    # Training removes temporary files and unpublished artifacts older than this: longer
    # than any run may take, so a publication in progress is never disturbed.
    leftover_max_age_hours: float = Field(6.0, ge=0)

    def signing_key_bytes(self) -> Optional[bytes]:
        if self.signing_key is None or not self.signing_key.get_secret_value():
            return None
        return self.signing_key.get_secret_value().encode("utf-8")
