"""Removing a directory tree of any depth, with a bounded number of file descriptors.

``shutil.rmtree`` recurses once per level (Python 3.11 and 3.12) and goes by path, so a tree
deeper than about 1 000 levels, or than PATH_MAX, ends in a RecursionError or ENAMETOOLONG
and is left half removed. :func:`remove_tree` walks the tree with an explicit stack and works
relative to one open directory at a time (``openat``/``unlinkat``): it goes down by name and
back up through ``..``, so it holds at most two descriptors and memory for the names of the
directories still to visit, whatever the depth. It never follows a symlink: a link is removed
as the link it is. Climbing back up is checked against the identity of the directory it left,
so a tree moved while it is being removed stops the removal (ESTALE) rather than lead it elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import Final

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITABLE: Final = 0o700


def remove_tree(path: str) -> None:
    """Remove ``path`` and everything under it, even where directories were made read-only.

    Nothing there is not an error. Raises OSError when something cannot be removed.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    _make_writable(path, st.st_mode, None)
    fd = os.open(path, _DIR_FLAGS)
    # One level per directory entered: its name, the identity of its parent (so that climbing back
    # up through ".." is checked: a tree moved while it is removed stops the removal), and its
    # subdirectories still to remove.
    stack: list[tuple[str, tuple[int, int], list[str]]] = [(path, (0, 0), _empty_but_dirs(fd))]
    try:
        while True:
            _name, _parent, pending = stack[-1]
            if pending:
                child = pending.pop()
                here = os.fstat(fd)
                try:
                    _make_writable(child, os.lstat(child, dir_fd=fd).st_mode, fd)
                    child_fd = os.open(child, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                os.close(fd)
                fd = child_fd
                stack.append((child, (here.st_dev, here.st_ino), _empty_but_dirs(fd)))
                continue
            if len(stack) == 1:
                break
            done, identity, _ = stack.pop()
            parent_fd = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent_fd
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != identity:
                raise OSError(errno.ESTALE, f"{path} changed while it was being removed")
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile: as good
                os.rmdir(done, dir_fd=fd)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(path)


def _empty_but_dirs(fd: int) -> list[str]:
    """Unlink every non-directory in the directory open at ``fd``; returns its subdirectories."""
    dirs = []
    with os.scandir(fd) as entries:
        names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for name, is_dir in names:
        if is_dir:
            dirs.append(name)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=fd)
    return dirs


def _make_writable(name: str, mode: int, dir_fd: int | None) -> None:
    """Give the owner rwx on a directory about to be entered, when it lacks them (a mode the image set)."""
    if mode & _WRITABLE != _WRITABLE:
        os.chmod(name, stat.S_IMODE(mode) | _WRITABLE, dir_fd=dir_fd)
