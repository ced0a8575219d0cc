"""Resource limits and interrupts: decompression bombs, memory, a full disk, a read-only output, signals.

Memory is measured on a child process (``python -m imgtool``) through ``os.wait4``'s ``ru_maxrss``. A full
disk and a read-only output are real: a small tmpfs mounted for the test (as root). Where mounting is not
permitted, the full disk is simulated with RLIMIT_FSIZE in a child process (the error is then ``File too
large``), and the read-only case is skipped: as root, permissions alone do not stop a write.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import pytest

from tests.helpers.childproc import run_child
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Entry,
    ExactTarInfo,
    File,
    ImageSpec,
    Layer,
    Raw,
    RawBytes,
    make_layer,
    member_header,
    write_oci_layout,
)
from tests.helpers.treesnap import compare, snapshot
from tests.hostile.cases import layer_re
from tests.hostile.harness import Workspace, error_message

MiB: Final = 1 << 20
HEADERS_ONLY_RSS: Final = 150 * MiB
TINY_FILES_RSS: Final = 256 * MiB
PER_ENTRY_BYTES: Final = 1024
BOMB_LIMIT: Final = 16_000_000


# -- building big images without holding them in memory --------------------------------------------------


def zero_files_layer(files: list[tuple[str, int]], level: int = 1) -> Layer:
    """A gzip layer of zero-filled files, compressed and hashed as a stream: a decompression bomb."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    diff_id = hashlib.sha256()
    blob: list[bytes] = []
    chunk = bytes(4 * MiB)

    def feed(data: bytes) -> None:
        diff_id.update(data)
        blob.append(compressor.compress(data))

    for name, size in files:
        info = ExactTarInfo(name)
        info.size = size
        info.mode = 0o644
        info.mtime = 1_600_000_000
        feed(make_layer([Raw(info)], end_blocks=False))
        left = size
        while left:
            piece = chunk if left >= len(chunk) else chunk[:left]
            feed(piece)
            left -= len(piece)
        feed(bytes(-size % 512))
    feed(bytes(1024))
    blob.append(compressor.flush())
    data = b"".join(blob)
    return Layer(
        b"", compression="gzip", postprocess=lambda _tar: data, diff_id="sha256:" + diff_id.hexdigest()
    )


