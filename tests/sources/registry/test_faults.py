"""Faults between imgtool and a real registry, made by a proxy: a connection cut mid-blob, 503 and
429 (with and without Retry-After), a corrupted byte, a redirect to another port."""

from __future__ import annotations

import hashlib
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.registry import Fault, FaultProxy
from tests.sources.registry.conftest import Pushed


@pytest.fixture
def proxy_plain(plain: Pushed) -> Iterator[FaultProxy]:
    proxy = FaultProxy(plain.registry)
    yield proxy
    proxy.close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait between attempts, in seconds, instead of waiting."""
    waited: list[float] = []
    monkeypatch.setattr(time, "sleep", waited.append)
    return waited


def _big_layer(pushed: Pushed) -> tuple[str, bytes]:
    """The digest and bytes of the big image's 300 kB layer as the registry holds it (skopeo
    compressed it on the way in), fetched from the registry itself."""

    def get(path: str) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", pushed.registry.port, timeout=30)
        try:
            conn.request("GET", path, headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            response = conn.getresponse()
            assert response.status == 200
            return response.read()
        finally:
            conn.close()

    digest = json.loads(get("/v2/big/manifests/1"))["layers"][0]["digest"]
    blob = get(f"/v2/big/blobs/{digest}")
    assert hashlib.sha256(blob).hexdigest() == digest.partition(":")[2]
    return digest, blob


def _blob_gets(proxy: FaultProxy, digest: str) -> list[str | None]:
    """The Range header of each GET of that blob through the proxy (None: the whole blob)."""
    return [s.headers.get("Range") for s in proxy.seen if s.method == "GET" and s.path.endswith(digest)]


def test_a_cut_connection_is_resumed_where_it_broke(
    plain: Pushed, proxy_plain: FaultProxy, imgtool_cli: ImgtoolCli, sleeps: list[float]
) -> None:
    digest, blob = _big_layer(plain)
    proxy_plain.faults = [Fault(path=digest, cut_after=100_000)]
    result = imgtool_cli("cat", f"docker://{proxy_plain.host}/big:1", "/data/big")
    local = imgtool_cli("cat", plain.big, "/data/big")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout_bytes == local.stdout_bytes
    assert len(result.stdout_bytes) == 300_000
    ranges = _blob_gets(proxy_plain, digest)
    assert ranges[:2] == [None, "bytes=100000-"]  # resumed from what had arrived, not from the start
    assert set(ranges[2:]) <= {None}  # cat reads the layer again (headers, then data): whole, unbroken
    assert sleeps == [0.5]
    assert len(blob) > 200_000  # incompressible: gzip leaves it as large


def test_a_connection_cut_every_time_is_an_error_in_the_end(
    plain: Pushed, proxy_plain: FaultProxy, imgtool_cli: ImgtoolCli, sleeps: list[float], tmp_path: Path
) -> None:
    digest, _ = _big_layer(plain)
    proxy_plain.faults = [Fault(path=digest, cut_after=0, times=100)]
    ref = f"docker://{proxy_plain.host}/big:1"
    result = imgtool_cli("flatten", ref, "-o", str(tmp_path / "out"))
    assert result.code == 1
    assert result.stderr.startswith(
        f"imgtool: error: {ref}: blob {digest}: the connection broke 6 times at byte 0: "
    )
    assert result.stderr.count("\n") == 1
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("status", "retry_after", "waits"),
    [
        (503, "2", [2.0, 2.0]),
        (429, "1", [1.0, 1.0]),
        (500, None, [0.5, 0.5]),  # the manifest's first retry, then the blob's
        (429, "Thu, 01 Jan 1970 00:00:00 GMT", [0.0, 0.0]),  # a date in the past: at once
        (502, "3600", [60.0, 60.0]),  # capped
    ],
)
def test_busy_answers_are_retried_honouring_retry_after(
    plain: Pushed,
    proxy_plain: FaultProxy,
    imgtool_cli: ImgtoolCli,
    sleeps: list[float],
    status: int,
    retry_after: str | None,
    waits: list[float],
) -> None:
    digest, _ = _big_layer(plain)
    proxy_plain.faults = [
        Fault(path="/manifests/1", status=status, retry_after=retry_after),
        Fault(path=digest, status=status, retry_after=retry_after),
    ]
    result = imgtool_cli("cat", f"docker://{proxy_plain.host}/big:1", "/data/big")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout_bytes == imgtool_cli("cat", plain.big, "/data/big").stdout_bytes
    assert sleeps == waits


def test_retries_are_bounded(
    plain: Pushed, proxy_plain: FaultProxy, imgtool_cli: ImgtoolCli, sleeps: list[float]
) -> None:
    proxy_plain.faults = [Fault(path="/manifests/", status=503, times=100)]
    ref = f"docker://{proxy_plain.host}/big:1"
    result = imgtool_cli("inspect", ref)
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == f"imgtool: error: {ref}: manifest 1: the registry answered HTTP 503\n"
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert len([s for s in proxy_plain.seen if "/manifests/" in s.path]) == 6


@pytest.mark.parametrize("output", ["out", "out.tar", "-"])
def test_a_corrupted_byte_is_a_digest_error_and_nothing_is_written(
    plain: Pushed, proxy_plain: FaultProxy, imgtool_cli: ImgtoolCli, tmp_path: Path, output: str
) -> None:
    digest, blob = _big_layer(plain)
    proxy_plain.faults = [Fault(path=digest, corrupt_at=200_000)]
    corrupted = blob[:200_000] + bytes([blob[200_000] ^ 1]) + blob[200_001:]
    got = "sha256:" + hashlib.sha256(corrupted).hexdigest()
    target = output if output == "-" else str(tmp_path / output)
    result = imgtool_cli("flatten", "-q", f"docker://{proxy_plain.host}/big:1", "-o", target)
    assert result.code == 1
    assert result.stderr == (
        f"imgtool: error: layer 0 ({digest}) blob: digest mismatch: expected {digest}, got {got}\n"
    )
    assert result.stdout_bytes == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_corrupted_manifest_is_refused_by_digest(
    plain: Pushed, proxy_plain: FaultProxy, imgtool_cli: ImgtoolCli
) -> None:
    digest = "sha256:077d75fe3a34db76cbf7c17be9958266b9c8433e6f40fce98915f391bf300e8a"
    proxy_plain.faults = [Fault(path=f"/manifests/{digest}", corrupt_at=10)]
    ref = f"docker://{proxy_plain.host}/sample@{digest}"
    result = imgtool_cli("inspect", ref)
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr.startswith(
        f"imgtool: error: {ref}: manifest {digest}: the registry sent a manifest of another digest, sha256:"
    )


def test_a_redirect_to_another_port_gets_no_authorization(basic: Pushed, imgtool_cli: ImgtoolCli) -> None:
    proxy = FaultProxy(basic.registry)
    try:
        proxy.faults = [Fault(path="/blobs/", redirect=True, times=100)]
        result = imgtool_cli("cat", f"docker://{proxy.host}/sample:1.0", "/etc/motd", *basic.creds)
        assert (result.code, result.stderr) == (0, "")
        assert (
            result.stdout_bytes == imgtool_cli("cat", "oci:examples/sample-oci:1.0", "/etc/motd").stdout_bytes
        )
        blobs = [s for s in proxy.seen if "/blobs/" in s.path]
        assert blobs
        assert all(s.headers.get("Authorization", "").startswith("Basic ") for s in blobs)
        assert len(proxy.redirected) == len(blobs)
        assert [s.headers.get("Authorization") for s in proxy.redirected] == [None] * len(blobs)
    finally:
        proxy.close()


def test_a_manifest_cut_short_is_fetched_again(
    plain: Pushed, proxy_plain: FaultProxy, imgtool_cli: ImgtoolCli, sleeps: list[float]
) -> None:
    proxy_plain.faults = [Fault(path="/manifests/1.0", cut_after=100)]
    result = imgtool_cli("inspect", "--json", f"docker://{proxy_plain.host}/sample:1.0")
    assert (result.code, result.stderr) == (0, "")
    assert json.loads(result.stdout)["manifest_digest"] == (
        "sha256:077d75fe3a34db76cbf7c17be9958266b9c8433e6f40fce98915f391bf300e8a"
    )
    assert [s.path for s in proxy_plain.seen if "/manifests/" in s.path] == ["/v2/sample/manifests/1.0"] * 2
    assert sleeps == [0.5]


def test_a_blob_the_registry_does_not_have(
    plain: Pushed, proxy_plain: FaultProxy, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    digest, _ = _big_layer(plain)
    proxy_plain.faults = [Fault(path=digest, status=404)]
    ref = f"docker://{proxy_plain.host}/big:1"
    result = imgtool_cli("flatten", ref, "-o", str(tmp_path / "out"))
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == f"imgtool: error: {ref}: blob {digest}: not found in the registry\n"
    assert not (tmp_path / "out").exists()


def test_more_bytes_than_the_descriptor_declares(
    plain: Pushed, proxy_plain: FaultProxy, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    digest, blob = _big_layer(plain)
    proxy_plain.faults = [Fault(path=digest, append=b"\0" * 1_000_000)]
    result = imgtool_cli("flatten", f"docker://{proxy_plain.host}/big:1", "-o", str(tmp_path / "out"))
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == (
        f"imgtool: error: layer 0 ({digest}) blob: "
        f"blob is larger than the {len(blob)} bytes its descriptor declares\n"
    )
    assert not (tmp_path / "out").exists()
