"""The layer semantics on in-memory entries: each case states the layers and the exact final tree."""

from __future__ import annotations

import pytest

from imgtool.errors import ImageFormatError, LimitExceededError
from imgtool.layers.tarstream import KIND_NAMES, Entry, Kind
from imgtool.merge.changes import ChangeLog
from imgtool.merge.overlay import Tree

_counter = iter(range(1_000_000))


def E(
    path: str, kind: Kind = Kind.FILE, link: str = "", size: int = 1, mode: int = 0o644, digest: bytes = b""
) -> Entry:
    return Entry(
        path.encode(),
        kind,
        mode,
        0,
        0,
        size if kind == Kind.FILE else 0,
        0,
        link.encode(),
        0,
        0,
        None,
        digest or path.encode(),
        next(_counter),
    )


def D(path: str, mode: int = 0o755) -> Entry:
    return E(path, Kind.DIR, mode=mode)


def S(path: str, target: str) -> Entry:
    return E(path, Kind.SYMLINK, link=target)


def H(path: str, target: str) -> Entry:
    return E(path, Kind.HARDLINK, link=target)


def W(path: str) -> Entry:
    return E(path, Kind.WHITEOUT)


def O(path: str) -> Entry:  # noqa: E743 - reads as the marker it builds
    return E(path, Kind.OPAQUE)


def apply(*layers: list[Entry], log: ChangeLog | None = None) -> Tree:
    tree = Tree()
    for number, entries in enumerate(layers):
        tree.apply(number, entries, log)
    return tree


def summary(tree: Tree) -> dict[str, str]:
    """path -> "kind@layer" (implied directories as "dir*@layer", hardlinks with their inode's path)."""
    result = {}
    for path, node in tree.walk():
        if not path:
            continue
        if node.entry is None:
            result[path.decode()] = f"dir*@{node.layer}"
            continue
        text = f"{KIND_NAMES[node.entry.kind]}@{node.layer}"
        if node.source is not None:
            text += f"={node.source[1].path.decode()}@{node.source[0]}"
        result[path.decode()] = text
    return result


CASES = [
    pytest.param(
        [[D("etc"), E("etc/a"), E("etc/b")], [W("etc/a")]],
        {"etc": "dir@0", "etc/b": "file@0"},
        id="whiteout-file",
    ),
    pytest.param(
        [[D("d"), D("d/sub"), E("d/sub/x"), E("keep")], [W("d")]],
        {"keep": "file@0"},
        id="whiteout-dir-removes-subtree",
    ),
    pytest.param(
        [[D("d"), E("d/old1"), D("d/old"), E("d/old/x")], [D("d"), O("d"), E("d/new")]],
        {"d": "dir@1", "d/new": "file@1"},
        id="opaque-hides-lower-only",
    ),
    pytest.param(
        [[D("d"), E("d/old")], [E("d/new"), O("d")]],
        {"d": "dir@0", "d/new": "file@1"},
        id="opaque-after-same-layer-entry-keeps-it",
    ),
    pytest.param(
        [[D("d"), E("d/x")], [E("d/x"), W("d/x")]],
        {"d": "dir@0", "d/x": "file@1"},
        id="whiteout-after-same-layer-entry-keeps-it",
    ),
    pytest.param(
        [[D("d"), E("d/x"), D("d/y"), E("d/y/z")], [E("d/y/new"), W("d")]],
        {"d": "dir@0", "d/y": "dir@0", "d/y/new": "file@1"},
        id="whiteout-of-dir-keeps-what-the-layer-wrote-inside",
    ),
    pytest.param(
        [[D("a"), E("a/x")], [E("a")]],
        {"a": "file@1"},
        id="file-replaces-dir-and-subtree",
    ),
    pytest.param(
        [[E("a")], [D("a"), E("a/x")]],
        {"a": "dir@1", "a/x": "file@1"},
        id="dir-replaces-file",
    ),
    pytest.param(
        [[D("a"), E("a/x")], [S("a", "b")]],
        {"a": "symlink@1"},
        id="symlink-replaces-dir",
    ),
    pytest.param(
        [[D("usr"), D("usr/lib"), S("lib", "usr/lib")], [E("lib/libc.so")]],
        {"lib": "symlink@0", "usr": "dir@0", "usr/lib": "dir@0", "usr/lib/libc.so": "file@1"},
        id="relative-symlink-parent-is-followed",
    ),
    pytest.param(
        [[S("lib", "/usr/lib")], [E("lib/x")]],
        {"lib": "symlink@0", "usr": "dir*@1", "usr/lib": "dir*@1", "usr/lib/x": "file@1"},
        id="absolute-symlink-parent-restarts-at-root",
    ),
    pytest.param(
        [[S("up", "../../../.."), S("etc", "/")], [E("up/etc/passwd"), E("etc/shadow")]],
        {"etc": "symlink@0", "passwd": "file@1", "shadow": "file@1", "up": "symlink@0"},
        id="escaping-symlinks-stay-inside-the-root",
    ),
    pytest.param(
        [[S("ghost", "missing/../real")], [E("ghost/f")]],
        {"ghost": "symlink@0", "real": "dir*@1", "real/f": "file@1"},
        id="dotdot-after-missing-component-is-lexical",
    ),
    pytest.param(
        [[E("x"), E("x", size=9)]],
        {"x": "file@0"},
        id="later-duplicate-in-a-layer-wins",
    ),
    pytest.param(
        [[E("a")], [H("b", "a")], [E("a", size=5)]],
        {"a": "file@2", "b": "hardlink@1=a@0"},
        id="hardlink-keeps-old-inode-when-target-replaced",
    ),
    pytest.param(
        [[E("a"), H("b", "a"), H("c", "b")]],
        {"a": "file@0", "b": "hardlink@0=a@0", "c": "hardlink@0=a@0"},
        id="hardlink-chain-shares-one-inode",
    ),
    pytest.param(
        [[D("real"), E("real/f"), S("l", "real")], [H("g", "l/f")]],
        {"g": "hardlink@1=real/f@0", "l": "symlink@0", "real": "dir@0", "real/f": "file@0"},
        id="hardlink-target-parent-follows-symlinks",
    ),
    pytest.param(
        [[S("s", "/etc/shadow")], [H("h", "s")]],
        {"h": "hardlink@1=s@0", "s": "symlink@0"},
        id="hardlink-to-symlink-links-the-symlink-itself",
    ),
    pytest.param(
        [[E("a/b/c")]],
        {"a": "dir*@0", "a/b": "dir*@0", "a/b/c": "file@0"},
        id="implied-parents",
    ),
    pytest.param(
        [[E("a/b/c")], [D("a/b", mode=0o700)]],
        {"a": "dir*@0", "a/b": "dir@1", "a/b/c": "file@0"},
        id="dir-over-dir-takes-metadata-keeps-children",
    ),
    pytest.param(
        [[D("d"), E("d/x")], [W("d/nothing"), O("missing"), W("zz")]],
        {"d": "dir@0", "d/x": "file@0"},
        id="markers-for-absent-paths-do-nothing",
    ),
    pytest.param(
        [[D("d"), E("d/x")], [O("")]],
        {},
        id="opaque-root",
    ),
]


