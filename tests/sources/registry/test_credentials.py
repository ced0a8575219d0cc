"""Where credentials come from, and how challenges are read; no network (a credential helper is a
small script on PATH)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from imgtool.errors import ImgtoolError, UsageError
from imgtool.sources.reference import parse_docker_name
from imgtool.sources.registry.auth import Challenge, parse_challenges
from imgtool.sources.registry.credentials import Credentials, find_credentials, parse_creds
from imgtool.sources.registry.options import RegistryOptions

NAME = parse_docker_name("registry.example:5000/team/app:1")
HUB = parse_docker_name("alpine")


def _auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty environment: no docker config, no auth files, a PATH holding only ``bin``."""
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "docker").mkdir()
    (tmp_path / "bin").mkdir()
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    return tmp_path


def _write(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _helper(home: Path, name: str, script: str) -> None:
    path = home / "bin" / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_anonymous_when_nothing_is_configured(home: Path) -> None:
    assert find_credentials(NAME, RegistryOptions()) is None


def test_creds_come_first(home: Path) -> None:
    _write(home / "docker" / "config.json", {"auths": {"registry.example:5000": _auth("file", "x")}})
    found = find_credentials(NAME, RegistryOptions(creds=("me", "pw")))
    assert found == Credentials("me", "pw")
    assert "pw" not in repr(found)


def test_docker_config_auths(home: Path) -> None:
    _write(
        home / "docker" / "config.json",
        {"auths": {"other:5000": _auth("no", "no"), "https://registry.example:5000/v1/": _auth("u", "p:q")}},
    )
    assert find_credentials(NAME, RegistryOptions()) == Credentials("u", "p:q")


def test_docker_hub_is_under_its_index_url(home: Path) -> None:
    _write(home / "docker" / "config.json", {"auths": {"https://index.docker.io/v1/": _auth("hub", "pw")}})
    assert find_credentials(HUB, RegistryOptions()) == Credentials("hub", "pw")
    assert find_credentials(NAME, RegistryOptions()) is None


def test_a_repository_key_wins_over_the_host(home: Path) -> None:
    auths = {"registry.example:5000": _auth("host", "1"), "registry.example:5000/team": _auth("team", "2")}
    _write(home / "docker" / "config.json", {"auths": auths})
    assert find_credentials(NAME, RegistryOptions()) == Credentials("team", "2")


def test_the_authfile_asked_for_is_the_only_one_read(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(home / "docker" / "config.json", {"auths": {"registry.example:5000": _auth("docker", "1")}})
    asked = _write(home / "auth.json", {"auths": {"registry.example:5000": _auth("asked", "2")}})
    assert find_credentials(NAME, RegistryOptions(authfile=str(asked))) == Credentials("asked", "2")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(asked))
    assert find_credentials(NAME, RegistryOptions()) == Credentials("asked", "2")
    empty = _write(home / "empty.json", {"auths": {}})
    assert find_credentials(NAME, RegistryOptions(authfile=str(empty))) is None
    with pytest.raises(UsageError, match=r"nope.json: auth file not found$"):
        find_credentials(NAME, RegistryOptions(authfile=str(home / "nope.json")))


def test_containers_auth_json_after_docker_config(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    _write(
        home / "run" / "containers" / "auth.json", {"auths": {"registry.example:5000": _auth("podman", "3")}}
    )
    assert find_credentials(NAME, RegistryOptions()) == Credentials("podman", "3")


def test_a_broken_auth_entry_is_an_error_naming_it(home: Path) -> None:
    _write(home / "docker" / "config.json", {"auths": {"registry.example:5000": {"auth": "!!!"}}})
    with pytest.raises(ImgtoolError) as caught:
        find_credentials(NAME, RegistryOptions())
    assert str(caught.value) == (
        f"{home}/docker/config.json: auths['registry.example:5000']: auth is not base64 of USER:PASSWORD"
    )


def test_a_credential_helper_is_asked_with_the_host_on_stdin(home: Path) -> None:
    _helper(
        home,
        "fake",
        f'read server; echo "$1 $server" > {home}/asked\n'
        'echo \'{"ServerURL": "x", "Username": "helped", "Secret": "s3"}\'\n',
    )
    _write(home / "docker" / "config.json", {"credHelpers": {"registry.example:5000": "fake"}})
    assert find_credentials(NAME, RegistryOptions()) == Credentials("helped", "s3")
    assert (home / "asked").read_text() == "get registry.example:5000\n"


def test_creds_store_asks_for_docker_hub_by_its_index_url(home: Path) -> None:
    _helper(
        home,
        "store",
        f'read server; echo "$server" > {home}/asked\necho \'{{"Username":"u","Secret":"s"}}\'\n',
    )
    _write(home / "docker" / "config.json", {"credsStore": "store"})
    assert find_credentials(HUB, RegistryOptions()) == Credentials("u", "s")
    assert (home / "asked").read_text() == "https://index.docker.io/v1/\n"


@pytest.mark.parametrize(
    ("script", "why"),
    [
        (None, "is not installed"),
        (
            "echo 'credentials not found in native keychain'; exit 1\n",
            "failed (exit status 1: credentials not found in native keychain)",
        ),
        ("echo not json\n", "answered something that is not JSON"),
        ('echo \'{"Username": "", "Secret": ""}\'\n', "answered no Username and Secret"),
    ],
)
def test_a_missing_or_failing_helper_is_a_warning_and_anonymous(
    home: Path, script: str | None, why: str
) -> None:
    if script is not None:
        _helper(home, "broken", script)
    _write(home / "docker" / "config.json", {"credsStore": "broken"})
    warnings: list[str] = []
    assert find_credentials(NAME, RegistryOptions(warn=warnings.append)) is None
    assert warnings == [
        f"credential helper docker-credential-broken {why}; "
        "going on without credentials for registry.example:5000"
    ]


def test_parse_creds() -> None:
    assert parse_creds("u:p:with:colons") == ("u", "p:with:colons")
    assert parse_creds("u:") == ("u", "")
    for bad in ("", ":p", "nocolon"):
        with pytest.raises(UsageError, match=r"^--creds: expected USER:PASSWORD$"):
            parse_creds(bad)


def test_challenges_are_parsed() -> None:
    headers = [
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:team/app:pull",error="insufficient_scope"',
        'Basic realm="the \\"quoted\\" realm", Bearer realm=https://other/token',
    ]
    assert parse_challenges(headers) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example/token",
                "service": "registry.example",
                "scope": "repository:team/app:pull",
                "error": "insufficient_scope",
            },
        ),
        Challenge("basic", {"realm": 'the "quoted" realm'}),
        Challenge("bearer", {"realm": "https://other/token"}),
    ]


def test_an_identity_token_is_kept_with_its_user(home: Path) -> None:
    auths = {
        "registry.example:5000": {**_auth("me", ""), "identitytoken": "refresh-1"},
        "other.example": {"identitytoken": "refresh-2"},
    }
    _write(home / "docker" / "config.json", {"auths": auths})
    found = find_credentials(NAME, RegistryOptions())
    assert found == Credentials("me", "", "refresh-1")
    assert repr(found) == "Credentials('me', ***, identity token)"
    other = find_credentials(parse_docker_name("other.example/app"), RegistryOptions())
    assert other == Credentials("<token>", "", "refresh-2")


def test_a_helper_gives_an_identity_token_as_the_secret_of_token(home: Path) -> None:
    _helper(home, "oauth", 'read server; echo \'{"Username": "<token>", "Secret": "refresh-3"}\'\n')
    _write(home / "docker" / "config.json", {"credsStore": "oauth"})
    warnings: list[str] = []
    assert find_credentials(NAME, RegistryOptions(warn=warnings.append)) == Credentials(
        "<token>", "", "refresh-3"
    )
    assert warnings == []
