"""A layer's entries: names made canonical, whiteouts classified, unsafe entries refused.

Everything that reads a layer goes through here: each name is made canonical once
(:func:`imgtool.layers.paths.clean_path`), whiteouts in both their AUFS and overlayfs forms
become WHITEOUT and OPAQUE entries, and an entry that would climb above the root or
replace the root with anything but a directory is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Final

from imgtool.errors import LayerError, UnsafePathError
from imgtool.image.compression import CHUNK
from imgtool.image.digest import content_hasher
from imgtool.image.image import Layer
from imgtool.image.readable import Readable
from imgtool.layers import whiteout
from imgtool.layers.paths import clean_path, escape, join_path, split_path
from imgtool.layers.tarreader import (
    BLOCKDEV,
    CHAR,
    DIRECTORY,
    FIFO,
    HARDLINK,
    REGULAR,
    SYMLINK,
    TarHeader,
    TarReader,
)


class Kind(IntEnum):
    """What an entry is: the one vocabulary of entry kinds.

    The values are stored in the header cache (as plain ints: marshal refuses int subclasses),
    so they must never be renumbered. Its :attr:`word` (``KIND_NAMES``) is the word the JSON and
    the tables use: its name in lower case.
    """

    FILE = 0
    DIR = 1
    SYMLINK = 2
    HARDLINK = 3
    CHAR = 4
    BLOCK = 5
    FIFO = 6
    WHITEOUT = 7
    OPAQUE = 8

    @property
    def word(self) -> str:
        """The kind's word in the JSON and the tables (``symlink``)."""
        return KIND_NAMES[self]


KIND_NAMES: Final[dict[Kind, str]] = {kind: kind.name.lower() for kind in Kind}
# The kind by its stored int value (the values run 0, 1, 2, ...): cheaper than calling Kind(value).
KIND_BY_VALUE: Final[tuple[Kind, ...]] = tuple(sorted(Kind))
# The one map between kinds and tar typeflags (WHITEOUT and OPAQUE are not tar types).
KIND_TYPEFLAGS: Final[dict[Kind, bytes]] = {
    Kind.FILE: REGULAR,
    Kind.DIR: DIRECTORY,
    Kind.SYMLINK: SYMLINK,
    Kind.HARDLINK: HARDLINK,
    Kind.CHAR: CHAR,
    Kind.BLOCK: BLOCKDEV,
    Kind.FIFO: FIFO,
}
_TYPEFLAG_KINDS: Final = {typeflag: kind for kind, typeflag in KIND_TYPEFLAGS.items()}
# Module-level names for the per-entry code below: on Python 3.11 ``Kind.FILE`` is a descriptor
# lookup costing several times a global's; these are the same members.
_FILE: Final = Kind.FILE
_DIR: Final = Kind.DIR
_SYMLINK: Final = Kind.SYMLINK
_HARDLINK: Final = Kind.HARDLINK
_CHAR: Final = Kind.CHAR


@dataclass(slots=True)
class Entry:
    """One entry of a layer, as the layer states it.

    ``path`` is canonical (``b""`` is the root). ``link`` is a symlink's target as
    written, a hardlink's canonical target path, or empty. For WHITEOUT, ``path``
    is what is deleted; for OPAQUE, the directory whose lower contents are hidden.
    ``digest`` is the digest of a regular file's content (with
    :data:`imgtool.image.digest.CONTENT_HASH`), when it was computed; ``offset`` is
    where its data starts in the layer's uncompressed tar. A sparse file's data is
    not one range there: ``sparse`` holds its stored regions (see :func:`stored_regions`),
    ``size`` is its expanded size.
    """

    path: bytes
    kind: Kind
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    link: bytes
    devmajor: int
    devminor: int
    xattrs: dict[str, bytes] | None
    digest: bytes | None
    ordinal: int
    offset: int = 0
    sparse: tuple[int, ...] | None = None

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]


ENTRY_FIELDS: Final = tuple(field.name for field in fields(Entry))
# A directory that exists only because entries were written below it: 0755, root's, at the epoch.
IMPLIED_DIR: Final = Entry(b"", Kind.DIR, 0o755, 0, 0, 0, 0, b"", 0, 0, None, None, -1)


