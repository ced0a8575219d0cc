"""Reading a child's output as a slow consumer does: late, in small pieces, with pauses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Final

_START_LATE: Final = 0.5
_PIECE: Final = 16384
_PAUSE: Final = 0.0005


def read_slowly(read: Callable[[int], bytes]) -> bytes:
    """Everything ``read(n)`` gives until it gives nothing, starting late: the writer stays ahead."""
    time.sleep(_START_LATE)
    chunks = []
    while chunk := read(_PIECE):
        chunks.append(chunk)
        time.sleep(_PAUSE)
    return b"".join(chunks)


def flatten_through_slow_pipe(ref: str, *options: str) -> tuple[int, bytes, str]:
    """``imgtool flatten REF -o - OPTIONS`` in a child whose stdout is a pipe read slowly:
    its exit code, what came through the pipe, and its stderr."""
    with subprocess.Popen(
        [sys.executable, "-m", "imgtool", "flatten", ref, "-o", "-", *options],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        fd = proc.stdout.fileno()
        data = read_slowly(lambda n: os.read(fd, n))
        stderr = proc.stderr.read().decode("utf-8", "replace")
    return proc.returncode, data, stderr
