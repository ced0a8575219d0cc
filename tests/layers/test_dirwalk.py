"""A layer directory read as a tar: the order, the overlay form, the comparison with a lower copy,
and paths that must not leave the directory."""

from __future__ import annotations

import io
import os
import random
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgtool.errors import LayerError, UnsafePathError
from imgtool.layers.dirwalk import ChunkStream, open_dir, open_file, walk_tar

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="device nodes and trusted xattrs need root")


def _members(root: Path, relative: str = "", lower: str | None = None) -> list[tuple[str, str, str]]:
    """(name, type, link or content) of every member of the walk's tar, in order."""
    with walk_tar(str(root), relative, "test", overlay=lower is None, lower=lower) as stream:
        data = stream.read()
    kinds = {
        tarfile.REGTYPE: "file",
        tarfile.DIRTYPE: "dir",
        tarfile.SYMTYPE: "symlink",
        tarfile.LNKTYPE: "link",
    }
    kinds |= {tarfile.FIFOTYPE: "fifo", tarfile.CHRTYPE: "char"}
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            extra = member.linkname
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                extra = extracted.read().decode()
            out.append((member.name, kinds[member.type], extra))
    assert len(data) % 512 == 0 and data.endswith(b"\0" * 1024)
    return out


def test_chunk_stream_gives_every_byte_once_whatever_the_reads() -> None:
    rng = random.Random(15)
    for _ in range(200):
        chunks = [bytes([rng.randrange(256)]) * rng.randrange(0, 40) for _ in range(rng.randrange(0, 6))]
        stream = ChunkStream(iter(chunks))
        got = []
        while True:
            n = rng.choice([-1, 0, 1, 5, 64])
            data = stream.read(n)
            if n == 0:
                assert data == b""
                continue
            if not data:
                break
            assert n < 0 or len(data) <= n
            got.append(data)
        assert b"".join(got) == b"".join(chunks)


def test_walk_order_and_plain_entries(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z").write_text("z")
    (tmp_path / "a").write_text("a")
    (tmp_path / "B").write_text("upper")
    os.symlink("/etc/passwd", tmp_path / "b" / "abs")
    os.link(tmp_path / "a", tmp_path / "b" / "hard")
    os.mkfifo(tmp_path / "f")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))  # no tar type holds a socket: left out
        assert _members(tmp_path) == [
            ("B", "file", "upper"),
            ("a", "file", "a"),
            ("b", "dir", ""),
            ("b/abs", "symlink", "/etc/passwd"),
            ("b/hard", "link", "a"),
            ("b/z", "file", "z"),
            ("f", "fifo", ""),
        ]


