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
* No path of the tree, as resolved, is longer than ``MAX_PATH_BYTES`` (see
  :mod:`imgtool.merge.resolution`; ``LimitExceededError`` names the entry): that bounds
  the depth of the tree, and so the memory every walk over it takes.

Every walk here is iterative (an explicit stack), whatever the depth.

Every node carries the layer that supplied it, so the same tree answers
which-layer, ls, diff and drives flatten.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from imgtool.errors import ImageFormatError
from imgtool.layers import whiteout
from imgtool.layers.paths import display, join_path, split_path
from imgtool.layers.tarreader import MAX_PATH_BYTES
from imgtool.layers.tarstream import Entry, Kind
from imgtool.merge.changes import ChangeRecorder, ChangeWord
from imgtool.merge.resolution import (
    Frame,
    PathTooLongError,
    Targets,
    frame_path,
    resolve,
    resolve_counted,
    root_frame,
    shorten,
)

ROOT_LAYER: Final = -1
_SPECIAL_NAMES: Final = (b"", b".", b"..")

# The members of Kind and ChangeWord under module-level names, for the code run once per entry:
# on Python 3.11 ``Kind.DIR`` is a descriptor lookup costing several times a global's.
_FILE: Final = Kind.FILE
_DIR: Final = Kind.DIR
_SYMLINK: Final = Kind.SYMLINK
_HARDLINK: Final = Kind.HARDLINK
_WHITEOUT: Final = Kind.WHITEOUT
_OPAQUE: Final = Kind.OPAQUE
_AUFS_META: Final = whiteout.AUFS_META_PREFIX  # AUFS bookkeeping (see there)


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
        is_dir = entry is None or entry.kind == _DIR
        self.children: dict[bytes, Node] | None = {} if is_dir else None

    @property
    def is_dir(self) -> bool:
        return self.children is not None

    @property
    def kind(self) -> Kind:
        return _DIR if self.entry is None else self.entry.kind

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


class Tree:
    """The merged view of layers applied so far."""

    def __init__(self) -> None:
        self.root = Node(None, ROOT_LAYER)
        self.layers_applied = 0
        self.targets = Targets()
        # Whether an entry's effect hung on what was missing here: a directory made for it, a marker
        # or a hardlink whose directory is absent, ".." out of a missing name. In a tree of the upper
        # layers alone (cat, top down), lower layers could have changed where such an entry went;
        # where it is False they could only have added paths no lookup here met.
        self.depends_below = False

    # -- applying ---------------------------------------------------------------------------

    def apply(self, layer: int, entries: Iterable[Entry], recorder: ChangeRecorder | None = None) -> None:
        applier = _LayerApplier(self, layer, recorder)
        entry = None
        try:
            for entry in entries:
                applier.apply(entry)
        except PathTooLongError as exc:
            assert entry is not None
            raise PathTooLongError(f"entry {shorten(entry.path)}: {exc}") from None
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
        links: list[bytes] = []
        if follow_last:
            frame = resolve(self.root, self.targets, root_frame(self.root), path, links)
            return frame_path(frame), frame[1], links
        parent_raw, name = split_path(path)
        frame = resolve(self.root, self.targets, root_frame(self.root), parent_raw, links)
        parent = frame[1]
        if not name:
            return frame_path(frame), parent, links
        node = parent.children.get(name) if parent is not None and parent.children is not None else None
        return join_path(frame_path(frame), name), node, links

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


