"""Token auth against the real registry: the challenge is followed to the token server, a token is
fetched once per scope and reused, credentials go with the token request only."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.registry import IDENTITY_TOKEN, PASSWORD, SERVICE, USER, FaultProxy
from tests.sources.registry.conftest import SAMPLE, Pushed


@pytest.fixture
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)


def test_one_token_per_scope_for_a_whole_flatten(
    token: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path, no_config: None
) -> None:
    server = token.registry.token
    assert server is not None
    proxy = FaultProxy(token.registry)
    try:
        server.requests.clear()
        result = imgtool_cli(
            "flatten", "-q", f"docker://{proxy.host}/sample:1.1", "-o", str(tmp_path / "out"), *token.creds
        )
        assert (result.code, result.stderr) == (0, "")
        assert server.requests == [("repository:sample:pull", USER, True)]
        # the ping's challenge was enough: every request after it carried the one token
        assert proxy.seen[0].path == "/v2/"
        assert proxy.seen[0].headers.get("Authorization") is None
        after_ping = proxy.seen[1:]
        assert len(after_ping) >= 1 + 1 + 5  # the manifest, the config, each layer (or more)
        assert len({s.headers.get("Authorization") for s in after_ping}) == 1
        assert after_ping[0].headers["Authorization"].startswith("Bearer ")
    finally:
        proxy.close()
    local = imgtool_cli("flatten", "-q", f"oci:{SAMPLE}:1.1", "-o", str(tmp_path / "local"))
    assert local.code == 0


def test_anonymous_gets_a_token_without_access(
    token: Pushed, imgtool_cli: ImgtoolCli, no_config: None
) -> None:
    server = token.registry.token
    assert server is not None
    server.requests.clear()
    ref = token.ref("sample:1.0")
    result = imgtool_cli("inspect", ref)
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == (
        f"imgtool: error: {ref}: manifest 1.0: authentication required "
        "(HTTP 401: UNAUTHORIZED authentication required); "
        "give --creds or log in (docker login, podman login)\n"
    )
    assert server.requests == [("repository:sample:pull", None, False)]


def test_wrong_credentials_are_refused_by_the_token_server(
    token: Pushed, imgtool_cli: ImgtoolCli, no_config: None
) -> None:
    server = token.registry.token
    assert server is not None
    ref = token.ref("sample:1.0")
    result = imgtool_cli("inspect", ref, "--creds", f"{USER}:not-{PASSWORD}")
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == (
        f"imgtool: error: {ref}: the token server 127.0.0.1:{server.port} "
        f"refused a token as {USER} (HTTP 401)\n"
    )


def _identity_file(tmp_path: Path, host: str, token: str, user: str | None) -> Path:
    entry = {"identitytoken": token}
    if user is not None:
        entry["auth"] = base64.b64encode(f"{user}:".encode()).decode()
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {host: entry}}))
    return path


def test_an_identity_token_is_exchanged_at_the_token_server(
    token: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path, no_config: None
) -> None:
    server = token.registry.token
    assert server is not None
    server.requests.clear()
    server.oauth.clear()
    authfile = _identity_file(tmp_path, token.registry.host, IDENTITY_TOKEN, USER)
    pulled = imgtool_cli("inspect", "--json", token.ref("sample:1.1"), "--authfile", str(authfile))
    assert (pulled.code, pulled.stderr) == (0, "")
    pushed = imgtool_cli(
        "copy", "-q", f"oci:{SAMPLE}:1.0", token.ref("identity/sample:1.0"), "--authfile", str(authfile)
    )
    assert (pushed.code, pushed.stderr) == (0, "")
    # one OAuth2 POST per scope, the refresh token in it (left out of the record), no GET at all
    form = {"grant_type": "refresh_token", "client_id": "imgtool", "service": SERVICE}
    assert server.oauth == [
        {**form, "scope": "repository:sample:pull"},
        {**form, "scope": "repository:identity/sample:pull,push"},
    ]
    assert server.requests == []
    back = imgtool_cli("inspect", "--json", token.ref("identity/sample:1.0"), *token.creds)
    assert (
        json.loads(back.stdout)["manifest_digest"]
        == json.loads(imgtool_cli("inspect", "--json", f"oci:{SAMPLE}:1.0").stdout)["manifest_digest"]
    )


@pytest.mark.parametrize(("user", "who"), [(USER, f" of {USER}"), (None, "")])
def test_a_refused_identity_token_is_an_error(
    token: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path, no_config: None, user: str | None, who: str
) -> None:
    server = token.registry.token
    assert server is not None
    ref = token.ref("sample:1.0")
    authfile = _identity_file(tmp_path, token.registry.host, "expired-token", user)
    result = imgtool_cli("inspect", ref, "--authfile", str(authfile))
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == (
        f"imgtool: error: {ref}: the token server 127.0.0.1:{server.port} "
        f"refused a token for the identity token{who} (HTTP 401)\n"
    )
