"""Decompression: formats sniffed by their bytes; truncated and corrupt streams reported as such."""

from __future__ import annotations

import gzip
import io
import os
import tracemalloc
from typing import TYPE_CHECKING, Any

import pytest
import zstandard

from imgtool.errors import LayerError, MediaTypeError, UsageError
from imgtool.image.compression import (
    CHUNK,
    Compression,
    ZstdFrames,
    compressing,
    named_compression,
    open_decompressed,
    sniff,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

DATA = os.urandom(300_000) + b"text " * 100_000


def read_all(blob: bytes) -> bytes:
    _, stream = open_decompressed(io.BytesIO(blob), "blob")
    out = []
    while chunk := stream.read(1 << 16):
        out.append(chunk)
    return b"".join(out)


def zstd_frames(*parts: bytes, checksum: bool = True, content_size: bool = True) -> bytes:
    compressor = zstandard.ZstdCompressor(write_checksum=checksum, write_content_size=content_size)
    return b"".join(compressor.compress(part) for part in parts)


@pytest.mark.parametrize(
    ("blob", "kind"),
    [
        (gzip.compress(DATA), Compression.GZIP),
        (zstd_frames(DATA), Compression.ZSTD),
        (DATA, Compression.NONE),
        (b"BZh91AY", Compression.BZIP2),
        (b"\xfd7zXZ\x00rest", Compression.XZ),
    ],
)
def test_sniff(blob: bytes, kind: Compression) -> None:
    assert sniff(blob[:6]) is kind


@pytest.mark.parametrize(
    "blob",
    [
        gzip.compress(DATA),
        gzip.compress(DATA[:1000]) + gzip.compress(DATA[1000:]),  # several members
        gzip.compress(DATA) + bytes(700),  # zero padding after the stream
        zstd_frames(DATA),
        zstd_frames(DATA[:1000], DATA[1000:], checksum=False, content_size=False),
        zstd_frames(DATA) + b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"skip!",  # skippable frame
        DATA,
    ],
)
def test_round_trip(blob: bytes) -> None:
    assert read_all(blob) == DATA


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (gzip.compress(DATA)[:-100], "blob: gzip stream is truncated"),
        (gzip.compress(DATA)[:5000], "blob: gzip stream is truncated"),
        (gzip.compress(DATA) + b"junk", "blob: unexpected data after the end of the gzip stream"),
        (zstd_frames(DATA)[:-3], "blob: zstd stream is truncated"),
        (zstd_frames(DATA)[:20], "blob: zstd stream is truncated"),
        (zstd_frames(DATA)[:4], "blob: zstd stream is truncated"),
        (zstd_frames(DATA) + b"junk", "blob: unexpected data after the end of the zstd stream"),
    ],
)
def test_broken_streams(blob: bytes, message: str) -> None:
    with pytest.raises(LayerError, match=f"^{message}$"):
        read_all(blob)


def test_corrupt_gzip_data() -> None:
    blob = bytearray(gzip.compress(DATA))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(LayerError, match=r"^blob: corrupt gzip data"):
        read_all(bytes(blob))


def test_unsupported_compression_is_named() -> None:
    with pytest.raises(MediaTypeError, match=r"^blob: bzip2-compressed layers are not supported$"):
        read_all(b"BZh91AY&SY")


def test_frame_walker_follows_every_block_kind() -> None:
    compressible = b"a" * 500_000 + os.urandom(200_000)  # RLE-like, compressed and raw blocks
    blob = zstd_frames(compressible)
    walker = ZstdFrames("blob")
    for i in range(0, len(blob), 7):
        walker.feed(blob[i : i + 7])
    walker.check_complete()


# Writing: compressing() as flatten uses it.


