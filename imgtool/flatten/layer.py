"""Layers ``first..last`` of an image merged into one layer tar: what ``imgtool squash`` writes.

The layer is the difference between two merged trees, the one after layer ``first - 1`` (below)
and the one after layer ``last`` (top), written by flatten's tar writer. A path of the top tree
whose node a layer of the range supplied is written as flatten writes it; a path the range left
as it was below is left out, unless a path under it is written (then its directory header is
written too, with the metadata it has); a path of the tree below that the range removed gets a
whiteout (``.wh.NAME``, an empty file) in its directory. So applying the layer over the layers
below gives the same tree as applying the range did, and with ``first`` 0 the layer is exactly
flatten's tar of layers ``0..last``.

Whiteouts are written one per path removed, never as an opaque marker: an opaque marker hides
what the layer does not write again, and the layer does not write what the range left untouched
below. No whiteout names a path the layer writes (a path replaced needs none: a non-directory
replaces what is there, a directory over a directory keeps its contents and gets whiteouts for
those removed), so the order of entries does not matter to any applier.

A hardlink the range made to a file of the layers below is written as a hardlink to a path that
file still has, unchanged, in the top tree (one that exists below and is never whited out); when
it has none there, the file's data is written, read from the layer below that holds it, and the
other paths the range gave it link to that one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO, Final

from imgtool.errors import UsageError
from imgtool.flatten.export import write_tar
from imgtool.flatten.plan import InodeKey, inode_key, make_plan, shared_inodes
from imgtool.image.image import Image
from imgtool.layers.paths import join_path
from imgtool.layers.tarstream import Entry, Kind
from imgtool.layers.whiteout import PREFIX
from imgtool.merge.index import IndexCache, index_image
from imgtool.merge.overlay import Node, Tree
from imgtool.merge.view import MergedView, apply_indexes
from imgtool.progress import Progress

# A whiteout as the layer holds it: an empty regular file, root's, mode 0, at the epoch.
_WHITEOUT: Final = Entry(b"", Kind.FILE, 0, 0, 0, 0, 0, b"", 0, 0, None, None, -1)


class _Place:
    """A directory of the top tree and its copy in the layer, made only when something under it
    is written (then its parents are made too)."""

    __slots__ = ("made", "name", "node", "parent")

    def __init__(self, node: Node, name: bytes, parent: _Place | None, made: Node | None = None) -> None:
        self.node = node
        self.name = name
        self.parent = parent
        self.made = made

    def directory(self) -> Node:
        """The layer's copy of this directory, made (with the missing ones above it) if need be."""
        missing: list[_Place] = []
        place: _Place | None = self
        while place is not None and place.made is None:
            missing.append(place)
            place = place.parent
        assert place is not None and place.made is not None  # the root is always made
        above = place.made
        for item in reversed(missing):
            item.made = _copy(item.node)
            assert above.children is not None
            above.children[item.name] = item.made
            above = item.made
        assert self.made is not None
        return self.made


def _copy(node: Node) -> Node:
    """A node of the layer's tree standing for ``node`` (a directory: without its children)."""
    copy = Node(node.entry, node.layer, node.source)
    if node.is_dir:
        copy.children = {}
    return copy


def layer_tree(below: Tree, top: Tree, first: int) -> tuple[Tree, dict[InodeKey, bytes]]:
    """The tree of the layer that turns ``below`` into ``top`` (layers ``first..`` applied over it),
    and the inodes of its hardlinks that keep a path below (the path each links to)."""
    layer = Tree()
    layer.root = _copy(top.root)
    shared = shared_inodes(top)
    kept: dict[InodeKey, bytes] = {}  # a shared inode's first unchanged path, in tree order
    linked: set[InodeKey] = set()  # the shared inodes the layer writes a path of, from below
    stack: list[tuple[bytes, Node, Node | None, _Place]] = [
        (b"", top.root, below.root, _Place(top.root, b"", None, layer.root))
    ]
    while stack:
        path, node, lower, place = stack.pop()
        assert node.children is not None
        lower_children = lower.children if lower is not None else None
        if lower_children:
            gone = sorted(name for name in lower_children if name not in node.children)
            if gone:
                made = place.directory().children
                assert made is not None
                for name in gone:
                    made[PREFIX + name] = Node(_WHITEOUT, first)
        for name in sorted(node.children, reverse=True):
            child = node.children[name]
            child_path = join_path(path, name)
            was = lower_children.get(name) if lower_children else None
            if child.is_dir:
                child_place = _Place(child, name, place)
                if child.layer >= first:
                    child_place.directory()
                stack.append(
                    (child_path, child, was if was is not None and was.is_dir else None, child_place)
                )
                continue
            key = inode_key(child)
            if child.layer >= first:
                made = place.directory().children
                assert made is not None
                made[name] = _copy(child)
                if key in shared and key[0] < first:
                    linked.add(key)
            elif key in shared and (key not in kept or child_path < kept[key]):
                kept[key] = child_path
    return layer, {key: kept[key] for key in linked if key in kept}


def check_range(image: Image, first: int, last: int) -> None:
    """UsageError unless ``first..last`` are layers of the image, ``first`` not above ``last``."""
    count = len(image.layers)
    if count == 0:
        raise UsageError(f"{image.reference}: the image has no layers to squash")
    for option, number in (("--from", first), ("--to", last)):
        if not 0 <= number < count:
            raise UsageError(f"{option} {number}: the image has layers 0 to {count - 1}")
    if first > last:
        raise UsageError(f"--from {first} is above --to {last}: the range is empty")


def write_layer(
    image: Image,
    out: BinaryIO,
    first: int,
    last: int,
    *,
    cache: IndexCache | None = None,
    progress: Progress | None = None,
    max_size: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> int:
    """Write layers ``first..last`` merged into one layer tar to ``out``; returns its size."""
    check_range(image, first, last)
    indexes = index_image(
        image, cache=cache, progress=progress, max_size=max_size, upto=last, warn=warn, hash_content=False
    )
    below = apply_indexes(image, indexes, upto=first - 1)
    top = apply_indexes(image, indexes, upto=last)
    del indexes
    tree, linked = layer_tree(below, top, first)
    del below, top
    view = MergedView(image, [], tree)
    return write_tar(view, out, progress, max_size, make_plan(tree, linked), linked=linked)
