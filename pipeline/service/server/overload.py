"""What all connections of one server share: how many are open, the ones waiting for a
request's headers (oldest first, to be shed at the cap), and the overload counter."""
from collections import OrderedDict
from typing import Callable, Optional

from typing import Protocol

from pipeline.service.server.limits import HttpLimits


class Sheddable(Protocol):
    """A connection's guard (connection_guard.ConnectionGuard), as the shedding sees it."""

    def sheddable(self) -> bool:
        ...

    def shed(self) -> None:
        ...


class Overload:
    """The connection cap, and the connections that can make room under it.

    A connection waits (is in `waiting`) while its request's headers are awaited, or while it
    is idle between keep-alive requests, in the order it began waiting; nginx closes idle
    keep-alive connections when it runs out of them, too. `closing` counts connections
    closed to make room (shed or refused) that have not gone yet: they no longer count
    against the cap. `count` is called with a reason (pipeline.service.metrics.
    OVERLOAD_REASONS) for each refusal or closure under overload.
    """

    def __init__(self, limits: HttpLimits, count: Optional[Callable[[str], None]] = None) -> None:
        self.limits = limits
        self.waiting: "OrderedDict[Sheddable, None]" = OrderedDict()
        self.open = 0
        self.closing = 0
        self._count = count

    def count(self, reason: str) -> None:
        if self._count is not None:
            self._count(reason)

    def at_cap(self) -> bool:
        return self.open - self.closing > self.limits.max_connections

    def shed_oldest(self) -> bool:
        """Close the connection that has waited longest for a request's headers, to make room
        for a new one; say False if no connection is waiting for headers."""
        while self.waiting:
            guard, _ = self.waiting.popitem(last=False)
            if guard.sheddable():
                guard.shed()
                return True
        return False
