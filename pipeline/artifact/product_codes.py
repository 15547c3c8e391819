"""A catalogue's product codes as two arrays, looked up without a Python object per code.

A million codes held as Python strings in a dict cost about 140 bytes each (the string, its
dict slot, the int it maps to): 140 MB before a single estimate. Here they are one UTF-8
buffer and an array of offsets into it (about 18 bytes per code of 10 characters), plus,
once looked up, a sorted array of the codes' hashes and their positions (16 bytes per code).
A look-up hashes the code (the process's keyed SipHash, which a client cannot aim at),
finds the hash by binary search, and compares the stored bytes: exact, never a guess.
The buffer and offsets are plain numpy arrays: they are what the artifact stores.
"""
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np


class ProductCodes:
    """Distinct product codes in a fixed order; position i is product i of the model."""

    def __init__(self, utf8: np.ndarray, offsets: np.ndarray) -> None:
        self.utf8 = np.ascontiguousarray(utf8, dtype=np.uint8)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if self.offsets.ndim != 1 or not len(self.offsets) or self.offsets[0] != 0:
            raise ValueError("product code offsets must start at 0")
        if self.offsets[-1] != len(self.utf8) or (np.diff(self.offsets) < 0).any():
            raise ValueError("product code offsets do not fit the code bytes")
        self._bytes = self.utf8.tobytes()
        self._hashes: Optional[np.ndarray] = None
        self._order: Optional[np.ndarray] = None

    @classmethod
    def from_strings(cls, codes: Iterable[str]) -> "ProductCodes":
        texts = [str(code) for code in codes]
        data, lengths = _encoded(texts, "strict")
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.frombuffer(data, dtype=np.uint8), offsets)

    @classmethod
    def of(cls, codes: Union["ProductCodes", Iterable[str]]) -> "ProductCodes":
        return codes if isinstance(codes, ProductCodes) else cls.from_strings(codes)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self._bytes[self.offsets[i]:self.offsets[i + 1]].decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProductCodes):
            return NotImplemented
        return bool(np.array_equal(self.offsets, other.offsets) and self._bytes == other._bytes)

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
        offsets = np.zeros(len(positions) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
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

    def starts_with(self, codes: Union["ProductCodes", Sequence[str]]) -> bool:
        """Say whether these codes are our first ones, in order (a model's own products)."""
        if len(codes) > len(self):
            return False
        if isinstance(codes, ProductCodes):
            data, ends = codes._bytes, codes.offsets[1:]
        else:
            data, lengths = _encoded(codes)
            ends = np.cumsum(lengths)
        if data != self._bytes[:len(data)]:
            return False
        return bool(np.array_equal(ends, self.offsets[1:len(codes) + 1]))

    def index(self) -> Tuple[np.ndarray, np.ndarray]:
        """Build (once) and return the sorted hashes and the position of each."""
        if self._hashes is None or self._order is None:
            hashes = np.fromiter(map(hash, self.tolist()), dtype=np.int64, count=len(self))
            order = np.argsort(hashes, kind="stable")
            self._hashes, self._order = hashes[order], order
        return self._hashes, self._order

    def find(self, code: str) -> int:
        """Return the code's position, or -1 when it is not one of these codes."""
        hashes, order = self.index()
        target = hash(code)
        at = int(np.searchsorted(hashes, target))
        while at < len(hashes) and hashes[at] == target:
            position = int(order[at])
            if self[position] == code:
                return position
            at += 1
        return -1

    def find_many(self, codes: Sequence[str]) -> np.ndarray:
        """Return each code's position (-1: not one of these), in a few numpy passes."""
        count = len(codes)
        if not count or not len(self):
            return np.full(count, -1, dtype=np.int64)
        hashes, order = self.index()
        wanted = np.fromiter(map(hash, codes), dtype=np.int64, count=count)
        at = np.minimum(np.searchsorted(hashes, wanted), len(hashes) - 1)
        found = np.where(hashes[at] == wanted, order[at], -1)
        # Verify the bytes of every hash match, all at once; a mismatch (an unknown code, or
        # the rare second code of a hash) is settled by `find`, one code at a time.
        data, lengths = _encoded(codes)
        sent = np.frombuffer(data, dtype=np.uint8)
        candidate = np.maximum(found, 0)
        same = (found >= 0) & (np.diff(self.offsets)[candidate] == lengths)
        starts = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        if len(sent) and len(self.utf8):  # no stored bytes: the lengths settled it
            gather = np.repeat(self.offsets[candidate] - starts[:-1], lengths)
            gather += np.arange(len(sent))
            differs = self.utf8[np.clip(gather, 0, max(len(self.utf8) - 1, 0))] != sent
            row = np.repeat(np.arange(count), lengths)
            same &= np.bincount(row[differs], minlength=count) == 0
        positions: np.ndarray = np.where(same, found, -1)
        # A hash not among ours is an unknown code; a hash of ours with other bytes may be
        # the rarer second code of that hash.
        for i in np.flatnonzero((found >= 0) & ~same).tolist():
            positions[i] = self.find(codes[i])
        return positions


def _encoded(codes: Sequence[str], errors: str = "surrogatepass") -> Tuple[bytes, np.ndarray]:
    """Return the codes' UTF-8 bytes, back to back, and each one's length in bytes.

    One encode for all when they are ASCII (a character is then a byte), the common case;
    `surrogatepass` lets a client's lone surrogate be compared (it matches no stored code).
    """
    joined = "".join(codes)
    if joined.isascii():
        return joined.encode("ascii"), np.fromiter(map(len, codes), np.int64, len(codes))
    encoded = [code.encode("utf-8", errors) for code in codes]
    return b"".join(encoded), np.fromiter(map(len, encoded), np.int64, len(encoded))