def tiny_files_layer(count: int, size: int = 1) -> bytes:
    """An uncompressed layer of ``count`` files of ``size`` bytes, 1000 per directory.

    One header comes from imagefactory; the others differ only in their 10-byte name, so they are that
    header with the name and the checksum patched (far faster than building 300 000 TarInfos).
    """
    info, _data = member_header(File("d0000/f000", b"x" * size, mtime=0), tarfile.USTAR_FORMAT)
    header = bytearray(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"))
    header[148:156] = b" " * 8
    base = sum(header) - sum(header[0:10])
    data = b"x" * size + bytes(-size % 512)
    chunks = []
    for i in range(count):
        name = b"d%04d/f%03d" % (i // 1000, i % 1000)
        header[0:10] = name
        header[148:156] = b"%06o\x00 " % (base + sum(name))
        chunks.append(bytes(header))
        chunks.append(data)
    return make_layer([RawBytes(b"".join(chunks))])


def oci_image(where: Path, layers: list[bytes | Layer], compression: str = "gzip") -> str:
    spec = ImageSpec(layers, compression=compression)  # type: ignore[arg-type]
    return write_oci_layout(where, [Entry(spec, ref="v1")]).reference("v1")


# -- mounts -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[bool]:
    """Mount a tmpfs of ``size`` at ``path`` for the block; yields False where mounting is not permitted."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        yield False
        return
    options = f"size={size},mode=0755" + (",ro" if read_only else "")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, check=False
    )
    if proc.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


# -- decompression bombs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 64 MiB file of zeros in a gzip layer of about 64 KiB."""
    where = tmp_path_factory.mktemp("bomb")
    return oci_image(where / "oci", [zero_files_layer([("bomb", 64 * MiB)], level=9)])


OUTPUTS: Final = {"dir": "out", "tar": "out.tar", "stdout": "-"}


@pytest.mark.parametrize("output", list(OUTPUTS))
def test_decompression_bomb_is_stopped_by_max_size(
    bomb: str, output: str, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    space = Workspace.create(tmp_path)
    target = OUTPUTS[output] if output == "stdout" else str(space.work / OUTPUTS[output])
    before = space.listing()
    run = imgtool_cli("flatten", bomb, "-o", target, "--max-size", str(BOMB_LIMIT))
    message = error_message(run.stderr)
    assert re.fullmatch(
        layer_re(0)
        + rf": uncompressed size exceeds the limit of {BOMB_LIMIT} bytes \(raise it with --max-size\)",
        message,
    ), message
    assert run.code == 1
    assert run.stdout_bytes == b""
    assert space.listing() == before
    assert space.leftovers() == []


def test_default_limit_is_the_free_space_at_the_output(
    bomb: str, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    small = tmp_path / "small"
    with tmpfs(small, "4m") as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs is not permitted here")
        for name in ("out", "out.tar"):
            run = imgtool_cli("flatten", bomb, "-o", str(small / name))
            message = error_message(run.stderr)
            found = re.fullmatch(
                layer_re(0) + r": uncompressed size exceeds the limit of (\d+) bytes .*", message
            )
            assert found is not None, message
            assert int(found.group(1)) <= 4 * MiB
            assert run.code == 1
            assert os.listdir(small) == []


# -- memory ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_file_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One 512 MiB zero-filled file (and a small one) in a gzip layer of a few MiB."""
    where = tmp_path_factory.mktemp("big")
    return oci_image(where / "oci", [zero_files_layer([("big/small", 5), ("big/zeros", 512 * MiB)])])


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["ls", "/", "-R", "--no-cache"], id="ls"),
        pytest.param(["which-layer", "/big/zeros", "--no-cache"], id="which-layer"),
        pytest.param(["cat", "/big/zeros", "--no-cache"], id="cat"),
        pytest.param(["verify"], id="verify"),
    ],
)
def test_reading_a_big_layer_streams(big_file_image: str, args: list[str], tmp_path: Path) -> None:
    command, *rest = args
    run = run_child([command, big_file_image, *rest], tmp_path)
    assert (run.code, run.stderr) == (0, "")
    assert run.max_rss < HEADERS_ONLY_RSS, f"{command}: peak RSS {run.max_rss / MiB:.0f} MiB"


@pytest.mark.slow
def test_many_tiny_files_flatten_with_bounded_memory(tmp_path: Path) -> None:
    peaks = {}
    for count in (100_000, 300_000):
        ref = oci_image(tmp_path / f"oci-{count}", [tiny_files_layer(count)], compression="none")
        out = tmp_path / f"out-{count}.tar"
        run = run_child(["flatten", ref, "-o", str(out), "--no-cache", "-q"], tmp_path)
        assert (run.code, run.stderr) == (0, "")
        with tarfile.open(out) as tar:
            assert sum(1 for member in tar if member.isfile()) == count
        out.unlink()
        peaks[count] = run.max_rss
    growth = (peaks[300_000] - peaks[100_000]) / 200_000
    shown = ", ".join(f"{count} files: {rss / MiB:.0f} MiB" for count, rss in peaks.items())
    assert growth < PER_ENTRY_BYTES, f"{growth:.0f} bytes per entry ({shown})"
    assert peaks[300_000] < TINY_FILES_RSS, shown


# -- a full disk, a read-only output ----------------------------------------------------------------------

NO_SPACE: Final = r"No space left on device"
TOO_LARGE: Final = r"File too large"


@pytest.mark.parametrize("output", ["out", "out.tar"])
def test_a_full_disk_is_one_error_and_leaves_nothing(
    output: str, tmp_path: Path, imgtool_cli: ImgtoolCli
) -> None:
    # For a directory: 600 files of 100 bytes pass the free-space check (60 kB) but take a 4 KiB page
    # each on tmpfs. For a tar: 3 MB of data, with --max-size raised so the limit does not stop it first.
    if output == "out":
        layer = make_layer([File(f"many/f{i:03d}", b"x" * 100) for i in range(600)])
    else:
        layer = make_layer([File("big", hashlib.sha256(b"seed").digest() * (3_000_000 // 32))])
    ref = oci_image(tmp_path / "oci", [layer])
    small = tmp_path / "small"
    with tmpfs(small, "2m") as mounted:
        if mounted:
            run = imgtool_cli("flatten", ref, "-o", str(small / output), "--max-size", "100000000")
            message = error_message(run.stderr)
            assert re.search(NO_SPACE, message), message
            assert run.code == 1
            assert os.listdir(small) == []
            return
        limit = 1_000_000
        if output == "out":
            layer = make_layer([File("big", b"x" * 2_000_000)])
            ref = oci_image(tmp_path / "oci2", [layer])
        child = run_child(
            ["flatten", ref, "-o", str(small / output), "--max-size", "100000000"],
            tmp_path,
            preexec=file_size_limit(limit),
        )
        message = error_message(child.stderr)
        assert re.search(f"{NO_SPACE}|{TOO_LARGE}", message), message
        assert child.code == 1
        assert os.listdir(small) == []


@pytest.mark.parametrize("output", ["out", "out.tar"])
def test_a_read_only_output_is_one_error(output: str, tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    ref = oci_image(tmp_path / "oci", [make_layer([File("a", b"a")])])
    frozen = tmp_path / "ro"
    with tmpfs(frozen, "1m", read_only=True) as mounted:
        if not mounted:
            pytest.skip(
                "mounting a read-only tmpfs is not permitted here (as root, modes do not stop writes)"
            )
        run = imgtool_cli("flatten", ref, "-o", str(frozen / output))
        message = error_message(run.stderr)
        assert message == f"{frozen / output}: cannot write there: Read-only file system"
        assert run.code == 1
        assert os.listdir(frozen) == []


# -- interrupts -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """1 GiB of zeros in eight files of one gzip layer, with its index already cached."""
    where = tmp_path_factory.mktemp("slow")
    ref = oci_image(where / "oci", [zero_files_layer([(f"big/z{i}", 128 * MiB) for i in range(8)])])
    cache = where / "cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        assert run_child(["ls", ref], where).code == 0
    return ref, cache


def _default_signals() -> None:
    """A shell that starts jobs in the background ignores SIGINT in them; imgtool must see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert proc.poll() is None, f"imgtool exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _staging(work: Path, name: str) -> list[Path]:
    return sorted(work.glob(f".{name}.imgtool-*"))


def _writing_dir(work: Path) -> bool:
    staged = _staging(work, "dest")
    return (
        bool(staged) and (staged[0] / "big" / "z0").exists() and (staged[0] / "big" / "z0").stat().st_size > 0
    )


def _writing_tar(work: Path) -> bool:
    staged = _staging(work, "out.tar")
    return bool(staged) and staged[0].stat().st_size >= 8 * MiB


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("output", ["dir", "tar"])
def test_an_interrupted_flatten_leaves_the_output_as_it_was(
    slow_image: tuple[str, Path], signum: int, output: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, cache = slow_image
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    space = Workspace.create(tmp_path)
    work = space.work
    if output == "dir":
        target = work / "dest"
        (target / "old").mkdir(parents=True)
        (target / "old" / "file").write_bytes(b"the previous run\n")
        writing: Callable[[], bool] = lambda: _writing_dir(work)  # noqa: E731
    else:
        target = work / "out.tar"
        target.write_bytes(b"the previous tar\n")
        writing = lambda: _writing_tar(work)  # noqa: E731
    before = snapshot(work, exclude_root_mtime=True)
    err_path = tmp_path / "stderr"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imgtool", "flatten", ref, "-o", str(target), "--force"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=_default_signals,  # noqa: PLW1509 - only resets signal dispositions
        )
        try:
            _wait_for(writing, proc, "it started writing file data")
            proc.send_signal(signum)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert (code, err_path.read_text()) == (130, "imgtool: error: interrupted\n")
    assert _staging(work, target.name) == []
    assert compare(snapshot(work, exclude_root_mtime=True), before) == []
