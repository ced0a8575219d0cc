"""squash read back by the real tools: skopeo inspects and copies the squashed image, umoci unpacks
it, and umoci's rootfs of it is imgtool's flatten of the original, entry by entry, for every range."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    File,
    Hardlink,
    ImageSpec,
    Member,
    Opaque,
    Symlink,
    Whiteout,
    make_layer,
    write_oci_layout,
)
from tests.helpers.realtools import (
    StandardImageFactory,
    requires,
    skopeo_inspect_config,
    skopeo_inspect_raw,
    umoci_unpack,
)
from tests.helpers.treesnap import compare, hardlink_groups, snapshot

pytestmark = [pytest.mark.realtools]

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-oci"

LAYERS: list[list[Member]] = [
    [
        Dir("etc/", mode=0o750, mtime=7),
        File("etc/a", b"a"),
        File("etc/b", b"b"),
        File("big", b"0123456789" * 5000),
        Dir("srv/"),
        File("srv/one", b"1"),
        File("srv/two", b"2"),
        Dir("real/"),
        Symlink("link", "real"),
        File("usr/bin/tool", b"tool", mode=0o4755),
    ],
    [Whiteout("etc/a"), Hardlink("etc/big-link", "big"), File("link/through", b"t")],
    [Opaque("srv/"), File("srv/three", b"3"), Hardlink("keep", "big"), Whiteout("big")],
    [File("etc/b", b"B", mode=0o600), Dir("var/tmp/", mode=0o1777), File("var/tmp/x", b"x")],
    [Whiteout("var/tmp/x"), Hardlink("usr/bin/tool2", "usr/bin/tool")],
]


def _tree_layout(tmp_path: Path) -> str:
    spec = ImageSpec([make_layer(m) for m in LAYERS])
    return write_oci_layout(tmp_path / "src", [Entry(spec, ref="v")]).reference("v")


def _flatten(imgtool_cli: ImgtoolCli, ref: str, dest: Path) -> Path:
    run = imgtool_cli("flatten", "-q", ref, "-o", str(dest))
    assert (run.code, run.stderr) == (0, "")
    return dest


def _same_tree(umoci_root: Path, ours: Path) -> None:
    # Directories no layer lists: umoci stamps them with the time of unpacking, imgtool with the epoch;
    # and umoci leaves the root with the time of a deletion there (of the original image too).
    implied = {p for p, n in snapshot(ours).items() if n.type == "dir" and n.mtime_ns == 0}
    differences = compare(
        snapshot(umoci_root),
        snapshot(ours),
        ignore=lambda path, field: field == "mtime_ns" and path in implied,
    )
    assert differences == []
    assert hardlink_groups(umoci_root) == hardlink_groups(ours)


def _squash(imgtool_cli: ImgtoolCli, src: str, dest: Path, *args: str) -> str:
    run = imgtool_cli("squash", "-q", src, f"oci:{dest}:s", *args)
    assert (run.code, run.stderr) == (0, ""), run.stderr
    return f"oci:{dest}:s"


@requires("umoci", "skopeo")
@pytest.mark.parametrize(("first", "last"), [(0, 4), (0, 1), (1, 3), (2, 2), (3, 4), (1, 4)])
def test_umoci_unpacks_the_squashed_image_to_flattens_tree(
    imgtool_cli: ImgtoolCli, tmp_path: Path, first: int, last: int
) -> None:
    src = _tree_layout(tmp_path)
    out = _squash(imgtool_cli, src, tmp_path / "out", "--from", str(first), "--to", str(last))
    expected = _flatten(imgtool_cli, src, tmp_path / "expected")
    _same_tree(umoci_unpack(tmp_path / "out", "s", tmp_path / "umoci"), expected)
    run = imgtool_cli("verify", "-q", out)
    assert run.code == 0, run.stdout
    # skopeo reads what imgtool wrote: the same layers and diff_ids, the history folded
    manifest = skopeo_inspect_raw(out)
    config = skopeo_inspect_config(out)
    with open(tmp_path / "out" / "index.json", "rb") as f:
        (entry,) = json.load(f)["manifests"]
    digest = entry["digest"]
    blob = (tmp_path / "out" / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    assert manifest == json.loads(blob)
    assert len(manifest["layers"]) == len(LAYERS) - (last - first)
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])
    assert [h["created_by"] for h in config["history"]][first].startswith(
        f"imgtool squash --from {first} --to {last}"
    )


@requires("umoci", "skopeo")
def test_skopeo_copies_the_squashed_image_and_umoci_unpacks_the_copy(
    imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    src = f"oci:{SAMPLE}:1.1"
    out = _squash(imgtool_cli, src, tmp_path / "out", "--from", "1", "--to", "3")
    subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", out, f"oci:{tmp_path / 'copied'}:c"],
        check=True,
        timeout=120,
    )
    run = imgtool_cli("inspect", "--raw", f"oci:{tmp_path / 'copied'}:c")
    ours = imgtool_cli("inspect", "--raw", out)
    assert run.stdout == ours.stdout  # skopeo kept the manifest byte for byte: its digest checked out
    expected = _flatten(imgtool_cli, src, tmp_path / "expected")
    _same_tree(umoci_unpack(tmp_path / "copied", "c", tmp_path / "umoci"), expected)


@requires("buildah", "skopeo", "umoci")
@pytest.mark.parametrize("name", ["whiteouts", "links"])
def test_images_buildah_built_squash_in_the_middle(
    standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli, tmp_path: Path, name: str
) -> None:
    built = standard_image(name)
    src = built.export("oci", "gzip")
    run = imgtool_cli("inspect", "--json", src)
    count = len(json.loads(run.stdout)["layers"])
    assert count >= 3
    out = _squash(imgtool_cli, src, tmp_path / "out", "--from", "1", "--to", str(count - 2))
    assert imgtool_cli("verify", "-q", out).code == 0
    _same_tree(
        umoci_unpack(tmp_path / "out", "s", tmp_path / "umoci"), _flatten(imgtool_cli, src, tmp_path / "e")
    )


@requires("umoci", "skopeo")
@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_squash_into_an_archive_is_read_back_by_skopeo_and_umoci(
    imgtool_cli: ImgtoolCli, tmp_path: Path, transport: str
) -> None:
    """squash writes every destination copy writes: an archive, which skopeo copies to a layout
    that umoci unpacks to flatten's tree of the original."""
    src = f"oci:{SAMPLE}:1.1"
    name = "example.com/squashed:1" if transport == "docker-archive" else "s"
    dest = f"{transport}:{tmp_path / 'out.tar'}:{name}"
    run = imgtool_cli("squash", "-q", src, dest, "--from", "1", "--to", "3")
    assert (run.code, run.stderr) == (0, "")
    layers = json.loads(imgtool_cli("inspect", "--json", dest).stdout)["layers"]
    assert len(layers) == 3
    assert imgtool_cli("verify", dest).code == 0
    subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", dest, f"oci:{tmp_path / 'copied'}:c"],
        check=True,
        timeout=120,
    )
    expected = _flatten(imgtool_cli, src, tmp_path / "expected")
    _same_tree(umoci_unpack(tmp_path / "copied", "c", tmp_path / "umoci"), expected)
    diff = imgtool_cli("diff", "images", src, dest)
    assert diff.code == 0, diff.stdout
