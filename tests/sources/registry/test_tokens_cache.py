"""Bearer tokens are kept per scope until shortly before they expire; no network (the token
fetcher is a function answering as a token server does)."""

from __future__ import annotations

import json
import time

import pytest

from imgtool.errors import RegistryError
from imgtool.sources.registry.auth import Authenticator, Challenge, merge_scopes
from imgtool.sources.registry.credentials import Credentials

CHALLENGE = Challenge("bearer", {"realm": "https://auth.example/token", "service": "reg"})


class TokenServer:
    def __init__(self, lifetime: int | None = 300, token: object = None) -> None:
        self.asked: list[tuple[str, dict[str, str]]] = []
        self.lifetime = lifetime
        self.token = token

    def __call__(self, url: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, bytes]:
        self.asked.append((url if body is None else f"POST {url} {body.decode()}", headers))
        doc: dict[str, object] = {"token": self.token if self.token is not None else f"t{len(self.asked)}"}
        if self.lifetime is not None:
            doc["expires_in"] = self.lifetime
        return 200, json.dumps(doc).encode()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the clock auth.py reads expiry by
    return now


def test_one_token_per_scope_until_it_expires(clock: list[float]) -> None:
    server = TokenServer(lifetime=300)
    authenticator = Authenticator(None, "docker://reg/x")
    authenticator.learn([CHALLENGE])
    pull = "repository:x:pull"
    assert authenticator.header(pull, server) == "Bearer t1"
    assert authenticator.header(pull, server) == "Bearer t1"
    assert authenticator.header("repository:y:pull", server) == "Bearer t2"
    clock[0] += 300 - 10 - 1  # still valid: used up to 10 s before it expires
    assert authenticator.header(pull, server) == "Bearer t1"
    clock[0] += 1
    assert authenticator.header(pull, server) == "Bearer t3"
    assert [url for url, _ in server.asked] == [
        "https://auth.example/token?service=reg&scope=repository%3Ax%3Apull",
        "https://auth.example/token?service=reg&scope=repository%3Ay%3Apull",
        "https://auth.example/token?service=reg&scope=repository%3Ax%3Apull",
    ]
    assert [headers for _, headers in server.asked] == [{}, {}, {}]


def test_a_token_without_lifetime_lasts_the_default_60_seconds(clock: list[float]) -> None:
    server = TokenServer(lifetime=None)
    authenticator = Authenticator(None, "docker://reg/x")
    authenticator.learn([CHALLENGE])
    assert authenticator.header("s", server) == "Bearer t1"
    clock[0] += 49
    assert authenticator.header("s", server) == "Bearer t1"
    clock[0] += 1
    assert authenticator.header("s", server) == "Bearer t2"


def test_credentials_go_to_the_token_server_with_the_account() -> None:
    server = TokenServer()
    authenticator = Authenticator(Credentials("me", "pw"), "docker://reg/x")
    header = authenticator.answer([CHALLENGE], "repository:x:pull", server, None)
    assert header == "Bearer t1"
    url, headers = server.asked[0]
    assert url == "https://auth.example/token?service=reg&scope=repository%3Ax%3Apull&account=me"
    assert headers == {"Authorization": "Basic bWU6cHc="}


def test_insufficient_scope_asks_for_the_scope_named_once() -> None:
    server = TokenServer()
    authenticator = Authenticator(None, "docker://reg/x")
    first = authenticator.answer([CHALLENGE], "repository:x:pull", server, None)
    wider = Challenge(
        "bearer", {**CHALLENGE.params, "scope": "repository:x:pull,push", "error": "insufficient_scope"}
    )
    second = authenticator.answer([wider], "repository:x:pull", server, first)
    assert (first, second) == ("Bearer t1", "Bearer t2")
    assert authenticator.answer([wider], "repository:x:pull", server, second) is None
    assert len(server.asked) == 2


@pytest.mark.parametrize("token", ["", "a b", "line\r\nbreak", 42])
def test_a_token_that_cannot_be_sent_is_refused(token: object) -> None:
    authenticator = Authenticator(None, "docker://reg/x")
    with pytest.raises(RegistryError) as caught:
        authenticator.answer([CHALLENGE], "s", TokenServer(token=token), None)
    assert str(caught.value) == "docker://reg/x: the token server's answer holds no usable token"


def test_a_token_for_a_wider_scope_never_takes_another_scopes_place() -> None:
    server = TokenServer()
    authenticator = Authenticator(None, "docker://reg/b")
    authenticator.learn([CHALLENGE])
    push = "repository:b:pull,push"
    pull_a = "repository:a:pull"
    assert authenticator.header(push, server) == "Bearer t1"
    assert authenticator.header(pull_a, server) == "Bearer t2"
    # the registry wants pull of a as well for a request of push's scope: a token for both
    wanted = Challenge("bearer", {**CHALLENGE.params, "scope": pull_a, "error": "insufficient_scope"})
    assert authenticator.answer([wanted], push, server, "Bearer t1") == "Bearer t3"
    assert server.asked[-1][0] == (
        "https://auth.example/token?service=reg&scope=repository%3Aa%3Apull&scope=repository%3Ab%3Apull%2Cpush"
    )
    assert authenticator.header(push, server) == "Bearer t3"  # it covers push's scope too
    assert authenticator.header(pull_a, server) == "Bearer t2"  # a's own token is kept
    # a scope of two items, as a mount asks: one token, kept under both items together
    mount = f"{push} {pull_a}"
    assert authenticator.header(mount, server) == "Bearer t3"
    assert authenticator.header(f"{pull_a} {push}", server) == "Bearer t3"
    assert len(server.asked) == 3


@pytest.mark.parametrize(
    ("scopes", "key"),
    [
        (["repository:a:pull", "repository:a:push"], "repository:a:pull,push"),
        (["repository:b:pull,push repository:a:pull"], "repository:a:pull repository:b:pull,push"),
        (["repository:a:pull,push", "repository:a:pull"], "repository:a:pull,push"),
        (["registry:catalog:*", ""], "registry:catalog:*"),
        (["odd", "repository:a:pull"], "odd repository:a:pull"),
    ],
)
def test_scopes_are_merged_per_resource(scopes: list[str], key: str) -> None:
    assert merge_scopes(*scopes) == key


def test_an_identity_token_is_posted_for_an_access_token() -> None:
    server = TokenServer()
    authenticator = Authenticator(Credentials("me", "", "refresh-1"), "docker://reg/b")
    mount = "repository:b:pull,push repository:a:pull"
    assert authenticator.answer([CHALLENGE], mount, server, None) == "Bearer t1"
    assert server.asked == [
        (
            "POST https://auth.example/token service=reg&grant_type=refresh_token&refresh_token=refresh-1"
            "&client_id=imgtool&scope=repository%3Aa%3Apull+repository%3Ab%3Apull%2Cpush",
            {"Content-Type": "application/x-www-form-urlencoded"},  # no password, no Basic
        )
    ]
