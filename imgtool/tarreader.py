"""A streaming tar reader with the leniency of Go's archive/tar and nothing more.

It understands ustar, GNU (long names, base-256 numbers) and PAX headers, reads
from any object with ``read(n)``, and never holds a member's data in memory.
An archive that ends without its end-of-archive blocks, or without the padding
after its last member, is accepted with a warning (Go and umoci accept it too);
an archive cut off inside a header or inside a member's data is an error.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from imgtool.compression import CHUNK
from imgtool.errors import LayerError
from imgtool.paths import escape
from imgtool.readable import Readable

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
_HEADER_ONLY: Final = frozenset({HARDLINK, SYMLINK, CHAR, BLOCKDEV, DIRECTORY, FIFO})
_DEVICES: Final = frozenset({CHAR, BLOCKDEV})
_MAX_META_SIZE: Final = 1 << 20  # PAX records and GNU long names above this are refused


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
    data_offset: int = 0  # where its data starts


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


def parse_pax(data: bytes) -> dict[str, bytes]:
    """PAX extended header records: ``"%d %s=%s\\n"``, the length counting the whole record."""
    records: dict[str, bytes] = {}
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
        records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return records


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

        A memoryview into the read buffer, not a copy: use it before the next read.
        """
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
        while self.read_data():
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
                data = self._read_meta(size)
                if typeflag == _PAX:
                    try:
                        pax.update(parse_pax(data))
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
            for key, value in pax.items():
                if key.startswith("SCHILY.xattr."):
                    xattrs = xattrs or {}
                    xattrs[key[len("SCHILY.xattr.") :]] = value
                elif key.startswith("GNU.sparse."):
                    raise LayerError(
                        f"{self._what}: entry '{escape(name)}': GNU sparse files are not supported"
                    )
        if size < 0:
            raise LayerError(f"{self._what}: entry '{escape(name)}': negative size {size}")
        if typeflag in (_OLD_REGULAR, _CONTIGUOUS):
            typeflag = DIRECTORY if typeflag == _OLD_REGULAR and name.endswith(b"/") else REGULAR
        data_size = 0 if typeflag in _HEADER_ONLY else size
        self._remaining = data_size
        self._padding = -data_size % BLOCK
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
        )

    def drain(self) -> int:
        """Read whatever follows the archive (so digests see every byte); returns its length."""
        self.skip_data()
        extra = len(self._buf) - self._pos
        self._buf, self._pos = b"", 0
        while chunk := self._stream.read(CHUNK):
            extra += len(chunk)
        return extra


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
