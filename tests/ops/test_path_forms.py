"""A path typed with a trailing ``/`` names a directory (or a symlink to one), as in a shell:
``ls file/``, ``cat file/`` and ``which-layer file/`` say "not a directory"; ``*/`` matches directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import Dir, Entry, File, ImageSpec, Symlink, make_layer, write_oci_layout


@pytest.fixture
def image(tmp_path: Path) -> str:
    layer = make_layer(
        [
            Dir("etc/"),
            File("etc/conf", b"conf\n"),
            Dir("etc/d/"),
            File("etc/d/x", b"x\n"),
            Symlink("etc/to-d", "d"),
            Symlink("etc/to-conf", "conf"),
        ]
    )
    return write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([layer]), ref="v1")]).reference("v1")


@pytest.mark.parametrize("path", ["/etc/conf/", "/etc/to-conf/", "/etc/conf//"])
def test_ls_and_cat_of_a_file_with_a_slash(imgtool_cli: ImgtoolCli, image: str, path: str) -> None:
    for command in ("ls", "cat"):
        run = imgtool_cli(command, image, path)
        assert (run.code, run.stdout, run.stderr) == (1, "", f"imgtool: error: {path}: not a directory\n")


def test_a_directory_with_a_slash_is_listed(imgtool_cli: ImgtoolCli, image: str) -> None:
    for path in ("/etc/d/", "/etc/to-d/"):
        listed = json.loads(imgtool_cli("ls", image, path, "--json").stdout)
        assert [row["path"] for row in listed] == ["/etc/d/x"], path
    run = imgtool_cli("cat", image, "/etc/d/")
    assert (run.code, run.stderr) == (1, "imgtool: error: /etc/d: is a directory\n")
    absent = imgtool_cli("ls", image, "/etc/none/")
    assert (absent.code, absent.stderr) == (
        1,
        "imgtool: error: /etc/none: no such file or directory in the image\n",
    )


def test_which_layer_of_a_file_with_a_slash(imgtool_cli: ImgtoolCli, image: str) -> None:
    run = imgtool_cli("which-layer", image, "/etc/conf/", "--json")
    assert run.code == 1
    (answer,) = json.loads(run.stdout)
    assert (answer["query"], answer["path"], answer["exists"]) == ("/etc/conf/", "/etc/conf", False)
    assert [change["change"] for change in answer["history"]] == ["added"]
    text = imgtool_cli("which-layer", image, "/etc/conf/")
    assert text.stdout.splitlines()[0] == "/etc/conf/: not a directory"
    found = imgtool_cli("which-layer", image, "/etc/d/", "--json")
    assert found.code == 0 and json.loads(found.stdout)[0]["exists"] is True


def test_a_pattern_with_a_slash_matches_directories(imgtool_cli: ImgtoolCli, image: str) -> None:
    listed = json.loads(imgtool_cli("ls", image, "/etc/*/", "--json").stdout)
    assert [row["path"] for row in listed] == ["/etc/d/x", "/etc/d/x"]  # /etc/d/ and /etc/to-d/
    which = json.loads(imgtool_cli("which-layer", image, "/etc/*/", "--json").stdout)
    assert [answer["path"] for answer in which] == ["/etc/d", "/etc/to-d"]
    every = json.loads(imgtool_cli("which-layer", image, "/etc/*", "--json").stdout)
    assert [answer["path"] for answer in every] == ["/etc/conf", "/etc/d", "/etc/to-conf", "/etc/to-d"]


def test_ls_dereference_recursive_enters_linked_directories(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    """``ls -LR``: a link to a directory is listed through, once per directory; loops end."""
    layer = make_layer(
        [
            Dir("a/"),
            File("a/f", b"f"),
            Symlink("a/up", ".."),  # a loop back to the root
            Symlink("b", "a"),
            Symlink("c", "/a"),  # a second link to a/: not entered again
            Symlink("dead", "none"),
        ]
    )
    ref = write_oci_layout(tmp_path / "loops", [Entry(ImageSpec([layer]), ref="v1")]).reference("v1")
    rows = json.loads(imgtool_cli("ls", ref, "/", "-R", "-L", "--json").stdout)
    assert [(row["path"], row["type"]) for row in rows] == [
        ("/a", "dir"),
        ("/a/f", "file"),
        ("/a/up", "dir"),  # a link to the root, which holds it: a loop, not entered
        ("/b", "dir"),  # the first link to /a: entered
        ("/b/f", "file"),
        ("/b/up", "dir"),
        ("/c", "dir"),  # a second link to /a: not entered again
        ("/dead", "symlink"),
    ]
    plain = json.loads(imgtool_cli("ls", ref, "/", "-R", "--json").stdout)
    assert [row["path"] for row in plain] == ["/a", "/a/f", "/a/up", "/b", "/c", "/dead"]
