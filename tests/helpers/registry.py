"""A real registry (the Debian ``docker-registry``, distribution 2.8) on 127.0.0.1, a token server
for it, and a fault-injecting proxy in front of it; nothing here reaches beyond 127.0.0.1.

``Registry`` runs ``docker-registry serve CONFIG`` with filesystem storage in a temporary directory,
in one of three configurations: no auth, htpasswd Basic (bcrypt), token auth (RS256 JWTs from
``TokenServer``, signed by a self-made key whose certificate the registry trusts; openssl makes and
signs them). ``FaultProxy`` forwards to the registry and breaks what a test asks it to break.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Auth = Literal["none", "basic", "token"]
USER = "tester"
PASSWORD = "s3cret:with colon"
SERVICE = "imgtool-test-registry"
IDENTITY_TOKEN = "imgtool-test-refresh-token"  # the OAuth2 refresh token the token server accepts for USER
ISSUER = "imgtool-test-issuer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _basic_ok(header: str | None) -> bool:
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return header == expected


class QuietHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up early (a cut, a redirect not followed) is what the tests do


def serve(handler: type[http.server.BaseHTTPRequestHandler], tls: Path | None = None) -> tuple[_Server, int]:
    server = _Server(("127.0.0.1", 0), handler)
    if tls is not None:
        key, cert = tls / "proxy-key.pem", tls / "proxy-cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server, int(server.server_address[1])


@dataclass
class TokenServer:
    """Issues a token for the scopes asked (each ``scope`` parameter one); the actions asked for only
    to ``USER:PASSWORD`` (anonymous: a token with no access). ``requests`` records (the scopes
    joined by spaces, account, had credentials)."""

    directory: Path
    requests: list[tuple[str, str | None, bool]] = field(default_factory=list)
    oauth: list[dict[str, str]] = field(default_factory=list)  # the forms POSTed, refresh_token left out
    port: int = 0

    def __post_init__(self) -> None:
        self.key = self.directory / "token-key.pem"
        self.cert = self.directory / "token-cert.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
             "-out", str(self.cert), "-days", "2", "-subj", "/CN=imgtool-test-token-issuer"],
            check=True, capture_output=True,
        )  # fmt: skip
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True, capture_output=True
        ).stdout
        self._x5c = base64.b64encode(der).decode("ascii")
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                scope = " ".join(query.get("scope", []))  # several scope parameters: one item each
                account = query.get("account", [None])[0]
                authorised = _basic_ok(self.headers.get("Authorization"))
                owner.requests.append((scope, account, authorised))
                if self.headers.get("Authorization") and not authorised:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"token": owner.sign(scope, authorised), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                """OAuth2 (as Docker Hub's auth server): a refresh token for an access token."""
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}
                refresh = form.pop("refresh_token", None)
                owner.oauth.append(form)
                valid = (
                    self.headers.get("Content-Type") == "application/x-www-form-urlencoded"
                    and form.get("grant_type") == "refresh_token"
                    and refresh == IDENTITY_TOKEN
                )
                body = (
                    json.dumps({"access_token": owner.sign(form.get("scope", ""), True), "expires_in": 300})
                    if valid
                    else '{"error": "invalid_grant"}'
                ).encode()
                self.send_response(200 if valid else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server, self.port = serve(Handler)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def sign(self, scope: str, authorised: bool) -> str:
        access = []
        for item in scope.split() if authorised else []:
            if item.count(":") >= 2:
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {
            "iss": ISSUER, "sub": USER if authorised else "", "aud": SERVICE, "exp": now + 300,
            "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access,
        }  # fmt: skip
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(), check=True, capture_output=True,
        ).stdout  # fmt: skip
        return f"{signing_input}.{_b64url(signature)}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Registry:
    """``docker-registry serve`` on 127.0.0.1 and a free port, stopped by its PID."""

    def __init__(self, directory: Path, auth: Auth) -> None:
        self.directory = directory
        self.auth = auth
        self.port = free_port()
        self.token: TokenServer | None = None
        config = [
            "version: 0.1",
            "log: {level: error, accesslog: {disabled: true}}",
            f"storage: {{filesystem: {{rootdirectory: {directory / 'storage'}}}}}",
            f"http: {{addr: '127.0.0.1:{self.port}', secret: imgtool-test}}",
            # non-distributable layers may name URLs there (pushed without their blobs)
            "validation: {manifests: {urls: {allow: ['^https://example\\.invalid/']}}}",
        ]
        if auth == "basic":
            line = subprocess.run(
                ["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True, text=True
            ).stdout.strip()
            (directory / "htpasswd").write_text(line + "\n")
            config.append(f"auth: {{htpasswd: {{realm: imgtool-test, path: {directory / 'htpasswd'}}}}}")
        elif auth == "token":
            self.token = TokenServer(directory)
            config.append(
                f"auth: {{token: {{realm: '{self.token.realm}', service: {SERVICE}, issuer: {ISSUER}, "
                f"rootcertbundle: {self.token.cert}}}}}"
            )
        (directory / "config.yml").write_text("\n".join(config) + "\n")
        with open(directory / "registry.log", "wb") as log:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(directory / "config.yml")],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v2/")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    said = (directory / "registry.log").read_text(errors="replace")
                    raise RuntimeError(f"docker-registry did not start: {said}") from None
                time.sleep(0.05)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def push(
        self, source: str, dest: str, *, all_platforms: bool = False, extra: tuple[str, ...] = ()
    ) -> None:
        """``skopeo copy SOURCE docker://HOST/DEST``, with credentials when the registry needs them."""
        args = ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
        if self.auth != "none":
            args.append(f"--dest-creds={USER}:{PASSWORD}")
        if all_platforms:
            args.append("--all")
        args += extra
        env = {**os.environ, "REGISTRY_AUTH_FILE": str(self.directory / "skopeo-auth.json")}
        subprocess.run([*args, source, f"docker://{self.host}/{dest}"], check=True, env=env, timeout=120)

    def close(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, 15)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, 9)
                self.process.wait()
        if self.token is not None:
            self.token.close()


