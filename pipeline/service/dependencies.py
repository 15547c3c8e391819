"""What the routes take from the app: the model served, once it is loaded (503 before).

Async, so that FastAPI runs them on the event loop, not in its thread pool."""
from fastapi import Depends, Request
from starlette.exceptions import HTTPException
from typing import Annotated

from pipeline.registry.published import LoadedModel
from pipeline.service.metrics import ServiceMetrics
from pipeline.service.served import Served, current


async def served_model(request: Request) -> Served:
    served = current(request.app.state)
    if served is None:
        raise HTTPException(503, "no model loaded yet")
    return served


async def loaded_model(request: Request) -> LoadedModel:
    await served_model(request)
    loaded: LoadedModel = request.app.state.loaded
    return loaded


async def service_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


ServedDep = Annotated[Served, Depends(served_model)]
LoadedDep = Annotated[LoadedModel, Depends(loaded_model)]
MetricsDep = Annotated[ServiceMetrics, Depends(service_metrics)]
