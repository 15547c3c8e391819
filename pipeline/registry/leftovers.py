"""Remove what killed or failed runs left in the store, so that it cannot fill a small disk.

A run killed while writing leaves a hidden temporary file (`.tmp-*`, local stores only); a
run that died between writing an artifact or a state and its metadata leaves an object that
was never published. Both are removed once older than the longest a run may take
(TTD_LEFTOVER_MAX_AGE_HOURS), so a publication in progress in a concurrent run is never
disturbed. Published models (an artifact with its metadata) and datasets are never touched.
"""
import time
from typing import List, Optional

from pipeline.logs import configure_logger
from pipeline.registry.published import MODEL_STEM, MODELS_PREFIX
from pipeline.registry.states import STATE_SUFFIX
from pipeline.settings import Settings
from pipeline.registry.store import Store, StoredObject, StoreError
from pipeline.data.tranche import DATASETS_PREFIX

log = configure_logger(__name__)

TEMPORARY_PREFIX = ".tmp-"  # what LocalStore.put_new names its temporary files


def find_leftovers(objects: List[StoredObject], older_than: float) -> List[StoredObject]:
    """Return the temporary files and unpublished artifacts last modified before `older_than`."""
    keys = {obj.key for obj in objects}
    stem = MODELS_PREFIX + MODEL_STEM
    leftovers = []
    for obj in objects:
        name = obj.key.rsplit("/", 1)[-1]
        temporary = name.startswith(TEMPORARY_PREFIX)
        unpublished = obj.key.startswith(stem) and any(
            obj.key.endswith(suffix) and obj.key[: -len(suffix)] + ".json" not in keys
            for suffix in (".joblib", STATE_SUFFIX)
        )
        if (temporary or unpublished) and obj.modified < older_than:
            leftovers.append(obj)
    return leftovers


def remove_leftovers(
    store: Store, max_age_hours: Optional[float] = None, now: Optional[float] = None
) -> List[str]:
    """Remove leftovers older than `max_age_hours` (default TTD_LEFTOVER_MAX_AGE_HOURS), logging
    each; return their locations. Best effort: a failure is a warning, never a failed run."""
    if max_age_hours is None:
        max_age_hours = Settings().leftover_max_age_hours
    now = time.time() if now is None else now
    older_than = now - max_age_hours * 3600
    removed: List[str] = []
    try:
        objects = [
            obj
            for prefix in (DATASETS_PREFIX, MODELS_PREFIX)
            for obj in store.list_objects(prefix, hidden=True)
        ]
    except StoreError as exc:
        log.warning(f"cannot look for leftovers of failed runs: {exc}")
        return removed
    for obj in find_leftovers(objects, older_than):
        age_hours = (now - obj.modified) / 3600
        try:
            store.remove_leftover(obj.key)
        except StoreError as exc:
            log.warning(f"cannot remove leftover of a failed run: {exc}")
            continue
        removed.append(store.location(obj.key))
        log.info(
            f"Removed leftover of a failed run {store.location(obj.key)} "
            f"({obj.size:,} bytes, {age_hours:.1f} h old)"
        )
    return removed
