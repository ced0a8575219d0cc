"""Hostile image sources: deep JSON, wrongly typed config fields, FIFOs, index fan-out, odd descriptors,
and a compressed docker-save whose layer would fill the temporary directory.

Each command runs in a child process (``tests.helpers.childproc``), so a hang is a failed test (a timeout), a
traceback is seen as the child printed it, and peak memory is measured as ``test_limits.py`` does. The
rows of the "Image sources" table of docs/hostile-inputs.md are checked against ``SOURCE_ROWS`` below.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from imgtool.errors import ImageFormatError
from imgtool.image.model import MAX_JSON_DEPTH, load_json
from imgtool.sources.oci_layout import MAX_DESCRIPTORS
from tests.helpers.childproc import ChildRun, run_child
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    OCI_MANIFEST,
    REF_NAME,
    Entry,
    EntryLike,
    ExactTarInfo,
    File,
    ImageSpec,
    IndexSpec,
    Platform,
    RawDescriptor,
    canonical_json,
    incompressible,
    make_layer,
    sha256_digest,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout,
)
from tests.hostile.harness import error_message
from tests.hostile.test_limits import file_size_limit, tmpfs

MiB: Final = 1 << 20
RSS_LIMIT: Final = 256 * MiB
TIMEOUT: Final = 120.0
DEEP: Final = b"[" * 200_000
DOC = Path(__file__).resolve().parents[2] / "docs" / "hostile-inputs.md"


def run(args: list[str], cwd: Path, **kwargs: Any) -> ChildRun:
    """imgtool in a child: bounded in time, and its peak memory checked."""
    child = run_child(args, cwd, timeout=TIMEOUT, **kwargs)
    assert child.max_rss < RSS_LIMIT, f"peak RSS {child.max_rss / MiB:.0f} MiB"
    return child


def refused(child: ChildRun, pattern: str) -> str:
    message = error_message(child.stderr)
    assert re.fullmatch(pattern, message), message
    assert child.code == 1, (child.code, message)
    return message


def image(**kwargs: Any) -> ImageSpec:
    return ImageSpec([make_layer([File("a", b"a\n")])], **kwargs)


def raw_manifest(data: bytes, media_type: str = OCI_MANIFEST, ref: str = "v1") -> RawDescriptor:
    descriptor = {
        "mediaType": media_type,
        "digest": sha256_digest(data),
        "size": len(data),
        "annotations": {REF_NAME: ref},
    }
    return RawDescriptor(descriptor, blob=data)


# -- deeply nested JSON ---------------------------------------------------------------------------------

DEEP_ERROR: Final = rf".*: JSON nested more than {MAX_JSON_DEPTH} levels deep"


def deep_document(where: Path, document: str) -> str:
    if document == "manifest":
        return write_oci_layout(where, [raw_manifest(DEEP)]).reference("v1")
    if document == "config":
        return write_oci_layout(where, [Entry(image(raw_config=DEEP), ref="v1")]).reference("v1")
    if document == "index.json":
        return write_oci_layout(where, [image()], extra_files={"index.json": DEEP}).reference()
    archive = where.with_suffix(".tar")
    result = write_docker_archive(
        archive, [(image(), ["x:1"])], mutate_files=lambda files: files.__setitem__("manifest.json", DEEP)
    )
    return result.path


@pytest.mark.parametrize("document", ["manifest", "config", "index.json", "manifest.json"])
@pytest.mark.parametrize("command", [["inspect"], ["inspect", "--json"], ["verify"], ["ls", "/"]])
def test_deeply_nested_json_is_one_named_error(document: str, command: list[str], tmp_path: Path) -> None:
    ref = deep_document(tmp_path / "img", document)
    child = run([command[0], ref, *command[1:]], tmp_path)
    message = refused(child, DEEP_ERROR)
    assert (document if document != "config" else "config sha256:") in message


def test_json_depth_bound_is_exact() -> None:
    deepest = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert load_json(deepest, "doc") == json.loads(deepest)
    with pytest.raises(ImageFormatError) as err:
        load_json(b"[" + deepest + b"]", "doc")
    assert str(err.value) == f"doc: JSON nested more than {MAX_JSON_DEPTH} levels deep"
    # Brackets inside strings, escaped quotes included, are text, not nesting.
    text = json.dumps({"a": "[" * 500 + '\\"' + "{" * 500}).encode()
    assert load_json(text, "doc") == json.loads(text)
    with pytest.raises(ImageFormatError, match="larger than the 10-byte limit for this document"):
        load_json(b"[" + b" " * 10 + b"]", "doc", limit=10)


# -- config fields of the wrong type ---------------------------------------------------------------------


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda config: config["config"].__setitem__(key, value)


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        ("Env", [1, None, {}], "field 'Env' must be a list of strings"),
        ("Env", "PATH=/bin", "field 'Env' must be a list of strings"),
        ("Entrypoint", [["sh"]], "field 'Entrypoint' must be a list of strings"),
        ("Cmd", {"sh": 1}, "field 'Cmd' must be a list of strings"),
        ("WorkingDir", 7, "field 'WorkingDir' must be a string"),
        ("User", ["root"], "field 'User' must be a string"),
        ("Labels", {"a": 1}, "field 'Labels' must map strings to strings"),
        ("Labels", ["a"], "field 'Labels' must map strings to strings"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_config_fields_of_the_wrong_type_are_named(
    key: str, value: Any, pattern: str, as_json: bool, tmp_path: Path
) -> None:
    ref = write_oci_layout(
        tmp_path / "oci", [Entry(image(edit_config=_set(key, value)), ref="v1")]
    ).reference()
    child = run(["inspect", ref, *(["--json"] if as_json else [])], tmp_path)
    refused(child, r".*: config sha256:[0-9a-f]{64} config: " + re.escape(pattern))


def test_a_lone_string_command_is_one_word(tmp_path: Path) -> None:
    """Docker reads a string Entrypoint or Cmd as a one-element list; so does imgtool."""
    spec = image(edit_config=lambda c: c["config"].update(Entrypoint="/bin/sh", Cmd=None))
    ref = write_oci_layout(tmp_path / "oci", [Entry(spec, ref="v1")]).reference()
    out = tmp_path / "out.json"
    child = run(["inspect", ref, "--json"], tmp_path, stdout=out)
    assert (child.code, child.stderr) == (0, "")
    doc = json.loads(out.read_text())
    assert (doc["entrypoint"], doc["cmd"]) == (["/bin/sh"], None)


# -- FIFOs in an OCI layout --------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["index.json", "oci-layout", "manifest", "config"])
def test_a_fifo_in_a_layout_is_refused_by_name(which: str, tmp_path: Path) -> None:
    result = write_oci_layout(tmp_path / "oci", [Entry(image(), ref="v1")])
    built = result.image
    names = {
        "index.json": "index.json",
        "oci-layout": "oci-layout",
        "manifest": "blobs/sha256/" + built.manifest_digest.partition(":")[2],
        "config": "blobs/sha256/" + built.config_digest.partition(":")[2],
    }
    target = tmp_path / "oci" / names[which]
    target.unlink()
    os.mkfifo(target)
    child = run(["inspect", result.reference("v1")], tmp_path)
    refused(child, re.escape(f"{result.path}: {names[which]} is not a regular file (a FIFO)"))


@pytest.mark.parametrize("command", [["verify"], ["flatten", "-o", "out.tar"]])
def test_a_fifo_layer_blob_is_refused_by_name(command: list[str], tmp_path: Path) -> None:
    result = write_oci_layout(tmp_path / "oci", [Entry(image(), ref="v1")])
    name = "blobs/sha256/" + result.image.layer_digests[0].partition(":")[2]
    (tmp_path / "oci" / name).unlink()
    os.mkfifo(tmp_path / "oci" / name)
    child = run([command[0], result.reference("v1"), *command[1:]], tmp_path)
    if command[0] == "verify":
        assert child.code == 1 and "Traceback" not in child.stderr, child.stderr
        return
    refused(child, re.escape(f"{result.path}: {name} is not a regular file (a FIFO)"))
    assert not (tmp_path / "out.tar").exists()


def test_an_archive_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "image.tar")
    child = run(["inspect", str(tmp_path / "image.tar")], tmp_path)
    refused(
        child, re.escape(f"{tmp_path / 'image.tar'}: not a regular file (a FIFO): cannot read an archive")
    )


# -- index fan-out -----------------------------------------------------------------------------------------


def fan_out(where: Path, levels: int, width: int = 12, archive: bool = False) -> str:
    """``levels`` nested indexes, each listing the next ``width`` times; the innermost lists one image."""
    level: ImageSpec | IndexSpec = image()
    for depth in range(levels):
        level = IndexSpec([level] * width, name=f"level{depth}")
    if archive:
        result = write_oci_archive(where.with_suffix(".tar"), [Entry(level, ref="v1")])
        assert Path(result.path).stat().st_size < 64 << 10
        return result.reference("v1")
    return write_oci_layout(where, [Entry(level, ref="v1")]).reference("v1")


@pytest.mark.parametrize("archive", [False, True], ids=["oci", "oci-archive"])
@pytest.mark.parametrize("levels", [5, 7])
def test_index_fan_out_reads_each_index_once(levels: int, archive: bool, tmp_path: Path) -> None:
    ref = fan_out(tmp_path / "oci", levels, archive=archive)
    out = tmp_path / "out.json"
    child = run(["inspect", ref, "--json"], tmp_path, stdout=out)
    assert (child.code, child.stderr) == (0, "")
    doc = json.loads(out.read_text())
    assert [entry["chosen"] for entry in doc["index"]["manifests"]] == [True]


def test_index_fan_out_with_a_platform_per_entry_is_bounded(tmp_path: Path) -> None:
    """Entries made distinct by their platforms: each index is expanded once per platform it inherits."""
    level: ImageSpec | IndexSpec = image(architecture="arm", variant="v3")
    for depth in range(7):
        entries = [Entry(level, platform=Platform("linux", "arm", f"v{i}")) for i in range(12)]
        level = IndexSpec(entries, name=f"level{depth}")
    ref = write_oci_layout(tmp_path / "oci", [Entry(level, ref="v1")]).reference("v1")
    out = tmp_path / "out.json"
    child = run(["inspect", ref, "--json", "--platform", "linux/arm/v3"], tmp_path, stdout=out)
    assert (child.code, child.stderr) == (0, "")
    doc = json.loads(out.read_text())
    assert doc["platform"] == "linux/arm/v3"
    assert len(doc["index"]["manifests"]) == 12


def test_too_many_descriptors_are_refused(tmp_path: Path) -> None:
    descriptors = [
        {"mediaType": OCI_MANIFEST, "digest": sha256_digest(b"%d" % i), "size": 2}
        for i in range(MAX_DESCRIPTORS + 1)
    ]
    index = canonical_json({"schemaVersion": 2, "manifests": descriptors})
    result = write_oci_layout(tmp_path / "oci", [image()], extra_files={"index.json": index})
    child = run(["inspect", result.reference()], tmp_path)
    refused(
        child,
        re.escape(f"{result.path}: index.json: the layout's indexes list more than ")
        + f"{MAX_DESCRIPTORS} descriptors in all",
    )


def test_nested_indexes_beyond_the_bound_are_refused(tmp_path: Path) -> None:
    ref = fan_out(tmp_path / "oci", 9, width=1)
    child = run(["inspect", ref], tmp_path)
    refused(child, r".*: image indexes nested more than 8 deep")


def test_a_long_choice_is_listed_in_short(tmp_path: Path) -> None:
    images = [ImageSpec([make_layer([File("a", b"%d" % i)])]) for i in range(40)]
    result = write_oci_layout(tmp_path / "oci", [Entry(spec, platform=None) for spec in images])
    child = run(["inspect", result.reference()], tmp_path)
    message = refused(
        child,
        r".*: holds several images without platforms: (sha256:[0-9a-f]{64}, ){4}"
        r"sha256:[0-9a-f]{64} and 35 more",
    )
    assert len(message) < 500


def test_long_lists_of_archive_images_and_tags_are_short(tmp_path: Path) -> None:
    images = [(ImageSpec([make_layer([File("a", b"%d" % i)])]), [f"x{i}:1", f"y{i}:1"]) for i in range(40)]
    save = write_docker_archive(tmp_path / "save.tar", images)
    child = run(["inspect", save.path], tmp_path)
    shown = "; ".join(f"@{i} x{i}:1, y{i}:1" for i in range(5))
    refused(child, re.escape(f"{save.path}: holds 40 images, name one of: {shown} and 35 more"))
    child = run(["inspect", f"docker-archive:{save.path}:z:1"], tmp_path)
    present = ", ".join(sorted(tag for _, tags in images for tag in tags)[:5])
    refused(child, re.escape(f"{save.path}: no image tagged 'z:1'; tags present: {present} and 75 more"))


# -- descriptors of an unexpected media type -----------------------------------------------------------------

ODD_TYPE: Final = "application/vnd.oci.descriptor.v1+json"


def odd_layout(where: Path) -> tuple[str, ImageSpec]:
    """Descriptors typed ``application/vnd.oci.descriptor.v1+json`` (go-containerregistry's test_index has
    one): ref 2's blob is the manifest itself, ref 5's a descriptor of it; ref 3's blob is other JSON, and
    ref 4's blob is missing."""
    one, two = image(), ImageSpec([make_layer([File("b", b"b\n")])])
    built_two = two.build()
    descriptor_of_two = {
        "mediaType": OCI_MANIFEST,
        "digest": built_two.manifest_digest,
        "size": built_two.manifest_size,
    }
    entries: list[EntryLike] = [
        Entry(one, ref="1"),
        RawDescriptor({**descriptor_of_two, "mediaType": ODD_TYPE, "annotations": {REF_NAME: "2"}}),
        raw_manifest(canonical_json({"hello": "world"}), ODD_TYPE, ref="3"),
        RawDescriptor(
            {
                "mediaType": ODD_TYPE,
                "digest": sha256_digest(b"gone"),
                "size": 4,
                "annotations": {REF_NAME: "4"},
            }
        ),
        raw_manifest(canonical_json(descriptor_of_two), ODD_TYPE, ref="5"),
    ]
    result = write_oci_layout(where, entries, mutate_blobs=lambda blobs: blobs.update(built_two.blobs))
    return result.path, two


