"""The service's FastAPI app: its routes, the refusals they define, and what they answer with.

Valid estimate requests are answered by the fast path in front of the routes
(estimate_endpoints.py); the routes stay the contract (OpenAPI, /docs) and define every
refusal, in one JSON shape.
"""
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from typing_extensions import Annotated

from pipeline.artifact.product_codes import ProductCodes
from pipeline.logs import configure_logger
from pipeline.registry.models import LoadedModel
from pipeline.service.api_schema import (
    ERROR_RESPONSES,
    BatchEstimates,
    BatchRequest,
    DispatchEstimate,
    DispatchRequest,
    ModelComparison,
    ModelInfo,
    Readiness,
)
from pipeline.service.estimate_endpoints import EstimateFastPath, Served, served
from pipeline.service.middleware.request_guard import (
    MAX_BATCH_BODY_BYTES,
    MAX_BODY_BYTES,
    RequestGuard,
)
from pipeline.service.metrics import MetricsMiddleware, ServiceMetrics, refusal_reason

log = configure_logger(__name__)

API_PATH = "/api/v0.1/time_to_dispatch"
BATCH_PATH = "/api/v0.1/time_to_dispatch/batch"
BODY_LIMITS = {API_PATH: MAX_BODY_BYTES, BATCH_PATH: MAX_BATCH_BODY_BYTES}
MODEL_PATH = "/api/v0.1/model"
DOCS_ASSETS = "/docs-assets"


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
        r2=metadata.metrics.get("r2"),
        mae=metadata.metrics.get("mae"),
        promise_coverage=metadata.metrics.get("promise_coverage"),
        comparison=comparison,
        signed=bool(metadata.signature),
        pinned=pinned,
        newest_published=newest_published or metadata.model_version,
        serving_newest=newest_published in (None, metadata.model_version),
    )


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
        app.state.dropped = loaded.model.catalogue.dropped
        app.state.carry_weeks = loaded.metadata.catalogue_section().max_carry_weeks
        app.state.model_info = model_info(loaded, newest_published, pinned)
        app.state.served = served(loaded.model, loaded.metadata.model_version, loaded.promise)
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
    app.add_middleware(RequestGuard, limits=BODY_LIMITS)
    # Added after the guard, so outside it: it also counts what the guard refuses.
    app.add_middleware(MetricsMiddleware, metrics=metrics, guarded_paths=tuple(BODY_LIMITS))
    # Outermost: valid estimate requests are answered before any other middleware runs;
    # it counts its own answers, and hands everything else to the layers above.
    app.add_middleware(
        EstimateFastPath, single_path=API_PATH, batch_path=BATCH_PATH, limits=BODY_LIMITS,
        state=app.state, metrics=metrics,
    )
    app.add_exception_handler(RequestValidationError, validation_error_response)
    app.add_exception_handler(StarletteHTTPException, http_error_response)

    async def loaded_model(request: Request) -> LoadedModel:
        loaded: Optional[LoadedModel] = getattr(request.app.state, "loaded", None)
        if loaded is None:
            raise StarletteHTTPException(503, "no model loaded yet")
        return loaded

    ModelDep = Annotated[LoadedModel, Depends(loaded_model)]

    def unknown_products(
        request: Request, codes: Sequence[Tuple[Tuple[Any, ...], str]]
    ) -> RequestValidationError:
        """Refuse unknown products, each at its `loc`, saying if it was dropped or never seen."""
        return RequestValidationError(
            [unknown_product(request, loc, code) for loc, code in codes]
        )

    def unknown_product(request: Request, loc: Tuple[Any, ...], code: str) -> Dict[str, Any]:
        """Say whether an unknown product was never ordered or has been dropped."""
        dropped: Optional[ProductCodes] = getattr(request.app.state, "dropped", None)
        if dropped is not None and dropped.find(code) >= 0:
            weeks = getattr(request.app.state, "carry_weeks", None)
            msg = (
                f"product code {code!r} has been dropped: it had no orders in the last "
                f"{weeks or 'few'} weekly tranche(s), so its estimate was retired"
            )
            kind = "dropped_product_code"
        else:
            msg = (
                f"unknown product code {code!r}: never seen in any tranche the model "
                "learned from"
            )
            kind = "unknown_product_code"
        return {"loc": loc, "msg": msg, "type": kind, "input": code}

    def require_promises(current: Served, probability: Optional[float]) -> None:
        """Refuse a promise asked of a model trained before promises were calibrated."""
        if probability is None or current.promises is not None:
            return
        raise RequestValidationError([{
            "loc": ("body", "promise_probability"),
            "msg": "the model served has no calibrated promises (it was trained before they "
            "existed); ask without promise_probability, or retrain",
            "type": "promise_unavailable",
            "input": probability,
        }])

    # Absent fields stay absent: without promise_probability the answer is the two keys.
    @app.post(API_PATH, response_model=DispatchEstimate, responses=ERROR_RESPONSES,
              response_model_exclude_none=True)
    async def time_to_dispatch(
        body: DispatchRequest, loaded: ModelDep, request: Request
    ) -> DispatchEstimate:
        """Estimate the hours until an order of this product is dispatched, and promise them."""
        current: Served = request.app.state.served
        position = current.lines.position(body.product_code)
        if position < 0:
            raise unknown_products(request, [(("body", "product_code"), body.product_code)])
        probability = body.promise_probability
        require_promises(current, probability)
        hours = current.lines.estimate_one(position, body.orders_placed)
        metrics.estimate(hours, body.orders_placed)
        promise = None if probability is None else current.promise_one(
            position, body.orders_placed, probability
        )
        return DispatchEstimate(  # the promise's fields, None, are left out
            est_hours_to_dispatch=hours, model_version=current.model_version,
            promise_hours_to_dispatch=promise, promise_probability=probability,
        )

    @app.post(BATCH_PATH, response_model=BatchEstimates, responses=ERROR_RESPONSES,
              response_model_exclude_none=True)
    async def time_to_dispatch_batch(
        body: BatchRequest, loaded: ModelDep, request: Request
    ) -> BatchEstimates:
        """Estimate many orders at once, in order; one bad order refuses the whole batch."""
        current: Served = request.app.state.served
        codes = [order.product_code for order in body.orders]
        positions = current.lines.positions(codes)
        if (positions < 0).any():
            unknown = [(int(i), codes[i]) for i in np.flatnonzero(positions < 0)]
            raise unknown_products(
                request, [(("body", "orders", i, "product_code"), code) for i, code in unknown]
            )
        probability = body.promise_probability
        require_promises(current, probability)
        orders_placed = np.array([order.orders_placed for order in body.orders], dtype=float)
        hours = current.lines.estimate_many(positions, orders_placed)
        metrics.estimate_many(hours, orders_placed)
        promises = None if probability is None else current.promise_many(
            positions, orders_placed, probability
        ).tolist()
        return BatchEstimates(
            model_version=current.model_version, estimates=hours.tolist(), promises=promises,
            promise_probability=probability,
        )

    @app.get("/health")
    async def health() -> Dict[str, str]:
        """Say the process is alive (liveness probe)."""
        return {"status": "ok"}

    @app.get("/ready", response_model=Readiness)
    async def ready(loaded: ModelDep) -> Readiness:
        """Say a model is loaded, and which (readiness probe)."""
        return Readiness(status="ready", model_version=loaded.metadata.model_version)

    @app.get(MODEL_PATH, response_model=ModelInfo)
    async def served_model(loaded: ModelDep, request: Request) -> ModelInfo:
        """Describe the model served: version, tranche, held-out scores, champion comparison."""
        info: ModelInfo = request.app.state.model_info
        return info

    # No /metrics route here: the metrics are served on a port of their own
    # (start_metrics_server), which the cluster's ingress never routes to.
    return app


