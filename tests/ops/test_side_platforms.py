"""diff images with a platform per side: the images of one index for two platforms compared."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import Dir, Entry, File, ImageSpec, IndexSpec, make_layer, write_oci_layout


def _index(where: Path) -> str:
    base: list[Dir | File] = [Dir("etc/"), File("etc/os", b"same\n")]
    spec = IndexSpec(
        [
            ImageSpec([make_layer([*base, File("p", b"amd64\n"), File("only-amd64", b"x")])]),
            ImageSpec([make_layer([*base, File("p", b"arm64\n")])], architecture="arm64", variant="v8"),
        ]
    )
    return write_oci_layout(where / "multi", [Entry(spec, ref="v1")]).reference("v1")


def test_each_side_has_its_platform(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = _index(tmp_path)
    run = imgtool_cli(
        "diff", "images", ref, ref, "--platform1", "linux/amd64", "--platform2", "linux/arm64", "--json"
    )
    assert (run.code, run.stderr) == (1, "")
    doc = json.loads(run.stdout)
    assert [(c["change"], c["path"]) for c in doc["changes"]] == [
        ("deleted", "/only-amd64"),
        ("modified", "/p"),
    ]
    assert doc["summary"] == {"added": 0, "modified": 1, "deleted": 1}

    reverse = imgtool_cli(
        "diff", "images", ref, ref, "--platform1", "linux/arm64", "--platform2", "linux/amd64"
    )
    assert reverse.code == 1
    assert reverse.stdout.splitlines()[-1].startswith("1 added, 1 modified, 0 deleted;")


def test_platform_is_for_both_sides_unless_a_side_says(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = _index(tmp_path)
    same = imgtool_cli("diff", "images", ref, ref, "--platform", "linux/arm64")
    assert (same.code, same.stderr) == (0, "")
    assert same.stdout.startswith("0 added, 0 modified, 0 deleted;")
    one = imgtool_cli("diff", "images", ref, ref, "--platform", "linux/arm64", "--platform2", "linux/amd64")
    assert one.code == 1
    assert one.stdout.splitlines()[-1].startswith("1 added, 1 modified, 0 deleted;")


def test_a_side_platform_the_index_lacks_is_named(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = _index(tmp_path)
    run = imgtool_cli("diff", "images", ref, ref, "--platform2", "linux/s390x")
    assert run.code != 0 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "linux/s390x" in run.stderr, run.stderr
    bad = imgtool_cli("diff", "images", ref, ref, "--platform1", "linux")
    assert (bad.code, bad.stderr) == (
        2,
        "imgtool: error: invalid platform 'linux': expected os/arch[/variant], e.g. linux/amd64\n",
    )
