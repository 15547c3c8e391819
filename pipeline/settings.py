"""Settings that come from the environment: secrets and per-deployment values, in one place."""
from typing import Optional

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STORE = "artifacts"
ENV_PREFIX = "TTD_"


class SettingsError(ValueError):
    """A TTD_* variable holds a value that cannot be used; the message names it."""


class Settings(BaseSettings):
    """Read from TTD_* environment variables (AWS settings stay boto3's own)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    store: str = Field(
        DEFAULT_STORE, description="the store: s3://bucket[/prefix] or a local folder"
    )
    # When set, training signs each model's metadata with HMAC-SHA256, and serving refuses
    # any model that is unsigned or whose signature does not match.
    signing_key: Optional[SecretStr] = Field(
        None, description="HMAC key: models are signed, unsigned ones refused"
    )
    debug: bool = Field(False, description="1 adds the traceback to a failure's ERROR line")
    # Serve this published model version instead of the newest: how a bad model is rolled
    # back without touching the store.
    model_version: Optional[str] = Field(
        None, description="serve this published version (a rollback)"
    )
    # S3 calls retry with backoff ("standard" mode) and time out, so that a stage facing a
    # dead or hanging endpoint gives up in bounded time instead of holding a Kubernetes job.
    s3_max_attempts: int = Field(3, description="tries per S3 call, with backoff")
    s3_connect_timeout: float = Field(3.0, description="seconds to connect to S3")
    s3_read_timeout: float = Field(10.0, description="seconds to wait for S3's answer")

    def signing_key_bytes(self) -> Optional[bytes]:
        if self.signing_key is None or not self.signing_key.get_secret_value():
            return None
        return self.signing_key.get_secret_value().encode("utf-8")


SECRET_FIELDS = frozenset({"signing_key"})


def read_settings() -> Settings:
    """Read the TTD_* settings, or say in one line which variable is wrong and why.

    pydantic's own message spans several lines and names the field, not the variable the
    operator set; a secret's value is never repeated.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error.get("loc", ())) or "settings"
            shown = "" if field in SECRET_FIELDS else f"={str(error.get('input'))[:40]!r}"
            problems.append(f"{ENV_PREFIX}{field.upper()}{shown}: {error.get('msg', 'invalid')}")
        raise SettingsError("bad environment variable: " + "; ".join(problems)) from None


def describe_variables() -> str:
    """List the TTD_* variables with their defaults, for a command's --help."""
    lines = ["environment variables (AWS_* are boto3's own):"]
    for name, field in Settings.model_fields.items():
        default = "unset" if field.default is None else field.default
        lines.append(f"  {ENV_PREFIX}{name.upper():<20} {field.description} (default: {default})")
    return "\n".join(lines)
