"""Settings that come from the environment: secrets and per-deployment values, in one place."""
from typing import Annotated, Literal, Optional, Tuple
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_STORE = "artifacts"
ENV_PREFIX = "TTD_"


class SettingsError(ValueError):
    """A TTD_* variable holds a value that cannot be used; the message names it."""


ORIGIN_FORM = (
    "an origin is scheme://host[:port] as a browser sends it: http or https, lower case, "
    "no path or trailing slash, no default port"
)
DEFAULT_PORTS = {"http": 80, "https": 443}


def browser_origin(text: str) -> Optional[str]:
    """Return `text` written as a browser writes an origin, or None if it names none."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        return None
    host = parts.hostname
    if parts.scheme not in DEFAULT_PORTS or not host or parts.username is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    host = f"[{host}]" if ":" in host else host
    shown_port = "" if port in (None, DEFAULT_PORTS[parts.scheme]) else f":{port}"
    return f"{parts.scheme}://{host}{shown_port}"


def check_origin(text: str) -> str:
    """Return `text` if a browser's `Origin` header can equal it; say how to write it if not.

    CORS compares the header with each allowed origin as text: `https://ui.example.com/` or
    `https://UI.example.com` would never match, and the UI would fail with no sign why.
    """
    if text == "*":
        raise ValueError(
            "'*' would let any web page call the API from its visitors' browsers: list the "
            "platform UI's origins"
        )
    written = browser_origin(text)
    if written == text and text.isascii():
        return text
    hint = f" (write {written!r})" if written and written.isascii() else ""
    raise ValueError(f"{text!r} is not an origin{hint}: {ORIGIN_FORM}")


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
    # The HTTP server's limits (README, "Failure modes"): a client that opens a connection
    # or starts a request must send its headers, then its body, within these many seconds;
    # beyond max_connections open at once a new connection gets a 503 and is closed; on
    # SIGTERM, idle keep-alive connections are kept open for drain_grace seconds so that a
    # request already on its way is still answered (with Connection: close).
    # httptools is uvicorn's faster parser (C, llhttp); h11 stays selectable, as every guard
    # in pipeline/service/server/ works with both.
    http_parser: Literal["h11", "httptools"] = Field("httptools", description="HTTP parser")
    http_header_timeout: float = Field(10.0, gt=0, description="seconds to send headers")
    http_body_timeout: float = Field(10.0, gt=0, description="seconds to send a body")
    http_keep_alive_timeout: int = Field(5, gt=0, description="idle keep-alive seconds")
    http_max_connections: int = Field(1000, gt=0, description="connections open at once")
    http_drain_grace: float = Field(2.0, ge=0, description="SIGTERM: idle connections kept")
    # Request bodies held in memory at once, across all connections; beyond it a body gets
    # 503 with Retry-After, unread (a body under 4 KiB is always admitted). The serving pod
    # asks for 384 MB and idles at about 80 MB; a budgeted byte costs about one byte of
    # memory while held, plus what parsing the one batch being parsed at a time takes, so
    # 64 MiB keeps the worst case near 175 MB (README, "Failure modes"). At least one
    # largest batch body (2 MiB, MAX_BATCH_BODY_BYTES in service/middleware/request_guard.py), or
    # no batch would ever be admitted.
    http_body_budget_bytes: int = Field(
        64 * 1024 * 1024, ge=2 * 1024 * 1024, description="request body bytes in memory"
    )
    # A line per request costs about a tenth of a request's time and fills the pod's log;
    # /metrics counts requests by route and status instead. On for debugging a client.
    access_log: bool = Field(False, description="1 logs a line per request (uvicorn's)")
    # /metrics (traffic, refusals, the model served) on a port of its own: Bodywork's Service
    # and ingress route only the service port, so whoever reaches the API cannot read these.
    # Prometheus scrapes the pod on this port (deploy/podmonitor.yaml). 0: no metrics.
    metrics_port: int = Field(8001, ge=0, le=65535, description="port of /metrics; 0: off")
    # Anything larger is skipped unread, so that a planted file cannot exhaust the pod's
    # memory; training refuses to publish a model over either (registry.check_servable).
    # Metadata is about 40 KB whatever the catalogue (codes live in the artifact): 1 MiB is
    # 25x that. An artifact is about 48 bytes per product with 10-character codes (lines,
    # codes, weeks missing, the promise's terms in single precision), 102 with the longest
    # (64): 128 MiB holds about 2.7M products of 10 characters, 1.3M of 64
    # (docs/performance.md, "A catalogue").
    max_metadata_bytes: int = Field(1024 * 1024, gt=0, description="larger metadata skipped")
    max_artifact_bytes: int = Field(
        128 * 1024 * 1024, gt=0, description="larger artifacts skipped"
    )
    # The history training carries from week to week: about 45 bytes a product with
    # 10-character codes (a line and its covariance in doubles, two week counts).
    max_state_bytes: int = Field(
        256 * 1024 * 1024, gt=0, description="larger states not read (training starts afresh)"
    )
    # Training removes temporary files and unpublished artifacts older than this: longer
    # than any run may take, so a publication in progress is never disturbed.
    leftover_max_age_hours: float = Field(
        6.0, ge=0, description="training removes leftovers older than this"
    )

    # The web pages allowed to call the API from a browser (the platform UI), comma-separated
    # (TTD_CORS_ORIGINS=https://ui.example.com,http://localhost:3000). Unset: no CORS layer
    # at all, and browsers refuse pages of other origins their calls, as before.
    cors_origins: Annotated[Tuple[str, ...], NoDecode] = Field(
        (), description="origins whose pages may call the API, comma-separated"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Read the comma-separated list; blanks around each origin are dropped."""
        if not isinstance(value, str):
            return value
        if not value.strip():
            return ()
        origins = [origin.strip() for origin in value.split(",")]
        if "" in origins:
            raise ValueError(f"an empty origin between commas: {ORIGIN_FORM}")
        return tuple(origins)

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: Tuple[str, ...]) -> Tuple[str, ...]:
        return tuple(check_origin(origin) for origin in origins)

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
        default = "unset" if field.default in (None, ()) else field.default
        lines.append(f"  {ENV_PREFIX}{name.upper():<20} {field.description} (default: {default})")
    return "\n".join(lines)
