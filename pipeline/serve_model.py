"""Serve time-to-dispatch estimates over HTTP from the newest verified model.

Steps:
1. At start-up, check the port is free, then load the newest published model that verifies
   (or the pinned one; exit non-zero if none), warning when it is not the newest published.
2. Answer POST /api/v0.1/time_to_dispatch (one order) and .../batch (up to 10,000): validate
   the request, estimate, respond with the model version that answered, and, when asked for
   a promise_probability, the promise calibrated at training. Unknown products and bad
   fields get a 422 naming the field (and the order's index in a batch); so does a promise
   asked of a model trained before promises. Valid requests
   take a fast path (pipeline/service/estimate_endpoints.py); the routes here define every refusal.
3. Answer GET /health (process alive) and GET /ready (model loaded) for Kubernetes probes,
   GET /api/v0.1/model (the model served) for clients and operators, and /docs from assets
   the service serves itself (no CDN). GET /metrics (Prometheus) is answered on a port of its
   own (--metrics-port), which the ingress in front of --port never reaches.
"""
import errno
import signal
import socket
import sys
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from typing_extensions import Annotated

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
from pipeline.cli import add_store_argument, build_parser, exit_on_failure, stage_settings
from pipeline.service.estimate_endpoints import EstimateFastPath, Served, served
from pipeline.service.http_guards import MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES, RequestGuard
from pipeline.service.http_server import HttpLimits, Parser, serve
from pipeline.logs import LOG_FORMAT, configure_logger
from pipeline.service.metrics import (
    MetricsMiddleware,
    ServiceMetrics,
    refusal_reason,
    start_metrics_server,
)
from pipeline.registry.models import (
    MODELS_PREFIX,
    LoadedModel,
    ModelVerificationError,
    load_newest_model,
    load_pinned_model,
    metadata_extra,
    published_versions,
)
from pipeline.artifact.product_codes import ProductCodes
from pipeline.registry.store import Store, open_store

log = configure_logger(__name__)

API_PATH = "/api/v0.1/time_to_dispatch"
BATCH_PATH = "/api/v0.1/time_to_dispatch/batch"
BODY_LIMITS = {API_PATH: MAX_BODY_BYTES, BATCH_PATH: MAX_BATCH_BODY_BYTES}
MODEL_PATH = "/api/v0.1/model"
METRICS_PORT_OPTION = "--metrics-port N (TTD_METRICS_PORT=N; 0 serves no metrics)"
DOCS_ASSETS = "/docs-assets"
SHOWN_VERSIONS = 5


class PortInUseError(Exception):
    """The port cannot be listened on; the message says how to choose another."""


