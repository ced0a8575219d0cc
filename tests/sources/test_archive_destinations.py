"""copy into archives: ``docker-archive:FILE[:NAME:TAG]`` (a docker-save tarball, layers
uncompressed) and ``oci-archive:FILE[:REF]`` (an OCI layout in a tar). skopeo reads both and gives
the source's layers and config; imgtool reads them back to the same tree; ``docker load`` in a
private dockerd takes the docker-archive. A copy that fails leaves FILE as it was, and no staging."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.dockerd import docker, start_dockerd, stop_dockerd
from tests.helpers.imagefactory import (
    Entry,
    File,
    ImageSpec,
    IndexSpec,
    Layer,
    make_layer,
    write_oci_layout,
)
from tests.helpers.realtools import requires
from tests.helpers.treesnap import compare, snapshot

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-oci"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.partition(":")[2]).read_bytes()


def _source(layout: Path, ref: str) -> tuple[str, dict[str, Any], bytes]:
    """The manifest digest ``ref`` names in ``layout``, that manifest and its config's bytes."""
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == ref]
    manifest = json.loads(_blob(layout, entry["digest"]))
    return entry["digest"], manifest, _blob(layout, manifest["config"]["digest"])


def _archived_manifest(layout: Path, ref: str) -> bytes:
    """The manifest skopeo derives from a docker-archive of the image: each layer by its diff_id,
    its uncompressed size, media type tar.gzip (made here from the source's own blobs)."""
    _, manifest, config = _source(layout, ref)
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    layers = []
    for desc, diff_id in zip(manifest["layers"], diff_ids, strict=True):
        tar = gzip.decompress(_blob(layout, desc["digest"]))
        assert "sha256:" + hashlib.sha256(tar).hexdigest() == diff_id
        layers.append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(tar),
                       "digest": diff_id})  # fmt: skip
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": manifest["config"]["digest"],
        },
        "layers": layers,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _skopeo(*args: str) -> bytes:
    return subprocess.run(
        ["skopeo", "--insecure-policy", *args], check=True, capture_output=True, timeout=120
    ).stdout


def _same_tree(imgtool_cli: ImgtoolCli, tmp_path: Path, one: str, two: str) -> None:
    for ref, out in [(one, tmp_path / "tree-one"), (two, tmp_path / "tree-two")]:
        run = imgtool_cli("flatten", "-q", ref, "-o", str(out))
        assert (run.code, run.stderr) == (0, "")
    first = snapshot(tmp_path / "tree-one", exclude_root_mtime=True)
    assert compare(first, snapshot(tmp_path / "tree-two", exclude_root_mtime=True)) == []
    assert b"usr/bin/hello" in first


def _members(path: Path) -> list[tuple[str, str, int]]:
    with tarfile.open(path) as tar:
        return [(m.name, "d" if m.isdir() else "l" if m.issym() else "f", m.mode) for m in tar]


