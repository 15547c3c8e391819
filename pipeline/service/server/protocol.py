"""The protocol of each connection: uvicorn's own, wrapped with the connection's guard.

It wraps rather than subclasses: every asyncio.Protocol event goes to the guard first, then
to uvicorn's protocol for the parser chosen, so nothing depends on how uvicorn's classes work
inside. What a wrapper cannot reach from outside (uvicorn's graceful shutdown, its 400, and
the app each request runs, to put the connection's ConnectionState in front of it) is
handed over through uvicorn_internals.
"""
import asyncio
import functools
from typing import Any, Optional, cast

from pipeline.service.middleware.connection_state import ConnectionState
from pipeline.service.server.connection_guard import ConnectionGuard
from pipeline.service.server.overload import Overload
from pipeline.service.server.responses import INVALID_REQUEST
from pipeline.service.server.uvicorn_internals import ProtocolClass, on_shutdown, on_unreadable
from pipeline.service.server.uvicorn_internals import wrap_app


class GuardedProtocol(asyncio.Protocol):
    """One connection: its guard, and uvicorn's protocol for it, made once it is admitted.

    uvicorn calls the class (with `overload` and `wrapped` bound first, by
    uvicorn_internals.protocol_factory) for each connection, with arguments of its own that
    are handed to `wrapped` unread.
    """

    guard: ConnectionGuard

    def __init__(
        self, overload: Overload, wrapped: ProtocolClass, *args: Any, **kwargs: Any
    ) -> None:
        self.overload = overload
        self.make_wrapped = functools.partial(wrapped, *args, **kwargs)
        self.wrapped: Optional[asyncio.Protocol] = None  # None: refused at the cap

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # a stream: what uvicorn assumes too
        self.guard = guard = ConnectionGuard(transport, self.overload, asyncio.get_running_loop())
        if not guard.admit():
            return  # refused (503): uvicorn never sees it
        wrapped = self.make_wrapped()
        on_shutdown(wrapped, guard.start_drain)
        on_unreadable(wrapped, self._unreadable)
        wrap_app(wrapped, lambda app: ConnectionState(app, guard))
        self.wrapped = wrapped
        wrapped.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.wrapped is not None and self.guard.received(data):
            self.wrapped.data_received(data)

    def eof_received(self) -> Optional[bool]:
        return None if self.wrapped is None else self.wrapped.eof_received()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.guard.connection_lost()
        if self.wrapped is not None:
            self.wrapped.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.wrapped is not None:
            self.wrapped.pause_writing()

    def resume_writing(self) -> None:
        if self.wrapped is not None:
            self.wrapped.resume_writing()

    def _unreadable(self, message: str) -> None:
        """Refuse what the parser cannot read in the API's error shape, not uvicorn's text."""
        self.guard.answer_and_close(INVALID_REQUEST)