@pytest.mark.parametrize(("layers", "expected"), CASES)
def test_semantics(layers: list[list[Entry]], expected: dict[str, str]) -> None:
    assert summary(apply(*layers)) == expected


def test_root_entry_sets_root_metadata_and_keeps_children() -> None:
    tree = apply([E("a")], [D("", mode=0o700)])
    assert tree.root.entry is not None and tree.root.entry.mode == 0o700
    assert summary(tree) == {"a": "file@0"}


@pytest.mark.parametrize(
    ("layers", "error", "message"),
    [
        ([[E("a")], [E("a/b")]], ImageFormatError, "entry /a/b: parent /a is not a directory"),
        ([[H("b", "a")]], ImageFormatError, "entry /b: hardlink target /a does not exist"),
        ([[D("d"), H("b", "d")]], ImageFormatError, "hardlink target /d is a directory"),
        ([[E("a"), H("a", "a")]], ImageFormatError, "hardlink target /a does not exist"),
        ([[S("x", "y"), S("y", "x")], [E("x/f")]], LimitExceededError, "too many levels of symbolic links"),
    ],
)
def test_broken_layers_are_refused(layers: list[list[Entry]], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        apply(*layers)


def test_resolve_reports_symlinks_followed() -> None:
    tree = apply([D("usr"), D("usr/bin"), E("usr/bin/sh"), S("bin", "usr/bin")])
    path, node, links = tree.resolve(b"bin/sh", follow_last=False)
    assert (path, node is not None, links) == (b"usr/bin/sh", True, [b"bin"])
    assert tree.resolve(b"bin", follow_last=False)[0] == b"bin"
    assert tree.resolve(b"bin", follow_last=True)[0] == b"usr/bin"


def test_change_log_words() -> None:
    log = ChangeLog()
    apply(
        [D("d"), E("d/a"), E("d/b"), D("o"), E("o/x"), D("r"), E("r/y")],
        [W("d/a"), O("o"), E("r"), E("d/b", mode=0o600)],
        log=log,
    )
    words = {(c.layer, c.path.decode(), c.change, c.what) for c in log.changes if c.layer == 1}
    assert words == {
        (1, "d/a", "deleted", ()),
        (1, "o/x", "hidden", ()),
        (1, "r", "modified", ("type",)),
        (1, "r/y", "replaced", ()),
        (1, "d/b", "modified", ("mode",)),
    }


def test_a_hardlink_to_a_symlink_is_followed_like_the_symlink() -> None:
    tree = apply([D("real"), E("real/f"), S("s", "real"), H("h", "s")], [E("h/g")])
    assert summary(tree) == {
        "h": "hardlink@0=s@0",
        "real": "dir@0",
        "real/f": "file@0",
        "real/g": "file@1",
        "s": "symlink@0",
    }
    assert tree.resolve(b"h/f")[0] == b"real/f"
