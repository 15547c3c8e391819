"""Each uvicorn internal that pipeline/service/server/uvicorn_internals.py names, checked on the
uvicorn installed, with a real uvicorn.Server on loopback: a release that changes one fails
here (requirements_pipe.txt pins uvicorn to the releases these tests have passed on)."""
import asyncio
import socket
from typing import Any, Awaitable, Callable, Dict, Tuple, TypeVar

import pytest
import uvicorn

from pipeline.service.server.limits import HttpLimits, Parser
from pipeline.service.server.overload import Overload
from pipeline.service.server.protocol import GuardedProtocol
from pipeline.service.server.responses import INVALID_REQUEST
from pipeline.service.server.uvicorn_internals import (
    check_internals,
    on_shutdown,
    protocol_factory,
    wrap_app,
    wrapped_protocol_class,
)

PARSERS = ["h11", "httptools"]
GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
T = TypeVar("T")
Client = Callable[[asyncio.StreamReader, asyncio.StreamWriter, uvicorn.Server], Awaitable[T]]


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Answer with the tag a wrapper in front of it gave the request, if any."""
    body = scope.get("tag", b"none")
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def guarded(parser: Parser) -> Any:
    return protocol_factory(GuardedProtocol, Overload(HttpLimits()), wrapped_protocol_class(parser))


def serve(http: Any, client: Client[T]) -> T:
    """Run a uvicorn.Server with `http=` on a socket of its own, and `client` against it."""

    async def run() -> T:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # connections wait in the backlog until the server accepts them
        config = uvicorn.Config(app, http=http, ws="none", lifespan="off", log_level="warning",
                                interface="asgi3", timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        try:
            reader, writer = await asyncio.open_connection(sock=socket.create_connection(
                sock.getsockname()))
            try:
                return await asyncio.wait_for(client(reader, writer, server), 10)
            finally:
                writer.close()
        finally:
            server.should_exit = True
            await serving

    return asyncio.run(run())


async def response(reader: asyncio.StreamReader) -> Tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = [line for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")]
    body = await reader.readexactly(int(length[0].split(b":")[1]))
    return head, body


@pytest.mark.parametrize("parser", PARSERS)
def test_the_protocol_classes_wrapped_are_uvicorns_for_its_http_setting(parser: Parser) -> None:
    config = uvicorn.Config(app, http=parser)
    config.load()
    assert config.http_protocol_class is wrapped_protocol_class(parser)
    check_internals(parser)  # and each has the methods the server replaces


@pytest.mark.parametrize("parser", PARSERS)
def test_uvicorn_calls_http_with_its_own_arguments_so_a_bound_protocol_serves(
    parser: Parser,
) -> None:
    async def one_request(reader: Any, writer: Any, server: Any) -> bytes:
        writer.write(GET)
        head, _ = await response(reader)
        return bytes(head)

    assert serve(guarded(parser), one_request).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("parser", PARSERS)
def test_uvicorns_graceful_shutdown_calls_shutdown_on_each_connections_protocol(
    parser: Parser,
) -> None:
    drained: Dict[str, asyncio.Event] = {}  # made in the server's event loop

    def protocol(**uvicorns: Any) -> asyncio.Protocol:
        made = wrapped_protocol_class(parser)(**uvicorns)
        on_shutdown(made, lambda: drained["event"].set())
        return made

    async def request_after_shutdown(reader: Any, writer: Any, server: Any) -> bytes:
        drained["event"] = asyncio.Event()
        writer.write(GET)
        await response(reader)
        server.should_exit = True
        await drained["event"].wait()
        writer.write(GET)  # uvicorn's own shutdown would have closed the idle connection
        head, _ = await response(reader)
        return bytes(head)

    assert serve(protocol, request_after_shutdown).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("parser", PARSERS)
def test_a_request_the_parser_cannot_read_is_refused_through_send_400_response(
    parser: Parser,
) -> None:
    async def garbage(reader: Any, writer: Any, server: Any) -> bytes:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        return bytes(await reader.read())  # until the server closes

    assert serve(guarded(parser), garbage) == INVALID_REQUEST


@pytest.mark.parametrize("parser", PARSERS)
def test_each_request_on_a_connection_runs_the_app_its_protocol_holds_as_app(
    parser: Parser,
) -> None:
    def tagged(inner: Any) -> Any:
        async def wrapper(scope: Any, receive: Any, send: Any) -> None:
            await inner({**scope, "tag": b"wrapped"}, receive, send)

        return wrapper

    def protocol(**uvicorns: Any) -> asyncio.Protocol:
        made = wrapped_protocol_class(parser)(**uvicorns)
        wrap_app(made, tagged)
        return made

    async def pipelined(reader: Any, writer: Any, server: Any) -> Tuple[bytes, bytes]:
        writer.write(GET + GET)  # the second request starts once the first is answered
        first, second = await response(reader), await response(reader)
        return first[1], second[1]

    assert serve(protocol, pipelined) == (b"wrapped", b"wrapped")
