"""flatten's tar reaches every kind of output with the same bytes.

The CLI runs in a child process, as users run it, with the spool in use (the layers are decompressed
once and the writer then copies each file's data out of the spool and gives its pages back). Its
stdout is a pipe read slowly, a socket read slowly, /dev/null, a regular file, or a terminal.
"""

from __future__ import annotations

import fcntl
import functools
import io
import os
import random
import select
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Final

import pytest

from imgtool.console.output import human_size
from imgtool.flatten.tarwriter import TarWriter
from imgtool.merge.spool import release_range
from tests.flatten import test_flatten
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    File,
    Hardlink,
    ImageSpec,
    Whiteout,
    make_layer,
    write_oci_layout,
)
from tests.helpers.slowpipe import read_slowly
from tests.merge import test_spool

_RANDOM = random.Random(17)
MIB: Final = 1 << 20
_SO_SNDBUFFORCE: Final = 32  # Linux; Python's socket module does not name them
_SO_RCVBUFFORCE: Final = 33

# Files of 0.3 to 4 MiB, so that every copy out of the spool is large enough to be given back (and,
# into a regular file, to be sent by the kernel): one shadowed by an upper layer, one whited out,
# ones kept, one hardlinked from an upper layer.
LARGE_DATA: Final = {
    "data/shadowed": _RANDOM.randbytes(3 * MIB + 123),
    "data/kept": _RANDOM.randbytes(2 * MIB + 4000),
    "data/gone": _RANDOM.randbytes(1 * MIB),
    "big": _RANDOM.randbytes(4 * MIB + 1),
    "data/shadowed-upper": _RANDOM.randbytes(MIB + 777),
    "top": _RANDOM.randbytes(300_000),
}
LARGE_LAYERS: Final = [
    make_layer(
        [
            Dir("data/"),
            File("data/shadowed", LARGE_DATA["data/shadowed"]),
            File("data/small", b"small"),
            File("data/kept", LARGE_DATA["data/kept"]),
            File("data/gone", LARGE_DATA["data/gone"]),
            File("big", LARGE_DATA["big"]),
        ]
    ),
    make_layer(
        [
            File("data/shadowed", LARGE_DATA["data/shadowed-upper"]),
            Whiteout("data/gone"),
            Hardlink("link", "big"),
            File("top", LARGE_DATA["top"]),
        ]
    ),
]
LARGE_CONTENT: Final = {
    "data/shadowed": LARGE_DATA["data/shadowed-upper"],
    "data/small": b"small",
    "data/kept": LARGE_DATA["data/kept"],
    "big": LARGE_DATA["big"],
    "top": LARGE_DATA["top"],
}


@functools.cache
def sparse_layers() -> list[bytes]:
    """A GNU sparse member (PAX 1.0, as GNU tar writes it) of 8 MiB with three 1 MiB regions of data
    between holes: each region is copied out of the spool on its own."""
    with tempfile.TemporaryDirectory() as where:
        path = Path(where) / "sparse"
        with open(path, "wb") as out:
            out.truncate(8 * MIB)
            for number, region in enumerate(SPARSE_REGIONS):
                out.seek((2 * number + 1) * MIB)
                out.write(region)
        layer = subprocess.run(
            [*SPARSE_TAR, "--mtime=@1700000000", "-C", where, "-cf", "-", "sparse"],
            check=True,
            capture_output=True,
        ).stdout
    assert b"GNU.sparse.major=1" in layer
    return [layer, make_layer([File("after", b"after")])]


SPARSE_TAR: Final = ["tar", "--sparse", "--format=posix", "--sparse-version=1.0", "--owner=0", "--group=0"]
SPARSE_REGIONS: Final = [_RANDOM.randbytes(MIB) for _ in range(3)]
SPARSE_CONTENT: Final = b"".join(bytes(MIB) + region for region in SPARSE_REGIONS) + bytes(2 * MIB)

