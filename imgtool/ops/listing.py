"""ls: rows describing paths of a merged view, or the entries of one layer."""

from __future__ import annotations

import functools
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from imgtool.errors import ImageNotFoundError, UsageError
from imgtool.image.image import Image
from imgtool.layers.paths import display, escape, join_path
from imgtool.layers.tarstream import IMPLIED_DIR, KIND_NAMES, Entry, Kind
from imgtool.merge.index import LayerIndex, index_image
from imgtool.merge.lookup import find, no_match, normalize_query, not_a_directory, queries
from imgtool.merge.overlay import Node, Tree
from imgtool.merge.view import check_layer_number
from imgtool.ops.common import Reading, merged

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TYPE_CHARS: Final = {
    Kind.FILE: "-",
    Kind.DIR: "d",
    Kind.SYMLINK: "l",
    Kind.HARDLINK: "h",
    Kind.CHAR: "c",
    Kind.BLOCK: "b",
    Kind.FIFO: "p",
    Kind.WHITEOUT: "w",
    Kind.OPAQUE: "o",
}

_KIND_BITS: Final = {
    Kind.FILE: stat.S_IFREG,
    Kind.DIR: stat.S_IFDIR,
    Kind.SYMLINK: stat.S_IFLNK,
    Kind.CHAR: stat.S_IFCHR,
    Kind.BLOCK: stat.S_IFBLK,
    Kind.FIFO: stat.S_IFIFO,
}
# The same members under module-level names, for the code run once per row: on Python 3.11
# ``Kind.FILE`` is a descriptor lookup costing several times a global's.
_FILE: Final = Kind.FILE
_DIR: Final = Kind.DIR
_SYMLINK: Final = Kind.SYMLINK
_HARDLINK: Final = Kind.HARDLINK


@dataclass(slots=True)  # not frozen: made once per entry, and a frozen one costs three times as much
class Row:
    path: bytes
    entry: Entry
    layer: int | None
    kind: str  # what the row is: a type name, or "whiteout"/"opaque" for --only listings
    target: str | None  # symlink target or hardlink path


def mode_string(entry: Entry) -> str:
    """``drwxr-xr-x``-style text, with setuid/setgid/sticky shown as ls shows them."""
    mode = entry.mode
    if entry.kind in _KIND_BITS:
        return stat.filemode(_KIND_BITS[entry.kind] | mode)
    return _TYPE_CHARS[entry.kind] + stat.filemode(mode)[1:]


def time_string(mtime_ns: int) -> str:
    """UTC date and time; a time no calendar can show is given in seconds since the epoch."""
    seconds, nanos = divmod(mtime_ns, 1_000_000_000)
    if not nanos:  # the common case (a tar without PAX times): many files share a second
        return _whole_second(seconds)
    return _time_text(mtime_ns / 1e9, seconds)


@functools.lru_cache(maxsize=4096)
def _whole_second(seconds: int) -> str:
    return _time_text(seconds, seconds)


def _time_text(timestamp: float, seconds: int) -> str:
    try:
        return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, ValueError, OSError):
        return f"@{seconds}"


def rfc3339(mtime_ns: int) -> str | None:
    """The time as RFC 3339 in UTC (as inspect shows times), nanoseconds kept; None outside years 1-9999."""
    seconds, nanos = divmod(mtime_ns, 1_000_000_000)
    try:
        when = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    return when.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _node_row(path: bytes, node: Node, tree: Tree | None = None) -> Row:
    """The row of one path; with ``tree``, a symlink shows what it resolves to (``ls -L``): the
    metadata and layer of its target, under the link's own name."""
    if tree is not None and node.entry is not None and (node.content or IMPLIED_DIR).kind == _SYMLINK:
        resolved = find(tree, path, follow_last=True).node
        if resolved is not None:  # a dangling symlink is shown as itself, as ls -L shows it
            node = resolved
    content = node.content or IMPLIED_DIR
    entry = node.entry
    target = None
    if entry is not None and entry.kind == _SYMLINK:
        target = escape(entry.link)
    elif entry is not None and entry.kind == _HARDLINK:
        target = display(entry.link)
    kind = KIND_NAMES[entry.kind if entry is not None else _DIR]  # a hardlink says so, as in which-layer
    return Row(path, content, node.layer if node.layer >= 0 else None, kind, target)


def list_tree(tree: Tree, path: bytes, recursive: bool, dereference: bool = False) -> list[Row]:
    """Like ``ls -l PATH`` (``-R``: everything below it).

    Symlinks in PATH's parents are followed inside the image. PATH itself, when a symlink, is
    listed as the link (as ``ls -l`` lists it), unless it leads to a directory, which is then
    listed through (as ``ls`` lists ``/bin``); with ``dereference`` (``ls -L``) every symlink
    shown, PATH or listed, shows what it resolves to.
    """
    found = find(tree, path, follow_last=False)
    if found.node is None:
        raise ImageNotFoundError(f"{display(path)}: no such file or directory in the image")
    if found.is_symlink:
        target = find(tree, path, follow_last=True)
        if target.node is not None and target.node.is_dir:
            found = target
    resolved, node = found.path, found.node
    assert node is not None
    shown = tree if dereference else None
    if not node.is_dir:
        return [_node_row(resolved, node, shown)]
    if recursive and dereference:
        return [_node_row(p, n, shown) for p, n in _walk_through_links(tree, resolved)]
    if recursive:
        return [_node_row(p, n, shown) for p, n in tree.walk(resolved) if p != resolved]
    assert node.children is not None
    return [
        _node_row(join_path(resolved, name), node.children[name], shown) for name in sorted(node.children)
    ]


