"""The layer semantics, once: apply layers in order to a tree of headers, never touching a disk.

The rules are the OCI image-spec's, applied the way umoci applies them (so the
result agrees with ``umoci raw unpack`` entry for entry):

* Entries are applied in tar order. A parent path is resolved as a chroot
  would: symlinks inside the tree are followed, absolute targets restart at the
  root, ``..`` stops at the root. The last component is never followed.
* A whiteout ``.wh.NAME`` removes NAME; an opaque marker removes what a
  directory holds. Neither removes what the same layer has already written
  there (the layer's "upper" paths): markers hide lower layers only.
* A non-directory replaces whatever was at its path, subtree included; a
  directory over a directory only takes its metadata.
* A hardlink shares the inode of its target as it stands when the link is
  applied; replacing the target later does not change the link.

Every node carries the layer that supplied it, so the same tree answers
which-layer, ls, diff and drives flatten.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from imgtool import whiteout
from imgtool.errors import ImageFormatError, LimitExceededError
from imgtool.paths import display, split_path
from imgtool.tarstream import DIR, FILE, HARDLINK_KIND, OPAQUE, SYMLINK_KIND, WHITEOUT, Entry

MAX_LINK_HOPS: Final = 255
ROOT_LAYER: Final = -1

# Why a path stopped existing, in which-layer's words.
DELETED: Final = "deleted"  # a whiteout named it or an ancestor
HIDDEN: Final = "hidden"  # an opaque directory above it was cleared
REPLACED: Final = "replaced"  # an ancestor, or the path itself, was replaced by another entry


class Node:
    """A path in the merged tree.

    ``entry`` is what the supplying layer's tar says about the path (None for a
    directory that exists only because entries were written under it).
    ``source`` is the layer and entry that made the inode: the entry itself,
    or for a hardlink the entry of the file it links to.
    """

    __slots__ = ("children", "entry", "layer", "source", "upper")

    def __init__(self, entry: Entry | None, layer: int, source: tuple[int, Entry] | None = None) -> None:
        self.entry = entry
        self.layer = layer
        self.source = source
        self.upper = layer
        is_dir = entry is None or entry.kind == DIR
        self.children: dict[bytes, Node] | None = {} if is_dir else None

    @property
    def is_dir(self) -> bool:
        return self.children is not None

    @property
    def kind(self) -> int:
        return DIR if self.entry is None else self.entry.kind

    @property
    def inode(self) -> tuple[int, Entry] | None:
        """(layer, entry) of the entry that created this inode; None for implied directories."""
        if self.source is not None:
            return self.source
        return None if self.entry is None else (self.layer, self.entry)

    @property
    def content(self) -> Entry | None:
        """The entry whose type, metadata and data this path has (a hardlink's target's)."""
        return self.source[1] if self.source is not None else self.entry


class ChangeRecorder:
    """Receives every change a layer makes; which-layer and diff listen, flatten does not."""

    def added(self, layer: int, path: bytes, node: Node) -> None:
        pass

    def modified(self, layer: int, path: bytes, old: Node, new: Node) -> None:
        pass

    def removed(self, layer: int, path: bytes, node: Node, reason: str) -> None:
        pass


class Tree:
    """The merged view of layers applied so far."""

    def __init__(self) -> None:
        self.root = Node(None, ROOT_LAYER)
        self.layers_applied = 0

    # -- applying ---------------------------------------------------------------------------

    def apply(self, layer: int, entries: Iterable[Entry], recorder: ChangeRecorder | None = None) -> None:
        applier = _LayerApplier(self, layer, recorder)
        for entry in entries:
            applier.apply(entry)
        self.layers_applied = layer + 1

    # -- reading ----------------------------------------------------------------------------

    def lookup(self, path: bytes) -> Node | None:
        """The node at a canonical path, without following symlinks."""
        node: Node | None = self.root
        if not path:
            return node
        for name in path.split(b"/"):
            if node is None or node.children is None:
                return None
            node = node.children.get(name)
        return node

    def resolve(self, path: bytes, follow_last: bool = True) -> tuple[bytes, Node | None, list[bytes]]:
        """Resolve a path as a process inside the image would see it (confined to the root).

        Returns the canonical resolved path, its node (None if absent) and the
        symlinks followed on the way, in order.
        """
        if follow_last:
            names, nodes, links = _secure_resolve(self.root, path)
            return b"/".join(names), nodes[-1], links
        parent_raw, name = split_path(path)
        names, nodes, links = _secure_resolve(self.root, parent_raw)
        parent = nodes[-1]
        if not name:
            node = parent
        else:  # nothing exists below a non-directory (``/etc/passwd/x``)
            node = parent.children.get(name) if parent is not None and parent.children is not None else None
        resolved = b"/".join([*names, name]) if name else b"/".join(names)
        return resolved, node, links

    def nodes(self) -> Iterator[Node]:
        """Every node, in no particular order (cheaper than :meth:`walk`: no paths are built)."""
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            if node.children:
                stack.extend(node.children.values())

    def walk(self, top: bytes = b"") -> Iterator[tuple[bytes, Node]]:
        """Every (path, node) at and under ``top``, parents before children, names in byte order."""
        start = self.lookup(top)
        if start is None:
            return
        stack: list[tuple[bytes, Node]] = [(top, start)]
        while stack:
            path, node = stack.pop()
            yield path, node
            if node.children:
                prefix = path + b"/" if path else b""
                stack.extend(
                    (prefix + name, node.children[name]) for name in sorted(node.children, reverse=True)
                )


def _secure_resolve(root: Node, path: bytes) -> tuple[list[bytes], list[Node | None], list[bytes]]:
    """Resolve every component of ``path`` the way filepath-securejoin does, over the tree.

    Returns the resolved names, the node of each prefix (``nodes[0]`` is the
    root, so ``len(nodes) == len(names) + 1``; None where nothing exists) and
    the symlinks followed. A missing component, and anything below a
    non-directory, is taken lexically, as securejoin takes it.
    """
    names: list[bytes] = []
    nodes: list[Node | None] = [root]
    links: list[bytes] = []
    pending = list(reversed(path.split(b"/"))) if path else []
    hops = 0
    while pending:
        name = pending.pop()
        if name in (b"", b"."):
            continue
        if name == b"..":
            if names:
                names.pop()
                nodes.pop()
            continue
        parent = nodes[-1]
        child = parent.children.get(name) if parent is not None and parent.children is not None else None
        content = child.content if child is not None else None
        if content is not None and content.kind == SYMLINK_KIND:  # a hardlink to a symlink is one too
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise LimitExceededError(
                    f"too many levels of symbolic links resolving {display(b'/'.join([*names, name]))}"
                )
            links.append(b"/".join([*names, name]))
            target = content.link
            if target.startswith(b"/"):
                del names[:]
                del nodes[1:]
            pending.extend(reversed(target.split(b"/")))
            continue
        names.append(name)
        nodes.append(child)
    return names, nodes, links


class _LayerApplier:
    """Applies one layer's entries; remembers what this layer wrote (its upper paths)."""

    def __init__(self, tree: Tree, layer: int, recorder: ChangeRecorder | None) -> None:
        self.tree = tree
        self.layer = layer
        self.recorder = recorder
        self._parents: dict[bytes, tuple[bytes, Node]] = {}
        self._aufs_links: dict[bytes, Entry] = {}  # the files of this layer's .wh..wh.plnk/, by name

    def apply(self, entry: Entry) -> None:
        if whiteout.is_aufs_bookkeeping(entry.path):  # never content; its link targets are kept aside
            name = whiteout.aufs_link_name(entry.path)
            if name is not None and entry.kind == FILE:
                self._aufs_links[name] = entry
            return
        if entry.kind in (WHITEOUT, OPAQUE):
            self._apply_marker(entry)
            return
        if not entry.path:
            self._apply_root(entry)
            return
        parent_raw, name = split_path(entry.path)
        parent_path, parent = self._parent_dir(parent_raw, entry)
        path = parent_path + b"/" + name if parent_path else name
        children = parent.children
        assert children is not None
        existing = children.get(name)
        if existing is not None and existing.is_dir and entry.kind == DIR:
            new = Node(entry, self.layer)
            new.children = existing.children
            children[name] = new
            if self.recorder:
                self.recorder.modified(self.layer, path, existing, new)
            return
        if existing is not None:
            self._remove(path, existing, REPLACED, keep_upper=False, report_self=False)
            del children[name]
            self._parents.clear()
        if entry.kind == HARDLINK_KIND:
            new = Node(entry, self.layer, self._link_source(entry))
        else:
            new = Node(entry, self.layer)
        # A new symlink needs no cache flush: cached parents exist as directories, so none passes here.
        children[name] = new
        if self.recorder:
            if existing is None:
                self.recorder.added(self.layer, path, new)
            else:
                self.recorder.modified(self.layer, path, existing, new)

    def _apply_root(self, entry: Entry) -> None:
        old = self.tree.root
        new = Node(entry, self.layer)
        new.children = old.children
        self.tree.root = new
        self._parents.clear()
        if self.recorder:
            self.recorder.modified(self.layer, b"", old, new)

    def _parent_dir(self, raw: bytes, entry: Entry) -> tuple[bytes, Node]:
        """Resolve (and create, like MkdirAll) the directory an entry goes into."""
        cached = self._parents.get(raw)
        if cached is not None:
            return cached
        names, nodes, _ = _secure_resolve(self.tree.root, raw)
        node = self.tree.root
        node.upper = self.layer
        for depth, name in enumerate(names, start=1):
            child = nodes[depth]
            if child is None:
                child = Node(None, self.layer)
                assert node.children is not None
                node.children[name] = child
                if self.recorder:
                    self.recorder.added(self.layer, b"/".join(names[:depth]), child)
            elif not child.is_dir:
                raise ImageFormatError(
                    f"entry {display(entry.path)}: parent {display(b'/'.join(names[:depth]))} "
                    "is not a directory"
                )
            child.upper = self.layer
            node = child
        result = (b"/".join(names), node)
        self._parents[raw] = result
        return result

    def _link_source(self, entry: Entry) -> tuple[int, Entry]:
        aufs_name = whiteout.aufs_link_name(entry.link)
        if aufs_name is not None:
            stashed = self._aufs_links.get(aufs_name)
            if stashed is None:
                raise ImageFormatError(
                    f"entry {display(entry.path)}: hardlink target {display(entry.link)} is not a file "
                    "this layer put in .wh..wh.plnk before it"
                )
            return self.layer, stashed
        parent_raw, name = split_path(entry.link)
        parent = _secure_resolve(self.tree.root, parent_raw)[1][-1]
        target = parent.children.get(name) if parent is not None and parent.children is not None else None
        if target is None:
            raise ImageFormatError(
                f"entry {display(entry.path)}: hardlink target {display(entry.link)} does not exist"
            )
        source = target.inode
        if target.is_dir or source is None:
            raise ImageFormatError(
                f"entry {display(entry.path)}: hardlink target {display(entry.link)} is a directory"
            )
        return source

    def _apply_marker(self, entry: Entry) -> None:
        opaque = entry.kind == OPAQUE
        raw = entry.path if opaque else split_path(entry.path)[0]
        names, nodes, _ = _secure_resolve(self.tree.root, raw)
        directory = nodes[-1]
        if directory is None or directory.children is None:
            return
        base = b"/".join(names)
        if opaque:
            for name in sorted(directory.children):
                child = directory.children[name]
                path = base + b"/" + name if base else name
                if self._remove(path, child, HIDDEN, keep_upper=True, report_self=True):
                    del directory.children[name]
        else:
            name = split_path(entry.path)[1]
            target = directory.children.get(name)
            if target is None:
                return
            path = base + b"/" + name if base else name
            if self._remove(path, target, DELETED, keep_upper=True, report_self=True):
                del directory.children[name]
        self._parents.clear()

    def _remove(self, path: bytes, node: Node, reason: str, keep_upper: bool, report_self: bool) -> bool:
        """Remove ``node``'s subtree, except what this layer wrote when ``keep_upper``.

        Returns whether ``node`` itself is gone (the caller unlinks it from its parent).
        """
        if keep_upper and node.upper == self.layer:
            if node.children:
                for name in sorted(node.children):
                    child_path = path + b"/" + name if path else name
                    if self._remove(child_path, node.children[name], reason, keep_upper, True):
                        del node.children[name]
            return False
        if self.recorder:
            for sub_path, sub in _subtree(path, node):
                if sub_path != path or report_self:
                    self.recorder.removed(self.layer, sub_path, sub, reason)
        return True


def _subtree(path: bytes, node: Node) -> Iterator[tuple[bytes, Node]]:
    stack = [(path, node)]
    while stack:
        current, item = stack.pop()
        yield current, item
        if item.children:
            stack.extend(
                (current + b"/" + name if current else name, child) for name, child in item.children.items()
            )
