"""Serve time-to-dispatch estimates over HTTP from the newest verified model.

Steps:
1. At start-up, check the port is free, then load the newest published model that verifies
   (or the pinned one; exit non-zero if none), warning when it is not the newest published.
2. Answer POST /api/v0.1/time_to_dispatch (one order) and .../batch (up to 10,000): validate
   the request, estimate, respond with the model version that answered, and, when asked for
   a promise_probability, the promise calibrated at training. Unknown products and bad
   fields get a 422 naming the field (and the order's index in a batch); so does a promise
   asked of a model trained before promises. Valid requests
   take a fast path (pipeline/service/fast_path.py); the routes (service/routes/) define every
   refusal.
3. Answer GET /health (process alive) and GET /ready (model loaded) for Kubernetes probes,
   GET /api/v0.1/model (the model served) for clients and operators, and /docs from assets
   the service serves itself (no CDN). GET /metrics (Prometheus) is answered on a port of its
   own (--metrics-port), which the ingress in front of --port never reaches. Pages of the
   origins in TTD_CORS_ORIGINS (the platform UI) may call the API from a browser (CORS).
"""
import errno
import signal
import socket
import sys
from types import FrameType
from typing import Any, Dict, List, Optional, Sequence

from pipeline.cli import add_store_argument, build_parser, exit_on_failure, stage_settings
from pipeline.logs import LOG_FORMAT, configure_logger
from pipeline.registry.published import (
    MODELS_PREFIX,
    LoadedModel,
    ModelVerificationError,
    load_newest_model,
    load_pinned_model,
    published_versions,
)
from pipeline.registry.store import Store, open_store
from pipeline.service.app import create_app
from pipeline.service.server.limits import HttpLimits, Parser
from pipeline.service.server.serve import serve
from pipeline.service.metrics import start_metrics_server

log = configure_logger(__name__)

METRICS_PORT_OPTION = "--metrics-port N (TTD_METRICS_PORT=N; 0 serves no metrics)"
SHOWN_VERSIONS = 5


class PortInUseError(Exception):
    """The port cannot be listened on; the message says how to choose another."""


def uvicorn_log_config() -> Dict[str, Any]:
    """Make uvicorn's own lines (start-up, access) and asyncio's look like the pipeline's, and
    rate-limit the ones an attacker can repeat (a line per failed accept or bad request)."""
    config: Dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"format": LOG_FORMAT}},
        "filters": {"repeats": {"()": "pipeline.service.log_filter.RepeatFilter"}},
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
    cors_origins: Sequence[str] = (),
) -> None:
    """Load the newest verified model (or the pinned one), then serve it until stopped.

    With `metrics_port` (not 0), /metrics is served on that port, not on `port`; pages of
    `cors_origins` may call the API from a browser.
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
    serve(app, host, port, http_limits, http_parser, uvicorn_log_config(), access_log,
          cors_origins)


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
            settings.cors_origins,
        )
