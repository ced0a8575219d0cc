"""cat reads the layers from the top down and stops at the one that settles the file: the layers
below are never opened. Where an upper layer's entries could land elsewhere over what a lower layer
holds (a directory it does not write itself, a hardlink into a lower layer), cat reads on down,
and answers what the whole image answers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    Fault,
    File,
    Hardlink,
    ImageSpec,
    Layer,
    Opaque,
    Symlink,
    Whiteout,
    make_layer,
    write_oci_layout,
)

LAYERS = [
    make_layer([Dir("etc/"), File("etc/base", b"base\n"), Dir("srv/"), Symlink("opt", "srv")]),
    make_layer(
        [
            Dir("etc/"),
            Hardlink("etc/hard", "etc/base"),  # its data is layer 0's
            File("opt/x", b"through the lower symlink\n"),  # no opt/ of its own: it goes to srv/x
        ]
    ),
    make_layer([Dir("etc/"), File("etc/mid", b"mid\n"), File("etc/gone", b"gone\n")]),
    make_layer(
        [
            Dir("etc/"),
            Dir("etc/app/"),
            File("etc/app/conf", b"port=1\n"),
            Symlink("etc/to-mid", "mid"),
            Whiteout("etc/gone"),
        ]
    ),
]


@pytest.fixture
def ref(tmp_path: Path) -> str:
    return write_oci_layout(tmp_path / "oci", [Entry(ImageSpec(LAYERS), ref="v")]).reference("v")


@pytest.mark.parametrize(
    ("path", "content", "read"),
    [
        ("/etc/app/conf", b"port=1\n", [3, 3]),  # indexed, then its data read: layer 3 alone
        ("/etc/to-mid", b"mid\n", [3, 2, 2]),  # the link in 3, the file in 2: 1 and 0 never read
        ("/etc/mid", b"mid\n", [3, 2, 2]),
        ("/etc/base", b"base\n", [3, 2, 1, 0, 0]),
        # layer 1's entries hang on layer 0 (its opt/, its hardlink's target): read down to 0
        ("/srv/x", b"through the lower symlink\n", [3, 2, 1, 0, 1]),
        ("/opt/x", b"through the lower symlink\n", [3, 2, 1, 0, 1]),
        ("/etc/hard", b"base\n", [3, 2, 1, 0, 0]),
    ],
)
def test_cat_reads_down_to_the_layer_that_settles_the_file(
    ref: str, path: str, content: bytes, read: list[int], imgtool_cli: ImgtoolCli, opened: list[int]
) -> None:
    run = imgtool_cli("cat", ref, path)
    assert (run.code, run.stdout_bytes, run.stderr) == (0, content, "")
    assert opened == read


def test_cat_with_layer_reads_down_from_that_layer(
    ref: str, imgtool_cli: ImgtoolCli, opened: list[int]
) -> None:
    run = imgtool_cli("cat", ref, "/etc/gone", "--layer", "2")
    assert (run.code, run.stdout_bytes, run.stderr) == (0, b"gone\n", "")
    assert opened == [2, 2]


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/etc/gone", "/etc/gone: no such file in the image"),  # whited out above: every layer read
        ("/etc/app", "/etc/app: is a directory"),
        ("/etc/nothing", "/etc/nothing: no such file in the image"),
    ],
)
def test_what_is_no_file_above_is_answered_by_every_layer(
    ref: str, path: str, error: str, imgtool_cli: ImgtoolCli, opened: list[int]
) -> None:
    run = imgtool_cli("cat", ref, path)
    assert (run.code, run.stdout_bytes, run.stderr) == (1, b"", f"imgtool: error: {error}\n")
    assert opened == [3, 2, 1, 0]


def test_a_second_cat_reads_only_the_layer_holding_the_file(
    ref: str, imgtool_cli: ImgtoolCli, opened: list[int]
) -> None:
    assert imgtool_cli("cat", ref, "/etc/base").code == 0
    opened.clear()
    run = imgtool_cli("cat", ref, "/etc/base")
    assert (run.code, run.stdout_bytes) == (0, b"base\n")
    assert opened == [0]  # every index from the cache


def test_a_broken_lower_layer_is_not_read_when_the_file_is_above(
    tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    def flip(data: bytes) -> bytes:
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]

    tar = make_layer([Dir("etc/"), File("etc/base", b"base\n")])
    layers: list[bytes | Layer] = [
        Layer(tar, fault=Fault(tamper=flip)),
        make_layer([Dir("etc/"), File("etc/top", b"top\n")]),
    ]
    ref = write_oci_layout(tmp_path / "oci", [Entry(ImageSpec(layers), ref="v")]).reference("v")
    assert imgtool_cli("cat", ref, "/etc/top").stdout_bytes == b"top\n"
    run = imgtool_cli("cat", ref, "/etc/base")
    assert (run.code, run.stdout_bytes) == (1, b"")
    assert run.stderr.startswith("imgtool: error: layer 0 (")
    assert ": digest mismatch: expected " in run.stderr


# -- what cat answers from the upper layers is what the whole image answers --------------------------

STACKS = {
    # an upper directory entry replaces a lower symlink: what goes under it stays there
    "dir-over-link": [
        make_layer([Dir("etc/"), Symlink("conf", "etc")]),
        make_layer([Dir("etc/"), File("etc/x", b"x in etc\n")]),
        make_layer([Dir("conf/"), File("conf/y", b"y in conf\n")]),
    ],
    # an upper entry through an upper symlink to a directory only a lower layer has
    "link-to-lower": [
        make_layer([Dir("data/"), File("data/f", b"low\n")]),
        make_layer([Symlink("d", "data")]),
        make_layer([File("d/f", b"high\n")]),
    ],
    # an opaque directory hides the lower contents, not its own layer's
    "opaque": [
        make_layer([Dir("a/"), File("a/f", b"0\n")]),
        make_layer([Dir("a/"), Opaque("a"), File("a/g", b"g\n")]),
        make_layer([Dir("a/"), File("a/h", b"h\n")]),
    ],
    # a whiteout through a lower symlink removes the middle layer's file
    "whiteout-through-link": [
        make_layer([Dir("real/"), File("real/f", b"0\n"), Symlink("ln", "real")]),
        make_layer([Dir("real/"), File("real/f", b"1\n")]),
        make_layer([Whiteout("ln/f")]),
    ],
    # a symlink with ".." out of a name only a lower layer has
    "dotdot": [
        make_layer([Dir("x/"), Dir("x/in/"), Symlink("s", "x/in"), Dir("y/"), File("y/f", b"lower y\n")]),
        make_layer([Dir("t/"), Dir("t/y/"), File("t/y/f", b"upper y\n"), Symlink("t/up", "../s/../y/f")]),
    ],
    # an upper entry written through a symlink with ".." out of a name only a lower layer has
    "dotdot-entry": [
        make_layer([Dir("x/"), Dir("x/in/"), Symlink("s", "x/in"), Dir("y/"), File("y/f", b"lower y\n")]),
        make_layer([Dir("t/"), Symlink("t/up", "../s/../y"), Dir("y/"), File("t/up/f", b"upper\n")]),
    ],
    # a hardlink within one upper layer
    "hardlink": [
        make_layer([Dir("h/"), File("h/a", b"lower a\n")]),
        make_layer([Dir("h/"), File("h/b", b"upper b\n"), Hardlink("h/c", "h/b")]),
    ],
}
PATHS = [
    "/conf/y", "/etc/x", "/etc/y", "/conf/x", "/d/f", "/data/f", "/a/f", "/a/g", "/a/h", "/real/f",
    "/ln/f", "/t/up", "/t/y/f", "/y/f", "/x/y/f", "/t/up/f", "/h/a", "/h/b", "/h/c", "/missing",
]  # fmt: skip


@pytest.mark.parametrize("stack", list(STACKS))
def test_cat_answers_what_the_flattened_image_holds(
    stack: str, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    ref = write_oci_layout(tmp_path / "oci", [Entry(ImageSpec(STACKS[stack]), ref="v")]).reference("v")
    assert imgtool_cli("flatten", "-q", ref, "-o", str(tmp_path / "root")).code == 0
    root = tmp_path / "root"
    for path in PATHS:
        run = imgtool_cli("cat", "--no-cache", ref, path)  # cold, every time
        resolved = _inside(root, path)
        if resolved is not None and resolved.is_file():
            assert (path, run.code, run.stdout_bytes) == (path, 0, resolved.read_bytes())
        else:
            assert (path, run.code, run.stdout_bytes) == (path, 1, b"")


def _inside(root: Path, path: str) -> Path | None:
    """``path`` in the flattened tree, symlinks followed inside it (as a container would)."""
    current = root
    parts = [p for p in path.split("/") if p]
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            current = current.parent if current != root else root
            continue
        step = current / name
        if step.is_symlink():
            hops += 1
            assert hops < 40
            target = os.readlink(step)
            parts = [p for p in target.split("/") if p] + parts
            current = root if target.startswith("/") else current
            continue
        if not step.exists():
            return None
        current = step
    return current
