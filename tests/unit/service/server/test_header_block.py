from typing import List

import pytest

from pipeline.service.server.header_block import HeaderBlock

HEAD = b"POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n"


@pytest.mark.parametrize("reads", [
    [HEAD + b"x" * 20],  # headers and body in one read: the body is not counted
    [HEAD[:-1], HEAD[-1:] + b"x" * 20],  # the empty line split between two reads
    [HEAD[:-3], HEAD[-3:-1], HEAD[-1:]],
    [b"\r\n\r\n" + HEAD],  # empty lines before the request line do not end it
])
def test_the_header_block_ends_at_its_empty_line_however_the_bytes_are_read(
    reads: List[bytes],
) -> None:
    block = HeaderBlock()
    sizes = [block.add(read) for read in reads]
    assert block.ended and sizes[-1] == len(HEAD)


def test_a_bare_lf_ends_the_header_block_as_h11_reads_it() -> None:
    block = HeaderBlock()
    head = b"GET / HTTP/1.1\nHost: a\n\n"
    assert block.add(head + b"GET") == len(head) and block.ended


def test_a_header_that_goes_on_is_counted_until_it_ends() -> None:
    block = HeaderBlock()
    start = b"POST / HTTP/1.1\r\nX-Pad: "
    block.add(start)
    sizes = [block.add(b"a" * 1024) for _ in range(16)]
    assert not block.ended and sizes[-1] == len(start) + 16 * 1024
