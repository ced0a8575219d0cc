"""A registry that answers what the protocol does not allow: each case a scripted server on
127.0.0.1 and the one-line error imgtool gives (exit 1, nothing on stdout, no traceback)."""

from __future__ import annotations

import hashlib
import http.server
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from imgtool.errors import RegistryError
from imgtool.image.digest import Digest
from imgtool.sources.reference import parse_docker_name
from imgtool.sources.registry.client import Client
from imgtool.sources.registry.options import RegistryOptions
from imgtool.sources.registry.transfer import BlobStream
from tests.helpers.cli import ImgtoolCli
from tests.helpers.registry import QuietHandler, serve

Answer = tuple[int, dict[str, str], bytes]
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"


@dataclass
class Script:
    """What the server answers: by path, a list of answers used in turn (the last one repeats);
    ``cut`` answers send their headers and half the body, then hang up."""

    answers: dict[str, list[Answer | Callable[[http.server.BaseHTTPRequestHandler], Answer]]] = field(
        default_factory=dict
    )
    cut: set[int] = field(default_factory=set)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[tuple[Script, int]]:
    script = Script()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            script.requests.append((self.path, dict(self.headers.items())))
            path = self.path.partition("?")[0]
            queue = script.answers.get(path) or [(404, {}, b"")]
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
            status, headers, body = answer(self) if callable(answer) else answer
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if len(script.requests) in script.cut:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    httpd, port = serve(Handler)
    script.answers["/v2/"] = [(200, {}, b"{}")]
    yield script, port
    httpd.shutdown()
    httpd.server_close()


def _json(doc: object, media_type: str = "application/json") -> Answer:
    return 200, {"Content-Type": media_type}, json.dumps(doc).encode()


def _manifest_cases(port: int) -> list[tuple[str, list[Answer], str]]:
    ref = f"docker://127.0.0.1:{port}/x:t"
    realm = f"http://127.0.0.1:{port}/token"
    return [
        (
            "too large",
            [(200, {}, b" " * ((4 << 20) + 1))],
            f"{ref}: manifest t: larger than the 4194304-byte limit",
        ),
        (
            "not JSON",
            [(200, {}, b"<html>")],
            f"{ref}: manifest t: not valid JSON: Expecting value: line 1 column 1 (char 0)",
        ),
        (
            "schema 1",
            [_json({"schemaVersion": 1, "name": "x", "fsLayers": []}, SCHEMA1)],
            f"{ref}: manifest t: not an image manifest or index (media type '{SCHEMA1}')",
        ),
        (
            "an artifact",
            [_json({"mediaType": "application/vnd.example+json"}, "application/vnd.example+json")],
            f"{ref}: manifest t: not an image manifest or index (media type 'application/vnd.example+json')",
        ),
        (
            "a redirect loop",
            [(307, {"Location": "/v2/x/manifests/t"}, b"")],
            f"{ref}: more than 10 redirects",
        ),
        (
            "a redirect to ftp",
            [(302, {"Location": "ftp://127.0.0.1/m"}, b"")],
            f"{ref}: refused a redirect to 'ftp://127.0.0.1/m'",
        ),
        (
            "its words with control characters",
            [(403, {}, json.dumps({"errors": [{"code": "DENIED", "message": "no\x1b[31m\nway"}]}).encode())],
            f"{ref}: manifest t: authentication required (HTTP 403: DENIED no?[31m?way); "
            "give --creds or log in (docker login, podman login)",
        ),
        (
            "a Bearer challenge without realm",
            [(401, {"WWW-Authenticate": 'Bearer service="s"'}, b"")],
            f"{ref}: Bearer challenge names no realm",
        ),
        (
            "a token realm that is not http",
            [(401, {"WWW-Authenticate": 'Bearer realm="file:///etc/passwd"'}, b"")],
            f"{ref}: token realm is not an http(s) URL: 'file:///etc/passwd'",
        ),
        (
            "a token answer that is not JSON",
            [(401, {"WWW-Authenticate": f'Bearer realm="{realm}"'}, b"")],
            f"{ref}: the token server's answer is not JSON",
        ),
    ]


