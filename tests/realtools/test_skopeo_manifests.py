"""What imgtool reports as an image's manifest and index is what skopeo reports.

docker-save archives store no manifest: imgtool derives one as skopeo's docker-archive source does
(containers/image ``docker/internal/tarfile``): each layer named by its diff_id, with its uncompressed
size and the media type tar.gzip, whatever the file in the archive holds (kaniko writes gzip layers).
The archives are built with tests/helpers/imagefactory in every style and layer compression, and compared with
``skopeo inspect --raw`` byte for byte. For a multi-platform layout, imgtool's index digest is the digest
of what ``skopeo inspect --raw`` prints for the reference, and its entries are the index's.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Final

import pytest

import imgtool
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import File, ImageSpec, make_layer, sha256_digest, write_docker_archive
from tests.helpers.realtools import PlatformIndex, requires

pytestmark = [pytest.mark.realtools]

STYLES: Final = ["legacy", "skopeo"]
COMPRESSIONS: Final = ["none", "gzip", "zstd"]


def skopeo_raw(ref: str) -> bytes:
    proc = subprocess.run(["skopeo", "inspect", "--raw", ref], capture_output=True, check=True, timeout=120)
    return proc.stdout


def spec() -> ImageSpec:
    return ImageSpec(
        [
            make_layer([File("etc/motd", b"hello\n" * 500)]),
            make_layer([File("opt/app", bytes(range(256)) * 64)]),
            make_layer([File("etc/motd", b"hello\n" * 500)]),  # the same diff_id as layer 0
        ]
    )


@requires("skopeo")
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_docker_archive_manifest_is_skopeos(
    style: str, compression: str, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    result = write_docker_archive(
        tmp_path / "save.tar",
        [(spec(), ["localhost/app:1"])],
        style=style,  # type: ignore[arg-type]
        layer_compression=compression,  # type: ignore[arg-type]
    )
    ref = result.reference()
    raw = skopeo_raw(ref)
    skopeo_digest = json.loads(
        subprocess.run(["skopeo", "inspect", ref], capture_output=True, check=True, timeout=120).stdout
    )["Digest"]
    with imgtool.open_image(ref) as img:
        assert img.manifest_bytes == raw
        assert str(img.manifest_digest) == skopeo_digest == sha256_digest(raw)
        assert img.manifest_synthesized
    # The layers are the files as stored: their own digests and sizes, and they verify.
    run = imgtool_cli("inspect", ref, "--json")
    assert run.code == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["manifest_digest"] == skopeo_digest
    assert [layer["digest"] for layer in doc["layers"]] == result.image.layer_digests
    assert [layer["size"] for layer in doc["layers"]] == result.image.layer_sizes
    assert {layer["compression"] for layer in doc["layers"]} == {compression}
    verify = imgtool_cli("verify", ref, "--json")
    assert verify.code == 0, verify.stdout
    assert {finding["status"] for finding in json.loads(verify.stdout)} == {"ok"}


@requires("buildah", "skopeo")
@pytest.mark.parametrize("which", ["oci_ref", "oci_archive_ref"])
def test_index_digest_and_platforms_are_skopeos(
    platform_index: PlatformIndex, which: str, imgtool_cli: ImgtoolCli
) -> None:
    ref = getattr(platform_index, which)
    raw = skopeo_raw(ref)
    index = json.loads(raw)
    for platform in platform_index.platforms:
        run = imgtool_cli("inspect", ref, "--json", "--platform", platform)
        assert run.code == 0, run.stderr
        doc = json.loads(run.stdout)
        assert doc["index"]["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
        assert doc["index"]["media_type"] == index["mediaType"]
        listed = [
            (entry["digest"], entry["size"], "{os}/{architecture}".format(**entry["platform"]))
            for entry in index["manifests"]
        ]
        assert [(m["digest"], m["size"], m["platform"]) for m in doc["index"]["manifests"]] == listed
        chosen = [m["digest"] for m in doc["index"]["manifests"] if m["chosen"]]
        assert chosen == [doc["manifest_digest"]]
        assert doc["platform"] == platform