async def validation_error_response(request: Request, exc: Exception) -> JSONResponse:
    """Say which field is wrong and why, without echoing the input back.

    FastAPI's default echoes the input, which fails to render for NaN or a lone surrogate
    (a 500) and would send a megabyte product code back to its sender.
    """
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    _count_refusal(request, refusal_reason(str(errors[0].get("type", ""))) if errors else "other")
    detail = [
        {
            "loc": list(error.get("loc", ("body",))),
            "msg": "request body is not valid JSON"
            if error.get("type") == "json_invalid"
            else str(error.get("msg", "invalid")),
            "type": str(error.get("type", "invalid")),
        }
        for error in errors
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


async def http_error_response(request: Request, exc: Exception) -> JSONResponse:
    """Give every other refusal (400, 404, 405) the same shape as a 422."""
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    message = str(exc.detail) if isinstance(exc, StarletteHTTPException) else "error"
    if status == 400:
        message = "request body is not readable: send UTF-8 JSON"
        _count_refusal(request, "unreadable_body")
    return JSONResponse(
        status_code=status,
        content={"detail": [{"loc": ["request"], "msg": message, "type": f"http_{status}"}]},
        headers=getattr(exc, "headers", None),
    )


def _count_refusal(request: Request, reason: str) -> None:
    metrics: Optional[ServiceMetrics] = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.refuse(reason)
