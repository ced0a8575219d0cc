"""The image factory writes what it claims: checked with tarfile and json, then with skopeo and umoci."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.imagefactory import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MISSING,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    TAMPERED,
    BlockDev,
    CharDev,
    Compression,
    Dir,
    Entry,
    ExactTarInfo,
    Fault,
    Fifo,
    File,
    Hardlink,
    ImageSpec,
    IndexSpec,
    Layer,
    LoopTo,
    Member,
    Opaque,
    OverlayOpaque,
    OverlayWhiteout,
    Platform,
    Raw,
    RawBytes,
    RawDescriptor,
    Symlink,
    Whiteout,
    compress,
    make_layer,
    sha256_digest,
    tamper,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout,
)

Json = dict[str, Any]

SKOPEO = shutil.which("skopeo")
UMOCI = shutil.which("umoci")
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed (apt-get install skopeo)")
needs_umoci = pytest.mark.skipif(UMOCI is None, reason="umoci is not installed (apt-get install umoci)")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def read_tar(data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    out: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape") as tf:
        for info in tf:
            handle = tf.extractfile(info) if info.isreg() else None
            out.append((info, handle.read() if handle is not None else b""))
    return out


def names(data: bytes) -> list[str]:
    return [info.name for info, _ in read_tar(data)]


def loads(data: bytes) -> Json:
    value = json.loads(data)
    assert isinstance(value, dict)
    return value


def blob(root: Path, digest: str) -> bytes:
    algorithm, _, encoded = digest.partition(":")
    return (root / "blobs" / algorithm / encoded).read_bytes()


def check_descriptor(root: Path, descriptor: Json) -> bytes:
    data = blob(root, descriptor["digest"])
    assert sha256_digest(data) == descriptor["digest"]
    assert len(data) == descriptor["size"]
    return data


def walk_layout(root: Path) -> list[Json]:
    """Follow every descriptor from index.json, checking digest and size; return the image manifests."""
    assert loads((root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    manifests: list[Json] = []
    pending = list(loads((root / "index.json").read_bytes())["manifests"])
    while pending:
        descriptor = pending.pop(0)
        data = check_descriptor(root, descriptor)
        doc = loads(data)
        if descriptor["mediaType"] in (OCI_INDEX, DOCKER_LIST):
            assert doc["mediaType"] == descriptor["mediaType"]
            pending.extend(doc["manifests"])
            continue
        assert doc["mediaType"] == descriptor["mediaType"]
        manifests.append(doc)
        check_descriptor(root, doc["config"])
        for layer in doc["layers"]:
            check_descriptor(root, layer)
    return manifests


def decompress(data: bytes, method: Compression) -> bytes:
    if method == "gzip":
        return gzip.decompress(data)
    if method == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return data


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def skopeo(*args: str) -> str:
    assert SKOPEO is not None
    return run(SKOPEO, "--insecure-policy", *args)


def skopeo_bytes(*args: str) -> bytes:
    assert SKOPEO is not None
    done = subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def skopeo_fails(*args: str) -> str:
    assert SKOPEO is not None
    done = subprocess.run(
        [SKOPEO, "--insecure-policy", *args], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode != 0, f"skopeo {' '.join(args)} unexpectedly succeeded"
    return done.stderr


LAYER_BASE = make_layer(
    [
        Dir("etc/"),
        File("etc/a", b"alpha\n"),
        File("etc/b", b"beta\n"),
        Dir("opt/"),
        Dir("opt/x/"),
        File("opt/x/old", b"old\n"),
        File("opt/x/keep-not", b"gone\n"),
    ]
)
LAYER_DELETE = make_layer([Whiteout("etc/a"), Opaque("opt/x/"), File("opt/x/new", b"new\n")])
LAYER_ADD = make_layer(
    [
        File("etc/c", b"gamma\n", mode=0o600, uid=1000, gid=1000),
        Symlink("etc/link", "b"),
        Hardlink("etc/hard", "etc/c"),
    ]
)


def three_layer_image(compression: Compression = "gzip", **kwargs: Any) -> ImageSpec:
    return ImageSpec(
        layers=[LAYER_BASE, LAYER_DELETE, LAYER_ADD],
        compression=compression,
        created_by=["ADD base", "RUN rm /etc/a", "COPY c /etc/c"],
        empty_history={1: ["ENV A=1"], 3: ['CMD ["sh"]']},
        env=["PATH=/bin", "A=1"],
        cmd=["sh"],
        entrypoint=["/bin/entry"],
        working_dir="/opt",
        labels={"org.example": "yes"},
        **kwargs,
    )


# ---------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------


def test_members_are_written_exactly() -> None:
    long_name = "d/" + "n" * 250
    members: list[Member] = [
        Dir("etc/", mode=0o750, uid=1, gid=2, mtime=5),
        Dir("nodirslash"),
        File("./dot", b"x"),
        File("/abs", b"y"),
        File("../up", b"z"),
        File(b"bad-\xff-name", b"w"),
        File(long_name, b"long"),
        File("xattr", b"v", xattrs={"user.k": b"val", "security.capability": b"\x01\x00\xff"}),
        Symlink("sl", "../../target"),
        Hardlink("hl", "./dot"),
        CharDev("cdev", 1, 3),
        BlockDev("bdev", 8, 1),
        Fifo("fifo", mode=0o600),
    ]
    layer = make_layer(members)
    assert layer[:5] == b"etc/\0" and layer[512:523] == b"nodirslash\0"
    entries = {info.name: (info, data) for info, data in read_tar(layer)}
    assert list(entries) == [
        "etc",
        "nodirslash",
        "./dot",
        "/abs",
        "../up",
        "bad-\udcff-name",
        long_name,
        "xattr",
        "sl",
        "hl",
        "cdev",
        "bdev",
        "fifo",
    ]
    etc = entries["etc"][0]
    assert (etc.isdir(), etc.mode, etc.uid, etc.gid, etc.mtime, etc.uname, etc.gname) == (
        True,
        0o750,
        1,
        2,
        5,
        "",
        "",
    )
    assert entries["nodirslash"][0].isdir()
    assert entries["bad-\udcff-name"][1] == b"w"
    assert entries[long_name][1] == b"long"
    xattr = entries["xattr"][0]
    assert xattr.pax_headers["SCHILY.xattr.user.k"] == "val"
    assert xattr.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == (
        b"\x01\x00\xff"
    )
    assert entries["sl"][0].issym() and entries["sl"][0].linkname == "../../target"
    assert entries["hl"][0].islnk() and entries["hl"][0].linkname == "./dot"
    cdev, bdev = entries["cdev"][0], entries["bdev"][0]
    assert cdev.ischr() and (cdev.devmajor, cdev.devminor, cdev.mode) == (1, 3, 0o666)
    assert bdev.isblk() and (bdev.devmajor, bdev.devminor) == (8, 1)
    assert entries["fifo"][0].isfifo() and entries["fifo"][0].mode == 0o600
    assert entries["./dot"][0].mtime == 1_600_000_000


def test_non_utf8_name_bytes_are_in_the_archive() -> None:
    data = make_layer([File(b"caf\xe9", b"")])
    assert b"path=caf\xe9\n" in data
    assert b"hdrcharset=BINARY" in data
    assert b"caf\xe9" in make_layer([File(b"caf\xe9", b"")], format=tarfile.GNU_FORMAT)


def test_whiteout_and_opaque_markers() -> None:
    layer = make_layer(
        [
            Whiteout("a/b"),
            Whiteout("top"),
            Whiteout("/abs/dir/"),
            Opaque("a/"),
            Opaque("c"),
            OverlayWhiteout("gone"),
            OverlayOpaque("dir/"),
        ]
    )
    entries = read_tar(layer)
    assert [info.name for info, _ in entries] == [
        "a/.wh.b",
        ".wh.top",
        "/abs/.wh.dir",
        "a/.wh..wh..opq",
        "c/.wh..wh..opq",
        "gone",
        "dir",
    ]
    assert all(info.isreg() and info.size == 0 for info, _ in entries[:5])
    overlay_whiteout = entries[5][0]
    assert overlay_whiteout.ischr() and (overlay_whiteout.devmajor, overlay_whiteout.devminor) == (0, 0)
    overlay_opaque = entries[6][0]
    assert overlay_opaque.isdir() and overlay_opaque.pax_headers["SCHILY.xattr.trusted.overlay.opaque"] == "y"


def test_end_blocks_and_padding() -> None:
    members: list[Member] = [File("a", b"1" * 700), File("b", b"22")]
    full = make_layer(members)
    assert len(full) % tarfile.RECORDSIZE == 0
    go_style = make_layer(members, record_size=512)
    assert len(go_style) == 512 + 1024 + 512 + 512 + 1024
    no_end = make_layer(members, end_blocks=False)
    assert len(no_end) == 512 + 1024 + 512 + 512
    assert full.startswith(no_end) and not any(full[len(no_end) :])
    unpadded = make_layer(members, end_blocks=False, pad_last=False)
    assert len(unpadded) == 512 + 1024 + 512 + 2
    assert no_end.startswith(unpadded)
    for data in (full, go_style, no_end):
        assert [(info.name, content) for info, content in read_tar(data)] == [("a", b"1" * 700), ("b", b"22")]
    assert unpadded.endswith(b"22")
    with pytest.raises(tarfile.ReadError, match="unexpected end of data"):
        read_tar(unpadded)
    assert make_layer([], end_blocks=False) == b""


def test_formats_and_raw_members() -> None:
    long_name = "x" * 150
    gnu = make_layer([File(long_name, b"")], format=tarfile.GNU_FORMAT)
    assert b"././@LongLink" in gnu and names(gnu) == [long_name]
    assert names(make_layer([File("short", b"")], format=tarfile.USTAR_FORMAT)) == ["short"]
    with pytest.raises(ValueError, match="PAX"):
        make_layer([File("a", xattrs={"user.a": "b"})], format=tarfile.GNU_FORMAT)

    lying = ExactTarInfo("dir-no-slash")
    lying.type = tarfile.DIRTYPE
    claim = tarfile.TarInfo("claims-10")
    claim.size = 10
    data = make_layer([Raw(lying), Raw(claim, b"0123456789"), RawBytes(b"\0" * 512)], end_blocks=False)
    assert data[:12] == b"dir-no-slash" and data[12] == 0
    assert len(data) == 512 + 512 + 512 + 512
    assert names(data) == ["dir-no-slash", "claims-10"]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(
                st.characters(exclude_characters="/\0", exclude_categories=["Cs"]), min_size=1, max_size=120
            ),
            st.binary(max_size=1500),
        ),
        max_size=6,
        unique_by=lambda item: item[0],
    )
)
def test_files_round_trip_through_tarfile(files: list[tuple[str, bytes]]) -> None:
    members: list[Member] = [File(name, data) for name, data in files]
    first = make_layer(members)
    assert first == make_layer(members)
    assert [(info.name, data) for info, data in read_tar(first)] == files


def test_compress_is_deterministic() -> None:
    data = make_layer([File("a", b"x" * 5000)])
    for method in ("none", "gzip", "zstd"):
        packed = compress(data, method)
        assert packed == compress(data, method)
        assert decompress(packed, method) == data
    packed = compress(data, "gzip")
    assert packed[:2] == b"\x1f\x8b" and packed[4:8] == b"\0\0\0\0"
    assert compress(data, "zstd")[:4] == b"\x28\xb5\x2f\xfd"


def test_tamper_keeps_size_and_readability() -> None:
    tar = make_layer([File("a", b"payload")])
    packed = compress(tar, "gzip")
    changed = tamper(packed)
    assert len(changed) == len(packed) and changed != packed and gzip.decompress(changed) == tar
    changed_tar = tamper(tar)
    assert len(changed_tar) == len(tar) and changed_tar != tar and names(changed_tar) == ["a"]
    doc = b'{"a":1,"b":{"c":2}}'
    assert loads(tamper(doc)) == loads(doc) and len(tamper(doc)) == len(doc) and tamper(doc) != doc
    assert tamper(b"x") != b"x" and len(tamper(b"x")) == 1
    assert tamper(b"") == b"\x01"


# ---------------------------------------------------------------------------------------------
# image specs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_image_spec_builds_consistent_documents(compression: Compression) -> None:
    spec = three_layer_image(compression, variant="v2", architecture="arm64")
    built = spec.build()
    manifest = loads(built.manifest)
    config = loads(built.config)
    assert built.manifest_digest == sha256_digest(built.manifest)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"] == {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": sha256_digest(built.config),
        "size": len(built.config),
    }
    suffix = {"none": "", "gzip": "+gzip", "zstd": "+zstd"}[compression]
    for descriptor, layer_blob, tar in zip(
        manifest["layers"], built.layer_blobs, [LAYER_BASE, LAYER_DELETE, LAYER_ADD], strict=True
    ):
        assert descriptor == {
            "mediaType": "application/vnd.oci.image.layer.v1.tar" + suffix,
            "digest": sha256_digest(layer_blob),
            "size": len(layer_blob),
        }
        assert decompress(layer_blob, compression) == tar
    diff_ids = [sha256_digest(tar) for tar in (LAYER_BASE, LAYER_DELETE, LAYER_ADD)]
    assert built.diff_ids == spec.diff_ids() == config["rootfs"]["diff_ids"] == diff_ids
    assert config["rootfs"]["type"] == "layers"
    assert (config["architecture"], config["os"], config["variant"]) == ("arm64", "linux", "v2")
    assert config["config"] == {
        "Env": ["PATH=/bin", "A=1"],
        "Entrypoint": ["/bin/entry"],
        "Cmd": ["sh"],
        "WorkingDir": "/opt",
        "Labels": {"org.example": "yes"},
    }
    assert [(h["created_by"], h.get("empty_layer", False)) for h in config["history"]] == [
        ("ADD base", False),
        ("ENV A=1", True),
        ("RUN rm /etc/a", False),
        ("COPY c /etc/c", False),
        ('CMD ["sh"]', True),
    ]
    assert set(built.blobs) == {built.manifest_digest, built.config_digest, *built.layer_digests}
    assert spec.manifest_json() == built.manifest and spec.config_json() == built.config
    assert spec.build() == built


def test_docker_media_types_and_per_layer_compression() -> None:
    spec = ImageSpec(
        layers=[LAYER_BASE, Layer(LAYER_ADD, compression="none")],
        media="docker",
        compression=["zstd", "gzip"],
    )
    manifest = loads(spec.build().manifest)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert list(manifest["config"]) == ["mediaType", "size", "digest"]
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.docker.image.rootfs.diff.tar.zstd",
        "application/vnd.docker.image.rootfs.diff.tar",
    ]


def test_hooks_and_overrides() -> None:
    def drop_os(config: Json) -> None:
        del config["os"]

    def annotate(manifest: Json) -> None:
        manifest["annotations"] = {"k": "v"}

    built = ImageSpec(
        [LAYER_BASE],
        edit_config=drop_os,
        edit_manifest=annotate,
        history=[{"created_by": "only"}],
        created=None,
        env=None,
    ).build()
    config = loads(built.config)
    assert "os" not in config and "created" not in config and config["config"] == {}
    assert config["history"] == [{"created_by": "only"}]
    assert loads(built.manifest)["annotations"] == {"k": "v"}
    raw = ImageSpec([LAYER_BASE], raw_config=b"not json").build()
    assert raw.config == b"not json" and raw.config_digest == sha256_digest(b"not json")


def test_layer_faults() -> None:
    truncated = Layer(LAYER_BASE, postprocess=lambda data: data[: len(data) // 2])
    foreign = Layer(make_layer([File("foreign", b"f")]), urls=["https://example.invalid/layer"])
    spec = ImageSpec(
        [
            truncated,
            Layer(LAYER_DELETE, fault=MISSING),
            Layer(LAYER_ADD, fault=TAMPERED),
            Layer(LAYER_BASE, compression="none", fault=Fault(size_delta=3)),
            Layer(
                LAYER_BASE,
                media_type="application/x-unknown",
                compression="none",
                diff_id="sha256:" + "0" * 64,
            ),
            foreign,
        ]
    )
    built = spec.build()
    manifest = loads(built.manifest)
    layers = manifest["layers"]
    cut = built.layer_blobs[0]
    assert layers[0]["digest"] == sha256_digest(cut) and built.blobs[layers[0]["digest"]] == cut
    with pytest.raises(EOFError):
        gzip.decompress(cut)
    assert layers[1]["digest"] not in built.blobs
    stored = built.blobs[layers[2]["digest"]]
    assert sha256_digest(stored) != layers[2]["digest"] and len(stored) == layers[2]["size"]
    assert gzip.decompress(stored) == LAYER_ADD
    assert layers[3]["size"] == len(LAYER_BASE) + 3
    assert layers[4]["mediaType"] == "application/x-unknown"
    assert loads(built.config)["rootfs"]["diff_ids"][4] == "sha256:" + "0" * 64
    assert layers[5]["mediaType"] == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    assert layers[5]["urls"] == ["https://example.invalid/layer"]
    assert layers[5]["digest"] not in built.blobs


# ---------------------------------------------------------------------------------------------
# OCI layouts and archives
# ---------------------------------------------------------------------------------------------


def test_oci_layout_gzip_three_layers(tmp_path: Path) -> None:
    spec = three_layer_image("gzip")
    result = write_oci_layout(tmp_path / "layout", [Entry(spec, ref="v1")])
    root = tmp_path / "layout"
    index = loads((root / "index.json").read_bytes())
    assert index["mediaType"] == OCI_INDEX and index["schemaVersion"] == 2
    assert index["manifests"] == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": result.image.manifest_digest,
            "size": len(result.image.manifest),
            "annotations": {REF_NAME: "v1"},
        }
    ]
    manifests = walk_layout(root)
    assert len(manifests) == 1
    assert result.reference("v1") == f"oci:{root}:v1" and result.references == [f"oci:{root}:v1"]
    assert sorted(p.name for p in (root / "blobs" / "sha256").iterdir()) == sorted(
        d.partition(":")[2] for d in result.blobs
    )
    layers = [gzip.decompress(blob(root, d["digest"])) for d in manifests[0]["layers"]]
    assert names(layers[1]) == ["etc/.wh.a", "opt/x/.wh..wh..opq", "opt/x/new"]


def test_nested_two_platform_index_with_attestations(tmp_path: Path) -> None:
    amd64 = three_layer_image()
    arm64 = ImageSpec([LAYER_BASE], architecture="arm64", variant="v8")
    multi = IndexSpec([amd64, arm64], attestations=True, annotations={"org.example.multi": "1"})
    result = write_oci_layout(tmp_path / "l", [Entry(multi, ref="multi"), Entry(amd64, ref="amd64")])
    root = tmp_path / "l"
    manifests = walk_layout(root)
    assert len(manifests) == 5
    top = loads((root / "index.json").read_bytes())["manifests"]
    assert top[0]["mediaType"] == OCI_INDEX and "platform" not in top[0]
    nested = loads(blob(root, top[0]["digest"]))
    assert nested["annotations"] == {"org.example.multi": "1"}
    entries = nested["manifests"]
    assert [e.get("platform") for e in entries] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
        {"architecture": "unknown", "os": "unknown"},
        {"architecture": "unknown", "os": "unknown"},
    ]
    assert entries[2]["annotations"] == {
        "vnd.docker.reference.digest": entries[0]["digest"],
        "vnd.docker.reference.type": "attestation-manifest",
    }
    attestation = loads(blob(root, entries[2]["digest"]))
    assert attestation["layers"][0]["mediaType"] == "application/vnd.in-toto+json"
    assert [image.platform for image in result.images] == [
        Platform("linux", "amd64"),
        Platform("linux", "arm64", "v8"),
        Platform("linux", "amd64"),
    ]
    assert len(result.attestations) == 2 and len(result.indexes) == 1
    assert result.refs == ["multi", "amd64"]


def test_deeper_nesting_docker_list_and_explicit_platforms(tmp_path: Path) -> None:
    inner = IndexSpec([ImageSpec([LAYER_BASE], media="docker")], media_type=DOCKER_LIST)
    outer = IndexSpec(
        [
            Entry(inner, platform=Platform("linux", "amd64")),
            Entry(ImageSpec([LAYER_ADD]), platform=None, annotations={"a": "b"}),
        ]
    )
    write_oci_layout(tmp_path / "l", IndexSpec([outer], media_type=None))
    root = tmp_path / "l"
    assert "mediaType" not in loads((root / "index.json").read_bytes())
    assert len(walk_layout(root)) == 2
    outer_doc = loads(blob(root, loads((root / "index.json").read_bytes())["manifests"][0]["digest"]))
    assert outer_doc["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}
    assert outer_doc["manifests"][0]["mediaType"] == DOCKER_LIST
    assert "platform" not in outer_doc["manifests"][1]
    assert outer_doc["manifests"][1]["annotations"] == {"a": "b"}
    inner_doc = loads(blob(root, outer_doc["manifests"][0]["digest"]))
    assert inner_doc["manifests"][0]["mediaType"] == DOCKER_MANIFEST


def follow(root: Path, digest: str, hops: int) -> list[str]:
    seen = [digest]
    for _ in range(hops):
        doc = loads(blob(root, seen[-1]))
        seen.append(next(d["digest"] for d in doc["manifests"] if d["mediaType"] == OCI_INDEX))
    return seen


def test_self_loop_and_two_step_loop(tmp_path: Path) -> None:
    image = ImageSpec([LAYER_BASE])
    self_loop = write_oci_layout(tmp_path / "self", [IndexSpec([LoopTo("a"), image], name="a")])
    root = tmp_path / "self"
    start = self_loop.descriptors[0]
    chain = follow(root, start["digest"], 3)
    assert len(set(chain)) == 1
    assert start["size"] == len(blob(root, start["digest"]))
    assert sha256_digest(blob(root, start["digest"])) != start["digest"]
    assert self_loop.indexes[0].looped

    a_b_a = IndexSpec([IndexSpec([LoopTo("a")], name="b"), image], name="a")
    two = write_oci_layout(tmp_path / "two", [a_b_a])
    root = tmp_path / "two"
    chain = follow(root, two.descriptors[0]["digest"], 4)
    assert chain[0] == chain[2] == chain[4] and chain[1] == chain[3] and chain[0] != chain[1]
    inner = loads(blob(root, chain[0]))["manifests"][0]
    assert inner["size"] == len(blob(root, chain[1])) and sha256_digest(blob(root, chain[1])) == chain[1]
    looped = loads(blob(root, chain[1]))["manifests"][0]
    assert looped["size"] == len(blob(root, chain[0]))

    shared = write_oci_layout(tmp_path / "shared", [IndexSpec([image], name="s"), LoopTo("s")])
    assert shared.descriptors[0] == shared.descriptors[1] and not shared.indexes[0].looped
    with pytest.raises(ValueError, match="names no"):
        write_oci_layout(tmp_path / "bad", [LoopTo("nowhere")])


def test_descriptor_faults_and_mutate_blobs(tmp_path: Path) -> None:
    base = ImageSpec([LAYER_BASE])
    missing_manifest = ImageSpec([LAYER_ADD], fault=MISSING)
    wrong_size = ImageSpec([LAYER_DELETE], fault=Fault(size_delta=-1))
    tampered_config = ImageSpec([LAYER_BASE], env=["X=1"], config_fault=TAMPERED)
    dropped = base.build().layer_digests[0]

    def mutate(blobs: dict[str, bytes]) -> None:
        del blobs[dropped]
        blobs["sha256:" + "f" * 64] = b"extra"

    result = write_oci_layout(
        tmp_path / "l",
        [
            Entry(base, ref="base"),
            missing_manifest,
            wrong_size,
            tampered_config,
            Entry(base, extra={"size": 1, "annotations": None, "urls": ["u"]}, ref="dropped-anno"),
            RawDescriptor({"mediaType": "application/x-odd", "digest": "sha512:abc", "size": 3}, b"odd"),
            ImageSpec([LAYER_BASE], fault=Fault(digest="sha256:../../escape")),
        ],
        mutate_blobs=mutate,
        extra_files={"blobs/sha256/junk": b"not a digest"},
    )
    root = tmp_path / "l"
    top = result.descriptors
    assert not (root / "blobs/sha256" / dropped.partition(":")[2]).exists()
    assert (root / "blobs/sha256" / ("f" * 64)).read_bytes() == b"extra"
    assert not (root / "blobs/sha256" / top[1]["digest"].partition(":")[2]).exists()
    assert top[2]["size"] == len(blob(root, top[2]["digest"])) - 1
    config_descriptor = loads(blob(root, top[3]["digest"]))["config"]
    stored = blob(root, config_descriptor["digest"])
    assert sha256_digest(stored) != config_descriptor["digest"]
    assert loads(stored)["config"] == {"Env": ["X=1"]}
    assert top[4]["size"] == 1 and top[4]["urls"] == ["u"] and "annotations" not in top[4]
    assert top[5]["digest"] == "sha512:abc" and (root / "blobs/sha512/abc").read_bytes() == b"odd"
    assert top[6]["digest"] == "sha256:../../escape"
    assert not (tmp_path / "escape").exists()
    assert (root / "blobs/sha256/junk").read_bytes() == b"not a digest"
    assert result.refs == ["base"]


def test_layout_without_oci_layout_file(tmp_path: Path) -> None:
    write_oci_layout(tmp_path / "l", [ImageSpec()], layout=None, extra_files={"index.json": b"{"})
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == ["blobs", "index.json"]
    assert (tmp_path / "l" / "index.json").read_bytes() == b"{"


def outer_tar(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return decompress(data, "zstd")
    return data


@pytest.mark.parametrize("outer", ["none", "gzip", "zstd"])
def test_oci_archive_matches_layout(tmp_path: Path, outer: Compression) -> None:
    entries = [Entry(three_layer_image(), ref="v1")]
    layout = write_oci_layout(tmp_path / "dir", entries)
    archive = write_oci_archive(tmp_path / "a.tar", entries, outer=outer)
    assert archive.reference("v1") == f"oci-archive:{tmp_path / 'a.tar'}:v1"
    contents = read_tar(outer_tar(tmp_path / "a.tar"))
    files = {info.name: data for info, data in contents if info.isreg()}
    assert [info.name for info, _ in contents][:2] == ["blobs", "blobs/sha256"]
    assert all(info.isdir() for info, _ in contents[:2])
    assert files == layout.files
    for name, data in layout.files.items():
        assert (tmp_path / "dir" / name).read_bytes() == data
    assert archive.blobs == layout.blobs


def test_outputs_are_deterministic(tmp_path: Path) -> None:
    def everything(directory: Path) -> dict[str, bytes]:
        directory.mkdir()
        image = three_layer_image("zstd")
        entries = [
            Entry(
                IndexSpec([image, ImageSpec([LAYER_BASE], architecture="arm64")], attestations=True), ref="m"
            )
        ]
        write_oci_layout(directory / "layout", entries)
        write_oci_archive(directory / "oci.tar.gz", entries, outer="gzip")
        for style in ("legacy", "skopeo", "docker25"):
            write_docker_archive(directory / f"{style}.tar", [(image, ["a:b"])], style=style)
        return {
            str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
        }

    assert everything(tmp_path / "one") == everything(tmp_path / "two")


def test_edit_members_adds_hostile_entries(tmp_path: Path) -> None:
    def hostile(members: list[Member]) -> list[Member]:
        return [Symlink("index.json", "/etc/passwd"), *members, File("../escape", b"x")]

    write_oci_archive(tmp_path / "a.tar", [ImageSpec()], edit_members=hostile)
    listed = names((tmp_path / "a.tar").read_bytes())
    assert listed[0] == "index.json" and listed[-1] == "../escape" and listed.count("index.json") == 2


# ---------------------------------------------------------------------------------------------
# docker archives
# ---------------------------------------------------------------------------------------------


def two_images() -> list[tuple[ImageSpec, list[str]]]:
    return [
        (three_layer_image(), ["app:1.0", "registry.example:5000/team/app:latest"]),
        (ImageSpec([LAYER_BASE], architecture="arm64", cmd=["true"]), ["tool:edge"]),
    ]


def test_docker_archive_legacy(tmp_path: Path) -> None:
    result = write_docker_archive(tmp_path / "d.tar", two_images(), style="legacy")
    contents = read_tar((tmp_path / "d.tar").read_bytes())
    files = {info.name: data for info, data in contents if info.isreg()}
    manifest = json.loads(files["manifest.json"])
    assert [item["RepoTags"] for item in manifest] == [
        ["app:1.0", "registry.example:5000/team/app:latest"],
        ["tool:edge"],
    ]
    for item, built in zip(manifest, result.images, strict=True):
        assert item["Config"] == built.config_digest.partition(":")[2] + ".json"
        assert files[item["Config"]] == built.config
        assert [sha256_digest(files[path]) for path in item["Layers"]] == built.diff_ids
        for path in item["Layers"]:
            layer_id = path.split("/")[0]
            assert path == f"{layer_id}/layer.tar" and files[f"{layer_id}/VERSION"] == b"1.0"
            assert loads(files[f"{layer_id}/json"])["id"] == layer_id
    top_ids = [item["Layers"][-1].split("/")[0] for item in manifest]
    assert json.loads(files["repositories"]) == {
        "app": {"1.0": top_ids[0]},
        "registry.example:5000/team/app": {"latest": top_ids[0]},
        "tool": {"edge": top_ids[1]},
    }
    assert all(info.isdir() for info, _ in contents if info.name.endswith("/"))
    assert result.reference("app:1.0") == f"docker-archive:{tmp_path / 'd.tar'}:app:1.0"
    assert result.reference_at(1) == f"docker-archive:{tmp_path / 'd.tar'}:@1"


def test_docker_archive_skopeo_style_symlinks(tmp_path: Path) -> None:
    result = write_docker_archive(tmp_path / "d.tar", two_images(), style="skopeo")
    contents = read_tar((tmp_path / "d.tar").read_bytes())
    assert not any(info.isdir() for info, _ in contents)
    files = {info.name: data for info, data in contents if info.isreg()}
    links = {info.name: info.linkname for info, _ in contents if info.issym()}
    manifest = json.loads(files["manifest.json"])
    first = manifest[0]["Layers"]
    assert first == [d.partition(":")[2] + ".tar" for d in result.images[0].diff_ids]
    assert len(links) == 4
    assert all(target.startswith("../") and target[3:] in files for target in links.values())
    assert all(name.endswith("/layer.tar") for name in links)
    assert not files["manifest.json"].endswith(b"\n")


def test_docker_archive_docker25(tmp_path: Path) -> None:
    result = write_docker_archive(tmp_path / "d.tar", two_images(), style="docker25")
    contents = read_tar((tmp_path / "d.tar").read_bytes())
    files = {info.name: data for info, data in contents if info.isreg()}
    manifest = json.loads(files["manifest.json"])
    assert manifest[0]["Config"] == "blobs/sha256/" + result.images[0].config_digest.partition(":")[2]
    assert manifest[0]["Layers"] == ["blobs/sha256/" + d.partition(":")[2] for d in result.images[0].diff_ids]
    index = loads(files["index.json"])
    assert [d["annotations"] for d in index["manifests"]] == [
        {"io.containerd.image.name": "docker.io/library/app:1.0", REF_NAME: "1.0"},
        {"io.containerd.image.name": "registry.example:5000/team/app:latest", REF_NAME: "latest"},
        {"io.containerd.image.name": "docker.io/library/tool:edge", REF_NAME: "edge"},
    ]
    layout = tmp_path / "unpacked"
    layout.mkdir()
    for name, data in files.items():
        (layout / name).parent.mkdir(parents=True, exist_ok=True)
        (layout / name).write_bytes(data)
    manifests = walk_layout(layout)
    assert {m["layers"][0]["mediaType"] for m in manifests} == {"application/vnd.oci.image.layer.v1.tar"}
    assert json.loads(files["repositories"])["app"]["1.0"] == result.images[0].diff_ids[-1].partition(":")[2]


def test_docker_archive_faults_and_hooks(tmp_path: Path) -> None:
    spec = ImageSpec([LAYER_BASE, Layer(LAYER_ADD, fault=MISSING)], config_fault=MISSING)

    def odd_manifest(items: list[Json]) -> None:
        items[0]["Layers"].append("../outside.tar")

    def add_file(files: dict[str, bytes]) -> None:
        files["extra/file"] = b"x"

    result = write_docker_archive(
        tmp_path / "d.tar.gz",
        [(spec, [])],
        style="skopeo",
        outer="gzip",
        edit_manifest_json=odd_manifest,
        mutate_files=add_file,
    )
    contents = read_tar(gzip.decompress((tmp_path / "d.tar.gz").read_bytes()))
    files = {info.name: data for info, data in contents if info.isreg()}
    manifest = json.loads(files["manifest.json"])
    assert manifest[0]["RepoTags"] is None and manifest[0]["Layers"][-1] == "../outside.tar"
    assert manifest[0]["Config"] not in files and "repositories" not in files and files["extra/file"] == b"x"
    assert manifest[0]["Layers"][0] in files and manifest[0]["Layers"][1] not in files
    dangling = [info.linkname for info, _ in contents if info.issym()]
    assert "../" + manifest[0]["Layers"][1] in dangling
    assert result.tags == [[]]


def test_docker_archive_keeps_compression_when_asked(tmp_path: Path) -> None:
    spec = ImageSpec([LAYER_BASE], compression="gzip")
    result = write_docker_archive(tmp_path / "d.tar", [(spec, ["a:b"])], layer_compression=None)
    files = {info.name: data for info, data in read_tar((tmp_path / "d.tar").read_bytes())}
    layer = files[json.loads(files["manifest.json"])[0]["Layers"][0]]
    assert gzip.decompress(layer) == LAYER_BASE and result.image.layer_digests[0] == sha256_digest(layer)


# ---------------------------------------------------------------------------------------------
# real tools
# ---------------------------------------------------------------------------------------------


def skopeo_agrees(reference: str, manifest: bytes | None, config: bytes, layer_digests: list[str]) -> None:
    if manifest is not None:
        assert skopeo_bytes("inspect", "--raw", reference) == manifest
    assert skopeo_bytes("inspect", "--config", "--raw", reference) == config
    report = json.loads(skopeo("inspect", reference))
    assert report["Layers"] == layer_digests
    if manifest is not None:
        assert report["Digest"] == sha256_digest(manifest)


@pytest.mark.realtools
@needs_skopeo
@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_skopeo_accepts_oci_layout(tmp_path: Path, compression: Compression) -> None:
    result = write_oci_layout(tmp_path / "l", [Entry(three_layer_image(compression), ref="v1")])
    image = result.image
    skopeo_agrees(result.reference("v1"), image.manifest, image.config, image.layer_digests)
    skopeo("copy", "--quiet", result.reference("v1"), f"dir:{tmp_path / 'copy'}")
    for digest in [image.config_digest, *image.layer_digests]:
        assert (tmp_path / "copy" / digest.partition(":")[2]).read_bytes() == result.blobs[digest]


@pytest.mark.realtools
@needs_skopeo
def test_skopeo_picks_platforms_from_nested_index(tmp_path: Path) -> None:
    amd64 = three_layer_image()
    arm64 = ImageSpec([LAYER_BASE], architecture="arm64", variant="v8")
    result = write_oci_layout(tmp_path / "l", [Entry(IndexSpec([amd64, arm64], attestations=True), ref="m")])
    reference = result.reference("m")
    assert skopeo_bytes("inspect", "--raw", reference) == result.indexes[0].content
    amd, arm = result.images
    assert skopeo_bytes("--override-arch", "amd64", "inspect", "--config", "--raw", reference) == amd.config
    arm_config = skopeo_bytes(
        "--override-arch", "arm64", "--override-variant", "v8", "inspect", "--config", "--raw", reference
    )
    assert arm_config == arm.config
    skopeo("copy", "--quiet", "--all", reference, f"oci:{tmp_path / 'copy'}:m")
    assert skopeo_bytes("inspect", "--raw", f"oci:{tmp_path / 'copy'}:m") == result.indexes[0].content


@pytest.mark.realtools
@needs_skopeo
@pytest.mark.parametrize("outer", ["none", "gzip", "zstd"])
def test_skopeo_accepts_oci_archive(tmp_path: Path, outer: Compression) -> None:
    result = write_oci_archive(tmp_path / "a.tar", [Entry(three_layer_image(), ref="v1")], outer=outer)
    image = result.image
    skopeo_agrees(result.reference("v1"), image.manifest, image.config, image.layer_digests)
    skopeo_agrees(result.reference(), image.manifest, image.config, image.layer_digests)


@pytest.mark.realtools
@needs_skopeo
@pytest.mark.parametrize("style", ["legacy", "skopeo", "docker25"])
@pytest.mark.parametrize("outer", ["none", "zstd"])
def test_skopeo_accepts_docker_archive(tmp_path: Path, style: Any, outer: Compression) -> None:
    result = write_docker_archive(tmp_path / "d.tar", two_images(), style=style, outer=outer)
    first, second = result.images
    for tag in result.tags[0]:
        skopeo_agrees(result.reference(tag), None, first.config, first.diff_ids)
    skopeo_agrees(result.reference("tool:edge"), None, second.config, second.diff_ids)
    skopeo_agrees(result.reference_at(1), None, second.config, second.diff_ids)
    skopeo("copy", "--quiet", result.reference("app:1.0"), f"dir:{tmp_path / 'copy'}")
    for diff_id, layer in zip(first.diff_ids, first.layer_blobs, strict=True):
        assert (tmp_path / "copy" / diff_id.partition(":")[2]).read_bytes() == layer


@pytest.mark.realtools
@needs_skopeo
def test_skopeo_reads_docker25_archive_as_oci_archive(tmp_path: Path) -> None:
    result = write_docker_archive(tmp_path / "d.tar", two_images(), style="docker25")
    first = result.images[0]
    skopeo_agrees(f"oci-archive:{tmp_path / 'd.tar'}:1.0", first.manifest, first.config, first.diff_ids)


@pytest.mark.realtools
@needs_skopeo
@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (TAMPERED, "Digest did not match"),
        (MISSING, "no such file or directory"),
    ],
)
def test_skopeo_rejects_broken_layer_blobs(tmp_path: Path, fault: Fault, message: str) -> None:
    spec = ImageSpec([LAYER_BASE, Layer(LAYER_ADD, fault=fault)])
    result = write_oci_layout(tmp_path / "l", [Entry(spec, ref="r")])
    error = skopeo_fails("copy", "--quiet", result.reference("r"), f"dir:{tmp_path / 'copy'}")
    assert message in error


def tree(root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            out[relative] = "-> " + os.readlink(path)
        elif stat.S_ISDIR(mode):
            out[relative] = "dir"
        else:
            out[relative] = f"{stat.S_IMODE(mode):o} {path.read_bytes().decode()}"
    return out


@pytest.mark.realtools
@needs_umoci
def test_umoci_unpacks_whiteout_and_opaque(tmp_path: Path) -> None:
    result = write_oci_layout(tmp_path / "l", [Entry(three_layer_image("gzip"), ref="v1")])
    rootless = [] if os.geteuid() == 0 else ["--rootless"]
    assert UMOCI is not None
    run(UMOCI, "raw", "unpack", *rootless, "--image", f"{tmp_path / 'l'}:v1", str(tmp_path / "rootfs"))
    assert result.image.layer_media_types == ["application/vnd.oci.image.layer.v1.tar+gzip"] * 3
    assert tree(tmp_path / "rootfs") == {
        "etc": "dir",
        "etc/b": "644 beta\n",
        "etc/c": "600 gamma\n",
        "etc/hard": "600 gamma\n",
        "etc/link": "-> b",
        "opt": "dir",
        "opt/x": "dir",
        "opt/x/new": "644 new\n",
    }
    hard, original = (tmp_path / "rootfs/etc/hard").stat(), (tmp_path / "rootfs/etc/c").stat()
    assert hard.st_ino == original.st_ino
    if os.geteuid() == 0:
        assert (original.st_uid, original.st_gid) == (1000, 1000)
