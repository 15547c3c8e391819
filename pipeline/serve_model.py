"""Serve time-to-dispatch estimates over HTTP from the newest verified model.

Steps:
1. At start-up, load the newest published model that verifies (exit non-zero if none).
2. Answer POST /api/v0.1/time_to_dispatch: validate the request, estimate, respond with the
   model version that answered. Unknown products and bad fields get a 422 naming the field.
3. Answer GET /health (process alive) and GET /ready (model loaded) for Kubernetes probes.
"""
import argparse
import signal
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any, AsyncIterator, Callable, Dict, Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from typing_extensions import Annotated

from pipeline.api_schema import ERROR_RESPONSES, DispatchEstimate, DispatchRequest, Readiness
from pipeline.cli import add_store_argument, exit_on_failure
from pipeline.http_guards import MAX_BODY_BYTES, RequestGuard
from pipeline.http_server import HttpLimits, Parser, serve
from pipeline.logs import LOG_FORMAT, configure_logger
from pipeline.registry import (
    LoadedModel,
    load_newest_model,
    load_pinned_model,
    metadata_extra,
)
from pipeline.settings import Settings
from pipeline.store import open_store

log = configure_logger(__name__)

API_PATH = "/api/v0.1/time_to_dispatch"


def create_app(load_model: Callable[[], LoadedModel]) -> FastAPI:
    """Build the service; `load_model` runs once at start-up and its result is served."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.loaded = load_model()
        catalogue = metadata_extra(app.state.loaded.metadata, "catalogue") or {}
        app.state.dropped = frozenset(catalogue.get("dropped", ()))
        app.state.carry_weeks = catalogue.get("max_carry_weeks")
        log.info(f"Serving model {app.state.loaded.metadata.model_version}")
        yield

    app = FastAPI(
        title="time-to-dispatch",
        description="Estimated hours until an order is dispatched, by product and queue.",
        version="0.1",
        lifespan=lifespan,
    )
    app.add_middleware(RequestGuard, paths=(API_PATH,), max_bytes=MAX_BODY_BYTES)
    app.add_exception_handler(RequestValidationError, validation_error_response)
    app.add_exception_handler(StarletteHTTPException, http_error_response)

    def loaded_model(request: Request) -> LoadedModel:
        loaded: Optional[LoadedModel] = getattr(request.app.state, "loaded", None)
        if loaded is None:
            raise StarletteHTTPException(503, "no model loaded yet")
        return loaded

    ModelDep = Annotated[LoadedModel, Depends(loaded_model)]

    def unknown_product(request: Request, code: str) -> RequestValidationError:
        """Say whether an unknown product was never ordered or has been dropped."""
        if code in getattr(request.app.state, "dropped", frozenset()):
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
        return RequestValidationError(
            [{"loc": ("body", "product_code"), "msg": msg, "type": kind, "input": code}]
        )

    @app.post(API_PATH, response_model=DispatchEstimate, responses=ERROR_RESPONSES)
    def time_to_dispatch(
        body: DispatchRequest, loaded: ModelDep, request: Request
    ) -> DispatchEstimate:
        """Estimate the hours until an order of this product is dispatched."""
        if not loaded.model.knows(body.product_code):
            raise unknown_product(request, body.product_code)
        hours = loaded.model.predict_one(body.product_code, body.orders_placed)
        return DispatchEstimate(
            est_hours_to_dispatch=round(hours, 3),
            model_version=loaded.metadata.model_version,
        )

    @app.get("/health")
    def health() -> Dict[str, str]:
        """Say the process is alive (liveness probe)."""
        return {"status": "ok"}

    @app.get("/ready", response_model=Readiness)
    def ready(loaded: ModelDep) -> Readiness:
        """Say a model is loaded, and which (readiness probe)."""
        return Readiness(status="ready", model_version=loaded.metadata.model_version)

    return app


async def validation_error_response(request: Request, exc: Exception) -> JSONResponse:
    """Say which field is wrong and why, without echoing the input back.

    FastAPI's default echoes the input, which fails to render for NaN or a lone surrogate
    (a 500) and would send a megabyte product code back to its sender.
    """
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
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
    return JSONResponse(
        status_code=status,
        content={"detail": [{"loc": ["request"], "msg": message, "type": f"http_{status}"}]},
        headers=getattr(exc, "headers", None),
    )


def uvicorn_log_config() -> Dict[str, Any]:
    """Make uvicorn's own lines (start-up, access) and asyncio's look like the pipeline's, and
    rate-limit the ones an attacker can repeat (a line per failed accept or bad request)."""
    config: Dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"format": LOG_FORMAT}},
        "filters": {"repeats": {"()": "pipeline.http_server.RepeatFilter"}},
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


def main(
    store_uri: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    signing_key: Optional[bytes] = None,
    model_version: Optional[str] = None,
    http_limits: HttpLimits = HttpLimits(),
    http_parser: Parser = "h11",
) -> None:
    """Load the newest verified model (or the pinned one), then serve it until stopped."""
    log.info("Starting serve-model stage.")
    store = open_store(store_uri)
    # Fail here, before binding the port, so a missing model is one clear line and exit 1.
    if model_version:
        log.info(f"Model pinned to version {model_version}")
        loaded = load_pinned_model(store, model_version, signing_key)
    else:
        loaded = load_newest_model(store, signing_key)
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to whatever
    # handler was there before it: with this one, the process ends normally with exit code 0.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _note_stop_signal)
    serve(create_app(lambda: loaded), host, port, http_limits, http_parser, uvicorn_log_config())


def _note_stop_signal(signum: int, frame: Optional[FrameType]) -> None:
    log.info(f"Stopped by {signal.Signals(signum).name}; in-flight requests were completed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    settings = Settings()
    add_store_argument(parser, settings)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 inside a container")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--model-version",
        default=settings.model_version,
        help="serve this published version instead of the newest (a rollback; $TTD_MODEL_VERSION)",
    )
    args = parser.parse_args()
    with exit_on_failure(log, settings):
        main(
            args.store,
            args.host,
            args.port,
            settings.signing_key_bytes(),
            args.model_version,
            HttpLimits.from_settings(settings),
            settings.http_parser,
        )
