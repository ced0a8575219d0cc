"""The spool: layers decompressed for the index are reused for writing, never left behind."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

import imgtool
from imgtool.flatten import api as flatten_module
from imgtool.flatten.api import flatten
from imgtool.merge import spool as spool_module
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
from tests.helpers.treesnap import snapshot

LAYERS = [
    make_layer([Dir("a/"), File("a/one", b"1" * 5000), File("a/two", b"2"), File("b", b"b" * 70000)]),
    make_layer([Whiteout("a/two"), File("c", b"c"), Hardlink("d", "b")]),
]


_RANDOM = random.Random(5)
# Files large enough that the spool gives back their pages: one shadowed by the upper layer, one
# kept, one kept and linked to from the upper layer.
BIG_LAYERS = [
    make_layer(
        [
            Dir("a/"),
            File("a/shadowed", _RANDOM.randbytes(300_000)),
            File("a/kept", _RANDOM.randbytes(200_000)),
            File("big", _RANDOM.randbytes(500_000)),
        ]
    ),
    make_layer([File("a/shadowed", _RANDOM.randbytes(100_000)), Hardlink("link", "big")]),
]


def image_ref(tmp_path: Path, layers: list[bytes] = LAYERS) -> str:
    return write_oci_layout(tmp_path / "oci", [Entry(ImageSpec(layers), ref="v1")]).reference("v1")


@pytest.mark.parametrize("layers", [LAYERS, BIG_LAYERS], ids=["small", "big"])
@pytest.mark.parametrize("as_tar", [False, True])
def test_spooled_and_direct_writes_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_tar: bool, layers: list[bytes]
) -> None:
    ref = image_ref(tmp_path, layers)
    released: list[int] = []
    real_release = spool_module.release_range

    def release_range(fd: int, offset: int, size: int) -> None:
        released.append(size)
        real_release(fd, offset, size)

    monkeypatch.setattr(spool_module, "release_range", release_range)
    outputs = []
    for use_spool in (True, False):
        monkeypatch.setattr(flatten_module, "worth_spooling", lambda _d, _n, use=use_spool: use)
        out = tmp_path / f"out-{use_spool}{'.tar' if as_tar else ''}"
        with imgtool.open_image(ref) as img:
            flatten(img, str(out), as_tar=as_tar)
        outputs.append(out)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".imgtool-spool-")]
    if as_tar:
        assert outputs[0].read_bytes() == outputs[1].read_bytes()
    else:
        assert snapshot(outputs[0]) == snapshot(outputs[1])
    if layers is BIG_LAYERS:  # what the output does not need was given back before writing
        assert max(released) > 300_000


def test_spooled_layers_are_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[int]
) -> None:
    ref = image_ref(tmp_path)
    monkeypatch.setattr(flatten_module, "worth_spooling", lambda _d, _n: True)
    with imgtool.open_image(ref) as img:
        flatten(img, str(tmp_path / "out"))
    assert sorted(opened) == [0, 1]  # once each, to index them; the write pass used the spool
    assert (tmp_path / "out" / "d").read_bytes() == b"b" * 70000


def test_a_spool_that_cannot_be_written_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = image_ref(tmp_path)
    monkeypatch.setattr(flatten_module, "worth_spooling", lambda _d, _n: True)
    real_write = os.write
    spool_fds: set[int] = set()
    real_start = spool_module.Spool.start

    def start(self: spool_module.Spool, layer: int) -> tuple[int, str]:
        fd, path = real_start(self, layer)
        spool_fds.add(fd)
        return fd, path

    def full_disk(fd: int, data: bytes | memoryview) -> int:
        if fd in spool_fds:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    real_finish = spool_module.Spool.finish

    def finish(self: spool_module.Spool, layer: int, fd: int, path: str, complete: bool) -> None:
        spool_fds.discard(fd)
        assert not complete  # every copy failed, so none may be kept
        real_finish(self, layer, fd, path, complete)

    monkeypatch.setattr(spool_module.Spool, "start", start)
    monkeypatch.setattr(spool_module.Spool, "finish", finish)
    monkeypatch.setattr(os, "write", full_disk)
    with imgtool.open_image(ref) as img:
        flatten(img, str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b", "c", "d"]
    assert (tmp_path / "out" / "a" / "one").read_bytes() == b"1" * 5000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".imgtool-spool-")]


def test_release_range_frees_the_whole_pages_inside_the_range_and_nothing_else(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096
    path = tmp_path / "spooled"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDWR)
    try:
        spool_module.release_range(fd, 5000, 300_000)
        spool_module.release_range(fd, 400_000, 60_000)  # under 64 KiB of whole pages: kept
        after = os.pread(fd, len(data) + 1, 0)
    finally:
        os.close(fd)
    start, end = 8192, (5000 + 300_000) // 4096 * 4096
    assert after == data[:start] + bytes(end - start) + data[end:]
