"""Uncompressed copies of layers, kept for the length of one flatten.

Flatten reads every layer twice: once to index it (the whole image must be
known before anything is written) and once to write the files that survive.
When the layers are not indexed yet, the first reading keeps what it
decompressed and verified in a temporary file, so the second reading neither
decompresses nor hashes again, and seeks over data it does not need.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Final

from imgtool.image.compression import CHUNK
from imgtool.image.image import Layer
from imgtool.image.readable import FileSlice, Readable
from imgtool.system.libc import punch_hole
from imgtool.system.staging import make_dir

# Spool only where the layers fit many times over: the rootfs itself still has to be written.
SPACE_FACTOR: Final = 6
RESERVE: Final = 1 << 30


def worth_spooling(directory: str, compressed_bytes: int) -> bool:
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize >= SPACE_FACTOR * compressed_bytes + RESERVE


class Tee:
    """Passes a stream through, copying it to a spool file; copying stops quietly on a write error,
    or when ``take`` (the spool's budget) refuses more bytes, and what was copied is given back."""

    def __init__(self, source: Readable, fd: int, take: Callable[[int], bool] | None = None) -> None:
        self._source = source
        self._fd: int | None = fd
        self._take = take
        self._taken = 0
        self.failed = False

    def read(self, n: int = -1) -> bytes:
        data = self._source.read(n)
        if data and self._fd is not None and self._take is not None:
            if self._take(len(data)):
                self._taken += len(data)
            else:  # the spool is full: this copy is dropped, its bytes given back now
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, 0)
                    self._take(-self._taken)
                self.failed = True
                self._fd = None
        if data and self._fd is not None:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                self.failed = True
                self._fd = None
        return data


def copy_range(source: int, offset: int, target: int, size: int) -> None:
    """Copy ``size`` bytes at ``offset`` of one file to the current position of another, in the kernel
    where it can (copy_file_range), through a buffer where it cannot.

    Either way the bytes are copied, never lent: copy_file_range works only between regular files
    (anything else fails with EINVAL and takes the buffer), and it either writes the target's own
    pages before it returns or shares extents copy-on-write (a reflink), after which punching a
    hole in the source changes only the source. So the source range may be released at once.
    """
    copied = 0
    try:
        while copied < size:
            done = os.copy_file_range(source, target, size - copied, offset + copied)
            if done == 0:
                break
            copied += done
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    while copied < size:
        data = os.pread(source, min(size - copied, 1 << 20), offset + copied)
        if not data:
            raise OSError(errno.EIO, "spool file ended early")
        view = memoryview(data)
        while view:
            view = view[os.write(target, view) :]
        copied += len(data)


_PAGE: Final = 4096
_RELEASE_MIN: Final = 64 << 10


def release_range(fd: int, offset: int, size: int) -> None:
    """Give back the memory of a range of a spool file that will not be read again.

    The output written next then reuses those pages instead of taking fresh ones; on a virtual
    machine, memory the guest has not touched yet is the slowest to write to. Linux only (a hole
    is punched); elsewhere, and on any error, the pages stay until the spool is removed.

    Only for bytes that were copied, never for bytes still lent to a reader: punching zeroes the
    part of a (large) page-cache folio that lies in the hole in place, so a pipe or socket that
    still holds a reference to it (``sendfile``, ``splice``, ``vmsplice``) would deliver zeros.
    Every writer therefore copies (:func:`copy_range`, ``TarWriter.write_from``) before it releases.
    """
    start = -(-offset // _PAGE) * _PAGE
    end = (offset + size) // _PAGE * _PAGE
    if end - start >= _RELEASE_MIN:
        punch_hole(fd, start, end - start)


def read_range(source: int, offset: int, size: int) -> Iterator[bytes]:
    """``size`` bytes at ``offset`` of a file, in chunks."""
    done = 0
    while done < size:
        data = os.pread(source, min(size - done, 1 << 20), offset + done)
        if not data:
            raise OSError(errno.EIO, "spool file ended early")
        done += len(data)
        yield data


class Spool:
    """Spool files by layer number, in a private directory removed by :meth:`close`.

    A spool serves one output: the writers give back each file's bytes once they have copied
    them (:func:`release_range`), and :meth:`keep_only` gives back what no output reads.
    """

    def __init__(self, directory: str, room: int | None = None) -> None:
        """A spool in ``directory`` holding at most ``room`` bytes (default: what leaves RESERVE free)."""
        if room is None:
            st = os.statvfs(directory)
            room = st.f_bavail * st.f_frsize - RESERVE
        self.directory, self._claim = make_dir(directory, "", "spool")
        self._room = room
        self._room_lock = threading.Lock()
        self._ready: dict[int, str] = {}
        self._trimmer: threading.Thread | None = None

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes against the spool's room; False (and nothing counted) if full.
        A negative ``size`` gives bytes back."""
        with self._room_lock:
            if size > self._room:
                return False
            self._room -= size
            return True

    def start(self, layer: int) -> tuple[int, str]:
        path = os.path.join(self.directory, str(layer))
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), path

    def finish(self, layer: int, fd: int, path: str, complete: bool) -> None:
        """Keep the copy only if the whole stream was copied and verified."""
        if not complete:
            with contextlib.suppress(OSError), self._room_lock:
                self._room += os.fstat(fd).st_size
        os.close(fd)
        if complete:
            self._ready[layer] = path
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def fill(self, layer: Layer, max_size: int | None = None) -> None:
        """Spool ``layer`` (decompressed and verified) unless it is already there."""
        if layer.index in self._ready:
            return
        fd, path = self.start(layer.index)
        complete = False
        try:
            with layer.open(max_size) as stream:
                tee = Tee(stream, fd, self.take)
                while tee.read(CHUNK):
                    pass
                stream.finish()
            complete = not tee.failed
        finally:
            self.finish(layer.index, fd, path, complete)

    def open(self, layer: int) -> FileSlice | None:
        """The spooled layer, open for reading (and for :func:`release_range`)."""
        path = self._ready.get(layer)
        if path is None:
            return None
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        return FileSlice(fd, 0, os.fstat(fd).st_size, owns_fd=True)

    def keep_only(self, wanted: dict[int, list[tuple[int, int]]]) -> None:
        """Give back, in the background, the memory of everything in the spooled layers outside the
        ``wanted`` (offset, size) ranges of each (all of a layer ``wanted`` leaves out): what
        remains is the data the output will read."""
        if self._trimmer is not None:
            self._trimmer.join()
        self._trimmer = threading.Thread(target=self._trim, args=(wanted,), daemon=True)
        self._trimmer.start()

    def _trim(self, wanted: dict[int, list[tuple[int, int]]]) -> None:
        # Runs while the output is written, and touches only bytes no output reads: a hole zeroes
        # nothing outside itself, and release_range keeps the partial pages at each end.
        for layer, path in list(self._ready.items()):
            with contextlib.suppress(OSError):  # only memory is at stake
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                try:
                    position = 0
                    for offset, size in sorted(wanted.get(layer, [])):
                        release_range(fd, position, offset - position)
                        position = max(position, offset + size)
                    release_range(fd, position, os.fstat(fd).st_size - position)
                finally:
                    os.close(fd)

    def close(self) -> None:
        if self._trimmer is not None:
            self._trimmer.join()
        shutil.rmtree(self.directory, ignore_errors=True)
        self._claim.release()
        self._ready.clear()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