IMAGES: Final[dict[str, tuple[Callable[[], list[bytes]], str]]] = {
    "flatten-tree": (lambda: test_flatten.LAYERS, "gzip"),
    "spool-small": (lambda: test_spool.LAYERS, "gzip"),
    "spool-big": (lambda: test_spool.BIG_LAYERS, "gzip"),
    "large": (lambda: LARGE_LAYERS, "zstd"),
    "sparse": (sparse_layers, "zstd"),
}

# The CLI's own main(), with the spool's use and each release of spooled bytes written to argv[1].
_TRACED_MAIN: Final = """
import sys
log = open(sys.argv.pop(1), "w", buffering=1)
from imgtool.flatten import export
from imgtool.flatten import rootfs
from imgtool.merge import spool
real_init = spool.Spool.__init__
def init(self, *args, **kwargs):
    real_init(self, *args, **kwargs)
    print("spool", file=log)
spool.Spool.__init__ = init
def traced(real):
    def release_range(fd, offset, size):
        print("release", size, file=log)
        real(fd, offset, size)
    return release_range
export.release_range = traced(export.release_range)
rootfs.release_range = traced(rootfs.release_range)
from imgtool.cli import main
main(sys.argv[1:])
"""


@dataclass(frozen=True)
class Child:
    code: int
    stdout: bytes
    stderr: str
    spooled: bool
    released: list[int]  # the sizes of the spooled ranges given back after their copy


def image_ref(tmp_path: Path, name: str) -> str:
    layers, compression = IMAGES[name]
    spec = ImageSpec(layers(), compression=compression)  # type: ignore[arg-type]
    return write_oci_layout(tmp_path / f"oci-{name}", [Entry(spec, ref="v1")]).reference("v1")


def run_flatten(
    tmp_path: Path,
    args: list[str],
    stdout: int | IO[bytes] | socket.socket,
    consume: Callable[[subprocess.Popen[bytes]], bytes] | None = None,
) -> Child:
    """Run ``imgtool flatten ARGS`` with this stdout; ``consume`` reads what the child writes."""
    log = tmp_path / f"trace-{time.monotonic_ns()}"
    spool_tmp = tmp_path / "spool-tmp"
    spool_tmp.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", _TRACED_MAIN, str(log), "flatten", *args],
        stdin=subprocess.DEVNULL,
        stdout=stdout.fileno() if isinstance(stdout, socket.socket) else stdout,
        stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(spool_tmp)},
    )
    if isinstance(stdout, socket.socket):
        stdout.close()  # the parent's copy of the write end would keep the reader from seeing the end
    data = consume(proc) if consume else b""
    assert proc.stderr is not None
    with proc.stderr:
        stderr = proc.stderr.read().decode("utf-8", "replace")
    code = proc.wait()
    trace = log.read_text().splitlines() if log.exists() else []
    assert os.listdir(spool_tmp) == []  # the spool is gone
    return Child(
        code,
        data,
        stderr,
        "spool" in trace,
        [int(line.split()[1]) for line in trace if line.startswith("release ")],
    )


