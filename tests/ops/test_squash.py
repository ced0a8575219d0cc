"""squash: layers N..M merged into one layer (flatten's tar, as a layer: whiteouts for what the range
removed below), the others kept as the same blobs; config and history carried over; into an OCI
layout here (the real tools and a registry read the results in tests/realtools and
tests/sources/registry)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import zstandard

from imgtool.flatten.api import flatten
from imgtool.ops.squash import fold_history, squash_image
from imgtool.sources import open_destination, open_image
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    File,
    Hardlink,
    ImageSpec,
    Member,
    Opaque,
    Symlink,
    Whiteout,
    make_layer,
    write_docker_archive,
    write_oci_layout,
)

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-oci"


def flat(ref: str, upto: int | None = None) -> bytes:
    """imgtool's flatten of ``ref`` as tar bytes: equal bytes, equal trees."""
    out = io.BytesIO()
    with open_image(ref) as image:
        flatten(image, out, upto=upto)
    return out.getvalue()


def members(ref: str, number: int) -> list[tuple[str, str, str]]:
    """The squashed layer's members: (name, type, link target or data)."""
    with open_image(ref) as image, image.layers[number].open() as stream:
        data = b""
        while chunk := stream.read():
            data += chunk
    kinds = {
        tarfile.REGTYPE: "file",
        tarfile.DIRTYPE: "dir",
        tarfile.SYMTYPE: "symlink",
        tarfile.LNKTYPE: "link",
    }
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for info in tar:
            body = tar.extractfile(info).read().decode() if info.isreg() else info.linkname  # type: ignore[union-attr]
            out.append((info.name, kinds[info.type], body))
    return out


def squash(src: str, dest: Path, first: int | None = None, last: int | None = None, **kw: Any) -> str:
    with open_image(src) as image, open_destination(f"oci:{dest}:s") as out:
        squash_image(image, out, first=first, last=last, **kw)
    return f"oci:{dest}:s"


def layout(tmp_path: Path, layers: Sequence[Sequence[Member]], **spec: Any) -> str:
    image = ImageSpec([make_layer(m) for m in layers], **spec)
    return write_oci_layout(tmp_path / "src", [Entry(image, ref="v")]).reference("v")