def test_walk_keeps_nanosecond_mtimes(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    os.utime(tmp_path / "f", ns=(0, 1_600_000_000_123_456_789))
    with walk_tar(str(tmp_path), "", "test") as stream:
        data = stream.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember("f")
    assert member.pax_headers["mtime"] == "1600000000.123456789"


@ROOT_ONLY
def test_overlay_form_becomes_whiteouts_and_opaque_markers(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.mknod(tmp_path / "gone", 0o600 | 0o020000, os.makedev(0, 0))
    os.link(tmp_path / "gone", tmp_path / "d" / "gone-too")  # a shared whiteout inode
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "new").write_text("n")
    os.setxattr(tmp_path / "o", "trusted.overlay.opaque", b"y")
    os.setxattr(tmp_path / "d", "trusted.overlay.impure", b"y")
    os.setxattr(tmp_path / "d", "trusted.overlay.origin", b"\x00\xfb")
    os.mknod(tmp_path / "tty", 0o600 | 0o020000, os.makedev(5, 0))  # a real device stays one
    assert _members(tmp_path) == [
        ("d", "dir", ""),
        ("d/.wh.gone-too", "file", ""),
        (".wh.gone", "file", ""),
        ("o", "dir", ""),
        ("o/.wh..wh..opq", "file", ""),
        ("o/new", "file", "n"),
        ("tty", "char", ""),
    ]
    with (
        walk_tar(str(tmp_path), "", "test") as stream,
        tarfile.open(fileobj=io.BytesIO(stream.read())) as tar,
    ):
        assert not any(key.startswith("SCHILY.xattr.") for m in tar for key in m.pax_headers)


def test_against_a_lower_copy_only_what_differs(tmp_path: Path) -> None:
    low, top = tmp_path / "low", tmp_path / "top"
    for root in (low, top):
        (root / "keep" / "deep").mkdir(parents=True)
        (root / "keep" / "deep" / "same").write_text("same")
        (root / "edit").mkdir()
        (root / "edit" / "f").write_text("old")
        (root / "gone").write_text("x")
        (root / "was-dir").mkdir()
        (root / "was-dir" / "inner").write_text("i")
    for path in sorted(low.rglob("*"), reverse=True):  # the same times on both sides
        os.utime(path, ns=(0, 1_600_000_000 * 10**9))
        os.utime(top / path.relative_to(low), ns=(0, 1_600_000_000 * 10**9))
    (top / "gone").unlink()
    (top / "edit" / "f").write_text("new!")
    os.utime(top / "edit", ns=(0, 1_600_000_000 * 10**9))
    (top / "was-dir" / "inner").unlink()
    (top / "was-dir").rmdir()
    (top / "was-dir").write_text("now a file")
    assert _members(tmp_path, "top", lower="low") == [
        ("edit", "dir", ""),
        ("edit/f", "file", "new!"),
        (".wh.gone", "file", ""),
        (".wh.was-dir", "file", ""),
        ("was-dir", "file", "now a file"),
    ]


def test_paths_never_leave_the_directory(tmp_path: Path) -> None:
    (tmp_path / "layer" / "d").mkdir(parents=True)
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path, tmp_path / "layer" / "out")
    os.symlink("../secret", tmp_path / "layer" / "d" / "f")
    fd = open_dir(str(tmp_path), "layer", "test")
    try:
        with pytest.raises(UnsafePathError, match="leaves the layer directory"):
            open_file(fd, b"../secret", "test")
        with pytest.raises(UnsafePathError, match="cannot be opened inside the layer directory"):
            open_file(fd, b"out/secret", "test")
        with pytest.raises(UnsafePathError, match="cannot be opened inside the layer directory"):
            open_file(fd, b"d/f", "test")
        with pytest.raises(LayerError, match="'nope' is missing from the layer directory"):
            open_file(fd, b"nope", "test")
    finally:
        os.close(fd)
    with pytest.raises(UnsafePathError, match="layer/out is a symlink; refused"):
        open_dir(str(tmp_path), "layer/out", "test")
    with pytest.raises(UnsafePathError, match="leaves the store"):
        open_dir(str(tmp_path), "layer/../..", "test")


def test_a_failed_stream_stays_failed() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"abc"
        raise LayerError("test: 'f' changed while being read")

    stream = ChunkStream(chunks())
    assert stream.read(3) == b"abc"
    for _ in range(2):  # a reader that drains after an error meets the error again, not an early end
        with pytest.raises(LayerError, match="'f' changed while being read"):
            stream.read(10)


@ROOT_ONLY
@pytest.mark.parametrize(
    ("name", "key", "kind"),
    [
        ("moved", "trusted.overlay.redirect", "dir"),
        ("big", "trusted.overlay.metacopy", "file"),
        ("moved", "user.overlay.redirect", "dir"),
    ],
)
def test_redirected_and_metacopy_entries_are_refused(tmp_path: Path, name: str, key: str, kind: str) -> None:
    """redirect_dir and metacopy put an entry's content elsewhere: read as it is on disk it would
    be wrong (a renamed directory without what it held, an empty file), so it is refused."""
    target = tmp_path / "upper" / name
    target.parent.mkdir()
    if kind == "dir":
        target.mkdir()
    else:
        target.write_bytes(b"")
    try:
        os.setxattr(target, key, b"/elsewhere" if key.endswith("redirect") else b"")
    except OSError as exc:
        pytest.skip(f"{key} cannot be set on this file system: {exc.strerror}")
    with pytest.raises(LayerError, match=rf"^test: '{name}' carries {key} \(.*\): not supported$"):
        _members(tmp_path / "upper")