def entries_from_header(header: TarHeader, ordinal: int, what: str) -> list[Entry]:
    """Classify one tar member; usually one entry, none for AUFS bookkeeping, two for an opaque dir."""
    try:
        path = clean_path(header.name)
    except UnsafePathError as exc:
        raise _refused(header, what, str(exc)) from None
    kind = _TYPEFLAG_KINDS.get(header.typeflag)
    if kind is None:
        raise LayerError(
            f"{what}: entry '{escape(header.name)}': unsupported tar entry type {header.typeflag!r}"
        )

    if whiteout.PREFIX in path:  # the whiteout words, checked only where they can be
        parent, base = split_path(path)
        if whiteout.is_opaque_marker(base):
            return [_marker(Kind.OPAQUE, parent, header, ordinal)]
        if whiteout.is_aufs_meta(base):
            return []
        target = whiteout.whiteout_target(base)
        if target is not None:
            if target in (b"", b".", b".."):
                raise _refused(header, what, f"whiteout names no file ('{escape(target)}')")
            return [_marker(Kind.WHITEOUT, join_path(parent, target), header, ordinal)]
    if kind is _CHAR and whiteout.is_overlay_whiteout(True, header.devmajor, header.devminor):
        if not path:
            raise _refused(header, what, "whiteout of the root directory")
        return [_marker(Kind.WHITEOUT, path, header, ordinal)]

    if not path and kind is not _DIR:
        raise _refused(header, what, "refusing to replace the root directory with a non-directory")
    link = b""
    if kind is _SYMLINK:
        link = header.linkname
        if not link:
            raise LayerError(f"{what}: entry '{escape(header.name)}': symlink with an empty target")
    elif kind is _HARDLINK:
        try:
            link = clean_path(header.linkname)
        except UnsafePathError as exc:
            raise _refused(header, what, f"hardlink target {exc}") from None
        if not link:
            raise _refused(header, what, "hardlink to the root directory")
    xattrs = header.xattrs
    opaque = False
    if xattrs:
        opaque = kind is _DIR and whiteout.has_opaque_xattr(xattrs)
        xattrs = whiteout.strip_overlay_xattrs(xattrs)
    entry = Entry(
        path,
        kind,
        header.mode,
        header.uid,
        header.gid,
        header.size,
        header.mtime_ns,
        link,
        header.devmajor,
        header.devminor,
        xattrs,
        None,
        ordinal,
        header.data_offset,
        header.sparse,
    )
    if opaque:
        return [entry, _marker(Kind.OPAQUE, path, header, ordinal)]
    return [entry]


def stored_size(entry: Entry) -> int:
    """How many bytes of the layer's tar hold the entry's data (fewer than its size when sparse)."""
    return entry.size if entry.sparse is None else sum(entry.sparse[1::2])


def stored_regions(entry: Entry) -> Iterator[tuple[int, int, int]]:
    """(offset in the file, offset in the layer's tar, length) of each stored piece of a file's data.

    One piece for an ordinary file; a sparse file's holes lie between its pieces and after the last.
    """
    if entry.sparse is None:
        yield 0, entry.offset, entry.size
        return
    at = entry.offset
    for i in range(0, len(entry.sparse), 2):
        yield entry.sparse[i], at, entry.sparse[i + 1]
        at += entry.sparse[i + 1]


def _refused(header: TarHeader, what: str, reason: str) -> UnsafePathError:
    return UnsafePathError(f"{what}: entry '{escape(header.name)}': {reason}")


def _marker(kind: Kind, path: bytes, header: TarHeader, ordinal: int) -> Entry:
    return Entry(path, kind, 0, 0, 0, 0, header.mtime_ns, b"", 0, 0, None, None, ordinal)


class LayerReader:
    """Walk a layer's uncompressed tar stream entry by entry.

    While iterating, the data of the current regular file can be read with
    :meth:`read_data`; whatever is not read is skipped. With ``hash_content``
    each regular file's sha256 is computed (and its data consumed) as it passes.
    """

    def __init__(
        self,
        stream: Readable,
        what: str,
        warn: Callable[[str], None] | None = None,
        hash_content: bool = False,
        seek: Callable[[int], object] | None = None,
    ) -> None:
        """``seek``, for a stream on a local file, lets data that is not read be skipped without reading."""
        self.what = what
        self._tar = TarReader(stream, what, warn, seek)
        self._hash_content = hash_content

    def __iter__(self) -> Iterator[Entry]:
        for ordinal, header in enumerate(self._tar):
            for entry in entries_from_header(header, ordinal, self.what):
                if self._hash_content and entry.kind is _FILE:
                    entry.digest = self._hash_data()
                yield entry

    def _hash_data(self) -> bytes:
        hasher = content_hasher()
        while chunk := self._tar.read_data():
            hasher.update(chunk)
        return hasher.digest()

    def read_data(self, n: int = CHUNK) -> bytes | memoryview:
        """The current file's next bytes (a view into the read buffer: use them before reading on)."""
        return self._tar.read_data(n)

    def drain(self) -> int:
        """Consume whatever follows the archive; returns the number of trailing bytes."""
        return self._tar.drain()


def layer_entries(
    layer: Layer,
    warn: Callable[[str], None] | None = None,
    hash_content: bool = False,
    max_size: int | None = None,
) -> Iterator[Entry]:
    """Every entry of a layer's tar, then a check of both its digests."""
    with layer.open(max_size) as stream:
        reader = LayerReader(stream, layer.what, warn, hash_content=hash_content)
        yield from reader
        stream.finish(reader)
