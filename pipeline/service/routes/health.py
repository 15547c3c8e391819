"""GET /health and /ready: Kubernetes' liveness and readiness probes."""
from typing import Dict

from fastapi import APIRouter

from pipeline.service.api_schema import Readiness
from pipeline.service.dependencies import ServedDep

router = APIRouter()


@router.get("/health")
async def health() -> Dict[str, str]:
    """Say the process is alive (liveness probe)."""
    return {"status": "ok"}


@router.get("/ready", response_model=Readiness)
async def ready(served: ServedDep) -> Readiness:
    """Say a model is loaded, and which (readiness probe)."""
    return Readiness(status="ready", model_version=served.model_version)
