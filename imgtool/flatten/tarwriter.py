"""A small deterministic PAX tar writer: raw byte names, nanosecond mtimes, binary xattrs."""

from __future__ import annotations

import errno
import io
import os
import stat
from typing import BinaryIO, Final

from imgtool.errors import OutputError
from imgtool.layers.paths import display
from imgtool.layers.tarreader import BLOCK, block_sum
from imgtool.merge.spool import read_range

_ZERO: Final = bytes(BLOCK)
_SENDFILE_MIN: Final = 256 << 10
_MAX_OCTAL: Final = {8: 0o7777777, 12: 0o77777777777}


def _number(value: int, width: int) -> bytes:
    """Octal where it fits, else GNU base-256 (which GNU tar and Go read); ValueError beyond that."""
    if 0 <= value < 8 ** (width - 1):
        return b"%0*o\x00" % (width - 1, value)
    if -(1 << (8 * width - 2)) <= value < 1 << (8 * width - 2):
        encoded = bytearray(value.to_bytes(width, "big", signed=True))
        encoded[0] |= 0x80
        return bytes(encoded)
    raise ValueError(f"{value} does not fit a {width}-byte tar header field")


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length = len(str(length).encode()) + len(body)
    return str(length).encode() + body


def _header(
    name: bytes,
    typeflag: bytes,
    *,
    mode: int = 0,
    uid: int = 0,
    gid: int = 0,
    size: int = 0,
    mtime: int = 0,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
) -> bytes:
    block = bytearray(BLOCK)
    block[0:100] = name[:100].ljust(100, b"\x00")
    block[100:108] = _number(mode, 8)
    block[108:116] = _number(uid, 8)
    block[116:124] = _number(gid, 8)
    block[124:136] = _number(size, 12)
    block[136:148] = _number(mtime, 12)
    block[148:156] = b" " * 8
    block[156:157] = typeflag
    block[157:257] = linkname[:100].ljust(100, b"\x00")
    block[257:265] = b"ustar\x0000"
    block[329:337] = _number(devmajor, 8)
    block[337:345] = _number(devminor, 8)
    block[148:156] = b"%06o\x00 " % block_sum(block)
    return bytes(block)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class TarWriter:
    """Writes members to a binary stream; call :meth:`close` to write the end-of-archive blocks."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.bytes_written = 0
        self._regular: bool | None = None  # whether ``out`` is a regular file; known at first use

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self.bytes_written += len(data)

    def add(
        self,
        name: bytes,
        typeflag: bytes,
        *,
        mode: int = 0,
        uid: int = 0,
        gid: int = 0,
        size: int = 0,
        mtime_ns: int = 0,
        linkname: bytes = b"",
        devmajor: int = 0,
        devminor: int = 0,
        xattrs: dict[str, bytes] | None = None,
    ) -> None:
        """Write one member's header(s); a regular file's data must follow via :meth:`write_data`."""
        records: list[bytes] = []
        if len(name) > 100 or not name.isascii():
            records.append(_pax_record(b"path", name))
        if len(linkname) > 100 or not linkname.isascii():
            records.append(_pax_record(b"linkpath", linkname))
        for field, number, width in ((b"uid", uid, 8), (b"gid", gid, 8), (b"size", size, 12)):
            if not 0 <= number <= _MAX_OCTAL[width]:
                records.append(_pax_record(field, str(number).encode()))
        seconds, nanos = divmod(mtime_ns, 1_000_000_000)
        if nanos or not 0 <= seconds <= _MAX_OCTAL[12]:
            text = str(seconds) + (("." + f"{nanos:09d}".rstrip("0")) if nanos else "")
            records.append(_pax_record(b"mtime", text.encode()))
        for xattr, value in sorted((xattrs or {}).items()):
            records.append(_pax_record(b"SCHILY.xattr." + xattr.encode("utf-8", "surrogateescape"), value))
        if not (_is_utf8(name) and _is_utf8(linkname)):
            records.insert(0, _pax_record(b"hdrcharset", b"BINARY"))
        try:
            header = _header(
                name,
                typeflag,
                mode=mode,
                uid=uid,
                gid=gid,
                size=size,
                mtime=seconds,
                linkname=linkname,
                devmajor=devmajor,
                devminor=devminor,
            )
        except ValueError as exc:
            raise OutputError(f"cannot write {display(name.rstrip(b'/'))} to the tar: {exc}") from None
        if records:
            pax = b"".join(records)
            base = name.rstrip(b"/").rsplit(b"/", 1)[-1][:90] or b"root"
            self._write(_header(b"PaxHeaders/" + base, b"x", mode=0o644, size=len(pax)))
            self._write(pax)
            self._write(_ZERO[: -len(pax) % BLOCK])
        self._write(header)

    def write_data(self, data: bytes | memoryview) -> None:
        self._write(data)

    def write_from(self, source: int, offset: int, size: int) -> None:
        """Copy ``size`` bytes at ``offset`` of a file into the tar, in the kernel where that is safe.

        The kernel copies only into a regular file. ``sendfile`` into a pipe or a socket does not
        copy: it hands the reader references to the source's page-cache pages, and the caller gives
        the source's pages back (:func:`imgtool.merge.spool.release_range` punches a hole) as soon as this
        returns, while the reader may not have consumed them yet: it would read zeros. Into a
        regular file ``sendfile`` writes the bytes into the target's own pages before it returns,
        so the source may change at once. Every other output (pipe, socket, terminal, device) gets
        a copy made here. Small files go through the output's buffer: two system calls each would
        cost more.
        """
        if size < _SENDFILE_MIN or not self._to_regular_file():
            for chunk in read_range(source, offset, size):
                self._write(chunk)
            return
        self._out.flush()
        target = self._out.fileno()
        done = 0
        try:
            while done < size:
                sent = os.sendfile(target, source, offset + done, size - done)
                if sent == 0:
                    raise OSError(errno.EIO, "spool file ended early")
                done += sent
        except OSError as exc:  # e.g. a file opened for appending: copy the rest here
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            self._regular = False
            self.bytes_written += done
            for chunk in read_range(source, offset + done, size - done):
                self._write(chunk)
            return
        self.bytes_written += size

    def _to_regular_file(self) -> bool:
        """Whether the output is a regular file, the one target the kernel copies into (see write_from)."""
        if self._regular is None:
            try:
                self._regular = stat.S_ISREG(os.fstat(self._out.fileno()).st_mode)
            except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
                self._regular = False
        return self._regular

    def end_data(self, size: int) -> None:
        """Pad a regular file's data (of ``size`` bytes) to a whole block."""
        self._write(_ZERO[: -size % BLOCK])

    def close(self) -> None:
        self._write(_ZERO + _ZERO)