# (layers, first, last, the squashed layer's members)
CASES: dict[str, tuple[list[list[Member]], int, int, list[tuple[str, str, str]]]] = {
    "a whiteout of a file below": (
        [[File("a", b"a"), File("b", b"b")], [Whiteout("a")], [File("c", b"c")]],
        1,
        2,
        [(".", "dir", ""), (".wh.a", "file", ""), ("c", "file", "c")],
    ),
    "an opaque directory over one below: a whiteout for each name": (
        [
            [Dir("d/"), File("d/x", b"x"), File("d/y", b"y"), File("d/sub/z", b"z")],
            [Opaque("d/"), File("d/new", b"n")],
        ],
        1,
        1,
        [
            (".", "dir", ""),
            ("d", "dir", ""),
            ("d/.wh.sub", "file", ""),
            ("d/.wh.x", "file", ""),
            ("d/.wh.y", "file", ""),
            ("d/new", "file", "n"),
        ],
    ),
    "a directory removed and made again": (
        [[File("d/x", b"x"), File("d/keep", b"k")], [Whiteout("d")], [File("d/y", b"y")]],
        1,
        2,
        [
            (".", "dir", ""),
            ("d", "dir", ""),
            ("d/.wh.keep", "file", ""),
            ("d/.wh.x", "file", ""),
            ("d/y", "file", "y"),
        ],
    ),
    "what the range adds and removes itself leaves nothing": (
        [[File("base", b"b")], [File("tmp/log", b"l")], [Whiteout("tmp")]],
        1,
        2,
        [(".", "dir", "")],
    ),
    "a hardlink to a file below links to it": (
        [[File("a", b"data")], [Hardlink("b", "a")]],
        1,
        1,
        [(".", "dir", ""), ("b", "link", "a")],
    ),
    "a hardlink to a file below whose path the range removed carries its data": (
        [[File("a", b"data"), File("z", b"z")], [Hardlink("b", "a"), Hardlink("c", "a"), Whiteout("a")]],
        1,
        1,
        [(".", "dir", ""), (".wh.a", "file", ""), ("b", "file", "data"), ("c", "link", "b")],
    ),
    "a file replaced by a directory, a directory by a file": (
        [[File("p", b"p"), File("q/r", b"r")], [Dir("p/"), File("p/s", b"s"), File("q", b"q")]],
        1,
        1,
        [(".", "dir", ""), ("p", "dir", ""), ("p/s", "file", "s"), ("q", "file", "q")],
    ),
    "an entry through a symlink below lands where it resolves": (
        [[Dir("real/"), Symlink("link", "real")], [File("link/f", b"f")]],
        1,
        1,
        [(".", "dir", ""), ("real", "dir", ""), ("real/f", "file", "f")],
    ),
    "middle layers: the layer above still applies": (
        [
            [File("etc/a", b"a"), File("etc/b", b"b"), File("etc/c", b"c")],
            [Whiteout("etc/a"), File("etc/d", b"d")],
            [File("etc/b", b"B")],
            [Whiteout("etc/d"), Whiteout("etc/c")],
        ],
        1,
        2,
        [
            (".", "dir", ""),
            ("etc", "dir", ""),
            ("etc/.wh.a", "file", ""),
            ("etc/b", "file", "B"),
            ("etc/d", "file", "d"),
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_squashed_layer_is_the_range_as_one_layer(tmp_path: Path, case: str) -> None:
    layers, first, last, expected = CASES[case]
    src = layout(tmp_path, layers)
    out = squash(src, tmp_path / "out", first, last)
    assert members(out, first) == expected
    assert flat(out) == flat(src)  # the same final tree, entry for entry
    with open_image(src) as old, open_image(out) as new:
        kept = [*old.layers[:first], *old.layers[last + 1 :]]
        assert [layer.digest for layer in new.layers[:first] + new.layers[first + 1 :]] == [
            layer.digest for layer in kept
        ]
        assert len(new.layers) == len(old.layers) - (last - first)


def test_a_directory_below_keeps_its_metadata_when_something_under_it_changes(tmp_path: Path) -> None:
    src = layout(tmp_path, [[Dir("etc/", mode=0o700, mtime=5), File("etc/a", b"a")], [File("etc/b", b"b")]])
    out = squash(src, tmp_path / "out", 1, 1)
    with (
        open_image(out) as image,
        image.layers[1].open() as stream,
        tarfile.open(fileobj=io.BytesIO(stream.read(1 << 20))) as tar,
    ):
        etc = tar.getmember("etc")
    assert (etc.mode, etc.mtime) == (0o700, 5)
    assert flat(out) == flat(src)


@pytest.mark.parametrize("last", [0, 2, 3])
def test_from_the_base_the_layer_is_flattens_tar(tmp_path: Path, last: int) -> None:
    out = squash(f"oci:{SAMPLE}:1.1", tmp_path / "out", 0, last, compression="none")
    with open_image(out) as image:
        blob = image.layers[0].open_blob()
        tar = blob.read(1 << 24)
    assert tar == flat(f"oci:{SAMPLE}:1.1", upto=last)


def test_the_whole_sample_in_every_range_gives_the_same_tree(tmp_path: Path) -> None:
    src = f"oci:{SAMPLE}:1.1"
    expected = flat(src)
    for first in range(5):
        for last in range(first, 5):
            out = squash(src, tmp_path / f"out-{first}-{last}", first, last)
            assert flat(out) == expected, (first, last)


def _config(ref: str) -> dict[str, Any]:
    with open_image(ref) as image:
        config: dict[str, Any] = json.loads(image.config_bytes)
    return config


def test_config_and_history_are_carried_over(tmp_path: Path) -> None:
    layers = [[File(f"f{i}", str(i).encode())] for i in range(4)]
    history = [
        {"created": "2020-01-01T00:00:00Z", "created_by": "ADD base"},
        {"created": "2020-01-02T00:00:00Z", "created_by": "ENV A=1", "empty_layer": True},
        {"created": "2020-01-03T00:00:00Z", "created_by": "RUN one", "author": "me"},
        {"created": "2020-01-04T00:00:00Z", "created_by": "LABEL x=y", "empty_layer": True},
        {"created": "2020-01-05T00:00:00Z", "created_by": "RUN two", "comment": "c"},
        {"created": "2020-01-06T00:00:00Z", "created_by": "CMD sh", "empty_layer": True},
        {"created": "2020-01-07T00:00:00Z", "created_by": "RUN three"},
        {"created": "2020-01-08T00:00:00Z", "created_by": "USER app", "empty_layer": True},
    ]
    src = layout(tmp_path, layers, history=history, labels={"x": "y"}, cmd=["sh"], user="app")
    out = squash(src, tmp_path / "out", 1, 2)
    old, new = _config(src), _config(out)
    with open_image(src) as image:
        digest = str(image.manifest_digest)
        diff_ids = [str(d) for d in image.config.diff_ids]
    with open_image(out) as image:
        squashed_diff_id = str(image.layers[1].diff_id)
        assert hashlib.sha256(gzip.decompress(image.layers[1].open_blob().read(1 << 20))).hexdigest() == (
            squashed_diff_id.removeprefix("sha256:")
        )
    folded = history[1:5]
    assert new["history"] == [
        history[0],
        {
            "created": "2020-01-05T00:00:00Z",
            "created_by": f"imgtool squash --from 1 --to 2 {digest}",
            "comment": json.dumps(folded, separators=(",", ":")),
        },
        *history[5:],
    ]
    assert new["rootfs"] == {"type": "layers", "diff_ids": [diff_ids[0], squashed_diff_id, diff_ids[3]]}
    assert {k: v for k, v in new.items() if k not in ("history", "rootfs")} == {
        k: v for k, v in old.items() if k not in ("history", "rootfs")
    }


def test_the_manifest_keeps_its_fields_and_the_kept_descriptors(tmp_path: Path) -> None:
    src = layout(tmp_path, [[File(f"f{i}", b"x")] for i in range(3)], manifest_annotations={"a": "b"})
    out = squash(src, tmp_path / "out", 0, 1)
    with open_image(src) as image:
        old = json.loads(image.manifest_bytes)
    with open_image(out) as image:
        new = json.loads(image.manifest_bytes)
        config = image.config_bytes
        layer = image.layers[0]
        assert (layer.size, str(layer.digest)) == (
            len(blob := layer.open_blob().read(1 << 20)),
            "sha256:" + hashlib.sha256(blob).hexdigest(),
        )
    assert new == {
        **old,
        "config": {
            **old["config"],
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": str(layer.digest),
                "size": layer.size,
            },
            old["layers"][2],
        ],
    }


def test_history_rules() -> None:
    entries: list[dict[str, Any]] = [
        {"created_by": "0"},
        {"created_by": "e", "empty_layer": True},
        {"created_by": "1"},
    ]
    assert fold_history(entries, 0, 1, "s") == (
        [{"created_by": "s", "comment": json.dumps(entries, separators=(",", ":"))}],
        entries,
    )
    # Fewer entries than layers: the entry goes where the range's would be; nothing is folded.
    assert fold_history(entries[:1], 1, 2, "s") == ([entries[0], {"created_by": "s"}], [])


@pytest.mark.parametrize(
    ("compression", "media_type", "check"),
    [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd", lambda b: zstandard.decompress(b, 1 << 20)),
        ("none", "application/vnd.oci.image.layer.v1.tar", lambda b: b),
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip", gzip.decompress),
    ],
)
def test_compression(tmp_path: Path, compression: str, media_type: str, check: Any) -> None:
    src = layout(tmp_path, [[File("a", b"a" * 1000)], [File("b", b"b")]])
    out = squash(src, tmp_path / "out", compression=compression)
    with open_image(out) as image:
        layer = image.layers[0]
        tar = check(layer.open_blob().read(1 << 20))
    assert layer.media_type == media_type
    assert "sha256:" + hashlib.sha256(tar).hexdigest() == str(layer.diff_id)
    assert tar == flat(src)


def test_a_docker_archive_gets_docker_media_types_and_no_zstd(
    imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    archive = tmp_path / "d.tar"
    spec = ImageSpec(
        [make_layer([File("a", b"a")]), make_layer([Whiteout("a"), File("b", b"b")])], compression="none"
    )
    write_docker_archive(archive, [(spec, ["app:1"])])
    run = imgtool_cli("squash", "-q", str(archive), f"oci:{tmp_path / 'z'}:1", "--compress", "zstd")
    assert (run.code, run.stdout) == (2, "")
    assert run.stderr == (
        "imgtool: error: --compress zstd: the image has a Docker manifest, which has no zstd layer type; "
        "use gzip or none\n"
    )
    assert not (tmp_path / "z").exists()
    out = squash(str(archive), tmp_path / "out", 1, 1)
    with open_image(out) as image:
        assert image.manifest_media_type == "application/vnd.docker.distribution.manifest.v2+json"
        assert image.layers[1].media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert members(out, 1) == [(".", "dir", ""), (".wh.a", "file", ""), ("b", "file", "b")]
    assert flat(out) == flat(str(archive))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "5"], "--from 5: the image has layers 0 to 4"),
        (["--to", "-1"], "--to -1: the image has layers 0 to 4"),
        (["--from", "3", "--to", "1"], "--from 3 is above --to 1: the range is empty"),
    ],
)
def test_a_bad_range_is_a_usage_error_and_writes_nothing(
    imgtool_cli: ImgtoolCli, tmp_path: Path, args: list[str], message: str
) -> None:
    run = imgtool_cli("squash", f"oci:{SAMPLE}:1.1", f"oci:{tmp_path / 'out'}:x", *args)
    assert (run.code, run.stdout, run.stderr) == (2, "", f"imgtool: error: {message}\n")
    assert list(tmp_path.iterdir()) == []


