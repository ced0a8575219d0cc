"""flatten under constraints: a 1 GB file in bounded memory, and running without root."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from tests.helpers.childproc import run_child
from tests.helpers.imagefactory import (
    CharDev,
    Dir,
    Entry,
    Fifo,
    File,
    ImageSpec,
    Symlink,
    make_layer,
    write_oci_layout,
)
from tests.helpers.treesnap import snapshot

GIB = 1 << 30


class Zeros(io.RawIOBase):
    """``size`` zero bytes, produced as read (never held in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def big_layer_blob(path: Path, size: int) -> None:
    """A gzip layer holding one file of ``size`` zero bytes, written by streaming."""
    info = tarfile.TarInfo("big.bin")
    info.size = size
    info.mtime = 1_600_000_000
    with (
        path.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(info, io.BufferedReader(Zeros(size), 1 << 20))


@pytest.mark.slow
def test_a_1_gb_file_is_never_held_in_memory(tmp_path: Path) -> None:
    blob = tmp_path / "big.tar.gz"
    big_layer_blob(blob, GIB)
    small = make_layer([Dir("etc/"), File("etc/hostname", b"big\n")])
    write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([small, small]), ref="v1")])
    # The top layer becomes the streamed 1 GB one (manifest, config and index rewritten to match).
    ref = _replace_last_layer(tmp_path / "oci", blob)
    run = run_child(["flatten", ref, "-o", str(tmp_path / "out"), "-q"], tmp_path)
    assert (run.code, run.stderr) == (0, "")
    assert (tmp_path / "out" / "big.bin").stat().st_size == GIB
    assert run.max_rss < 150 << 20, f"peak RSS {run.max_rss >> 20} MiB"


def _replace_last_layer(layout: Path, blob_path: Path) -> str:
    """Point the top layer of the layout's image at ``blob_path`` (and fix manifest, config, index)."""
    import hashlib
    import json

    def sha256_file(path: Path) -> str:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()

    def diff_id(path: Path) -> str:
        digest = hashlib.sha256()
        with gzip.open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest()

    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes())
    layer_hex = sha256_file(blob_path)
    shutil.move(blob_path, blobs / layer_hex)
    manifest["layers"][-1].update(digest=f"sha256:{layer_hex}", size=(blobs / layer_hex).stat().st_size)
    config["rootfs"]["diff_ids"][-1] = f"sha256:{diff_id(blobs / layer_hex)}"
    config_bytes = json.dumps(config).encode()
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    (blobs / config_hex).write_bytes(config_bytes)
    manifest["config"].update(digest=f"sha256:{config_hex}", size=len(config_bytes))
    manifest_bytes = json.dumps(manifest).encode()
    manifest_hex = hashlib.sha256(manifest_bytes).hexdigest()
    (blobs / manifest_hex).write_bytes(manifest_bytes)
    index["manifests"][0].update(digest=f"sha256:{manifest_hex}", size=len(manifest_bytes))
    (layout / "index.json").write_text(json.dumps(index))
    return f"oci:{layout}:v1"


_UNPRIVILEGED: Final = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _unprivileged_python() -> str | None:
    """Why this interpreter cannot run as an unprivileged user (None when it can): an interpreter
    installed under root's home with its libpython beside it cannot load that library as nobody."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return "needs root and setpriv"
    probe = subprocess.run(
        [*_UNPRIVILEGED, sys.executable, "-c", "pass"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return f"{sys.executable} cannot run as an unprivileged user: {probe.stderr.strip()}"
    return None


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user can reach (pytest's own tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="imgtool-nonroot-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def test_without_root_ownership_and_devices_are_skipped_with_one_warning(shared_dir: Path) -> None:
    reason = _unprivileged_python()
    if reason is not None:
        pytest.skip(reason)
    tmp_path = shared_dir
    layer = make_layer(
        [
            Dir("etc/", mode=0o755),
            File("etc/owned", b"x", uid=1234, gid=5678),
            File("etc/also-owned", b"y", uid=42, gid=42),
            File("etc/suid", b"s", mode=0o4755),
            Symlink("etc/link", "owned"),
            Dir("dev/"),
            CharDev("dev/null", 1, 3, mode=0o666),
            CharDev("dev/zero", 1, 5, mode=0o666),
            Fifo("run-fifo", mode=0o600),
            Dir("ro/", mode=0o555),
            File("ro/inside", b"i", mode=0o444),
        ]
    )
    ref = write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([layer]), ref="v1")]).reference("v1")
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)
    for path in (tmp_path / "oci").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = {"PATH": os.environ["PATH"], "XDG_CACHE_HOME": str(work / "cache"), "HOME": str(work)}
    argv = [
        *_UNPRIVILEGED,
        sys.executable,
        "-m",
        "imgtool",
        "flatten",
        ref,
        "-o",
        str(work / "out"),
        "-q",
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        "imgtool: warning: not running as root: ownership of 9 entries was not set "
        "and 2 device nodes were not created\n"
    )
    tree = snapshot(work / "out")
    assert sorted(p.decode() for p in tree) == [
        "",
        "dev",
        "etc",
        "etc/also-owned",
        "etc/link",
        "etc/owned",
        "etc/suid",
        "ro",
        "ro/inside",
        "run-fifo",
    ]
    assert {(p, n.mode, n.uid) for p, n in tree.items() if p in (b"etc/suid", b"ro", b"ro/inside")} == {
        (b"etc/suid", 0o4755, 65534),
        (b"ro", 0o555, 65534),
        (b"ro/inside", 0o444, 65534),
    }
    assert tree[b"run-fifo"].type == "fifo"
    assert tree[b"etc/link"].link == b"owned"