@pytest.mark.parametrize("ref", ["2", "5"])
def test_a_descriptor_of_an_odd_type_is_read_as_what_its_blob_is(ref: str, tmp_path: Path) -> None:
    path, two = odd_layout(tmp_path / "oci")
    out = tmp_path / "out.json"
    child = run(["inspect", f"oci:{path}:{ref}", "--json"], tmp_path, stdout=out)
    assert (child.code, child.stderr) == (0, "")
    doc = json.loads(out.read_text())
    built = two.build()
    assert (doc["manifest_digest"], doc["manifest_media_type"]) == (built.manifest_digest, OCI_MANIFEST)
    assert [layer["diff_id"] for layer in doc["layers"]] == built.diff_ids
    assert doc["tags"] == [ref]


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("3", "its blob is no image manifest or index"),
        ("4", f"its blob {sha256_digest(b'gone')} is missing"),
    ],
)
def test_a_descriptor_leading_to_no_image_says_why(ref: str, reason: str, tmp_path: Path) -> None:
    path, _ = odd_layout(tmp_path / "oci")
    child = run(["inspect", f"oci:{path}:{ref}"], tmp_path)
    expected = f"{path}: ref {ref!r} leads to no image: descriptor of media type {ODD_TYPE!r}: {reason}"
    refused(child, re.escape(expected))


