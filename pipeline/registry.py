"""Published models in the store: how they are named, written, found and verified.

A model is two objects under models/: the joblib artifact, then its JSON metadata. The
metadata is written last and carries the artifact's SHA-256, so a model becomes visible only
once it is whole, and an artifact is loaded only if its bytes are the ones that were
published. With a signing key, the metadata also carries an HMAC-SHA256 signature, so that
only models written by a holder of the key are ever loaded (joblib runs code when it loads).
Keys carry the creation time and a random suffix: never overwritten, and two
training runs at once never collide.
"""
import hashlib
import hmac
import io
import json
import math
import secrets
from datetime import datetime, timezone
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import joblib
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.api_schema import MAX_ORDERS_PLACED
from pipeline.logs import configure_logger
from pipeline.model import ProductLinearModel
from pipeline.promise import check_promise_params
from pipeline.settings import Settings
from pipeline.store import ObjectTooLargeError, Store, StoreError

log = configure_logger(__name__)

MODELS_PREFIX = "models/"
MODEL_STEM = "time_to_dispatch_model_"

# No real dispatch line comes near these: 10,000 hours is over a year before the first order,
# and 100 hours per order queued ahead would be a month's wait behind 7 orders. A model past
# them was tampered with or broken, and its estimates would be absurd or not even numbers.
MAX_ABS_INTERCEPT_HOURS = 10_000.0
MAX_ABS_SLOPE_HOURS_PER_ORDER = 100.0


class ModelVerificationError(Exception):
    """A published model is incomplete, altered, or unreadable, and must not be loaded."""


class ModelMetadata(BaseModel):
    """What is known about a published model; `extra` keeps fields added by later versions."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model_version: str
    created_at: str
    artifact_key: str
    artifact_sha256: str
    artifact_format: str
    metrics: Dict[str, float]
    dataset: Dict[str, Any]
    product_codes: List[str]
    signature: Optional[str] = None


class LoadedModel(NamedTuple):
    model: ProductLinearModel
    metadata: ModelMetadata
    promise: Optional[Dict[str, Any]] = None  # the artifact's "promise" (None: it has none)


def metadata_extra(metadata: ModelMetadata, name: str) -> Any:
    """Return a field added after the first release (None when the model predates it).

    Such fields stay pydantic extras rather than declared ones, so the canonical JSON that
    is signed is the same for the code that wrote a model and any code that reads it.
    """
    return (metadata.model_extra or {}).get(name)


def new_model_version(now: Optional[datetime] = None) -> str:
    """Return a version id that sorts by creation time and is unique across runs."""
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(6)}"


def artifact_key(version: str) -> str:
    return f"{MODELS_PREFIX}{MODEL_STEM}{version}.joblib"


def metadata_key(version: str) -> str:
    return f"{MODELS_PREFIX}{MODEL_STEM}{version}.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialise_model(
    model: ProductLinearModel, promise: Optional[Dict[str, Any]] = None
) -> bytes:
    """Serialise the artifact; `promise` (plain arrays and floats) under its own key.

    Services that predate promises read the lines and ignore the key.
    """
    artifact = model.to_artifact()
    if promise is not None:
        artifact["promise"] = promise
    buffer = io.BytesIO()
    joblib.dump(artifact, buffer)
    return buffer.getvalue()


def metadata_signature(metadata: ModelMetadata, key: bytes) -> str:
    """Return the HMAC-SHA256 of the metadata's canonical JSON, signature field excluded."""
    canonical = json.dumps(
        metadata.model_dump(mode="json", exclude={"signature"}),
        sort_keys=True,
        separators=(",", ":"),
    )
    return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def publish_model(
    store: Store,
    version: str,
    artifact: bytes,
    metadata: ModelMetadata,
    signing_key: Optional[bytes] = None,
) -> str:
    """Write the artifact, then the metadata that makes it visible; return the metadata key."""
    if signing_key is not None:
        metadata = metadata.model_copy(
            update={"signature": metadata_signature(metadata, signing_key)}
        )
    store.put_new(metadata.artifact_key, artifact)
    key = metadata_key(version)
    store.put_new(key, metadata.model_dump_json(indent=2).encode("utf-8"))
    return key


def published_versions(store: Store) -> List[str]:
    """Return the versions that have metadata (are fully published), newest first."""
    stem = MODELS_PREFIX + MODEL_STEM
    versions = [
        key[len(stem):-len(".json")]
        for key in store.list_keys(MODELS_PREFIX)
        if key.startswith(stem) and key.endswith(".json")
    ]
    return sorted(versions, reverse=True)


def check_model_parameters(model: ProductLinearModel) -> None:
    """Refuse a model whose numbers no real dispatch line has, naming the products.

    Each intercept and slope must be finite and within MAX_ABS_INTERCEPT_HOURS and
    MAX_ABS_SLOPE_HOURS_PER_ORDER, so that every estimate the API can ask for is a number.

    Raises:
        ModelVerificationError: which parameter of which products is out of bounds.
    """
    codes: Sequence[str] = model.product_codes
    problems = []
    for name, values, bound, unit in (
        ("intercept", model.intercepts, MAX_ABS_INTERCEPT_HOURS, "h"),
        ("slope", model.slopes, MAX_ABS_SLOPE_HOURS_PER_ORDER, "h/order"),
    ):
        bad = [
            f"{code} ({value!r})"
            for code, value in zip(codes, values)
            if not (math.isfinite(value) and abs(value) <= bound)
        ]
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            problems.append(f"{name} not finite or beyond ±{bound:,g} {unit} for {shown}")
    for code, intercept, slope in zip(codes, model.intercepts, model.slopes):
        if not problems and not math.isfinite(intercept + slope * MAX_ORDERS_PLACED):
            problems.append(f"estimate at {MAX_ORDERS_PLACED:,} orders is not finite for {code}")
    if problems:
        raise ModelVerificationError("parameters out of bounds: " + "; ".join(problems))


