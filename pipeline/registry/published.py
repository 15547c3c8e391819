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
import secrets
from datetime import datetime, timezone
from typing import List, NamedTuple, Optional

import joblib
import numpy as np
from pydantic import ValidationError

from pipeline.logs import configure_logger
from pipeline.artifact.model import MAX_ORDERS_PLACED, CatalogueState, ProductLinearModel
from pipeline.codes.product_codes import ProductCodes
from pipeline.artifact.promise import PromiseParams
from pipeline.settings import Settings
from pipeline.registry.metadata import ModelMetadata
from pipeline.registry.store import ObjectTooLargeError, Store, StoreError

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


class LoadedModel(NamedTuple):
    model: ProductLinearModel
    metadata: ModelMetadata
    promise: Optional[PromiseParams] = None  # None: trained before promises


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


def serialise_model(model: ProductLinearModel, promise: Optional[PromiseParams] = None) -> bytes:
    """Serialise the artifact; the promise's plain arrays and floats under a key of their own.

    Services that predate promises read the lines and ignore the key.
    """
    artifact = model.to_artifact()
    if promise is not None:
        artifact["promise"] = promise.to_artifact()
    buffer = io.BytesIO()
    joblib.dump(artifact, buffer)
    return buffer.getvalue()


def metadata_signature(metadata: ModelMetadata, key: bytes) -> str:
    """Return the HMAC-SHA256 of the metadata's canonical JSON, signature field excluded."""
    canonical = json.dumps(
        metadata.model_dump(mode="json", exclude={"signature"}, exclude_unset=True),
        sort_keys=True,
        separators=(",", ":"),
    )
    return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_metadata(metadata: ModelMetadata, signing_key: Optional[bytes]) -> bytes:
    """Return the metadata's JSON as published: signed with the key, if there is one."""
    if signing_key is not None:
        metadata = metadata.model_copy(
            update={"signature": metadata_signature(metadata, signing_key)}
        )
    return metadata.model_dump_json(indent=2, exclude_unset=True).encode("utf-8")


def check_servable(
    version: str, artifact: bytes, metadata_json: bytes, signing_key: Optional[bytes]
) -> LoadedModel:
    """Apply to a model about to be published every check the service applies to load it.

    Sizes against the same TTD_MAX_* settings, the signature, the hash, the format and the
    parameters: what training publishes, the service loads.

    Raises:
        ModelVerificationError: what fails, naming the limit or check.
    """
    settings = Settings()
    for what, size, limit, variable in (
        ("metadata", len(metadata_json), settings.max_metadata_bytes, "TTD_MAX_METADATA_BYTES"),
        ("artifact", len(artifact), settings.max_artifact_bytes, "TTD_MAX_ARTIFACT_BYTES"),
    ):
        if size > limit:
            raise ModelVerificationError(
                f"the model's {what} is {size:,} bytes, over {variable} ({limit:,} bytes): "
                "the service would refuse to load it"
            )
    metadata = parse_metadata(metadata_json, version, f"model {version}")
    check_signature(metadata, signing_key, f"model {version}")
    return verify_artifact(metadata, artifact, f"model {version}")


def publish_model(
    store: Store,
    version: str,
    artifact: bytes,
    metadata: ModelMetadata,
    signing_key: Optional[bytes] = None,
) -> str:
    """Write the artifact, then the metadata that makes it visible; return the metadata key.

    Raises:
        ModelVerificationError: the service would not load it (check_servable): nothing
            was written.
    """
    metadata_json = signed_metadata(metadata, signing_key)
    check_servable(version, artifact, metadata_json, signing_key)
    return write_model(store, version, artifact, metadata_json)


def write_model(store: Store, version: str, artifact: bytes, metadata_json: bytes) -> str:
    """Write a model that check_servable passed: the artifact, then the metadata that makes
    it visible; return the metadata key."""
    store.put_new(artifact_key(version), artifact)
    key = metadata_key(version)
    store.put_new(key, metadata_json)
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
    problems = []
    for name, values, bound, unit in (
        ("intercept", model.intercepts, MAX_ABS_INTERCEPT_HOURS, "h"),
        ("slope", model.slopes, MAX_ABS_SLOPE_HOURS_PER_ORDER, "h/order"),
    ):
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(~(np.abs(values) <= bound))  # NaN and inf fail too
        if len(bad):
            shown = ", ".join(
                f"{model.product_codes[int(i)]} ({float(values[i])!r})" for i in bad[:5]
            ) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            problems.append(f"{name} not finite or beyond ±{bound:,g} {unit} for {shown}")
    if not problems:
        with np.errstate(over="ignore", invalid="ignore"):
            at_most = model.intercepts + model.slopes * MAX_ORDERS_PLACED
        bad = np.flatnonzero(~np.isfinite(at_most))
        if len(bad):
            problems.append(
                f"estimate at {MAX_ORDERS_PLACED:,} orders is not finite for "
                f"{model.product_codes[int(bad[0])]}"
            )
    if problems:
        raise ModelVerificationError("parameters out of bounds: " + "; ".join(problems))