@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")
def test_umoci_follows_a_descriptor_blob_too(tmp_path: Path) -> None:
    """The peer the choice follows: umoci unpacks ref 5 (a descriptor blob) as the image it describes, and
    fails on ref 2, reading the manifest as if it were a descriptor (imgtool uses it as the manifest)."""
    path, _ = odd_layout(tmp_path / "oci")
    results = {}
    for ref in ("2", "5"):
        proc = subprocess.run(
            ["umoci", "raw", "unpack", "--image", f"{path}:{ref}", str(tmp_path / f"rootfs{ref}")],
            capture_output=True,
            check=False,
            timeout=TIMEOUT,
        )
        results[ref] = (proc.returncode, proc.stderr.decode())
    assert results["5"][0] == 0, results["5"]
    assert (tmp_path / "rootfs5" / "b").read_bytes() == b"b\n"
    assert results["2"][0] != 0 and "invalid digest" in results["2"][1], results["2"]


# -- a compressed docker-save holding a big layer ------------------------------------------------------


def _tar_header(name: str, size: int) -> bytes:
    info = ExactTarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 1_600_000_000
    return info.tobuf(tarfile.PAX_FORMAT)


def big_gzip_docker_save(path: Path, size: int) -> None:
    """A docker-save tar, gzip-compressed as a whole, whose one layer holds ``size`` zero bytes.

    Written as a stream: neither the layer nor the archive is ever held in memory.
    """
    chunk = bytes(4 * MiB)

    def zeros(n: int) -> Iterator[bytes]:
        while n:
            piece = chunk[: min(n, len(chunk))]
            n -= len(piece)
            yield piece

    inner_head = _tar_header("big", size)
    inner_tail = bytes(-size % 512) + bytes(1024)
    layer_size = len(inner_head) + size + len(inner_tail)
    diff_id = hashlib.sha256(inner_head)
    for piece in zeros(size):
        diff_id.update(piece)
    diff_id.update(inner_tail)
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id.hexdigest()]},
        }
    )
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = canonical_json([{"Config": config_name, "RepoTags": ["big:1"], "Layers": ["l/layer.tar"]}])
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(path, "wb") as out:

        def feed(data: bytes) -> None:
            out.write(compressor.compress(data))

        for name, data in (("manifest.json", manifest), (config_name, config)):
            feed(_tar_header(name, len(data)) + data + bytes(-len(data) % 512))
        feed(_tar_header("l/layer.tar", layer_size) + inner_head)
        for piece in zeros(size):
            feed(piece)
        feed(inner_tail + bytes(-layer_size % 512) + bytes(1024))
        out.write(compressor.flush())


