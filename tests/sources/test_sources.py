"""Opening every local image format, choosing among images and platforms, verifying every digest."""

from __future__ import annotations

import gzip
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

import imgtool
from imgtool.errors import (
    AmbiguousImageError,
    DigestMismatchError,
    ImageFormatError,
    ImageNotFoundError,
    LayerError,
    MediaTypeError,
)
from imgtool.layers.tarstream import layer_entries
from imgtool.merge.index import build_layer_index
from imgtool.sources.stores import KEEP_MEMBER_BYTES
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    MISSING,
    TAMPERED,
    Compression,
    Dir,
    DockerStyle,
    Entry,
    File,
    ImageSpec,
    IndexSpec,
    Layer,
    LoopTo,
    Opaque,
    Platform,
    Whiteout,
    compress,
    incompressible,
    make_layer,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout,
)

BASE = make_layer([Dir("etc/"), File("etc/a", b"a\n"), File("etc/b", b"bb\n")])
RM = make_layer([Whiteout("etc/a"), Opaque("opt/")])
TOP = make_layer([File("etc/c", b"ccc\n", mode=0o600)])


def paths_of(image: imgtool.Image) -> list[list[str]]:
    return [[e.path.decode() for e in layer_entries(layer)] for layer in image.layers]


def spec(**kw: object) -> ImageSpec:
    return ImageSpec([BASE, RM, TOP], created_by=["ADD base", "RUN rm", "COPY c"], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
@pytest.mark.parametrize("form", ["dir", "archive", "archive-gz", "archive-zst"])
def test_oci_layouts(tmp_path: Path, compression: str, form: str) -> None:
    image = spec(compression=compression)
    if form == "dir":
        result = write_oci_layout(tmp_path / "oci", [Entry(image, ref="v1")])
        refs = [result.reference("v1"), str(tmp_path / "oci")]
    else:
        outer = {"archive": "none", "archive-gz": "gzip", "archive-zst": "zstd"}[form]
        result = write_oci_archive(tmp_path / "o.tar", [Entry(image, ref="v1")], outer=outer)  # type: ignore[arg-type]
        refs = [result.reference("v1"), str(tmp_path / "o.tar")]
    built = result.images[0]
    for ref in refs:
        with imgtool.open_image(ref) as img:
            assert img.manifest_digest is not None
            assert str(img.manifest_digest) == built.manifest_digest
            assert str(img.config_digest) == built.config_digest
            assert [str(layer.digest) for layer in img.layers] == built.layer_digests
            assert [str(layer.diff_id) for layer in img.layers] == built.diff_ids
            assert [layer.created_by for layer in img.layers] == ["ADD base", "RUN rm", "COPY c"]
            assert img.tags == ["v1"]
            assert paths_of(img) == [["etc", "etc/a", "etc/b"], ["etc/a", "opt"], ["etc/c"]]


@pytest.mark.parametrize("style", ["legacy", "skopeo", "docker25"])
@pytest.mark.parametrize("outer", ["none", "gzip", "zstd"])
def test_docker_archives(tmp_path: Path, style: DockerStyle, outer: Compression) -> None:
    result = write_docker_archive(
        tmp_path / "d.tar",
        [(spec(compression="none"), ["app:1"])],
        style=style,
        outer=outer,
    )
    for ref in (
        str(tmp_path / "d.tar"),
        result.reference("app:1"),
        result.reference_at(0),
        f"docker-archive:{tmp_path / 'd.tar'}:docker.io/library/app:1",
    ):
        with imgtool.open_image(ref) as img:
            assert img.transport == "docker-archive"
            assert img.tags == result.tags[0]
            assert [str(layer.diff_id) for layer in img.layers] == result.images[0].diff_ids
            assert paths_of(img) == [["etc", "etc/a", "etc/b"], ["etc/a", "opt"], ["etc/c"]]


def test_docker25_uses_the_real_manifest(tmp_path: Path) -> None:
    result = write_docker_archive(
        tmp_path / "d.tar", [(spec(compression="none"), ["app:1"])], style="docker25"
    )
    with imgtool.open_image(str(tmp_path / "d.tar")) as img:
        assert str(img.manifest_digest) == result.images[0].manifest_digest


def test_legacy_archive_manifest_is_synthesized_like_skopeo(tmp_path: Path) -> None:
    write_docker_archive(tmp_path / "d.tar", [(spec(compression="none"), ["app:1"])], style="legacy")
    with imgtool.open_image(str(tmp_path / "d.tar")) as img:
        manifest = json.loads(img.manifest_bytes)
        assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers"]
        assert [layer["digest"] for layer in manifest["layers"]] == [
            str(layer.diff_id) for layer in img.layers
        ]
        assert {layer["mediaType"] for layer in manifest["layers"]} == {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }


def test_archive_with_several_images(tmp_path: Path) -> None:
    one = ImageSpec([BASE], created_by=["one"])
    two = ImageSpec([BASE, TOP], created_by=["base", "two"])
    result = write_docker_archive(tmp_path / "d.tar", [(one, ["app:1"]), (two, ["tool:2", "tool:latest"])])
    with pytest.raises(AmbiguousImageError) as err:
        imgtool.open_image(str(tmp_path / "d.tar"))
    assert str(err.value) == (
        f"{tmp_path / 'd.tar'}: holds 2 images, name one of: @0 app:1; @1 tool:2, tool:latest"
    )
    with imgtool.open_image(result.reference("tool:latest")) as img:
        assert len(img.layers) == 2
    with imgtool.open_image(result.reference_at(0)) as img:
        assert len(img.layers) == 1
    with pytest.raises(
        ImageNotFoundError, match="no image tagged 'nope:1'; tags present: app:1, tool:2, tool:latest"
    ):
        imgtool.open_image(f"docker-archive:{tmp_path / 'd.tar'}:nope:1")
    with pytest.raises(ImageNotFoundError, match="no image @5; the archive holds 2"):
        imgtool.open_image(f"docker-archive:{tmp_path / 'd.tar'}:@5")


def test_layout_with_several_refs(tmp_path: Path) -> None:
    result = write_oci_layout(
        tmp_path / "oci", [Entry(ImageSpec([BASE]), ref="a"), Entry(ImageSpec([BASE, TOP]), ref="b")]
    )
    with pytest.raises(AmbiguousImageError, match="holds several images, name one of: a; b"):
        imgtool.open_image(str(tmp_path / "oci"))
    with imgtool.open_image(result.reference("b")) as img:
        assert len(img.layers) == 2
    with pytest.raises(ImageNotFoundError, match="no image named 'c'; refs present: a, b"):
        imgtool.open_image(f"oci:{tmp_path / 'oci'}:c")


def two_platforms(nested: bool = False) -> IndexSpec:
    amd = ImageSpec([BASE], architecture="amd64", created_by=["amd"])
    arm = ImageSpec([BASE, TOP], architecture="arm64", variant="v8", created_by=["arm", "top"])
    inner = IndexSpec([amd, arm], attestations=True)
    return IndexSpec([inner]) if nested else inner


@pytest.mark.parametrize("nested", [False, True])
def test_platform_choice(tmp_path: Path, nested: bool) -> None:
    write_oci_layout(tmp_path / "oci", [Entry(two_platforms(nested), ref="multi")])
    ref = str(tmp_path / "oci")
    with imgtool.open_image(ref, platform="linux/arm64") as img:
        assert str(img.platform) == "linux/arm64/v8"
        assert len(img.layers) == 2
    with imgtool.open_image(ref, platform="linux/arm64/v8") as img:
        assert len(img.layers) == 2
    with imgtool.open_image(ref, platform="linux/amd64") as img:
        assert len(img.layers) == 1
    with pytest.raises(ImageNotFoundError) as err:
        imgtool.open_image(ref, platform="linux/s390x")
    assert str(err.value) == (
        f"{ref}: no image for platform linux/s390x; platforms present: linux/amd64, linux/arm64/v8"
    )


def test_single_manifest_opens_whatever_its_platform(tmp_path: Path) -> None:
    arm = ImageSpec([BASE], architecture="arm64", variant="v8")
    write_oci_archive(tmp_path / "o.tar", [Entry(arm, ref="x", platform=Platform("linux", "arm64", "v8"))])
    with imgtool.open_image(str(tmp_path / "o.tar")) as img:
        assert str(img.platform) == "linux/arm64/v8"
    with pytest.raises(
        ImageNotFoundError, match="no image for platform linux/amd64; present: linux/arm64/v8"
    ):
        imgtool.open_image(str(tmp_path / "o.tar"), platform="linux/amd64")


def test_index_loop_is_refused(tmp_path: Path) -> None:
    # No index can hold its own digest, so a loop always reaches a blob that fails its digest.
    looped = IndexSpec([IndexSpec([LoopTo("a")], name="b"), ImageSpec([BASE])], name="a")
    write_oci_layout(tmp_path / "oci", [Entry(looped, ref="x")])
    with pytest.raises(DigestMismatchError, match=r"image index sha256:\w+: digest mismatch"):
        imgtool.open_image(str(tmp_path / "oci"), platform="linux/amd64")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    nested: ImageSpec | IndexSpec = ImageSpec([BASE])
    for _ in range(10):
        nested = IndexSpec([nested])
    write_oci_layout(tmp_path / "oci", [Entry(nested, ref="x")])
    with pytest.raises(ImageFormatError, match="image indexes nested more than 8 deep"):
        imgtool.open_image(str(tmp_path / "oci"))


def test_missing_and_tampered_blobs(tmp_path: Path) -> None:
    missing = write_oci_layout(tmp_path / "m", [Entry(ImageSpec([Layer(BASE, fault=MISSING)]), ref="x")])
    with (
        imgtool.open_image(str(tmp_path / "m")) as img,
        pytest.raises(MediaTypeError, match=r"layer 0 \(sha256:[0-9a-f]{64}\): layer blob is not present"),
    ):
        list(layer_entries(img.layers[0]))
    assert missing.images[0].layer_digests
    write_oci_layout(tmp_path / "c", [Entry(ImageSpec([BASE], config_fault=TAMPERED), ref="x")])
    with pytest.raises(
        DigestMismatchError, match=r"config sha256:\w+: digest mismatch: expected sha256:\w+, got sha256:\w+"
    ):
        imgtool.open_image(str(tmp_path / "c"))
    write_oci_layout(tmp_path / "t", [Entry(ImageSpec([Layer(BASE, fault=TAMPERED)]), ref="x")])
    with imgtool.open_image(str(tmp_path / "t")) as img:
        with pytest.raises(DigestMismatchError) as err:
            build_layer_index(img.layers[0])
        assert err.value.check == "blob"
        assert str(img.layers[0].digest) in str(err.value)


def test_wrong_diff_id(tmp_path: Path) -> None:
    wrong = "sha256:" + "0" * 64
    write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([Layer(BASE, diff_id=wrong)]), ref="x")])
    with imgtool.open_image(str(tmp_path / "oci")) as img, pytest.raises(DigestMismatchError) as err:
        build_layer_index(img.layers[0])
    assert err.value.check == "diff_id"
    assert f"expected {wrong}, got sha256:" in str(err.value)


