"""Challenge-driven authentication: a 401's ``WWW-Authenticate`` says Basic or Bearer; Bearer tokens
are fetched from the realm it names (``service``, ``scope``, ``account``) and kept per scope until
they expire. Credentials go only to the registry itself and to the token realm it names.

A scope is one or more ``TYPE:NAME:ACTIONS`` items, separated by spaces as a challenge writes
them (a cross-repository mount needs ``repository:DEST:pull,push repository:SRC:pull``); each
item goes to the token server as a ``scope`` parameter of its own. Tokens are kept per set of
items: a token fetched for one set never takes the place of another's, and one fetched because a
registry answered ``insufficient_scope`` covers what the request asked for and what the registry
named, so that it serves that request's scope from then on."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import urlencode, urlsplit

from imgtool.errors import RegistryError
from imgtool.sources.registry.credentials import Credentials

MAX_TOKEN_BYTES: Final = 1 << 20
DEFAULT_TOKEN_LIFETIME: Final = 60  # seconds, when the token server does not say (the spec's default)
EXPIRY_MARGIN: Final = 10  # seconds before expiry a token is no longer used
_TOKEN_RE: Final = re.compile(r"[!-~]{1,65536}")  # what can go into a header as it is
_PARAM_RE: Final = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?')


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lower case
    params: Mapping[str, str]


def parse_challenges(headers: list[str]) -> list[Challenge]:
    """Every challenge of every ``WWW-Authenticate`` header: ``Bearer realm="...",service="..."``."""
    found: list[Challenge] = []
    for header in headers:
        rest = header.strip()
        while rest:
            scheme, _, rest = rest.partition(" ")
            params: dict[str, str] = {}
            while True:
                match = _PARAM_RE.match(rest)
                if match is None:
                    break
                value = match.group(2)
                params[match.group(1).lower()] = (
                    re.sub(r"\\(.)", r"\1", value) if value is not None else match.group(3)
                )
                rest = rest[match.end() :]
            found.append(Challenge(scheme.strip(",").lower(), params))
            rest = rest.strip().lstrip(",").strip()
    return found


class TokenFetcher(Protocol):
    """Fetches a token: a GET of ``url``, or a POST of the form ``body`` (OAuth2); the status and
    the body of the answer. The client's own request, with its redirects and retries."""

    def __call__(
        self, url: str, headers: dict[str, str], body: bytes | None = None, /
    ) -> tuple[int, bytes]: ...


OAUTH_CLIENT_ID: Final = "imgtool"  # who asks, in an OAuth2 token request (docker says "docker")