def read_metadata(store: Store, version: str) -> ModelMetadata:
    """Read one model's metadata, size-limited and checked to name this model (not verified).

    Raises:
        ModelVerificationError: too large, not valid metadata, or naming another model.
        StoreError: the store itself failed.
    """
    location = store.location(metadata_key(version))
    try:
        raw = store.get_bytes(metadata_key(version), max_bytes=Settings().max_metadata_bytes)
    except ObjectTooLargeError as exc:
        raise ModelVerificationError(f"{exc} (TTD_MAX_METADATA_BYTES)") from exc
    try:
        metadata = ModelMetadata.model_validate_json(raw)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise ModelVerificationError(f"{location}: metadata is not valid: {errors}") from exc
    if metadata.model_version != version or metadata.artifact_key != artifact_key(version):
        raise ModelVerificationError(f"{location}: metadata names another model")
    return metadata


def report_key(version: str) -> str:
    """Where a model's review report lies, beside its artifact and metadata."""
    return f"{MODELS_PREFIX}{MODEL_STEM}{version}_report.html"


def load_model(store: Store, version: str, signing_key: Optional[bytes] = None) -> LoadedModel:
    """Read, verify and load one published model.

    The metadata and the artifact are read only if their size is within
    TTD_MAX_METADATA_BYTES and TTD_MAX_ARTIFACT_BYTES, so that a huge object planted in the
    store is skipped without being read.

    Raises:
        ModelVerificationError: the metadata is too large, unreadable or (with a signing key)
            unsigned or badly signed, or the artifact is missing, too large, not the bytes
            the metadata names, not a model this code can read, or its parameters are absurd.
        StoreError: the store itself failed.
    """
    settings = Settings()
    location = store.location(metadata_key(version))
    metadata = read_metadata(store, version)
    if signing_key is not None:
        if not metadata.signature:
            raise ModelVerificationError(
                f"{location}: unsigned, and TTD_SIGNING_KEY is set: refusing to load it"
            )
        expected = metadata_signature(metadata, signing_key)
        if not hmac.compare_digest(metadata.signature, expected):
            raise ModelVerificationError(
                f"{location}: signature does not match TTD_SIGNING_KEY: refusing to load it"
            )
    try:
        artifact = store.get_bytes(metadata.artifact_key, max_bytes=settings.max_artifact_bytes)
    except StoreError as exc:
        raise ModelVerificationError(f"{location}: artifact unreadable: {exc}") from exc
    if sha256(artifact) != metadata.artifact_sha256:
        raise ModelVerificationError(
            f"{store.location(metadata.artifact_key)}: SHA-256 differs from its metadata; "
            "the artifact was altered or corrupted, refusing to load it"
        )
    try:
        content = joblib.load(io.BytesIO(artifact))
        model = ProductLinearModel.from_artifact(content)
        promise = content.get("promise")
        if promise is not None:
            check_promise_params(promise, len(model.product_codes))
    except Exception as exc:  # noqa: BLE001 - any unreadable artifact is a verification failure
        raise ModelVerificationError(
            f"{store.location(metadata.artifact_key)}: cannot load: {exc}"
        ) from exc
    try:
        check_model_parameters(model)
    except ModelVerificationError as exc:
        raise ModelVerificationError(f"{store.location(metadata.artifact_key)}: {exc}") from exc
    return LoadedModel(model, metadata, promise)


def load_pinned_model(
    store: Store, version: str, signing_key: Optional[bytes] = None
) -> LoadedModel:
    """Load exactly this published version (a rollback), verified like any other."""
    if version not in published_versions(store):
        raise ModelVerificationError(
            f"model version {version!r} is not published in {store.location(MODELS_PREFIX)}"
        )
    return load_model(store, version, signing_key)


def load_live_model(
    store: Store, signing_key: Optional[bytes] = None, pinned_version: Optional[str] = None
) -> Optional[LoadedModel]:
    """Return the model being served (the pinned one, or the newest that verifies), if any."""
    if pinned_version:
        return load_pinned_model(store, pinned_version, signing_key)
    if not published_versions(store):
        return None
    try:
        return load_newest_model(store, signing_key)
    except ModelVerificationError as exc:
        log.warning(f"no live model to compare with: {exc}")
        return None


def load_newest_model(store: Store, signing_key: Optional[bytes] = None) -> LoadedModel:
    """Load the newest published model that verifies, skipping (and logging) any that don't."""
    versions = published_versions(store)
    if not versions:
        raise ModelVerificationError(
            f"no published model in {store.location(MODELS_PREFIX)}: run "
            f"`python -m pipeline.train_model {store.uri}` first"
        )
    for version in versions:
        try:
            return load_model(store, version, signing_key)
        except ModelVerificationError as exc:
            log.warning(f"skipping model {version}: {exc}")
    raise ModelVerificationError(
        f"none of the {len(versions)} model(s) in {store.location(MODELS_PREFIX)} verifies; "
        "see the warnings above, then retrain"
    )
