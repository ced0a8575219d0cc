"""The few C library calls Python's ``os`` module does not offer, where the C library has them.

Each is an optimisation: where it is missing (another C library, another system) or fails,
imgtool does the same work, only with more memory or more system time.
"""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Any, Final

_FALLOC_FL_KEEP_SIZE: Final = 0x01
_FALLOC_FL_PUNCH_HOLE: Final = 0x02
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3


@functools.cache
def _function(name: str, *argtypes: Any) -> Any:
    """``name`` from the C library the interpreter runs on, or None."""
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    return function


def punch_hole(fd: int, offset: int, size: int) -> None:
    """Free a file's blocks (and cached pages) in a range; it then reads as zeros (Linux)."""
    fallocate = _function("fallocate", ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    if fallocate is not None:
        fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, size)


def keep_freed_memory() -> None:
    """Make glibc's allocator keep freed blocks of up to 16 MiB for reuse.

    Layers stream through buffers of a few hundred KiB. By default glibc maps each such
    block afresh and unmaps it when it is freed, so every new buffer costs a page fault per
    4 KiB: 130,000 to 170,000 faults for one cold which-layer on the benchmark image,
    against about 21,000 with this. It tunes the whole process, so only the command line calls it.
    """
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return
    mallopt = _function("mallopt", ctypes.c_int, ctypes.c_int) if glibc else None
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, 16 << 20)
        mallopt(_M_TRIM_THRESHOLD, 256 << 20)
