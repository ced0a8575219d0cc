"""HTTPS to a registry on this machine: tried first, its certificate checked unless
--tls-verify=false; an HTTPS registry's redirect to plain HTTP is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.registry import Fault, FaultProxy
from tests.sources.registry.conftest import SAMPLE, Pushed


@pytest.fixture
def https(plain: Pushed, tmp_path: Path) -> Iterator[FaultProxy]:
    proxy = FaultProxy(plain.registry, tls=tmp_path)
    yield proxy
    proxy.close()


def test_a_self_signed_certificate_is_refused(https: FaultProxy, imgtool_cli: ImgtoolCli) -> None:
    ref = f"docker://{https.host}/sample:1.0"
    result = imgtool_cli("inspect", ref)
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr.startswith(
        f"imgtool: error: {ref}: the TLS certificate of {https.host} is not trusted ("
    )
    assert result.stderr.endswith("); --tls-verify=false accepts it\n")
    assert "self-signed certificate" in result.stderr
    assert https.seen == []  # nothing went over the connection it did not trust


def test_tls_verify_false_accepts_it(https: FaultProxy, imgtool_cli: ImgtoolCli) -> None:
    result = imgtool_cli("cat", "--tls-verify=false", f"docker://{https.host}/sample:1.0", "/etc/motd")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout_bytes == imgtool_cli("cat", f"oci:{SAMPLE}:1.0", "/etc/motd").stdout_bytes
    assert https.seen[0].path == "/v2/"


def test_plain_http_goes_straight_to_http(plain: Pushed, imgtool_cli: ImgtoolCli) -> None:
    """On a plain registry on 127.0.0.1 HTTPS is tried first, then HTTP (every other test here runs so);
    --plain-http goes straight to HTTP."""
    proxy = FaultProxy(plain.registry)
    try:
        result = imgtool_cli("inspect", "--plain-http", f"docker://{proxy.host}/sample:1.0")
        assert result.code == 0
        assert [s.path for s in proxy.seen][:2] == ["/v2/", "/v2/sample/manifests/1.0"]
    finally:
        proxy.close()


def test_a_redirect_from_https_to_http_is_refused(
    https: FaultProxy, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    https.faults = [Fault(path="/blobs/", redirect=True, times=100)]
    ref = f"docker://{https.host}/sample:1.0"
    result = imgtool_cli("flatten", "--tls-verify=false", ref, "-o", str(tmp_path / "out"))
    assert (result.code, result.stdout) == (1, "")
    target = f"http://127.0.0.1:{https.redirect_port}/v2/sample/blobs/"
    assert result.stderr.startswith(
        f"imgtool: error: {ref}: refused a redirect from HTTPS to plain HTTP ({target}sha256:"
    )
    assert https.redirected == []
    assert not (tmp_path / "out").exists()
