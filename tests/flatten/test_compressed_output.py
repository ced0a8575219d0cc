"""flatten -o rootfs.tar.gz / .tgz / .tar.zst and --compress: a compressed tar holding exactly the
bytes of the plain tar, read back by gzip, zstd and GNU tar, written atomically, streamed to stdout."""

from __future__ import annotations

import gzip
import os
import subprocess
import zlib
from pathlib import Path
from typing import Final

import pytest
import zstandard

from imgtool.flatten import export
from imgtool.flatten.tarwriter import TarWriter
from tests.flatten import test_flatten, test_stream_output
from tests.helpers.cli import ImgtoolCli
from tests.helpers.realtools import requires
from tests.helpers.slowpipe import flatten_through_slow_pipe
from tests.helpers.treesnap import snapshot

GZIP_MAGIC: Final = b"\x1f\x8b\x08"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
# What reads each compression back, as users do.
DECOMPRESS: Final = {"gzip": ["gzip", "-dc"], "zstd": ["zstd", "-dcq"]}
SUFFIXES: Final = [(".tar.gz", "gzip"), (".tgz", "gzip"), (".tar.zst", "zstd")]


def decompressed_by_the_tool(kind: str, data: bytes) -> bytes:
    return subprocess.run([*DECOMPRESS[kind], "-"], input=data, capture_output=True, check=True).stdout


def decompressed(kind: str, data: bytes) -> bytes:
    """In-process, and checked to be one complete stream."""
    if kind == "gzip":
        return gzip.decompress(data)
    obj = zstandard.ZstdDecompressor().decompressobj()
    out = obj.decompress(data)
    assert obj.eof and not obj.unused_data
    return out


def magic(kind: str) -> bytes:
    return GZIP_MAGIC if kind == "gzip" else ZSTD_MAGIC


def plain_tar(imgtool_cli: ImgtoolCli, ref: str, path: Path, *options: str) -> bytes:
    run = imgtool_cli("flatten", ref, "-o", str(path), "-q", *options)
    assert (run.code, run.stderr) == (0, "")
    return path.read_bytes()


@requires("gzip", "zstd")
@pytest.mark.parametrize(("suffix", "kind"), SUFFIXES)
def test_the_suffix_gives_a_compressed_tar_of_the_plain_tars_bytes(
    tmp_path: Path, imgtool_cli: ImgtoolCli, suffix: str, kind: str
) -> None:
    ref = test_flatten.image_ref(tmp_path)
    plain = plain_tar(imgtool_cli, ref, tmp_path / "plain.tar")
    target = tmp_path / f"rootfs{suffix}"
    run = imgtool_cli("flatten", ref, "-o", str(target))
    summary = f"imgtool: wrote {len(test_flatten.EXPECTED)} paths (71 B of file data) to {target}\n"
    assert (run.code, run.stderr) == (0, summary)
    assert target.is_file()
    data = target.read_bytes()
    assert data.startswith(magic(kind))
    assert len(data) < len(plain)
    assert decompressed_by_the_tool(kind, data) == plain
    assert decompressed(kind, data) == plain
    assert sorted(os.listdir(tmp_path)) == sorted(["oci-gzip", "plain.tar", target.name])


@requires("gzip", "zstd")
@pytest.mark.parametrize(("suffix", "kind"), SUFFIXES)
def test_gnu_tar_extracts_the_tree_of_the_directory_output(
    tmp_path: Path, imgtool_cli: ImgtoolCli, suffix: str, kind: str
) -> None:
    ref = test_flatten.image_ref(tmp_path)
    assert imgtool_cli("flatten", ref, "-o", str(tmp_path / "dir"), "-q").code == 0
    target = tmp_path / f"rootfs{suffix}"
    assert imgtool_cli("flatten", ref, "-o", str(target), "-q").code == 0
    (tmp_path / "x").mkdir()
    flag = "--gzip" if kind == "gzip" else "--zstd"
    extract = ["tar", flag, "--xattrs", "--xattrs-include=*", "-C", str(tmp_path / "x"), "-xpf", str(target)]
    subprocess.run(extract, check=True)
    assert snapshot(tmp_path / "x") == snapshot(tmp_path / "dir")


