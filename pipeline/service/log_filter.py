"""The rate limit on log lines an attacker can repeat (a failed accept, a bad request, a
closure): a flood would fill the disk and bury everything else."""
import logging
import time
from typing import Callable, Dict, List, Tuple


class RepeatFilter(logging.Filter):
    """Let through at most `burst` records of one kind per `window` seconds.

    A flood (a failed accept per connection, a warning per bad request) would otherwise fill
    the disk and bury everything else. The next record let through says how many were
    dropped. The traceback of asyncio's "out of system resource" is replaced by its message.
    """

    def __init__(
        self, burst: int = 5, window: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.clock = clock
        self.kinds: Dict[Tuple[str, str], List[float]] = {}  # [window start, count, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        first_line = str(record.msg).split("\n", 1)[0]
        key = (record.name, first_line[:200])
        now = self.clock()
        if len(self.kinds) > 1000:  # messages built with f-strings: keep the table bounded
            self.kinds.clear()
        start, count, dropped = self.kinds.get(key, [now, 0.0, 0.0])
        if now - start >= self.window:
            start, count = now, 0.0
        if count >= self.burst:
            self.kinds[key] = [start, count, dropped + 1]
            return False
        self.kinds[key] = [start, count + 1, 0.0]
        if "out of system resource" in first_line and record.exc_info:
            record.msg = f"{first_line}: {record.exc_info[1]}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        if dropped:
            record.msg = f"{record.getMessage()} ({int(dropped)} more like this not logged)"
            record.args = None
        return True


def filtered_logger(name: str) -> logging.Logger:
    """Return a logger with a RepeatFilter (added once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter())
    return logger
