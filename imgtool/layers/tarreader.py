"""A streaming tar reader with the leniency of Go's archive/tar and nothing more.

It understands ustar, GNU (long names, base-256 numbers, old-GNU sparse members) and
PAX headers (with GNU's sparse formats 0.0, 0.1 and 1.0), reads from any object with
``read(n)``, and never holds a member's data in memory. A sparse member's data is
read expanded: its holes come back as zeros.

What one member's headers may hold is bounded by the constants below (the kernel's
limits where it has one), so memory follows what is read, never what is claimed.
An archive that ends without its end-of-archive blocks, or without the padding
after its last member, is accepted with a warning (Go and umoci accept it too);
an archive cut off inside a header or inside a member's data is an error.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from imgtool.errors import LayerError
from imgtool.image.compression import CHUNK
from imgtool.image.readable import Readable
from imgtool.layers.paths import escape

BLOCK: Final = 512
_ZERO_BLOCK: Final = bytes(BLOCK)

REGULAR: Final = b"0"
HARDLINK: Final = b"1"
SYMLINK: Final = b"2"
CHAR: Final = b"3"
BLOCKDEV: Final = b"4"
DIRECTORY: Final = b"5"
FIFO: Final = b"6"
_OLD_REGULAR: Final = b"\x00"
_CONTIGUOUS: Final = b"7"
_PAX: Final = b"x"
_PAX_GLOBAL: Final = b"g"
_GNU_LONGNAME: Final = b"L"
_GNU_LONGLINK: Final = b"K"
_GNU_VOLUME: Final = b"V"
_GNU_SPARSE: Final = b"S"
_HEADER_ONLY: Final = frozenset({HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIRECTORY, FIFO})
_DEVICES: Final = frozenset({CHAR, BLOCKDEV})
_MAX_META_SIZE: Final = 1 << 20  # PAX records and GNU long names above this are refused

# Bounds on one member's headers. Go's archive/tar allows 1 MiB per extended header and keeps only
# the last of consecutive ones; imgtool merges consecutive PAX headers, so it bounds their sum.
MAX_PAX_BYTES: Final = 1 << 20  # PAX record data of one member, all its consecutive headers together
MAX_PAX_RECORDS: Final = 1 << 16  # PAX records of one member
# A name is a path; the kernel takes at most PATH_MAX (4096) bytes in one call, but a tree can be
# deeper (written with openat): 8 KiB is twice that, and bounds a name's depth to 4096. The merge
# holds paths as resolved (through symlinks) to the same bound.
MAX_PATH_BYTES: Final = 8192
MAX_SYMLINK_TARGET: Final = 4095  # the kernel's PATH_MAX, counting its NUL: symlink(2) takes no longer
XATTR_NAME_MAX: Final = 255  # the kernel's limits (linux/limits.h)
XATTR_SIZE_MAX: Final = 1 << 16  # one value; also the bound on all of one member's values together
XATTR_LIST_MAX: Final = 1 << 16  # all of one member's names, each with its NUL
# Equal xattr names and values are kept once per archive (labels and capabilities repeat from file to
# file, and the index cache then stores each once too); the distinct ones together are bounded.
MAX_XATTR_BYTES: Final = 1 << 26
# Sparse members: the number of regions a map may declare, and the size a sparse file may expand to
# (its holes cost time for everything that reads it expanded: hashing, a tar written out).
MAX_SPARSE_REGIONS: Final = 1 << 17
MAX_SPARSE_SIZE: Final = 1 << 34
_SPARSE_DIGITS: Final = 20  # the longest decimal a sparse map needs (2**63 has 19 digits)
_ZEROS: Final = bytes(CHUNK)


@dataclass(slots=True)
class TarHeader:
    """One member as the archive describes it (names are raw bytes)."""

    name: bytes
    typeflag: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: bytes
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes] | None = None
    pax: dict[str, bytes] = field(default_factory=dict)
    offset: int = 0  # where the member's first header starts
    data_offset: int = 0  # where its data starts (a sparse member's: its first stored region)
    # A sparse member's stored regions, (offset in the file, length) flattened, those of no length
    # left out; ``size`` is then the expanded size and the regions lie one after the other from
    # ``data_offset``. None for any other member.
    sparse: tuple[int, ...] | None = None


class _FieldError(ValueError):
    """A header field that is not a number; reported with the stream and offset by the reader."""


def _parse_number(field_bytes: bytes, what: str) -> int:
    try:  # the common shape, "0000644\0" or "0000644 ": one call
        return int(field_bytes.rstrip(b"\x00"), 8)
    except ValueError:
        pass
    if field_bytes and field_bytes[0] & 0x80:
        # GNU base-256: big-endian two's complement, the top bit marking the encoding.
        if field_bytes[0] == 0xFF:
            return int.from_bytes(field_bytes, "big", signed=True)
        return int.from_bytes(field_bytes, "big") & ~(0x80 << (8 * (len(field_bytes) - 1)))
    text = field_bytes.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise _FieldError(f"invalid number in field {what}: {field_bytes!r}") from None


def _cstring(field_bytes: bytes) -> bytes:
    end = field_bytes.find(b"\x00")
    return field_bytes if end < 0 else field_bytes[:end]


def block_sum(block: bytes | bytearray) -> int:
    """The sum of the bytes of a 512-byte block, computed in C.

    Adler-32's low half is one plus the sum of the bytes modulo 65521, which for 256
    bytes (at most 65,280) is the sum itself: two calls replace a loop over 512 bytes.
    """
    return (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2


def _checksum_ok(block: bytes) -> bool:
    stored = _parse_number(block[148:156], "chksum")
    unsigned = block_sum(block) - sum(block[148:156]) + 256  # the checksum field counts as eight spaces
    if stored == unsigned:
        return True
    signed = (
        unsigned - sum(b for b in block[:148] if b > 127) * 2 - sum(b for b in block[156:] if b > 127) * 2
    )
    return stored == signed


def parse_pax(data: bytes, max_records: int = MAX_PAX_RECORDS) -> tuple[dict[str, bytes], int]:
    """PAX extended header records: ``"%d %s=%s\\n"``, the length counting the whole record.

    Returns the records and how many there were. The repeated ``GNU.sparse.offset`` and
    ``GNU.sparse.numbytes`` records of GNU's sparse format 0.0 are joined into one
    ``GNU.sparse.map`` record, the form of format 0.1 (as Go's archive/tar does).
    """
    records: dict[str, bytes] = {}
    sparse_map: list[bytes] = []
    count = 0
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # some writers pad the records with NULs
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise _FieldError("malformed PAX record: no length")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise _FieldError(f"malformed PAX record length {data[pos:space]!r}") from None
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise _FieldError("malformed PAX record: bad length")
        key, sep, value = data[space + 1 : end - 1].partition(b"=")
        if not sep:
            raise _FieldError("malformed PAX record: no '='")
        count += 1
        if count > max_records:
            raise _FieldError(f"more than {MAX_PAX_RECORDS} PAX records for one entry")
        if key in (b"GNU.sparse.offset", b"GNU.sparse.numbytes"):
            if key != (b"GNU.sparse.offset", b"GNU.sparse.numbytes")[len(sparse_map) % 2] or b"," in value:
                raise _FieldError("malformed PAX record: GNU.sparse.offset and numbytes out of turn")
            sparse_map.append(value)
        else:
            records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    if sparse_map:
        records["GNU.sparse.map"] = b",".join(sparse_map)
    return records, count


class TarReader:
    """Iterate over the members of a tar stream; read or skip each member's data in turn."""

    def __init__(
        self,
        stream: Readable,
        what: str,
        warn: Callable[[str], None] | None = None,
        seek: Callable[[int], object] | None = None,
    ) -> None:
        """``seek(offset)``, when given, repositions ``stream`` so skipped data is never read."""
        self._stream = stream
        self._seek = seek
        self._what = what
        self._warn = warn or (lambda _msg: None)
        self._buf = b""
        self._pos = 0
        self._offset = 0  # stream offset of _buf[_pos]
        self._remaining = 0  # data bytes of the current member not yet consumed
        self._padding = 0
        self._ended = False
        self.member_count = 0
        self.header_count = 0  # valid header blocks read, extended headers included
        self._xattr_names: dict[str, str] = {}
        self._xattr_values: dict[bytes, bytes] = {}
        self._xattr_bytes = 0  # of the distinct names and values above
        # The current member's expansion, when it is sparse: its regions, the position in the
        # expanded data, the index in _sparse of the next region, and the expanded size.
        self._sparse: tuple[int, ...] | None = None
        self._sparse_pos = 0
        self._sparse_index = 0
        self._sparse_size = 0

    # -- low-level buffer -----------------------------------------------------------------

    def _fill(self, need: int) -> bool:
        """Make ``need`` bytes available in the buffer; False when the stream ends first."""
        have = len(self._buf) - self._pos
        if have >= need:
            return True
        parts = [self._buf[self._pos :]]
        while have < need:
            chunk = self._stream.read(max(CHUNK, need - have))
            if not chunk:
                self._buf, self._pos = b"".join(parts), 0
                return False
            parts.append(chunk)
            have += len(chunk)
        self._buf, self._pos = b"".join(parts), 0
        return True

    def _take(self, n: int) -> bytes:
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        self._offset += n
        return data

    def read_data(self, n: int = CHUNK) -> bytes | memoryview:
        """Up to ``n`` bytes of the current member's data; empty at its end.

        A memoryview into the read buffer, not a copy: use it before the next read. A sparse
        member's data comes expanded, its holes as zeros.
        """
        if self._sparse is None:
            return self._read_raw(n)
        pos, regions, index = self._sparse_pos, self._sparse, self._sparse_index
        if index < len(regions):
            start, length = regions[index], regions[index + 1]
            if pos < start:  # a hole before the next region
                n = min(n, CHUNK, start - pos)
                self._sparse_pos = pos + n
                return memoryview(_ZEROS)[:n]
            data = self._read_raw(min(n, start + length - pos))
            self._sparse_pos = pos + len(data)
            if self._sparse_pos == start + length:
                self._sparse_index = index + 2
            return data
        n = min(n, CHUNK, self._sparse_size - pos)  # the hole at the end
        self._sparse_pos = pos + n
        return memoryview(_ZEROS)[:n]

    def _read_raw(self, n: int) -> bytes | memoryview:
        """Up to ``n`` bytes of the current member's data as stored; empty at its end."""
        if self._remaining <= 0:
            return b""
        n = min(n, self._remaining)
        have = len(self._buf) - self._pos
        if have == 0:
            chunk = self._stream.read(max(n, CHUNK))
            if not chunk:
                raise LayerError(
                    f"{self._what}: tar archive is truncated inside the data of a member "
                    f"({self._remaining} bytes missing)"
                )
            self._buf, self._pos = chunk, 0
            have = len(chunk)
        if have <= n and self._pos == 0:
            data: bytes | memoryview = self._buf
            self._buf = b""
            n = len(data)
        else:
            n = min(n, have)
            data = memoryview(self._buf)[self._pos : self._pos + n]
            self._pos += n
        self._offset += n
        self._remaining -= n
        return data

    def iter_data(self) -> Iterator[bytes]:
        while chunk := self.read_data():
            yield bytes(chunk)

    def skip_data(self) -> None:
        """Skip the rest of the current member's data, seeking when the stream allows it."""
        self._sparse = None
        buffered = len(self._buf) - self._pos
        if self._remaining <= buffered:
            self._pos += self._remaining
            self._offset += self._remaining
            self._remaining = 0
            return
        if self._seek is not None:
            self._offset += self._remaining
            self._remaining = 0
            self._buf, self._pos = b"", 0
            self._seek(self._offset)
            return
        while self._read_raw(CHUNK):
            pass

    def _skip_padding(self) -> bool:
        """Consume the padding after a member; False when the stream ends inside it."""
        if self._padding == 0:
            return True
        pad = self._padding
        self._padding = 0
        if not self._fill(pad):
            have = len(self._buf) - self._pos
            self._take(have)
            return False
        self._take(pad)
        return True

    # -- headers ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[TarHeader]:
        return self

    def __next__(self) -> TarHeader:
        header = self.next()
        if header is None:
            raise StopIteration
        return header

    def next(self) -> TarHeader | None:
        if self._ended:
            return None
        self.skip_data()
        if not self._skip_padding():
            self._warn(f"{self._what}: tar archive ends without padding after its last member")
            self._ended = True
            return None
        pax: dict[str, bytes] = {}
        pax_bytes = pax_records = 0
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            start = self._offset
            block = self._read_block()
            if block is None:
                return None
            typeflag = block[156:157]
            if typeflag in (_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK):
                try:
                    size = _parse_number(block[124:136], "size")
                except _FieldError as exc:
                    raise LayerError(f"{self._what}: tar header at offset {start}: {exc}") from None
                if size < 0 or size > _MAX_META_SIZE:
                    raise LayerError(f"{self._what}: extended header of {size} bytes at offset {start}")
                if typeflag == _PAX:
                    pax_bytes += size
                    if pax_bytes > MAX_PAX_BYTES:
                        raise LayerError(
                            f"{self._what}: tar header at offset {start}: more than {MAX_PAX_BYTES} bytes "
                            "of PAX records for one entry"
                        )
                data = self._read_meta(size)
                if typeflag == _PAX:
                    try:
                        records, count = parse_pax(data, MAX_PAX_RECORDS - pax_records)
                        pax_records += count
                        pax.update(records)
                    except _FieldError as exc:
                        raise LayerError(f"{self._what}: tar header at offset {start}: {exc}") from None
                elif typeflag == _GNU_LONGNAME:
                    long_name = _cstring(data)
                elif typeflag == _GNU_LONGLINK:
                    long_link = _cstring(data)
                continue  # global headers carry nothing imgtool uses
            if typeflag == _GNU_VOLUME:
                continue
            try:
                header = self._build(block, start, pax, long_name, long_link)
            except _FieldError as exc:
                raise LayerError(f"{self._what}: tar header at offset {start}: {exc}") from None
            self.member_count += 1
            return header

    def _read_block(self) -> bytes | None:
        start = self._offset
        if not self._fill(BLOCK):
            if len(self._buf) - self._pos == 0:
                self._warn(f"{self._what}: tar archive ends without end-of-archive blocks")
                self._ended = True
                return None
            raise LayerError(f"{self._what}: tar archive is truncated inside a header at offset {start}")
        block = self._take(BLOCK)
        if block == _ZERO_BLOCK:
            if self._fill(BLOCK) and self._take(BLOCK) != _ZERO_BLOCK:
                raise LayerError(f"{self._what}: non-zero block after a zero block at offset {start + BLOCK}")
            self._ended = True
            return None
        try:
            valid = _checksum_ok(block)
        except _FieldError:
            valid = False
        if not valid:
            raise LayerError(f"{self._what}: invalid tar header (bad checksum) at offset {start}")
        self.header_count += 1
        return block

    def _read_meta(self, size: int) -> bytes:
        padded = -size % BLOCK
        if not self._fill(size + padded):
            raise LayerError(f"{self._what}: tar archive is truncated inside an extended header")
        data = self._take(size)
        self._take(padded)
        return data

    def _build(
        self,
        block: bytes,
        start: int,
        pax: dict[str, bytes],
        long_name: bytes | None,
        long_link: bytes | None,
    ) -> TarHeader:
        typeflag = block[156:157]
        magic = block[257:265]
        name = _cstring(block[0:100])
        if magic[:6] == b"ustar\x00":  # POSIX ustar/PAX: the prefix field extends the name
            prefix = _cstring(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        if long_name is not None:
            name = long_name
        linkname = long_link if long_link is not None else _cstring(block[157:257])
        size = _parse_number(block[124:136], "size")
        mtime_ns = _parse_number(block[136:148], "mtime") * 1_000_000_000
        uid = _parse_number(block[108:116], "uid")
        gid = _parse_number(block[116:124], "gid")
        xattrs: dict[str, bytes] | None = None
        if pax:
            name = pax.get("path", name)
            linkname = pax.get("linkpath", linkname)
            size = _pax_int(pax, "size", size)
            uid = _pax_int(pax, "uid", uid)
            gid = _pax_int(pax, "gid", gid)
            if "mtime" in pax:
                mtime_ns = _pax_time_ns(pax["mtime"])
            xattrs = self._xattrs(pax, name)
            if "GNU.sparse.name" in pax and _sparse_version(pax) is not None:
                name = pax["GNU.sparse.name"]
        self._check_names(name, typeflag, linkname, start)
        if size < 0:
            raise LayerError(f"{self._what}: entry '{_shown(name)}': negative size {size}")
        sparse: list[int] | None = None
        real_size = size
        if typeflag == _GNU_SPARSE:
            if magic != b"ustar  \x00":
                raise LayerError(f"{self._what}: entry '{_shown(name)}': sparse entry without a GNU header")
            sparse = self._old_gnu_sparse_map(block, name)
            real_size = _parse_number(block[483:495], "realsize")
            typeflag = REGULAR
        if typeflag in (_OLD_REGULAR, _CONTIGUOUS):
            typeflag = DIRECTORY if typeflag == _OLD_REGULAR and name.endswith(b"/") else REGULAR
        data_size = 0 if typeflag in _HEADER_ONLY else size
        self._remaining = data_size
        self._padding = -data_size % BLOCK
        version = _sparse_version(pax) if pax and sparse is None else None
        if version is not None:
            if typeflag != REGULAR:
                raise LayerError(
                    f"{self._what}: entry '{_shown(name)}': sparse map on an entry that is no file"
                )
            real_size = _pax_int(pax, "GNU.sparse.size", _pax_int(pax, "GNU.sparse.realsize", size))
            sparse = self._pax_sparse_map(pax, name) if version == "0" else self._sparse_map_1x0(name)
        regions: tuple[int, ...] | None = None
        if sparse is not None:
            regions = self._start_sparse(sparse, real_size, name)
            data_size = real_size
        return TarHeader(
            name=name,
            typeflag=typeflag,
            mode=_parse_number(block[100:108], "mode") & 0o7777,
            uid=uid,
            gid=gid,
            size=data_size,
            mtime_ns=mtime_ns,
            linkname=linkname,
            devmajor=_parse_number(block[329:337], "devmajor") if typeflag in _DEVICES else 0,
            devminor=_parse_number(block[337:345], "devminor") if typeflag in _DEVICES else 0,
            xattrs=xattrs,
            pax=pax,
            offset=start,
            data_offset=self._offset,
            sparse=regions,
        )

    # -- bounds on what headers hold ------------------------------------------------------------

    def _check_names(self, name: bytes, typeflag: bytes, linkname: bytes, start: int) -> None:
        if len(name) > MAX_PATH_BYTES:
            raise LayerError(
                f"{self._what}: entry '{_shown(name)}' at offset {start}: name of {len(name)} bytes "
                f"(the limit is {MAX_PATH_BYTES})"
            )
        if typeflag == SYMLINK and len(linkname) > MAX_SYMLINK_TARGET:
            raise LayerError(
                f"{self._what}: entry '{_shown(name)}': symlink target of {len(linkname)} bytes "
                f"(the limit is {MAX_SYMLINK_TARGET}, the kernel's PATH_MAX)"
            )
        if typeflag != SYMLINK and len(linkname) > MAX_PATH_BYTES:
            raise LayerError(
                f"{self._what}: entry '{_shown(name)}': link target of {len(linkname)} bytes "
                f"(the limit is {MAX_PATH_BYTES})"
            )

    def _xattrs(self, pax: dict[str, bytes], name: bytes) -> dict[str, bytes] | None:
        """The SCHILY.xattr records, within the kernel's limits on one inode's extended attributes."""
        xattrs: dict[str, bytes] | None = None
        names = values = 0
        for key, value in pax.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            xattr = key[len("SCHILY.xattr.") :]
            length = len(xattr.encode("utf-8", "surrogateescape"))
            names += length + 1
            values += len(value)
            problem = None
            if length > XATTR_NAME_MAX:
                problem = f"has a name of {length} bytes (the limit is {XATTR_NAME_MAX}, XATTR_NAME_MAX)"
            elif len(value) > XATTR_SIZE_MAX:
                problem = f"has a value of {len(value)} bytes (the limit is {XATTR_SIZE_MAX}, XATTR_SIZE_MAX)"
            elif names > XATTR_LIST_MAX:
                problem = f"makes the names exceed {XATTR_LIST_MAX} bytes (XATTR_LIST_MAX)"
            elif values > XATTR_SIZE_MAX:
                problem = f"makes the values exceed {XATTR_SIZE_MAX} bytes together"
            if problem is not None:
                shown = _shown(xattr.encode("utf-8", "surrogateescape")[:64])
                raise LayerError(
                    f"{self._what}: entry '{_shown(name)}': extended attribute '{shown}' {problem}"
                )
            xattrs = xattrs or {}
            xattrs[self._pooled_name(xattr, length)] = self._pooled_value(value)
        if self._xattr_bytes > MAX_XATTR_BYTES:
            raise LayerError(
                f"{self._what}: entry '{_shown(name)}': more than {MAX_XATTR_BYTES} bytes of distinct "
                "extended attributes in the archive"
            )
        return xattrs

    def _pooled_name(self, xattr: str, length: int) -> str:
        known = self._xattr_names.get(xattr)
        if known is None:
            self._xattr_names[xattr] = known = xattr
            self._xattr_bytes += length
        return known

    def _pooled_value(self, value: bytes) -> bytes:
        known = self._xattr_values.get(value)
        if known is None:
            self._xattr_values[value] = known = value
            self._xattr_bytes += len(value)
        return known

    # -- sparse members -------------------------------------------------------------------------

    def _sparse_error(self, name: bytes, problem: str) -> LayerError:
        return LayerError(f"{self._what}: entry '{_shown(name)}': bad sparse map: {problem}")

    def _old_gnu_sparse_map(self, block: bytes, name: bytes) -> list[int]:
        """The regions of an old-GNU ``S`` header and of the extension blocks that follow it."""
        regions: list[int] = []
        table, count, extended = block[386:482], 4, block[482]
        while True:
            for i in range(count):
                entry = table[24 * i : 24 * i + 24]
                if entry[0] == 0:
                    break
                if len(regions) >= 2 * MAX_SPARSE_REGIONS:
                    raise self._sparse_error(name, f"more than {MAX_SPARSE_REGIONS} regions")
                try:
                    regions += (_parse_number(entry[:12], "offset"), _parse_number(entry[12:], "numbytes"))
                except _FieldError as exc:
                    raise self._sparse_error(name, str(exc)) from None
            if not extended:
                return regions
            if not self._fill(BLOCK):
                raise LayerError(f"{self._what}: tar archive is truncated inside a sparse header")
            ext = self._take(BLOCK)
            table, count, extended = ext[:504], 21, ext[504]

    def _pax_sparse_map(self, pax: dict[str, bytes], name: bytes) -> list[int]:
        """Formats 0.0 and 0.1: GNU.sparse.numblocks and the map in GNU.sparse.map."""
        declared = pax.get("GNU.sparse.numblocks")
        if declared is None or not declared.isdigit():
            raise self._sparse_error(name, f"GNU.sparse.numblocks is {declared!r}")
        count = int(declared)
        if count > MAX_SPARSE_REGIONS:
            raise self._sparse_error(name, f"{count} regions (the limit is {MAX_SPARSE_REGIONS})")
        text = pax.get("GNU.sparse.map", b"")
        numbers = text.split(b",") if text else []
        if len(numbers) != 2 * count:
            raise self._sparse_error(name, f"{len(numbers)} numbers for {count} regions")
        return self._numbers(numbers, name)

    def _sparse_map_1x0(self, name: bytes) -> list[int]:
        """Format 1.0: the map starts the member's data, decimal numbers a line each, in whole blocks."""
        buf = bytearray()
        lines = 0
        wanted = 1
        count: int | None = None
        while True:
            while lines < wanted:
                # A number takes at most 21 bytes with its newline: a longer map is not one.
                if len(buf) >= (_SPARSE_DIGITS + 1) * wanted + BLOCK:
                    raise self._sparse_error(name, "the map is longer than its numbers need")
                block = self._read_exact(BLOCK)
                if block is None:
                    raise self._sparse_error(name, "the map runs past the entry's data")
                buf += block
                lines += block.count(b"\n")
            if count is not None:
                break
            first = bytes(buf[: buf.index(b"\n")])
            if not first.isdigit() or len(first) > _SPARSE_DIGITS:
                raise self._sparse_error(name, f"region count {first[:24]!r}")
            count = int(first)
            if count > MAX_SPARSE_REGIONS:
                raise self._sparse_error(name, f"{count} regions (the limit is {MAX_SPARSE_REGIONS})")
            wanted = 1 + 2 * count
        return self._numbers(bytes(buf).split(b"\n")[1:wanted], name)

    def _read_exact(self, n: int) -> bytes | None:
        parts: list[bytes] = []
        left = n
        while left:
            chunk = self._read_raw(left)
            if not chunk:
                return None
            parts.append(bytes(chunk))
            left -= len(chunk)
        return b"".join(parts)

    def _numbers(self, fields: list[bytes], name: bytes) -> list[int]:
        for value in fields:
            if not value.isdigit() or len(value) > _SPARSE_DIGITS:
                raise self._sparse_error(name, f"{value[:24]!r} is not a number")
        return [int(value) for value in fields]

    def _start_sparse(self, regions: list[int], size: int, name: bytes) -> tuple[int, ...]:
        """Check a map against the file's size and the data stored; set the current member to expand."""
        if size < 0 or size > MAX_SPARSE_SIZE:
            raise self._sparse_error(name, f"a file of {size} bytes (the limit is {MAX_SPARSE_SIZE})")
        kept: list[int] = []
        end = stored = 0
        for i in range(0, len(regions), 2):
            start, length = regions[i], regions[i + 1]
            if start < 0 or length < 0:
                raise self._sparse_error(name, f"negative region {start}+{length}")
            if start < end:
                raise self._sparse_error(name, f"region {start}+{length} overlaps or precedes the one before")
            end = start + length
            if end > size:
                raise self._sparse_error(name, f"region {start}+{length} runs past the file's {size} bytes")
            stored += length
            if length:
                kept += (start, length)
        if stored != self._remaining:
            raise self._sparse_error(name, f"the regions hold {stored} bytes, the entry {self._remaining}")
        self._sparse = tuple(kept)
        self._sparse_pos = self._sparse_index = 0
        self._sparse_size = size
        return self._sparse

    def drain(self) -> int:
        """Read whatever follows the archive (so digests see every byte); returns its length."""
        self.skip_data()
        extra = len(self._buf) - self._pos
        self._buf, self._pos = b"", 0
        while chunk := self._stream.read(CHUNK):
            extra += len(chunk)
        return extra


def is_hole(chunk: bytes | memoryview) -> bool:
    """Whether ``read_data`` returned this chunk for a sparse member's hole (it is then all zeros)."""
    return isinstance(chunk, memoryview) and chunk.obj is _ZEROS


def zero_chunks(size: int) -> Iterator[memoryview]:
    """``size`` zero bytes, in pieces of at most CHUNK (a sparse file's holes, written out)."""
    while size > 0:
        n = min(size, CHUNK)
        yield memoryview(_ZEROS)[:n]
        size -= n


def _sparse_version(pax: dict[str, bytes]) -> str | None:
    """ "0" for GNU's PAX sparse formats 0.0 and 0.1, "1" for 1.0, None for a member that is not sparse."""
    major, minor = pax.get("GNU.sparse.major"), pax.get("GNU.sparse.minor")
    if (major, minor) in ((b"0", b"0"), (b"0", b"1")):
        return "0"
    if (major, minor) == (b"1", b"0"):
        return "1"
    if major is not None or minor is not None:
        raise _FieldError(f"unknown GNU sparse format {major!r}.{minor!r}")
    if "GNU.sparse.map" in pax or "GNU.sparse.numblocks" in pax:
        return "0"  # 0.0 and 0.1 wrote no version
    return None


def _shown(name: bytes) -> str:
    """A name for a message: escaped, and cut short when long."""
    return escape(name) if len(name) <= 200 else escape(name[:200]) + "..."


def _pax_int(pax: dict[str, bytes], key: str, default: int) -> int:
    if key not in pax:
        return default
    try:
        return int(pax[key])
    except ValueError:
        raise _FieldError(f"invalid PAX {key} value {pax[key]!r}") from None


def _pax_time_ns(value: bytes) -> int:
    text = value.decode("ascii", "replace")
    whole, _, frac = text.partition(".")
    try:
        seconds = int(whole)
        nanos = int((frac + "000000000")[:9]) if frac else 0
    except ValueError:
        raise _FieldError(f"invalid PAX mtime {value!r}") from None
    return seconds * 1_000_000_000 + (-nanos if whole.startswith("-") else nanos)