class _LayerApplier:
    """Applies one layer's entries; remembers what this layer wrote (its upper paths)."""

    def __init__(self, tree: Tree, layer: int, recorder: ChangeRecorder | None) -> None:
        self.tree = tree
        self.layer = layer
        self.recorder = recorder
        self._watch = recorder.paths if recorder is not None else None  # None: every path is reported
        # Directories this layer resolved (and created): by the raw parent path of its entries, and
        # component by component: (id of the parent's position, name) -> position. A position's path,
        # and the symlinks followed to reach it (when any), by its id. Few objects per directory:
        # the collector walks every one of them.
        self._parents: dict[bytes, tuple[bytes, Node]] = {}
        self._aufs_links: dict[bytes, Entry] = {}  # the files of this layer's .wh..wh.plnk/, by name
        self._steps: dict[tuple[int, bytes], Frame] = {}
        self._paths: dict[int, bytes] = {}
        self._hops: dict[int, int] = {}
        self._lexical = False  # whether a resolved directory was reached through a missing name and ".."
        self._root = root_frame(tree.root)
        self._paths[id(self._root)] = b""

    def _forget(self) -> None:
        """Something was removed or replaced: resolved directories may no longer be what they were."""
        self._parents.clear()
        self._steps.clear()
        self._paths.clear()
        self._hops.clear()
        self._lexical = False
        self._root = root_frame(self.tree.root)
        self._paths[id(self._root)] = b""

    def apply(self, entry: Entry) -> None:
        # Run once per entry of every layer: the common case (a new path in a directory this layer
        # has resolved already) costs a few dict lookups; helpers are inlined where that counts.
        path = entry.path
        kind = entry.kind
        if path.startswith(_AUFS_META):  # AUFS bookkeeping: never content
            name = whiteout.aufs_link_name(path)
            if name is not None and kind == _FILE:
                self._aufs_links[name] = entry  # a link target, kept aside
            return
        if kind in (_WHITEOUT, _OPAQUE):
            self._apply_marker(entry)
            return
        if not path:
            self._apply_root(entry)
            return
        cut = path.rfind(b"/")
        if cut < 0:
            parent_raw, name = b"", path
        else:
            parent_raw, name = path[:cut], path[cut + 1 :]
        found = self._parents.get(parent_raw)
        parent_path, parent = found if found is not None else self._parent_dir(parent_raw, entry)
        if parent_path:
            path = parent_path + b"/" + name
            if len(path) > MAX_PATH_BYTES:
                raise PathTooLongError(
                    f"path {shorten(path)} is longer than the limit of {MAX_PATH_BYTES} bytes"
                )
        else:
            path = name
        children = parent.children
        assert children is not None
        existing = children.get(name)
        recorder = self.recorder
        if recorder is not None and self._watch is not None and path not in self._watch:
            recorder = None  # a recorder of other paths than this one
        if existing is not None:
            if kind == _DIR and existing.children is not None:
                new = Node(entry, self.layer)
                new.children = existing.children
                children[name] = new
                if recorder:
                    recorder.modified(self.layer, path, existing, new)
                return
            self._remove(path, existing, ChangeWord.REPLACED, keep_upper=False, report_self=False)
            del children[name]
            self._forget()
        if kind == _HARDLINK:
            new = Node(entry, self.layer, self._link_source(entry))
        else:
            new = Node(entry, self.layer)
        children[name] = new
        # A new symlink changes no resolved directory (each exists as a directory: no path passes
        # through the new one), unless one was reached through a missing name and "..".
        if self._lexical and kind in (_SYMLINK, _HARDLINK):
            self._forget()
        if recorder:
            if existing is None:
                recorder.added(self.layer, path, new)
            else:
                recorder.modified(self.layer, path, existing, new)

    def _apply_root(self, entry: Entry) -> None:
        old = self.tree.root
        new = Node(entry, self.layer)
        new.children = old.children
        self.tree.root = new
        self._forget()
        recorder = self._recorder_for(b"")
        if recorder:
            recorder.modified(self.layer, b"", old, new)

    def _parent_dir(self, raw: bytes, entry: Entry) -> tuple[bytes, Node]:
        """Resolve (and create, like MkdirAll) the directory an entry goes into.

        Each directory of a raw path is resolved once per layer, from its parent's position: so
        entries in many directories under one long chain of symlinks pay for the chain once, not
        once each, and a directory costs what its own path costs, however deep it is.
        """
        cached = self._parents.get(raw)
        if cached is not None:
            return cached
        steps = self._steps
        frame = self._root
        self.tree.root.upper = self.layer
        for name in raw.split(b"/") if raw else ():
            found = steps.get((id(frame), name))
            if found is None:
                found = steps[(id(frame), name)] = self._step(frame, name, entry)
            frame = found
        node = frame[1]
        assert node is not None  # _step made it
        self._mark(frame)
        result = self._parents[raw] = (self._paths[id(frame)], node)
        return result

    def _mark(self, frame: Frame) -> None:
        """Mark a path as resolved as this layer's (not the directories a symlink on the way led out
        of). A node marked has its ancestors marked too: a directory is only created under a marked one."""
        marked: Frame | None = frame
        while marked is not None and marked[1] is not None and marked[1].upper != self.layer:
            marked[1].upper = self.layer
            marked = marked[2]

    def _step(self, frame: Frame, name: bytes, entry: Entry) -> Frame:
        """Resolve one component of an entry's directory from its parent's position, creating the
        directory where nothing is; records the new position's path and symlinks followed."""
        path = self._paths[id(frame)]
        hops = self._hops.get(id(frame), 0)
        parent = frame[1]
        assert parent is not None and parent.children is not None
        child = parent.children.get(name)
        if (child is None or child.children is not None) and name not in _SPECIAL_NAMES:
            length = frame[3] + len(name) + (1 if frame[2] is not None else 0)
            child_path = join_path(path, name)
            if length > MAX_PATH_BYTES:
                raise PathTooLongError(
                    f"path {shorten(child_path)} is longer than the limit of {MAX_PATH_BYTES} bytes"
                )
            if child is None:
                self.tree.depends_below = True
                self._mark(frame)
                child = Node(None, self.layer)
                parent.children[name] = child
                recorder = self._recorder_for(child_path)
                if recorder:
                    recorder.added(self.layer, child_path, child)
            new: Frame = (name, child, frame, length)
            self._paths[id(new)] = child_path
        else:  # a symlink, or not a directory
            found, hops, lexical = resolve_counted(self.tree.root, self.tree.targets, frame, name, hops)
            self._lexical = self._lexical or lexical
            self.tree.depends_below = self.tree.depends_below or lexical
            found = self._make_dirs(found, entry)
            new = (found[0], found[1], found[2], found[3])  # its own object: ids key what is recorded
            self._paths[id(new)] = frame_path(new)
        if hops:
            self._hops[id(new)] = hops
        return new

    def _make_dirs(self, frame: Frame, entry: Entry) -> Frame:
        """Create the directories missing at the end of a resolved position; returns the position with
        every node present."""
        missing: list[Frame] = []
        current = frame
        while current[1] is None:
            missing.append(current)
            assert current[2] is not None  # the root always exists
            current = current[2]
        node = current[1]
        if not node.is_dir:
            raise ImageFormatError(
                f"entry {shorten(entry.path)}: parent {shorten(frame_path(current))} is not a directory"
            )
        if not missing:
            return frame
        self.tree.depends_below = True
        self._mark(current)
        path = frame_path(current) if self.recorder else b""
        for name, _node, _parent, length in reversed(missing):
            child = Node(None, self.layer)
            assert node.children is not None
            node.children[name] = child
            if self.recorder:
                path = join_path(path, name)
                recorder = self._recorder_for(path)
                if recorder:
                    recorder.added(self.layer, path, child)
            current = (name, child, current, length)
            node = child
        return current

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
        frame, _, lexical = resolve_counted(
            self.tree.root, self.tree.targets, root_frame(self.tree.root), parent_raw, 0
        )
        parent = frame[1]
        target = parent.children.get(name) if parent is not None and parent.children is not None else None
        self.tree.depends_below = self.tree.depends_below or lexical or target is None
        if target is None:
            raise ImageFormatError(
                f"entry {shorten(entry.path)}: hardlink target {shorten(entry.link)} does not exist"
            )
        source = target.inode
        if target.is_dir or source is None:
            raise ImageFormatError(
                f"entry {shorten(entry.path)}: hardlink target {shorten(entry.link)} is a directory"
            )
        return source

    def _apply_marker(self, entry: Entry) -> None:
        opaque = entry.kind == _OPAQUE
        raw, name = (entry.path, b"") if opaque else split_path(entry.path)
        found = self._parents.get(raw)  # a directory this layer resolved is where the marker is
        if found is not None:
            base, directory = found
        else:
            frame, _, lexical = resolve_counted(
                self.tree.root, self.tree.targets, root_frame(self.tree.root), raw, 0
            )
            if lexical or frame[1] is None:
                self.tree.depends_below = True
            if frame[1] is None:
                return
            base, directory = frame_path(frame), frame[1]
        children = directory.children
        if not children:  # nothing there, or not a directory
            return
        if opaque:
            # In name order when the changes are recorded: they are reported in that order.
            names = sorted(children) if self.recorder else list(children)
            removed = False
            for name in names:
                if self._remove(
                    join_path(base, name),
                    children[name],
                    ChangeWord.HIDDEN,
                    keep_upper=True,
                    report_self=True,
                ):
                    del children[name]
                removed = True
            if not removed:
                return
        else:
            target = children.get(name)
            if target is None:
                return
            if self._remove(
                join_path(base, name), target, ChangeWord.DELETED, keep_upper=True, report_self=True
            ):
                del children[name]
        self._forget()

    def _remove(
        self, path: bytes, node: Node, reason: ChangeWord, keep_upper: bool, report_self: bool
    ) -> bool:
        """Remove ``node``'s subtree, except what this layer wrote when ``keep_upper``.

        Returns whether ``node`` itself is gone (the caller unlinks it from its parent).
        """
        if not (keep_upper and node.upper == self.layer):
            self._report_removed(path, node, reason, report_self)
            return True
        # Keep this layer's paths; remove the rest, depth first in name order, without recursion.
        stack = [(path, node, iter(sorted(node.children or ())))]
        while stack:
            current, item, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                continue
            assert item.children is not None
            child = item.children[name]
            child_path = join_path(current, name)
            if child.upper == self.layer:
                if child.children:
                    stack.append((child_path, child, iter(sorted(child.children))))
                continue
            self._report_removed(child_path, child, reason, True)
            del item.children[name]
        return False

    def _report_removed(self, path: bytes, node: Node, reason: ChangeWord, report_self: bool) -> None:
        recorder = self.recorder
        if not recorder:
            return
        if self._watch is None:
            for sub_path, sub in _subtree(path, node):
                if sub_path != path or report_self:
                    recorder.removed(self.layer, sub_path, sub, reason)
            return
        # Only the paths the recorder wants: looked up below ``path``, not the whole subtree walked.
        prefix = path + b"/" if path else b""
        for wanted in sorted(self._watch):
            if wanted == path:
                if report_self:
                    recorder.removed(self.layer, path, node, reason)
            elif wanted.startswith(prefix):
                below = _descendant(node, wanted[len(prefix) :])
                if below is not None:
                    recorder.removed(self.layer, wanted, below, reason)

    def _recorder_for(self, path: bytes) -> ChangeRecorder | None:
        """The recorder, if it wants to hear of ``path``."""
        if self._watch is not None and path not in self._watch:
            return None
        return self.recorder


def _descendant(node: Node, relative: bytes) -> Node | None:
    """The node at ``relative`` (a canonical path) below ``node``, symlinks not followed."""
    for name in relative.split(b"/"):
        if node.children is None:
            return None
        found = node.children.get(name)
        if found is None:
            return None
        node = found
    return node


def _subtree(path: bytes, node: Node) -> Iterator[tuple[bytes, Node]]:
    stack = [(path, node)]
    while stack:
        current, item = stack.pop()
        yield current, item
        if item.children:
            stack.extend((join_path(current, name), child) for name, child in item.children.items())