def have_tools() -> str | None:
    """What is missing to run these tests, or None."""
    for tool in ("docker-registry", "skopeo", "htpasswd", "openssl"):
        if shutil.which(tool) is None:
            return tool
    return None


# -- the fault-injecting proxy ----------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Fault:
    """What the proxy does to the next ``times`` requests whose path contains ``path``:
    ``status`` (with ``retry_after``), ``cut_after`` (send the headers and that many body bytes,
    then drop the connection), ``corrupt_at`` (flip that body byte), ``redirect`` (307 to the
    same path on ``FaultProxy.redirect_port``), ``append`` (more body than the blob), ``delay``
    (send the body in pieces of 4 kB, that many seconds apart: a slow registry)."""

    path: str
    times: int = 1
    status: int | None = None
    retry_after: str | None = None
    cut_after: int | None = None
    corrupt_at: int | None = None
    redirect: bool = False
    append: bytes = b""
    delay: float = 0.0


class FaultProxy:
    """Forwards every request to ``upstream``; ``faults`` are applied in order, each ``times`` times.
    A second server on ``redirect_port`` serves what a redirect points at (as blob storage would,
    on its own authority) and records in ``redirected`` the headers it was sent."""

    def __init__(self, upstream: Registry, tls: Path | None = None) -> None:
        """``tls``: a directory to make a self-signed certificate in and serve HTTPS with it
        (the redirect target stays plain HTTP)."""
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.redirected: list[Seen] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                owner.handle(self, redirect_target=False)

            def do_HEAD(self) -> None:
                owner.handle(self, redirect_target=False)

        class Target(QuietHandler):
            def do_GET(self) -> None:
                owner.handle(self, redirect_target=True)

        self._server, self.port = serve(Handler, tls)
        self._target, self.redirect_port = serve(Target)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and fault.path in path:
                    fault.times -= 1
                    return fault
        return None

    def handle(self, handler: http.server.BaseHTTPRequestHandler, *, redirect_target: bool) -> None:
        seen = Seen(handler.command, handler.path, dict(handler.headers.items()))
        (self.redirected if redirect_target else self.seen).append(seen)
        fault = None if redirect_target else self._fault(handler.path)
        if fault is not None and fault.status is not None:
            handler.send_response(fault.status)
            if fault.retry_after is not None:
                handler.send_header("Retry-After", fault.retry_after)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if fault is not None and fault.redirect:
            handler.send_response(307)
            handler.send_header("Location", f"http://127.0.0.1:{self.redirect_port}{handler.path}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        headers = {
            k: v for k, v in handler.headers.items() if k.lower() in ("authorization", "accept", "range")
        }
        if redirect_target:  # blob storage authorises the signed URL itself, not the client's header
            headers.pop("Authorization", None)
            if self.upstream.auth == "basic":
                headers["Authorization"] = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=30)
        try:
            conn.request(handler.command, handler.path, headers=headers)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if fault is not None and fault.corrupt_at is not None and len(body) > fault.corrupt_at:
            body = (
                body[: fault.corrupt_at]
                + bytes([body[fault.corrupt_at] ^ 0x01])
                + body[fault.corrupt_at + 1 :]
            )
        if fault is not None:
            body += fault.append
        handler.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command == "HEAD":
            return
        if fault is not None and fault.cut_after is not None:
            handler.wfile.write(body[: fault.cut_after])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.delay:
            for start in range(0, len(body), 4096):
                handler.wfile.write(body[start : start + 4096])
                handler.wfile.flush()
                time.sleep(fault.delay)
            return
        handler.wfile.write(body)

    def close(self) -> None:
        for server in (self._server, self._target):
            server.shutdown()
            server.server_close()
