"""remove_tree: any depth, read-only directories, names that are not UTF-8, and never through a symlink."""

from __future__ import annotations

import os
from pathlib import Path

from imgtool.system.fsutil import remove_tree


def _chain(root: Path, depth: int, name: str = "d") -> None:
    """``depth`` nested directories under ``root``, made by dir fds (the path may exceed PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(depth):
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
        if level % 100 == 0:
            os.close(os.open(f"f{level}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)


def test_removes_a_tree_deeper_than_recursion_and_path_max(tmp_path: Path) -> None:
    top = tmp_path / "top"
    top.mkdir()
    _chain(top, 5000, "dir")  # 20 000 bytes of path, 5 000 levels
    remove_tree(str(top))
    assert os.listdir(tmp_path) == []


def test_removes_read_only_directories_and_odd_names(tmp_path: Path) -> None:
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    odd = os.fsencode(str(top / "a")) + b"/\xff\n"
    os.mkdir(odd)
    with open(odd + b"/file", "wb") as handle:
        handle.write(b"x")
    (top / "a" / "b" / "f").write_bytes(b"f")
    os.mkfifo(top / "fifo")
    for path in (top / "a" / "b", top / "a", top):
        path.chmod(0o500)
    os.chmod(odd, 0)
    remove_tree(str(top))
    assert os.listdir(tmp_path) == []


def test_a_symlink_is_removed_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"keep")
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "to-dir").symlink_to(outside)
    (top / "to-file").symlink_to(outside / "keep")
    remove_tree(str(top))
    assert sorted(os.listdir(tmp_path)) == ["outside"]
    assert (outside / "keep").read_bytes() == b"keep"
    link = tmp_path / "link"
    link.symlink_to(outside)
    remove_tree(str(link))  # the link itself, not what it points to
    assert sorted(os.listdir(tmp_path)) == ["outside"]
    assert os.listdir(outside) == ["keep"]


def test_a_file_or_nothing(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    remove_tree(str(tmp_path / "f"))
    remove_tree(str(tmp_path / "absent"))
    assert os.listdir(tmp_path) == []