@pytest.fixture(scope="module")
def big_save(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bigsave") / "save.tar.gz"
    big_gzip_docker_save(path, 1 << 30)
    return path


def test_inspect_of_a_compressed_save_writes_no_temporary_file(big_save: Path, tmp_path: Path) -> None:
    """No file over 1 MiB may be written (RLIMIT_FSIZE): the 1 GiB layer is skipped while streaming."""
    assert big_save.stat().st_size < 8 * MiB
    out = tmp_path / "out.txt"
    child = run(["inspect", str(big_save)], tmp_path, stdout=out, preexec=file_size_limit(MiB))
    assert (child.code, child.stderr) == (0, "")
    text = out.read_text()
    assert "Tags:        big:1" in text
    assert re.search(r"^0 +sha256:\S+ +sha256:\S+ +1\.1 GB +docker tar\.gzip +none", text, re.MULTILINE), text


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_inspect_of_a_compressed_save_of_compressed_layers_writes_no_temporary_file(
    tmp_path: Path, compression: str
) -> None:
    """kaniko-style layers (compressed inside the archive), one of them larger than what the scan keeps
    in memory, in an archive compressed as a whole: the digest skopeo would give comes from the one
    streamed reading (no file over 1 MiB may be written), and equals that of the same archive
    uncompressed, where the layer files are read in place."""
    big = incompressible(6 * MiB, b"kaniko")
    spec = ImageSpec([make_layer([File("big", big)]), make_layer([File("small", b"s")])])
    plain, packed = tmp_path / "save.tar", tmp_path / "save.tar.gz"
    write_docker_archive(plain, [(spec, ["kaniko:1"])], layer_compression=compression)  # type: ignore[arg-type]
    write_docker_archive(packed, [(spec, ["kaniko:1"])], outer="gzip", layer_compression=compression)  # type: ignore[arg-type]
    digests = []
    for archive in (plain, packed):
        out = tmp_path / f"{archive.name}.json"
        child = run(["inspect", str(archive), "--json"], tmp_path, stdout=out, preexec=file_size_limit(MiB))
        assert (child.code, child.stderr) == (0, "")
        doc = json.loads(out.read_text())
        digests.append((doc["manifest_digest"], [layer["digest"] for layer in doc["layers"]]))
    assert digests[0] == digests[1]
    verify = run(["verify", str(packed)], tmp_path)
    assert verify.code == 0, verify.stderr


@contextlib.contextmanager
def small_tmpdir(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None] | None]]:
    """A 2 MiB tmpfs for TMPDIR; where mounting is not permitted, a directory and a 1 MiB file limit."""
    where = tmp_path / "smalltmp"
    with tmpfs(where, "2m") as mounted:
        yield where, None if mounted else file_size_limit(MiB)