def parse_metadata(raw: bytes, version: str, location: str) -> ModelMetadata:
    """Parse one model's metadata and check it names this model (not verified)."""
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


def read_metadata(store: Store, version: str) -> ModelMetadata:
    """Read one model's metadata, size-limited and checked to name this model (not verified).

    Raises:
        ModelVerificationError: too large, not valid metadata, or naming another model.
        StoreError: the store itself failed.
    """
    try:
        raw = store.get_bytes(metadata_key(version), max_bytes=Settings().max_metadata_bytes)
    except ObjectTooLargeError as exc:
        raise ModelVerificationError(f"{exc} (TTD_MAX_METADATA_BYTES)") from exc
    return parse_metadata(raw, version, store.location(metadata_key(version)))


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
    metadata = read_metadata(store, version)
    where = store.location(metadata_key(version))
    check_signature(metadata, signing_key, where)
    try:
        artifact = store.get_bytes(
            metadata.artifact_key, max_bytes=Settings().max_artifact_bytes
        )
    except StoreError as exc:
        raise ModelVerificationError(f"{where}: artifact unreadable: {exc}") from exc
    return verify_artifact(metadata, artifact, store.location(metadata.artifact_key))


def check_signature(metadata: ModelMetadata, signing_key: Optional[bytes], where: str) -> None:
    """With a signing key, refuse metadata that is unsigned or signed with another key."""
    if signing_key is None:
        return
    if not metadata.signature:
        raise ModelVerificationError(
            f"{where}: unsigned, and TTD_SIGNING_KEY is set: refusing to load it"
        )
    expected = metadata_signature(metadata, signing_key)
    if not hmac.compare_digest(metadata.signature, expected):
        raise ModelVerificationError(
            f"{where}: signature does not match TTD_SIGNING_KEY: refusing to load it"
        )


def verify_artifact(metadata: ModelMetadata, artifact: bytes, where: str) -> LoadedModel:
    """Check the artifact's hash (against metadata whose signature was checked), format and
    parameters; return the model."""
    if sha256(artifact) != metadata.artifact_sha256:
        raise ModelVerificationError(
            f"{where}: SHA-256 differs from its metadata; "
            "the artifact was altered or corrupted, refusing to load it"
        )
    try:
        content = joblib.load(io.BytesIO(artifact))
        model = ProductLinearModel.from_artifact(content)
        promise = content.get("promise")
        if promise is not None:
            promise = PromiseParams.from_artifact(promise, len(model.product_codes))
    except Exception as exc:  # noqa: BLE001 - any unreadable artifact is a verification failure
        raise ModelVerificationError(f"{where}: cannot load: {exc}") from exc
    try:
        check_model_parameters(model)
    except ModelVerificationError as exc:
        raise ModelVerificationError(f"{where}: {exc}") from exc
    if metadata.product_codes is not None:  # before the catalogue change: state in metadata
        model = with_listed_catalogue(model, metadata)
    return LoadedModel(model, metadata, promise)


def with_listed_catalogue(model: ProductLinearModel, metadata: ModelMetadata) -> ProductLinearModel:
    """Give a model of the list format the carried and dropped products its metadata lists."""
    listed = metadata.catalogue_section()
    carried = listed.carried
    dropped = [str(code) for code in listed.dropped]
    weeks = np.zeros(len(model), np.int16)
    if carried:
        at = model.product_codes.find_many([str(code) for code in carried])
        weeks[at[at >= 0]] = np.asarray(list(carried.values()), np.int16)[at >= 0]
    state = CatalogueState(
        weeks, ProductCodes.from_strings(dropped), np.zeros(len(dropped), np.int16)
    )
    return ProductLinearModel(model.product_codes, model.intercepts, model.slopes, state)


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