class Authenticator:
    """The ``Authorization`` header for each request to one registry, learnt from its challenges."""

    def __init__(self, credentials: Credentials | None, location: str) -> None:
        self.credentials = credentials
        self._registry = location  # what messages start with
        self._challenge: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}  # scope key -> (token, when it expires)
        self._wider: dict[str, str] = {}  # scope key -> the key of the wider scope that served it
        self._fetching: dict[str, threading.Lock] = {}  # scope key -> held while its token is fetched
        self._lock = threading.Lock()
        self.token_requests = 0

    @property
    def bearer(self) -> bool:
        """Whether the registry asks for tokens (each issued for the scope it was asked for)."""
        return self._challenge is not None and self._challenge.scheme == "bearer"

    def header(self, scope: str, fetch: TokenFetcher) -> str | None:
        """What to send for ``scope`` before any 401: what the last challenge (the ping's) calls
        for, a token fetched for the scope if none is held yet."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self._basic()
        return f"Bearer {self._token(challenge, scope, fetch)}"

    def answer(
        self, challenges: list[Challenge], scope: str, fetch: TokenFetcher, sent: str | None
    ) -> str | None:
        """The header answering a 401's challenges for ``scope`` (``sent``: the header refused);
        None when there is nothing more to try. A Bearer challenge naming a scope
        (``error="insufficient_scope"``) gets a token for that scope, once."""
        usable = [c for c in challenges if c.scheme in ("bearer", "basic")]
        if not usable:
            return None
        challenge = next((c for c in usable if c.scheme == "bearer"), usable[0])
        self._challenge = challenge
        if challenge.scheme == "basic":
            header = self._basic()
            return header if header != sent else None
        wanted = merge_scopes(scope, challenge.params.get("scope", ""))
        header = f"Bearer {self._token(challenge, wanted, fetch)}"
        if header == sent:
            return None  # the token for that very scope was refused: asking again gives the same
        if wanted != merge_scopes(scope):
            with self._lock:
                self._wider[merge_scopes(scope)] = wanted
        return header

    def _token(self, challenge: Challenge, scope: str, fetch: TokenFetcher) -> str:
        """A token for ``scope``: the one held until it expires (or that of a wider scope that
        served it), else a new one."""
        key = merge_scopes(scope)
        with self._lock:
            fetching = self._fetching.setdefault(key, threading.Lock())
        with fetching:  # threads asking for one scope at once: one fetches, the others wait for it
            now = time.monotonic()
            with self._lock:
                for held in (self._tokens.get(self._wider.get(key, "")), self._tokens.get(key)):
                    if held is not None and held[1] > now:
                        return held[0]
            token = self._fetch_token(challenge, key, fetch)
            with self._lock:
                self._tokens[key] = token
            return token[0]

    def learn(self, challenges: list[Challenge]) -> None:
        """The challenge of the ``/v2/`` ping: how later requests authenticate from the start."""
        usable = [c for c in challenges if c.scheme in ("bearer", "basic")]
        if usable:
            self._challenge = next((c for c in usable if c.scheme == "bearer"), usable[0])

    def _basic(self) -> str | None:
        if self.credentials is None:
            return None
        pair = f"{self.credentials.username}:{self.credentials.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def _fetch_token(self, challenge: Challenge, scope: str, fetch: TokenFetcher) -> tuple[str, float]:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryError(f"{self._registry}: Bearer challenge names no realm")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(f"{self._registry}: token realm is not an http(s) URL: {realm[:200]!r}")
        query: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            query.append(("service", challenge.params["service"]))
        headers: dict[str, str] = {}
        identity = self.credentials.identity_token if self.credentials is not None else None
        self.token_requests += 1
        if identity is not None:  # OAuth2: the refresh token for an access token, in a POST
            form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", identity),
                ("client_id", OAUTH_CLIENT_ID),
            ]
            if scope:
                form.append(("scope", scope))
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            status, body = fetch(realm, headers, urlencode(query + form).encode())
        else:
            query += [("scope", item) for item in scope.split()]
            if self.credentials is not None:
                query.append(("account", self.credentials.username))
                basic = self._basic()
                if basic is not None:
                    headers["Authorization"] = basic
            url = realm + ("&" if parts.query else "?") + urlencode(query) if query else realm
            status, body = fetch(url, headers)
        if status in (401, 403):
            user = self.credentials.username if self.credentials is not None else None
            if identity is not None:
                who = "for the identity token" + ("" if user == "<token>" else f" of {user}")
            else:
                who = f"as {user}" if user is not None else "anonymously"
            raise RegistryError(
                f"{self._registry}: the token server {parts.netloc} refused a token {who} (HTTP {status})"
            )
        if status != 200:
            raise RegistryError(f"{self._registry}: the token server {parts.netloc} answered HTTP {status}")
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise RegistryError(f"{self._registry}: the token server's answer is not JSON") from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or _TOKEN_RE.fullmatch(token) is None:
            raise RegistryError(f"{self._registry}: the token server's answer holds no usable token")
        expires = doc.get("expires_in")
        lifetime = expires if isinstance(expires, int) and expires > 0 else DEFAULT_TOKEN_LIFETIME
        return token, time.monotonic() + max(lifetime - EXPIRY_MARGIN, 1)


def merge_scopes(*scopes: str) -> str:
    """The items of ``scopes`` (each space-separated) as one key: the actions asked of one
    resource merged (``repository:a:pull`` and ``repository:a:push`` make ``repository:a:pull,push``),
    the items in sorted order, an item not of the ``TYPE:NAME:ACTIONS`` form kept as it is."""
    actions: dict[str, list[str]] = {}
    others: set[str] = set()
    for text in scopes:
        for item in text.split():
            resource, colon, wanted = item.rpartition(":")
            if not colon or ":" not in resource:
                others.add(item)
                continue
            have = actions.setdefault(resource, [])
            have += [a for a in wanted.split(",") if a and a not in have]
    items = [f"{resource}:{','.join(have)}" for resource, have in actions.items()]
    return " ".join(sorted([*items, *others]))