def model_info(loaded: LoadedModel, newest_published: Optional[str], pinned: bool) -> ModelInfo:
    """Describe the model served, from its metadata, for operators and the review."""
    metadata = loaded.metadata
    raw = metadata_extra(metadata, "comparison")
    comparison: Optional[ModelComparison] = None
    try:
        comparison = ModelComparison.model_validate(raw) if raw else None
    except ValidationError:  # a description must never stop the service
        log.warning(f"model {metadata.model_version}: its comparison is unreadable, not shown")
    return ModelInfo(
        model_version=metadata.model_version,
        created_at=metadata.created_at,
        tranche=metadata.dataset.get("key"),
        rows=metadata.dataset.get("rows_used"),
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
        catalogue = metadata_extra(loaded.metadata, "catalogue") or {}
        app.state.dropped = loaded.model.catalogue.dropped
        app.state.carry_weeks = catalogue.get("max_carry_weeks")
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

    def no_promises(loc: Tuple[Any, ...], probability: float) -> RequestValidationError:
        """Refuse a promise asked of a model trained before promises were calibrated."""
        return RequestValidationError([{
            "loc": loc,
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
        if probability is not None and current.promises is None:
            raise no_promises(("body", "promise_probability"), probability)
        hours = current.lines.estimate_one(position, body.orders_placed)
        metrics.estimate(hours, body.orders_placed)
        if probability is None:
            return DispatchEstimate(
                est_hours_to_dispatch=hours, model_version=current.model_version
            )
        return DispatchEstimate(
            est_hours_to_dispatch=hours,
            model_version=current.model_version,
            promise_hours_to_dispatch=current.promise_one(
                position, body.orders_placed, probability
            ),
            promise_probability=probability,
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
        if probability is not None and current.promises is None:
            raise no_promises(("body", "promise_probability"), probability)
        orders_placed = np.array([order.orders_placed for order in body.orders], dtype=float)
        hours = current.lines.estimate_many(positions, orders_placed)
        metrics.estimate_many(hours, orders_placed)
        if probability is None:
            return BatchEstimates(model_version=current.model_version, estimates=hours.tolist())
        return BatchEstimates(
            model_version=current.model_version,
            estimates=hours.tolist(),
            promises=current.promise_many(positions, orders_placed, probability).tolist(),
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


def uvicorn_log_config() -> Dict[str, Any]:
    """Make uvicorn's own lines (start-up, access) and asyncio's look like the pipeline's, and
    rate-limit the ones an attacker can repeat (a line per failed accept or bad request)."""
    config: Dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"format": LOG_FORMAT}},
        "filters": {"repeats": {"()": "pipeline.service.http_server.RepeatFilter"}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.access": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO", "filters": ["repeats"]},
            "asyncio": {
                "handlers": ["default"],
                "level": "WARNING",
                "propagate": False,
                "filters": ["repeats"],
            },
        },
    }
    return config


def check_port_free(host: str, port: int, option: str = "--port N (make run PORT=N)") -> None:
    """Fail now, in one line, if the port is taken, rather than after loading a model.

    Binds as uvicorn does (SO_REUSEADDR), so a port in TIME_WAIT is not reported as taken.
    `option` is how the operator chooses another.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"port {port} on {host} is already in use by another process: stop it, or "
                    f"choose another port with {option}"
                ) from exc
            raise PortInUseError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from exc


def unknown_version_error(store: Store, version: str, versions: List[str]) -> Exception:
    """Say a pinned version is not published, listing the newest that are."""
    where = store.location(MODELS_PREFIX)
    if not versions:
        return ModelVerificationError(
            f"model version {version!r} is not published in {where}: no model is"
        )
    shown = ", ".join(versions[:SHOWN_VERSIONS])
    older = len(versions) - SHOWN_VERSIONS
    more = f" (and {older} older)" if older > 0 else ""
    return ModelVerificationError(
        f"model version {version!r} is not published in {where}; newest first: {shown}{more}"
    )


def warn_about_served_model(
    loaded: LoadedModel, newest: Optional[str], pinned: bool, signing_key: Optional[bytes]
) -> None:
    """Say loudly when the model served is not the newest published, or goes unchecked."""
    version = loaded.metadata.model_version
    if newest is not None and newest != version:
        why = (
            "pinned with --model-version/TTD_MODEL_VERSION"
            if pinned
            else "the newer one(s) failed verification: see the warnings above"
        )
        log.warning(f"serving model {version}, not the newest published, {newest}: {why}")
    if signing_key is None and loaded.metadata.signature:
        log.warning(
            f"model {version} is signed but TTD_SIGNING_KEY is not set: signatures go "
            "unchecked (only the SHA-256 is); set the key training uses"
        )


def main(
    store_uri: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    signing_key: Optional[bytes] = None,
    model_version: Optional[str] = None,
    http_limits: HttpLimits = HttpLimits(),
    http_parser: Parser = "httptools",
    access_log: bool = False,
    metrics_port: int = 0,
) -> None:
    """Load the newest verified model (or the pinned one), then serve it until stopped.

    With `metrics_port` (not 0), /metrics is served on that port, not on `port`.
    """
    log.info("Starting serve-model stage.")
    check_port_free(host, port)
    if metrics_port:
        check_port_free(host, metrics_port, METRICS_PORT_OPTION)
    store = open_store(store_uri)
    versions = published_versions(store)
    # Fail here, before binding the port, so a missing model is one clear line and exit 1.
    if model_version:
        if model_version not in versions:
            raise unknown_version_error(store, model_version, versions)
        log.info(f"Model pinned to version {model_version}")
        loaded = load_pinned_model(store, model_version, signing_key)
    else:
        loaded = load_newest_model(store, signing_key)
    newest = versions[0] if versions else None
    warn_about_served_model(loaded, newest, bool(model_version), signing_key)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to whatever
    # handler was there before it: with this one, the process ends normally with exit code 0.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _note_stop_signal)
    app = create_app(lambda: loaded, newest_published=newest, pinned=bool(model_version))
    if metrics_port:
        start_metrics_server(app.state.metrics, host, metrics_port)
        log.info(f"Metrics on http://{host}:{metrics_port}/metrics (not on port {port})")
    else:
        log.info("Metrics are not served: --metrics-port/TTD_METRICS_PORT is 0")
    serve(app, host, port, http_limits, http_parser, uvicorn_log_config(), access_log)


def _note_stop_signal(signum: int, frame: Optional[FrameType]) -> None:
    log.info(f"Stopped by {signal.Signals(signum).name}; in-flight requests were completed")


if __name__ == "__main__":
    parser = build_parser(__doc__.split("\n")[0])
    settings = stage_settings(log)
    add_store_argument(parser, settings)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 inside a container")
    parser.add_argument("--port", type=int, default=8000, help="the port to listen on")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=settings.metrics_port,
        help="serve /metrics on this port only, never on --port; 0: not at all "
        "($TTD_METRICS_PORT)",
    )
    parser.add_argument(
        "--model-version",
        default=settings.model_version,
        help="serve this published version instead of the newest (a rollback; $TTD_MODEL_VERSION)",
    )
    parser.add_argument(
        "--check-port",
        action="store_true",
        help="only check that the port is free, then exit (make run does, before training)",
    )
    args = parser.parse_args()
    with exit_on_failure(log, settings):
        if args.check_port:
            check_port_free(args.host, args.port)
            if args.metrics_port:
                check_port_free(args.host, args.metrics_port, METRICS_PORT_OPTION)
            sys.exit(0)
        main(
            args.store,
            args.host,
            args.port,
            settings.signing_key_bytes(),
            args.model_version,
            HttpLimits.from_settings(settings),
            settings.http_parser,
            settings.access_log,
            args.metrics_port,
        )