def slow_pipe_reader(proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stdout is not None
    with proc.stdout:
        fd = proc.stdout.fileno()
        return read_slowly(lambda n: os.read(fd, n))


def slow_socket_reader(sock: socket.socket) -> Callable[[subprocess.Popen[bytes]], bytes]:
    def consume(_proc: subprocess.Popen[bytes]) -> bytes:
        with sock:
            return read_slowly(sock.recv)

    return consume


def tar_contents(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: extracted.read()
            for m in tar.getmembers()
            if m.isfile() and (extracted := tar.extractfile(m)) is not None
        }


def summary_line(tar_bytes: bytes, dest: str) -> str:
    """The summary line flatten prints: paths and file data counted from the tar itself."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = tar.getmembers()
    data = sum(m.size for m in members if m.isfile())
    return f"imgtool: wrote {len(members)} paths ({human_size(data)} of file data) to {dest}\n"


@dataclass(frozen=True)
class Built:
    ref: str
    tar: bytes  # what ``-o FILE.tar`` writes


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Built]:
    """Each image once per module, with the tar ``flatten -o FILE.tar`` writes of it."""
    done: dict[str, Built] = {}

    def build(name: str) -> Built:
        if name not in done:
            tmp_path = tmp_path_factory.mktemp(name)
            ref = image_ref(tmp_path, name)
            child = run_flatten(
                tmp_path, [ref, "-o", str(tmp_path / "reference.tar"), "-q"], subprocess.DEVNULL
            )
            assert (child.code, child.stderr) == (0, "")
            assert_spooled(child, name)
            done[name] = Built(ref, (tmp_path / "reference.tar").read_bytes())
        return done[name]

    return build


def assert_spooled(child: Child, name: str) -> None:
    """The spool was used and, where files are large, their spooled bytes were given back."""
    assert child.spooled
    if name in ("large", "spool-big", "sparse"):
        assert max(child.released) >= 300_000


def test_the_large_images_hold_what_they_should(built: Callable[[str], Built]) -> None:
    assert tar_contents(built("large").tar) == LARGE_CONTENT
    assert tar_contents(built("sparse").tar) == {"sparse": SPARSE_CONTENT, "after": b"after"}


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_a_slowly_read_pipe_gets_the_bytes_of_the_file_output(
    tmp_path: Path, built: Callable[[str], Built], name: str
) -> None:
    image = built(name)
    piped = run_flatten(tmp_path, [image.ref, "-o", "-", "-q"], subprocess.PIPE, slow_pipe_reader)
    assert (piped.code, piped.stderr) == (0, "")
    assert_spooled(piped, name)
    assert piped.stdout == image.tar


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_a_slowly_read_socket_gets_the_bytes_of_the_file_output(
    tmp_path: Path, built: Callable[[str], Built], name: str
) -> None:
    image = built(name)
    ours, theirs = socket.socketpair()
    with ours:
        socketed = run_flatten(tmp_path, [image.ref, "-o", "-", "-q"], theirs, slow_socket_reader(ours))
    assert (socketed.code, socketed.stderr) == (0, "")
    assert_spooled(socketed, name)
    assert socketed.stdout == image.tar


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_stdout_redirected_to_a_file_gets_the_bytes_of_the_file_output(
    tmp_path: Path, built: Callable[[str], Built], name: str
) -> None:
    image = built(name)
    with open(tmp_path / "redirected.tar", "wb") as redirected:
        child = run_flatten(tmp_path, [image.ref, "-o", "-", "-q"], redirected)
    assert (child.code, child.stderr) == (0, "")
    assert_spooled(child, name)
    assert (tmp_path / "redirected.tar").read_bytes() == image.tar


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_dev_null_takes_the_tar_and_the_summary_says_so(
    tmp_path: Path, built: Callable[[str], Built], name: str
) -> None:
    image = built(name)
    child = run_flatten(tmp_path, [image.ref, "-o", "-"], subprocess.DEVNULL)
    assert (child.code, child.stderr) == (0, summary_line(image.tar, "stdout"))
    assert_spooled(child, name)


def test_a_tar_is_not_written_to_a_terminal(tmp_path: Path) -> None:
    ref = image_ref(tmp_path, "spool-small")
    master, slave = os.openpty()
    written = bytearray()

    def read_terminal(proc: subprocess.Popen[bytes]) -> bytes:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            readable, _, _ = select.select([master], [], [], 0.05)
            if readable:
                written.extend(os.read(master, 1 << 16))
            elif proc.poll() is not None:
                break
        return b""

    try:
        child = run_flatten(tmp_path, [ref, "-o", "-"], slave, read_terminal)
    finally:
        os.close(slave)
        os.close(master)
    assert child.code == 2
    assert child.stderr == "imgtool: error: refusing to write a tar to a terminal; use -o FILE or a pipe\n"
    assert bytes(written) == b""
    assert not child.spooled  # refused before any layer was read


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_output_files_get_the_mode_the_umask_gives(tmp_path: Path, umask: int, mode: int) -> None:
    ref = image_ref(tmp_path, "spool-small")
    outputs = [tmp_path / "out.tar", tmp_path / "paths.tsv", tmp_path / "forced.tar"]
    (tmp_path / "forced.tar").write_bytes(b"old")
    os.chmod(tmp_path / "forced.tar", 0o600)
    old = os.umask(umask)
    try:
        for args in (
            [ref, "-o", str(outputs[0]), "--provenance", str(outputs[1]), "-q"],
            [ref, "-o", str(outputs[2]), "--force", "-q"],
        ):
            child = run_flatten(tmp_path, args, subprocess.DEVNULL)
            assert (child.code, child.stderr) == (0, "")
    finally:
        os.umask(old)
    assert [oct(path.stat().st_mode & 0o7777) for path in outputs] == [oct(mode)] * 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert outputs[2].read_bytes() == outputs[0].read_bytes()


def _pipe_output() -> tuple[BinaryIO, Callable[[int], bytes], Callable[[], None]]:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 1 << 20)  # room for all of it: nothing blocks
    out = open(write_end, "wb")  # noqa: SIM115 - closed by the returned function

    def close() -> None:
        out.close()
        os.close(read_end)

    return out, lambda n: os.read(read_end, n), close


def _socket_output() -> tuple[BinaryIO, Callable[[int], bytes], Callable[[], None]]:
    ours, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, 4 << 20)
    ours.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 4 << 20)
    out = theirs.makefile("wb")

    def close() -> None:
        out.close()
        theirs.close()
        ours.close()

    return out, ours.recv, close


@pytest.mark.skipif(os.geteuid() != 0, reason="large pipe and socket buffers need root")
@pytest.mark.parametrize("output", [_pipe_output, _socket_output], ids=["pipe", "socket"])
def test_the_tar_writer_hands_over_copies_never_loans(
    tmp_path: Path, output: Callable[[], tuple[BinaryIO, Callable[[int], bytes], Callable[[], None]]]
) -> None:
    """What write_from gave a pipe or a socket stays what it was when the source changes at once.

    A transfer by reference (sendfile, splice) would leave the reader looking at the source's page
    cache: the pwrite below would show through, whatever the size of the kernel's pages.
    """
    data = random.Random(3).randbytes(512 << 10)
    source = tmp_path / "spooled"
    source.write_bytes(data)
    fd = os.open(source, os.O_RDWR)
    out, read, close = output()
    try:
        tar = TarWriter(out)
        tar.write_from(fd, 0, len(data))
        out.flush()
        os.pwrite(fd, bytes(len(data)), 0)  # changed as soon as the copy returned, then given back
        release_range(fd, 0, len(data))
        received = bytearray()
        while len(received) < len(data):
            received += read(len(data) - len(received))
    finally:
        close()
        os.close(fd)
    assert tar.bytes_written == len(data)
    assert bytes(received) == data


@pytest.mark.parametrize("append", [False, True], ids=["file", "appending-file"])
def test_the_tar_writer_copies_into_a_regular_file(tmp_path: Path, append: bool) -> None:
    data = random.Random(4).randbytes(600_000)
    source = tmp_path / "spooled"
    source.write_bytes(data)
    fd = os.open(source, os.O_RDWR)
    try:
        with open(tmp_path / "out", "ab") if append else open(tmp_path / "out", "wb") as out:
            tar = TarWriter(out)
            tar.write_data(b"head")
            tar.write_from(fd, 100, len(data) - 100)
            tar.write_data(b"tail")
        os.pwrite(fd, bytes(len(data)), 0)
        release_range(fd, 0, len(data))
    finally:
        os.close(fd)
    assert tar.bytes_written == len(data) - 100 + 8
    assert (tmp_path / "out").read_bytes() == b"head" + data[100:] + b"tail"