def test_truncated_gzip_layer(tmp_path: Path) -> None:
    cut = Layer(BASE, compression="gzip", postprocess=lambda blob: blob[: len(blob) // 2])
    write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([cut]), ref="x")])
    with (
        imgtool.open_image(str(tmp_path / "oci")) as img,
        pytest.raises(LayerError, match="gzip stream is truncated"),
    ):
        build_layer_index(img.layers[0])


def test_uncompressed_layer_labelled_gzip_is_read(tmp_path: Path) -> None:
    mislabelled = Layer(BASE, compression="none", media_type="application/vnd.oci.image.layer.v1.tar+gzip")
    write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([mislabelled]), ref="x")])
    with imgtool.open_image(str(tmp_path / "oci")) as img:
        assert paths_of(img) == [["etc", "etc/a", "etc/b"]]


def test_unknown_media_type_is_named(tmp_path: Path) -> None:
    odd = Layer(BASE, media_type="application/vnd.example.weird")
    write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([odd]), ref="x")])
    with (
        imgtool.open_image(str(tmp_path / "oci")) as img,
        pytest.raises(
            MediaTypeError, match=re.escape("unsupported layer media type 'application/vnd.example.")
        ),
    ):
        list(layer_entries(img.layers[0]))


def test_foreign_layer_absent(tmp_path: Path) -> None:
    foreign = Layer(BASE, urls=["https://example.invalid/layer"])
    write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([foreign]), ref="x")])
    with (
        imgtool.open_image(str(tmp_path / "oci")) as img,
        pytest.raises(
            MediaTypeError,
            match=r"foreign \(non-distributable\) layer blob is not present in the image; "
            "it is distributed from https://example.invalid/layer",
        ),
    ):
        list(layer_entries(img.layers[0]))