CASES = [name for name, _, _ in _manifest_cases(0)]


@pytest.mark.parametrize("case", CASES)
def test_a_hostile_manifest_answer(server: tuple[Script, int], imgtool_cli: ImgtoolCli, case: str) -> None:
    script, port = server
    _, answers, message = next(c for c in _manifest_cases(port) if c[0] == case)
    script.answers["/v2/x/manifests/t"] = list(answers)
    script.answers["/token"] = [(200, {}, b"not json")]
    result = imgtool_cli("inspect", f"docker://127.0.0.1:{port}/x:t")
    assert (result.code, result.stdout, result.stderr) == (1, "", f"imgtool: error: {message}\n")


def test_not_a_registry(server: tuple[Script, int], imgtool_cli: ImgtoolCli) -> None:
    script, port = server
    script.answers["/v2/"] = [(404, {}, b"")]
    result = imgtool_cli("inspect", f"docker://127.0.0.1:{port}/x:t")
    assert (result.code, result.stderr) == (
        1,
        f"imgtool: error: docker://127.0.0.1:{port}/x:t: "
        f"127.0.0.1:{port} is not a registry (/v2/ is not found)\n",
    )


BLOB = bytes(range(256)) * 1024
DIGEST = Digest("sha256", hashlib.sha256(BLOB).hexdigest())


def _blob_stream(port: int) -> BlobStream:
    client = Client(parse_docker_name(f"127.0.0.1:{port}/x"), RegistryOptions(backoff=0), "docker://here/x")
    client.ping()
    return BlobStream(client, DIGEST)


def _range_answer(
    content_range: Callable[[int], str],
) -> Callable[[http.server.BaseHTTPRequestHandler], Answer]:
    def answer(handler: http.server.BaseHTTPRequestHandler) -> Answer:
        start = int(handler.headers["Range"].removeprefix("bytes=").removesuffix("-"))
        return 206, {"Content-Range": content_range(start)}, BLOB[start:]

    return answer


def test_a_resume_checks_content_range(server: tuple[Script, int]) -> None:
    script, port = server
    path = f"/v2/x/blobs/{DIGEST}"
    script.answers[path] = [
        (200, {}, BLOB),
        _range_answer(lambda start: f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}"),
    ]
    script.cut = {2}  # the first blob GET (after the ping)
    with _blob_stream(port) as stream:
        assert stream.read() == BLOB
    ranges = [h.get("Range") for p, h in script.requests if p == path]
    assert ranges[0] is None
    assert ranges[1] is not None
    assert 0 < int(ranges[1].removeprefix("bytes=").removesuffix("-")) <= len(BLOB) // 2


def test_a_resume_from_the_wrong_offset_is_refused(server: tuple[Script, int]) -> None:
    script, port = server
    path = f"/v2/x/blobs/{DIGEST}"
    script.answers[path] = [
        (200, {}, BLOB),
        _range_answer(lambda start: f"bytes 0-{len(BLOB) - 1}/{len(BLOB)}"),
    ]
    script.cut = {2}
    with _blob_stream(port) as stream, pytest.raises(RegistryError) as caught:
        stream.read()
    assert str(caught.value).startswith(f"docker://here/x: blob {DIGEST}: resuming at byte ")
    assert str(caught.value).endswith(
        f", the registry sent Content-Range 'bytes 0-{len(BLOB) - 1}/{len(BLOB)}'"
    )


def test_a_registry_that_ignores_range_is_read_past_what_was_had(server: tuple[Script, int]) -> None:
    script, port = server
    path = f"/v2/x/blobs/{DIGEST}"
    script.answers[path] = [(200, {}, BLOB)]
    script.cut = {2}
    with _blob_stream(port) as stream:
        assert stream.read() == BLOB
    assert len([p for p, _ in script.requests if p == path]) == 2