def test_an_image_without_layers_has_nothing_to_squash(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    src = write_oci_layout(tmp_path / "src", [Entry(ImageSpec([]), ref="v")]).reference("v")
    run = imgtool_cli("squash", src, f"oci:{tmp_path / 'out'}:x")
    assert (run.code, run.stdout, run.stderr) == (
        2,
        "",
        f"imgtool: error: {src}: the image has no layers to squash\n",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_a_full_disk_is_one_error_and_writes_nothing(
    imgtool_cli: ImgtoolCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tempfile.TemporaryFile

    def full(**kw: Any) -> Any:  # the squashed layer's file is on a full disk, no other
        return open("/dev/full", "w+b") if kw.get("prefix") == "imgtool-squash-" else real(**kw)

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    run = imgtool_cli("squash", "-q", f"oci:{SAMPLE}:1.1", f"oci:{tmp_path / 'out'}:x")
    assert (run.code, run.stdout) == (1, "")
    assert run.stderr == (
        f"imgtool: error: {tempfile.gettempdir()}: No space left on device (writing the squashed layer); "
        "set TMPDIR to a larger directory\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_broken_layer_leaves_an_existing_layout_as_it_was(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    good = layout(tmp_path, [[File("a", b"a")], [File("b", b"b")]])
    dest = tmp_path / "dest"
    assert imgtool_cli("copy", "-q", good, f"oci:{dest}:old").code == 0
    before = sorted((p.relative_to(dest), p.read_bytes()) for p in dest.rglob("*") if p.is_file())
    bad = write_oci_layout(
        tmp_path / "bad",
        [Entry(ImageSpec([make_layer([File("a", b"a")]), make_layer([File("b", b"b")])]), ref="v")],
        mutate_blobs=_corrupt_last_layer,
    ).reference("v")
    run = imgtool_cli("squash", "-q", bad, f"oci:{dest}:new")
    assert run.code == 1
    assert run.stderr.startswith("imgtool: error: layer 1 (sha256:")
    assert run.stderr.count("\n") == 1
    assert sorted((p.relative_to(dest), p.read_bytes()) for p in dest.rglob("*") if p.is_file()) == before
    run = imgtool_cli("squash", "-q", bad, f"oci:{tmp_path / 'new'}:new")
    assert run.code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "dest", "src"]  # no new layout, no staging


def _corrupt_last_layer(blobs: dict[str, bytes]) -> None:
    """Change one byte of the gzip blob of the layer holding ``b`` (its digest then fails)."""
    for digest, data in blobs.items():
        if data[:2] == b"\x1f\x8b" and b"b" in gzip.decompress(data)[512:]:
            blobs[digest] = data[:-9] + bytes([data[-9] ^ 1]) + data[-8:]
            return
    raise AssertionError("no layer holds b")


def test_cli_text_and_json(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    run = imgtool_cli(
        "squash", f"oci:{SAMPLE}:1.1", f"oci:{tmp_path / 'out'}:x", "--from", "1", "--to", "3", "--json"
    )
    assert (run.code, run.stderr) == (0, "")
    doc = json.loads(run.stdout)
    with open_image(f"oci:{tmp_path / 'out'}:x") as image:
        layer = image.layers[1]
        manifest = str(image.manifest_digest)
        config = str(image.config_digest)
    assert {
        k: doc[k] for k in ("source", "destination", "first", "last", "layers_before", "layers_after")
    } == {
        "source": f"oci:{SAMPLE}:1.1",
        "destination": f"oci:{tmp_path / 'out'}:x",
        "first": 1,
        "last": 3,
        "layers_before": 5,
        "layers_after": 3,
    }
    assert doc["layer"]["digest"] == str(layer.digest)
    assert doc["layer"]["diff_id"] == str(layer.diff_id)
    assert (doc["manifest_digest"], doc["config_digest"]) == (manifest, config)
    assert [b["what"] for b in doc["copy"]["blobs"]] == ["layer 0", "layer 1", "layer 2", "config"]
    run = imgtool_cli("squash", f"oci:{SAMPLE}:1.1", f"oci:{tmp_path / 'out'}:y", "--from", "1", "--to", "3")
    assert (run.code, run.stderr) == (0, "")
    assert run.stdout.startswith(f"Squashed layers 1-3 of 5 into layer 1 ({layer.digest}, ")
    assert run.stdout.endswith(
        f" uncompressed)\nCopied {manifest} to oci:{tmp_path / 'out'}:y: "
        "0 blobs copied (0 B), 4 already there\n"
    )
