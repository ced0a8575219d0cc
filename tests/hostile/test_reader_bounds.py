"""What one member's headers may hold is bounded when the layer is read: memory and time stay small.

Each case is a small gzip layer that expands to what, before these bounds, made ``ls`` (or ``inspect`` of a
docker-save) hold hundreds of megabytes or run for most of a minute. Each runs in a child process whose
peak memory is measured (see ``tests/helpers/childproc.py``).
"""

from __future__ import annotations

import gzip
import hashlib
import re
import tarfile
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import pytest

from imgtool.layers.tarreader import XATTR_SIZE_MAX
from tests.helpers.childproc import run_child
from tests.helpers.imagefactory import (
    Entry,
    File,
    ImageSpec,
    Layer,
    Symlink,
    make_layer,
    member_header,
    write_docker_archive,
    write_oci_layout,
)
from tests.hostile.cases import layer_re
from tests.hostile.harness import error_message

MiB: Final = 1 << 20
PEAK_RSS: Final = 256 * MiB
SECONDS: Final = 20.0


def pax_record(key: str, value: bytes) -> bytes:
    payload = key.encode() + b"=" + value + b"\n"
    length = len(payload) + 2
    while len(b"%d " % length) + len(payload) != length:
        length += 1
    return b"%d " % length + payload


def pax_header(body: bytes) -> bytes:
    info = tarfile.TarInfo("PaxHeaders/x")
    info.type = b"x"
    info.size = len(body)
    return info.tobuf(tarfile.USTAR_FORMAT) + body + bytes(-len(body) % 512)


def member(name: str, data: bytes = b"", pax: dict[str, str] | None = None) -> bytes:
    info, _ = member_header(File(name, data))
    if pax:
        info.pax_headers = pax
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + data + bytes(-len(data) % 512)


