"""Recognise a blob's compression by its magic bytes and open a decompressing stream; and the
other way, compress a stream on its way out (flatten's ``.tar.gz`` and ``.tar.zst``).

The media type of a layer is only a hint: real tools label uncompressed layers
``tar+gzip`` and eStargz layers are plain gzip, so the bytes decide.
"""

from __future__ import annotations

import contextlib
import enum
import io
import zlib
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import zstandard

from imgtool.errors import LayerError, MediaTypeError, UsageError
from imgtool.image.readable import Readable

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_gzip_backend: ModuleType
try:  # isal decompresses gzip about twice as fast as zlib, and compresses it several times as fast; optional.
    from isal import isal_zlib as _gzip_backend
except ImportError:  # pragma: no cover - exercised where isal is absent
    _gzip_backend = zlib
_GZIP_ERRORS: Final[tuple[type[Exception], ...]] = (zlib.error, _gzip_backend.error)

# Streams are read, decompressed, hashed and parsed in pieces of this size. A piece that fits in a
# core's L2 cache is still there for the hash and the parser after decompression: with 1 MiB
# pieces, indexing on one core took 10 to 15% more CPU time than with 256 KiB.
CHUNK: Final = 256 << 10
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


_ZSTD_MAGIC: Final = 0xFD2FB528
_SKIPPABLE_MASK: Final = 0xFFFFFFF0
_SKIPPABLE_MAGIC: Final = 0x184D2A50


class ZstdFrames:
    """Follows the frame and block structure of a zstd stream without decompressing it.

    zstandard's stream reader ends quietly when its input stops in the middle of a
    frame; this walker, fed the same compressed bytes, knows whether the input ended
    at a frame boundary, so a truncated stream is reported as truncated.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._need = 4  # bytes of the next header to collect
        self._header = bytearray()
        self._skip = 0  # bytes of content to pass over
        self._state = "magic"
        self._checksum = False
        self._frames = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                view = view[step:]
                continue
            step = min(self._need - len(self._header), len(view))
            self._header += view[:step]
            view = view[step:]
            if len(self._header) == self._need:
                self._advance(bytes(self._header))
                self._header.clear()

    def _advance(self, header: bytes) -> None:
        if self._state == "magic":
            magic = int.from_bytes(header, "little")
            if magic == _ZSTD_MAGIC:
                self._state, self._need = "descriptor", 1
                self._frames += 1
            elif magic & _SKIPPABLE_MASK == _SKIPPABLE_MAGIC:
                self._state, self._need = "skippable", 4
            elif self._frames:
                raise LayerError(f"{self._what}: unexpected data after the end of the zstd stream")
            else:
                raise LayerError(f"{self._what}: corrupt zstd data: not a zstd frame")
        elif self._state == "skippable":
            self._skip = int.from_bytes(header, "little")
            self._state, self._need = "magic", 4
        elif self._state == "descriptor":
            descriptor = header[0]
            single_segment = bool(descriptor & 0x20)
            content_size = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
            dictionary = (0, 1, 2, 4)[descriptor & 0x03]
            self._checksum = bool(descriptor & 0x04)
            self._skip = (0 if single_segment else 1) + dictionary + content_size
            self._state, self._need = "block", 3
        elif self._state == "block":
            value = int.from_bytes(header, "little")
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            if kind == 3:
                raise LayerError(f"{self._what}: corrupt zstd data: reserved block type")
            self._skip = 1 if kind == 1 else size
            if last:
                self._skip += 4 if self._checksum else 0
                self._state, self._need = "magic", 4

    def check_complete(self) -> None:
        if self._state != "magic" or self._header or self._skip:
            raise LayerError(f"{self._what}: zstd stream is truncated")


class _Watched:
    """Hands the compressed bytes to the frame walker on their way to the decompressor."""

    def __init__(self, raw: Readable, frames: ZstdFrames) -> None:
        self._raw = raw
        self._frames = frames

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._frames.feed(data)
        return data


class ZstdReader:
    """zstd frames one after another, with bounded output per read, truncation detected."""

    def __init__(self, raw: Readable, what: str) -> None:
        self._what = what
        self._frames = ZstdFrames(what)
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            _Watched(raw, self._frames),  # type: ignore[arg-type]  # any object with read() will do
            read_size=CHUNK,
            read_across_frames=True,
            closefd=False,
        )

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._reader.read(CHUNK if n < 0 else n)
        except zstandard.ZstdError as exc:
            raise LayerError(f"{self._what}: corrupt zstd data: {exc}") from exc
        if not data:
            self._frames.check_complete()
        return data


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


# What flatten writes: a tar compressed with one of these, at one of these levels.
LEVELS: Final = {Compression.GZIP: range(1, 10), Compression.ZSTD: range(1, 20)}
# The names that say a tar and its compression, longest first: a .tar.gz name also ends in .gz.
_TAR_SUFFIXES: Final = (
    (".tar.gz", Compression.GZIP),
    (".tgz", Compression.GZIP),
    (".tar.zst", Compression.ZSTD),
    (".tar", Compression.NONE),
)


def named_compression(name: str) -> Compression | None:
    """The compression a tar file's name says (.tar, .tar.gz or .tgz, .tar.zst); None for other names."""
    for suffix, kind in _TAR_SUFFIXES:
        if name.endswith(suffix):
            return kind
    return None


