"""GET /api/v0.1/model: the model served, for clients and operators."""
from typing import Optional

from fastapi import APIRouter, Request
from pydantic import ValidationError

from pipeline.logs import configure_logger
from pipeline.registry.published import LoadedModel
from pipeline.service.api_schema import MODEL_PATH, ModelComparison, ModelInfo
from pipeline.service.dependencies import ServedDep

log = configure_logger(__name__)
router = APIRouter()


@router.get(MODEL_PATH, response_model=ModelInfo)
async def served_model(served: ServedDep, request: Request) -> ModelInfo:
    """Describe the model served: version, tranche, held-out scores, champion comparison."""
    info: ModelInfo = request.app.state.model_info
    return info


def model_info(loaded: LoadedModel, newest_published: Optional[str], pinned: bool) -> ModelInfo:
    """Describe the model served, from its metadata, for operators and the review."""
    metadata = loaded.metadata
    raw = metadata.extra("comparison")
    comparison: Optional[ModelComparison] = None
    try:
        comparison = ModelComparison.model_validate(raw) if raw else None
    except ValidationError:  # a description must never stop the service
        log.warning(f"model {metadata.model_version}: its comparison is unreadable, not shown")
    return ModelInfo(
        model_version=metadata.model_version,
        created_at=metadata.created_at,
        tranche=metadata.dataset_section().key,
        rows=metadata.dataset_section().rows_used,
        products=len(loaded.model),
        weeks=metadata.history_section().weeks,
        r2=metadata.metrics.get("r2"),
        mae=metadata.metrics.get("mae"),
        promise_coverage=metadata.metrics.get("promise_coverage"),
        comparison=comparison,
        signed=bool(metadata.signature),
        pinned=pinned,
        newest_published=newest_published or metadata.model_version,
        serving_newest=newest_published in (None, metadata.model_version),
    )