def _walk_through_links(tree: Tree, top: bytes) -> Iterator[tuple[bytes, Node]]:
    """Everything below ``top`` as ``ls -LR`` lists it, in :meth:`Tree.walk`'s order: a symlink to
    a directory is entered too, under the link's name, the first time a link leads to that
    directory, unless the link is inside it (a loop): the listing is at most twice the tree."""
    linked: set[bytes] = set()

    def children(path: bytes, directory: Node) -> Iterator[tuple[bytes, Node]]:
        prefix = path + b"/" if path else b""
        assert directory.children is not None
        return ((prefix + name, directory.children[name]) for name in sorted(directory.children))

    start = tree.lookup(top)
    if start is None or start.children is None:
        return
    stack = [children(top, start)]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        path, node = item
        yield path, node
        if node.is_dir:
            stack.append(children(path, node))
            continue
        target = find(tree, path, follow_last=True) if node.entry is not None else None
        if target is None or target.node is None or not target.node.is_dir or target.path in linked:
            continue
        here = find(tree, path, follow_last=False).path  # where the link really is
        if not target.path or here.startswith(target.path + b"/"):
            continue  # a link to a directory it is in: a loop, shown but not entered
        linked.add(target.path)
        stack.append(children(path, target.node))


def list_query(tree: Tree, text: str, recursive: bool, dereference: bool = False) -> list[Row]:
    """``ls`` of a typed PATH or a shell pattern: each match is listed as if it had been named alone."""
    paths = queries(tree, text)
    if paths is None:
        raise no_match(text)
    rows: list[Row] = []
    for path in paths:
        if (error := not_a_directory(tree, text, path)) is not None:
            raise error
        rows.extend(list_tree(tree, path, recursive, dereference))
    return rows


def list_layer(index: LayerIndex, layer: int, path: bytes) -> list[Row]:
    """The entries of one layer under PATH, as its tar states them (whiteouts included)."""
    prefix = path + b"/" if path else b""
    rows = []
    for entry in sorted(index.entries, key=lambda e: (e.path, e.ordinal)):
        if path and entry.path != path and not entry.path.startswith(prefix):
            continue
        target = None
        if entry.kind == _SYMLINK:
            target = escape(entry.link)
        elif entry.kind == _HARDLINK:
            target = display(entry.link)
        rows.append(Row(entry.path, entry, layer, KIND_NAMES[entry.kind], target))
    return rows


SORTS: Final = ("name", "size", "layer")
# ls --type: find's letters for what a row shows (a hardlink is a regular file; with -L a symlink
# is what it leads to).
TYPES: Final = {
    "f": {Kind.FILE, Kind.HARDLINK},
    "d": {Kind.DIR},
    "l": {Kind.SYMLINK},
    "c": {Kind.CHAR},
    "b": {Kind.BLOCK},
    "p": {Kind.FIFO},
}


def arrange(rows: list[Row], sort: str = "name", types: str = "") -> list[Row]:
    """The rows of the types ``types`` names (letters of :data:`TYPES`; empty: all), in the order
    ``sort`` says: ``name`` as listed (by name, a directory's contents after it), ``size`` largest
    first (as ``ls -S``; only regular files have a size), ``layer`` lowest first (paths no layer
    supplied last); ties keep the name order."""
    if sort not in SORTS:
        raise UsageError(f"--sort {sort!r}: expected one of {', '.join(SORTS)}")
    if types:
        kinds = set().union(*(TYPES[letter] for letter in types))
        rows = [row for row in rows if row.entry.kind in kinds]
    if sort == "size":
        return sorted(rows, key=lambda row: -row.entry.size if row.entry.kind == _FILE else 0)
    if sort == "layer":
        return sorted(rows, key=lambda row: (row.layer is None, row.layer or 0))
    return rows


@dataclass(slots=True)
class Listing:
    """ls's answer: the rows, and the digest of every layer (rows name layers by number)."""

    rows: list[Row]
    digests: list[str]


def list_image(
    image: Image,
    path: str,
    reading: Reading,
    *,
    recursive: bool = False,
    layer: int | None = None,
    only: bool = False,
    dereference: bool = False,
    sort: str = "name",
    types: str = "",
) -> Listing:
    """``ls PATH``: the final tree, the tree after ``layer``, or (``only``) that layer's own entries;
    of the ``types`` asked for, in ``sort`` order (see :func:`arrange`)."""
    if only and layer is None:
        raise UsageError("--only needs --layer N")
    check_layer_number(image, layer, "--layer")
    digests = [str(item.digest) for item in image.layers]
    if only:
        assert layer is not None
        indexes = index_image(
            image, cache=reading.cache, progress=reading.progress, upto=layer, warn=reading.warn
        )
        rows = list_layer(indexes[layer], layer, normalize_query(path))
    else:
        rows = list_query(merged(image, reading, upto=layer).tree, path, recursive, dereference)
    return Listing(arrange(rows, sort, types), digests)