@requires("skopeo")
def test_docker_archive_is_what_skopeo_and_imgtool_read(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    out = tmp_path / "saved.tar"
    dest = f"docker-archive:{out}:example.com/sample:1.1"
    source_digest, manifest, config = _source(SAMPLE, "1.1")
    expected = _archived_manifest(SAMPLE, "1.1")
    digest = "sha256:" + hashlib.sha256(expected).hexdigest()
    run = imgtool_cli("copy", f"oci:{SAMPLE}:1.1", dest)
    assert (run.code, run.stderr) == (0, "")
    assert run.stdout == (
        f"Copied {source_digest} to {dest}, stored there as {digest} "
        "(layers uncompressed: another manifest): 6 blobs copied (9.1 KB)\n"
    )
    # skopeo: the same manifest (so the same digest), the source's config and tag
    assert _skopeo("inspect", "--raw", f"docker-archive:{out}") == expected
    inspected = json.loads(_skopeo("inspect", f"docker-archive:{out}"))
    assert inspected["Digest"] == digest
    assert _skopeo("inspect", "--config", "--raw", f"docker-archive:{out}") == config
    # skopeo's copy of it into a layout (skopeo compresses the layers again): the config, and
    # layers that are the source's once uncompressed
    _skopeo("copy", "--quiet", f"docker-archive:{out}", f"oci:{tmp_path / 'skopeo'}:x")
    _, copied, copied_config = _source(tmp_path / "skopeo", "x")
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    assert copied_config == config
    assert [gzip.decompress(_blob(tmp_path / "skopeo", d["digest"])) for d in copied["layers"]] == [
        gzip.decompress(_blob(SAMPLE, d["digest"])) for d in manifest["layers"]
    ]
    # imgtool reads it back: the digest it reported, the same tree
    back = json.loads(imgtool_cli("inspect", "--json", f"docker-archive:{out}").stdout)
    assert (back["manifest_digest"], back["config_digest"]) == (digest, manifest["config"]["digest"])
    _same_tree(imgtool_cli, tmp_path, f"oci:{SAMPLE}:1.1", f"docker-archive:{out}:example.com/sample:1.1")
    # docker save's layout: layers, config, legacy directories, manifest.json, repositories
    names = _members(out)
    layer_files = [(d.partition(":")[2] + ".tar", "f", 0o644) for d in diff_ids]
    assert names[: len(diff_ids) + 1] == [
        *layer_files,
        (manifest["config"]["digest"][7:] + ".json", "f", 0o644),
    ]
    assert names[-2:] == [("manifest.json", "f", 0o644), ("repositories", "f", 0o644)]
    assert len(names) == len(diff_ids) * 5 + 3  # each layer: its file, a directory, VERSION, json, layer.tar
    with tarfile.open(out) as tar:
        entries = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(tar.extractfile("repositories"))  # type: ignore[arg-type]
        links = [m for m in tar if m.issym()]
    assert entries == [
        {
            "Config": manifest["config"]["digest"][7:] + ".json",
            "RepoTags": ["example.com/sample:1.1"],
            "Layers": [name for name, _, _ in layer_files],
        }
    ]
    assert [link.linkname for link in links] == [f"../{name}" for name, _, _ in layer_files]
    assert repositories == {"example.com/sample": {"1.1": links[-1].name.partition("/")[0]}}


@requires("skopeo")
def test_oci_archive_is_what_skopeo_and_imgtool_read(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    out = tmp_path / "image.tar"
    digest, manifest, config = _source(SAMPLE, "1.1")
    run = imgtool_cli("copy", "--json", f"oci:{SAMPLE}:1.1", f"oci-archive:{out}:v1")
    assert (run.code, run.stderr) == (0, "")
    doc = json.loads(run.stdout)
    assert "source_manifest_digest" not in doc  # copied byte for byte
    assert (doc["manifest_digest"], doc["destination"]) == (digest, f"oci-archive:{out}:v1")
    assert _skopeo("inspect", "--raw", f"oci-archive:{out}:v1") == _blob(SAMPLE, digest)
    assert _skopeo("inspect", "--config", "--raw", f"oci-archive:{out}:v1") == config
    _skopeo("copy", "--quiet", f"oci-archive:{out}:v1", f"oci:{tmp_path / 'skopeo'}:x")
    assert _source(tmp_path / "skopeo", "x") == (digest, manifest, config)
    for desc in manifest["layers"]:
        assert _blob(tmp_path / "skopeo", desc["digest"]) == _blob(SAMPLE, desc["digest"])
    _same_tree(imgtool_cli, tmp_path, f"oci:{SAMPLE}:1.1", f"oci-archive:{out}:v1")
    blobs = sorted([digest, manifest["config"]["digest"], *(d["digest"] for d in manifest["layers"])])
    assert _members(out) == [
        ("blobs", "d", 0o755),
        ("blobs/sha256", "d", 0o755),
        *[(f"blobs/sha256/{d[7:]}", "f", 0o644) for d in blobs],
        ("index.json", "f", 0o644),
        ("oci-layout", "f", 0o644),
    ]
    with tarfile.open(out) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert index["manifests"] == [
        {"mediaType": manifest["mediaType"], "digest": digest, "size": len(_blob(SAMPLE, digest)),
         "annotations": {"org.opencontainers.image.ref.name": "v1"}}
    ]  # fmt: skip


def test_an_index_goes_whole_into_an_oci_archive_not_a_docker_archive(
    imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    layer = make_layer([File("f", b"x")])
    multi = IndexSpec([ImageSpec([layer]), ImageSpec([layer], architecture="arm64")])
    source = write_oci_layout(tmp_path / "src", [Entry(multi, ref="m")]).reference("m")
    whole = imgtool_cli("copy", "--json", "--all-platforms", source, f"oci-archive:{tmp_path / 'o.tar'}:m")
    assert (whole.code, whole.stderr) == (0, "")
    assert len(json.loads(whole.stdout)["manifests"]) == 2
    arm = imgtool_cli("cat", "--platform", "linux/arm64", f"oci-archive:{tmp_path / 'o.tar'}:m", "/f")
    assert arm.stdout_bytes == b"x"
    dest = f"docker-archive:{tmp_path / 'd.tar'}"
    run = imgtool_cli("copy", "--all-platforms", source, dest)
    assert (run.code, run.stdout) == (2, "")
    assert run.stderr == (
        f"imgtool: error: {dest}: holds images, not an image index; "
        "copy one platform (without --all-platforms)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tar", "src"]


@pytest.fixture
def corrupt(tmp_path: Path) -> str:
    """A layout whose second layer's blob does not match its digest."""
    spec = ImageSpec([make_layer([File("a", b"a" * 5000)]), make_layer([File("b", b"b" * 5000)])])
    built = write_oci_layout(tmp_path / "bad", [Entry(spec, ref="v")])
    _, manifest, _ = _source(tmp_path / "bad", "v")
    path = tmp_path / "bad" / "blobs" / "sha256" / manifest["layers"][1]["digest"][7:]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    return built.reference("v")


@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_a_failed_copy_leaves_the_file_as_it_was(
    imgtool_cli: ImgtoolCli, tmp_path: Path, corrupt: str, transport: str
) -> None:
    out = tmp_path / "out.tar"
    first = imgtool_cli("copy", "-q", f"oci:{SAMPLE}:1.0", f"{transport}:{out}")
    assert (first.code, first.stderr) == (0, "")
    before = out.read_bytes()
    run = imgtool_cli("copy", "-q", corrupt, f"{transport}:{out}")
    assert (run.code, run.stdout) == (1, "")
    assert run.stderr.startswith("imgtool: error: ") and "digest mismatch" in run.stderr
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "out.tar"]  # no staging left
    # a copy that succeeds replaces the file whole
    again = imgtool_cli("copy", "-q", f"oci:{SAMPLE}:1.1", f"{transport}:{out}")
    assert (again.code, again.stderr) == (0, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "out.tar"]
    assert imgtool_cli("cat", f"{transport}:{out}", "/usr/bin/hello").code == 0
    assert out.read_bytes() != before


@pytest.mark.parametrize(
    ("dest", "code", "message"),
    [
        ("docker-archive:{tmp}/d.tar:@1", 2,
         "docker-archive:{tmp}/d.tar:@1: @N names an image to read; name the image to write NAME:TAG"),
        ("docker-archive:{tmp}/d.tar:x@sha256:" + "a" * 64, 2,
         "docker-archive:{tmp}/d.tar:x@sha256:" + "a" * 64
         + ": a docker-archive names its image by NAME:TAG, not by digest"),
        ("docker-archive:{tmp}/d.tar:Bad:1", 2,
         "docker-archive:{tmp}/d.tar:Bad:1: repository name must be lowercase: 'Bad'"),
        ("docker-archive:{tmp}", 1, "{tmp}: exists and is not a regular file (an archive is one)"),
        ("oci-archive:{tmp}", 1, "{tmp}: exists and is not a regular file (an archive is one)"),
        ("oci-archive:{tmp}/no/o.tar", 1, "{tmp}/no/o.tar: parent directory {tmp}/no does not exist"),
    ],
)  # fmt: skip
def test_archive_destinations_refused_before_anything_is_read(
    imgtool_cli: ImgtoolCli, tmp_path: Path, dest: str, code: int, message: str
) -> None:
    run = imgtool_cli("copy", f"oci:{SAMPLE}:1.0", dest.format(tmp=tmp_path))
    assert (run.code, run.stdout) == (code, "")
    assert run.stderr == f"imgtool: error: {message.format(tmp=tmp_path)}\n"
    assert list(tmp_path.iterdir()) == []


def test_an_untagged_name_is_tagged_latest_and_layers_listed_twice_stored_once(
    imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    layer = make_layer([File("f", b"once\n")])
    source = write_oci_layout(tmp_path / "src", [Entry(ImageSpec([layer, layer]), ref="v")]).reference("v")
    out = tmp_path / "d.tar"
    run = imgtool_cli("copy", "-q", source, f"docker-archive:{out}:localhost:5000/app")
    assert (run.code, run.stderr) == (0, "")
    with tarfile.open(out) as tar:
        (entry,) = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer_files = [m.name for m in tar if m.name.endswith(".tar") and "/" not in m.name]
    assert entry["RepoTags"] == ["localhost:5000/app:latest"]
    assert len(entry["Layers"]) == 2 and entry["Layers"][0] == entry["Layers"][1] == layer_files[0]
    assert len(layer_files) == 1
    assert (
        imgtool_cli("cat", f"docker-archive:{out}:localhost:5000/app:latest", "/f").stdout_bytes == b"once\n"
    )


@requires("dockerd", "docker")
@pytest.mark.skipif(os.geteuid() != 0, reason="dockerd needs root")
def test_docker_loads_the_docker_archive(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    out = tmp_path / "saved.tar"
    run = imgtool_cli("copy", "-q", f"oci:{SAMPLE}:1.1", f"docker-archive:{out}:example.com/sample:1.1")
    assert (run.code, run.stderr) == (0, "")
    _, _, config = _source(SAMPLE, "1.1")
    # The daemon's state where its sockets' paths stay short: containerd refuses one over 104 bytes,
    # and this test's own tmp_path (its name in it) is longer than that allows.
    base = Path(tempfile.mkdtemp(prefix="imgtool-dockerd-"))
    cleanup = functools.partial(shutil.rmtree, base, ignore_errors=True)
    daemon = start_dockerd(base, "vfs")
    if daemon is None:
        log = (base / "log").read_text()
        cleanup()
        pytest.skip(f"dockerd cannot start here: {log[-300:]}")
    try:
        said = docker(base / "sock", "load", "-i", str(out))
        layers = docker(base / "sock", "image", "inspect", "--format", "{{json .RootFS.Layers}}",
                         "example.com/sample:1.1")  # fmt: skip
        image_id = docker(base / "sock", "image", "inspect", "--format", "{{.Id}}", "example.com/sample:1.1")
        docker(base / "sock", "save", "-o", str(tmp_path / "resaved.tar"), "example.com/sample:1.1")
    finally:
        stop_dockerd(daemon, base)
        cleanup()
    assert said == "Loaded image: example.com/sample:1.1\n"
    assert json.loads(layers) == json.loads(config)["rootfs"]["diff_ids"]
    assert image_id.strip() == "sha256:" + hashlib.sha256(config).hexdigest()
    _same_tree(imgtool_cli, tmp_path, f"oci:{SAMPLE}:1.1", f"docker-archive:{tmp_path / 'resaved.tar'}")


def test_an_image_with_uncompressed_layers_keeps_its_digest_in_a_docker_archive(
    imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    source = str(SAMPLE.parent / "sample.tar")  # docker save's own: layers uncompressed already
    digest = json.loads(imgtool_cli("inspect", "--json", source).stdout)["manifest_digest"]
    dest = f"docker-archive:{tmp_path / 'again.tar'}:sample:1"
    run = imgtool_cli("copy", "--json", source, dest)
    assert (run.code, run.stderr) == (0, "")
    doc = json.loads(run.stdout)
    assert (doc["manifest_digest"], "source_manifest_digest" in doc) == (digest, False)
    text = imgtool_cli("copy", source, dest)
    assert text.stdout == f"Copied {digest} to {dest}: 5 blobs copied (86.6 KB)\n"
    verify = imgtool_cli("verify", dest)
    assert (verify.code, verify.stderr) == (0, "")


@pytest.mark.parametrize("kind", ["diff_id", "foreign"])
def test_a_layer_a_docker_archive_cannot_hold_is_refused(
    imgtool_cli: ImgtoolCli, tmp_path: Path, kind: str
) -> None:
    tar = make_layer([File("f", b"x")])
    wrong = "sha256:" + "0" * 64
    layer = (
        Layer(tar, diff_id=wrong)
        if kind == "diff_id"
        else Layer(tar, urls=["https://example.invalid/layer"], compression="gzip")
    )
    source = write_oci_layout(tmp_path / "src", [Entry(ImageSpec([layer]), ref="v")]).reference("v")
    _, manifest, _ = _source(tmp_path / "src", "v")
    digest = manifest["layers"][0]["digest"]
    out = tmp_path / "d.tar"
    out.write_bytes(b"before")
    run = imgtool_cli("copy", "-q", source, f"docker-archive:{out}")
    assert (run.code, run.stdout) == (2 if kind == "foreign" else 1, "")
    tail = (
        f"uncompressed it is {hashlib.sha256(tar).hexdigest().join(['sha256:', ''])}, "
        f"not the diff_id {wrong} the config gives it"
        if kind == "diff_id"
        else "is non-distributable and not in the source; a docker-archive holds every layer"
    )
    assert run.stderr == f"imgtool: error: docker-archive:{out}: layer 0 ({digest}): {tail}\n"
    assert out.read_bytes() == b"before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.tar", "src"]


def test_what_a_killed_copy_left_beside_the_file_is_removed(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    dead = 4_194_304 + 17  # above the largest PID Linux gives
    left = tmp_path / f".out.tar.imgtool-{dead}-abcdefgh"
    (left / "layout").mkdir(parents=True)
    (tmp_path / f".out.tar.imgtool-{dead}-stuvwxyz").write_bytes(b"half a tar")
    run = imgtool_cli("copy", "-q", f"oci:{SAMPLE}:1.0", f"oci-archive:{tmp_path / 'out.tar'}")
    assert (run.code, run.stderr) == (0, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar"]
