"""imgtool images: every image of a docker-save tarball, an OCI archive or a layout, each with the
name that opens it (the choices the "holds several images" error lists), in the table and JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    BuiltImage,
    Entry,
    File,
    ImageSpec,
    IndexSpec,
    make_layer,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout,
)


def _spec(content: bytes, created: str, architecture: str = "amd64", variant: str | None = None) -> ImageSpec:
    return ImageSpec(
        [make_layer([File("f", content)]), make_layer([File("g", content * 3)])],
        created=created,
        architecture=architecture,
        variant=variant,
    )


def _size(built: BuiltImage) -> int:
    return len(built.config) + sum(built.layer_sizes)


def test_a_docker_archive_lists_every_image_by_tag_or_position(
    tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    specs = [
        (_spec(b"a", "2024-01-01T00:00:00Z"), ["a/x:1", "b/y:2"]),
        (_spec(b"b", "2024-02-01T00:00:00Z", architecture="arm64"), ["localhost/c:3"]),
        (_spec(b"c", "2024-03-01T00:00:00Z"), []),
    ]
    archive = write_docker_archive(tmp_path / "three.tar", specs)
    path = archive.path
    ambiguous = imgtool_cli("inspect", path)
    assert (ambiguous.code, ambiguous.stderr) == (
        1,
        f"imgtool: error: {path}: holds 3 images, name one of: @0 a/x:1, b/y:2; @1 localhost/c:3; @2\n",
    )
    rows = [
        ("a/x:1", ["a/x:1", "b/y:2"], "linux/amd64", "2024-01-01T00:00:00Z"),
        ("localhost/c:3", ["localhost/c:3"], "linux/arm64", "2024-02-01T00:00:00Z"),
        ("@2", [], "linux/amd64", "2024-03-01T00:00:00Z"),
    ]
    run = imgtool_cli("images", path, "--json")
    assert (run.code, run.stderr) == (0, "")
    doc = json.loads(run.stdout)
    digests = [
        json.loads(imgtool_cli("inspect", r, "--json").stdout)["manifest_digest"]
        for r in (
            f"docker-archive:{path}:a/x:1",
            f"docker-archive:{path}:localhost/c:3",
            f"docker-archive:{path}:@2",
        )
    ]
    assert doc == [
        {
            "name": name,
            "reference": f"docker-archive:{path}:{name}",
            "names": names,
            "platform": platform,
            "manifest_digest": digest,
            "index_digest": None,
            "size": _size(built),
            "created": created,
        }
        for (name, names, platform, created), digest, built in zip(rows, digests, archive.images, strict=True)
    ]
    table = imgtool_cli("images", path)
    assert (table.code, table.stderr) == (0, "")
    assert [re.split(r"  +", line) for line in table.stdout.splitlines()[2:]] == [
        [name, platform, digest, _human(_size(built)), created]
        for (name, _, platform, created), digest, built in zip(rows, digests, archive.images, strict=True)
    ]


def _human(size: int) -> str:
    return f"{size} B" if size < 1000 else f"{size / 1000:.1f} KB"


@pytest.mark.parametrize("archive", [False, True], ids=["oci", "oci-archive"])
def test_a_layout_lists_every_manifest_with_its_ref_and_platform(
    archive: bool, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    multi = IndexSpec(
        [
            _spec(b"amd", "2024-01-01T00:00:00Z"),
            _spec(b"arm", "2024-01-02T00:00:00Z", architecture="arm64", variant="v8"),
        ]
    )
    entries = [Entry(multi, ref="multi"), Entry(_spec(b"one", "2024-02-01T00:00:00Z"), ref="one")]
    if archive:
        result = write_oci_archive(tmp_path / "l.tar", entries)
    else:
        result = write_oci_layout(tmp_path / "oci", entries)
    amd64, arm64, one = result.images
    index = result.indexes[0]
    run = imgtool_cli("images", result.path, "--json")
    assert (run.code, run.stderr) == (0, "")
    where = f"{result.transport}:{result.path}"
    assert json.loads(run.stdout) == [
        {
            "name": name,
            "reference": f"{where}:{name}",
            "names": [name],
            "platform": platform,
            "manifest_digest": built.manifest_digest,
            "index_digest": index_digest,
            "size": _size(built),
            "created": created,
        }
        for name, platform, built, index_digest, created in [
            ("multi", "linux/amd64", amd64, index.digest, "2024-01-01T00:00:00Z"),
            ("multi", "linux/arm64/v8", arm64, index.digest, "2024-01-02T00:00:00Z"),
            ("one", "linux/amd64", one, None, "2024-02-01T00:00:00Z"),
        ]
    ]
    chosen = imgtool_cli("inspect", f"{where}:multi", "--platform", "linux/arm64", "--json")
    assert json.loads(chosen.stdout)["manifest_digest"] == arm64.manifest_digest


def test_an_unnamed_manifest_is_listed_without_a_name(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    result = write_oci_layout(tmp_path / "oci", [Entry(_spec(b"x", "2024-01-01T00:00:00Z"))])
    run = imgtool_cli("images", result.path)
    assert (run.code, run.stderr) == (0, "")
    built = result.images[0]
    header, _, row = run.stdout.splitlines()
    assert header.split() == ["name", "platform", "manifest", "size", "created"]
    assert re.split(r"  +", row) == [
        "(unnamed)",
        "linux/amd64",
        built.manifest_digest,
        _human(_size(built)),
        "2024-01-01T00:00:00Z",
    ]
    assert (
        json.loads(imgtool_cli("images", result.path, "--json").stdout)[0]["reference"]
        == f"oci:{result.path}"
    )


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        (
            ["images", "docker://registry.invalid/x:1"],
            2,
            "imgtool: error: docker://registry.invalid/x:1: images lists the images of an archive or a "
            "layout, not a registry's\n",
        ),
        (["images", "{tmp}/absent.tar"], 1, None),
    ],
)
def test_images_refuses_what_it_cannot_list(
    args: list[str], code: int, stderr: str | None, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    run = imgtool_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert (run.code, run.stdout) == (code, "")
    if stderr is not None:
        assert run.stderr == stderr
    assert run.stderr.startswith("imgtool: error: ") and run.stderr.count("\n") == 1


def test_manifest_json_is_read_once_for_all_its_images(
    tmp_path: Path, imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest.json of many images is parsed once, not once per image (time linear in its size)."""
    from imgtool.sources import docker_archive
    from imgtool.sources.stores import TarStore

    specs = [(_spec(bytes([65 + i]), "2024-01-01T00:00:00Z"), [f"i/n:{i}"]) for i in range(5)]
    archive = write_docker_archive(tmp_path / "five.tar", specs)
    calls: list[str] = []
    real = docker_archive.read_entries

    def counting(store: TarStore) -> list[docker_archive.ArchiveEntry]:
        calls.append(store.location)
        return real(store)

    monkeypatch.setattr(docker_archive, "read_entries", counting)
    run = imgtool_cli("images", archive.path, "--json")
    assert run.code == 0
    assert [item["name"] for item in json.loads(run.stdout)] == [f"i/n:{i}" for i in range(5)]
    assert len(calls) == 1


def test_a_broken_image_fails_the_listing_naming_it(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    specs = [
        (_spec(b"a", "2024-01-01T00:00:00Z"), ["ok:1"]),
        (_spec(b"b", "2024-01-01T00:00:00Z"), ["bad:1"]),
    ]
    bad = specs[1][0].build().config_digest.removeprefix("sha256:")

    def drop_config(files: dict[str, bytes]) -> None:
        (name,) = [name for name in files if bad in name and name.endswith(".json")]
        del files[name]

    archive = write_docker_archive(tmp_path / "d.tar", specs, mutate_files=drop_config)
    run = imgtool_cli("images", archive.path)
    assert (run.code, run.stdout) == (1, "")
    assert (
        run.stderr
        == f"imgtool: error: {archive.path}: config {archive.config_paths[1]} is missing from the archive\n"
    )
