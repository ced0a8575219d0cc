"""Resolving a path over the merged tree as a chroot would, the way filepath-securejoin does.

Symlinks inside the tree are followed (absolute targets restart at the root, ``..`` stops at
it), at most :data:`MAX_LINK_HOPS` of them for one path, and no path as resolved is longer
than :data:`MAX_PATH_BYTES`: that bounds the depth of a tree, and so the memory every walk
over it takes, whatever the image claims. Resolution works on positions that share their
ancestors, so that one can be kept and resumed at O(1) cost however deep it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from imgtool.errors import LimitExceededError
from imgtool.layers.paths import display, join_path
from imgtool.layers.tarreader import MAX_PATH_BYTES  # one bound: names read, paths resolved
from imgtool.layers.tarstream import Kind

if TYPE_CHECKING:
    from imgtool.merge.overlay import Node

MAX_LINK_HOPS: Final = 255
_SHOWN_BYTES: Final = 96  # of a path too long to be shown whole in a message

# A position reached while resolving: (name, node or None where nothing exists, parent position, length of
# the path so far). Positions share their ancestors, so a cached one costs O(1) however deep it is, and
# ``..`` is one step up whatever symlinks led there.
Frame = tuple[bytes, "Node | None", "Frame | None", int]


def root_frame(root: Node) -> Frame:
    """The position of the root directory, where every resolution starts."""
    return (b"", root, None, 0)


def frame_path(frame: Frame) -> bytes:
    """The canonical path of a position."""
    names = []
    current: Frame | None = frame
    while current is not None and current[2] is not None:
        names.append(current[0])
        current = current[2]
    names.reverse()
    return b"/".join(names)


def shorten(path: bytes) -> str:
    """A path for a message, cut when it is too long to be read in one line."""
    if len(path) <= _SHOWN_BYTES:
        return display(path)
    return display(path[:_SHOWN_BYTES]) + f"… ({len(path)} bytes)"


class PathTooLongError(LimitExceededError):
    """A path of the tree, as resolved, would be longer than :data:`MAX_PATH_BYTES`."""


class Targets:
    """Symlink targets split once: "" and "." dropped, reversed for a stack (so ``./`` x 400 000 + ``a``
    costs one step per hop, not 400 000). Keyed by the target's bytes, whose hash Python caches."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: dict[bytes, tuple[bool, list[bytes]]] = {}

    def get(self, target: bytes) -> tuple[bool, list[bytes]]:
        found = self._parts.get(target)
        if found is None:
            parts = [name for name in target.split(b"/") if name and name != b"."]
            parts.reverse()
            found = self._parts[target] = (target.startswith(b"/"), parts)
        return found


def resolve(
    root: Node, targets: Targets, frame: Frame, path: bytes, links: list[bytes] | None = None
) -> Frame:
    """Resolve every component of ``path`` from ``frame`` the way filepath-securejoin does, over the tree.

    Returns the position reached (its node None where nothing exists). A missing component, and
    anything below a non-directory, is taken lexically, as securejoin takes it. ``links``, when
    given, receives the path of every symlink followed.
    """
    return resolve_counted(root, targets, frame, path, 0, links)[0]


def resolve_counted(  # noqa: PLR0917 - the state of a resolution, as it stands
    root: Node, targets: Targets, frame: Frame, path: bytes, hops: int, links: list[bytes] | None = None
) -> tuple[Frame, int, bool]:
    """:func:`resolve`, continuing a resolution that has followed ``hops`` symlinks already (the limit
    is on the whole path); returns the position, the symlinks followed in all, and whether ``..``
    left a component that does not exist (a symlink created there later changes the answer)."""
    lexical = False
    if not path:
        return frame, hops, lexical
    pending = path.split(b"/")
    pending.reverse()
    while pending:
        name = pending.pop()
        if name == b"..":
            if frame[2] is not None:
                lexical = lexical or frame[1] is None
                frame = frame[2]
            continue
        if not name or name == b".":
            continue
        parent = frame[1]
        child = parent.children.get(name) if parent is not None and parent.children is not None else None
        content = child.content if child is not None else None
        if content is not None and content.kind == Kind.SYMLINK:  # a hardlink to a symlink is one too
            hops += 1
            if hops > MAX_LINK_HOPS:
                where = shorten(join_path(frame_path(frame), name))
                raise LimitExceededError(f"too many levels of symbolic links resolving {where}")
            if links is not None:
                links.append(join_path(frame_path(frame), name))
            absolute, parts = targets.get(content.link)
            if absolute:
                frame = (b"", root, None, 0)
            pending.extend(parts)
            continue
        length = frame[3] + len(name) + (1 if frame[2] is not None else 0)
        if length > MAX_PATH_BYTES:
            raise PathTooLongError(
                f"path {shorten(join_path(frame_path(frame), name))} is longer than the limit of "
                f"{MAX_PATH_BYTES} bytes"
            )
        frame = (name, child, frame, length)
    return frame, hops, lexical
