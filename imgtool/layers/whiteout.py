"""The whiteout vocabulary of union filesystems, in one place.

AUFS form (the OCI image-spec form): an entry ``.wh.NAME`` deletes NAME from
the layers below, and ``.wh..wh..opq`` in a directory hides everything the
layers below put in it. overlayfs form: a character device 0/0 is a whiteout
and a directory carrying the ``overlay.opaque`` xattr is opaque.

Layers saved from Docker's old aufs driver also hold AUFS's own bookkeeping at
their top: ``.wh..wh.plnk/`` (the files that hardlinks in the layer point to),
``.wh..wh.orph/`` and ``.wh..wh.aufs``. As Docker's layer applier does, none
of it goes into the root filesystem, and a hardlink to a file in
``.wh..wh.plnk/`` is that file (found by its name, in the same layer).
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = b".wh."
OPAQUE_MARKER: Final = b".wh..wh..opq"
# Other ".wh..wh." names are AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): never content. An entry
# whose canonical path starts with it lies in AUFS's top-level bookkeeping, which Docker skips; the
# root's opaque marker is no such entry: it has become the root's OPAQUE entry, whose path is empty.
AUFS_META_PREFIX: Final = b".wh..wh."
AUFS_LINK_DIR: Final = b".wh..wh.plnk"
OPAQUE_XATTRS: Final = frozenset({"trusted.overlay.opaque", "user.overlay.opaque"})
# overlayfs bookkeeping xattrs are not part of the image content and are never copied out.
OVERLAY_XATTR_PREFIXES: Final = ("trusted.overlay.", "user.overlay.")


def is_opaque_marker(basename: bytes) -> bool:
    return basename == OPAQUE_MARKER


def is_aufs_meta(basename: bytes) -> bool:
    """AUFS bookkeeping entries that are not whiteouts of anything (checked after the opaque marker)."""
    return basename.startswith(AUFS_META_PREFIX) and basename != OPAQUE_MARKER


def aufs_link_name(path: bytes) -> bytes | None:
    """For a canonical path in ``.wh..wh.plnk/``, the name hardlinks find it by (its last component)."""
    if path.startswith(AUFS_LINK_DIR + b"/"):
        return path.rsplit(b"/", 1)[1]
    return None


def whiteout_target(basename: bytes) -> bytes | None:
    """The name a ``.wh.NAME`` entry deletes, or None when ``basename`` is not such a whiteout."""
    if basename.startswith(PREFIX) and not basename.startswith(AUFS_META_PREFIX):
        return basename[len(PREFIX) :]
    return None


def is_overlay_whiteout(is_char_device: bool, devmajor: int, devminor: int) -> bool:
    return is_char_device and devmajor == 0 and devminor == 0


def has_opaque_xattr(xattrs: dict[str, bytes] | None) -> bool:
    return bool(xattrs) and any(xattrs.get(key) == b"y" for key in OPAQUE_XATTRS)  # type: ignore[union-attr]


def strip_overlay_xattrs(xattrs: dict[str, bytes] | None) -> dict[str, bytes] | None:
    if not xattrs:
        return None
    kept = {k: v for k, v in xattrs.items() if not k.startswith(OVERLAY_XATTR_PREFIXES)}
    return kept or None
