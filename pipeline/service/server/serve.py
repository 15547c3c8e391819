"""Run the service over HTTP: uvicorn, through its public parameters, with limits that hold
against slow clients, floods and shutdowns.

uvicorn on its own holds a connection that sends half a request forever, accepts connections
until the process runs out of file descriptors (then asyncio logs a traceback per failed
accept), closes idle keep-alive connections at SIGTERM while a request may be on its way to
them, and answers a request its parser cannot read in plain text. So:

- each connection's protocol is uvicorn's own wrapped with a guard (protocol.py,
  connection_guard.py): read deadlines (408), the 16 KiB header limit (431), the connection
  cap that sheds the connection waiting longest for request headers (503 only when none
  is), the drain on SIGTERM, and the JSON 400;
- plain ASGI middlewares in front of the app (pipeline/service/middleware/): for each
  connection, its state as the ASGI layer sees it and `Connection: close` while draining;
  for all, CORS when origins are allowed (TTD_CORS_ORIGINS), the ambiguous-length 400 and
  the memory budget of request bodies (503);
- uvicorn's own parameters for the rest: the keep-alive timeout, the listen backlog, h11's
  buffer limit (above the guard's 431), the graceful shutdown's bound.

Repeated log lines (asyncio's failed accepts, uvicorn's warnings, the closures above) are
rate-limited (pipeline/service/log_filter.py), so an attack cannot flood the log.
"""
import importlib.util
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, cast

import uvicorn
from typing import Protocol

from pipeline.logs import configure_logger
from pipeline.service.middleware.asgi import ASGIApp
from pipeline.service.middleware.body_budget import BodyBudget, BodyBudgetGuard
from pipeline.service.middleware.cors import allow_origins
from pipeline.service.middleware.framing import AmbiguousLengthGuard
from pipeline.service.server.limits import MAX_HEADER_BYTES, HttpLimits, Parser
from pipeline.service.server.limits import fit_to_file_limit
from pipeline.service.server.overload import Overload
from pipeline.service.server.protocol import GuardedProtocol
from pipeline.service.server.uvicorn_internals import check_internals, protocol_factory
from pipeline.service.server.uvicorn_internals import wrapped_protocol_class

log = configure_logger(__name__)
# uvicorn's graceful shutdown waits this long at most for requests in flight after SIGTERM.
GRACEFUL_SHUTDOWN_SECONDS = 20


class OverloadMetrics(Protocol):
    """What the server reports to the app's metrics (pipeline.metrics.ServiceMetrics)."""

    def overloaded(self, reason: str) -> None: ...

    def watch_body_bytes(self, held: Callable[[], float]) -> None: ...


def overload_metrics(app: Any) -> Optional[OverloadMetrics]:
    """Return the app's metrics, if it has any that take the server's overload counts."""
    metrics = getattr(getattr(app, "state", None), "metrics", None)
    if hasattr(metrics, "overloaded") and hasattr(metrics, "watch_body_bytes"):
        return cast(OverloadMetrics, metrics)
    return None


def available(module: str) -> bool:
    """Say whether an optional accelerator (uvloop, httptools) can be imported."""
    return importlib.util.find_spec(module) is not None


def guarded_app(
    app: ASGIApp, budget: BodyBudget, metrics: Optional[OverloadMetrics],
    cors_origins: Sequence[str] = (),
) -> ASGIApp:
    """Put the server's middlewares in front of `app`: CORS for `cors_origins` (none: no CORS
    layer), the ambiguous-length 400, then the body budget (each connection's ConnectionState
    goes in front of them all, protocol.py).

    CORS is outermost so that the refusals of the guards behind it, and a 500 from
    Starlette's outermost layer, carry its headers too: a page can read them.
    """
    count = None if metrics is None else metrics.overloaded
    return allow_origins(AmbiguousLengthGuard(BodyBudgetGuard(app, budget, count)), cors_origins)


def serve(
    app: Any,
    host: str,
    port: int,
    limits: HttpLimits,
    parser: Parser,
    log_config: Dict[str, Any],
    access_log: bool = False,
    cors_origins: Sequence[str] = (),
) -> None:
    """Run uvicorn until SIGTERM or SIGINT, then drain; pages of `cors_origins` may call it.

    uvloop and httptools are requirements, but a hand-made environment may lack them: the
    service then runs on asyncio's loop and h11, and says so, rather than not starting.
    """
    loop = "uvloop" if available("uvloop") else "asyncio"
    if loop == "asyncio":
        log.warning("uvloop is not installed: running on asyncio's event loop (slower)")
    if parser == "httptools" and not available("httptools"):
        log.warning("httptools is not installed: parsing HTTP with h11 (slower)")
        parser = "h11"
    check_internals(parser)
    limits, backlog = fitted(limits)
    log.info(
        f"HTTP server: {parser} parser, {loop} event loop, access log "
        f"{'on' if access_log else 'off (TTD_ACCESS_LOG=1 turns it on)'}"
    )
    log.info(
        f"HTTP limits: headers within {limits.header_timeout:g} s, body within "
        f"{limits.body_timeout:g} s, keep-alive {limits.keep_alive_timeout} s, at most "
        f"{limits.max_connections} connections, drain grace {limits.drain_grace:g} s, "
        f"request bodies in memory at most {limits.body_budget / 2**20:g} MiB"
    )
    allowed = ", ".join(cors_origins) or "none (TTD_CORS_ORIGINS lists them)"
    log.info(f"CORS: the origins whose pages may call the API from a browser: {allowed}")
    metrics = overload_metrics(app)
    budget = BodyBudget(limits.body_budget)
    if metrics is not None:
        metrics.watch_body_bytes(lambda: float(budget.held))
    overload = Overload(limits, None if metrics is None else metrics.overloaded)
    uvicorn.run(
        guarded_app(app, budget, metrics, cors_origins),
        host=host,
        port=port,
        http=protocol_factory(GuardedProtocol, overload, wrapped_protocol_class(parser)),
        ws="none",  # no WebSocket route: an upgrade would leave the guarded protocol
        interface="asgi3",
        loop=loop,
        log_config=log_config,
        access_log=access_log,
        backlog=backlog,
        timeout_keep_alive=limits.keep_alive_timeout,
        # Above MAX_HEADER_BYTES, so that the 431 comes from the guard with either parser.
        h11_max_incomplete_event_size=2 * MAX_HEADER_BYTES,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def fitted(limits: HttpLimits) -> Tuple[HttpLimits, int]:
    """Return `limits` with the connection cap lowered, with a warning, to stay under the
    process's open-file limit, and the listen backlog that fits beside it."""
    max_connections, backlog = fit_to_file_limit(limits.max_connections)
    if max_connections < limits.max_connections:
        log.warning(
            f"Connection limit lowered from {limits.max_connections} to {max_connections} to "
            "stay under the process's open-file limit (ulimit -n)"
        )
    return limits._replace(max_connections=max_connections), backlog
