"""Where blobs live: a directory, or the members of a tar archive read in place.

Both stores hand out raw, unverified streams; the callers wrap them in a
VerifyingReader with the digest they expect.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass
from typing import Final

from imgtool.errors import (
    ImageFormatError,
    ImageNotFoundError,
    LayerError,
    MediaTypeError,
    OutputError,
    UnsafePathError,
)
from imgtool.image.compression import CHUNK, Compression, open_decompressed, sniff
from imgtool.image.digest import content_hasher
from imgtool.image.readable import FileSlice, RawStream, Readable
from imgtool.layers.paths import clean_path
from imgtool.layers.tarreader import DIRECTORY, HARDLINK, REGULAR, SYMLINK, TarReader
from imgtool.system.staging import no_space

_MAX_LINK_HOPS: Final = 40
# Reading a compressed archive as a stream: members kept whole in memory, in all, and the bytes
# kept of every other member (enough to sniff a layer's compression).
KEEP_MEMBER_BYTES: Final = 4 << 20
KEEP_TOTAL_BYTES: Final = 64 << 20
HEAD_BYTES: Final = 512


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symlink"),
    ):
        if test(mode):
            return name
    return "of an unknown type"


class DirStore:
    """An OCI image layout on disk. Symlinked blobs and directories are refused."""

    def __init__(self, root: str) -> None:
        self.location = root
        self._root = root

    def _open_fd(self, path: str) -> int:
        parts = path.split("/")
        current = self._root
        for part in parts[:-1]:
            current = os.path.join(current, part)
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                raise ImageNotFoundError(f"{self.location}: {path} not found") from None
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafePathError(f"{self.location}: {'/'.join(parts[:-1])} is not a directory")
        full = os.path.join(self._root, path)
        try:
            # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            raise ImageNotFoundError(f"{self.location}: {path} not found") from None
        except OSError as exc:
            if os.path.islink(full):
                raise UnsafePathError(
                    f"{self.location}: {path} is a symlink; blobs must be regular files"
                ) from None
            raise ImageFormatError(f"{self.location}: cannot open {path}: {exc.strerror}") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise ImageFormatError(f"{self.location}: {path} is not a regular file ({file_kind(mode)})")
        return fd

    def open(self, path: str) -> RawStream:
        fd = self._open_fd(path)
        return FileSlice(fd, 0, os.fstat(fd).st_size, owns_fd=True)

    def exists(self, path: str) -> bool:
        return os.path.lexists(os.path.join(self._root, path))

    def size(self, path: str) -> int:
        fd = self._open_fd(path)
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class StreamedFacts:
    """What reading a member of a compressed archive once, as the scan does, tells of it: its sha256
    and, when it is itself compressed, how many bytes it decompresses to (None when it does not
    decompress cleanly). A docker-archive describes its layer files by these, so that opening one
    needs no temporary copy of the archive."""

    sha256: str
    compression: Compression
    unpacked_size: int | None


@dataclass(frozen=True, slots=True)
class _Member:
    offset: int
    size: int
    typeflag: bytes
    linkname: bytes
    head: bytes = b""  # of a compressed archive: the first bytes of the data (all of a small member)
    content: bytes = b""  # of a compressed archive: the content digest of the data, to compare duplicates
    facts: StreamedFacts | None = None  # of a compressed archive: what the scan learnt of the data


class _StreamedMember:
    """A member of a compressed archive: served from what the scan kept, else from the spool."""

    def __init__(self, store: TarStore, member: _Member) -> None:
        self._store = store
        self._member = member
        self._pos = 0
        self._slice: FileSlice | None = None

    def read(self, n: int = -1) -> bytes:
        member = self._member
        left = member.size - self._pos
        if n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        if self._slice is None and self._pos + n <= len(member.head):
            data = member.head[self._pos : self._pos + n]
        else:
            if self._slice is None:
                self._slice = FileSlice(self._store.spooled_fd(), member.offset, member.size)
                self._slice.seek(self._pos)
            data = self._slice.read(n)
        self._pos += len(data)
        return data

    def close(self) -> None:
        pass

    def __enter__(self) -> _StreamedMember:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TarStore:
    """The members of a tar archive, read in place.

    A compressed archive (``docker save | gzip``) is read as a stream: the scan keeps small
    members (manifest.json, configs, index.json) and the first bytes of the others in memory,
    so that inspecting the image needs no temporary file. Only reading further into a big
    member (a layer) decompresses the archive into an anonymous temporary file in ``$TMPDIR``,
    once, after checking there is room for it.
    Symlinks and hardlinks between members (skopeo's docker-archive writes
    ``<id>/layer.tar -> ../<digest>.tar``) are followed inside the archive only.
    """

    def __init__(self, path: str) -> None:
        self.location = path
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO must not block
        except FileNotFoundError:
            raise ImageNotFoundError(f"{path}: no such file") from None
        except OSError as exc:
            raise ImageNotFoundError(f"{path}: cannot open: {exc.strerror}") from None
        mode = os.fstat(self._fd).st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            os.close(self._fd)
            raise ImageFormatError(f"{path}: not a regular file ({file_kind(mode)}): cannot read an archive")
        self._spool_fd = -1
        self._spool_lock = threading.Lock()
        self._stream_size = 0
        try:
            self.compression = sniff(os.pread(self._fd, 6, 0))
            self._members = self._scan()
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def streamed(self) -> bool:
        return self.compression is not Compression.NONE

    def _scan(self) -> dict[str, _Member]:
        size = os.fstat(self._fd).st_size
        source = FileSlice(self._fd, 0, size)
        counted = _Counted(source)
        if self.streamed:
            _, stream = open_decompressed(source, self.location)
            counted = _Counted(stream)
            reader = TarReader(counted, self.location)
        else:
            reader = TarReader(source, self.location, seek=source.seek)
        members: dict[str, _Member] = {}
        kept = 0
        try:
            for header in reader:
                name = clean_path(header.name).decode("utf-8", "surrogateescape")
                if header.sparse is not None:  # its data is not one range of the archive
                    raise ImageFormatError(f"{self.location}: member {name!r} is a sparse file")
                member = _Member(header.data_offset, header.size, header.typeflag, header.linkname)
                if self.streamed and header.typeflag == REGULAR:
                    whole = header.size <= KEEP_MEMBER_BYTES and kept + header.size <= KEEP_TOTAL_BYTES
                    head, digest, facts = _read_streamed(
                        reader, header.size if whole else HEAD_BYTES, f"{self.location}: {name}"
                    )
                    kept += len(head)
                    member = dataclasses.replace(member, head=head, content=digest, facts=facts)
                earlier = members.get(name)
                if earlier is not None and not self._same(earlier, member):
                    # Tools disagree on which copy counts (skopeo reads the first, tar keeps the last).
                    raise ImageFormatError(
                        f"{self.location}: ambiguous: the archive holds two different members named {name!r}"
                    )
                members.setdefault(name, member)
            if self.streamed:
                reader.drain()
            self._stream_size = counted.count if self.streamed else size
        except UnsafePathError as exc:
            raise ImageFormatError(f"{self.location}: not a usable image archive: {exc}") from None
        except LayerError as exc:
            if reader.header_count == 0:
                raise ImageFormatError(f"{self.location}: not an image archive (not a tar file)") from None
            raise ImageFormatError(str(exc)) from None
        if not members:
            raise ImageFormatError(f"{self.location}: not an image archive (empty tar)")
        return members

    def spooled_fd(self) -> int:
        """The decompressed archive in a temporary file, written the first time it is needed.

        Layers are read by several threads at once: one of them writes the file, the others wait.
        """
        with self._spool_lock:
            if self._spool_fd < 0:
                self._spool()
            return self._spool_fd

    def _spool(self) -> None:
        what = f"decompressing {self.location} to read its layers"
        hint = "set TMPDIR to a larger directory"
        try:
            where = tempfile.gettempdir()
        except OSError as exc:  # no usable temporary directory at all
            raise OutputError(f"no usable temporary directory ({what}); set TMPDIR to one") from exc
        try:
            free = shutil.disk_usage(where).free
            if free < self._stream_size:
                raise OutputError(
                    f"{where}: not enough space ({what} needs {self._stream_size} bytes, {free} free); {hint}"
                )
            with tempfile.TemporaryFile(prefix="imgtool-", dir=where) as spool:
                source = FileSlice(self._fd, 0, os.fstat(self._fd).st_size)
                _, stream = open_decompressed(source, self.location)
                written = 0
                while chunk := stream.read(CHUNK):
                    written += len(chunk)
                    if written > self._stream_size:
                        raise ImageFormatError(f"{self.location}: the archive changed while being read")
                    spool.write(chunk)
                spool.flush()
                self._spool_fd = os.dup(spool.fileno())
        except OSError as exc:
            full = no_space(exc, where, what, hint)
            raise full or OutputError(f"{where}: {exc.strerror or exc} ({what}); {hint}") from exc

    def _same(self, a: _Member, b: _Member) -> bool:
        if (a.typeflag, a.size, a.linkname) != (b.typeflag, b.size, b.linkname):
            return False
        if a.typeflag != REGULAR:
            return True
        if self.streamed:
            return a.content == b.content
        first, second = FileSlice(self._fd, a.offset, a.size), FileSlice(self._fd, b.offset, b.size)
        while chunk := first.read(CHUNK):
            if chunk != second.read(len(chunk)):
                return False
        return True

    def _resolve(self, path: str) -> _Member:
        current = path
        for _ in range(_MAX_LINK_HOPS):
            member = self._members.get(current)
            if member is None:
                raise ImageNotFoundError(f"{self.location}: {path} not found in the archive")
            if member.typeflag == SYMLINK:
                parent = current.rpartition("/")[0].encode("utf-8", "surrogateescape")
                target = member.linkname
                joined = target if target.startswith(b"/") else parent + b"/" + target
                try:
                    current = clean_path(joined).decode("utf-8", "surrogateescape")
                except UnsafePathError:
                    raise UnsafePathError(f"{self.location}: {path} links outside the archive") from None
                continue
            if member.typeflag == HARDLINK:
                current = clean_path(member.linkname).decode("utf-8", "surrogateescape")
                continue
            if member.typeflag == DIRECTORY:
                raise ImageFormatError(f"{self.location}: {path} is a directory in the archive")
            if member.typeflag != REGULAR:
                raise ImageFormatError(f"{self.location}: {path} is not a regular file in the archive")
            return member
        raise ImageFormatError(f"{self.location}: {path}: too many links in the archive")

    def open(self, path: str) -> RawStream:
        member = self._resolve(path)
        if self.streamed:
            return _StreamedMember(self, member)
        return FileSlice(self._fd, member.offset, member.size)

    def exists(self, path: str) -> bool:
        try:
            self._resolve(path)
        except ImageNotFoundError:
            return False
        return True

    def size(self, path: str) -> int:
        return self._resolve(path).size

    def streamed_facts(self, path: str) -> StreamedFacts | None:
        """Of a compressed archive, what the scan learnt of a regular member (None otherwise)."""
        return self._resolve(path).facts if self.streamed else None

    def names(self) -> list[str]:
        return list(self._members)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._spool_fd >= 0:
            os.close(self._spool_fd)
            self._spool_fd = -1


class _Counted:
    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.count += len(data)
        return data


class _MemberData:
    """A member's data as the scan reads it: each piece hashed twice (the content digest that
    compares duplicates, and sha256) and its first bytes kept."""

    def __init__(self, reader: TarReader, keep: int) -> None:
        self._reader = reader
        self._keep = keep
        self.content = content_hasher()
        self.sha256 = hashlib.sha256()
        self.head: list[bytes] = []
        self._have = 0

    def read(self, n: int = -1, /) -> bytes:
        chunk = self._reader.read_data(CHUNK if n < 0 else max(1, min(n, CHUNK)))
        if chunk:
            self.content.update(chunk)
            self.sha256.update(chunk)
            if self._have < self._keep:
                piece = bytes(chunk[: self._keep - self._have])
                self.head.append(piece)
                self._have += len(piece)
        return bytes(chunk)


def _read_streamed(reader: TarReader, keep: int, what: str) -> tuple[bytes, bytes, StreamedFacts]:
    """The member's first ``keep`` bytes, the content digest of all its data and what else one
    reading tells of it, read to its end. A compressed member is decompressed on the way, into
    nothing but a count of its bytes: memory stays at one piece."""
    data = _MemberData(reader, max(keep, HEAD_BYTES))
    unpacked: int | None = None
    kind = Compression.NONE
    try:
        kind, stream = open_decompressed(data, what)
        if kind is not Compression.NONE:
            unpacked = 0
            while piece := stream.read(CHUNK):
                unpacked += len(piece)
    except (MediaTypeError, LayerError):
        unpacked = None  # not a stream imgtool decompresses: described as it is stored
    while data.read(CHUNK):
        pass
    head = b"".join(data.head)[:keep]
    return head, data.content.digest(), StreamedFacts(data.sha256.hexdigest(), kind, unpacked)
