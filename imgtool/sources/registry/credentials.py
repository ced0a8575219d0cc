"""Where the credentials for a registry come from: ``--creds``, an auth file, docker's config and its
credential helpers. A helper that is missing or fails is a warning, never an error: the pull goes on
anonymously, which is all a public image needs."""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any, Final

from imgtool.errors import ImgtoolError, UsageError
from imgtool.sources.reference import DOCKER_HUB, DockerName
from imgtool.sources.registry.options import RegistryOptions

MAX_AUTH_FILE_BYTES: Final = 1 << 20
HELPER_TIMEOUT: Final = 30.0  # seconds a credential helper may take
MAX_HELPER_OUTPUT: Final = 64 << 10
DOCKER_HUB_KEY: Final = "https://index.docker.io/v1/"  # the key docker keeps Docker Hub's credentials under
_HUB_ALIASES: Final = ("docker.io", "index.docker.io", "registry-1.docker.io", DOCKER_HUB_KEY)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user and password; or an identity token (an OAuth2 refresh token, which ``docker login``
    keeps as ``identitytoken`` and a credential helper gives as the Secret of user ``<token>``),
    exchanged at the token server for each access token instead of the password."""

    username: str
    password: str
    identity_token: str | None = None

    def __repr__(self) -> str:  # a password or token never reaches a log or a traceback
        return f"Credentials({self.username!r}, ***{', identity token' if self.identity_token else ''})"


def parse_creds(text: str) -> tuple[str, str]:
    """``USER:PASSWORD`` (the password may itself hold colons)."""
    user, colon, password = text.partition(":")
    if not user or not colon:
        raise UsageError("--creds: expected USER:PASSWORD")
    return user, password


def find_credentials(name: DockerName, options: RegistryOptions) -> Credentials | None:
    """The credentials for ``name``'s registry: ``--creds``; else the auth file asked for
    (``--authfile``, ``$REGISTRY_AUTH_FILE``) alone; else ``$DOCKER_CONFIG/config.json``
    (``~/.docker/config.json``), then ``$XDG_RUNTIME_DIR/containers/auth.json``. None: anonymous."""
    if options.creds is not None:
        return Credentials(*options.creds)
    asked = options.authfile or os.environ.get("REGISTRY_AUTH_FILE")
    if asked:
        doc = _load(asked, required=True)
        return _from_document(doc, name, options, asked) if doc is not None else None
    docker_dir = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    files = [os.path.join(docker_dir, "config.json")]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        files.append(os.path.join(runtime, "containers", "auth.json"))
    for path in files:
        doc = _load(path, required=False)
        if doc is not None:
            found = _from_document(doc, name, options, path)
            if found is not None:
                return found
    return None


def _load(path: str, *, required: bool) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_AUTH_FILE_BYTES + 1)
    except FileNotFoundError:
        if required:
            raise UsageError(f"{path}: auth file not found") from None
        return None
    except OSError as exc:
        raise ImgtoolError(f"{path}: cannot read the auth file: {exc.strerror}") from None
    if len(data) > MAX_AUTH_FILE_BYTES:
        raise ImgtoolError(f"{path}: auth file larger than {MAX_AUTH_FILE_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImgtoolError(f"{path}: not a JSON auth file: {exc}") from None
    if not isinstance(doc, dict):
        raise ImgtoolError(f"{path}: not a JSON auth file: expected an object")
    return doc


def _keys(name: DockerName) -> list[str]:
    """The keys an auth file may keep this registry's credentials under, most specific first:
    ``host/repo/...`` prefixes (containers' auth.json), then the host, bare or as a URL."""
    registry = name.registry
    parts = name.repository.split("/")
    keys = [f"{registry}/{'/'.join(parts[:i])}" for i in range(len(parts), 0, -1)]
    hosts = _HUB_ALIASES if registry == DOCKER_HUB else (registry,)
    return keys + list(hosts)


def _normalise(key: str) -> str:
    """A key as docker writes it (``https://host/v1/``) turned into ``host``; other keys unchanged."""
    if key == DOCKER_HUB_KEY:
        return key
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme) :]
            host, _, path = key.partition("/")
            return host if path in ("", "v1/", "v2/", "v1", "v2") else key
    return key


def _from_document(
    doc: dict[str, Any], name: DockerName, options: RegistryOptions, path: str
) -> Credentials | None:
    wanted = _keys(name)
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict):
        normalised = {_normalise(k): v for k, v in helpers.items() if isinstance(v, str)}
        for key in wanted:
            if key in normalised:
                return _from_helper(normalised[key], _helper_server(name), options)
    auths = doc.get("auths")
    if isinstance(auths, dict):
        entries = {_normalise(k): v for k, v in auths.items() if isinstance(v, dict)}
        for key in wanted:
            entry = entries.get(key)
            if entry is not None:
                found = _from_entry(entry, f"{path}: auths[{key!r}]")
                if found is not None:
                    return found
    store = doc.get("credsStore")
    if isinstance(store, str) and store:
        return _from_helper(store, _helper_server(name), options)
    return None


def _from_entry(entry: dict[str, Any], what: str) -> Credentials | None:
    token = entry.get("identitytoken")
    if isinstance(token, str) and token:
        found = _from_user_entry(entry, what)
        return Credentials(found.username if found else "<token>", "", token)
    return _from_user_entry(entry, what)


def _from_user_entry(entry: dict[str, Any], what: str) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ImgtoolError(f"{what}: auth is not base64 of USER:PASSWORD") from None
        user, colon, password = decoded.partition(":")
        if not colon or not user:
            raise ImgtoolError(f"{what}: auth is not base64 of USER:PASSWORD")
        return Credentials(user, password)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret)
    return None


def _helper_server(name: DockerName) -> str:
    """What a credential helper is asked about: Docker Hub under docker's key, others by host."""
    return DOCKER_HUB_KEY if name.registry == DOCKER_HUB else name.registry


def _from_helper(helper: str, server: str, options: RegistryOptions) -> Credentials | None:
    """``docker-credential-HELPER get``, ``server`` on its stdin, JSON on its stdout."""
    program = f"docker-credential-{helper}"

    def anonymous(why: str) -> None:
        if options.warn is not None:
            options.warn(f"credential helper {program} {why}; going on without credentials for {server}")

    if "/" in helper or helper.startswith("."):
        anonymous("is not a valid helper name")
        return None
    try:
        done = subprocess.run(
            [program, "get"],
            input=server.encode(),
            capture_output=True,
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        anonymous("is not installed")
        return None
    except subprocess.TimeoutExpired:
        anonymous(f"did not answer in {HELPER_TIMEOUT:.0f} s")
        return None
    except OSError as exc:
        anonymous(f"cannot be run ({exc.strerror})")
        return None
    if done.returncode != 0:
        said = done.stdout.decode("utf-8", "replace").strip().splitlines()
        detail = f": {said[0][:200]}" if said else ""
        anonymous(f"failed (exit status {done.returncode}{detail})")
        return None
    try:
        answer = json.loads(done.stdout[:MAX_HELPER_OUTPUT])
    except (ValueError, UnicodeDecodeError):
        anonymous("answered something that is not JSON")
        return None
    user = answer.get("Username") if isinstance(answer, dict) else None
    secret = answer.get("Secret") if isinstance(answer, dict) else None
    if not isinstance(user, str) or not isinstance(secret, str) or not user:
        anonymous("answered no Username and Secret")
        return None
    if user == "<token>":  # an identity token (an OAuth2 refresh token), as docker's helpers give it
        return Credentials(user, "", secret)
    return Credentials(user, secret)
