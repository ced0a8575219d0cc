"""A chunked upload whose PATCH is cut off mid-way is resumed from the Range the registry's upload
status gives, against the real registry: a proxy in front of it forwards every request, and cuts
one PATCH after some of its bytes (the registry keeps what reached it, or not: the status says)."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imgtool.sources.registry import push
from imgtool.sources.registry.client import Client
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import Entry, File, ImageSpec, incompressible, make_layer, write_oci_layout
from tests.helpers.registry import QuietHandler, serve
from tests.sources.registry.conftest import SAMPLE, Pushed
from tests.sources.registry.test_copy import layout_image

_HOP: frozenset[str] = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


@dataclass
class Exchange:
    method: str
    path: str
    headers: dict[str, str]
    length: int
    status: int | None = None  # None: cut, no answer
    answer: dict[str, str] = field(default_factory=dict)


class CuttingProxy:
    """Forwards every request to the registry on ``upstream`` (the Host header kept, so the
    Locations it gives name the proxy); the ``cut``-th request of ``method`` reaches the registry
    only up to ``after`` bytes of its body, and its connection is dropped without an answer."""

    def __init__(self, upstream: int, cut: int, after: int, method: str = "PATCH") -> None:
        self.exchanges: list[Exchange] = []
        self._counted = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(QuietHandler):
            def handle_one_request(self) -> None:
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline or not self.parse_request():
                    self.close_connection = True
                    return
                owner.forward(self, upstream, (method, cut, after))
                self.wfile.flush()

        self._server, self.port = serve(Handler)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def forward(
        self, handler: http.server.BaseHTTPRequestHandler, upstream: int, cutting: tuple[str, int, int]
    ) -> None:
        method, cut, after = cutting
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP}
        length = int(handler.headers.get("Content-Length") or 0)
        exchange = Exchange(handler.command, handler.path, headers, length)
        with self._lock:
            self.exchanges.append(exchange)
            if handler.command == method:
                self._counted += 1
            cut_now = handler.command == method and self._counted == cut
        conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
        try:
            if cut_now:
                partial = handler.rfile.read(after)
                conn.putrequest(handler.command, handler.path, skip_host=True, skip_accept_encoding=True)
                for key, value in [*headers.items(), ("Content-Length", str(length))]:
                    conn.putheader(key, value)
                conn.endheaders()
                conn.send(partial)
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)  # the client's connection breaks
                conn.sock.shutdown(socket.SHUT_WR)  # the registry sees the body end early
                conn.sock.settimeout(5)
                with contextlib.suppress(OSError, http.client.HTTPException):
                    conn.getresponse().read()
                return
            body = handler.rfile.read(length) if length else None
            conn.request(handler.command, handler.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        exchange.status = response.status
        exchange.answer = dict(response.getheaders())
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in (*_HOP, "date", "server"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _push_cut(plain: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path, after: int) -> list[Exchange]:
    """``big:1`` pushed in pieces of 100 kB through a proxy that cuts the second PATCH after
    ``after`` bytes; the push succeeds and reads back the same; what went through the proxy."""
    proxy = CuttingProxy(plain.registry.port, cut=2, after=after)
    try:
        remote = f"docker://{proxy.host}/resumed-{after}/big:1"
        run = imgtool_cli("copy", "-q", "--jobs", "1", plain.big, remote)
        assert (run.code, run.stderr) == (0, "")
        back = imgtool_cli("copy", "-q", remote, f"oci:{tmp_path / 'back'}:1")
        assert (back.code, back.stderr) == (0, "")
        exchanges = list(proxy.exchanges)
    finally:
        proxy.close()
    assert layout_image(tmp_path / "back", "1") == layout_image(Path(plain.big.split(":")[1]), "1")
    assert [e.headers.get("Content-Range") for e in exchanges if e.status is None] == ["100001-200000"]
    return exchanges


def _ranges(exchanges: list[Exchange]) -> list[tuple[str, str | None, int | None]]:
    """Each request about the big blob's upload after its first PATCH: method, range, status."""
    first = next(i for i, e in enumerate(exchanges) if e.method == "PATCH")
    upload = exchanges[first - 1 :]
    last = next(i for i, e in enumerate(upload) if e.method == "PUT")
    return [
        (e.method, e.headers.get("Content-Range") or e.answer.get("Range"), e.status)
        for e in upload[: last + 1]
    ]


def test_a_patch_cut_before_its_bytes_arrive_is_resumed_from_the_registrys_range(
    plain: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push, "UPLOAD_PIECE", 100_000)
    exchanges = _push_cut(plain, imgtool_cli, tmp_path, after=0)
    # the upload's status says the registry holds bytes 0-100000: the piece is sent from there,
    # in the same session
    assert _ranges(exchanges) == [
        ("POST", "0-0", 202),
        ("PATCH", "0-100000", 202),
        ("PATCH", "100001-200000", None),
        ("GET", "0-100000", 204),
        ("PATCH", "100001-200000", 202),
        ("PATCH", "200001-300000", 202),
        ("PATCH", "300001-307199", 202),
        ("PUT", None, 201),
    ]
    resumed = [e for e in exchanges if e.method == "PATCH"][2]
    assert resumed.length == 100_000


