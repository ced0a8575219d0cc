"""What each layer did to each path, recorded while the layers are applied.

The words: ``added``, ``modified`` (with what changed: type, content, mode,
owner, mtime, link, xattrs, device), ``deleted`` (a whiteout), ``hidden`` (an
opaque directory above it), ``replaced`` (an ancestor, or the path itself,
was replaced by something else).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final, TypeAlias

from imgtool.layers.tarstream import IMPLIED_DIR, KIND_NAMES, Entry, Kind

if TYPE_CHECKING:
    from imgtool.merge.overlay import Node


class ChangeWord(StrEnum):
    """What a layer did to a path: the one vocabulary of change words, written as they are in the
    JSON and the tables (a StrEnum member is its word: it compares, formats and dumps as it)."""

    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"  # a whiteout named it or an ancestor
    HIDDEN = "hidden"  # an opaque directory above it was cleared
    REPLACED = "replaced"  # an ancestor, or the path itself, was replaced by another entry


# Why a path stopped existing; diff layers and diff images call all of them deletions.
REMOVALS: Final = frozenset({ChangeWord.DELETED, ChangeWord.HIDDEN, ChangeWord.REPLACED})
# The same members under module-level names, for the code run once per entry: on Python 3.11
# ``ChangeWord.ADDED`` is a descriptor lookup costing several times a global's.
_ADDED: Final = ChangeWord.ADDED
_MODIFIED: Final = ChangeWord.MODIFIED
_FILE: Final = Kind.FILE
_DIR: Final = Kind.DIR
METADATA_FIELDS: Final = frozenset({"mode", "owner", "mtime", "xattrs"})


def kind_name(node: Node) -> str:
    """The type a path has in the filesystem: a hardlink is whatever its inode is."""
    content = node.content
    return KIND_NAMES[_DIR] if content is None else KIND_NAMES[content.kind]


def file_size(node: Node) -> int:
    content = node.content
    return content.size if content is not None and content.kind == _FILE else 0


def differences(old: Node, new: Node) -> tuple[str, ...]:
    """What differs between two states of a path, in a fixed order.

    A directory that exists only implicitly counts as 0755, root's, at the epoch.
    """
    a, b = old.content or IMPLIED_DIR, new.content or IMPLIED_DIR
    if a.kind != b.kind:
        return ("type",)
    what: list[str] = []
    if a.kind == _FILE and not _same_content(a, b):
        what.append("content")
    if a.mode != b.mode:
        what.append("mode")
    if (a.uid, a.gid) != (b.uid, b.gid):
        what.append("owner")
    if a.mtime_ns != b.mtime_ns:
        what.append("mtime")
    if a.link != b.link:
        what.append("link")
    if (a.xattrs or {}) != (b.xattrs or {}):
        what.append("xattrs")
    if (a.devmajor, a.devminor) != (b.devmajor, b.devminor):
        what.append("device")
    return tuple(what)


def _same_content(a: Entry, b: Entry) -> bool:
    if a.size != b.size:
        return False
    if a.digest is not None and b.digest is not None:
        return a.digest == b.digest
    return a is b


def is_metadata_only(what: tuple[str, ...]) -> bool:
    return bool(what) and set(what) <= METADATA_FIELDS


@dataclass(slots=True)  # not frozen: made once per entry, and a frozen one costs three times as much
class Change:
    layer: int
    path: bytes
    change: ChangeWord
    kind: str
    size: int
    what: tuple[str, ...] = ()
    unreachable: int = 0  # bytes of files this change left with no name in the tree
    inode: tuple[int, int] | None = None  # (layer, entry ordinal) of the regular file the path now is


def inode_key(node: Node) -> tuple[int, int] | None:
    """Which regular file a path is, the same for all its hardlinks; None for anything else."""
    inode = node.inode
    if inode is None or inode[1].kind != _FILE:
        return None
    return inode[0], inode[1].ordinal


class ChangeRecorder:
    """Receives every change a layer makes; which-layer and diff listen, flatten does not.

    ``paths``, when set, are the only paths the recorder is told of (which-layer asks about a few
    paths: the changes of the others need not be made at all)."""

    paths: frozenset[bytes] | None = None

    def added(self, layer: int, path: bytes, node: Node) -> None:
        pass

    def modified(self, layer: int, path: bytes, old: Node, new: Node) -> None:
        pass

    def removed(self, layer: int, path: bytes, node: Node, reason: ChangeWord) -> None:
        pass


_Event: TypeAlias = "tuple[int, bytes, ChangeWord, Node | None, Node]"


class ChangeLog(ChangeRecorder):
    """Every change of every layer, in the order the layers made them.

    Events are kept raw while layers are applied (that is the hot path); the
    details of a change (type, size, what differs) are worked out when asked for.
    """

    def __init__(self, paths: Iterable[bytes] | None = None) -> None:
        """Every change, or (``paths``) only the changes of those paths: then :meth:`for_path`
        answers for them alone, and :attr:`changes` holds theirs only."""
        self.paths = None if paths is None else frozenset(paths)
        self._events: list[_Event] = []
        self._changes: list[Change] | None = None

    def added(self, layer: int, path: bytes, node: Node) -> None:
        self._events.append((layer, path, _ADDED, None, node))

    def modified(self, layer: int, path: bytes, old: Node, new: Node) -> None:
        self._events.append((layer, path, _MODIFIED, old, new))

    def removed(self, layer: int, path: bytes, node: Node, reason: ChangeWord) -> None:
        self._events.append((layer, path, reason, None, node))

    @staticmethod
    def _change(event: _Event, lost: int = 0) -> Change:
        layer, path, word, old, node = event
        if word is _ADDED:
            return Change(layer, path, _ADDED, kind_name(node), file_size(node), inode=inode_key(node))
        if word is _MODIFIED:
            assert old is not None
            what = differences(old, node)
            return Change(
                layer, path, _MODIFIED, kind_name(node), file_size(node), what, lost, inode_key(node)
            )
        return Change(layer, path, word, kind_name(node), file_size(node), (), lost)

    @property
    def changes(self) -> list[Change]:
        """Every change; a file's bytes are unreachable at the change that removes its last name
        (its last hardlink), as ``du`` counts a file once whatever its names.

        What :meth:`_change`, :func:`kind_name`, :func:`file_size` and :func:`inode_key` work out,
        inlined: this runs once per change of every layer."""
        if self._changes is not None:
            return self._changes
        names: dict[tuple[int, int], int] = defaultdict(int)
        changes: list[Change] = []
        append = changes.append
        dir_word = KIND_NAMES[_DIR]
        for layer, path, word, old, node in self._events:
            source = node.source
            content = source[1] if source is not None else node.entry
            if content is None:  # an implied directory
                kind, size, key = dir_word, 0, None
            elif content.kind is _FILE:
                kind, size = KIND_NAMES[_FILE], content.size
                key = (source[0] if source is not None else node.layer, content.ordinal)
            else:
                kind, size, key = KIND_NAMES[content.kind], 0, None
            if word is _ADDED:
                if key is not None:
                    names[key] += 1
                append(Change(layer, path, _ADDED, kind, size, inode=key))
                continue
            gone: Node | None = node
            if word is _MODIFIED:
                assert old is not None
                gone = None
                if old.inode != node.inode:
                    gone = old
                    if key is not None:
                        names[key] += 1
            lost = 0
            if gone is not None:
                gone_key = key if gone is node else inode_key(gone)
                if gone_key is not None:
                    names[gone_key] -= 1
                    if names[gone_key] == 0:
                        lost = file_size(gone)
            if word is _MODIFIED:
                assert old is not None
                append(Change(layer, path, _MODIFIED, kind, size, differences(old, node), lost, key))
            else:
                append(Change(layer, path, word, kind, size, (), lost))
        self._changes = changes
        return changes

    def by_layer(self) -> dict[int, list[Change]]:
        grouped: dict[int, list[Change]] = defaultdict(list)
        for change in self.changes:
            grouped[change.layer].append(change)
        return grouped

    def for_path(self, path: bytes) -> list[Change]:
        return [self._change(event) for event in self._events if event[1] == path]
