"""The tar reader: formats, leniency where Go's archive/tar is lenient, errors where it is not."""

from __future__ import annotations

import io
import random
import re
import tarfile

import pytest

from imgtool.errors import LayerError
from imgtool.layers.tarreader import BLOCK, DIRECTORY, REGULAR, SYMLINK, TarHeader, TarReader, block_sum


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


# -- GNU sparse members ------------------------------------------------------------------------

SPARSE_SIZE = 20_000
SPARSE_REGIONS = [(1000, 5), (4096, 600), (15_000, 3)]  # (offset, length): the data, holes between
SPARSE_FILE = bytearray(SPARSE_SIZE)
for _start, _length in SPARSE_REGIONS:
    SPARSE_FILE[_start : _start + _length] = bytes((_start + i) % 251 + 1 for i in range(_length))
STORED = b"".join(bytes(SPARSE_FILE[s : s + n]) for s, n in SPARSE_REGIONS)


def pax_sparse(
    records: dict[str, str], data: bytes, name: str = "./GNUSparseFile.1/f", kind: bytes = tarfile.REGTYPE
) -> bytes:
    member, _ = info(name, data, kind)
    member.pax_headers = records
    return build([(member, data), info("after", b"next")])


def sparse_0x1(regions: list[tuple[int, int]], size: int = SPARSE_SIZE, data: bytes = STORED) -> bytes:
    numbers = ",".join(f"{s},{n}" for s, n in regions)
    records = {
        "GNU.sparse.size": str(size),
        "GNU.sparse.numblocks": str(len(regions)),
        "GNU.sparse.name": "f",
    }
    return pax_sparse({**records, "GNU.sparse.map": numbers}, data)


def sparse_0x0(regions: list[tuple[int, int]]) -> bytes:
    """Format 0.0 repeats GNU.sparse.offset and numbytes: PAX records tarfile cannot repeat."""
    records = [f"GNU.sparse.size={SPARSE_SIZE}", f"GNU.sparse.numblocks={len(regions)}"]
    for start, length in regions:
        records += [f"GNU.sparse.offset={start}", f"GNU.sparse.numbytes={length}"]
    return raw_pax_member(records, "f", STORED)


def raw_pax_member(records: list[str], name: str, data: bytes) -> bytes:
    body = b"".join(pax_record(text) for text in records)
    header, _ = info("PaxHeaders/" + name, body, b"x")
    member, _ = info(name, data)
    head = header.tobuf(tarfile.USTAR_FORMAT) + body + bytes(-len(body) % BLOCK)
    return head + build([(member, data), info("after", b"next")], tarfile.USTAR_FORMAT)


def pax_record(text: str) -> bytes:
    payload = text.encode() + b"\n"
    length = len(payload) + 2
    while len(f"{length} ".encode()) + len(payload) != length:
        length += 1
    return f"{length} ".encode() + payload


def sparse_1x0(map_text: bytes, size: int = SPARSE_SIZE, data: bytes = STORED) -> bytes:
    records = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "f"}
    records["GNU.sparse.realsize"] = str(size)
    return pax_sparse(records, map_text + bytes(-len(map_text) % BLOCK) + data)


def map_1x0(regions: list[tuple[int, int]]) -> bytes:
    return b"".join(b"%d\n" % n for n in [len(regions), *(x for r in regions for x in r)])


def old_gnu_sparse(regions: list[tuple[int, int]], size: int = SPARSE_SIZE, data: bytes = STORED) -> bytes:
    """An old-GNU ``S`` header: four regions in the header, 21 in each extension block after it."""
    member, _ = info("f", data)
    header = bytearray(member.tobuf(tarfile.GNU_FORMAT))
    header[156:157] = b"S"
    fields = [b"%011o\x00%011o\x00" % region for region in regions]
    header[386:482] = b"".join(fields[:4]).ljust(96, b"\x00")
    header[482] = len(fields) > 4
    header[483:495] = b"%011o\x00" % size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\x00 " % sum(header)
    rest = fields[4:]
    extensions = b""
    while rest:
        block = bytearray(b"".join(rest[:21]).ljust(512, b"\x00"))
        rest = rest[21:]
        block[504] = bool(rest)
        extensions += bytes(block)
    padded = data + bytes(-len(data) % BLOCK)
    return bytes(header) + extensions + padded + build([info("after", b"next")], tarfile.GNU_FORMAT)


MANY_REGIONS = [(100 * i, 7) for i in range(30)]  # more than the header and one extension block hold
MANY_FILE = bytearray(3000)
for _start, _length in MANY_REGIONS:
    MANY_FILE[_start : _start + _length] = b"%07d" % _start


