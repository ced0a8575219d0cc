"""The source core: a source that only resolves a manifest and opens blobs by digest is a whole
source. A toy in-memory one, registered in a test, gives the same images, verification, listings,
files and flattened trees as the same image written as an OCI layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imgtool
import imgtool.sources
from imgtool.errors import ImageFormatError, ImageNotFoundError
from imgtool.flatten.api import flatten
from imgtool.image.digest import Digest
from imgtool.image.platform import Platform as ImagePlatform
from imgtool.image.readable import RawStream
from imgtool.ops.verify import verify_image
from imgtool.sources import list_images, parse_reference
from imgtool.sources.core import ImageSource, Resolved
from imgtool.sources.docker_archive import DockerArchive
from imgtool.sources.oci_layout import OciLayout, blob_path
from imgtool.sources.reference import Reference
from imgtool.sources.stores import DirStore
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    MISSING,
    Compression,
    Dir,
    DockerStyle,
    Entry,
    File,
    Hardlink,
    ImageSpec,
    Layer,
    OciResult,
    Symlink,
    Whiteout,
    make_layer,
    write_docker_archive,
    write_oci_layout,
)
from tests.helpers.treesnap import snapshot

LAYERS = [
    make_layer([Dir("etc/"), File("etc/a", b"a\n"), File("etc/b", b"bb\n", mode=0o600)]),
    make_layer([Whiteout("etc/a"), Symlink("etc/s", "b"), Hardlink("etc/h", "etc/b")]),
    make_layer([File("opt/c", b"ccc\n")]),
]
SPEC = ImageSpec(LAYERS, compression="gzip", created_by=["ADD base", "RUN rm", "COPY c"])


class _BytesStream:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else min(len(self._data), self._pos + n)
        data = bytes(self._data[self._pos : end])
        self._pos = end
        return data

    def close(self) -> None:
        pass

    def __enter__(self) -> _BytesStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemorySource:
    """Blobs in a dict and one manifest: the core, nothing else (no paths anywhere)."""

    transport = "memory"

    def __init__(
        self, name: str, blobs: dict[Digest, bytes], manifest: Digest, tags: tuple[str, ...]
    ) -> None:
        self.location = name
        self._blobs = blobs
        self._manifest = manifest
        self._tags = tags
        self.closed = False

    def resolve(self, selector: str | None, platform: ImagePlatform | None) -> Resolved:
        if selector is not None and selector not in self._tags:
            raise ImageNotFoundError(f"{self.location}: no image named {selector!r}")
        data = self._blobs[self._manifest]
        media_type = json.loads(data)["mediaType"]
        return Resolved(data, media_type, self._manifest, self._tags)

    def names(self) -> list[str]:
        return list(self._tags)

    def open_blob(self, digest: Digest) -> RawStream:
        if digest not in self._blobs:
            raise ImageNotFoundError(f"{self.location}: blob {digest} not found")
        return _BytesStream(self._blobs[digest])

    def has_blob(self, digest: Digest) -> bool:
        return digest in self._blobs

    def blob_size(self, digest: Digest) -> int | None:
        return len(self._blobs[digest]) if digest in self._blobs else None

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> dict[str, MemorySource]:
    """The ``memory:`` transport, registered as any source is: one line in ``SOURCES``."""
    held: dict[str, MemorySource] = {}

    def open_memory(ref: Reference) -> ImageSource:
        if ref.path not in held:
            raise ImageNotFoundError(f"{ref.path}: no such image in memory")
        return held[ref.path]

    monkeypatch.setitem(imgtool.sources.SOURCES, "memory", open_memory)
    return held


def _both(tmp_path: Path, memory: dict[str, MemorySource], spec: ImageSpec = SPEC) -> OciResult:
    """The same image as an OCI layout and as ``memory:toy``."""
    result = write_oci_layout(tmp_path / "oci", [Entry(spec, ref="v1")])
    blobs = {Digest.parse(d): data for d, data in result.blobs.items()}
    memory["toy"] = MemorySource("toy", blobs, Digest.parse(result.image.manifest_digest), ("v1",))
    return result


def _facts(image: imgtool.Image) -> dict[str, object]:
    return {
        "manifest": (image.manifest_digest, image.manifest_bytes, image.manifest_media_type),
        "config": (image.config_digest, image.config_bytes),
        "platform": image.platform,
        "tags": image.tags,
        "synthesized": image.manifest_synthesized,
        "layers": [
            (layer.digest, layer.diff_id, layer.size, layer.media_type, layer.created_by)
            for layer in image.layers
        ],
    }


def test_a_memory_source_opens_as_the_same_image(tmp_path: Path, memory: dict[str, MemorySource]) -> None:
    result = _both(tmp_path, memory)
    with imgtool.open_image("memory:toy") as mine, imgtool.open_image(result.reference("v1")) as layout:
        assert mine.transport == "memory"
        assert mine.reference == "memory:toy"
        assert mine.store is memory["toy"]
        assert _facts(mine) == _facts(layout)
        assert str(mine.manifest_digest) == result.image.manifest_digest
        assert [str(layer.digest) for layer in mine.layers] == result.image.layer_digests
        assert verify_image(mine) == verify_image(layout)
        assert all(f.status == "ok" for f in verify_image(mine))
        for name, image in (("mine", mine), ("layout", layout)):
            flatten(image, str(tmp_path / name))
    assert memory["toy"].closed
    assert snapshot(tmp_path / "mine") == snapshot(tmp_path / "layout")
    assert sorted(snapshot(tmp_path / "mine")) == [
        b"",
        b"etc",
        b"etc/b",
        b"etc/h",
        b"etc/s",
        b"opt",
        b"opt/c",
    ]
    assert list_images("memory:toy") == ["v1"] == list_images(result.reference())


def test_the_registry_decides_what_a_transport_is(memory: dict[str, MemorySource]) -> None:
    assert parse_reference("memory:toy:v1") == Reference("memory", "toy", "v1")
    del imgtool.sources.SOURCES["memory"]
    assert parse_reference("memory:toy") == Reference(None, "memory:toy", None)  # a bare path again


@pytest.mark.parametrize(
    "args",
    [
        ["inspect", "{ref}"],
        ["inspect", "{ref}", "--json"],
        ["verify", "{ref}"],
        ["verify", "{ref}", "--json"],
        ["ls", "{ref}", "/"],
        ["ls", "-R", "{ref}", "/etc"],
        ["cat", "{ref}", "/etc/h"],
        ["cat", "{ref}", "/etc/a"],
        ["which-layer", "{ref}", "/etc/s", "/opt/c"],
        ["diff", "{ref}", "--layers", "0", "1"],
    ],
)
def test_the_cli_reads_a_memory_source_as_a_layout(
    tmp_path: Path, memory: dict[str, MemorySource], imgtool_cli: ImgtoolCli, args: list[str]
) -> None:
    result = _both(tmp_path, memory)
    mine = imgtool_cli(*[a.format(ref="memory:toy:v1") for a in args])
    layout = imgtool_cli(*[a.format(ref=result.reference("v1")) for a in args])
    assert mine.code == layout.code
    assert mine.stderr == layout.stderr.replace(result.reference("v1"), "memory:toy:v1")
    expected = layout.stdout.replace(result.reference("v1"), "memory:toy:v1")
    expected = expected.replace('"transport": "oci"', '"transport": "memory"').replace("(oci)", "(memory)")
    assert mine.stdout == expected
    assert "memory:toy" in mine.stdout or args[0] not in ("inspect",)


def test_the_cli_flattens_a_memory_source_as_a_layout(
    tmp_path: Path, memory: dict[str, MemorySource], imgtool_cli: ImgtoolCli
) -> None:
    result = _both(tmp_path, memory)
    assert imgtool_cli("flatten", "memory:toy", "-o", str(tmp_path / "mine")).code == 0
    assert imgtool_cli("flatten", result.reference(), "-o", str(tmp_path / "layout")).code == 0
    assert snapshot(tmp_path / "mine") == snapshot(tmp_path / "layout")
    mine = imgtool_cli("flatten", "memory:toy", "-o", "-")
    layout = imgtool_cli("flatten", result.reference(), "-o", "-")
    assert mine.code == 0
    assert mine.stdout_bytes == layout.stdout_bytes


@pytest.mark.parametrize("command", ["verify", "flatten"])
def test_a_missing_blob_fails_alike(
    tmp_path: Path, memory: dict[str, MemorySource], imgtool_cli: ImgtoolCli, command: str
) -> None:
    layers: list[bytes | Layer] = [*LAYERS[:2], Layer(LAYERS[2], fault=MISSING)]
    result = _both(tmp_path, memory, ImageSpec(layers, compression="gzip"))
    tail = ["-o", str(tmp_path / "out")] if command == "flatten" else []
    mine = imgtool_cli(command, "memory:toy", *tail)
    layout = imgtool_cli(command, result.reference(), *tail)
    assert mine.code == layout.code == 1
    top = result.image.layer_digests[-1]
    assert f"layer 2 ({top}): layer blob is not present in the image" in mine.stdout + mine.stderr
    assert (mine.stdout, mine.stderr) == (layout.stdout, layout.stderr)
    assert not (tmp_path / "out").exists()


def test_an_absent_config_is_named(tmp_path: Path, memory: dict[str, MemorySource]) -> None:
    result = _both(tmp_path, memory)
    del memory["toy"]._blobs[Digest.parse(result.image.config_digest)]
    with pytest.raises(ImageNotFoundError) as caught:
        imgtool.open_image("memory:toy")
    assert str(caught.value) == f"toy: config blob {result.image.config_digest} is missing"
    assert memory["toy"].closed


def test_layout_blob_paths_come_only_from_well_formed_digests(tmp_path: Path) -> None:
    result = write_oci_layout(tmp_path / "oci", [Entry(SPEC, ref="v1")])
    (tmp_path / "secret").write_bytes(b"not a blob")
    source = OciLayout(DirStore(result.path), "oci")
    good = Digest.parse(result.image.config_digest)
    assert blob_path(good) == f"blobs/sha256/{good.hex}"
    with source.open_blob(good) as raw:
        assert raw.read() == result.image.config
    assert source.blob_size(good) == len(result.image.config)
    assert source.blob_size(Digest("sha256", "0" * 64)) is None
    assert not source.has_blob(Digest("sha256", "0" * 64))
    with pytest.raises(ImageNotFoundError) as caught:
        source.open_blob(Digest("sha256", "0" * 64))
    assert str(caught.value) == f"{result.path}: blobs/sha256/{'0' * 64} not found"
    forged = [
        Digest("sha256", "../../secret"),
        Digest("sha256", good.hex[:63]),
        Digest("sha256", good.hex.upper()),
        Digest("sha512", good.hex),
        Digest("md5", "0" * 32),
        Digest("sha256/../..", good.hex),
    ]
    for digest in forged:
        for call in (source.open_blob, source.has_blob, source.blob_size):
            with pytest.raises(ImageFormatError, match="not a valid sha256/sha512 digest"):
                call(digest)
    with pytest.raises(ImageFormatError, match="not a valid sha256/sha512 digest"):
        Digest.parse(f"sha256:{good.hex[:63]}")


@pytest.mark.parametrize(
    ("style", "compression"),
    [("legacy", "none"), ("legacy", "gzip"), ("skopeo", "none"), ("docker25", "none")],
)
def test_docker_save_blobs_are_its_members_by_digest(
    tmp_path: Path, style: DockerStyle, compression: Compression
) -> None:
    archive = write_docker_archive(
        tmp_path / "d.tar", [(SPEC, ["app:1"])], style=style, layer_compression=compression
    )
    with imgtool.open_image(str(tmp_path / "d.tar")) as image:
        source = image.store
        assert isinstance(source, DockerArchive)
        assert image.manifest_synthesized == (style != "docker25")
        with source.open_blob(image.config_digest) as raw:
            assert raw.read() == image.config_bytes
        for layer in image.layers:
            assert source.has_blob(layer.digest)
            assert source.blob_size(layer.digest) == layer.size
        absent = Digest("sha256", "0" * 64)
        assert not source.has_blob(absent)
        assert source.blob_size(absent) is None
        with pytest.raises(ImageNotFoundError) as caught:
            source.open_blob(absent)
        assert str(caught.value) == f"{tmp_path / 'd.tar'}: blob {absent} is not in the archive"
        assert [layer.digest for layer in image.layers] == [
            Digest.parse(d) for d in archive.images[0].layer_digests
        ]
