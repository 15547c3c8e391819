"""The ASGI interface's types, as every middleware here uses them."""
from typing import Any, Awaitable, Callable, MutableMapping, Tuple

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Header = Tuple[bytes, bytes]

# Both of uvicorn's parsers close the connection after a response that carries this header.
CLOSE_HEADER: Header = (b"connection", b"close")
