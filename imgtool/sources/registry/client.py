"""The HTTP side of the registry protocol, on urllib3: one pool per registry, authentication from its
challenges, bounded retries with backoff (honouring ``Retry-After``), and redirects followed by hand
so that ``Authorization`` never leaves the registry's own host and port and HTTPS never turns into HTTP."""

from __future__ import annotations

import email.utils
import json
import ssl
import time
from typing import Final
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import InsecureRequestWarning

from imgtool.errors import ImageNotFoundError, RegistryError
from imgtool.sources.reference import DockerName
from imgtool.sources.registry.auth import Authenticator, parse_challenges
from imgtool.sources.registry.credentials import find_credentials
from imgtool.sources.registry.options import RegistryOptions, is_loopback

MAX_REDIRECTS: Final = 10
MAX_ERROR_BODY: Final = 64 << 10
MAX_BACKOFF: Final = 30.0
RETRY_STATUSES: Final = frozenset({408, 429, *range(500, 600)}) - {501, 505}
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
USER_AGENT: Final = "imgtool"


class UnreachableError(RegistryError):
    """The registry could not be reached, or the connection broke, as often as retries allow."""


def printable(text: str, limit: int = 200) -> str:
    """A registry's words in a one-line message: printable characters only, and not too many."""
    clean = "".join(c if c.isprintable() else "?" for c in text)
    return clean if len(clean) <= limit else clean[:limit] + "..."


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, f"{(parts.hostname or '').lower()}:{port}"


