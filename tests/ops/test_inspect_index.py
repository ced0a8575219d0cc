"""inspect on a multi-platform image: the index digest and every entry it lists, in the table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    OCI_INDEX,
    OCI_MANIFEST,
    Entry,
    File,
    ImageSpec,
    IndexSpec,
    OciResult,
    make_layer,
    write_oci_archive,
    write_oci_layout,
)


def two_platforms(where: Path, archive: bool) -> OciResult:
    spec = IndexSpec(
        [
            ImageSpec([make_layer([File("p", b"amd64\n")])]),
            ImageSpec([make_layer([File("p", b"arm64\n")])], architecture="arm64", variant="v8"),
        ],
        attestations=True,
    )
    if archive:
        return write_oci_archive(where / "index.tar", [Entry(spec, ref="v1")])
    return write_oci_layout(where / "oci", [Entry(spec, ref="v1")])


@pytest.mark.parametrize("archive", [False, True], ids=["oci", "oci-archive"])
def test_inspect_shows_the_index_and_every_entry(
    archive: bool, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    result = two_platforms(tmp_path, archive)
    index = result.indexes[0]
    amd64, arm64 = result.images
    att_amd64, att_arm64 = result.attestations
    run = imgtool_cli("inspect", result.reference("v1"), "--platform", "linux/arm64")
    assert (run.code, run.stderr) == (0, "")
    lines = run.stdout.splitlines()
    assert lines[1] == f"Manifest:    {arm64.manifest_digest} ({OCI_MANIFEST})"
    assert lines[2:7] == [
        f"Index:       {index.digest} ({OCI_INDEX})",
        f"Platforms:   linux/amd64      {amd64.manifest_digest}",
        f"             linux/arm64/v8   {arm64.manifest_digest} (this image)",
        f"             unknown/unknown  {att_amd64.manifest_digest} (attestation)",
        f"             unknown/unknown  {att_arm64.manifest_digest} (attestation)",
    ]
    assert lines[7] == f"Config:      {arm64.config_digest}"

    run = imgtool_cli("inspect", result.reference("v1"), "--json")
    assert (run.code, run.stderr) == (0, "")
    doc = json.loads(run.stdout)
    assert doc["manifest_digest"] == amd64.manifest_digest
    assert doc["index"] == {
        "digest": index.digest,
        "media_type": OCI_INDEX,
        "manifests": [
            {
                "digest": built.manifest_digest,
                "media_type": OCI_MANIFEST,
                "size": built.manifest_size,
                "platform": platform,
                "chosen": chosen,
                "attestation": attestation,
            }
            for built, platform, chosen, attestation in [
                (amd64, "linux/amd64", True, False),
                (arm64, "linux/arm64/v8", False, False),
                (att_amd64, "unknown/unknown", False, True),
                (att_arm64, "unknown/unknown", False, True),
            ]
        ],
    }


def test_platforms_listed_by_index_json_itself(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    amd64 = ImageSpec([make_layer([File("p", b"amd64\n")])])
    arm64 = ImageSpec([make_layer([File("p", b"arm64\n")])], architecture="arm64")
    result = write_oci_layout(
        tmp_path / "oci",
        [Entry(spec, ref="v1", platform=spec.platform) for spec in (amd64, arm64)],
    )
    run = imgtool_cli("inspect", result.reference("v1"), "--platform", "linux/arm64")
    assert (run.code, run.stderr) == (0, "")
    built_amd64, built_arm64 = result.images
    assert run.stdout.splitlines()[2:5] == [
        f"Index:       index.json ({OCI_INDEX})",
        f"Platforms:   linux/amd64  {built_amd64.manifest_digest}",
        f"             linux/arm64  {built_arm64.manifest_digest} (this image)",
    ]
    doc = json.loads(imgtool_cli("inspect", result.reference("v1"), "--json").stdout)
    assert doc["index"]["digest"] is None
    assert [(m["platform"], m["chosen"]) for m in doc["index"]["manifests"]] == [
        ("linux/amd64", True),
        ("linux/arm64", False),
    ]


def test_a_single_image_has_no_index(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    result = write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([make_layer([File("a", b"a")])]), ref="v1")])
    run = imgtool_cli("inspect", result.reference("v1"), "--json")
    assert json.loads(run.stdout)["index"] is None
    run = imgtool_cli("inspect", result.reference("v1"))
    assert not [line for line in run.stdout.splitlines() if line.startswith(("Index:", "Platforms:"))]