def test_a_temporary_directory_too_small_is_named(tmp_path: Path) -> None:
    save = tmp_path / "save.tar.gz"
    big_gzip_docker_save(save, 16 * MiB)
    with small_tmpdir(tmp_path) as (where, preexec):
        env = {**os.environ, "TMPDIR": str(where)}
        child = run(["flatten", str(save), "-o", "out.tar"], tmp_path, env=env, preexec=preexec)
        what = f"decompressing {save} to read its layers"
        refused(
            child,
            re.escape(f"{where}: ")
            + rf"(not enough space \({re.escape(what)} needs \d+ bytes, \d+ free\)"
            + rf"|(File too large|No space left on device) \({re.escape(what)}\))"
            + "; set TMPDIR to a larger directory",
        )
        assert os.listdir(where) == []
    assert not (tmp_path / "out.tar").exists()


def test_a_temporary_directory_that_fills_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, imgtool_cli: ImgtoolCli
) -> None:
    """Where the free-space check passes but the disk fills all the same (it is shared), the error is the
    same one line, naming the directory and TMPDIR; nothing is left in it."""
    save = tmp_path / "save.tar.gz"
    big_gzip_docker_save(save, 16 * MiB)
    where = tmp_path / "smalltmp"
    with tmpfs(where, "2m") as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs is not permitted here")
        monkeypatch.setattr(tempfile, "tempdir", str(where))
        monkeypatch.setattr(shutil, "disk_usage", lambda _path: shutil._ntuple_diskusage(1 << 40, 0, 1 << 40))
        run = imgtool_cli("flatten", str(save), "-o", str(tmp_path / "out.tar"))
        message = error_message(run.stderr)
        assert message == (
            f"{where}: No space left on device (decompressing {save} to read its layers); "
            "set TMPDIR to a larger directory"
        )
        assert run.code == 1
        assert os.listdir(where) == []
    assert not (tmp_path / "out.tar").exists()


# -- the doc -------------------------------------------------------------------------------------------

SOURCE_ROWS: Final = [
    "| deeply nested JSON (200 000 `[`) as the manifest, config, `index.json` or `manifest.json` |",
    "| a config whose `Env`, `Entrypoint`, `Cmd`, `WorkingDir`, `User` or `Labels` has the wrong type |",
    "| a FIFO as `index.json`, `oci-layout`, a blob, or the archive itself |",
    "| index fan-out: 7 levels of nested indexes, each listing the next 12 times |",
    "| index.json listing more than 4096 descriptors; indexes nested more than 8 deep |",
    "| 40 images without platforms and no ref names; a docker-save of 40 images with 80 tags |",
    "| descriptors typed `application/vnd.oci.descriptor.v1+json` (as in go-containerregistry's tests) |",
    "| a 4 MB gzip-compressed docker-save holding a 1 GiB layer: `inspect` |",
    "| the same archive, `flatten`, with a `TMPDIR` too small for it |",
]


def test_doc_lists_every_source_case() -> None:
    lines = DOC.read_text(encoding="utf-8").splitlines()
    missing = [row for row in SOURCE_ROWS if not any(line.startswith(row) for line in lines)]
    assert missing == []
