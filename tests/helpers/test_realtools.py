"""Checks that the real-tool harness (tests/helpers/realtools.py) and tree snapshots
(tests/helpers/treesnap.py) work."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.realtools import (
    BASE_LAYER_COUNT,
    FIXED_MTIME,
    STANDARD_FILES,
    STANDARD_IMAGES,
    Builder,
    BuiltImage,
    ContextFile,
    PlatformIndex,
    StandardImageFactory,
    builder,  # noqa: F401
    find_static_busybox,
    is_static_elf,
    missing_tools,
    overlay_builder,  # noqa: F401
    platform_index,  # noqa: F401
    requires,
    skopeo_inspect_config,
    skopeo_inspect_raw,
    standard_image,  # noqa: F401
    umoci_unpack,
)
from tests.helpers.treesnap import Node, compare, hardlink_groups, ignore_fields, snapshot, tree_hash_listing

FIXED_NS = FIXED_MTIME * 1_000_000_000
LAYER_MEDIA_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_node(snap: dict[bytes, Node], path: bytes) -> Node:
    node = snap[path]
    assert node.type == "file", (path, node)
    return node


def assert_content(snap: dict[bytes, Node], path: bytes, data: bytes) -> None:
    assert file_node(snap, path).sha256 == sha(data), path


def blob_magic(data: bytes) -> str:
    if data.startswith(b"\x1f\x8b"):
        return "gzip"
    if data.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if data[257:262] == b"ustar":
        return "none"
    return "unknown"


def layout_blob(layout: Path, digest: str) -> bytes:
    algorithm, _, hex_digest = digest.partition(":")
    return (layout / "blobs" / algorithm / hex_digest).read_bytes()


def archive_member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive, "r:") as tf:
        extracted = tf.extractfile(name)
        assert extracted is not None, name
        return extracted.read()


def layer_entries(image: BuiltImage) -> list[list[str]]:
    """Member names of each layer of the gzip OCI copy."""
    layers: list[list[str]] = []
    for layer in image.manifest()["layers"]:
        blob = image.oci_gzip_dir / "blobs" / "sha256" / str(layer["digest"]).removeprefix("sha256:")
        with tarfile.open(blob, "r:gz") as tf:
            layers.append(tf.getnames())
    return layers


def user_xattrs_supported(directory: Path) -> bool:
    probe = directory / "xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return False
        raise
    finally:
        probe.unlink()
    return True


# --------------------------------------------------------------------------------------------------------
# treesnap on hand-made trees (no real tools needed)


def make_tree(root: Path) -> None:
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "a.txt").write_bytes(b"alpha\n")
    (root / "dir" / "sub" / "b.bin").write_bytes(bytes(range(256)))
    os.symlink("a.txt", root / "dir" / "link")
    os.symlink("/nowhere", root / "dangling")
    os.link(root / "dir" / "a.txt", root / "hard-a")
    os.link(root / "dir" / "a.txt", root / "dir" / "sub" / "hard-a2")
    os.mkfifo(root / "fifo")
    (root / os.fsdecode(b"caf\xe9")).write_bytes(b"latin-1 name\n")
    os.chmod(root / "dir" / "sub" / "b.bin", 0o4751)
    os.utime(root / "dir" / "a.txt", ns=(FIXED_NS, FIXED_NS))


def test_snapshot_records_types_and_content(tmp_path: Path) -> None:
    make_tree(tmp_path)
    snap = snapshot(tmp_path)
    assert snap[b""].type == "dir"
    assert all(isinstance(key, bytes) and not key.startswith(b"/") for key in snap)
    a = snap[b"dir/a.txt"]
    assert (a.type, a.size, a.sha256, a.mtime_ns, a.nlink) == ("file", 6, sha(b"alpha\n"), FIXED_NS, 3)
    assert snap[b"dir/sub/b.bin"].mode == 0o4751
    assert snap[b"dir/link"] == Node(
        type="symlink",
        mode=snap[b"dir/link"].mode,
        uid=os.getuid(),
        gid=os.getgid(),
        size=0,
        sha256=None,
        link=b"a.txt",
        mtime_ns=snap[b"dir/link"].mtime_ns,
        rdev=None,
        xattrs=(),
        nlink=1,
    )
    assert snap[b"dangling"].link == b"/nowhere"
    assert snap[b"fifo"].type == "fifo"
    assert snap[b"dir"].nlink == 0
    assert_content(snap, b"caf\xe9", b"latin-1 name\n")
    assert snapshot(tmp_path, exclude_root_mtime=True)[b""].mtime_ns is None


def test_snapshot_records_xattrs(tmp_path: Path) -> None:
    if not user_xattrs_supported(tmp_path):
        pytest.skip("user.* xattrs not supported on the temporary directory's file system")
    target = tmp_path / "x"
    target.write_bytes(b"")
    os.setxattr(target, "user.b", b"\x00\xff")
    os.setxattr(target, "user.a", b"first")
    assert snapshot(tmp_path)[b"x"].xattrs == (("user.a", b"first"), ("user.b", b"\x00\xff"))


def pin_mtimes(root: Path) -> None:
    for rel in snapshot(root):
        os.utime(
            os.path.join(os.fsencode(root), rel) if rel else root,
            ns=(FIXED_NS, FIXED_NS),
            follow_symlinks=False,
        )


def test_compare_reports_mode_mtime_content_and_presence(tmp_path: Path) -> None:
    left, right = tmp_path / "left", tmp_path / "right"
    for root in (left, right):
        root.mkdir()
        make_tree(root)
        pin_mtimes(root)
    assert compare(snapshot(left), snapshot(right)) == []

    os.chmod(right / "dir" / "sub" / "b.bin", 0o644)
    (right / "dir" / "sub" / "hard-a2").unlink()
    (right / "dir" / "sub" / "hard-a2").write_bytes(b"changed\n")
    (right / "fifo").unlink()
    (right / "dir" / "new").mkdir()
    (left / "dangling").unlink()
    (left / "dangling").mkdir()
    for root in (left, right):
        pin_mtimes(root)
    os.utime(right / "hard-a", ns=(FIXED_NS + 5, FIXED_NS + 5))  # also dir/a.txt: the same inode
    old, new = sha(b"alpha\n"), sha(b"changed\n")
    a, b = snapshot(left), snapshot(right)
    assert compare(a, b) == [
        "/dangling: type a=dir b=symlink",
        f"/dir/a.txt: mtime_ns a={FIXED_NS} b={FIXED_NS + 5}",
        "/dir/a.txt: nlink a=3 b=2",
        "/dir/new: only in b (dir)",
        "/dir/sub/b.bin: mode a=4751 b=0644",
        "/dir/sub/hard-a2: nlink a=3 b=1",
        f"/dir/sub/hard-a2: sha256 a='{old}' b='{new}'",
        "/dir/sub/hard-a2: size a=6 b=8",
        "/fifo: only in a (fifo)",
        f"/hard-a: mtime_ns a={FIXED_NS} b={FIXED_NS + 5}",
        "/hard-a: nlink a=3 b=2",
    ]
    expected_changes = {b"dir/a.txt", b"hard-a"}
    assert compare(a, b, ignore=ignore_fields("mtime_ns", "nlink", paths=expected_changes.__contains__)) == [
        "/dangling: type a=dir b=symlink",
        "/dir/new: only in b (dir)",
        "/dir/sub/b.bin: mode a=4751 b=0644",
        "/dir/sub/hard-a2: nlink a=3 b=1",
        f"/dir/sub/hard-a2: sha256 a='{old}' b='{new}'",
        "/dir/sub/hard-a2: size a=6 b=8",
        "/fifo: only in a (fifo)",
    ]
    assert compare(a, b, ignore=lambda path, field: True) == []
    with pytest.raises(ValueError, match="unknown fields"):
        ignore_fields("colour")


def test_hardlink_groups(tmp_path: Path) -> None:
    make_tree(tmp_path)
    os.link(tmp_path / "fifo", tmp_path / "fifo2")
    assert hardlink_groups(tmp_path) == {
        frozenset({b"dir/a.txt", b"hard-a", b"dir/sub/hard-a2"}),
        frozenset({b"fifo", b"fifo2"}),
    }


def test_tree_hash_listing_notices_any_change(tmp_path: Path) -> None:
    make_tree(tmp_path)
    before = tree_hash_listing(tmp_path)
    assert before == tree_hash_listing(tmp_path)
    assert any(line.startswith("/dir/a.txt file 0644 ") and sha(b"alpha\n") in line for line in before)
    assert any(line.startswith("/caf\\xe9 file ") for line in before)
    target = tmp_path / "dir" / "sub" / "b.bin"
    mtime_ns = os.lstat(target).st_mtime_ns
    target.write_bytes(bytes(range(255, -1, -1)))  # same size, same mtime: only the hash changes
    os.utime(target, ns=(mtime_ns, mtime_ns))
    after = tree_hash_listing(tmp_path)
    changed = [line for line in after if line not in before]
    assert len(changed) == 1
    assert changed[0].startswith("/dir/sub/b.bin file 4751 ")


# --------------------------------------------------------------------------------------------------------
# realtools helpers that need no image


def test_requires_names_missing_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    mark = requires("no-such-tool-for-imgtool", "sh")
    assert mark.args == (True,)
    assert (
        mark.kwargs["reason"]
        == "no-such-tool-for-imgtool not installed (the README test command installs it)"
    )
    assert missing_tools("no-such-tool-a", "sh", "no-such-tool-b") == ["no-such-tool-a", "no-such-tool-b"]
    assert requires("sh").args == (False,)
    monkeypatch.setenv("CI", "true")
    assert requires("no-such-tool-for-imgtool").args == (False,)


def test_is_static_elf(tmp_path: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is not None and find_static_busybox() is not None:
        assert is_static_elf(busybox)
    sh = shutil.which("python3") or shutil.which("sh")
    assert sh is not None
    assert not is_static_elf(Path(sh).resolve())
    script = tmp_path / "script"
    script.write_bytes(b"#!/bin/sh\n")
    assert not is_static_elf(script)


# --------------------------------------------------------------------------------------------------------
# Real tools


BASIC_EXPECTED: dict[bytes, bytes] = {
    b"etc/app/hello.txt": b"hello world\n",
    b"srv/data/empty.txt": b"",
    b"srv/data/run.sh": b"#!/bin/sh\necho hi\n",
    b"srv/data/private.txt": b"secret\n",
    b"srv/data/sub/nested.txt": b"nested\n",
    b"srv/data/second.txt": b"second\n",
}


@pytest.mark.realtools
def test_basic_exports_in_every_format(standard_image: StandardImageFactory, builder: Builder) -> None:  # noqa: F811
    image = standard_image("basic")
    cache = Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb")
    cache_before = cache.stat().st_mtime_ns if cache.exists() else None
    diff_ids = image.config()["rootfs"]["diff_ids"]
    assert len(diff_ids) == BASE_LAYER_COUNT + 3

    for compression in ("gzip", "zstd", "none"):
        ref = image.export("oci", compression)
        assert ref.startswith("oci:") and ref.endswith(":latest")
        layout = Path(ref.split(":")[1])
        manifest = skopeo_inspect_raw(ref)
        assert {layer["mediaType"] for layer in manifest["layers"]} == {LAYER_MEDIA_TYPES[compression]}
        assert {blob_magic(layout_blob(layout, layer["digest"])) for layer in manifest["layers"]} == {
            compression
        }
        assert skopeo_inspect_config(ref)["rootfs"]["diff_ids"] == diff_ids

        ref = image.export("oci-archive", compression)
        archive = Path(ref.split(":")[1])
        manifest = skopeo_inspect_raw(ref)
        assert {layer["mediaType"] for layer in manifest["layers"]} == {LAYER_MEDIA_TYPES[compression]}
        magics = {
            blob_magic(archive_member(archive, "blobs/" + layer["digest"].replace(":", "/")))
            for layer in manifest["layers"]
        }
        assert magics == {compression}
        assert skopeo_inspect_config(ref)["rootfs"]["diff_ids"] == diff_ids

    ref = image.export("docker-archive")
    archive = Path(ref.removeprefix("docker-archive:"))
    entries = json.loads(archive_member(archive, "manifest.json"))
    assert [entry["RepoTags"] for entry in entries] == [["localhost/basic:latest"]]
    assert {blob_magic(archive_member(archive, name)) for name in entries[0]["Layers"]} == {"none"}
    assert skopeo_inspect_config(ref)["rootfs"]["diff_ids"] == diff_ids
    with pytest.raises(ValueError, match="uncompressed"):
        builder.export(image.ref, "docker-archive", builder.workdir / "never.tar", "gzip")

    if builder.isolates_host_cache:
        assert (cache.stat().st_mtime_ns if cache.exists() else None) == cache_before


@pytest.mark.realtools
def test_basic_rootfs_from_umoci(standard_image: StandardImageFactory, tmp_path: Path) -> None:  # noqa: F811
    image = standard_image("basic")
    rootfs = image.reference_rootfs()
    snap = snapshot(rootfs, exclude_root_mtime=True)
    for path, data in BASIC_EXPECTED.items():
        assert_content(snap, path, data)
    blob = STANDARD_FILES["basic"]["blob.bin"]
    assert isinstance(blob, ContextFile)
    assert_content(snap, b"srv/data/blob.bin", blob.data)
    assert snap[b"srv/data/blob.bin"].mtime_ns == FIXED_NS
    assert snap[b"etc/app/hello.txt"].mtime_ns == FIXED_NS
    assert snap[b"srv/data/private.txt"].mode == 0o600
    assert snap[b"srv/data/run.sh"].mode == 0o755
    assert snap[b"srv/empty"].type == "dir"
    links = {b"abs-link": b"/etc/app/hello.txt", b"rel-link": b"../../etc/app/hello.txt", b"dir-link": b"sub"}
    for name, target in links.items():
        assert snap[b"srv/data/" + name].link == target
    assert snap[b"srv/data/dangling"].link == b"does-not-exist"
    busybox = find_static_busybox()
    assert busybox is not None
    assert_content(snap, b"bin/busybox", busybox.read_bytes())
    assert snap[b"bin/busybox"].mode == 0o755
    assert snap[b"bin/sh"].link == b"/bin/busybox"
    assert snap[b""].mtime_ns is None
    assert os.lstat(rootfs).st_mtime_ns == 0  # umoci stamps the rootfs directory with the epoch

    # The correctly labelled uncompressed layout unpacks to the same tree.
    other = umoci_unpack(Path(image.export("oci", "none").split(":")[1]), "latest", tmp_path / "rootfs")
    assert compare(snap, snapshot(other, exclude_root_mtime=True)) == []


@pytest.mark.realtools
def test_mislabeled_uncompressed_oci(
    standard_image: StandardImageFactory,  # noqa: F811
    builder: Builder,  # noqa: F811
    tmp_path: Path,
) -> None:
    image = standard_image("basic")
    ref = builder.export_mislabeled_uncompressed_oci(image.ref, tmp_path / "mislabeled")
    manifest = skopeo_inspect_raw(ref)
    layout = Path(ref.split(":")[1])
    assert {layer["mediaType"] for layer in manifest["layers"]} == {LAYER_MEDIA_TYPES["gzip"]}
    assert {blob_magic(layout_blob(layout, layer["digest"])) for layer in manifest["layers"]} == {"none"}


@pytest.mark.realtools
def test_multi_image_archives(standard_image: StandardImageFactory, builder: Builder, tmp_path: Path) -> None:  # noqa: F811
    basic = standard_image("basic")
    other = builder.build("second", "FROM scratch\nCOPY hello.txt /hello.txt\n", {"hello.txt": b"hi\n"})
    basic_diff_ids = basic.config()["rootfs"]["diff_ids"]
    other_diff_ids = builder.inspect_config(other)["rootfs"]["diff_ids"]
    assert len(other_diff_ids) == 1

    refs = builder.export_multi_tag_archive(
        [
            (basic.ref, "localhost/basic:v1"),
            (other, "localhost/second:v1"),
            (basic.ref, "localhost/basic:v2"),
        ],
        tmp_path / "two-images.tar",
    )
    archive = tmp_path / "two-images.tar"
    entries = json.loads(archive_member(archive, "manifest.json"))
    assert sorted(tuple(entry["RepoTags"]) for entry in entries) == [
        ("localhost/basic:v1", "localhost/basic:v2"),
        ("localhost/second:v1",),
    ]
    repositories = json.loads(archive_member(archive, "repositories"))
    assert set(repositories) == {"localhost/basic", "localhost/second"}
    expected = [basic_diff_ids, other_diff_ids, basic_diff_ids]
    assert [skopeo_inspect_config(ref)["rootfs"]["diff_ids"] for ref in refs] == expected
    with tarfile.open(archive) as tf:
        names = tf.getnames()
    assert len(names) == len(set(names))

    one_image = builder.export_multi_tag_archive(
        [(basic.ref, "localhost/basic:a"), (basic.ref, "localhost/basic:b")], tmp_path / "one-image.tar"
    )
    entries = json.loads(archive_member(tmp_path / "one-image.tar", "manifest.json"))
    assert [entry["RepoTags"] for entry in entries] == [["localhost/basic:a", "localhost/basic:b"]]
    assert skopeo_inspect_config(one_image[1])["rootfs"]["diff_ids"] == basic_diff_ids

    layout = tmp_path / "two-refs"
    oci_refs = builder.export_multi_ref_oci([(basic.ref, "basic"), (other, "second")], layout)
    assert oci_refs == [f"oci:{layout}:basic", f"oci:{layout}:second"]
    index = json.loads((layout / "index.json").read_text())
    names_in_index = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert names_in_index == ["basic", "second"]
    assert [skopeo_inspect_config(ref)["rootfs"]["diff_ids"] for ref in oci_refs] == expected[:2]


@pytest.mark.realtools
def test_platform_index(platform_index: PlatformIndex) -> None:  # noqa: F811
    for ref in (platform_index.oci_ref, platform_index.oci_archive_ref):
        index = skopeo_inspect_raw(ref)
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        platforms = [f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]]
        assert platforms == list(platform_index.platforms) == ["linux/amd64", "linux/arm64"]
    layout = Path(platform_index.oci_ref.split(":")[1])
    for descriptor in skopeo_inspect_raw(platform_index.oci_ref)["manifests"]:
        manifest: dict[str, Any] = json.loads(layout_blob(layout, descriptor["digest"]))
        config = json.loads(layout_blob(layout, manifest["config"]["digest"]))
        platform = f"{config['os']}/{config['architecture']}"
        assert platform == f"{descriptor['platform']['os']}/{descriptor['platform']['architecture']}"
        contents = {}
        for layer in manifest["layers"]:
            with tarfile.open(
                layout / "blobs" / "sha256" / layer["digest"].removeprefix("sha256:"), "r:*"
            ) as tf:
                for member in tf:
                    extracted = tf.extractfile(member)
                    if extracted is not None:
                        contents["/" + member.name] = extracted.read()
        assert contents == platform_index.files[platform]


# --------------------------------------------------------------------------------------------------------
# The standard scenarios end up as documented


@pytest.mark.realtools
def test_whiteouts_scenario(standard_image: StandardImageFactory) -> None:  # noqa: F811
    image = standard_image("whiteouts")
    snap = snapshot(image.reference_rootfs(), exclude_root_mtime=True)
    w = {path: node for path, node in snap.items() if path.startswith(b"w/")}
    assert sorted(w) == [
        b"w/back.txt",
        b"w/dir2file",
        b"w/dir2link",
        b"w/file2dir",
        b"w/file2dir/inside.txt",
        b"w/keep.txt",
        b"w/link2file",
        b"w/opaque",
        b"w/opaque/new.txt",
    ]
    for path, data in {
        b"w/back.txt": b"back v2\n",
        b"w/dir2file": b"now a file\n",
        b"w/file2dir/inside.txt": b"inside\n",
        b"w/keep.txt": b"keep\n",
        b"w/link2file": b"link became file\n",
        b"w/opaque/new.txt": b"new\n",
    }.items():
        assert_content(snap, path, data)
    assert snap[b"w/dir2link"].link == b"keep.txt"
    layers = layer_entries(image)
    assert len(layers) == BASE_LAYER_COUNT + 3
    assert {
        "w/.wh.gone.txt",
        "w/.wh.back.txt",
        "w/.wh.tree",
        "w/opaque/.wh.old1.txt",
        "w/opaque/.wh.sub",
    } <= set(layers[3])


@pytest.mark.realtools
def test_overlay_builder_writes_opaque_markers(overlay_builder: Builder) -> None:  # noqa: F811
    image = overlay_builder.standard_image("whiteouts")
    layers = layer_entries(image)
    assert "w/opaque/.wh..wh..opq" in layers[3]
    snap = snapshot(image.reference_rootfs(), exclude_root_mtime=True)
    assert sorted(p for p in snap if p.startswith(b"w/opaque")) == [b"w/opaque", b"w/opaque/new.txt"]


@pytest.mark.realtools
def test_links_scenario(standard_image: StandardImageFactory) -> None:  # noqa: F811
    image = standard_image("links")
    rootfs = image.reference_rootfs()
    snap = snapshot(rootfs)
    assert_content(snap, b"l/orig.txt", b"replaced\n")
    for path in (b"l/hard1", b"l/sub/hard2", b"l/cross"):
        assert_content(snap, path, b"original\n")
    # A hardlink made in a later layer reaches the layer tar as a plain file (its partner is not in it).
    assert hardlink_groups(rootfs) == {
        frozenset({b"l/hard1", b"l/sub/hard2"}),
        frozenset({b"l/pair-a", b"l/pair-b"}),
    }


@pytest.mark.realtools
def test_metadata_scenario(standard_image: StandardImageFactory) -> None:  # noqa: F811
    image = standard_image("metadata")
    snap = snapshot(image.reference_rootfs(), exclude_root_mtime=True)
    expected = {
        b"m/chmod.txt": ("file", 0o640, 0, 0),
        b"m/chown.txt": ("file", 0o644, 1234, 5678),
        b"m/touch.txt": ("file", 0o644, 0, 0),
        b"m/suid": ("file", 0o4755, 0, 0),
        b"m/sgid": ("file", 0o2755, 0, 0),
        b"m/sticky": ("dir", 0o1777, 0, 0),
        b"m/sgiddir": ("dir", 0o2775, 1234, 5678),
        b"m/link": ("symlink", 0o777, 4321, 8765),
        b"m/fifo": ("fifo", 0o644, 0, 0),
        b"m/xattr.txt": ("file", 0o640, 0, 0),
    }
    for path, (kind, mode, uid, gid) in expected.items():
        node = snap[path]
        assert (node.type, node.mode, node.uid, node.gid) == (kind, mode, uid, gid), path
    for path in (b"m/touch.txt", b"m/dir", b"m/dir/fixed.txt", b"m/xattr.txt"):
        assert snap[path].mtime_ns == FIXED_NS, path
    assert snap[b"m/xattr.txt"].xattrs == (
        ("user.imgtool.binary", b"\x00\x01\xfe\xff"),
        ("user.imgtool.text", b"hello"),
    )
    layers = layer_entries(image)
    assert len(layers) == BASE_LAYER_COUNT + 6
    assert layers[3] == ["m", "m/chmod.txt"]
    assert layers[4] == ["m", "m/chown.txt"]
    assert layers[5] == ["m", "m/touch.txt"]


@pytest.mark.realtools
def test_names_scenario(standard_image: StandardImageFactory) -> None:  # noqa: F811
    snap = snapshot(standard_image("names").reference_rootfs())
    long_name = b"n/long-" + b"x" * 145
    deep = b"n/" + b"/".join(c * 100 for c in (b"a", b"b", b"c")) + b"/" + b"d" * 100 + b".txt"
    assert len(deep) > 255
    for path, data in {
        long_name: b"long\n",
        deep: b"deep\n",
        "n/café.txt".encode(): b"cafe\n",
        "n/日本語/ファイル.txt".encode(): b"nihongo\n",
        "n/😀 smile.txt".encode(): b"emoji\n",
        b"n/dir with spaces/ leading and trailing ": b"spaces\n",
        b"n/latin1-caf\xe9.txt": b"latin1\n",
    }.items():
        assert_content(snap, path, data)
    assert snap[b"n/link-to-long"].link == long_name.removeprefix(b"n/")


@pytest.mark.realtools
def test_history_scenario(standard_image: StandardImageFactory) -> None:  # noqa: F811
    image = standard_image("history")
    config = image.config()
    assert len(config["rootfs"]["diff_ids"]) == BASE_LAYER_COUNT + 7
    assert [bool(entry.get("empty_layer")) for entry in config["history"]].count(True) == 1
    assert config["history"][4]["empty_layer"] is True
    layers = layer_entries(image)
    assert "app/config.txt" in layers[2]
    assert "app/config.txt" in layers[3]
    assert layers[4] == ["app", "app/config.txt"]
    assert "app/.wh.config.txt" in layers[5]
    assert "app/config.txt" in layers[6]
    assert {"app/cache/.wh.keep.txt", "app/cache/.wh.old", "app/cache/new.txt"} <= set(layers[7])
    assert {"app/thing", "app/thing/inner.txt"} <= set(layers[8])
    snap = snapshot(image.reference_rootfs())
    assert_content(snap, b"app/config.txt", b"v3\n")
    assert snap[b"app/config.txt"].mode == 0o644
    assert sorted(p for p in snap if p.startswith(b"app/")) == [
        b"app/cache",
        b"app/cache/new.txt",
        b"app/config.txt",
        b"app/thing",
        b"app/thing/inner.txt",
    ]


@pytest.mark.realtools
@pytest.mark.slow
def test_rewrite20_scenario(standard_image: StandardImageFactory) -> None:  # noqa: F811
    image = standard_image("rewrite20")
    assert len(image.config()["rootfs"]["diff_ids"]) == BASE_LAYER_COUNT + 22
    snap = snapshot(image.reference_rootfs())
    assert sorted(p for p in snap if p.startswith(b"r/")) == [b"r/counter.txt"]
    assert_content(snap, b"r/counter.txt", b"round 22\n")
    layers = layer_entries(image)
    assert "r/extra.txt" in layers[BASE_LAYER_COUNT + 7]
    assert "r/.wh.extra.txt" in layers[BASE_LAYER_COUNT + 14]


def test_standard_images_are_documented() -> None:
    assert set(STANDARD_IMAGES) == {
        "basic",
        "whiteouts",
        "links",
        "metadata",
        "names",
        "rewrite20",
        "history",
    }
    for text in STANDARD_IMAGES.values():
        assert text.startswith("FROM scratch\nCOPY busybox /bin/busybox\n")
