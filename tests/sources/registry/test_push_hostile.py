"""A registry's hostile answers to a push: an upload Location on another port gets no credentials,
a Location that is not HTTP is refused, a chunk the registry does not confirm is an error."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.registry import QuietHandler, serve
from tests.sources.registry.conftest import SAMPLE

AUTH = "Basic " + base64.b64encode(b"u:p").decode()


@dataclass
class Fake:
    """A registry that wants Basic auth and gives upload Locations ``location`` makes (a format
    string with ``{other}``, the port of a second server that records what it is sent)."""

    location: str
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # server, method, Authorization
    port: int = 0
    other: int = 0

    def start(self) -> None:
        owner = self

        class Registry(QuietHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                owner.seen.append(("registry", self.command, self.headers.get("Authorization")))
                if self.headers.get("Authorization") != AUTH:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="fake"')
                elif self.command == "HEAD":
                    self.send_response(404)
                elif self.command == "POST":
                    self.send_response(202)
                    self.send_header("Location", owner.location.format(other=owner.other))
                else:
                    self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_POST = do_PUT = _answer  # noqa: N815 - http.server's names

        class Other(QuietHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                owner.seen.append(("other", self.command, self.headers.get("Authorization")))
                self.send_response(400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_PATCH = do_DELETE = _answer  # noqa: N815 - http.server's names

        self._servers = [serve(Registry), serve(Other)]
        self.port, self.other = self._servers[0][1], self._servers[1][1]

    def close(self) -> None:
        for server, _ in self._servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[Fake]:
    registry = Fake(request.param)
    registry.start()
    yield registry
    registry.close()


@pytest.mark.parametrize("fake", ["http://127.0.0.1:{other}/upload/1"], indirect=True)
def test_an_upload_location_elsewhere_gets_no_credentials(
    fake: Fake, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    remote = f"docker://127.0.0.1:{fake.port}/repo:1"
    run = imgtool_cli("copy", "--jobs", "1", f"oci:{SAMPLE}:1.0", remote, "--creds", "u:p")
    assert (run.code, run.stdout) == (1, "")
    assert run.stderr.startswith(f"imgtool: error: {remote}: blob sha256:")
    assert "(upload): the registry answered HTTP 400" in run.stderr
    other = [s for s in fake.seen if s[0] == "other"]
    assert other and all(auth is None for _, _, auth in other)
    assert any(auth == AUTH for server, _, auth in fake.seen if server == "registry")


@pytest.mark.parametrize("fake", ["file:///etc/passwd"], indirect=True)
def test_an_upload_location_that_is_not_http_is_refused(fake: Fake, imgtool_cli: ImgtoolCli) -> None:
    remote = f"docker://127.0.0.1:{fake.port}/repo:1"
    run = imgtool_cli("copy", "--jobs", "1", f"oci:{SAMPLE}:1.0", remote, "--creds", "u:p")
    assert (run.code, run.stdout) == (1, "")
    assert run.stderr.startswith(f"imgtool: error: {remote}: blob sha256:")
    assert run.stderr.endswith(": refused upload Location 'file:///etc/passwd'\n")
