"""The service's FastAPI app, assembled: the model loaded at start-up, the routes by
resource, the middleware in front of them, and every refusal in one JSON shape.

Valid estimate requests are answered by the fast path, the outermost middleware
(fast_path.py); the routes stay the contract (OpenAPI, /docs) and define every refusal.
"""
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Optional

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException

from pipeline.logs import configure_logger
from pipeline.registry.published import LoadedModel
from pipeline.service.api_schema import API_PATH, BATCH_PATH, MODEL_PATH
from pipeline.service.fast_path import EstimateFastPath
from pipeline.service.metrics import MetricsMiddleware, ServiceMetrics
from pipeline.service.middleware.request_guard import (
    MAX_BATCH_BODY_BYTES,
    MAX_BODY_BYTES,
    RequestGuard,
)
from pipeline.service.refusals import http_error_response, validation_error_response
from pipeline.service.routes import estimates, health, model
from pipeline.service.served import Served

log = configure_logger(__name__)

BODY_LIMITS = {API_PATH: MAX_BODY_BYTES, BATCH_PATH: MAX_BATCH_BODY_BYTES}
DOCS_ASSETS = "/docs-assets"
__all__ = ["API_PATH", "BATCH_PATH", "BODY_LIMITS", "MODEL_PATH", "create_app"]


def create_app(
    load_model: Callable[[], LoadedModel],
    newest_published: Optional[str] = None,
    pinned: bool = False,
) -> FastAPI:
    """Build the service; `load_model` runs once at start-up and its result is served.

    `newest_published` is the newest version in the store (None: the one loaded), and
    `pinned` says the version was chosen by the operator: both only describe the model.
    """
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loaded = load_model()
        app.state.loaded = loaded
        app.state.model_info = model.model_info(loaded, newest_published, pinned)
        app.state.served = Served(loaded)
        metrics.set_model(loaded.metadata, app.state.model_info.serving_newest)
        log.info(f"Serving model {loaded.metadata.model_version}")
        yield

    # FastAPIOffline serves Swagger UI's and ReDoc's JS and CSS itself: /docs works with no
    # internet access (a cluster without egress, a laptop on a train).
    app = FastAPIOffline(
        title="time-to-dispatch",
        description="Estimated hours until an order is dispatched, by product and queue.",
        version="0.1",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
    )
    app.state.metrics = metrics
    for router in (estimates.router, model.router, health.router):
        app.include_router(router)
    app.add_exception_handler(RequestValidationError, validation_error_response)
    app.add_exception_handler(HTTPException, http_error_response)
    app.add_middleware(RequestGuard, limits=BODY_LIMITS)
    # Added after the guard, so outside it: it also counts what the guard refuses.
    app.add_middleware(MetricsMiddleware, metrics=metrics, guarded_paths=tuple(BODY_LIMITS))
    # Outermost: valid estimate requests are answered before any other middleware runs;
    # it counts its own answers, and hands everything else to the layers above.
    app.add_middleware(
        EstimateFastPath, single_path=API_PATH, batch_path=BATCH_PATH, limits=BODY_LIMITS,
        state=app.state, metrics=metrics,
    )
    # No /metrics route here: the metrics are served on a port of their own
    # (start_metrics_server), which the cluster's ingress never routes to.
    return app
