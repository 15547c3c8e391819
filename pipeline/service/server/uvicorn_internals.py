"""The uvicorn internals the server relies on: the one module that names any.

uvicorn's public API (uvicorn.run, Config, Server) takes the protocol of each connection as
`http=`, but gives no hook for what a connection does when the server shuts down gracefully,
nor for the answer to a request its parser cannot read. What the server uses beyond it, and
why:

- `uvicorn.protocols.http.h11_impl.H11Protocol` and
  `uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`: the classes behind `http="h11"`
  and `http="httptools"`. The server's protocol wraps one per connection, to see the
  connection before it and its bytes before the parser, so it needs the class itself.
- How uvicorn makes a connection's protocol: it calls what `http=` names with keyword
  arguments of its own (config, server_state, app_state, _loop). The server's protocol takes
  them unread and hands them to the wrapped class, so `http=` may be a callable that binds
  the server's shared state first (`protocol_factory`).
- `shutdown()` (SHUTDOWN): what uvicorn's Server.shutdown calls on every open connection's
  protocol on SIGTERM; uvicorn's own closes an idle keep-alive connection at once, while a
  request may be on its way to it. It is replaced, on each wrapped protocol, by the drain.
- `send_400_response(msg)` (REFUSE_UNREADABLE): what both protocols call to refuse a request
  their parser cannot read, in plain text; replaced by the API's JSON 400.
- `app` (APP): the ASGI app a protocol runs each request of its connection with (set from
  the config when it is made, read at each request's headers). Wrapped, per connection, by
  middleware.connection_state.ConnectionState bound to that connection's guard: the ASGI
  layer has no public way to tell which connection a request came on. (A context variable
  set around `data_received` does not reach the request's task: uvicorn 0.39 starts every
  ASGI task in an empty context; so does a later one with `reset_contextvars`. Matching
  `scope["client"]` to the connection's peer fails once the proxy headers rewrite it.)

tests/unit/service/server/test_uvicorn_internals.py checks each of these on the uvicorn
installed; requirements_pipe.txt pins uvicorn to the releases those tests have passed on, and
`check_internals` refuses to start on a uvicorn that lacks a name.
"""
import asyncio
import functools
from typing import Any, Awaitable, Callable, Type, cast

import uvicorn

from pipeline.service.server.limits import Parser

SHUTDOWN = "shutdown"
REFUSE_UNREADABLE = "send_400_response"
APP = "app"
ProtocolClass = Callable[..., asyncio.Protocol]
ASGIApp = Callable[..., Awaitable[None]]


def wrapped_protocol_class(parser: Parser) -> ProtocolClass:
    """Return uvicorn's protocol class for `parser` (httptools is imported only if asked for)."""
    if parser == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    return HttpToolsProtocol


def check_internals(parser: Parser) -> None:
    """Refuse to start, naming the release, on a uvicorn whose protocol lacks a method the
    server replaces (its shutdown would close idle connections at once, its 400 be text)."""
    wrapped = wrapped_protocol_class(parser)
    missing = [name for name in (SHUTDOWN, REFUSE_UNREADABLE)
               if not callable(getattr(wrapped, name, None))]
    if missing:
        raise RuntimeError(
            f"uvicorn {uvicorn.__version__}: {getattr(wrapped, '__name__', wrapped)} has no "
            f"{', '.join(missing)}; install the uvicorn release requirements_pipe.txt names"
        )


def on_shutdown(protocol: asyncio.Protocol, drain: Callable[[], None]) -> None:
    """Have uvicorn's graceful shutdown call `drain` for this connection, not close it."""
    setattr(protocol, SHUTDOWN, drain)


def on_unreadable(protocol: asyncio.Protocol, refuse: Callable[[str], None]) -> None:
    """Have `refuse` answer a request the parser cannot read, not uvicorn's text 400."""
    setattr(protocol, REFUSE_UNREADABLE, refuse)


def wrap_app(protocol: asyncio.Protocol, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
    """Have this connection's requests run the app uvicorn gave it wrapped with `wrap`."""
    app = getattr(protocol, APP, None)
    if app is None:
        raise RuntimeError(f"uvicorn {uvicorn.__version__}: its HTTP protocol has no `{APP}`; "
                           "install the uvicorn release requirements_pipe.txt names")
    setattr(protocol, APP, wrap(app))


def protocol_factory(protocol: Callable[..., asyncio.Protocol], *bound: Any) -> Type[
    asyncio.Protocol
]:
    """Return what `http=` takes: `protocol` with `bound` as its first arguments, to be
    called by uvicorn with its own (it calls `http=`, never inspects it as a class)."""
    return cast(Type[asyncio.Protocol], functools.partial(protocol, *bound))
