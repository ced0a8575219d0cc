"""ls: rows describing paths of a merged view, or the entries of one layer."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from imgtool.errors import ImageNotFoundError
from imgtool.index import LayerIndex
from imgtool.overlay import Node, Tree
from imgtool.paths import display, escape
from imgtool.tarstream import (
    BLOCKDEV_KIND,
    CHARDEV,
    DIR,
    FIFO_KIND,
    FILE,
    HARDLINK_KIND,
    IMPLIED_DIR,
    KIND_NAMES,
    OPAQUE,
    SYMLINK_KIND,
    WHITEOUT,
    Entry,
)

_TYPE_CHARS: Final = {
    FILE: "-",
    DIR: "d",
    SYMLINK_KIND: "l",
    HARDLINK_KIND: "h",
    CHARDEV: "c",
    BLOCKDEV_KIND: "b",
    FIFO_KIND: "p",
    WHITEOUT: "w",
    OPAQUE: "o",
}


@dataclass(frozen=True, slots=True)
class Row:
    path: bytes
    entry: Entry
    layer: int | None
    kind: str  # what the row is: a type name, or "whiteout"/"opaque" for --only listings
    target: str | None  # symlink target or hardlink path


def mode_string(entry: Entry) -> str:
    """``drwxr-xr-x``-style text, with setuid/setgid/sticky shown as ls shows them."""
    mode = entry.mode
    kind_bits = {
        FILE: stat.S_IFREG,
        DIR: stat.S_IFDIR,
        SYMLINK_KIND: stat.S_IFLNK,
        CHARDEV: stat.S_IFCHR,
        BLOCKDEV_KIND: stat.S_IFBLK,
        FIFO_KIND: stat.S_IFIFO,
    }
    if entry.kind in kind_bits:
        return stat.filemode(kind_bits[entry.kind] | mode)
    return _TYPE_CHARS[entry.kind] + stat.filemode(mode)[1:]


def time_string(mtime_ns: int) -> str:
    """UTC date and time; a time no calendar can show is given in seconds since the epoch."""
    try:
        return datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError, OSError):
        return f"@{mtime_ns // 1_000_000_000}"


def _node_row(path: bytes, node: Node) -> Row:
    content = node.content or IMPLIED_DIR
    entry = node.entry
    target = None
    if entry is not None and entry.kind == SYMLINK_KIND:
        target = escape(entry.link)
    elif entry is not None and entry.kind == HARDLINK_KIND:
        target = display(entry.link)
    kind = KIND_NAMES[entry.kind] if entry is not None else "dir"  # a hardlink says so, as in which-layer
    return Row(path, content, node.layer if node.layer >= 0 else None, kind, target)


def list_tree(tree: Tree, path: bytes, recursive: bool) -> list[Row]:
    """Like ``ls -l PATH`` (``-R``: everything below it), following symlinks in PATH."""
    resolved, node, _ = tree.resolve(path, follow_last=True)
    if node is None:
        raise ImageNotFoundError(f"{display(path)}: no such file or directory in the image")
    if not node.is_dir:
        return [_node_row(resolved, node)]
    if recursive:
        return [_node_row(p, n) for p, n in tree.walk(resolved) if p != resolved]
    assert node.children is not None
    return [
        _node_row(resolved + b"/" + name if resolved else name, node.children[name])
        for name in sorted(node.children)
    ]


def list_layer(index: LayerIndex, layer: int, path: bytes) -> list[Row]:
    """The entries of one layer under PATH, as its tar states them (whiteouts included)."""
    prefix = path + b"/" if path else b""
    rows = []
    for entry in sorted(index.entries, key=lambda e: (e.path, e.ordinal)):
        if path and entry.path != path and not entry.path.startswith(prefix):
            continue
        target = None
        if entry.kind == SYMLINK_KIND:
            target = escape(entry.link)
        elif entry.kind == HARDLINK_KIND:
            target = display(entry.link)
        rows.append(Row(entry.path, entry, layer, KIND_NAMES[entry.kind], target))
    return rows


def row_json(row: Row, digests: list[str]) -> dict[str, Any]:
    entry = row.entry
    return {
        "path": display(row.path),
        "type": row.kind,
        "mode": f"{entry.mode:04o}",
        "uid": entry.uid,
        "gid": entry.gid,
        "size": entry.size if entry.kind == FILE else 0,
        "mtime": time_string(entry.mtime_ns),
        "linkname": row.target,
        "layer": row.layer,
        "layer_digest": digests[row.layer] if row.layer is not None else None,
    }
