"""cat --layer N (a file as it stood after layer N) and ls --sort / --type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    CharDev,
    Dir,
    Entry,
    Fifo,
    File,
    Hardlink,
    ImageSpec,
    Symlink,
    Whiteout,
    make_layer,
    write_docker_archive,
    write_oci_layout,
)

T = 1_600_000_000
LAYERS = [
    make_layer(
        [
            Dir("etc/", mtime=T),
            File("etc/conf", b"first\n", mtime=T),
            File("etc/big", b"x" * 300, mtime=T),
            Symlink("etc/link", "conf", mtime=T),
            Fifo("etc/pipe", mtime=T),
        ]
    ),
    make_layer([File("etc/conf", b"second version\n", mtime=T), File("etc/mid", b"m" * 50, mtime=T)]),
    make_layer(
        [
            Whiteout("etc/conf"),
            Hardlink("etc/hard", "etc/big", mtime=T),
            CharDev("etc/null", 1, 3, mtime=T),
            Dir("etc/sub/", mtime=T),
            File("etc/sub/a", b"aa", mtime=T),
        ]
    ),
]


@pytest.fixture(params=["oci", "docker-archive"])
def ref(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    spec = ImageSpec(LAYERS)
    if request.param == "oci":
        return write_oci_layout(tmp_path / "oci", [Entry(spec, ref="v")]).reference("v")
    return write_docker_archive(tmp_path / "d.tar", [(spec, ["x/y:1"])]).reference()


@pytest.mark.parametrize(
    ("layer", "path", "content"),
    [
        ("0", "/etc/conf", b"first\n"),
        ("1", "/etc/conf", b"second version\n"),
        ("0", "/etc/link", b"first\n"),  # the symlink followed in the tree of layer 0
        ("1", "/etc/link", b"second version\n"),
        ("2", "/etc/hard", b"x" * 300),
    ],
)
def test_cat_shows_the_file_as_it_stood_after_layer_n(
    ref: str, layer: str, path: str, content: bytes, imgtool_cli: ImgtoolCli
) -> None:
    run = imgtool_cli("cat", ref, path, "--layer", layer)
    assert (run.code, run.stdout_bytes, run.stderr) == (0, content, "")


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        (["/etc/conf"], 1, "imgtool: error: /etc/conf: no such file in the image\n"),
        (
            ["/etc/conf", "--layer", "2"],
            1,
            "imgtool: error: /etc/conf: no such file in the image after layer 2\n",
        ),
        (
            ["/etc/mid", "--layer", "0"],
            1,
            "imgtool: error: /etc/mid: no such file in the image after layer 0\n",
        ),
        (["/etc/conf", "--layer", "3"], 2, "imgtool: error: --layer 3: the image has layers 0 to 2\n"),
        (["/etc/conf", "--layer", "-1"], 2, "imgtool: error: --layer -1: the image has layers 0 to 2\n"),
    ],
)
def test_cat_of_what_the_layer_does_not_have(
    ref: str, args: list[str], code: int, stderr: str, imgtool_cli: ImgtoolCli
) -> None:
    run = imgtool_cli("cat", ref, *args)
    assert (run.code, run.stdout, run.stderr) == (code, "", stderr)


def _paths(imgtool_cli: ImgtoolCli, ref: str, *args: str) -> list[tuple[str, int]]:
    run = imgtool_cli("ls", ref, "/etc", "--json", *args)
    assert (run.code, run.stderr) == (0, ""), run.stderr
    return [(doc["path"], doc["size"]) for doc in json.loads(run.stdout)]


def test_ls_sort_name_is_the_default_order(ref: str, imgtool_cli: ImgtoolCli) -> None:
    names = [p for p, _ in _paths(imgtool_cli, ref, "-R")]
    assert names == [
        "/etc/big",
        "/etc/hard",
        "/etc/link",
        "/etc/mid",
        "/etc/null",
        "/etc/pipe",
        "/etc/sub",
        "/etc/sub/a",
    ]
    assert [p for p, _ in _paths(imgtool_cli, ref, "-R", "--sort", "name")] == names


def test_ls_sort_size_is_largest_first_ties_by_name(ref: str, imgtool_cli: ImgtoolCli) -> None:
    assert _paths(imgtool_cli, ref, "-R", "--sort", "size") == [
        ("/etc/big", 300),
        ("/etc/hard", 300),  # a hardlink is the file it links
        ("/etc/mid", 50),
        ("/etc/sub/a", 2),
        ("/etc/link", 0),
        ("/etc/null", 0),
        ("/etc/pipe", 0),
        ("/etc/sub", 0),
    ]


def test_ls_sort_layer_is_lowest_first_ties_by_name(ref: str, imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("ls", ref, "/etc", "-R", "--sort", "layer", "--json")
    assert [(doc["path"], doc["layer"]) for doc in json.loads(run.stdout)] == [
        ("/etc/big", 0),
        ("/etc/link", 0),
        ("/etc/pipe", 0),
        ("/etc/mid", 1),
        ("/etc/hard", 2),
        ("/etc/null", 2),
        ("/etc/sub", 2),
        ("/etc/sub/a", 2),
    ]


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        (["f"], ["/etc/big", "/etc/hard", "/etc/mid", "/etc/sub/a"]),
        (["d"], ["/etc/sub"]),
        (["l"], ["/etc/link"]),
        (["c"], ["/etc/null"]),
        (["p"], ["/etc/pipe"]),
        (["l", "d"], ["/etc/link", "/etc/sub"]),
    ],
)
def test_ls_type_keeps_entries_of_that_type(
    ref: str, types: list[str], expected: list[str], imgtool_cli: ImgtoolCli
) -> None:
    args = [a for t in types for a in ("--type", t)]
    assert [p for p, _ in _paths(imgtool_cli, ref, "-R", *args)] == expected


def test_ls_type_with_dereference_is_the_targets_type(ref: str, imgtool_cli: ImgtoolCli) -> None:
    """As find -L: a symlink is of its target's type, a dangling one stays a link."""
    assert [p for p, _ in _paths(imgtool_cli, ref, "-L", "--type", "l")] == ["/etc/link"]  # conf is gone
    assert [p for p, _ in _paths(imgtool_cli, ref, "-L", "--type", "l", "--layer", "1")] == []
    assert [p for p, _ in _paths(imgtool_cli, ref, "-L", "--type", "f", "--layer", "1")] == [
        "/etc/big",
        "/etc/conf",
        "/etc/link",
        "/etc/mid",
    ]


def test_ls_sort_and_type_apply_to_a_layers_own_entries(ref: str, imgtool_cli: ImgtoolCli) -> None:
    run = imgtool_cli("ls", ref, "/etc", "--layer", "1", "--only", "--sort", "size", "--json")
    assert [(d["path"], d["size"]) for d in json.loads(run.stdout)] == [("/etc/mid", 50), ("/etc/conf", 15)]


@pytest.mark.parametrize(
    ("args", "stderr_part"),
    [
        (["--sort", "mtime"], "'mtime' is not one of 'name', 'size', 'layer'"),
        (["--type", "x"], "'x' is not one of"),
    ],
)
def test_ls_refuses_an_unknown_sort_or_type(
    ref: str, args: list[str], stderr_part: str, imgtool_cli: ImgtoolCli
) -> None:
    run = imgtool_cli("ls", ref, *args)
    assert (run.code, run.stdout) == (2, "")
    assert stderr_part in run.stderr
