"""Blobs fetched from a registry, kept on disk by digest: ``<cache>/blobs/sha256/HEX``.

A blob is written to a temporary file beside its place while it streams to its reader, and renamed
into place only once it has all arrived and its digest verified: so a blob in the cache is always
whole, and two runs fetching the same blob at once both end with it (the second rename replaces the
first's file with the same bytes). A cached file is never trusted: before it is used, its size is
held to the manifest's and its content hashed again; a file that fails either is removed, and the
blob fetched again. Symlinks are never followed: a blob's file is opened ``O_NOFOLLOW``, a link in
its place is removed, and a link where a directory of the cache should be disables the cache.

The cache holds at most ``max_bytes``: room is made before a blob is written, least recently used
blobs first (using a blob sets its mtime), and a blob larger than the limit is not kept at all. So
what is on disk beyond the limit is at most the blobs being written at that moment.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Final

from imgtool.image.compression import CHUNK
from imgtool.image.digest import Digest
from imgtool.image.readable import FileSlice, RawStream
from imgtool.system.cachedir import (
    TEMP_PREFIX,
    CacheFile,
    cache_files,
    cache_home,
    evict,
    parse_size,
    real_directory,
    remove,
    stale,
)

DEFAULT_MAX_BYTES: Final = 10 * 1000**3
MAX_ENV: Final = "IMGTOOL_BLOB_CACHE_MAX"
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_WRITE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def configured_max_bytes() -> int:
    """The limit ``$IMGTOOL_BLOB_CACHE_MAX`` sets (``10G``, ``500M``, bytes), else 10 GB."""
    text = os.environ.get(MAX_ENV)
    return DEFAULT_MAX_BYTES if text is None or not text.strip() else parse_size(text, MAX_ENV)


class BlobCache:
    """The blob cache under ``directory`` (default ``$XDG_CACHE_HOME/imgtool``), at most ``max_bytes``
    (default :func:`configured_max_bytes`, read when first needed; 0 keeps nothing). Without
    ``keep``, blobs are read from it but none is added (a copy: its destination keeps them)."""

    def __init__(
        self, directory: Path | None = None, max_bytes: int | None = None, *, keep: bool = True
    ) -> None:
        self.directory = (directory or cache_home()) / "blobs"
        self.keep = keep
        self._max_bytes = max_bytes
        self._checked: set[tuple[int, int, int]] = set()  # files (device, inode, size) that hashed right

    @property
    def max_bytes(self) -> int:
        if self._max_bytes is None:
            self._max_bytes = configured_max_bytes()
        return self._max_bytes

    def _folder(self, digest: Digest, create: bool) -> Path | None:
        """The directory of ``digest``'s algorithm, made when ``create``; None when it is not there,
        or is not a directory of its own (a symlink is not followed)."""
        if create:
            with contextlib.suppress(OSError):
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not real_directory(self.directory):
            return None
        folder = self.directory / digest.algorithm
        if create:
            with contextlib.suppress(OSError):
                folder.mkdir(mode=0o700, exist_ok=True)
        return folder if real_directory(folder) else None

    def open(self, digest: Digest, size: int | None) -> RawStream | None:
        """The cached blob, checked: its size is ``size`` (when known) and its content hashes to
        ``digest``; None when it is not cached, or what is there fails a check (then removed)."""
        folder = self._folder(digest, create=False)
        if folder is None:
            return None
        path = folder / digest.hex
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink in a blob's place: removed, never followed
                remove(path)
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                return None
            known = (info.st_dev, info.st_ino, info.st_size)
            if size is not None and info.st_size != size:
                checked = False
            else:
                checked = known in self._checked or _hashes_to(fd, info.st_size, digest)
            if not checked:
                _remove_if_same(path, info)
                os.close(fd)
                return None
            self._checked.add(known)  # hashed once a run: its readers hash what they read anyway
            with contextlib.suppress(OSError):
                os.utime(fd)  # used now: the last to be evicted
        except OSError:
            os.close(fd)
            return None
        return FileSlice(fd, 0, info.st_size, owns_fd=True)

    def caching(self, raw: RawStream, digest: Digest, size: int | None) -> RawStream:
        """``raw`` (the blob as it is fetched), kept in the cache as it is read once it has all arrived
        and verified; ``raw`` itself when the blob is not to be kept (the cache does not ``keep``) or
        cannot be (its size unknown, over the limit, or the cache unwritable)."""
        if not self.keep:
            return raw
        try:
            limit = self.max_bytes  # a limit that is no size is an error: the stream is closed first
        except BaseException:
            raw.close()
            raise
        if size is None or size > limit:
            return raw
        folder = self._folder(digest, create=True)
        if folder is None:
            return raw
        self._make_room(size, keep=None)
        temp = folder / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        try:
            fd = os.open(temp, _WRITE_FLAGS, 0o600)
        except OSError:
            return raw
        return _Keeping(raw, fd, temp, folder / digest.hex, digest, size, self)

    def _make_room(self, size: int, keep: Path | None) -> None:
        """Remove least recently used blobs until ``size`` more bytes fit under the limit (the files
        being written count as they stand); ``keep`` is never removed."""
        try:
            files, temps = cache_files(self.directory)
        except OSError:
            return
        writing = sum(item.size for item in temps if not stale(item))
        evict(files, self.max_bytes - size - writing, keep)

    def usage(self) -> tuple[list[CacheFile], list[CacheFile]]:
        """The blobs cached, and the temporary files (being written, or left by a process that died)."""
        return cache_files(self.directory)


def _hashes_to(fd: int, size: int, digest: Digest) -> bool:
    hasher = digest.hasher()
    offset = 0
    while offset < size:
        data = os.pread(fd, min(CHUNK, size - offset), offset)
        if not data:
            return False
        hasher.update(data)
        offset += len(data)
    return hasher.hexdigest() == digest.hex


def _remove_if_same(path: Path, info: os.stat_result) -> None:
    """Remove the file at ``path`` if it is still the one checked (not one a concurrent run has just
    renamed into place)."""
    with contextlib.suppress(OSError):
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino):
            remove(path)


class _Keeping:
    """A fetched blob, passed on as it is read and written to a temporary file of the cache, renamed
    into place at its end if it is whole and its digest matches. A write that fails only ends the
    keeping, never the reading; the temporary file is removed unless it was renamed."""

    def __init__(  # noqa: PLR0917 - a stream and where it goes
        self, raw: RawStream, fd: int, temp: Path, final: Path, digest: Digest, size: int, cache: BlobCache
    ) -> None:
        self._raw = raw
        self._fd: int | None = fd
        self._temp = temp
        self._final = final
        self._digest = digest
        self._size = size
        self._cache = cache
        self._hash = digest.hasher()
        self._count = 0

    def read(self, n: int = -1, /) -> bytes:
        data = self._raw.read(n)
        if self._fd is None:
            return data
        if data:
            self._count += len(data)
            if self._count > self._size:
                self._abandon()
                return data
            self._hash.update(data)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                self._abandon()
        elif n != 0:
            self._commit()
        return data

    def _commit(self) -> None:
        assert self._fd is not None
        if self._count != self._size or self._hash.hexdigest() != self._digest.hex:
            self._abandon()
            return
        os.close(self._fd)
        self._fd = None
        try:
            os.replace(self._temp, self._final)
        except OSError:
            remove(self._temp)  # (a prune removed the temporary file: nothing is kept)
            return
        self._cache._make_room(0, keep=self._final)

    def _abandon(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            remove(self._temp)

    def close(self) -> None:
        self._abandon()
        self._raw.close()

    def __enter__(self) -> _Keeping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