@pytest.mark.parametrize(
    "archive",
    [
        pytest.param(sparse_0x0(SPARSE_REGIONS), id="pax-0.0"),
        pytest.param(sparse_0x1(SPARSE_REGIONS), id="pax-0.1"),
        pytest.param(sparse_1x0(map_1x0(SPARSE_REGIONS)), id="pax-1.0"),
        pytest.param(old_gnu_sparse(SPARSE_REGIONS), id="old-gnu"),
    ],
)
def test_sparse_members_read_expanded(archive: bytes) -> None:
    found, warnings = read_all(archive)
    assert warnings == []
    assert [(h.name, h.typeflag, h.size, d) for h, d in found] == [
        (b"f", REGULAR, SPARSE_SIZE, bytes(SPARSE_FILE)),
        (b"after", REGULAR, 4, b"next"),
    ]
    header = found[0][0]
    assert header.sparse == (1000, 5, 4096, 600, 15_000, 3)
    assert archive[header.data_offset : header.data_offset + len(STORED)] == STORED


def test_old_gnu_sparse_extension_blocks() -> None:
    stored = b"".join(bytes(MANY_FILE[s : s + n]) for s, n in MANY_REGIONS)
    found, _ = read_all(old_gnu_sparse(MANY_REGIONS, len(MANY_FILE), stored))
    assert [(h.name, h.size, d) for h, d in found] == [(b"f", 3000, bytes(MANY_FILE)), (b"after", 4, b"next")]
    assert found[0][0].data_offset == 3 * BLOCK  # the header and two extension blocks


def test_skipping_a_sparse_member_reads_on_at_the_next() -> None:
    reader = TarReader(io.BytesIO(sparse_1x0(map_1x0(SPARSE_REGIONS))), "test.tar")
    first = next(reader)
    assert bytes(reader.read_data(1500)) == bytes(1000)  # the hole, then the region: never both at once
    assert bytes(reader.read_data(1500)) == bytes(SPARSE_FILE[1000:1005])
    second = next(reader)
    assert (first.name, second.name, b"".join(reader.iter_data())) == (b"f", b"after", b"next")


def test_a_sparse_file_of_holes_only() -> None:
    found, _ = read_all(sparse_0x1([(SPARSE_SIZE, 0)], data=b""))
    assert [(h.size, h.sparse, d) for h, d in found[:1]] == [(SPARSE_SIZE, (), bytes(SPARSE_SIZE))]


