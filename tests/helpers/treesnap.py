"""Snapshots of directory trees, and readable comparisons between them.

Everything works on bytes paths and ``lstat`` so that symlinks are never followed and names that are not
valid UTF-8 survive unchanged. Keys of a snapshot are paths relative to the snapshotted root, without a
leading slash; the root itself is ``b""``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Final

__all__ = [
    "NODE_FIELDS",
    "IgnoreFn",
    "Node",
    "compare",
    "display_path",
    "hardlink_groups",
    "ignore_fields",
    "snapshot",
    "tree_hash_listing",
]

IGNORED_XATTRS: Final = frozenset({"security.selinux"})
_TOLERATED_XATTR_ERRNOS: Final = frozenset({errno.ENOTSUP, errno.EPERM, errno.ENODATA, errno.EACCES})
_CHUNK: Final = 1 << 20

IgnoreFn = Callable[[bytes, str], bool]
"""``ignore(path, field)``: True when a difference in ``field`` at ``path`` is expected.

``field`` is one of the :class:`Node` field names, or ``"exists"`` for a path present on one side only.
"""


@dataclass(frozen=True, slots=True)
class Node:
    """What a tree records about one path (from ``lstat``, never following symlinks)."""

    type: str
    """One of 'file', 'dir', 'symlink', 'char', 'block', 'fifo', 'socket'."""
    mode: int
    """Permission bits including setuid, setgid and sticky (``st_mode & 0o7777``)."""
    uid: int
    gid: int
    size: int
    """Size of a regular file; 0 for every other type."""
    sha256: str | None
    """Hex SHA-256 of a regular file's content; None for every other type."""
    link: bytes | None
    """Target of a symlink; None for every other type."""
    mtime_ns: int | None
    """Modification time in nanoseconds; None only for the root when its mtime is excluded."""
    rdev: tuple[int, int] | None
    """(major, minor) of a character or block device; None for every other type."""
    xattrs: tuple[tuple[str, bytes], ...]
    """Extended attributes, sorted by name (``security.selinux`` left out)."""
    nlink: int
    """Link count for non-directories; 0 for directories, whose count depends on the file system."""


NODE_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(Node))


def _type_name(st_mode: int) -> str:
    if stat.S_ISREG(st_mode):
        return "file"
    if stat.S_ISDIR(st_mode):
        return "dir"
    if stat.S_ISLNK(st_mode):
        return "symlink"
    if stat.S_ISCHR(st_mode):
        return "char"
    if stat.S_ISBLK(st_mode):
        return "block"
    if stat.S_ISFIFO(st_mode):
        return "fifo"
    if stat.S_ISSOCK(st_mode):
        return "socket"
    raise ValueError(f"unknown file type in mode {st_mode:#o}")


def _file_sha256(path: bytes) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _xattrs(path: bytes) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _TOLERATED_XATTR_ERRNOS:
            return ()
        raise
    pairs: list[tuple[str, bytes]] = []
    for name in names:
        if name in IGNORED_XATTRS:
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _TOLERATED_XATTR_ERRNOS:
                continue
            raise
        pairs.append((name, value))
    return tuple(sorted(pairs))


def _node(path: bytes, st: os.stat_result) -> Node:
    kind = _type_name(st.st_mode)
    is_file = kind == "file"
    return Node(
        type=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size if is_file else 0,
        sha256=_file_sha256(path) if is_file else None,
        link=os.readlink(path) if kind == "symlink" else None,
        mtime_ns=st.st_mtime_ns,
        rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("char", "block") else None,
        xattrs=_xattrs(path),
        nlink=0 if kind == "dir" else st.st_nlink,
    )


def _root_bytes(root: str | Path | bytes) -> bytes:
    return os.fsencode(root)


def _walk(root: bytes) -> Iterator[tuple[bytes, bytes, os.stat_result]]:
    """Yield (relative path, absolute path, lstat) for the root and everything below it, parents first."""
    yield b"", root, os.lstat(root)
    pending: list[tuple[bytes, bytes]] = [(b"", root)]
    while pending:
        rel_dir, abs_dir = pending.pop()
        with os.scandir(abs_dir) as entries:
            children = sorted(entries, key=lambda e: e.name)
        for entry in children:
            rel = entry.name if not rel_dir else rel_dir + b"/" + entry.name
            st = entry.stat(follow_symlinks=False)
            yield rel, entry.path, st
            if stat.S_ISDIR(st.st_mode):
                pending.append((rel, entry.path))


def snapshot(root: str | Path | bytes, *, exclude_root_mtime: bool = False) -> dict[bytes, Node]:
    """Record every path under ``root`` (and ``root`` itself as ``b""``) without following symlinks.

    With ``exclude_root_mtime`` the root's ``mtime_ns`` is None, for trees whose creator stamps the top
    directory arbitrarily (umoci sets it to the epoch).
    """
    result: dict[bytes, Node] = {}
    for rel, abs_path, st in _walk(_root_bytes(root)):
        node = _node(abs_path, st)
        if rel == b"" and exclude_root_mtime:
            node = replace(node, mtime_ns=None)
        result[rel] = node
    return dict(sorted(result.items()))


