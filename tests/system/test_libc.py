"""The C library calls imgtool makes where the C library has them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgtool.system.libc import punch_hole

_BUFFERS = """
import resource, threading
from imgtool.system.libc import keep_freed_memory
if {tuned}:
    keep_freed_memory()
def work():
    for i in range(300):  # one buffer freed while the next one is still in use, as in a stream
        a = b"a" * ((256 << 10) + (i % 7) * 100_000)
        b = b"b" * (1 << 20)
        del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
threads = [threading.Thread(target=work) for _ in range(2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(tuned: bool) -> int:
    run = subprocess.run(
        [sys.executable, "-c", _BUFFERS.format(tuned=tuned)], capture_output=True, text=True, check=True
    )
    return int(run.stdout)


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


@pytest.mark.skipif(not _glibc(), reason="keep_freed_memory tunes glibc's allocator; this is not glibc")
def test_keep_freed_memory_spares_a_page_fault_per_buffer_page() -> None:
    # Two threads stream buffers of 256 KiB to 1 MiB, as layers do: by default each is a fresh mapping.
    assert _page_faults(tuned=True) * 5 < _page_faults(tuned=False)


@pytest.mark.skipif(sys.platform != "linux", reason="holes are punched with Linux's fallocate")
def test_punch_hole_zeroes_the_range_and_keeps_the_size(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"x" * (256 << 10))
    fd = os.open(path, os.O_RDWR)
    try:
        punch_hole(fd, 64 << 10, 128 << 10)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * (64 << 10) + bytes(128 << 10) + b"x" * (64 << 10)