def test_history_with_empty_layers_is_matched(tmp_path: Path) -> None:
    image = ImageSpec(
        [BASE, TOP],
        created_by=["ADD base", "COPY c"],
        empty_history={0: ["ENV A=1"], 1: ["LABEL x=y", "WORKDIR /"]},
    )
    write_oci_layout(tmp_path / "oci", [Entry(image, ref="x")])
    with imgtool.open_image(str(tmp_path / "oci")) as img:
        assert [layer.created_by for layer in img.layers] == ["ADD base", "COPY c"]


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "plain.txt").write_text("hello\n")
    with pytest.raises(ImageFormatError, match=r"plain.txt: not an image archive \(not a tar file\)$"):
        imgtool.open_image(str(tmp_path / "plain.txt"))
    with tarfile.open(tmp_path / "other.tar", "w") as tar:
        tar.add(tmp_path / "plain.txt", "plain.txt")
    expected = "neither manifest.json (docker save) nor oci-layout (OCI)"
    with pytest.raises(ImageFormatError, match=re.escape(expected)):
        imgtool.open_image(str(tmp_path / "other.tar"))
    (tmp_path / "dir").mkdir()
    with pytest.raises(ImageFormatError, match=r"not an OCI image layout \(no oci-layout file\)"):
        imgtool.open_image(str(tmp_path / "dir"))
    with pytest.raises(ImageNotFoundError, match="no such file or directory"):
        imgtool.open_image(str(tmp_path / "absent.tar"))


