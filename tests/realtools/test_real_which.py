"""which-layer, ls, cat and diff on buildah images with a known history, cross-checked against umoci."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.realtools import StandardImageFactory, requires

pytestmark = [pytest.mark.realtools, requires("buildah", "skopeo")]


def layer_names(oci_dir: Path) -> list[set[str]]:
    """What each layer's tar lists (not whiteouts), read with Python's tarfile: an independent reading."""
    index = json.loads((oci_dir / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((oci_dir / "blobs" / "sha256" / manifest_digest).read_bytes())
    result = []
    for layer in manifest["layers"]:
        blob = (oci_dir / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes()
        names = set()
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
            for member in tar.getmembers():
                name = os.path.normpath("/" + member.name).lstrip("/")
                if not os.path.basename(name).startswith(".wh."):
                    names.add(name)
        result.append(names)
    return result


def history_of(doc: dict[str, object]) -> list[tuple[object, ...]]:
    items = doc["history"]
    assert isinstance(items, list)
    return [(h["index"], h["change"], tuple(h["what"])) for h in items]


def test_known_history(standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli) -> None:
    ref = standard_image("history").export("oci", "gzip")
    run = imgtool_cli(
        "which-layer",
        ref,
        "/app/config.txt",
        "/app/cache/keep.txt",
        "/app/thing",
        "/app/thing/inner.txt",
        "/app/cache/new.txt",
        "/nowhere",
        "--json",
    )
    assert run.code == 1  # two of the paths are absent
    docs = {d["path"]: d for d in json.loads(run.stdout)}
    config = docs["/app/config.txt"]
    assert (config["exists"], config["layer"]["index"], config["type"], config["size"], config["mode"]) == (
        True,
        6,
        "file",
        3,
        "0644",
    )
    assert history_of(config) == [
        (2, "added", ()),
        (3, "modified", ("content", "mtime")),
        (4, "modified", ("mode",)),
        (5, "deleted", ()),
        (6, "added", ()),
    ]
    keep = docs["/app/cache/keep.txt"]
    assert (keep["exists"], keep["layer"]) == (False, None)
    assert history_of(keep) == [(2, "added", ()), (7, "deleted", ())]
    thing = docs["/app/thing"]
    assert (thing["layer"]["index"], thing["type"]) == (8, "dir")
    assert history_of(thing) == [(2, "added", ()), (8, "modified", ("type",))]
    assert history_of(docs["/app/thing/inner.txt"]) == [(8, "added", ())]
    assert history_of(docs["/app/cache/new.txt"]) == [(7, "added", ())]
    assert (docs["/nowhere"]["exists"], docs["/nowhere"]["history"]) == (False, [])
    text = imgtool_cli("which-layer", ref, "/app/cache/keep.txt")
    assert text.code == 1
    assert text.stdout.splitlines()[0].startswith(
        "/app/cache/keep.txt: not in the image: deleted by layer 7 ("
    )


def test_symlinked_parent_is_followed(standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli) -> None:
    ref = standard_image("basic").export("oci", "gzip")
    run = imgtool_cli("which-layer", ref, "/srv/data/dir-link/nested.txt", "--json")
    assert run.code == 0, run.stderr
    (doc,) = json.loads(run.stdout)
    assert doc["path"] == "/srv/data/sub/nested.txt"
    assert doc["layer"]["index"] == 2
    assert [(v["symlink"], v["target"], v["layer"]["index"]) for v in doc["via"]] == [
        ("/srv/data/dir-link", "sub", 2)
    ]


def test_glob(standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli) -> None:
    ref = standard_image("basic").export("oci", "gzip")
    run = imgtool_cli("which-layer", ref, "/srv/data/*.txt", "--json")
    assert run.code == 0, run.stderr
    found = [(d["path"], d["layer"]["index"]) for d in json.loads(run.stdout)]
    assert found == [("/srv/data/empty.txt", 2), ("/srv/data/private.txt", 2), ("/srv/data/second.txt", 4)]


def test_diff_layers_summary(standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli) -> None:
    ref = standard_image("history").export("oci", "gzip")
    run = imgtool_cli("diff", "layers", ref, "--json")
    assert run.code == 0, run.stderr
    layers = json.loads(run.stdout)["layers"]
    changes = {
        d["index"]: {(c["path"], c["change"], tuple(c.get("what", ()))) for c in d["changes"]} for d in layers
    }
    assert ("/app/config.txt", "modified", ("mode",)) in changes[4]
    assert layers[4]["summary"]["metadata_only"] == 1
    assert ("/app/config.txt", "deleted", ()) in changes[5]
    assert {c for c in changes[7] if c[1] == "deleted"} == {
        ("/app/cache/keep.txt", "deleted", ()),
        ("/app/cache/old", "deleted", ()),
        ("/app/cache/old/x.txt", "deleted", ()),
    }
    assert ("/app/thing", "modified", ("type",)) in changes[8]
    between = json.loads(imgtool_cli("diff", "layers", ref, "2", "8", "--json").stdout)
    assert (between["from"], between["to"]) == (2, 8)
    by_path = {c["path"]: (c["change"], tuple(c.get("what", ()))) for c in between["changes"]}
    assert by_path["/app/config.txt"] == ("modified", ("content", "mtime"))
    assert by_path["/app/cache/keep.txt"] == ("deleted", ())
    assert by_path["/app/cache/new.txt"] == ("added", ())
    assert by_path["/app/thing"] == ("modified", ("type",))
    assert by_path["/app/thing/inner.txt"] == ("added", ())


@requires("umoci")
@pytest.mark.parametrize("name", ["basic", "whiteouts", "links", "metadata", "history"])
def test_supplying_layer_of_every_path(
    standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli, name: str
) -> None:
    """Every path of umoci's rootfs is in ls -R, supplied by the topmost layer whose tar lists it."""
    built = standard_image(name)
    ref = built.export("oci", "gzip")
    run = imgtool_cli("ls", ref, "/", "-R", "--json")
    assert run.code == 0, run.stderr
    ours = {row["path"].lstrip("/"): row["layer"] for row in json.loads(run.stdout)}
    rootfs = built.reference_rootfs()
    theirs = {
        os.path.relpath(os.path.join(d, n), rootfs)
        for d, dirs, files in os.walk(rootfs)
        for n in dirs + files
    }
    assert set(ours) == theirs
    names = layer_names(built.oci_gzip_dir)
    for path, layer in ours.items():
        listing = [i for i, layer_names_i in enumerate(names) if path in layer_names_i]
        assert listing, path
        assert layer == listing[-1], path