@pytest.mark.parametrize(("suffix", "kind"), SUFFIXES)
def test_layers_and_provenance_work_as_with_a_plain_tar(
    tmp_path: Path, imgtool_cli: ImgtoolCli, suffix: str, kind: str
) -> None:
    ref = test_flatten.image_ref(tmp_path)
    plain_report = tmp_path / "plain.json"
    plain = plain_tar(
        imgtool_cli, ref, tmp_path / "plain.tar", "--layers", "1", "--provenance", str(plain_report)
    )
    target = tmp_path / f"rootfs{suffix}"
    report = tmp_path / "compressed.json"
    run = imgtool_cli("flatten", ref, "-o", str(target), "-q", "--layers", "1", "--provenance", str(report))
    assert (run.code, run.stderr) == (0, "")
    assert decompressed(kind, target.read_bytes()) == plain
    assert report.read_text() == plain_report.read_text()
    assert '"path": "/run/fifo"' in report.read_text()  # layer 2 whites it out
    assert '"path": "/srv/new"' not in report.read_text()  # layer 2 adds it


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_compress_sends_a_compressed_tar_through_a_slowly_read_pipe(tmp_path: Path, kind: str) -> None:
    """The large image: its layers are spooled, and its files are large enough that a plain tar file
    would get them by sendfile; the stream has the bytes of the compressed file, whose content is
    the plain tar."""
    ref = test_stream_output.image_ref(tmp_path, "large")
    for name, options in (("plain.tar", []), ("compressed", ["--compress", kind])):
        child = test_stream_output.run_flatten(
            tmp_path, [ref, "-o", str(tmp_path / name), "-q", *options], subprocess.DEVNULL
        )
        assert (child.code, child.stderr, child.spooled) == (0, "", True)
    plain = (tmp_path / "plain.tar").read_bytes()
    code, data, stderr = flatten_through_slow_pipe(ref, "--compress", kind, "-q")
    assert (code, stderr) == (0, "")
    assert data == (tmp_path / "compressed").read_bytes()
    assert decompressed(kind, data) == plain
    assert test_stream_output.tar_contents(plain) == test_stream_output.LARGE_CONTENT


@pytest.mark.parametrize(("suffix", "kind"), SUFFIXES)
def test_a_compressed_file_holds_large_files_copied_out_of_the_spool(
    tmp_path: Path, suffix: str, kind: str
) -> None:
    """Without an index in the cache the layers are spooled as they are indexed, and each large file
    is copied out of the spool: into a plain tar file by sendfile, into a compressed one never."""
    ref = test_stream_output.image_ref(tmp_path, "large")
    for name in ("plain.tar", f"rootfs{suffix}"):
        args = [ref, "-o", str(tmp_path / name), "-q", "--no-cache"]
        child = test_stream_output.run_flatten(tmp_path, args, subprocess.DEVNULL)
        assert (child.code, child.stderr) == (0, "")
        test_stream_output.assert_spooled(child, "large")
    plain = (tmp_path / "plain.tar").read_bytes()
    assert decompressed(kind, (tmp_path / f"rootfs{suffix}").read_bytes()) == plain


@pytest.mark.parametrize(
    ("name", "options", "kind", "warning"),
    [
        (
            "rootfs.tar.gz",
            ["--compress", "none"],
            "none",
            "an uncompressed tar to {out}, whose name says gzip",
        ),
        ("rootfs.tar.zst", ["--compress", "gzip"], "gzip", "a gzip tar to {out}, whose name says zstd"),
        ("rootfs.tar", ["--compress", "zstd"], "zstd", "a zstd tar to {out}, whose name says uncompressed"),
        ("rootfs.tgz", ["--compress", "gzip"], "gzip", None),
        ("rootfs", ["--compress", "gzip"], "gzip", None),  # a tar file, not a directory
        ("rootfs.img", ["--compress", "zstd"], "zstd", None),
        ("rootfs.tar.gz", ["--tar"], "gzip", None),
    ],
)
def test_compress_wins_over_the_name(
    tmp_path: Path,
    imgtool_cli: ImgtoolCli,
    name: str,
    options: list[str],
    kind: str,
    warning: str | None,
) -> None:
    ref = test_flatten.image_ref(tmp_path)
    plain = plain_tar(imgtool_cli, ref, tmp_path / "plain.tar")
    target = tmp_path / name
    run = imgtool_cli("flatten", ref, "-o", str(target), "-q", *options)
    expected = f"imgtool: warning: writing {warning.format(out=target)}\n" if warning else ""
    assert (run.code, run.stderr) == (0, expected)
    assert target.is_file()
    data = target.read_bytes()
    assert (data if kind == "none" else decompressed(kind, data)) == plain


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none"])
def test_compress_on_stdout(tmp_path: Path, imgtool_cli: ImgtoolCli, kind: str) -> None:
    ref = test_flatten.image_ref(tmp_path)
    plain = plain_tar(imgtool_cli, ref, tmp_path / "plain.tar")
    run = imgtool_cli("flatten", ref, "-o", "-", "--compress", kind)
    summary = f"imgtool: wrote {len(test_flatten.EXPECTED)} paths (71 B of file data) to stdout\n"
    assert (run.code, run.stderr) == (0, summary)
    assert (run.stdout_bytes if kind == "none" else decompressed(kind, run.stdout_bytes)) == plain


