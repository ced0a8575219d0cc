"""The services the registry and Docker rows of ``run.py`` measure against, all on this machine.

- ``LocalRegistry``: ``docker-registry serve`` (distribution) on 127.0.0.1 and a free port, plain HTTP,
  no auth, filesystem storage in a directory of the run.
- ``CountingProxy``: a TCP proxy on 127.0.0.1 in front of it that counts the bytes going each way, so
  that a row can say how much it fetched (the HTTP headers included: what crossed the wire).
- ``PrivateDockerd``: a dockerd of its own (``--data-root``, ``--exec-root`` and its socket in
  directories of the run, no bridge, no iptables), stopped by its PID.
- ``write_docker_archive``: a ``docker load``-able tar of an OCI layout's image, streamed.

Nothing here listens beyond 127.0.0.1 or a unix socket, and nothing outlives ``close()``.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

PUMP_CHUNK: Final = 256 * 1024
# containerd refuses a unix socket whose path is longer (its debug socket is the longest dockerd makes).
MAX_SOCKET_PATH: Final = 104


class ServiceError(Exception):
    """A service did not start or an untimed preparation step failed; the message says which."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, limit: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip()
    except OSError:
        return ""


def unmount_below(directory: Path) -> list[str]:
    """Unmount (lazily, deepest first) every mount at or below ``directory``: what a dockerd that
    died, or did not undo its own, left mounted over its data root. Returns the mount points."""
    top = os.path.realpath(directory)
    found: list[str] = []
    with open("/proc/self/mountinfo", "rb") as mounts:
        for line in mounts:
            point = line.split(b" ")[4]
            # mountinfo escapes space, tab, newline and backslash as octal (\040 ...)
            text = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), point).decode(
                "utf-8", "surrogateescape"
            )
            if text == top or text.startswith(top + "/"):
                found.append(text)
    for mounted in sorted(found, key=len, reverse=True):
        subprocess.run(["umount", "-l", mounted], check=False, capture_output=True)
    return found


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------------------------------
# The registry.


class LocalRegistry:
    """``docker-registry serve CONFIG`` on 127.0.0.1, storage under ``directory``."""

    def __init__(self, directory: Path, *, timeout: float = 20.0) -> None:
        self.directory = directory
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: error, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: '{directory / 'storage'}'}}}}\n"
            f"http: {{addr: '127.0.0.1:{self.port}', secret: imgtool-benchmark}}\n"
        )
        self.log = directory / "registry.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise ServiceError(f"docker-registry did not start: {log_tail(self.log) or 'no output'}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        _stop(self.process, 10)


# --------------------------------------------------------------------------------------------------
# The counting proxy.


@dataclass(frozen=True, slots=True)
class Traffic:
    """Bytes that crossed the proxy since the last ``take``: ``fetched`` from the upstream to the
    clients, ``sent`` from the clients to the upstream, in ``connections`` connections."""

    fetched: int
    sent: int
    connections: int


