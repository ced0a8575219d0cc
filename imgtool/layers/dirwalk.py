"""A layer kept as a directory (an engine's ``diff/``, a container's upper directory), read as the
tar a layer would be: a second producer of a layer's entries beside the tar blob.

The walk is in a defined order (depth first, names in byte order, a directory before what it
holds), so the same directory gives the same bytes. In the overlay form (an overlayfs upper or
lower directory) a character device 0/0 becomes the whiteout ``.wh.NAME``, a directory whose
``trusted.overlay.opaque`` or ``user.overlay.opaque`` xattr is ``y`` is followed by its opaque
marker ``.wh..wh..opq``, and the kernel's ``*.overlay.*`` bookkeeping xattrs are left out; a
whiteout's shared inode is not taken for a hardlink. An entry that ``redirect_dir`` or ``metacopy``
made (its ``overlay.redirect`` or ``overlay.metacopy`` xattr) is refused, naming it. Against a
lower directory (a vfs layer, which is a full copy of its parent plus its changes) the walk gives
only what differs, as the engine's own naive diff does: what is new or whose metadata changed,
the directories above it, and a whiteout for what is gone.

Nothing is followed out of the directory: every component is opened with ``O_NOFOLLOW``
relative to its parent, a symlink is an entry and never a way in, and a file that changes while
it is read is an error naming it. Nothing is ever written.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from imgtool.errors import ImageNotFoundError, ImgtoolError, LayerError, UnsafePathError
from imgtool.image.compression import CHUNK
from imgtool.layers import whiteout
from imgtool.layers.paths import escape

BLOCK: Final = 512
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_OPAQUE_VALUE: Final = b"y"
# What overlayfs's redirect_dir and metacopy features leave in a layer: the entry's content is found
# elsewhere, by rules imgtool does not follow. Read as plain entries they would be wrong (a renamed
# directory shown as new and empty of what it held, a file empty), so they are refused.
_NOT_FOLLOWED: Final = frozenset(
    f"{prefix}{name}" for prefix in whiteout.OVERLAY_XATTR_PREFIXES for name in ("redirect", "metacopy")
)


def open_dir(root: str, relative: str = "", what: str = "") -> int:
    """A directory ``relative`` below ``root``, opened one component at a time, never through a
    symlink (a store may be hostile: a layer directory that is a link out of it is refused)."""
    where = what or root
    try:
        fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        raise ImageNotFoundError(f"{where}: {root} does not exist") from None
    except OSError as exc:
        raise UnsafePathError(f"{where}: {root} is not a directory ({exc.strerror})") from None
    for part in [p for p in relative.split("/") if p]:
        try:
            if part in (".", ".."):
                raise UnsafePathError(f"{where}: {relative!r} leaves the store")
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            raise ImageNotFoundError(f"{where}: {relative} is missing") from None
        except OSError as exc:
            if os.path.islink(f"/proc/self/fd/{fd}/{part}"):
                raise UnsafePathError(f"{where}: {relative} is a symlink; refused") from None
            raise UnsafePathError(f"{where}: {relative}: not a directory ({exc.strerror})") from None
        finally:
            os.close(fd)
        fd = child
    return fd


def open_file(dir_fd: int, relative: bytes, what: str) -> int:
    """A regular file ``relative`` (a canonical path) below the directory ``dir_fd``, never through
    a symlink and never above it."""
    parts = relative.split(b"/")
    if any(p in (b"", b".", b"..") for p in parts):
        raise UnsafePathError(f"{what}: '{escape(relative)}' leaves the layer directory")
    fd = os.dup(dir_fd)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            try:
                child = os.open(part, _FILE_FLAGS if last else _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                raise LayerError(
                    f"{what}: '{escape(relative)}' is missing from the layer directory"
                ) from None
            except OSError as exc:
                raise UnsafePathError(
                    f"{what}: '{escape(relative)}' cannot be opened inside the layer directory "
                    f"(a symlink or not a directory on the way: {exc.strerror})"
                ) from None
            os.close(fd)
            fd = child
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LayerError(f"{what}: '{escape(relative)}' is not a regular file in the layer directory")
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_data(fd: int, size: int, what: str, name: bytes) -> Iterator[bytes]:
    """Exactly ``size`` bytes of an open file, or an error naming it if it holds fewer."""
    offset = 0
    while offset < size:
        data = os.pread(fd, min(CHUNK, size - offset), offset)
        if not data:
            raise LayerError(f"{what}: '{escape(name)}' changed while being read (shorter than {size} bytes)")
        offset += len(data)
        yield data


@dataclass(frozen=True, slots=True)
class _Node:
    name: bytes  # the path inside the layer
    st: os.stat_result
    link: bytes = b""


class ChunkStream:
    """A readable stream over a generator of byte chunks (the tar a walk produces).

    A read takes from the current chunk by offset, so many small reads of a big chunk copy each
    byte once."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = b""
        self._offset = 0
        self._done = False
        self._error: ImgtoolError | None = None

    def read(self, n: int = -1, /) -> bytes:
        if self._error is not None:  # a stream that failed stays failed: its error is the answer
            raise self._error
        parts: list[bytes] = []
        wanted = n
        while wanted != 0:
            if self._offset >= len(self._chunk):
                if self._done:
                    break
                try:
                    self._chunk, self._offset = next(self._chunks), 0
                except StopIteration:
                    self._done, self._chunk, self._offset = True, b"", 0
                except ImgtoolError as exc:
                    self._error = exc
                    raise
                continue
            end = len(self._chunk) if wanted < 0 else min(len(self._chunk), self._offset + wanted)
            piece = (
                self._chunk[self._offset : end]
                if (self._offset, end) != (0, len(self._chunk))
                else self._chunk
            )
            self._offset = end
            parts.append(piece)
            if wanted > 0:
                wanted -= len(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def walk_tar(
    root: str, relative: str, what: str, *, overlay: bool = True, lower: str | None = None
) -> ChunkStream:
    """The tar of the layer directory ``root/relative`` (``lower``: compared with that directory
    below the same root, as a vfs layer is with its parent)."""
    return ChunkStream(_walk_chunks(root, relative, what, overlay, lower))


def _walk_chunks(root: str, relative: str, what: str, overlay: bool, lower: str | None) -> Iterator[bytes]:
    top = open_dir(root, relative, what)
    try:
        low = open_dir(root, lower, what) if lower is not None else None
        try:
            writer = _Writer(what, overlay)
            if low is None:
                yield from writer.tree(top, b"")
            else:
                yield from writer.compare(top, low, b"")
            yield b"\0" * (2 * BLOCK)
        finally:
            if low is not None:
                os.close(low)
    finally:
        os.close(top)


def _listing(fd: int) -> list[bytes]:
    with os.scandir(fd) as it:
        return sorted(os.fsencode(e.name) for e in it)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether an entry is unchanged, by the metadata the engines' naive diff compares."""
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return False
    fields = (a.st_mode, a.st_uid, a.st_gid, a.st_rdev) == (b.st_mode, b.st_uid, b.st_gid, b.st_rdev)
    if not fields or a.st_mtime_ns != b.st_mtime_ns:
        return False
    return stat.S_ISDIR(a.st_mode) or a.st_size == b.st_size


class _Writer:
    def __init__(self, what: str, overlay: bool) -> None:
        self.what = what
        self.overlay = overlay
        self.inodes: dict[tuple[int, int], bytes] = {}

    def _stat(self, fd: int, name: bytes) -> os.stat_result:
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise LayerError(f"{self.what}: '{escape(name)}' was removed while being read") from None

    def tree(self, fd: int, prefix: bytes) -> Iterator[bytes]:
        """Every entry below the open directory ``fd``."""
        for name in _listing(fd):
            yield from self.entry(fd, name, prefix + name, self._stat(fd, name))

    def compare(
        self, fd: int, low: int, prefix: bytes, pending: list[bytes] | None = None
    ) -> Iterator[bytes]:
        """What differs below ``fd`` from ``low``; ``pending`` holds the headers of directories above
        that are written only once something below them is."""
        pending = [] if pending is None else pending
        new, old = _listing(fd), set(_listing(low))
        for name in sorted(set(new) | old):
            path = prefix + name
            if name not in new:
                yield from pending
                pending.clear()
                yield self._header(path.rpartition(b"/")[0], whiteout.PREFIX + name, _empty_file())
                continue
            st = self._stat(fd, name)
            before = self._stat(low, name) if name in old else None
            if before is not None and stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(before.st_mode):
                header = b"".join(self.entry(fd, name, path, st, descend=False))
                if not _same(st, before):
                    yield from pending
                    pending.clear()
                    yield header
                    header = b""
                sub, sublow = self._open_dir(fd, name, path), self._open_dir(low, name, path)
                try:
                    mark = len(pending)
                    if header:
                        pending.append(header)
                    yield from self.compare(sub, sublow, path + b"/", pending)
                    del pending[mark:]
                finally:
                    os.close(sub)
                    os.close(sublow)
                continue
            if (
                before is not None
                and _same(st, before)
                and self._link(fd, name, st) == self._link(low, name, before)
            ):
                continue
            yield from pending
            pending.clear()
            if before is not None and stat.S_ISDIR(before.st_mode) != stat.S_ISDIR(st.st_mode):
                yield self._header(prefix.rstrip(b"/"), whiteout.PREFIX + name, _empty_file())
            yield from self.entry(fd, name, path, st)

    def _open_dir(self, fd: int, name: bytes, path: bytes) -> int:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise LayerError(f"{self.what}: '{escape(path)}' cannot be read: {exc.strerror}") from None

    def _link(self, fd: int, name: bytes, st: os.stat_result) -> bytes:
        if not stat.S_ISLNK(st.st_mode):
            return b""
        try:
            return os.readlink(name, dir_fd=fd)
        except OSError as exc:
            raise LayerError(
                f"{self.what}: '{escape(name)}' changed while being read: {exc.strerror}"
            ) from None

    def entry(
        self, fd: int, name: bytes, path: bytes, st: os.stat_result, descend: bool = True
    ) -> Iterator[bytes]:
        mode = st.st_mode
        parent = path.rpartition(b"/")[0]
        if self.overlay and stat.S_ISCHR(mode) and st.st_rdev == 0:
            yield self._header(parent, whiteout.PREFIX + name, _empty_file())
            return
        if stat.S_ISDIR(mode):
            sub = self._open_dir(fd, name, path)
            try:
                xattrs = self._xattrs(sub, path)
                marks = (
                    [xattrs.pop(key, None) for key in sorted(whiteout.OPAQUE_XATTRS)] if self.overlay else []
                )
                opaque = _OPAQUE_VALUE in marks
                yield self._header(parent, name, _info(st, tarfile.DIRTYPE), xattrs)
                if opaque:
                    yield self._header(path, whiteout.OPAQUE_MARKER, _empty_file())
                if descend:
                    yield from self.tree(sub, path + b"/")
            finally:
                os.close(sub)
            return
        if stat.S_ISLNK(mode):
            info = _info(st, tarfile.SYMTYPE)
            info.linkname = os.fsdecode(self._link(fd, name, st))
            yield self._header(parent, name, info)
            return
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            first = self.inodes.get(key) if st.st_nlink > 1 else None
            if first is not None:
                info = _info(st, tarfile.LNKTYPE)
                info.linkname = os.fsdecode(first)
                yield self._header(parent, name, info)
                return
            if st.st_nlink > 1:
                self.inodes[key] = path
            yield from self._file(fd, name, path, st)
            return
        kinds = {stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE, stat.S_IFIFO: tarfile.FIFOTYPE}
        kind = kinds.get(stat.S_IFMT(mode))
        if kind is None:  # a socket: no tar type holds one, and no engine puts one in a layer
            return
        info = _info(st, kind)
        if kind != tarfile.FIFOTYPE:
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        yield self._header(parent, name, info)

    def _file(self, fd: int, name: bytes, path: bytes, st: os.stat_result) -> Iterator[bytes]:
        try:
            file = os.open(name, _FILE_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise LayerError(f"{self.what}: '{escape(path)}' cannot be read: {exc.strerror}") from None
        try:
            now = os.fstat(file)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode):
                raise LayerError(f"{self.what}: '{escape(path)}' changed while being read")
            info = _info(now, tarfile.REGTYPE)
            info.size = now.st_size
            yield self._header(path.rpartition(b"/")[0], name, info, self._xattrs(file, path))
            yield from file_data(file, now.st_size, self.what, path)
            if now.st_size % BLOCK:
                yield b"\0" * (BLOCK - now.st_size % BLOCK)
        finally:
            os.close(file)

    def _xattrs(self, fd: int, path: bytes) -> dict[str, bytes]:
        try:
            names = os.listxattr(fd)
        except OSError:
            return {}
        found: dict[str, bytes] = {}
        for key in sorted(names):
            if self.overlay and key in _NOT_FOLLOWED:
                raise LayerError(
                    f"{self.what}: '{escape(path)}' carries {key} (a directory renamed, or a file whose "
                    "data is in a lower layer, under redirect_dir or metacopy): not supported"
                )
            if (
                self.overlay
                and key.startswith(whiteout.OVERLAY_XATTR_PREFIXES)
                and key not in whiteout.OPAQUE_XATTRS
            ):
                continue
            try:
                found[key] = os.getxattr(fd, key)
            except OSError:
                continue
        return found

    def _header(
        self, parent: bytes, name: bytes, info: tarfile.TarInfo, xattrs: dict[str, bytes] | None = None
    ) -> bytes:
        path = parent + b"/" + name if parent else name
        info.name = os.fsdecode(path) + ("/" if info.type == tarfile.DIRTYPE else "")
        if xattrs:
            info.pax_headers = {
                **info.pax_headers,
                **{f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()},
            }
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _info(st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo()
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    seconds, nanoseconds = divmod(st.st_mtime_ns, 1_000_000_000)
    info.mtime = seconds
    if nanoseconds:  # the full time, as GNU tar's --format=posix keeps it
        info.pax_headers = {"mtime": f"{seconds}.{nanoseconds:09d}"}
    info.uname = info.gname = ""
    return info


def _empty_file() -> tarfile.TarInfo:
    info = tarfile.TarInfo()
    info.mode = 0o644
    info.uname = info.gname = ""
    return info
