"""Images built by buildah and exported by skopeo: inspect and verify agree with skopeo, every format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imgtool
from imgtool.errors import AmbiguousImageError, ImageNotFoundError
from imgtool.layers.tarstream import layer_entries
from tests.helpers.cli import ImgtoolCli
from tests.helpers.realtools import (
    Builder,
    PlatformIndex,
    StandardImageFactory,
    requires,
    skopeo_inspect_config,
)

pytestmark = [pytest.mark.realtools, requires("buildah", "skopeo")]

FORMATS = [
    ("oci", "gzip"),
    ("oci", "zstd"),
    ("oci", "none"),
    ("oci-archive", "gzip"),
    ("oci-archive", "zstd"),
    ("docker-archive", "none"),
]


@pytest.mark.parametrize(("fmt", "compression"), FORMATS)
def test_inspect_and_verify_agree_with_skopeo(
    standard_image: StandardImageFactory, imgtool_cli: ImgtoolCli, fmt: str, compression: str
) -> None:
    built = standard_image("basic")
    ref = built.export(fmt, compression)  # type: ignore[arg-type]
    raw = built.builder.inspect_raw(ref)
    config = skopeo_inspect_config(ref)
    run = imgtool_cli("inspect", ref, "--json")
    assert run.code == 0, run.stderr
    doc = json.loads(run.stdout)
    assert [layer["digest"] for layer in doc["layers"]] == [layer["digest"] for layer in raw["layers"]]
    assert [layer["size"] for layer in doc["layers"]] == [layer["size"] for layer in raw["layers"]]
    assert [layer["diff_id"] for layer in doc["layers"]] == config["rootfs"]["diff_ids"]
    assert doc["config_digest"] == raw["config"]["digest"]
    assert doc["platform"] == f"{config['os']}/{config['architecture']}"
    made = [h.get("created_by") for h in config["history"] if not h.get("empty_layer")]
    assert [layer["created_by"] for layer in doc["layers"]] == made
    expected_compression = "none" if fmt == "docker-archive" else compression
    assert {layer["compression"] for layer in doc["layers"]} == {expected_compression}
    verify = imgtool_cli("verify", ref, "--json")
    assert verify.code == 0, verify.stdout
    assert {f["status"] for f in json.loads(verify.stdout)} == {"ok"}


def test_manifest_bytes_and_digest_match_skopeo(standard_image: StandardImageFactory) -> None:
    """For docker-archive the manifest is synthesized, byte for byte as skopeo does it."""
    built = standard_image("basic")
    for fmt, compression in FORMATS:
        ref = built.export(fmt, compression)  # type: ignore[arg-type]
        raw = built.builder.skopeo("inspect", "--raw", ref).encode()
        digest = json.loads(built.builder.skopeo("inspect", ref))["Digest"]
        with imgtool.open_image(ref) as img:
            assert img.manifest_bytes == raw, ref
            assert str(img.manifest_digest) == digest, ref


def test_two_tags_in_one_archive(
    builder: Builder, standard_image: StandardImageFactory, tmp_path: Path
) -> None:
    basic, links = standard_image("basic"), standard_image("links")
    refs = builder.export_multi_tag_archive(
        [(basic.ref, "localhost/basic:v1"), (links.ref, "localhost/links:v2")], tmp_path / "two.tar"
    )
    with pytest.raises(AmbiguousImageError) as err:
        imgtool.open_image(str(tmp_path / "two.tar"))
    assert str(err.value) == (
        f"{tmp_path / 'two.tar'}: holds 2 images, name one of: @0 localhost/basic:v1; @1 localhost/links:v2"
    )
    for ref, built in zip(refs, (basic, links), strict=True):
        with imgtool.open_image(ref) as img:
            assert [str(layer.diff_id) for layer in img.layers] == built.config()["rootfs"]["diff_ids"]


def test_two_refs_in_one_layout(
    builder: Builder, standard_image: StandardImageFactory, tmp_path: Path
) -> None:
    basic, links = standard_image("basic"), standard_image("links")
    refs = builder.export_multi_ref_oci([(basic.ref, "basic"), (links.ref, "links")], tmp_path / "layout")
    with pytest.raises(AmbiguousImageError, match="holds several images, name one of: basic; links"):
        imgtool.open_image(str(tmp_path / "layout"))
    with imgtool.open_image(refs[1]) as img:
        assert img.tags == ["links"]
        assert [str(layer.diff_id) for layer in img.layers] == links.config()["rootfs"]["diff_ids"]


@pytest.mark.parametrize("which", ["oci_ref", "oci_archive_ref"])
def test_two_platform_index(platform_index: PlatformIndex, imgtool_cli: ImgtoolCli, which: str) -> None:
    ref = getattr(platform_index, which)
    for platform in platform_index.platforms:
        with imgtool.open_image(ref, platform=platform) as img:
            assert str(img.platform).startswith(platform)
        run = imgtool_cli("cat", ref, "/platform.txt", "--platform", platform)
        assert run.code == 0, run.stderr
        assert run.stdout_bytes == platform_index.files[platform]["/platform.txt"]
    with imgtool.open_image(ref) as img:  # the host's platform by default
        assert str(img.platform) == "linux/amd64"
    with pytest.raises(ImageNotFoundError, match="no image for platform linux/ppc64le; platforms present: "):
        imgtool.open_image(ref, platform="linux/ppc64le")


def test_mislabelled_uncompressed_layers(
    builder: Builder, standard_image: StandardImageFactory, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    built = standard_image("basic")
    ref = builder.export_mislabeled_uncompressed_oci(built.ref, tmp_path / "mislabelled")
    with imgtool.open_image(ref) as img:
        assert {layer.media_type for layer in img.layers} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
        assert [str(layer.diff_id) for layer in img.layers] == built.config()["rootfs"]["diff_ids"]
        for layer in img.layers:
            assert sum(1 for _ in layer_entries(layer)) > 0
        messages = [
            f"{layer.what}: media type application/vnd.oci.image.layer.v1.tar+gzip says gzip, "
            "but the blob is not compressed"
            for layer in img.layers
        ]
    # Read by its bytes all the same, and said once by every command that looks at the layers.
    warned = "".join(f"imgtool: warning: {message}\n" for message in messages)
    verify = imgtool_cli("verify", ref, "--json")
    assert (verify.code, verify.stderr) == (0, "")
    findings = json.loads(verify.stdout)
    assert [f["detail"] for f in findings if f["status"] == "warning"] == messages
    assert {f["status"] for f in findings if f["kind"] != "media type"} == {"ok"}
    inspect = imgtool_cli("inspect", ref, "--json")
    assert (inspect.code, inspect.stderr) == (0, warned)
    assert json.loads(inspect.stdout)["warnings"] == messages
    flatten = imgtool_cli("flatten", ref, "-o", str(tmp_path / "out"), "-q")
    assert (flatten.code, flatten.stderr) == (0, warned)
