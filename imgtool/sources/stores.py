"""Where blobs live: a directory, or the members of a tar archive read in place.

Both stores hand out raw, unverified streams; the callers wrap them in a
VerifyingReader with the digest they expect.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from typing import Final, Protocol

from imgtool.compression import CHUNK, Compression, open_decompressed, sniff
from imgtool.digest import Digest
from imgtool.errors import ImageFormatError, ImageNotFoundError, LayerError, UnsafePathError
from imgtool.paths import clean_path
from imgtool.tarreader import DIRECTORY, HARDLINK, REGULAR, SYMLINK, TarReader

_MAX_LINK_HOPS: Final = 40


class RawStream(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
    def close(self) -> None: ...
    def __enter__(self) -> RawStream: ...
    def __exit__(self, *exc: object) -> None: ...


class BlobStore(Protocol):
    """Files addressed by their path inside an image layout or archive."""

    location: str

    def open(self, path: str) -> RawStream: ...
    def exists(self, path: str) -> bool: ...
    def size(self, path: str) -> int: ...
    def close(self) -> None: ...


def blob_path(digest: Digest) -> str:
    """Blob paths are only ever built from a parsed digest."""
    return f"blobs/{digest.algorithm}/{digest.hex}"


class FileSlice:
    """A byte range of an open file, read with pread so several can be read at once."""

    def __init__(self, fd: int, offset: int, size: int, owns_fd: bool = False) -> None:
        self._fd = fd
        self._start = offset
        self._pos = offset
        self._end = offset + size
        self._owns_fd = owns_fd

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._pos
        if n < 0 or n > left:
            n = left
        if n <= 0:
            return b""
        data = os.pread(self._fd, n, self._pos)
        if not data:
            raise LayerError("file ended early: it was truncated or changed while being read")
        self._pos += len(data)
        return data

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def seek(self, offset: int) -> None:
        self._pos = min(self._start + offset, self._end)

    def close(self) -> None:
        if self._owns_fd:
            os.close(self._fd)
            self._owns_fd = False

    def __enter__(self) -> FileSlice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ImageNotFoundError(f"{self.location}: {path} not found") from None
        except OSError as exc:
            if os.path.islink(full):
                raise UnsafePathError(
                    f"{self.location}: {path} is a symlink; blobs must be regular files"
                ) from None
            raise ImageFormatError(f"{self.location}: cannot open {path}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ImageFormatError(f"{self.location}: {path} is not a regular file")
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
class _Member:
    offset: int
    size: int
    typeflag: bytes
    linkname: bytes


class TarStore:
    """The members of a tar archive, read in place.

    A compressed archive (``docker save | gzip``) is first decompressed into an
    anonymous temporary file, since its members must be read at random.
    Symlinks and hardlinks between members (skopeo's docker-archive writes
    ``<id>/layer.tar -> ../<digest>.tar``) are followed inside the archive only.
    """

    def __init__(self, path: str) -> None:
        self.location = path
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ImageNotFoundError(f"{path}: no such file") from None
        except OSError as exc:
            raise ImageNotFoundError(f"{path}: cannot open: {exc.strerror}") from None
        try:
            self.compression = self._decompress_if_needed()
            self._members = self._scan()
        except BaseException:
            os.close(self._fd)
            raise

    def _decompress_if_needed(self) -> Compression:
        kind = sniff(os.pread(self._fd, 6, 0))
        if kind is Compression.NONE:
            return kind
        source = FileSlice(self._fd, 0, os.fstat(self._fd).st_size)
        _, stream = open_decompressed(source, self.location)
        spool = tempfile.TemporaryFile(prefix="imgtool-")  # noqa: SIM115 - lives as long as the store
        try:
            while chunk := stream.read(CHUNK):
                spool.write(chunk)
            spool.flush()
            fd = os.dup(spool.fileno())
        finally:
            spool.close()
        os.close(self._fd)
        self._fd = fd
        return kind

    def _scan(self) -> dict[str, _Member]:
        size = os.fstat(self._fd).st_size
        source = FileSlice(self._fd, 0, size)
        reader = TarReader(source, self.location, seek=source.seek)
        members: dict[str, _Member] = {}
        try:
            for header in reader:
                name = clean_path(header.name).decode("utf-8", "surrogateescape")
                if header.sparse is not None:  # its data is not one range of the archive
                    raise ImageFormatError(f"{self.location}: member {name!r} is a sparse file")
                member = _Member(header.data_offset, header.size, header.typeflag, header.linkname)
                earlier = members.get(name)
                if earlier is not None and not self._same(earlier, member):
                    # Tools disagree on which copy counts (skopeo reads the first, tar keeps the last).
                    raise ImageFormatError(
                        f"{self.location}: ambiguous: the archive holds two different members named {name!r}"
                    )
                members.setdefault(name, member)
        except UnsafePathError as exc:
            raise ImageFormatError(f"{self.location}: not a usable image archive: {exc}") from None
        except LayerError as exc:
            if reader.header_count == 0:
                raise ImageFormatError(f"{self.location}: not an image archive (not a tar file)") from None
            raise ImageFormatError(str(exc)) from None
        if not members:
            raise ImageFormatError(f"{self.location}: not an image archive (empty tar)")
        return members

    def _same(self, a: _Member, b: _Member) -> bool:
        if (a.typeflag, a.size, a.linkname) != (b.typeflag, b.size, b.linkname):
            return False
        if a.typeflag != REGULAR:
            return True
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
        return FileSlice(self._fd, member.offset, member.size)

    def exists(self, path: str) -> bool:
        try:
            self._resolve(path)
        except ImageNotFoundError:
            return False
        return True

    def size(self, path: str) -> int:
        return self._resolve(path).size

    def names(self) -> list[str]:
        return list(self._members)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