_BAD = "test.tar: entry 'f': bad sparse map: "


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        pytest.param(
            sparse_0x1([(1000, 5), (1003, 600), (15_000, 3)]),
            _BAD + "region 1003+600 overlaps or precedes the one before",
            id="overlapping",
        ),
        pytest.param(
            sparse_0x1([(4096, 600), (1000, 5), (15_000, 3)]),
            _BAD + "region 1000+5 overlaps or precedes the one before",
            id="out-of-order",
        ),
        pytest.param(
            sparse_0x1([(1000, 5), (4096, 600), (19_999, 3)]),
            _BAD + "region 19999+3 runs past the file's 20000 bytes",
            id="past-the-size",
        ),
        pytest.param(
            sparse_0x1([(1000, 5), (4096, 600), (15_000, 4)], data=STORED + b"x"),
            "",
            id="consistent-control",
        ),
        pytest.param(
            sparse_0x1([(1000, 5), (4096, 600)]),
            _BAD + "the regions hold 605 bytes, the entry 608",
            id="unreferenced-data",
        ),
        pytest.param(
            sparse_0x1([(1000, 5), (4096, 600), (15_000, 30)]),
            _BAD + "the regions hold 635 bytes, the entry 608",
            id="missing-data",
        ),
        pytest.param(
            pax_sparse({"GNU.sparse.numblocks": str(10**18), "GNU.sparse.map": "0,1"}, b"x"),
            "test.tar: entry './GNUSparseFile.1/f': bad sparse map: 1000000000000000000 regions "
            "(the limit is 131072)",
            id="absurd-count-0.1",
        ),
        pytest.param(
            pax_sparse({"GNU.sparse.numblocks": "3", "GNU.sparse.map": "0,1"}, b"x"),
            "test.tar: entry './GNUSparseFile.1/f': bad sparse map: 2 numbers for 3 regions",
            id="count-mismatch-0.1",
        ),
        pytest.param(
            pax_sparse({"GNU.sparse.map": "0,1"}, b"x"),
            "test.tar: entry './GNUSparseFile.1/f': bad sparse map: GNU.sparse.numblocks is None",
            id="no-count-0.1",
        ),
        pytest.param(
            pax_sparse({"GNU.sparse.numblocks": "1", "GNU.sparse.map": "-1,1"}, b"x"),
            "test.tar: entry './GNUSparseFile.1/f': bad sparse map: b'-1' is not a number",
            id="negative-0.1",
        ),
        pytest.param(
            sparse_1x0(b"99999999999\n"),
            _BAD + "99999999999 regions (the limit is 131072)",
            id="absurd-count-1.0",
        ),
        pytest.param(
            sparse_1x0(b"3\n1000\n5\n", data=b""),
            _BAD + "the map runs past the entry's data",
            id="map-past-the-data-1.0",
        ),
        pytest.param(
            sparse_1x0(b"2" * 1200 + b"\n"),
            _BAD + "the map is longer than its numbers need",
            id="endless-count-1.0",
        ),
        pytest.param(
            sparse_1x0(b"1\n" + b"7" * 2000 + b"\n1\n"),
            _BAD + "the map is longer than its numbers need",
            id="endless-number-1.0",
        ),
        pytest.param(
            sparse_1x0(b"1\n0x10\n5\n"),
            _BAD + "b'0x10' is not a number",
            id="not-decimal-1.0",
        ),
        pytest.param(
            sparse_1x0(b"2" * 30 + b"\n"),
            _BAD + "region count b'222222222222222222222222'",
            id="long-count-1.0",
        ),
        pytest.param(
            sparse_0x1(SPARSE_REGIONS, size=10**18),
            _BAD + "a file of 1000000000000000000 bytes (the limit is 17179869184)",
            id="absurd-size",
        ),
        pytest.param(
            old_gnu_sparse([(1000, 5), (900, 600), (15_000, 3)]),
            "test.tar: entry 'f': bad sparse map: region 900+600 overlaps or precedes the one before",
            id="overlapping-old-gnu",
        ),
        pytest.param(
            old_gnu_sparse(SPARSE_REGIONS, size=5000),
            "test.tar: entry 'f': bad sparse map: region 15000+3 runs past the file's 5000 bytes",
            id="past-the-size-old-gnu",
        ),
        pytest.param(
            pax_sparse({"GNU.sparse.major": "2", "GNU.sparse.minor": "0"}, b"x"),
            "test.tar: tar header at offset 1024: unknown GNU sparse format b'2'.b'0'",
            id="unknown-version",
        ),
        pytest.param(
            pax_sparse({"GNU.sparse.numblocks": "0"}, b"", kind=tarfile.DIRTYPE, name="d/"),
            "test.tar: entry 'd/': sparse map on an entry that is no file",
            id="sparse-directory",
        ),
    ],
)
def test_bad_sparse_maps_are_named_errors(archive: bytes, message: str) -> None:
    if not message:  # the table's control: the same shape, consistent, reads
        assert read_all(archive)[0][0][0].size == SPARSE_SIZE
        return
    with pytest.raises(LayerError) as caught:
        read_all(archive)
    assert str(caught.value) == message


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


# -- bounds on one member's headers ------------------------------------------------------------


def with_pax(
    records: dict[str, str], name: str = "f", kind: bytes = tarfile.REGTYPE, **fields: object
) -> bytes:
    member, data = info(name, b"", kind, **fields)
    member.pax_headers = records
    return build([(member, data)])


def pax_block(records: str) -> bytes:
    body = b"".join(pax_record(line) for line in records.split("\n"))
    header, _ = info("PaxHeaders/f", body, b"x")
    return header.tobuf(tarfile.USTAR_FORMAT) + body + bytes(-len(body) % BLOCK)