def test_a_patch_cut_midway_the_registry_gave_up_is_sent_again_whole(
    plain: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push, "UPLOAD_PIECE", 100_000)
    exchanges = _push_cut(plain, imgtool_cli, tmp_path, after=30_000)
    # distribution keeps the 30 000 bytes that arrived, but its session (whose state its
    # Location carries) no longer matches them: its status is 404, and the blob is sent again,
    # from its first byte, in a new session
    assert _ranges(exchanges) == [
        ("POST", "0-0", 202),
        ("PATCH", "0-100000", 202),
        ("PATCH", "100001-200000", None),
        ("GET", None, 404),
        ("DELETE", None, 404),
        ("POST", "0-0", 202),
        ("PATCH", "0-100000", 202),
        ("PATCH", "100001-200000", 202),
        ("PATCH", "200001-300000", 202),
        ("PATCH", "300001-307199", 202),
        ("PUT", None, 201),
    ]


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("0-5000000", "the registry holds 5000001 bytes of the upload, not between 0 and 100001"),
        ("bytes 0-1", "the upload's status gives Range 'bytes 0-1'"),
        (None, "bytes 0-100000 not sent: the registry answered HTTP 500, 6 times"),
    ],
)
def test_an_upload_status_out_of_bounds_is_an_error(
    imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, status: str | None, message: str
) -> None:
    """A registry whose every PATCH fails (500) and whose upload status says ``status``."""
    monkeypatch.setattr(push, "UPLOAD_PIECE", 100_000)
    monkeypatch.setattr(Client, "backoff", lambda self, attempt: 0.0)
    seen: list[str] = []

    class Fake(QuietHandler):
        def handle_one_request(self) -> None:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline or not self.parse_request():
                self.close_connection = True
                return
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(self.command)
            code = {"GET": 200 if self.path == "/v2/" else 204, "HEAD": 404, "POST": 202}.get(
                self.command, 500
            )
            self.send_response(code)
            self.send_header("Location", "/v2/x/blobs/uploads/u1")
            if self.command == "GET" and status is not None:
                self.send_header("Range", status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server, port = serve(Fake)
    layer = make_layer([File("big", incompressible(150_000, b"x"))])
    source = write_oci_layout(tmp_path / "src", [Entry(ImageSpec([layer], compression="none"), ref="v")])
    try:
        run = imgtool_cli(
            "copy", "-q", "--jobs", "1", source.reference("v"), f"docker://127.0.0.1:{port}/x:1"
        )
    finally:
        server.shutdown()
        server.server_close()
    assert (run.code, run.stdout) == (1, "")
    assert run.stderr.startswith(f"imgtool: error: docker://127.0.0.1:{port}/x:1: blob sha256:")
    assert run.stderr.endswith(f": {message}\n"), run.stderr
    assert seen.count("PATCH") == (6 if status is None else 1)  # the first PATCH and its resends


def test_a_put_cut_midway_is_sent_again_in_a_new_session(
    plain: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    """A blob sent whole (the first, of 1301 bytes): its PUT cut after 500 bytes, sent again by
    the retries, is refused (404: distribution gave the session up); the blob goes again, from
    its start, in a new session."""
    proxy = CuttingProxy(plain.registry.port, cut=1, after=500, method="PUT")
    try:
        remote = f"docker://{proxy.host}/resent/sample:1.1"
        run = imgtool_cli("copy", "-q", "--jobs", "1", f"oci:{SAMPLE}:1.1", remote)
        assert (run.code, run.stderr) == (0, "")
        back = imgtool_cli("copy", "-q", remote, f"oci:{tmp_path / 'back'}:1")
        assert (back.code, back.stderr) == (0, "")
        exchanges = list(proxy.exchanges)
    finally:
        proxy.close()
    assert layout_image(tmp_path / "back", "1") == layout_image(SAMPLE, "1.1")
    cut = next(i for i, e in enumerate(exchanges) if e.status is None)
    assert [(e.method, e.status) for e in exchanges[cut - 1 : cut + 5]] == [
        ("POST", 202),
        ("PUT", None),  # cut
        ("PUT", 404),  # retried whole: the session is gone
        ("DELETE", 404),
        ("POST", 202),  # a new session
        ("PUT", 201),
    ]

    def digest(e: Exchange) -> list[str]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(e.path).query)["digest"]

    assert digest(exchanges[cut]) == digest(exchanges[cut + 4])  # the same blob, whole again
    assert exchanges[cut + 4].length == exchanges[cut].length == 1301