def streamed_gzip(pieces: Iterable[bytes]) -> tuple[bytes, str]:
    """Pieces of an uncompressed tar, gzip-compressed and hashed as they come: (blob, diff_id)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    diff_id = hashlib.sha256()
    blob = []
    for piece in pieces:
        diff_id.update(piece)
        blob.append(compressor.compress(piece))
    blob.append(compressor.flush())
    return b"".join(blob), "sha256:" + diff_id.hexdigest()


def gzip_layer(pieces: Iterable[bytes]) -> Layer:
    blob, diff_id = streamed_gzip(pieces)
    return Layer(b"", compression="gzip", postprocess=lambda _tar: blob, diff_id=diff_id)


def consecutive_pax_headers(count: int = 400) -> Iterator[bytes]:
    """``count`` PAX headers, each one record of about 1 MB under its own key, before one file."""
    value = b"v" * (MiB - 64)
    for i in range(count):
        yield pax_header(pax_record(f"imgtool.k{i:05d}", value))
    yield member("after", b"data")
    yield bytes(1024)


def big_xattrs(count: int = 300, size: int = MiB - 1024) -> Iterator[bytes]:
    for i in range(count):
        yield member(f"f{i:04d}", b"x", {f"SCHILY.xattr.user.big{i}": "a" * size})
    yield bytes(1024)


def oci_ref(where: Path, layers: list[bytes | Layer]) -> str:
    return write_oci_layout(where / "oci", [Entry(ImageSpec(layers), ref="v1")]).reference("v1")


def run_bounded(args: list[str], where: Path) -> str:
    """Run imgtool in a child: it must fail with one line, within the memory and time bounds."""
    start = time.monotonic()
    run = run_child(args, where)
    elapsed = time.monotonic() - start
    assert run.max_rss < PEAK_RSS, f"peak RSS {run.max_rss >> 20} MiB"
    assert elapsed < SECONDS, f"took {elapsed:.1f} s"
    assert run.code == 1, run.stderr
    return error_message(run.stderr)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_consecutive_pax_headers_are_bounded_in_total(tmp_path: Path) -> None:
    ref = oci_ref(tmp_path, [gzip_layer(consecutive_pax_headers())])
    message = run_bounded(["ls", ref, "/", "-R"], tmp_path)
    assert re.fullmatch(
        layer_re(0)
        + re.escape(": tar header at offset 1049088: more than 1048576 bytes of PAX records for one entry"),
        message,
    ), message


def test_consecutive_pax_headers_in_a_gzipped_docker_save_are_bounded(tmp_path: Path) -> None:
    """The same headers in front of the archive's first member: ``inspect`` reads the archive's headers."""
    plain = tmp_path / "plain.tar"
    write_docker_archive(plain, [(ImageSpec([make_layer([File("a", b"a")])]), ["hostile:v1"])])
    archive = tmp_path / "image.tar.gz"
    headers = list(consecutive_pax_headers())[:-2]
    with gzip.open(archive, "wb", compresslevel=6) as out:
        for piece in headers:
            out.write(piece)
        out.write(plain.read_bytes())
    message = run_bounded(["inspect", f"docker-archive:{archive}"], tmp_path)
    assert (
        message
        == f"{archive}: tar header at offset 1049088: more than 1048576 bytes of PAX records for one entry"
    )


def test_big_xattrs_are_refused_at_the_kernels_limit(tmp_path: Path) -> None:
    ref = oci_ref(tmp_path, [gzip_layer(big_xattrs())])
    message = run_bounded(["ls", ref, "/", "-R"], tmp_path)
    expected = (
        ": entry 'f0000': extended attribute 'user.big0' has a value of 1047552 bytes "
        "(the limit is 65536, XATTR_SIZE_MAX)"
    )
    assert re.fullmatch(layer_re(0) + re.escape(expected), message), message
    assert not list((tmp_path / "cache").rglob("sha256/*"))  # nothing cached for a refused layer


def xattrs_at_the_limit(count: int, distinct: bool) -> Iterator[bytes]:
    """``count`` files with one 64 KiB ``user.*`` xattr each: all different, or all the same."""
    for i in range(count):
        value = (f"{i:08d}" if distinct else "same    ") + "a" * (XATTR_SIZE_MAX - 8)
        yield member(f"f{i:05d}", b"x", {"SCHILY.xattr.user.tag": value})
    yield bytes(1024)


def test_distinct_xattrs_are_bounded_per_layer(tmp_path: Path) -> None:
    """1,100 files each with a different 64 KiB value (each within the kernel's limits): 69 MiB in all."""
    ref = oci_ref(tmp_path, [gzip_layer(xattrs_at_the_limit(1100, distinct=True))])
    message = run_bounded(["ls", ref, "/", "-R"], tmp_path)
    expected = ": entry 'f01023': more than 67108864 bytes of distinct extended attributes in the archive"
    assert re.fullmatch(layer_re(0) + re.escape(expected), message), message


def test_repeated_xattrs_are_kept_once_in_memory_and_in_the_cache(tmp_path: Path) -> None:
    """4,000 files with the same 64 KiB value (250 MiB if each kept its own copy)."""
    ref = oci_ref(tmp_path, [gzip_layer(xattrs_at_the_limit(4000, distinct=False))])
    run = run_child(["ls", ref, "/"], tmp_path, stdout=tmp_path / "out")
    assert (run.code, run.stderr) == (0, "")
    assert run.max_rss < 128 * MiB, f"peak RSS {run.max_rss >> 20} MiB"
    assert len(re.findall(r" /f\d{5}$", (tmp_path / "out").read_text(), re.MULTILINE)) == 4000
    [cached] = (tmp_path / "cache").rglob("sha256/*")
    assert cached.stat().st_size < MiB
    flat = run_child(["flatten", ref, "-o", str(tmp_path / "rootfs.tar")], tmp_path)
    assert (flat.code, flat.stderr) == (
        0,
        f"imgtool: wrote 4001 paths (4.0 KB of file data) to {tmp_path / 'rootfs.tar'}\n",
    )
    with tarfile.open(tmp_path / "rootfs.tar") as tar:
        last = tar.getmember("f03999")
        assert last.pax_headers["SCHILY.xattr.user.tag"] == "same    " + "a" * (XATTR_SIZE_MAX - 8)


def test_a_long_symlink_target_is_refused_when_read(tmp_path: Path) -> None:
    target = "./" * 400_000 + "real"
    layer = make_layer(
        [File("real/keep", b"k"), Symlink("x", target), *(File(f"x/f{i:04d}", b"") for i in range(2000))]
    )
    ref = oci_ref(tmp_path, [layer])
    message = run_bounded(["ls", ref, "/", "-R"], tmp_path)
    expected = ": entry 'x': symlink target of 800004 bytes (the limit is 4095, the kernel's PATH_MAX)"
    assert re.fullmatch(layer_re(0) + re.escape(expected), message), message


def test_a_symlink_target_at_the_limit_is_read(tmp_path: Path) -> None:
    target = "./" * 2045 + "real"  # 4094 bytes
    layer = make_layer(
        [File("real/keep", b"k"), Symlink("x", target), *(File(f"x/f{i:04d}", b"") for i in range(2000))]
    )
    ref = oci_ref(tmp_path, [layer])
    start = time.monotonic()
    run = run_child(["ls", ref, "/real"], tmp_path, stdout=tmp_path / "out")
    assert (run.code, run.stderr) == (0, "")
    assert time.monotonic() - start < SECONDS
    listed = (tmp_path / "out").read_text()
    assert "/real/f1999" in listed and "/real/keep" in listed


def test_a_deep_path_is_refused_when_read(tmp_path: Path) -> None:
    layer = make_layer([File("a/" * 30_000 + "f", b"deep")])
    ref = oci_ref(tmp_path, [layer])
    message = run_bounded(["ls", ref, "/", "-R"], tmp_path)
    expected = ": entry '" + "a/" * 100 + "...' at offset 60928: name of 60001 bytes (the limit is 8192)"
    assert re.fullmatch(layer_re(0) + re.escape(expected), message), message


def test_a_path_at_the_limit_is_read(tmp_path: Path) -> None:
    deep = "a/" * 4095 + "f"  # 8191 bytes, 4096 components
    ref = oci_ref(tmp_path, [make_layer([File(deep, b"deep")])])
    start = time.monotonic()
    run = run_child(["cat", ref, "/" + deep], tmp_path, stdout=tmp_path / "out")
    assert (run.code, run.stderr) == (0, "")
    assert (tmp_path / "out").read_bytes() == b"deep"
    assert run.max_rss < PEAK_RSS, f"peak RSS {run.max_rss >> 20} MiB"
    assert time.monotonic() - start < SECONDS
