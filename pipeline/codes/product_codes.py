"""A catalogue's product codes as two arrays, and the one way a code is found among them.

A million codes held as Python strings in a dict cost about 140 bytes each: 140 MB before a
single estimate. Here they are one UTF-8 buffer and its offsets (what the artifact stores),
plus, once looked up, the same bytes grouped by length, each group sorted, with each code's
position. A code is found by binary search among the codes of its own length, comparing
bytes: exact, never a guess, and no hash a client could aim at. One request's code, a
batch's and a whole catalogue's (training matches catalogues of a million codes) are all
found this way.
"""
from functools import cached_property
from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np


class _Group(NamedTuple):
    """The codes of one length in bytes, as fixed-width byte strings, and their positions."""

    rows: np.ndarray  # numpy 'S<length>': compares and sorts as the bytes do, NULs included
    positions: np.ndarray


class ProductCodes:
    """Distinct product codes in a fixed order; position i is product i of the model."""

    def __init__(self, utf8: np.ndarray, offsets: np.ndarray) -> None:
        self.utf8 = np.ascontiguousarray(utf8, dtype=np.uint8)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if self.offsets.ndim != 1 or not len(self.offsets) or self.offsets[0] != 0:
            raise ValueError("product code offsets must start at 0")
        if self.offsets[-1] != len(self.utf8) or (np.diff(self.offsets) < 0).any():
            raise ValueError("product code offsets do not fit the code bytes")
        self._groups: Optional[Dict[int, _Group]] = None
        # The last catalogue of codes looked up among these, and where: a training run asks
        # for this week's products among the live model's several times.
        self._last: Optional[Tuple["ProductCodes", np.ndarray]] = None

    @classmethod
    def from_strings(cls, codes: Iterable[str]) -> "ProductCodes":
        texts = [str(code) for code in codes]
        data, lengths = _encoded(texts, "strict")
        return cls(np.frombuffer(data, dtype=np.uint8), _offsets(lengths))

    @classmethod
    def of(cls, codes: Union["ProductCodes", Iterable[str]]) -> "ProductCodes":
        return codes if isinstance(codes, ProductCodes) else cls.from_strings(codes)

    @cached_property
    def _bytes(self) -> bytes:
        """The codes' bytes as one Python bytes object, made when first needed (a
        catalogue's codes are often only looked up, never decoded)."""
        return self.utf8.tobytes()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self._bytes[self.offsets[i]:self.offsets[i + 1]].decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProductCodes):
            return NotImplemented
        return _equal(self.offsets, other.offsets) and _equal(self.utf8, other.utf8)

    __hash__ = None  # type: ignore[assignment]

    def tolist(self) -> List[str]:
        bounds = self.offsets.tolist()
        if self.isascii():  # one decode, then slices of the text
            text = self._bytes.decode("ascii")
            return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        data = self._bytes
        return [data[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:])]

    def take(self, positions: np.ndarray) -> "ProductCodes":
        """Return the codes at these positions, in that order (one vectorised gather)."""
        positions = np.asarray(positions, dtype=np.int64)
        starts, lengths = self.offsets[positions], np.diff(self.offsets)[positions]
        offsets = _offsets(lengths)
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return ProductCodes(self.utf8[gather], offsets)

    def concat(self, other: "ProductCodes") -> "ProductCodes":
        return ProductCodes(
            np.concatenate([self.utf8, other.utf8]),
            np.concatenate([self.offsets, other.offsets[1:] + self.offsets[-1]]),
        )

    def isascii(self) -> bool:
        """Say whether every code is ASCII (a byte per character)."""
        return self._bytes.isascii()

    def lengths(self) -> np.ndarray:
        """Return each code's length in characters (its bytes that start a character)."""
        if self.isascii():
            ascii_lengths: np.ndarray = np.diff(self.offsets)
            return ascii_lengths
        starts = np.zeros(len(self.utf8) + 1, dtype=np.int64)
        np.cumsum((self.utf8 & 0xC0) != 0x80, out=starts[1:])
        counted: np.ndarray = starts[self.offsets[1:]] - starts[self.offsets[:-1]]
        return counted

    def starts_with(self, codes: "ProductCodes") -> bool:
        """Say whether these codes are our first ones, in order (a model's own products)."""
        if len(codes) > len(self) or not _equal(codes.utf8, self.utf8[:len(codes.utf8)]):
            return False
        return _equal(codes.offsets, self.offsets[:len(codes) + 1])

    def build_index(self) -> None:
        """Group and sort the codes for look-ups now (a service does before its first request)."""
        if self._groups is None:
            self._groups = {
                length: _sorted(rows, positions)
                for length, (rows, positions) in _by_length(self.utf8, self.offsets).items()
            }

    def find(self, code: str) -> int:
        """Return the code's position, or -1 when it is not one of these codes."""
        self.build_index()
        assert self._groups is not None
        # surrogatepass: a client's lone surrogate is compared (it matches no stored code).
        data = code.encode("utf-8", "surrogatepass")
        group = self._groups.get(len(data))
        if group is None:
            return -1
        at = int(group.rows.searchsorted(data))  # the method: half the function's cost
        if at == len(group.rows) or (data and group.rows[at:at + 1].tobytes() != data):
            return -1
        return int(group.positions[at])

    def find_many(self, codes: Union["ProductCodes", Sequence[str]]) -> np.ndarray:
        """Return each code's position (-1: not one of these), a binary search per length."""
        if not isinstance(codes, ProductCodes):
            return self._search(_wanted(codes))
        if self.starts_with(codes):  # a model's own products, as its training rows have them
            return np.arange(len(codes), dtype=np.int64)
        if self._last is not None and self._last[0] == codes:
            return self._last[1]
        positions = self._search(codes)
        positions.flags.writeable = False  # handed out again
        self._last = (codes, positions)
        return positions

    def _search(self, wanted: "ProductCodes") -> np.ndarray:
        self.build_index()
        assert self._groups is not None
        positions = np.full(len(wanted), -1, dtype=np.int64)
        own = len(self) if wanted.starts_with(self) else 0  # ours first, then others
        if own:
            positions[:own] = np.arange(own)
            wanted = wanted.take(np.arange(own, len(wanted)))
        for length, (rows, members) in _by_length(wanted.utf8, wanted.offsets).items():
            group = self._groups.get(length)
            if group is None:
                continue
            at = np.minimum(group.rows.searchsorted(rows), len(group.rows) - 1)
            hit = group.rows[at] == rows
            positions[own + members[hit]] = group.positions[at[hit]]
        return positions


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Say whether two arrays hold the same values: at once when they are the same memory
    (a frame's codes and the model fitted on them share arrow's buffers), else compared."""
    if a.shape == b.shape and a.ctypes.data == b.ctypes.data and a.dtype == b.dtype:
        return True
    return bool(np.array_equal(a, b))


def _wanted(codes: Sequence[str]) -> ProductCodes:
    """Codes asked for, as bytes to compare (a lone surrogate kept, to match nothing)."""
    data, lengths = _encoded(codes, "surrogatepass")
    return ProductCodes(np.frombuffer(data, dtype=np.uint8), _offsets(lengths))


def _offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _by_length(utf8: np.ndarray, offsets: np.ndarray) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
    """Group codes by their length in bytes: each group's codes as fixed-width byte strings
    (numpy 'S<length>', one row each), in their order, and their positions."""
    lengths = np.diff(offsets)
    if not len(lengths):
        return {}
    if (lengths == lengths[0]).all():  # part numbers often are: the buffer as it lies
        return {int(lengths[0]): (_rows(utf8, offsets[:-1], int(lengths[0])),
                                  np.arange(len(lengths), dtype=np.int64))}
    order = np.argsort(lengths, kind="stable")
    sizes, firsts = np.unique(lengths[order], return_index=True)
    return {
        int(size): (_rows(utf8, offsets[members], int(size)), members)
        for size, members in zip(sizes, np.split(order, firsts[1:]))
    }


def _rows(utf8: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """The codes of `length` bytes starting at `starts`, as one 'S<length>' array."""
    if not length:  # empty codes: one zero byte each, as an empty code asked for becomes
        return np.zeros(len(starts), dtype="S1")
    count = len(starts)
    if count and starts[-1] - starts[0] == (count - 1) * length:  # back to back already
        return utf8[starts[0]:starts[0] + count * length].view(f"S{length}")
    matrix = np.empty((count, length), dtype=np.uint8)
    for j in range(length):  # a column at a time: no index array of every byte
        matrix[:, j] = utf8[starts + j]
    return matrix.view(f"S{length}").ravel()


def _sorted(rows: np.ndarray, positions: np.ndarray) -> _Group:
    if len(rows) < 2 or bool((rows[1:] >= rows[:-1]).all()):  # a sorted catalogue's are
        return _Group(rows, positions)
    order = np.argsort(rows, kind="stable")
    return _Group(rows[order], positions[order])


def _encoded(codes: Sequence[str], errors: str) -> Tuple[bytes, np.ndarray]:
    """Return the codes' UTF-8 bytes, back to back, and each one's length in bytes.

    One encode for all when they are ASCII (a character is then a byte), the common case.
    """
    joined = "".join(codes)
    if joined.isascii():
        return joined.encode("ascii"), np.fromiter(map(len, codes), np.int64, len(codes))
    encoded = [code.encode("utf-8", errors) for code in codes]
    return b"".join(encoded), np.fromiter(map(len, encoded), np.int64, len(encoded))
