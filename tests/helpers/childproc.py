"""Running imgtool in a child process and measuring its peak memory honestly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final


@dataclass(frozen=True)
class ChildRun:
    code: int
    stderr: str
    max_rss: int  # bytes


def run_child(
    args: list[str],
    cwd: Path,
    *,
    stdout: Path | None = None,
    preexec: Callable[[], None] | None = None,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> ChildRun:
    """Run imgtool's CLI in a child; returns its exit code, stderr and peak resident memory.

    The peak is the child's own VmHWM, read as it exits: getrusage() would also count what the child
    held between fork and exec, a copy of this (large) test process. A child still running after
    ``timeout`` seconds is killed and the test fails.
    """
    stamp = time.monotonic_ns()
    err_path, peak_path = cwd / f".stderr-{stamp}", cwd / f".peak-{stamp}"
    with open(err_path, "wb") as err, open(stdout or os.devnull, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _MEASURED_MAIN, str(peak_path), *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            preexec_fn=preexec,  # noqa: PLW1509 - sets a resource limit in the child only
            env=env,
        )
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"imgtool {' '.join(args)} still ran after {timeout} s") from None
    text = err_path.read_text("utf-8", "replace")
    err_path.unlink()
    peak = int(peak_path.read_text()) if peak_path.exists() else 0
    peak_path.unlink(missing_ok=True)
    return ChildRun(proc.returncode, text, peak)


# Runs imgtool's main() and, however it exits, writes the process's VmHWM (in bytes) to argv[1].
_MEASURED_MAIN: Final = """
import atexit, sys
peak_file = sys.argv.pop(1)
def record():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(peak_file, "w").write(str(int(line.split()[1]) * 1024))
atexit.register(record)
from imgtool.cli import main
main(sys.argv[1:])
"""
