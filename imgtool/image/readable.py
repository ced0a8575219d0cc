"""The protocols of what imgtool reads: streams, and the stores that hand them out; and the one
stream every source can use, a byte range of an open file."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from imgtool.errors import LayerError

if TYPE_CHECKING:
    from imgtool.image.digest import Digest


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Drainable(Protocol):
    def drain(self) -> object: ...


class RawStream(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
    def close(self) -> None: ...
    def __enter__(self) -> RawStream: ...
    def __exit__(self, *exc: object) -> None: ...


class BlobSource(Protocol):
    """Blobs addressed by digest: what an Image reads its config and layers from.

    Every source implements it (see ``imgtool.sources.core``); the streams are raw and
    unverified, the callers wrap them in a VerifyingReader with the digest they asked for.
    """

    location: str

    def open_blob(self, digest: Digest) -> RawStream:
        """The blob; ImageNotFoundError naming it when the source does not hold it."""
        ...

    def has_blob(self, digest: Digest) -> bool: ...
    def blob_size(self, digest: Digest) -> int | None:
        """The stored size, None when the source does not know it without reading the blob."""
        ...

    def close(self) -> None: ...


class BlobStore(Protocol):
    """Files addressed by their path inside an image layout or archive (the OCI layout source's)."""

    location: str

    def open(self, path: str) -> RawStream: ...
    def exists(self, path: str) -> bool: ...
    def size(self, path: str) -> int: ...
    def close(self) -> None: ...


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