def test_cat_reads_the_final_content(standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli) -> None:
    ref = standard_image("links").export("oci", "gzip")
    assert imgtool_cli("cat", ref, "/l/orig.txt").stdout_bytes == b"replaced\n"
    assert imgtool_cli("cat", ref, "/l/cross").stdout_bytes == b"original\n"
    basic = standard_image("basic").export("docker-archive", "none")
    assert imgtool_cli("cat", basic, "/srv/data/abs-link").stdout_bytes == b"hello world\n"
    assert imgtool_cli("cat", basic, "/srv/data/dir-link/nested.txt").stdout_bytes == b"nested\n"


def test_diff_images(standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    basic = standard_image("basic")
    same = imgtool_cli("diff", "images", basic.export("oci", "gzip"), basic.export("docker-archive", "none"))
    assert (same.code, same.stdout.splitlines()[-1]) == (
        0,
        "0 added, 0 modified, 0 deleted; 5 layers in common, all at the base",
    )
    other = imgtool_cli(
        "diff", "images", basic.export("oci", "gzip"), standard_image("links").export("oci", "gzip"), "--json"
    )
    assert other.code == 1
    doc = json.loads(other.stdout)
    assert doc["shared_base_layers"] == 2
    assert doc["identical"] is False
    paths = {c["path"]: c["change"] for c in doc["changes"]}
    assert paths["/l"] == "added" and paths["/srv"] == "deleted"
