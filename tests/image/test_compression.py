"""Decompression: formats sniffed by their bytes; truncated and corrupt streams reported as such."""

from __future__ import annotations

import gzip
import io
import os

import pytest
import zstandard

from imgtool.errors import LayerError, MediaTypeError
from imgtool.image.compression import Compression, ZstdFrames, open_decompressed, sniff

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
