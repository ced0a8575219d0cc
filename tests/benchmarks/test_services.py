"""The services behind the benchmark's registry and Docker rows (benchmarks/services.py): the
byte-counting proxy against a raw TCP server and a real registry, the docker-load archive read by
imgtool and loaded by a real dockerd."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.services import (
    CountingProxy,
    LocalRegistry,
    PrivateDockerd,
    ServiceError,
    Traffic,
    unmount_below,
    write_docker_archive,
)
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import Dir, Entry, File, ImageSpec, Whiteout, make_layer, write_oci_layout
from tests.helpers.realtools import requires


class Upstream:
    """A TCP server on 127.0.0.1: each connection sends a line, gets ``payload`` back, and is closed
    by the client. ``done`` counts the connections whose end the server saw."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.done = threading.Semaphore(0)
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            line = b""
            while not line.endswith(b"\n") and (piece := conn.recv(1)):
                line += piece
            self.requests.append(line)
            try:
                conn.sendall(self.payload)
                while conn.recv(65536):
                    pass
            except OSError:
                pass  # the client went away early
        self.done.release()

    def close(self) -> None:
        self._listener.close()


def _exchange(port: int, request: bytes, read: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        got = bytearray()
        while len(got) < read and (piece := conn.recv(min(65536, read - len(got)))):
            got += piece
        return bytes(got)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream(os.urandom(3 * 1024 * 1024 + 7))
    yield server
    server.close()


def test_proxy_relays_and_counts_each_way(upstream: Upstream) -> None:
    proxy = CountingProxy(("127.0.0.1", upstream.port))
    try:
        size = len(upstream.payload)
        assert _exchange(proxy.port, b"first\n", size) == upstream.payload
        results: list[bytes] = []
        both = [
            threading.Thread(target=lambda r=r: results.append(_exchange(proxy.port, r, size)))
            for r in (b"second one\n", b"3rd\n")
        ]
        for thread in both:
            thread.start()
        for thread in both:
            thread.join()
        assert results == [upstream.payload, upstream.payload]
        assert proxy.take() == Traffic(fetched=3 * size, sent=6 + 11 + 4, connections=3)
        assert sorted(upstream.requests) == [b"3rd\n", b"first\n", b"second one\n"]
        assert proxy.take() == Traffic(0, 0, 0)  # counting starts anew
        assert _exchange(proxy.port, b"again\n", size) == upstream.payload
        assert proxy.take() == Traffic(size, 6, 1)
    finally:
        proxy.close()


def test_proxy_ends_the_relay_of_a_client_that_hangs_up(upstream: Upstream) -> None:
    proxy = CountingProxy(("127.0.0.1", upstream.port))
    try:
        assert len(_exchange(proxy.port, b"x\n", 65536)) == 65536  # then closed, 3 MB unread
        started = time.monotonic()
        traffic = proxy.take(settle=20)
        assert time.monotonic() - started < 10  # the relay closed: take() did not wait for the settle
        assert 65536 <= traffic.fetched <= len(upstream.payload)
        assert (traffic.sent, traffic.connections) == (2, 1)
        assert upstream.done.acquire(timeout=10)  # the server saw its connection end too
    finally:
        proxy.close()


def test_proxy_to_nothing_closes_the_client() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = int(s.getsockname()[1])
    proxy = CountingProxy(("127.0.0.1", dead))
    try:
        try:  # the connection ends with nothing sent back: closed, or reset (its request unread)
            got = _exchange(proxy.port, b"hello\n", 10)
        except ConnectionResetError:
            got = b""
        assert got == b""
        assert proxy.take() == Traffic(0, 0, 1)
    finally:
        proxy.close()


def _sample_blobs() -> tuple[int, int]:
    """The manifest size and the total size of the blobs it names, of examples/sample-oci:1.1."""
    layout = Path(__file__).resolve().parents[2] / "examples" / "sample-oci"
    index = json.loads((layout / "index.json").read_text())
    (desc,) = [
        m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "1.1"
    ]
    manifest = json.loads((layout / "blobs" / "sha256" / desc["digest"][7:]).read_text())
    return desc["size"], manifest["config"]["size"] + sum(d["size"] for d in manifest["layers"])


@requires("docker-registry", "skopeo")
def test_registry_pull_through_the_proxy_counts_what_was_fetched(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    try:
        layout = Path(__file__).resolve().parents[2] / "examples" / "sample-oci"
        subprocess.run(
            ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
             f"oci:{layout}:1.1", f"docker://{registry.host}/sample:1.1"],
            check=True, timeout=120,
        )  # fmt: skip
        proxy = CountingProxy(("127.0.0.1", registry.port))
        try:
            assert proxy.take().fetched == 0  # the push went straight to the registry
            subprocess.run(
                ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false",
                 f"docker://{proxy.host}/sample:1.1", f"oci:{tmp_path / 'pulled'}:1.1"],
                check=True, timeout=120,
            )  # fmt: skip
            traffic = proxy.take()
        finally:
            proxy.close()
    finally:
        registry.close()
    manifest, blobs = _sample_blobs()
    # every blob and the manifest once, plus HTTP headers (a few hundred bytes per response)
    assert manifest + blobs < traffic.fetched < manifest + blobs + 16 * 1024
    assert registry.process.returncode is not None  # stopped


