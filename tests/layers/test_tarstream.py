"""Names made canonical and whiteouts classified at the edge, unsafe names refused."""

from __future__ import annotations

import pytest

from imgtool.errors import LayerError, UnsafePathError
from imgtool.layers.paths import clean_path
from imgtool.layers.tarreader import CHAR, DIRECTORY, HARDLINK, REGULAR, SYMLINK, TarHeader
from imgtool.layers.tarstream import Kind, entries_from_header


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (b"etc/passwd", b"etc/passwd"),
        (b"./etc/passwd", b"etc/passwd"),
        (b"/etc/passwd", b"etc/passwd"),
        (b"etc//passwd/", b"etc/passwd"),
        (b"e//", b"e"),
        (b"e/", b"e"),
        (b"a/b.c/", b"a/b.c"),
        (b"etc/./x/../passwd", b"etc/passwd"),
        (b"./", b""),
        (b"/", b""),
        (b".", b""),
        (b"a/..", b""),
        (b"caf\xe9", b"caf\xe9"),
    ],
)
def test_clean_path(raw: bytes, clean: bytes) -> None:
    assert clean_path(raw) == clean


@pytest.mark.parametrize("raw", [b"..", b"../etc/passwd", b"a/../../etc", b"/../x", b"./../x"])
def test_clean_path_refuses_escapes(raw: bytes) -> None:
    with pytest.raises(UnsafePathError, match="escapes the root"):
        clean_path(raw)


def header(
    name: bytes,
    typeflag: bytes = REGULAR,
    *,
    linkname: bytes = b"",
    size: int = 0,
    major: int = 0,
    minor: int = 0,
    xattrs: dict[str, bytes] | None = None,
) -> TarHeader:
    return TarHeader(name, typeflag, 0o644, 0, 0, size, 0, linkname, major, minor, xattrs)


def classify(h: TarHeader) -> list[tuple[bytes, int, bytes]]:
    return [(e.path, e.kind, e.link) for e in entries_from_header(h, 7, "layer 0")]


def test_whiteouts_and_opaque_markers() -> None:
    assert classify(header(b"./etc/.wh.passwd")) == [(b"etc/passwd", Kind.WHITEOUT, b"")]
    assert classify(header(b".wh.tmp")) == [(b"tmp", Kind.WHITEOUT, b"")]
    assert classify(header(b"var/cache/.wh..wh..opq")) == [(b"var/cache", Kind.OPAQUE, b"")]
    assert classify(header(b".wh..wh..opq")) == [(b"", Kind.OPAQUE, b"")]
    assert classify(header(b"x/.wh..wh.plnk", DIRECTORY)) == []  # AUFS bookkeeping, not content


def test_overlay_forms() -> None:
    assert classify(header(b"etc/gone", CHAR, major=0, minor=0)) == [(b"etc/gone", Kind.WHITEOUT, b"")]
    assert classify(header(b"dev/null", CHAR, major=1, minor=3))[0][1] == 4
    opaque = entries_from_header(
        header(b"var/lib/", DIRECTORY, xattrs={"trusted.overlay.opaque": b"y", "user.keep": b"1"}),
        3,
        "layer 0",
    )
    assert [(e.path, e.kind) for e in opaque] == [(b"var/lib", Kind.DIR), (b"var/lib", Kind.OPAQUE)]
    assert opaque[0].xattrs == {"user.keep": b"1"}


def test_hardlink_targets_are_cleaned_and_confined() -> None:
    assert classify(header(b"b", HARDLINK, linkname=b"./a")) == [(b"b", Kind.HARDLINK, b"a")]
    with pytest.raises(UnsafePathError, match=r"entry 'b': hardlink target path '\.\./etc/shadow' escapes"):
        classify(header(b"b", HARDLINK, linkname=b"../etc/shadow"))


def test_symlink_targets_are_kept_verbatim() -> None:
    assert classify(header(b"lib", SYMLINK, linkname=b"/usr/lib")) == [(b"lib", 2, b"/usr/lib")]
    assert classify(header(b"up", SYMLINK, linkname=b"../../..")) == [(b"up", 2, b"../../..")]


@pytest.mark.parametrize(
    ("h", "error", "message"),
    [
        (
            header(b"../etc/passwd"),
            UnsafePathError,
            r"entry '\.\./etc/passwd': path '\.\./etc/passwd' escapes",
        ),
        (header(b"./", REGULAR), UnsafePathError, "refusing to replace the root directory"),
        (header(b"/", SYMLINK, linkname=b"/etc"), UnsafePathError, "refusing to replace the root directory"),
        (header(b"a/.wh..."), UnsafePathError, "whiteout names no file"),
        (header(b"a/.wh."), UnsafePathError, "whiteout names no file"),
        (header(b"x", b"Z"), LayerError, "unsupported tar entry type b'Z'"),
        (header(b"x", SYMLINK), LayerError, "symlink with an empty target"),
        (header(b"x", HARDLINK, linkname=b"/"), UnsafePathError, "hardlink to the root directory"),
    ],
)
def test_refused_entries(h: TarHeader, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        entries_from_header(h, 0, "layer 0")


def test_ordinal_and_metadata_pass_through() -> None:
    (entry,) = entries_from_header(header(b"f", size=3), 42, "layer 0")
    assert (entry.kind, entry.size, entry.mode, entry.ordinal) == (Kind.FILE, 3, 0o644, 42)


@pytest.mark.parametrize(
    "raw",
    [b"a.b/c..d/.e/f.", b"..a/b", b"a/..b", b".hidden", b"...", b"a/.../b", b"a.", b"x/y.tar.gz"],
)
def test_names_with_dots_that_are_already_clean_are_kept(raw: bytes) -> None:
    assert clean_path(raw) is raw
    assert clean_path(b"./" + raw) == raw
