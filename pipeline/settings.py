"""Settings that come from the environment: secrets and per-deployment values, in one place."""
from typing import Optional

from pydantic import SecretStr
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

    def signing_key_bytes(self) -> Optional[bytes]:
        if self.signing_key is None or not self.signing_key.get_secret_value():
            return None
        return self.signing_key.get_secret_value().encode("utf-8")