def check_level(kind: Compression, level: int | None) -> None:
    """Refuse a compression imgtool does not write, or a level that ``kind`` does not have."""
    if kind is not Compression.NONE and kind not in LEVELS:
        raise UsageError(f"imgtool does not write {kind.value}-compressed output")
    if level is None:
        return
    if kind is Compression.NONE:
        raise UsageError(
            f"--compress-level {level}: the output is not compressed (use --compress, or a .tar.gz, "
            ".tgz or .tar.zst name)"
        )
    levels = LEVELS[kind]
    if level not in levels:
        raise UsageError(f"--compress-level {level}: {kind.value} levels are {levels[0]} to {levels[-1]}")


def _compressor(kind: Compression, level: int | None) -> Any:
    """A compressobj for ``kind``. gzip at its default level is isal's where installed (its
    level 2: about the size of zlib's level 1, several times as fast); a level asked for is
    zlib's, as ``gzip -N`` has it, since isal's four levels do not match zlib's nine."""
    if kind is Compression.GZIP:
        if level is None:
            return _gzip_backend.compressobj(wbits=_GZIP_WBITS)
        return zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
    # The checksum lets ``zstd -d`` check the content, as the zstd command's own output does.
    return zstandard.ZstdCompressor(level=3 if level is None else level, write_checksum=True).compressobj()


class _Compressing(io.RawIOBase):
    """Compresses what is written to it into ``out``, in pieces of exactly CHUNK bytes (the last one
    excepted), whatever the sizes of the writes: isal's output depends on how its input is cut, and
    the same tar must give the same compressed bytes however it was written (from a spool or not).
    Only :meth:`finish` ends the compressed stream; after :meth:`discard` nothing more reaches ``out``."""

    def __init__(self, out: BinaryIO, kind: Compression, level: int | None) -> None:
        super().__init__()
        self._out: BinaryIO | None = out
        self._obj = _compressor(kind, level)
        self._pending = bytearray()  # fewer than CHUNK bytes not yet compressed

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        if self._out is None:
            return size
        if self._pending:
            taken = CHUNK - len(self._pending)
            self._pending += view[:taken]
            view = view[taken:]
            if len(self._pending) < CHUNK:
                return size
            self._send(self._pending)
            self._pending.clear()
        while len(view) >= CHUNK:
            self._send(view[:CHUNK])
            view = view[CHUNK:]
        self._pending += view
        return size

    def _send(self, piece: bytearray | memoryview) -> None:
        assert self._out is not None
        compressed = self._obj.compress(piece)
        if compressed:
            self._out.write(compressed)

    def finish(self) -> None:
        if self._out is not None:
            if self._pending:
                self._send(self._pending)
                self._pending.clear()
            self._out.write(self._obj.flush())
            self._out = None

    def discard(self) -> None:
        self._out = None
        self._pending.clear()


@contextlib.contextmanager
def compressing(out: BinaryIO, kind: Compression, level: int | None = None) -> Iterator[BinaryIO]:
    """A stream that writes to ``out`` compressed with ``kind`` (NONE: ``out`` itself).

    It streams: writes are gathered or cut to pieces of CHUNK bytes and each piece goes out
    compressed, so memory stays bounded whatever the size. The compressed stream is ended when
    the block ends normally; when it raises, what was not yet compressed is dropped and the
    stream is left unended, so that a reader of what went out sees it truncated, never complete.
    The stream has no file descriptor: nothing can copy around the compressor (``sendfile``).
    """
    check_level(kind, level)
    if kind is Compression.NONE:
        yield out
        return
    raw = _Compressing(out, kind, level)
    buffered = io.BufferedWriter(raw, CHUNK)
    try:
        yield buffered
        buffered.flush()
        raw.finish()
    finally:
        raw.discard()
        buffered.close()
