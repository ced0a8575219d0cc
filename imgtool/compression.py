"""Recognise a blob's compression by its magic bytes and open a decompressing stream.

The media type of a layer is only a hint: real tools label uncompressed layers
``tar+gzip`` and eStargz layers are plain gzip, so the bytes decide.
"""

from __future__ import annotations

import enum
import zlib
from types import ModuleType
from typing import Any, Final, Protocol

import zstandard

from imgtool.errors import LayerError, MediaTypeError

_gzip_backend: ModuleType
try:  # isal decompresses gzip about twice as fast as zlib; it is optional.
    from isal import isal_zlib as _gzip_backend
except ImportError:  # pragma: no cover - exercised where isal is absent
    _gzip_backend = zlib
_GZIP_ERRORS: Final[tuple[type[Exception], ...]] = (zlib.error, _gzip_backend.error)

CHUNK: Final = 1 << 20
_GZIP_WBITS: Final = 31


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"
    BZIP2 = "bzip2"
    XZ = "xz"


_MAGIC: Final = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
)


def sniff(head: bytes) -> Compression:
    """The compression whose magic number ``head`` starts with, or NONE."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return Compression.NONE


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class PeekReader:
    """Wraps a stream so its first bytes can be looked at without being lost."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._head = b""

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            more = self._raw.read(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:n]

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0 or n >= len(self._head):
                head, self._head = self._head, b""
                if n < 0:
                    return head + self._raw.read()
                return head + (self._raw.read(n - len(head)) if n > len(head) else b"")
            head, self._head = self._head[:n], self._head[n:]
            return head
        return self._raw.read(n)


class GzipReader:
    """Multi-member gzip with bounded output per read and zero padding tolerated at the end."""

    def __init__(self, raw: Readable, what: str) -> None:
        self._raw = raw
        self._what = what
        self._obj: Any = _gzip_backend.decompressobj(wbits=_GZIP_WBITS)
        self._pending = b""  # compressed bytes not yet given to the decompressor
        self._member_started = False
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        size = CHUNK if n < 0 else n
        while not self._eof:
            data = self._pending or self._raw.read(CHUNK)
            self._pending = b""
            if not data:
                if self._member_started:
                    raise LayerError(f"{self._what}: gzip stream is truncated")
                self._eof = True
                break
            if not self._member_started:
                data = self._start_member(data)
                if not data:
                    continue
            try:
                out = self._obj.decompress(data, size)
            except _GZIP_ERRORS as exc:
                raise LayerError(f"{self._what}: corrupt gzip data: {exc}") from exc
            self._pending = self._obj.unconsumed_tail
            if self._obj.eof:
                self._pending = self._obj.unused_data + self._pending
                self._obj = _gzip_backend.decompressobj(wbits=_GZIP_WBITS)
                self._member_started = False
            if out:
                return bytes(out)
        return b""

    def _start_member(self, data: bytes) -> bytes:
        """Skip trailing zero padding; anything else after a member must be another member."""
        stripped = data.lstrip(b"\x00")
        if not stripped:
            return b""
        if len(stripped) < 2:
            stripped += self._raw.read(1)
        if not stripped.startswith(b"\x1f\x8b"):
            raise LayerError(f"{self._what}: unexpected data after the end of the gzip stream")
        self._member_started = True
        return stripped


class ZstdReader:
    """zstd frames one after another, with bounded output per read."""

    def __init__(self, raw: Readable, what: str) -> None:
        self._what = what
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            raw,  # type: ignore[arg-type]  # any object with read() will do
            read_size=CHUNK,
            read_across_frames=True,
            closefd=False,
        )

    def read(self, n: int = -1) -> bytes:
        try:
            return self._reader.read(CHUNK if n < 0 else n)
        except zstandard.ZstdError as exc:
            raise LayerError(f"{self._what}: corrupt zstd data: {exc}") from exc


def open_decompressed(raw: Readable, what: str) -> tuple[Compression, Readable]:
    """Sniff ``raw`` and return its compression and a stream of the decompressed bytes."""
    peek = PeekReader(raw)
    kind = sniff(peek.peek(6))
    if kind is Compression.NONE:
        return kind, peek
    if kind is Compression.GZIP:
        return kind, GzipReader(peek, what)
    if kind is Compression.ZSTD:
        return kind, ZstdReader(peek, what)
    raise MediaTypeError(f"{what}: {kind.value}-compressed layers are not supported")