class CountingProxy:
    """Accepts on 127.0.0.1 and a free port; each connection is relayed to ``upstream`` byte for byte
    (it knows nothing of HTTP, so keep-alive, ranges and redirects to the same host work as they
    would without it) while the bytes are counted."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._lock = threading.Condition()
        self._fetched = 0
        self._sent = 0
        self._connections = 0
        self._open = 0
        self._closing = False
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._acceptor.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            with self._lock:
                if self._closing:
                    client.close()
                    return
                self._open += 1
                self._connections += 1
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                return  # the client sees its connection closed, as it would with the registry down
            upstream.settimeout(None)
            with upstream:
                up = threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True)
                up.start()
                self._pump(upstream, client, True)
                up.join()
        finally:
            client.close()
            with self._lock:
                self._open -= 1
                self._lock.notify_all()

    def _pump(self, src: socket.socket, dst: socket.socket, fetched: bool) -> None:
        """Copy ``src`` to ``dst`` until ``src`` ends, then end ``dst``'s direction too. Bytes are
        counted as they are received, so a count never lags what the client has seen."""
        buf = bytearray(PUMP_CHUNK)
        view = memoryview(buf)
        try:
            while n := src.recv_into(buf):
                with self._lock:
                    if fetched:
                        self._fetched += n
                    else:
                        self._sent += n
                dst.sendall(view[:n])
        except OSError:  # a side hung up (a client that stops reading early, a reset): both directions end
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        else:  # an orderly end: pass it on, the other direction carries on until it ends too
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def take(self, settle: float = 5.0) -> Traffic:
        """The traffic since the last call, once every connection has closed (waiting at most
        ``settle`` seconds: a client that has exited has closed its own), and start counting anew."""
        deadline = time.monotonic() + settle
        with self._lock:
            while self._open and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            traffic = Traffic(self._fetched, self._sent, self._connections)
            self._fetched = self._sent = self._connections = 0
        return traffic

    def close(self) -> None:
        with self._lock:
            self._closing = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(5)


# --------------------------------------------------------------------------------------------------
# A private dockerd.


class PrivateDockerd:
    """``dockerd`` with its data root ``data_root`` (the store the rows read) and its socket, exec
    root and pidfile under ``state`` (keep that path short: unix socket paths are limited to 107
    bytes, and containerd puts its own under the exec root)."""

    def __init__(self, data_root: Path, state: Path, driver: str, *, timeout: float = 60.0) -> None:
        self.data_root = data_root
        self.state = state
        self.driver = driver
        self.socket = state / "docker.sock"
        self.log = state / "dockerd.log"
        if len(f"{state}/exec/containerd/containerd-debug.sock") > MAX_SOCKET_PATH:
            raise ServiceError(
                f"{state}: too long a directory for dockerd (containerd's sockets would not fit)"
            )
        data_root.mkdir(parents=True, exist_ok=True)
        argv = [
            "dockerd",
            f"--data-root={data_root}",
            f"--exec-root={state / 'exec'}",
            f"--host=unix://{self.socket}",
            f"--pidfile={state / 'dockerd.pid'}",
            f"--storage-driver={driver}",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                unmount_below(data_root)  # what a daemon that died early left mounted
                raise ServiceError(
                    f"dockerd --storage-driver={driver} exited: {log_tail(self.log) or 'no output'}"
                )
            code, _, _ = self.run(["version"], timeout=10)
            if code == 0:
                break
            if time.monotonic() > deadline:
                self.close()
                raise ServiceError(f"dockerd --storage-driver={driver} did not answer in {timeout:.0f} s")
            time.sleep(0.2)

    @property
    def env(self) -> dict[str, str]:
        """The environment for a ``docker`` command talking to this daemon."""
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}"}

    def run(self, args: Sequence[str], *, timeout: float = 120.0) -> tuple[int, str, str]:
        try:
            proc = subprocess.run(
                ["docker", *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self.env,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return -1, "", str(exc)
        return proc.returncode, proc.stdout, proc.stderr

    def load(self, write: Callable[[IO[bytes]], object], *, timeout: float) -> None:
        """``docker load`` of the tar that ``write(stream)`` writes to its standard input."""
        said = self.state / "docker-load.log"
        with said.open("wb") as log:
            proc = subprocess.Popen(
                ["docker", "load", "--quiet"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        assert proc.stdin is not None
        cut = False
        try:
            write(proc.stdin)
            proc.stdin.close()
        except BrokenPipeError:  # docker load gave up: what it said tells why
            cut = True
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode != 0 or cut:
            raise ServiceError(
                f"docker load failed (exit {proc.returncode}): {log_tail(said) or 'its input was cut'}"
            )

    def close(self) -> None:
        try:
            _stop(self.process, 60)
        finally:
            unmount_below(self.data_root)
            unmount_below(self.state)


# --------------------------------------------------------------------------------------------------
# docker load input.


def write_docker_archive(
    stream: IO[bytes], layout: Path, config: str, layers: Sequence[str], tag: str
) -> None:
    """Write to ``stream`` a tar that ``docker load`` takes: the config and layer blobs of an OCI
    layout (named by digest, as the layout names them; docker accepts compressed layers) and a
    ``manifest.json`` that lists them under ``tag``. Nothing is copied to disk."""

    def blob(digest: str) -> str:
        algo, _, hexa = digest.partition(":")
        return f"blobs/{algo}/{hexa}"

    manifest = [{"Config": blob(config), "RepoTags": [tag], "Layers": [blob(d) for d in layers]}]
    with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in dict.fromkeys([blob(config), *(blob(d) for d in layers)]):
            info = tar.gettarinfo(str(layout / name), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with (layout / name).open("rb") as f:
                tar.addfile(info, f)
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