def _layout(tmp_path: Path) -> tuple[Path, str, list[str], str]:
    layers = [
        make_layer([Dir("etc/"), File("etc/a", b"a\n"), File("etc/b", b"bb\n")]),
        make_layer([Whiteout("etc/a"), File("etc/c", b"ccc\n")]),
    ]
    made = write_oci_layout(tmp_path / "oci", [Entry(ImageSpec(layers), ref="v1")])
    (image,) = made.images
    return Path(made.path), image.config_digest, image.layer_digests, image.manifest_digest


def test_docker_archive_holds_the_layout_blobs(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    layout, config, layers, _ = _layout(tmp_path)
    archive = tmp_path / "load.tar"
    with archive.open("wb") as out:
        write_docker_archive(out, layout, config, layers, "bench:1")
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar}
        names = [f"blobs/sha256/{d[7:]}" for d in (config, *layers)]
        assert list(members) == [*names, "manifest.json"]
        for name in names:
            extracted = tar.extractfile(members[name])
            assert extracted is not None
            assert extracted.read() == (layout / name).read_bytes()
        extracted = tar.extractfile(members["manifest.json"])
        assert extracted is not None
        assert json.loads(extracted.read()) == [
            {"Config": names[0], "RepoTags": ["bench:1"], "Layers": names[1:]}
        ]
    ls_archive = imgtool_cli("ls", "-R", "--json", f"docker-archive:{archive}")
    ls_layout = imgtool_cli("ls", "-R", "--json", f"oci:{layout}:v1")
    assert ls_archive.code == ls_layout.code == 0, ls_archive.stderr + ls_layout.stderr
    assert json.loads(ls_archive.stdout) == json.loads(ls_layout.stdout)
    assert [e["path"] for e in json.loads(ls_archive.stdout)] == ["/etc", "/etc/b", "/etc/c"]


@requires("dockerd", "docker")
@pytest.mark.skipif(os.geteuid() != 0, reason="dockerd needs root")
def test_private_dockerd_loads_the_archive(tmp_path: Path) -> None:
    layout, config, layers, _ = _layout(tmp_path)
    # The daemon's sockets where their paths stay short: containerd refuses one over 104 bytes,
    # and this test's tmp_path (its name in it, and the session's number) can be longer than that.
    state = Path(tempfile.mkdtemp(prefix="imgtool-bench-"))
    try:
        try:
            daemon = PrivateDockerd(tmp_path / "data", state, "vfs")
        except ServiceError as exc:
            pytest.skip(f"dockerd cannot start here: {exc}")
        try:
            daemon.load(lambda out: write_docker_archive(out, layout, config, layers, "bench:1"), timeout=120)
            code, out, err = daemon.run(["image", "inspect", "bench:1"])
            assert code == 0, err
            (found,) = json.loads(out)
            assert found["Id"] == config
            broken = tmp_path / "not-a-tar"
            broken.write_bytes(b"no tar here\n" * 100)
            with pytest.raises(ServiceError, match=r"^docker load failed \(exit 1\): "):
                daemon.load(lambda out: out.write(broken.read_bytes()), timeout=120)
        finally:
            daemon.close()
        assert daemon.process.returncode is not None
    finally:
        unmount_below(tmp_path)
        subprocess.run(["rm", "-rf", str(tmp_path / "data"), str(state)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")
def test_unmount_below_undoes_what_a_daemon_left_mounted(tmp_path: Path) -> None:
    """A dockerd that dies early leaves its data root bind-mounted over itself; what is below a
    daemon's directory is unmounted after it stops, deepest first, names with spaces too."""
    data = tmp_path / "data root"
    inner = data / "inner"
    inner.mkdir(parents=True)
    for point in (data, inner):
        done = subprocess.run(["mount", "--bind", str(point), str(point)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"a bind mount cannot be made here: {done.stderr.decode().strip()}")
    assert sorted(unmount_below(tmp_path)) == [str(data), str(inner)]
    assert unmount_below(tmp_path) == []
    assert str(data) not in Path("/proc/self/mountinfo").read_text().replace("\\040", " ")