def hardlink_groups(root: str | Path | bytes) -> set[frozenset[bytes]]:
    """Groups of relative paths under ``root`` that share one inode; only groups of two or more."""
    by_inode: dict[tuple[int, int], set[bytes]] = {}
    for rel, _abs_path, st in _walk(_root_bytes(root)):
        if stat.S_ISDIR(st.st_mode) or st.st_nlink < 2:
            continue
        by_inode.setdefault((st.st_dev, st.st_ino), set()).add(rel)
    return {frozenset(paths) for paths in by_inode.values() if len(paths) > 1}


_CONTROL_ESCAPES: Final = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F]}


def display_path(path: bytes) -> str:
    """``/relative/path`` for messages; control characters and non-UTF-8 bytes appear as ``\\xNN``."""
    return "/" + path.decode("utf-8", "backslashreplace").translate(_CONTROL_ESCAPES)


def _show(field: str, value: object) -> str:
    if value is None:
        return "None"
    if field == "mode" and isinstance(value, int):
        return f"{value:04o}"
    return repr(value)


def ignore_fields(*names: str, paths: Callable[[bytes], bool] | None = None) -> IgnoreFn:
    """An ``ignore`` callable for :func:`compare` that skips ``names`` (optionally only where ``paths``)."""
    unknown = set(names) - set(NODE_FIELDS) - {"exists"}
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    wanted = frozenset(names)

    def ignore(path: bytes, field: str) -> bool:
        return field in wanted and (paths is None or paths(path))

    return ignore


def compare(a: dict[bytes, Node], b: dict[bytes, Node], *, ignore: IgnoreFn | None = None) -> list[str]:
    """Readable differences between two snapshots, sorted; empty when they agree.

    Lines are ``/path: only in a`` / ``/path: only in b`` for a path on one side only, and
    ``/path: field a=... b=...`` for each differing field. When the types differ only the type is reported,
    since the other fields cannot be compared meaningfully. ``ignore(path, field)`` suppresses deliberate
    differences (``field == "exists"`` for one-sided paths).
    """

    def skipped(path: bytes, field: str) -> bool:
        return ignore is not None and ignore(path, field)

    lines: list[str] = []
    for path in sorted(a.keys() | b.keys()):
        shown = display_path(path)
        left, right = a.get(path), b.get(path)
        if left is None or right is None:
            present = left if right is None else right
            if present is not None and not skipped(path, "exists"):
                side = "a" if right is None else "b"
                lines.append(f"{shown}: only in {side} ({present.type})")
            continue
        if left.type != right.type and not skipped(path, "type"):
            lines.append(f"{shown}: type a={left.type} b={right.type}")
            continue
        for field in NODE_FIELDS:
            va, vb = getattr(left, field), getattr(right, field)
            if va != vb and not skipped(path, field):
                lines.append(f"{shown}: {field} a={_show(field, va)} b={_show(field, vb)}")
    return sorted(lines)


def tree_hash_listing(root: str | Path | bytes) -> list[str]:
    """One line per path under ``root``: type, mode, uid:gid, size, content hash or link target, mtime.

    Meant for checking that a directory was left untouched: compare the listing before and after.
    """
    lines: list[str] = []
    for rel, node in snapshot(root).items():
        if node.type == "file":
            content = f"sha256={node.sha256}"
        elif node.type == "symlink":
            content = "-> " + (node.link or b"").decode("utf-8", "backslashreplace")
        elif node.rdev is not None:
            content = f"rdev={node.rdev[0]},{node.rdev[1]}"
        else:
            content = "-"
        xattrs = ",".join(f"{name}={value.hex()}" for name, value in node.xattrs)
        lines.append(
            f"{display_path(rel)} {node.type} {node.mode:04o} {node.uid}:{node.gid} size={node.size} "
            f"{content} mtime_ns={node.mtime_ns} nlink={node.nlink}" + (f" xattrs={xattrs}" if xattrs else "")
        )
    return lines


TarMember = tuple[str, int, int, int, int, str, int, bytes]


def tar_listing(path: Path, *, times: bool = True) -> dict[str, TarMember]:
    """Every member of the tar at ``path`` but its root, by name (``./`` and a trailing ``/`` taken
    off): its type, permission bits (Go's tar writes the type bits into the mode too), uid, gid,
    size, link name, whole-second mtime (0 for all without ``times``) and data, so that tars
    written by different tools compare."""
    found: dict[str, TarMember] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            data = b""
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                data = extracted.read()
            name = member.name.removeprefix("./").rstrip("/")
            if name in ("", "."):  # the root: imgtool's has the fixed mode of every flatten
                continue
            found[name] = (
                member.type.decode(),
                member.mode & 0o7777,
                member.uid,
                member.gid,
                member.size,
                member.linkname,
                int(member.mtime) if times else 0,
                data,
            )
    return found
