"""The history a training run leaves for the next (modelling/history.py), in the store.

A state lies beside the model whose run made it, named by that model's version
(`..._state.npz`), written before the model's metadata and never overwritten. The metadata
names it and carries its SHA-256 (signed with the rest, when models are signed), so a
state is read only if its bytes are the ones published. Plain numpy arrays (np.savez),
read without pickle; the service never reads one.
"""
import io
from typing import Any, Dict, NamedTuple, Optional

import numpy as np

from pipeline.codes.product_codes import ProductCodes
from pipeline.modelling.history import History, ProductHistory, Transition
from pipeline.registry.metadata import HistorySection, ModelMetadata
from pipeline.registry.published import MODEL_STEM, MODELS_PREFIX, sha256
from pipeline.registry.store import ObjectTooLargeError, Store, StoreError
from pipeline.settings import Settings

STATE_FORMAT = "time-to-dispatch/product-history/1"
STATE_SUFFIX = "_state.npz"


class StateError(Exception):
    """A published state is missing, altered or unreadable: the run cannot start from it."""


class Written(NamedTuple):
    """A state about to be published: where, and its hash for the model's metadata."""

    key: str
    sha256: str

    @classmethod
    def of(cls, version: str, data: bytes) -> "Written":
        return cls(state_key(version), sha256(data))


def state_key(version: str) -> str:
    return f"{MODELS_PREFIX}{MODEL_STEM}{version}{STATE_SUFFIX}"


def version_of_state(key: str) -> str:
    """The version of the model whose run left the state at `key`."""
    stem = MODELS_PREFIX + MODEL_STEM
    if not (key.startswith(stem) and key.endswith(STATE_SUFFIX)):
        raise StateError(f"{key!r} is not the key of a state")
    return key[len(stem):-len(STATE_SUFFIX)]


def serialise_state(history: History) -> bytes:
    """Return the state's bytes: its arrays, as numpy writes them."""
    products = history.products
    offsets = products.codes.offsets
    arrays: Dict[str, Any] = {
        "format": np.array(STATE_FORMAT),
        "tranche_key": np.array(history.tranche_key),
        "weeks": np.array(history.weeks, dtype=np.int64),
        "transition": np.array([*history.transition.shift, *history.transition.scale,
                                history.transition.keep, history.transition.jump]),
        "codes_utf8": products.codes.utf8,
        "code_offsets": offsets.astype(np.int32) if offsets[-1] < 2**31 else offsets,
        "mean": np.asarray(products.mean, dtype=np.float64),
        # Single floats: seven digits of a line's uncertainty are more than its rows pin down.
        "cov": np.asarray(products.cov, dtype=np.float32),
        "weeks_unseen": np.asarray(products.weeks_unseen, dtype=np.int16),
        "weeks_seen": np.asarray(products.weeks_seen, dtype=np.int16),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def parse_state(data: bytes) -> History:
    """Rebuild a state from its bytes; ValueError if they are not one this code reads."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            found = {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"not a state file: {exc}") from exc
    if str(found.get("format", "")) != STATE_FORMAT:
        raise ValueError(f"state format is {str(found.get('format'))!r}, this code reads "
                         f"{STATE_FORMAT!r}")
    codes = ProductCodes(found["codes_utf8"], found["code_offsets"])
    count = len(codes)
    shapes = {"mean": (count, 2), "cov": (count, 3), "weeks_unseen": (count,),
              "weeks_seen": (count,)}
    for name, shape in shapes.items():
        if found[name].shape != shape:
            raise ValueError(f"state {name} is {found[name].shape}, not {shape}")
    if not (np.isfinite(found["mean"]).all() and np.isfinite(found["cov"]).all()):
        raise ValueError("state lines are not all finite")
    t = [float(v) for v in found["transition"]]
    transition = Transition((t[0], t[1]), (t[2], t[3]), t[4], t[5])
    products = ProductHistory(codes, found["mean"], found["cov"].astype(np.float64),
                              found["weeks_unseen"], found["weeks_seen"])
    return History(products, str(found["tranche_key"]), int(found["weeks"]), transition)


def read_state(store: Store, metadata: ModelMetadata) -> History:
    """Read and verify the state a published model's run left (its metadata verified).

    Raises:
        StateError: the model names no state, or it is missing, too large, not the bytes
            its metadata names, or unreadable; the message says which, and where.
    """
    section = metadata.history_section()
    if not section.state_key or not section.state_sha256:
        raise StateError(f"model {metadata.model_version} names no state")
    where = store.location(section.state_key)
    try:
        data = store.get_bytes(section.state_key, max_bytes=Settings().max_state_bytes)
    except ObjectTooLargeError as exc:
        raise StateError(f"{exc} (TTD_MAX_STATE_BYTES)") from exc
    except StoreError as exc:
        raise StateError(f"{where} cannot be read: {exc}") from exc
    if sha256(data) != section.state_sha256:
        raise StateError(f"{where}: SHA-256 differs from model {metadata.model_version}'s "
                         "metadata; the state was altered or corrupted")
    try:
        return parse_state(data)
    except ValueError as exc:
        raise StateError(f"{where}: {exc}") from exc


def state_section(written: Optional[Written], started_from: Optional[str], began: str,
                  history: History, extra: Dict[str, Any]) -> Dict[str, Any]:
    """Return the metadata's `history`: the state written, the one the run started from
    (lineage) or how it began without one, and how many weeks inform the model."""
    return HistorySection(
        state_key=written.key if written else None,
        state_sha256=written.sha256 if written else None,
        started_from=started_from, began=began, weeks=history.weeks,
        transition=history.transition.section(), products=len(history.products.codes),
        **extra,
    ).model_dump(exclude_none=True)
