"""How many bytes of a request its line and headers took: the 431 limit counts them.

uvicorn's parsers say where a request's headers end only inside themselves (httptools sets
no limit on them at all), so the server finds the end in the bytes as they arrive: the first
empty line, after any empty lines before the request line, as both parsers read it (h11
also takes a bare LF for CRLF). Nothing else of HTTP is parsed here.
"""

ENDS = (b"\n\n", b"\n\r\n")  # the end of the last header line, then an empty line


def header_end(tail: bytes, data: bytes) -> int:
    """Return how many bytes of `data` the header block takes through its empty line, or -1
    if it does not end in `data`; `tail` is the last bytes before `data`, in case the end
    is split between two reads."""
    joined = tail + data
    found = [i + len(end) for end in ENDS for i in (joined.find(end),) if i >= 0]
    return min(found) - len(tail) if found else -1


class HeaderBlock:
    """The header block of the request being received: its size so far, and whether it
    has ended."""

    def __init__(self) -> None:
        self.size = 0
        self.ended = False
        self.tail = b""

    def add(self, data: bytes) -> int:
        """Count the bytes of `data` that belong to the header block; return its size."""
        if self.ended:
            return self.size
        if not self.size:
            data = data.lstrip(b"\r\n")  # empty lines before a request line are allowed
        end = header_end(self.tail, data)
        if end < 0:
            self.size += len(data)
            self.tail = (self.tail + data)[-2:]
        else:
            self.size += end
            self.ended = True
        return self.size
