"""The tar reader: formats, leniency where Go's archive/tar is lenient, errors where it is not."""

from __future__ import annotations

import io
import random
import re
import tarfile

import pytest

from imgtool.errors import LayerError
from imgtool.tarreader import BLOCK, DIRECTORY, REGULAR, SYMLINK, TarHeader, TarReader, block_sum


def build(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def info(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **fields: object
) -> tuple[tarfile.TarInfo, bytes]:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.size = len(data)
    member.mtime = 1_700_000_000
    for key, value in fields.items():
        setattr(member, key, value)
    return member, data


def read_all(data: bytes) -> tuple[list[tuple[TarHeader, bytes]], list[str]]:
    warnings: list[str] = []
    reader = TarReader(io.BytesIO(data), "test.tar", warnings.append)
    found = []
    for header in reader:
        found.append((header, b"".join(reader.iter_data())))
    return found, warnings


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_reads_every_format(fmt: int) -> None:
    data = build(
        [
            info("etc/", kind=tarfile.DIRTYPE, mode=0o755),
            info("etc/passwd", b"root:x:0:0\n", mode=0o644, uid=0, gid=0),
            info("bin/sh", kind=tarfile.SYMTYPE, linkname="busybox"),
            info("p" * 60 + "/" + "n" * 60, b"long name", mode=0o600),
        ],
        fmt,
    )
    found, warnings = read_all(data)
    assert warnings == []
    assert [(h.name, h.typeflag, h.mode, h.size, d) for h, d in found] == [
        (b"etc/", DIRECTORY, 0o755, 0, b""),
        (b"etc/passwd", REGULAR, 0o644, 11, b"root:x:0:0\n"),
        (b"bin/sh", SYMLINK, 0o644, 0, b""),
        (b"p" * 60 + b"/" + b"n" * 60, REGULAR, 0o600, 9, b"long name"),
    ]
    assert found[2][0].linkname == b"busybox"


def test_pax_records_override_the_header() -> None:
    member, data = info("short", b"abc", mode=0o4755)
    member.pax_headers = {
        "path": "a/very/long/" + "p" * 150,
        "mtime": "1700000000.123456789",
        "uid": "3000000",
        "SCHILY.xattr.user.comment": "hello",
        "SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
    }
    found, _ = read_all(build([(member, data)]))
    header = found[0][0]
    assert header.name == b"a/very/long/" + b"p" * 150
    assert header.mtime_ns == 1_700_000_000_123_456_789
    assert header.uid == 3_000_000
    assert header.mode == 0o4755
    assert header.xattrs == {"user.comment": b"hello", "security.capability": b"\x01\x00\x00\x02"}


def test_non_utf8_names_are_kept_as_bytes() -> None:
    member, data = info("caf\udce9", b"x")
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        tar.addfile(member, io.BytesIO(data))
    found, _ = read_all(out.getvalue())
    assert found[0][0].name == b"caf\xe9"


def test_base256_numbers() -> None:
    member, data = info("big-ids", b"")
    member.uid = 0o10000000  # does not fit 7 octal digits: GNU writes base-256
    found, _ = read_all(build([(member, data)], tarfile.GNU_FORMAT))
    assert found[0][0].uid == 0o10000000


def test_missing_end_of_archive_blocks_is_a_warning() -> None:
    data = build([info("a", b"hello")])
    trimmed = data[: BLOCK * 2]  # header + one padded data block, no end blocks
    found, warnings = read_all(trimmed)
    assert [(h.name, d) for h, d in found] == [(b"a", b"hello")]
    assert warnings == ["test.tar: tar archive ends without end-of-archive blocks"]


def test_missing_padding_after_last_member_is_a_warning() -> None:
    data = build([info("a", b"hello")])
    trimmed = data[: BLOCK + 5]  # header and the 5 data bytes, nothing after
    found, warnings = read_all(trimmed)
    assert [(h.name, d) for h, d in found] == [(b"a", b"hello")]
    assert warnings == ["test.tar: tar archive ends without padding after its last member"]


def test_single_zero_block_ends_the_archive() -> None:
    data = build([info("a", b"hello")])
    found, warnings = read_all(data[: BLOCK * 3])
    assert [h.name for h, _ in found] == [b"a"]
    assert warnings == []


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (BLOCK + 3, "tar archive is truncated inside the data of a member (2 bytes missing)"),
        (100, "tar archive is truncated inside a header at offset 0"),
    ],
)
def test_truncation_inside_a_member_is_an_error(cut: int, message: str) -> None:
    data = build([info("a", b"hello")])
    with pytest.raises(LayerError, match="^test.tar: " + re.escape(message)):
        read_all(data[:cut])


def test_bad_checksum_is_an_error() -> None:
    data = bytearray(build([info("a", b"hello")]))
    data[0] ^= 0x01
    with pytest.raises(LayerError, match=r"^test.tar: invalid tar header \(bad checksum\) at offset 0$"):
        read_all(bytes(data))


def test_zero_block_then_data_is_an_error() -> None:
    data = build([info("a", b"hello")])
    corrupt = data[: BLOCK * 2] + bytes(BLOCK) + data[:BLOCK]
    with pytest.raises(LayerError, match="non-zero block after a zero block"):
        read_all(corrupt)


def test_header_only_types_carry_no_data_whatever_their_size_field() -> None:
    link, _ = info("l", kind=tarfile.SYMTYPE, linkname="target")
    after, after_data = info("after", b"x")
    raw = bytearray(build([(link, b""), (after, after_data)], tarfile.USTAR_FORMAT))
    raw[124:136] = b"%011o\x00" % 5  # a symlink claiming 5 bytes of data
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\x00 " % sum(raw[:BLOCK])
    found, _ = read_all(bytes(raw))
    assert [(h.name, h.size, d) for h, d in found] == [(b"l", 0, b""), (b"after", 1, b"x")]


def test_old_style_regular_with_slash_is_a_directory() -> None:
    raw = bytearray(build([info("dir/", kind=tarfile.DIRTYPE)], tarfile.USTAR_FORMAT))
    raw[156:157] = b"\x00"
    raw[148:156] = b" " * 8
    raw[148:156] = b"%06o\x00 " % sum(raw[:BLOCK])
    found, _ = read_all(bytes(raw))
    assert found[0][0].typeflag == DIRECTORY


def test_sparse_files_are_refused_by_name() -> None:
    member, data = info("sparse", b"")
    member.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    with pytest.raises(LayerError, match="'sparse': GNU sparse files are not supported"):
        read_all(build([(member, data)]))


def test_trailing_data_is_drained_and_counted() -> None:
    data = build([info("a", b"hello")]) + b"junk"
    reader = TarReader(io.BytesIO(data), "t")
    assert [h.name for h in reader] == [b"a"]
    # header, one data block and the two end blocks were read; the record padding and junk remain
    assert reader.drain() == len(data) - 4 * BLOCK


@pytest.mark.parametrize(
    "block",
    [
        bytes(512),
        b"\xff" * 512,
        bytes(range(256)) * 2,
        b"\xff" * 256 + bytes(256),
        random.Random(7).randbytes(512),
    ],
)
def test_block_sum_is_the_sum_of_the_bytes(block: bytes) -> None:
    assert block_sum(block) == sum(block)
    assert block_sum(bytearray(block)) == sum(block)