def test_stdout_stays_uncompressed_by_default(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = test_flatten.image_ref(tmp_path)
    run = imgtool_cli("flatten", ref, "-o", "-", "-q")
    assert run.stdout_bytes == plain_tar(imgtool_cli, ref, tmp_path / "plain.tar")


@pytest.mark.parametrize("level", ["1", "9"])
def test_a_gzip_level_is_zlibs_as_gzip_has_it(tmp_path: Path, imgtool_cli: ImgtoolCli, level: str) -> None:
    ref = test_flatten.image_ref(tmp_path)
    plain = plain_tar(imgtool_cli, ref, tmp_path / "plain.tar")
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / "r.tgz"), "-q", "--compress-level", level)
    assert (run.code, run.stderr) == (0, "")
    reference = zlib.compressobj(int(level), zlib.DEFLATED, 31)
    assert (tmp_path / "r.tgz").read_bytes() == reference.compress(plain) + reference.flush()


def test_a_zstd_level_is_used(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    """Level 19 and the default level 3 compress this tar to different bytes of the same content."""
    ref = test_flatten.image_ref(tmp_path)
    plain = plain_tar(imgtool_cli, ref, tmp_path / "plain.tar")
    outputs = {}
    for level in ("19", "3", None):
        target = tmp_path / f"r-{level}.tar.zst"
        options = ["--compress-level", level] if level else []
        assert imgtool_cli("flatten", ref, "-o", str(target), "-q", *options).code == 0
        outputs[level] = target.read_bytes()
        assert decompressed("zstd", outputs[level]) == plain
    assert outputs["3"] == outputs[None]
    assert len(outputs["19"]) < len(outputs["3"])


USAGE: Final = " (see 'imgtool flatten --help')"


@pytest.mark.parametrize(
    ("name", "options", "error"),
    [
        (
            "r.tar.gz",
            ["--compress", "bzip2"],
            "Invalid value for '--compress': 'bzip2' is not one of 'gzip', 'zstd', 'none'." + USAGE,
        ),
        (
            "r.tar.gz",
            ["--compress", ""],
            "Invalid value for '--compress': '' is not one of 'gzip', 'zstd', 'none'." + USAGE,
        ),
        ("r.tar.gz", ["--compress-level", "10"], "--compress-level 10: gzip levels are 1 to 9"),
        ("r.tar.gz", ["--compress-level", "0"], "--compress-level 0: gzip levels are 1 to 9"),
        ("r.tar.zst", ["--compress-level", "20"], "--compress-level 20: zstd levels are 1 to 19"),
        ("r.tar.zst", ["--compress-level", "-1"], "--compress-level -1: zstd levels are 1 to 19"),
        (
            "r.tar.zst",
            ["--compress-level", "fast"],
            "Invalid value for '--compress-level': 'fast' is not a valid integer." + USAGE,
        ),
        (
            "r.tar",
            ["--compress-level", "3"],
            "--compress-level 3: the output is not compressed (use --compress, or a .tar.gz, .tgz or "
            ".tar.zst name)",
        ),
        (
            "r.tar.gz",
            ["--compress", "none", "--compress-level", "3"],
            "--compress-level 3: the output is not compressed (use --compress, or a .tar.gz, .tgz or "
            ".tar.zst name)",
        ),
        (
            "rootfs",
            ["--compress-level", "3"],
            "--compress-level 3: the output is not compressed (use --compress, or a .tar.gz, .tgz or "
            ".tar.zst name)",
        ),
    ],
)
def test_bad_compression_options_fail_in_one_line_before_reading(
    tmp_path: Path, imgtool_cli: ImgtoolCli, opened: list[int], name: str, options: list[str], error: str
) -> None:
    ref = test_flatten.image_ref(tmp_path)
    run = imgtool_cli("flatten", ref, "-o", str(tmp_path / name), *options)
    assert (run.code, run.stdout, run.stderr) == (2, "", f"imgtool: error: {error}\n")
    assert opened == []
    assert sorted(os.listdir(tmp_path)) == ["oci-gzip"]


def test_a_compression_option_for_an_image_that_does_not_exist_is_checked_first(
    tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    run = imgtool_cli(
        "flatten", str(tmp_path / "absent.tar"), "-o", str(tmp_path / "r.tgz"), "--compress-level", "99"
    )
    assert (run.code, run.stderr) == (2, "imgtool: error: --compress-level 99: gzip levels are 1 to 9\n")


@pytest.mark.parametrize(("suffix", "kind"), SUFFIXES)
def test_a_failure_leaves_no_compressed_file_behind(
    tmp_path: Path, imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch, suffix: str, kind: str
) -> None:
    ref = test_flatten.image_ref(tmp_path)
    target = tmp_path / f"rootfs{suffix}"
    target.write_bytes(b"previous run")
    calls = 0
    real = export._LayerCursor.copy

    def fail_later(self: export._LayerCursor, *args: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(28, "No space left on device")
        real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(export._LayerCursor, "copy", fail_later)
    run = imgtool_cli(
        "flatten", ref, "-o", str(target), "-q", "--force", "--provenance", str(tmp_path / "p.tsv")
    )
    assert (run.code, run.stderr) == (
        1,
        f"imgtool: error: {tmp_path}: No space left on device (writing {target.name}); choose another -o\n",
    )
    assert target.read_bytes() == b"previous run"
    assert sorted(os.listdir(tmp_path)) == sorted(["oci-gzip", target.name])


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_a_stream_that_fails_is_left_unended(
    tmp_path: Path, imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A reader of a compressed stream cut short by an error sees it truncated, never complete: what
    went out is the start of the whole stream, and no end was written after the failure."""
    ref = test_stream_output.image_ref(tmp_path, "large")
    whole = imgtool_cli("flatten", ref, "-o", "-", "-q", "--compress", kind)
    assert whole.code == 0
    real = TarWriter.close

    def fail_at_the_end(self: TarWriter) -> None:
        real(self)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(TarWriter, "close", fail_at_the_end)
    run = imgtool_cli("flatten", ref, "-o", "-", "-q", "--compress", kind)
    assert (run.code, run.stderr) == (1, "imgtool: error: Input/output error\n")
    assert len(run.stdout_bytes) > 1 << 20
    assert whole.stdout_bytes.startswith(run.stdout_bytes)
    assert len(run.stdout_bytes) < len(whole.stdout_bytes)
    if kind == "gzip":
        with pytest.raises(EOFError):
            gzip.decompress(run.stdout_bytes)
    else:
        obj = zstandard.ZstdDecompressor().decompressobj()
        obj.decompress(run.stdout_bytes)
        assert not obj.eof


def test_the_library_refuses_to_compress_a_directory(tmp_path: Path) -> None:
    from imgtool import open_image
    from imgtool.errors import UsageError
    from imgtool.flatten.api import flatten
    from imgtool.image.compression import Compression

    ref = test_flatten.image_ref(tmp_path)
    with (
        open_image(ref) as img,
        pytest.raises(
            UsageError, match=r"^.*/rootfs: a directory cannot be compressed; write a tar \(--tar\)$"
        ),
    ):
        flatten(img, str(tmp_path / "rootfs"), compression=Compression.GZIP)
    assert sorted(os.listdir(tmp_path)) == ["oci-gzip"]
