"""containers-storage read in place: stores written by the real buildah and skopeo, in a temp dir,
with the vfs and the overlay driver; imgtool's answers on the store agree with its answers on an
OCI layout skopeo copied out of the same store, entry by entry and byte for byte."""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.shell_completion import ShellComplete

from imgtool.cli import cli
from imgtool.console.completion import COMPLETE_VAR
from imgtool.image.image import LayerStream
from imgtool.sources import open_image
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    File,
    ImageSpec,
    Opaque,
    Symlink,
    Whiteout,
    make_layer,
    write_oci_layout,
)
from tests.helpers.realtools import Builder, requires

pytestmark = requires("buildah", "skopeo")

WORK = "work"  # the container made with buildah from + buildah copy


@dataclass(frozen=True)
class Store:
    root: Path
    run: Path
    driver: str
    layouts: Path

    @property
    def spec(self) -> str:
        return f"[{self.driver}@{self.root}+{self.run}]"

    def image(self, name: str) -> str:
        return f"containers-storage:{self.spec}{name}"

    def container(self, name: str) -> str:
        return f"podman-container:{self.spec}{name}"


def _context(path: Path) -> Path:
    (path / "d").mkdir(parents=True)
    (path / "d" / "a.txt").write_bytes(b"hello\n")
    (path / "d" / "link").symlink_to("a.txt")
    (path / "bin").mkdir()
    (path / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
    (path / "bin" / "tool").chmod(0o755)
    (path / "b.txt").write_bytes(b"bye\n" * 300)
    (path / "new.txt").write_bytes(b"written in the container\n")
    return path


@pytest.fixture(scope="module", params=["vfs", "overlay"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    base = tmp_path_factory.mktemp(f"cs-{request.param}")
    tools = Builder(base / "tools", storage_driver=request.param)  # private config and mount namespace
    built = Store(tools.root, tools.runroot, request.param, base / "layouts")
    ctx = _context(base / "ctx")
    c = tools.buildah("from", "scratch").strip()
    tools.buildah("copy", c, str(ctx / "d"), "/d")
    tools.buildah("copy", c, str(ctx / "bin"), "/bin")
    tools.buildah("commit", "-q", c, "img1")
    c = tools.buildah("from", "img1").strip()
    tools.buildah("copy", c, str(ctx / "b.txt"), "/b.txt")
    tools.buildah("commit", "-q", c, "img2:v1")
    tools.buildah("from", "--name", WORK, "img2:v1")
    tools.buildah("copy", WORK, str(ctx / "new.txt"), "/d/new.txt")
    # An image with whiteouts, an opaque directory and gzip layers, copied in from a layout.
    layers = [
        make_layer(
            [Dir("etc/"), File("etc/a", b"a"), File("etc/b", b"bb"), Dir("opt/"), File("opt/x", b"x")]
        ),
        make_layer([Whiteout("etc/a"), Opaque("opt/"), File("opt/y", b"yy"), Symlink("etc/l", "b")]),
    ]
    write_oci_layout(base / "wh-src", [Entry(ImageSpec(layers), ref="v1")])
    tools.skopeo("copy", f"oci:{base}/wh-src:v1", built.image("localhost/wh:v1"))
    built.layouts.mkdir()
    for name in ("img2:v1", "wh:v1"):
        dest = f"oci:{built.layouts}/{name.split(':')[0]}:v1"
        tools.skopeo("copy", "--dest-oci-accept-uncompressed-layers", built.image(f"localhost/{name}"), dest)
    yield built
    tools.close()


def _json(imgtool_cli: ImgtoolCli, *args: str) -> Any:
    run = imgtool_cli(*args)
    assert run.code == 0, run.stderr
    return json.loads(run.stdout)


def _same_image_facts(doc: dict[str, Any]) -> dict[str, Any]:
    keep = ("manifest_digest", "manifest_media_type", "config_digest", "platform", "created", "history")
    layers = [{k: v for k, v in layer.items() if k != "compression"} for layer in doc["layers"]]
    return {**{k: doc[k] for k in keep}, "layers": layers}


@pytest.mark.parametrize("name", ["img2", "wh"])
def test_store_image_answers_as_its_layout(imgtool_cli: ImgtoolCli, store: Store, name: str) -> None:
    stored, layout = store.image(f"localhost/{name}:v1"), f"oci:{store.layouts}/{name}:v1"
    if name == "wh":
        # skopeo copies the unpacked layers out uncompressed: compare with the source layout instead,
        # whose manifest the store kept byte for byte.
        layout = f"oci:{store.layouts.parent}/wh-src:v1"
    a, b = _json(imgtool_cli, "inspect", "--json", stored), _json(imgtool_cli, "inspect", "--json", layout)
    assert _same_image_facts(a) == _same_image_facts(b)
    assert a["transport"] == "containers-storage"
    if name == "wh":  # served unpacked: the compression shown is the tar's, and inspect says why
        assert [layer["compression"] for layer in a["layers"]] == ["none", "none"]
        assert a["warnings"] == [
            f"layer {i} ({layer['digest']}): its blob digest cannot be verified: "
            "the store keeps the layer unpacked: its tar is read in place of the compressed blob"
            for i, layer in enumerate(a["layers"])
        ]
    else:
        assert a["warnings"] == []
    assert f"localhost/{name}:v1" in a["tags"]
    assert _json(imgtool_cli, "ls", "-R", "--json", stored) == _json(
        imgtool_cli, "ls", "-R", "--json", layout
    )
    path = "/d/a.txt" if name == "img2" else "/opt/y"
    assert _json(imgtool_cli, "which-layer", "--json", stored, path) == _json(
        imgtool_cli, "which-layer", "--json", layout, path
    )
    assert imgtool_cli("cat", stored, path).stdout_bytes == imgtool_cli("cat", layout, path).stdout_bytes
    out = store.root.parent / f"flat-{name}"
    for ref, dest in ((stored, out.with_suffix(".a.tar")), (layout, out.with_suffix(".b.tar"))):
        run = imgtool_cli("flatten", ref, "-o", str(dest))
        assert run.code == 0, run.stderr
    assert out.with_suffix(".a.tar").read_bytes() == out.with_suffix(".b.tar").read_bytes()


def test_whiteouts_and_opaque_dirs_apply(imgtool_cli: ImgtoolCli, store: Store) -> None:
    listing = _json(imgtool_cli, "ls", "-R", "--json", store.image("localhost/wh:v1"))
    assert sorted(item["path"] for item in listing) == ["/etc", "/etc/b", "/etc/l", "/opt", "/opt/y"]


def test_rebuilt_layer_tars_are_the_exported_layers(store: Store) -> None:
    """Each layer rebuilt from its tar-split is byte-identical to the uncompressed layer skopeo
    exports, and to the layer the store was filled from."""
    sources = {
        "img2": [store.layouts / "img2"],
        "wh": [store.layouts / "wh", store.layouts.parent / "wh-src"],
    }
    for name, layouts in sources.items():
        with open_image(store.image(f"localhost/{name}:v1")) as image:
            rebuilt = []
            for layer in image.layers:
                with layer.open() as stream:
                    rebuilt.append(_read_all(stream))
                    stream.finish()
        for layout in layouts:
            index = json.loads((layout / "index.json").read_text())
            manifest = json.loads(_blob(layout, index["manifests"][0]["digest"]))
            exported = [_blob(layout, desc["digest"]) for desc in manifest["layers"]]
            exported = [gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b for b in exported]
            assert rebuilt == exported
        assert all(rebuilt)


def _read_all(stream: LayerStream) -> bytes:
    chunks = []
    while chunk := stream.read(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _blob(layout: Path, digest: str) -> bytes:
    algorithm, _, hex_ = digest.partition(":")
    return (layout / "blobs" / algorithm / hex_).read_bytes()


def test_verify_checks_rebuilt_layers(imgtool_cli: ImgtoolCli, store: Store) -> None:
    rows = _json(imgtool_cli, "verify", "--json", store.image("localhost/img2:v1"))
    assert [(r["blob"], r["kind"], r["status"]) for r in rows] == [
        ("manifest", "application/vnd.oci.image.manifest.v1+json", "ok"),
        ("config", "application/vnd.oci.image.config.v1+json", "ok"),
        ("layer 0", "blob", "ok"),
        ("layer 0", "diff_id", "ok"),
        ("layer 1", "blob", "ok"),
        ("layer 1", "diff_id", "ok"),
    ]
    # gzip layers: the store keeps no compressed blob; the diff_id is still checked.
    rows = _json(imgtool_cli, "verify", "--json", store.image("localhost/wh:v1"))
    assert [(r["blob"], r["kind"], r["status"]) for r in rows][2:] == [
        ("layer 0", "blob", "unverifiable"),
        ("layer 0", "diff_id", "ok"),
        ("layer 1", "blob", "unverifiable"),
        ("layer 1", "diff_id", "ok"),
    ]
    assert "the store keeps the layer unpacked" in rows[2]["detail"]


def test_image_by_id_and_short_name(imgtool_cli: ImgtoolCli, store: Store) -> None:
    by_name = _json(imgtool_cli, "inspect", "--json", store.image("img2:v1"))
    image_id = by_name["config_digest"].partition(":")[2]
    by_id = _json(imgtool_cli, "inspect", "--json", store.image(f"@{image_id}"))
    assert by_id["manifest_digest"] == by_name["manifest_digest"]
    run = imgtool_cli("inspect", store.image("nosuch:v9"))
    assert run.code != 0
    assert run.stderr.startswith(f"imgtool: error: {store.root}: no image named 'nosuch:v9'; names present: ")
    assert run.stderr.count("\n") == 1


def test_container_layer_is_the_top_layer(imgtool_cli: ImgtoolCli, store: Store) -> None:
    ref = store.container(WORK)
    layers = _json(imgtool_cli, "diff", "layers", "--json", ref)["layers"]
    top = layers[-1]
    assert top["created_by"] == f"the writable layer of container {WORK}"
    changed = [(c["path"], c["change"], c["type"], c["size"]) for c in top["changes"]]
    assert ("/d/new.txt", "added", "file", 25) in changed
    assert {path for path, *_ in changed} <= {"/d", "/d/new.txt"}
    which = _json(imgtool_cli, "which-layer", "--json", ref, "/d/new.txt")
    assert which[0]["layer"]["created_by"] == f"the writable layer of container {WORK}"
    assert which[0]["layer"]["index"] == 2
    which = _json(imgtool_cli, "which-layer", "--json", ref, "/b.txt")
    assert which[0]["layer"]["index"] == 1
    assert imgtool_cli("cat", ref, "/d/new.txt").stdout_bytes == b"written in the container\n"
    rows = _json(imgtool_cli, "verify", "--json", ref)
    assert [(r["blob"], r["kind"], r["status"]) for r in rows][-2:] == [
        ("layer 2", "blob", "unverifiable"),
        ("layer 2", "diff_id", "unverifiable"),
    ]
    assert "without a tar-split: no digest to check it against" in rows[-1]["detail"]
    assert imgtool_cli("verify", ref).code == 0


# Hostile stores: a copy of the store, tampered with.


def _copy(store: Store, tmp_path: Path) -> Store:
    copy = Store(tmp_path / "root", tmp_path / "run", store.driver, store.layouts)  # never mounted
    subprocess.run(["cp", "-a", str(store.root), str(copy.root)], check=True)  # whiteouts are devices
    copy.run.mkdir()
    return copy


def _image_record(store: Store, name: str) -> dict[str, Any]:
    images = json.loads((store.root / f"{store.driver}-images" / "images.json").read_text())
    return next(i for i in images if f"localhost/{name}" in i["names"])


def _layer_dir(store: Store, layer_id: str) -> Path:
    if store.driver == "overlay":
        return store.root / "overlay" / layer_id / "diff"
    return store.root / "vfs" / "dir" / layer_id


def _fails(imgtool_cli: ImgtoolCli, *args: str) -> str:
    run = imgtool_cli(*args)
    assert run.code != 0
    assert run.stderr.startswith("imgtool: error: "), run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
    return run.stderr


def test_hostile_layer_dir_symlink_out_of_the_store(
    imgtool_cli: ImgtoolCli, store: Store, tmp_path: Path
) -> None:
    copy = _copy(store, tmp_path)
    outside = tmp_path / "outside"
    subprocess.run(
        ["cp", "-a", str(_layer_dir(store, _image_record(store, "img2:v1")["layer"])), str(outside)],
        check=True,
    )
    target = _layer_dir(copy, _image_record(copy, "img2:v1")["layer"])
    shutil.rmtree(target)
    target.symlink_to(outside)
    error = _fails(imgtool_cli, "ls", "-R", copy.image("img2:v1"))
    assert "is a symlink; refused" in error


def _rewrite_tar_split(store: Store, layer_id: str, rename: dict[str, str]) -> None:
    path = store.root / f"{store.driver}-layers" / f"{layer_id}.tar-split.gz"
    lines = []
    for line in gzip.decompress(path.read_bytes()).splitlines():
        entry = json.loads(line)
        if entry.get("type") == 1 and entry.get("name") in rename:
            entry["name"] = rename[entry["name"]]
        lines.append(json.dumps(entry).encode())
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))


@pytest.mark.parametrize(
    ("name", "words"),
    [("../../../../secret", "outside the layer directory"), ("d/link", "cannot be opened inside the layer")],
)
def test_hostile_tar_split_names_a_file_outside(
    imgtool_cli: ImgtoolCli, store: Store, tmp_path: Path, name: str, words: str
) -> None:
    copy = _copy(store, tmp_path)
    (tmp_path / "secret").write_bytes(b"hello\n")  # as long as the file it stands for
    layer_id = _image_record(copy, "img1:latest")["layer"]
    _rewrite_tar_split(copy, layer_id, {"d/a.txt": name})
    error = _fails(imgtool_cli, "cat", copy.image("img1"), "/d/a.txt")
    assert words in error


def test_hostile_layers_json_names_a_missing_layer(
    imgtool_cli: ImgtoolCli, store: Store, tmp_path: Path
) -> None:
    copy = _copy(store, tmp_path)
    path = copy.root / f"{copy.driver}-layers" / "layers.json"
    base_layer = _image_record(copy, "img1:latest")["layer"]
    records = [r for r in json.loads(path.read_text()) if r["id"] != base_layer]
    path.write_text(json.dumps(records))
    error = _fails(imgtool_cli, "inspect", copy.image("img2:v1"))
    assert f"names layer {base_layer}, which layers.json does not list" in error


def test_hostile_layer_directory_missing(imgtool_cli: ImgtoolCli, store: Store, tmp_path: Path) -> None:
    copy = _copy(store, tmp_path)
    layer_id = _image_record(copy, "img1:latest")["layer"]
    shutil.rmtree(_layer_dir(copy, layer_id))
    error = _fails(imgtool_cli, "inspect", copy.image("img1"))
    assert f"layer {layer_id[:12]}: its directory" in error and "is missing from the store" in error


def test_store_specifier_errors(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    error = _fails(imgtool_cli, "inspect", f"containers-storage:[btrfs@{tmp_path}]x")
    assert error == "imgtool: error: storage driver 'btrfs' is not supported: overlay or vfs\n"
    error = _fails(imgtool_cli, "inspect", f"containers-storage:[{tmp_path}]x")
    assert error == (
        f"imgtool: error: {tmp_path}: not a containers-storage graph root (no overlay or vfs store)\n"
    )
    error = _fails(imgtool_cli, "inspect", f"containers-storage:[vfs@{tmp_path}]")
    assert error == f"imgtool: error: {tmp_path}: holds no vfs store (vfs-layers/ is missing)\n"


def test_big_data_names() -> None:
    from imgtool.sources.containers_storage import _big_data_name

    assert _big_data_name("manifest") == "manifest"
    key = "sha256:" + "a" * 64
    assert _big_data_name(key) == "=" + base64.b64encode(key.encode()).decode()
    assert os.sep not in _big_data_name(key)


def _container_layer(store: Store, name: str) -> Path:
    containers = json.loads((store.root / f"{store.driver}-containers" / "containers.json").read_text())
    return _layer_dir(store, next(c for c in containers if name in c["names"])["layer"])


def test_container_changes_as_the_engine_leaves_them(
    imgtool_cli: ImgtoolCli, store: Store, tmp_path: Path
) -> None:
    """What a running container's deletes, edits and chmods leave in its layer (a whiteout device in
    overlay's upper directory, a removal from vfs's full copy) is what diff layers shows."""
    copy = _copy(store, tmp_path)
    top = _container_layer(copy, WORK)
    if copy.driver == "overlay":
        os.mknod(top / "b.txt", 0o600 | 0o020000, os.makedev(0, 0))
        (top / "bin").mkdir()
        os.setxattr(top / "bin", "trusted.overlay.opaque", b"y")
        (top / "bin" / "other").write_bytes(b"other\n")
        (top / "d" / "a.txt").write_bytes(b"edited\n")
    else:
        (top / "b.txt").unlink()
        (top / "bin" / "tool").unlink()
        (top / "bin" / "other").write_bytes(b"other\n")
        (top / "d" / "a.txt").write_bytes(b"edited\n")
    ref = copy.container(WORK)
    changes = _json(imgtool_cli, "diff", "layers", "--json", ref)["layers"][-1]["changes"]
    found = {(c["path"], c["change"]) for c in changes if c["type"] != "dir"}
    assert found == {
        ("/b.txt", "deleted"),
        ("/bin/tool", "deleted"),
        ("/bin/other", "added"),
        ("/d/a.txt", "modified"),
        ("/d/new.txt", "added"),
    }
    listing = _json(imgtool_cli, "ls", "-R", "--json", ref)
    assert [item["path"] for item in listing] == [
        "/bin",
        "/bin/other",
        "/d",
        "/d/a.txt",
        "/d/link",
        "/d/new.txt",
    ]
    assert imgtool_cli("cat", ref, "/d/a.txt").stdout_bytes == b"edited\n"
    which = _json(imgtool_cli, "which-layer", "--json", ref, "/d/link")
    assert which[0]["layer"]["index"] == 0


def test_hostile_layer_chain_loops(imgtool_cli: ImgtoolCli, store: Store, tmp_path: Path) -> None:
    copy = _copy(store, tmp_path)
    path = copy.root / f"{copy.driver}-layers" / "layers.json"
    base_layer = _image_record(copy, "img1:latest")["layer"]
    records = json.loads(path.read_text())
    for record in records:
        if record["id"] == base_layer:
            record["parent"] = base_layer
    path.write_text(json.dumps(records))
    assert "form a loop" in _fails(imgtool_cli, "inspect", copy.image("img1"))


def test_hostile_tar_split_size_disagrees(imgtool_cli: ImgtoolCli, store: Store, tmp_path: Path) -> None:
    copy = _copy(store, tmp_path)
    layer_id = _image_record(copy, "img1:latest")["layer"]
    target = _layer_dir(copy, layer_id) / "d" / "a.txt"
    target.write_bytes(b"hello, longer\n")
    error = _fails(imgtool_cli, "cat", copy.image("img1"), "/d/a.txt")
    assert error.endswith("'d/a.txt' holds 14 bytes; its tar-split says 6\n")


def test_hostile_ids_are_64_hex_digits(imgtool_cli: ImgtoolCli, store: Store, tmp_path: Path) -> None:
    copy = _copy(store, tmp_path)
    path = copy.root / f"{copy.driver}-images" / "images.json"
    records = json.loads(path.read_text())
    records[0]["layer"] = "../../../etc"
    path.write_text(json.dumps(records))
    assert "not a 64-hex-digit ID: '../../../etc'" in _fails(imgtool_cli, "inspect", copy.image("img1"))


def test_a_reference_without_a_name(imgtool_cli: ImgtoolCli, store: Store) -> None:
    error = _fails(imgtool_cli, "inspect", f"containers-storage:{store.spec}")
    assert error == "imgtool: error: containers-storage: the reference names no image or container\n"
    error = _fails(imgtool_cli, "inspect", f"podman-container:{store.spec}")
    assert error == "imgtool: error: podman-container: the reference names no image or container\n"


def test_store_references_complete(store: Store) -> None:
    def values(incomplete: str) -> list[str]:
        items = ShellComplete(cli, {}, "imgtool", COMPLETE_VAR).get_completions(["inspect"], incomplete)
        return [item.value for item in items]

    parent = str(store.root.parent)
    assert values(f"containers-storage:[{store.driver}@{parent}/ro") == [
        f"containers-storage:[{store.driver}@{store.root}/"
    ]
    assert values(f"containers-storage:{store.spec}localhost/img") == [
        f"containers-storage:{store.spec}localhost/img1:latest",
        f"containers-storage:{store.spec}localhost/img2:v1",
    ]
    # buildah keeps the containers it committed from, besides WORK
    assert values(f"podman-container:{store.spec}w") == [
        f"podman-container:{store.spec}{WORK}",
        f"podman-container:{store.spec}working-container",
    ]
    assert values(f"containers-storage:[{store.driver}@{parent}/nothere]x") == []


def test_images_lists_the_store(imgtool_cli: ImgtoolCli, store: Store) -> None:
    listed = _json(imgtool_cli, "images", "--json", f"containers-storage:{store.spec}")
    assert sorted(i["name"] for i in listed) == [
        "localhost/img1:latest",
        "localhost/img2:v1",
        "localhost/wh:v1",
    ]
    for item in listed:
        assert item["reference"] == store.image(item["name"])
        inspected = _json(imgtool_cli, "inspect", "--json", item["reference"])
        layers = sum(layer["size"] for layer in inspected["layers"])
        config = imgtool_cli("inspect", "--config", item["reference"]).stdout_bytes
        assert (item["manifest_digest"], item["size"]) == (inspected["manifest_digest"], len(config) + layers)
