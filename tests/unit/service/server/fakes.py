"""A clock that moves only when a test says, and a transport that records what is written."""
from typing import Any, Callable, List, Tuple, cast

from pipeline.service.server.connection_guard import ConnectionGuard
from pipeline.service.server.limits import HttpLimits
from pipeline.service.server.overload import Overload


class Timer:
    def __init__(self, when: float, callback: Callable[..., None], args: Tuple[Any, ...]) -> None:
        self.when, self.callback, self.args = when, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """The two things a guard asks of its event loop: the time and a timer."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: List[Timer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> Timer:
        timer = Timer(self.now + delay, callback, args)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        """Move the clock on, running each timer that falls due, in order."""
        end = self.now + seconds
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= end]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            self.now = timer.when
            timer.callback(*timer.args)
        self.now = end


class Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class Server:
    """Connections of one server, each a guard over a recording transport."""

    def __init__(self, **limits: Any) -> None:
        self.loop = Loop()
        self.counted: List[str] = []
        self.overload = Overload(HttpLimits(**limits), self.counted.append)

    def connect(self) -> Tuple[ConnectionGuard, Transport]:
        transport = Transport()
        guard = ConnectionGuard(cast(Any, transport), self.overload, cast(Any, self.loop))
        guard.admit()
        return guard, transport