class Client:
    """Requests to one repository of one registry."""

    def __init__(self, name: DockerName, options: RegistryOptions, location: str) -> None:
        self.name = name
        self.options = options
        self.location = location
        self.base = f"{'http' if options.plain_http else 'https'}://{name.host}"
        self.scope = f"repository:{name.repository}:pull"
        if not options.tls_verify:
            urllib3.disable_warnings(InsecureRequestWarning)  # asked for: said once, in --help
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=32,  # as many as copy --jobs may use at once
            cert_reqs="CERT_REQUIRED" if options.tls_verify else "CERT_NONE",
            retries=False,
            timeout=urllib3.Timeout(connect=min(options.timeout, 30.0), read=options.timeout),
        )
        self.auth = Authenticator(find_credentials(name, options), location)
        self.sleep = time.sleep

    def close(self) -> None:
        self._pool.clear()

    # -- the registry's API ---------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/``: that the registry speaks the API, and how it wants to be authenticated.

        A registry on this machine is tried over HTTPS once, then over plain HTTP if that fails
        for any reason but an untrusted certificate (as docker and podman treat ``localhost``)."""
        if self.base.startswith("https:") and is_loopback(self.name.host):
            try:
                response = self._authenticated("GET", f"{self.base}/v2/", {}, authenticate=False, stream=True)
            except (Urllib3Error, OSError) as exc:
                if _untrusted(exc):
                    raise self._tls_error(exc) from exc
                self.base = f"http://{self.name.host}"
            else:
                self._check_ping(response)
                return
        self._check_ping(self._retrying("GET", f"{self.base}/v2/", {}, authenticate=False))

    def _check_ping(self, response: urllib3.BaseHTTPResponse) -> None:
        try:
            if response.status == 401:
                self.auth.learn(parse_challenges(response.headers.getlist("WWW-Authenticate")))
            elif response.status == 404:
                raise RegistryError(
                    f"{self.location}: {self.name.host} is not a registry (/v2/ is not found)"
                )
            elif response.status >= 400:
                raise self.error(response, "the API version check (/v2/)")
        finally:
            _discard(response)

    def get(
        self, path: str, headers: dict[str, str] | None = None, *, stream: bool = False
    ) -> urllib3.BaseHTTPResponse:
        """``GET`` a path of the repository (``manifests/REF``, ``blobs/DIGEST``), authenticated;
        the response of any status but the retried ones (the caller checks it)."""
        url = f"{self.base}/v2/{self.name.repository}/{path}"
        return self._retrying("GET", url, dict(headers or {}), authenticate=True, stream=stream)

    def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None = None,
        *,
        scope: str | None = None,
        retry: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        """A request that writes (``POST``/``PATCH``/``PUT`` of a push) to ``url``, a path of the
        repository (``blobs/uploads/``) or an absolute URL the registry gave (an upload's
        ``Location``); authenticated and retried as every request is, ``body`` sent each time. An
        upload Location on another host or port gets no ``Authorization`` (as a redirect gets none).
        ``scope``: what the request needs, where it is more than the client's own scope (a mount
        from another repository). ``retry=False``: sent once, a broken connection raised and a
        5xx returned (a PATCH is resumed from what the registry holds, not sent again whole)."""
        if not url.startswith(("http://", "https://")):
            url = f"{self.base}/v2/{self.name.repository}/{url}"
        own = _origin(url) == _origin(self.base)
        return self._retrying(
            method, url, dict(headers), authenticate=own, stream=True, body=body, scope=scope, retry=retry
        )

    def has(self, path: str) -> bool:
        """``HEAD`` a path of the repository: whether the registry holds it."""
        url = f"{self.base}/v2/{self.name.repository}/{path}"
        response = self._retrying("HEAD", url, {}, authenticate=True)
        _discard(response)
        if response.status in (200, 404):
            return response.status == 200
        raise self.error(response, path)

    def get_small(self, path: str, headers: dict[str, str], limit: int, what: str) -> tuple[bytes, str]:
        """The body (at most ``limit`` + 1 bytes) and media type of a small document (a manifest),
        fetched again from the start if the connection breaks while it is read."""
        attempt = 0
        while True:
            response = self.get(path, headers, stream=True)
            try:
                if response.status != 200:
                    raise self.error(response, what)
                media_type = (response.headers.get("Content-Type") or "").partition(";")[0].strip()
                return _read_all(response, limit + 1), media_type
            except (Urllib3Error, OSError) as exc:
                if attempt >= self.options.retries:
                    raise RegistryError(
                        f"{self.location}: {what}: the connection broke {attempt + 1} times: "
                        f"{printable(str(exc))}"
                    ) from exc
            finally:
                _discard(response)
            self.sleep(self.backoff(attempt))
            attempt += 1

    def error(self, response: urllib3.BaseHTTPResponse, what: str) -> RegistryError | ImageNotFoundError:
        """The registry's refusal as one line: its status and the first error its body names."""
        detail = _error_detail(response)
        status = response.status
        if status == 404:
            return ImageNotFoundError(f"{self.location}: {what}: not found in the registry{detail}")
        if status in (401, 403):
            if self.auth.credentials is None:
                return RegistryError(
                    f"{self.location}: {what}: authentication required (HTTP {status}{detail}); "
                    "give --creds or log in (docker login, podman login)"
                )
            who = self.auth.credentials.username
            return RegistryError(f"{self.location}: {what}: access denied to {who} (HTTP {status}{detail})")
        return RegistryError(f"{self.location}: {what}: the registry answered HTTP {status}{detail}")

    # -- one request: authentication, retries, redirects ------------------------------------------

    def _retrying(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        authenticate: bool,
        stream: bool = False,
        body: bytes | None = None,
        scope: str | None = None,
        retry: bool = True,
    ) -> urllib3.BaseHTTPResponse:
        attempt = 0
        tries = self.options.retries if retry else 0
        while True:
            try:
                response = self._authenticated(
                    method, url, headers, authenticate=authenticate, stream=stream, body=body, scope=scope
                )
            except (Urllib3Error, OSError) as exc:
                if _untrusted(exc):
                    raise self._tls_error(exc) from exc
                if attempt >= tries:
                    raise UnreachableError(
                        f"{self.location}: cannot reach {self.name.host} "
                        f"(tried {attempt + 1} times): {printable(str(exc))}"
                    ) from exc
                self.sleep(self.backoff(attempt))
                attempt += 1
                continue
            if response.status not in RETRY_STATUSES or attempt >= tries:
                return response
            wait = self.retry_after(response)
            _discard(response)
            self.sleep(wait if wait is not None else self.backoff(attempt))
            attempt += 1

    def _tls_error(self, exc: BaseException) -> RegistryError:
        return RegistryError(
            f"{self.location}: the TLS certificate of {self.name.host} is not trusted "
            f"({printable(str(_untrusted(exc)))}); --tls-verify=false accepts it"
        )

    def backoff(self, attempt: int) -> float:
        return min(self.options.backoff * 2.0**attempt, MAX_BACKOFF)

    def retry_after(self, response: urllib3.BaseHTTPResponse) -> float | None:
        """``Retry-After`` in seconds (a number or an HTTP date), at most ``max_wait``; None if absent."""
        value = response.headers.get("Retry-After")
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            seconds = when.timestamp() - time.time()
        return min(max(seconds, 0.0), self.options.max_wait)

    def _authenticated(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        authenticate: bool,
        stream: bool,
        body: bytes | None = None,
        scope: str | None = None,
    ) -> urllib3.BaseHTTPResponse:
        sent = dict(headers)
        scope = scope or self.scope
        if authenticate:
            header = self.auth.header(scope, self._fetch_token)
            if header is not None:
                sent["Authorization"] = header
        response = self._follow(method, url, sent, stream=stream, body=body)
        for _ in range(2):  # the challenge answered; once more for insufficient_scope
            if not authenticate or response.status != 401:
                break
            try:  # a challenge or a token server imgtool refuses: the 401 is closed all the same
                challenges = parse_challenges(response.headers.getlist("WWW-Authenticate"))
                header = self.auth.answer(challenges, scope, self._fetch_token, sent.get("Authorization"))
            except BaseException:
                _discard(response)
                raise
            if header is None:
                break
            _discard(response)
            sent["Authorization"] = header
            response = self._follow(method, url, sent, stream=stream, body=body)
        return response

    def _fetch_token(self, url: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, bytes]:
        method = "GET" if body is None else "POST"
        response = self._follow(method, url, headers, stream=True, body=body)
        try:
            body = _read_all(response, MAX_ERROR_BODY + 1)
        finally:
            _discard(response)
        if len(body) > MAX_ERROR_BODY:
            raise RegistryError(
                f"{self.location}: the token server's answer is larger than {MAX_ERROR_BODY} bytes"
            )
        return response.status, body

    def _follow(
        self, method: str, url: str, headers: dict[str, str], *, stream: bool, body: bytes | None = None
    ) -> urllib3.BaseHTTPResponse:
        """The request, following redirects by hand: ``Authorization`` is dropped for another host
        or port (blob storage has its own, signed URLs), and HTTPS to HTTP is refused."""
        sent = {"User-Agent": USER_AGENT, **headers}
        origin = _origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            response = self._pool.request(
                method,
                url,
                body=body,
                headers=sent,
                redirect=False,
                preload_content=False,
                decode_content=False,
            )
            location = response.headers.get("Location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response
            _discard(response)
            target = urljoin(url, location)
            scheme = urlsplit(target).scheme
            if scheme not in ("http", "https"):
                raise RegistryError(f"{self.location}: refused a redirect to {printable(target)!r}")
            if urlsplit(url).scheme == "https" and scheme == "http":
                raise RegistryError(
                    f"{self.location}: refused a redirect from HTTPS to plain HTTP ({printable(target)})"
                )
            if _origin(target) != origin:
                sent = {k: v for k, v in sent.items() if k.lower() != "authorization"}
            url = target
        raise RegistryError(f"{self.location}: more than {MAX_REDIRECTS} redirects")


def _untrusted(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc``, if that is what it is."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError):
            return item
        todo += [item.__cause__, item.__context__, *item.args, getattr(item, "reason", None)]
    return None


def _read_all(response: urllib3.BaseHTTPResponse, limit: int) -> bytes:
    """The body, up to ``limit`` bytes; read to its end so that a body cut short is an error
    (urllib3 hands over what arrived, and raises only when asked for more)."""
    pieces: list[bytes] = []
    total = 0
    while total < limit:
        piece = response.read(min(limit - total, 64 << 10))
        if not piece:
            break
        pieces.append(piece)
        total += len(piece)
    return b"".join(pieces)


def _discard(response: urllib3.BaseHTTPResponse) -> None:
    """Done with a response whose body is not wanted: the connection is closed, not drained
    (a blob's body can be large)."""
    response.close()
    response.release_conn()


def _error_detail(response: urllib3.BaseHTTPResponse) -> str:
    try:
        body = response.read(MAX_ERROR_BODY)
        doc = json.loads(body)
    except (Urllib3Error, OSError, ValueError, UnicodeDecodeError):
        return ""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return ""
    first = errors[0]
    words = [w for w in (first.get("code"), first.get("message")) if isinstance(w, str) and w]
    return f": {printable(' '.join(words))}" if words else ""
