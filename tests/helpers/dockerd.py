"""A private dockerd for the tests: its state, sockets and pid file all in one directory of the
test's, never the machine's; started, asked through the docker CLI, and stopped by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from benchmarks.services import MAX_SOCKET_PATH, unmount_below


def docker(sock: Path, *args: str) -> str:
    """The docker CLI against the daemon listening on ``sock``; its stdout."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, env=env).stdout


def start_dockerd(base: Path, driver: str) -> subprocess.Popen[bytes] | None:
    """A dockerd whose every file is below ``base``, once it answers; None if it dies first (its
    output is in ``base/log``)."""
    longest = f"{base}/exec/containerd/containerd-debug.sock"
    if len(longest) > MAX_SOCKET_PATH:
        raise ValueError(f"{base}: too long a directory for a daemon (containerd's sockets would not fit)")
    argv = [
        "dockerd",
        f"--data-root={base}/data",
        f"--exec-root={base}/exec",
        f"--host=unix://{base}/sock",
        f"--pidfile={base}/pid",
        f"--storage-driver={driver}",
        "--iptables=false",
        "--bridge=none",
    ]
    with open(base / "log", "wb") as log:
        daemon = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            unmount_below(base)
            return None
        try:
            docker(base / "sock", "version")
        except subprocess.CalledProcessError:
            time.sleep(0.2)
        else:
            return daemon
    stop_dockerd(daemon, base)
    return None


def stop_dockerd(daemon: subprocess.Popen[bytes], base: Path) -> None:
    """SIGTERM to its PID, then SIGKILL if it has not gone in 30 s; then what it left mounted below
    ``base`` is unmounted (a daemon that died early leaves its data root bind-mounted over itself,
    in the machine's mount table: the directory could not be removed)."""
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
    finally:
        unmount_below(base)