def xattrs(count: int, name_length: int, value_length: int) -> dict[str, str]:
    return {
        f"SCHILY.xattr.user.{i:04d}".ljust(13 + name_length, "n"): "v" * value_length for i in range(count)
    }


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        pytest.param(
            b"".join(pax_block(f"k{i}=" + "v" * 600_000) for i in range(2)) + build([info("f")]),
            "test.tar: tar header at offset 600576: more than 1048576 bytes of PAX records for one entry",
            id="pax-bytes-in-total",
        ),
        pytest.param(
            raw_pax_member([f"k{i}=" for i in range(70_000)], "f", b""),
            "test.tar: tar header at offset 0: more than 65536 PAX records for one entry",
            id="pax-records",
        ),
        pytest.param(
            b"".join(pax_block("\n".join(f"k{j}{i}=" for i in range(40_000))) for j in range(2))
            + build([info("f")]),
            "test.tar: tar header at offset 468480: more than 65536 PAX records for one entry",
            id="pax-records-in-total",
        ),
        pytest.param(
            with_pax(xattrs(1, 256, 1)),
            "test.tar: entry 'f': extended attribute 'user.0000" + "n" * 55 + "' has a name of 256 bytes "
            "(the limit is 255, XATTR_NAME_MAX)",
            id="xattr-name",
        ),
        pytest.param(
            with_pax(xattrs(1, 4, 65_537)),
            "test.tar: entry 'f': extended attribute 'user.0000' has a value of 65537 bytes "
            "(the limit is 65536, XATTR_SIZE_MAX)",
            id="xattr-value",
        ),
        pytest.param(
            with_pax(xattrs(300, 250, 0)),
            "test.tar: entry 'f': extended attribute 'user.0261" + "n" * 55 + "' makes the names exceed "
            "65536 bytes (XATTR_LIST_MAX)",
            id="xattr-names-in-total",
        ),
        pytest.param(
            with_pax(xattrs(3, 4, 30_000)),
            "test.tar: entry 'f': extended attribute 'user.0002' makes the values exceed 65536 bytes "
            "together",
            id="xattr-values-in-total",
        ),
        pytest.param(
            with_pax({"linkpath": "x" * 4096}, "l", tarfile.SYMTYPE),
            "test.tar: entry 'l': symlink target of 4096 bytes (the limit is 4095, the kernel's PATH_MAX)",
            id="symlink-target",
        ),
        pytest.param(
            with_pax({"linkpath": "x" * 8193}, "h", tarfile.LNKTYPE),
            "test.tar: entry 'h': link target of 8193 bytes (the limit is 8192)",
            id="hardlink-target",
        ),
        pytest.param(
            with_pax({"path": "n" * 8193}),
            "test.tar: entry '" + "n" * 200 + "...' at offset 9216: name of 8193 bytes (the limit is 8192)",
            id="name",
        ),
    ],
)
def test_header_bounds_are_named_errors(archive: bytes, message: str) -> None:
    with pytest.raises(LayerError) as caught:
        read_all(archive)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "archive",
    [
        pytest.param(with_pax(xattrs(1, 255, 65_536)), id="xattr-at-the-limits"),
        pytest.param(with_pax(xattrs(256, 250, 0)), id="xattr-names-at-the-limit"),
        pytest.param(
            with_pax({"linkpath": "x" * 4095}, "f", tarfile.SYMTYPE), id="symlink-target-at-the-limit"
        ),
        pytest.param(with_pax({"path": "n" * 8192}, "f"), id="name-at-the-limit"),
        pytest.param(
            pax_block("a=" + "v" * 500_000) + pax_block("b=" + "v" * 500_000) + build([info("f")]),
            id="two-pax-headers-within-the-total",
        ),
    ],
)
def test_headers_at_the_bounds_are_read(archive: bytes) -> None:
    found, _ = read_all(archive)
    assert len(found) == 1


def test_damaged_sparse_members_are_read_whole_or_refused() -> None:
    """Random bytes changed in the maps and headers of every sparse form (checksums fixed up or not)."""
    stored = b"".join(bytes(MANY_FILE[s : s + n]) for s, n in MANY_REGIONS)
    bases = [
        sparse_0x0(SPARSE_REGIONS),
        sparse_0x1(SPARSE_REGIONS),
        sparse_1x0(map_1x0(SPARSE_REGIONS)),
        old_gnu_sparse(MANY_REGIONS, len(MANY_FILE), stored),
    ]
    rng = random.Random(11)
    outcomes = {"read": 0, "refused": 0}
    for _ in range(2000):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(min(len(data), 3000))] = rng.choice(
                [0, 10, 44, 48, 57, 255, rng.randrange(256)]
            )
        for start in range(0, len(data), BLOCK) if rng.random() < 0.5 else ():
            block = data[start : start + BLOCK]
            if block[257:262] == b"ustar":
                block[148:156] = b" " * 8
                data[start + 148 : start + 156] = b"%06o\x00 " % sum(block)
        reader = TarReader(io.BytesIO(bytes(data)), "t")
        try:
            for header in reader:
                read = sum(len(chunk) for chunk in reader.iter_data())
                assert read == header.size or header.typeflag != REGULAR
        except LayerError:
            outcomes["refused"] += 1
        else:
            outcomes["read"] += 1
    assert min(outcomes.values()) > 100, outcomes