class Sink(io.BytesIO):
    """An output that keeps what it is given (``forget`` drops it) and counts it."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0  # the largest single write
        self.total = 0

    def write(self, data: ReadableBuffer, /) -> int:
        size = memoryview(data).nbytes
        self.largest = max(self.largest, size)
        self.total += size
        return super().write(data)

    def forget(self) -> None:
        self.seek(0)
        self.truncate()


def compressed_with(kind: Compression, pieces: list[bytes | memoryview], level: int | None = None) -> bytes:
    sink = Sink()
    with compressing(sink, kind, level) as out:
        for piece in pieces:
            out.write(piece)
    return sink.getvalue()


def decompress(kind: Compression, blob: bytes) -> bytes:
    assert sniff(blob[:6]) is kind
    return read_all(blob)


@pytest.mark.parametrize("kind", [Compression.GZIP, Compression.ZSTD])
def test_compressing_round_trips_small_and_large_writes(kind: Compression) -> None:
    pieces: list[bytes | memoryview] = [DATA[:512], memoryview(DATA)[512:700_000], DATA[700_000:], b""]
    blob = compressed_with(kind, pieces)
    assert decompress(kind, blob) == DATA
    assert compressed_with(kind, [DATA]) == blob  # however it is cut into writes


def test_compressing_nothing_hands_the_output_itself() -> None:
    sink = Sink()
    with compressing(sink, Compression.NONE) as out:
        assert out is sink


def test_default_gzip_is_the_installed_backends_and_a_level_is_zlibs(monkeypatch: pytest.MonkeyPatch) -> None:
    import zlib

    from imgtool.image import compression

    def reference(obj: Any) -> bytes:
        """DATA compressed by ``obj`` in pieces of CHUNK bytes, as compressing() gives it."""
        pieces = [obj.compress(DATA[at : at + CHUNK]) for at in range(0, len(DATA), CHUNK)]
        return b"".join([*pieces, obj.flush()])

    assert compressed_with(Compression.GZIP, [DATA]) == reference(
        compression._gzip_backend.compressobj(wbits=31)
    )
    assert compressed_with(Compression.GZIP, [DATA], 9) == reference(zlib.compressobj(9, zlib.DEFLATED, 31))
    monkeypatch.setattr(compression, "_gzip_backend", zlib)  # as where isal is not installed
    assert compressed_with(Compression.GZIP, [DATA]) == reference(zlib.compressobj(6, zlib.DEFLATED, 31))


@pytest.mark.parametrize("kind", [Compression.GZIP, Compression.ZSTD])
def test_compressing_streams_in_bounded_memory(kind: Compression) -> None:
    """64 MiB that does not compress: the compressed bytes go out while the input comes in, in pieces
    of bounded size, and memory stays a few MiB."""
    sink = Sink()
    sent_midway = 0
    tracemalloc.start()
    try:
        with compressing(sink, kind) as out:
            for number in range(64):
                block = os.urandom(1 << 20)  # new each time: a block repeated would compress
                out.write(memoryview(block)[: 1 << 19])
                for start in range(1 << 19, 1 << 20, 512):  # as a tar's headers and small files come
                    out.write(block[start : start + 512])
                if number == 8:
                    sent_midway = sink.total
                sink.forget()  # only the compressor's memory counts
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent_midway > 8 << 20
    assert sink.largest < 2 << 20
    assert peak < 4 << 20
    assert sink.total > 64 << 20


@pytest.mark.parametrize("kind", [Compression.GZIP, Compression.ZSTD])
def test_a_failure_inside_leaves_the_stream_unended_and_sends_nothing_more(kind: Compression) -> None:
    sink = Sink()
    with pytest.raises(OSError, match="disk on fire"), compressing(sink, kind) as out:
        out.write(DATA * 4)
        sent = sink.tell()
        out.write(b"more")
        raise OSError("disk on fire")
    assert sink.tell() == sent > 0
    assert compressed_with(kind, [DATA * 4]).startswith(sink.getvalue())
    with pytest.raises(LayerError, match=f"^blob: {kind.value} stream is truncated$"):
        read_all(sink.getvalue())


@pytest.mark.parametrize(
    ("kind", "level", "message"),
    [
        (Compression.GZIP, 0, "--compress-level 0: gzip levels are 1 to 9"),
        (Compression.GZIP, 10, "--compress-level 10: gzip levels are 1 to 9"),
        (Compression.ZSTD, 20, "--compress-level 20: zstd levels are 1 to 19"),
        (Compression.BZIP2, None, "imgtool does not write bzip2-compressed output"),
        (
            Compression.NONE,
            1,
            r"--compress-level 1: the output is not compressed \(use --compress, or a .tar.gz, .tgz or "
            r".tar.zst name\)",
        ),
    ],
)
def test_compressing_refuses_what_it_cannot_do(kind: Compression, level: int | None, message: str) -> None:
    with pytest.raises(UsageError, match=f"^{message}$"), compressing(Sink(), kind, level):
        pass


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("rootfs.tar", Compression.NONE),
        ("rootfs.tar.gz", Compression.GZIP),
        ("a/b.tgz", Compression.GZIP),
        ("rootfs.tar.zst", Compression.ZSTD),
        ("rootfs.gz", None),
        ("rootfs.zst", None),
        ("rootfs.tar.xz", None),
        ("rootfs", None),
        ("-", None),
    ],
)
def test_named_compression(name: str, kind: Compression | None) -> None:
    assert named_compression(name) is kind