def test_malformed_json(tmp_path: Path) -> None:
    result = write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([BASE]), ref="x")])
    (tmp_path / "oci" / "index.json").write_text("{not json")
    with pytest.raises(ImageFormatError, match=re.escape("index.json: not valid JSON")):
        imgtool.open_image(str(tmp_path / "oci"))
    (tmp_path / "oci" / "index.json").write_text(json.dumps({"manifests": [{"mediaType": 3}]}))
    with pytest.raises(ImageFormatError, match=r"manifests\[0\]: field 'mediaType' must be a string"):
        imgtool.open_image(str(tmp_path / "oci"))
    assert result


def test_gzip_compressed_docker_save(tmp_path: Path) -> None:
    write_docker_archive(tmp_path / "d.tar", [(spec(compression="none"), ["app:1"])], style="legacy")
    (tmp_path / "d.tar.gz").write_bytes(gzip.compress((tmp_path / "d.tar").read_bytes()))
    with imgtool.open_image(str(tmp_path / "d.tar.gz")) as img:
        assert paths_of(img)[2] == ["etc/c"]
    assert compress(b"x", "gzip")


@pytest.mark.parametrize("outer", ["gzip", "zstd"])
def test_a_compressed_archive_with_big_layers_reads_as_the_plain_one(
    tmp_path: Path, outer: Compression, imgtool_cli: ImgtoolCli
) -> None:
    """Layers too big to be kept in memory while streaming come from one temporary file, read by two
    threads at once; every byte is the plain archive's."""
    big = [File(f"f{i}", incompressible(KEEP_MEMBER_BYTES + 4096, b"%d" % i)) for i in range(2)]
    image = ImageSpec([make_layer([member]) for member in big])
    for name, method in (("plain.tar", "none"), ("packed.tar", outer)):
        write_docker_archive(tmp_path / name, [(image, ["app:1"])], outer=method)  # type: ignore[arg-type]
    outputs = []
    for name in ("plain.tar", "packed.tar"):
        run = imgtool_cli(
            "flatten", str(tmp_path / name), "-o", str(tmp_path / f"{name}.out.tar"), "--no-cache", "-q"
        )
        assert (run.code, run.stderr) == (0, "")
        outputs.append((tmp_path / f"{name}.out.tar").read_bytes())
        assert imgtool_cli("verify", str(tmp_path / name)).code == 0
    assert outputs[0] == outputs[1]
    with tarfile.open(tmp_path / "packed.tar.out.tar") as tar:
        assert {m.name: m.size for m in tar if m.isfile()} == {
            "f0": KEEP_MEMBER_BYTES + 4096,
            "f1": KEEP_MEMBER_BYTES + 4096,
        }


def test_skopeos_manifest_is_derived_only_when_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its layer sizes cost decompressing every compressed layer: only inspect's manifest digest pays it."""
    from imgtool.sources import docker_archive

    calls: list[str] = []
    real = docker_archive.open_decompressed  # type: ignore[attr-defined]

    def counting(raw: Any, what: str) -> Any:
        calls.append(what)
        return real(raw, what)

    monkeypatch.setattr(docker_archive, "open_decompressed", counting)
    image = ImageSpec([make_layer([File("a", b"a" * 5000)]), make_layer([File("b", b"b")])])
    result = write_docker_archive(tmp_path / "d.tar", [(image, ["app:1"])], layer_compression="gzip")
    with imgtool.open_image(str(tmp_path / "d.tar")) as img:
        assert [str(layer.digest) for layer in img.layers] == result.image.layer_digests
        assert calls == []
        digest = img.manifest_digest
        assert len(calls) == 2
        assert img.manifest_digest == digest
        assert json.loads(img.manifest_bytes)["layers"][0] == {
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "size": len(result.image.spec.layer_specs()[0].tar),
            "digest": result.image.diff_ids[0],
        }
        assert len(calls) == 2
