"""Finding paths in a merged tree: the one resolver that which-layer, ls and cat share.

A query is a path as a user types it (``/etc/passwd``, ``usr/bin``) or a shell pattern
(``/usr/lib/*.so*``). It is resolved as a process inside the image would resolve it:
symlinks in its parent components are followed inside the image, absolute targets restart
at the root, ``..`` stops at the root, and nothing exists below a non-directory. Whether the
last component is followed too is the caller's choice (``cat`` follows it, ``which-layer``
and ``ls`` report the symlink itself).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Final

from imgtool.errors import ImageNotFoundError, UnsafePathError, UsageError
from imgtool.layers.paths import clean_path, join_path
from imgtool.layers.tarstream import Kind
from imgtool.merge.overlay import Node, Tree
from imgtool.merge.resolution import resolve_counted, root_frame

GLOB_CHARS: Final = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Found:
    """Where a query led: the canonical resolved path, its node (None if absent), the links followed."""

    path: bytes
    node: Node | None
    links: tuple[bytes, ...]

    @property
    def is_symlink(self) -> bool:
        content = self.node.content if self.node is not None else None
        return content is not None and content.kind == Kind.SYMLINK


def has_glob(text: str) -> bool:
    return any(c in GLOB_CHARS for c in text)


def normalize_query(text: str) -> bytes:
    """A typed path in canonical form; a path that climbs above the root is a usage error."""
    try:
        return clean_path(text.encode("utf-8", "surrogateescape"))
    except UnsafePathError as exc:
        raise UsageError(f"invalid path {text!r}: {exc}") from None


def find(tree: Tree, path: bytes, follow_last: bool) -> Found:
    """Resolve a canonical path in the tree (see the module docstring)."""
    resolved, node, links = tree.resolve(path, follow_last=follow_last)
    return Found(resolved, node, tuple(links))


def settled_file(tree: Tree, path: bytes) -> bool:
    """Whether ``path`` (symlinks followed) is a regular file of ``tree`` that layers below the
    tree's could not change: the tree's entries all went where they would go over any lower layers
    (``depends_below`` is False) and the resolution met only what the tree holds (no ``..`` out of
    a missing name). A regular file, not a directory: what lower layers hold is part of one."""
    if tree.depends_below:
        return False
    frame, _, lexical = resolve_counted(tree.root, tree.targets, root_frame(tree.root), path, 0)
    content = frame[1].content if frame[1] is not None else None
    return not lexical and content is not None and content.kind == Kind.FILE


def expand(tree: Tree, pattern: str) -> list[bytes]:
    """The paths matching a shell pattern, spelled as the pattern spells them, sorted.

    ``*`` does not cross ``/``; a literal or matched component that is a symlink to a
    directory is searched through, as a shell's glob does.
    """
    canonical = normalize_query(pattern)
    parts = canonical.split(b"/") if canonical else []
    level: list[bytes] = [b""]
    for part in parts:
        next_level: list[bytes] = []
        for path in level:
            directory = find(tree, path, follow_last=True).node
            if directory is None or directory.children is None:
                continue
            if any(c in part for c in (b"*", b"?", b"[")):
                names = sorted(n for n in directory.children if fnmatch.fnmatchcase(n, part))
            else:
                names = [part] if part in directory.children else []
            next_level.extend(join_path(path, n) for n in names)
        level = next_level
    return level


def wants_directory(text: str) -> bool:
    """A typed path ending in ``/`` names a directory (or a symlink to one), as in a shell."""
    return text.endswith("/") and text.strip("/") != ""


def is_directory(tree: Tree, path: bytes) -> bool:
    node = find(tree, path, follow_last=True).node
    return node is not None and node.is_dir


def not_a_directory(tree: Tree, text: str, path: bytes) -> ImageNotFoundError | None:
    """The error for ``file/``, a path typed with a trailing ``/`` that leads to something other
    than a directory (what ``ls file/`` says); None when the slash is not there or is right."""
    if not wants_directory(text):
        return None
    node = find(tree, path, follow_last=True).node
    if node is None or node.is_dir:
        return None  # absent is said as for any path; a directory is what was asked
    return ImageNotFoundError(f"{text}: not a directory")


def queries(tree: Tree, text: str) -> list[bytes] | None:
    """The canonical paths a query names: one for a plain path, every match of a pattern
    (None when a pattern matches nothing). A pattern ending in ``/`` matches directories only."""
    if has_glob(text):
        found = expand(tree, text)
        if wants_directory(text):
            found = [path for path in found if is_directory(tree, path)]
        return found or None
    return [normalize_query(text)]


def no_match(text: str) -> ImageNotFoundError:
    return ImageNotFoundError(f"{text}: no path in the image matches")
