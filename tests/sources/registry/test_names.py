"""docker:// references, normalised as docker and skopeo normalise them; no network."""

from __future__ import annotations

import pytest

from imgtool.errors import UsageError
from imgtool.image.digest import Digest
from imgtool.sources import parse_reference
from imgtool.sources.reference import DockerName, Reference, parse_docker_name
from imgtool.sources.registry.options import is_loopback

HEX = "0123456789abcdef" * 4
DIGEST = Digest("sha256", HEX)


@pytest.mark.parametrize(
    ("text", "expected", "host"),
    [
        ("alpine", DockerName("docker.io", "library/alpine", "latest", None), "registry-1.docker.io"),
        ("alpine:3.19", DockerName("docker.io", "library/alpine", "3.19", None), "registry-1.docker.io"),
        ("library/alpine", DockerName("docker.io", "library/alpine", "latest", None), "registry-1.docker.io"),
        (
            "docker.io/alpine",
            DockerName("docker.io", "library/alpine", "latest", None),
            "registry-1.docker.io",
        ),
        (
            "index.docker.io/alpine",
            DockerName("docker.io", "library/alpine", "latest", None),
            "registry-1.docker.io",
        ),
        ("user/app:v1.2_3", DockerName("docker.io", "user/app", "v1.2_3", None), "registry-1.docker.io"),
        (
            f"alpine@sha256:{HEX}",
            DockerName("docker.io", "library/alpine", None, DIGEST),
            "registry-1.docker.io",
        ),
        ("127.0.0.1:5000/repo:tag", DockerName("127.0.0.1:5000", "repo", "tag", None), "127.0.0.1:5000"),
        ("localhost/a/b-c__d.e", DockerName("localhost", "a/b-c__d.e", "latest", None), "localhost"),
        ("localhost:5000/x", DockerName("localhost:5000", "x", "latest", None), "localhost:5000"),
        ("ghcr.io/owner/img", DockerName("ghcr.io", "owner/img", "latest", None), "ghcr.io"),
        (f"quay.io/a/b@sha256:{HEX}", DockerName("quay.io", "a/b", None, DIGEST), "quay.io"),
        ("[::1]:5000/repo", DockerName("[::1]:5000", "repo", "latest", None), "[::1]:5000"),
        (
            "registry-1.docker.io/x",
            DockerName("registry-1.docker.io", "x", "latest", None),
            "registry-1.docker.io",
        ),
    ],
)
def test_names_are_normalised(text: str, expected: DockerName, host: str) -> None:
    name = parse_docker_name(text)
    assert name == expected
    assert name.host == host
    assert parse_reference(f"docker://{text}") == Reference("docker", text, None)
    assert str(parse_reference(f"docker://{text}")) == f"docker://{text}"


def test_the_canonical_spelling() -> None:
    assert str(parse_docker_name("alpine")) == "docker.io/library/alpine:latest"
    assert str(parse_docker_name(f"alpine@sha256:{HEX}")) == f"docker.io/library/alpine@sha256:{HEX}"
    assert parse_docker_name("alpine").reference == "latest"
    assert parse_docker_name(f"alpine@sha256:{HEX}").reference == f"sha256:{HEX}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "docker://: names no repository"),
        ("Alpine", "docker://Alpine: repository name must be lowercase: 'Alpine'"),
        ("a//b", "docker://a//b: not a valid repository name: 'a//b'"),
        ("alpine:", "docker://alpine:: not a valid tag: ''"),
        ("alpine:-x", "docker://alpine:-x: not a valid tag: '-x'"),
        ("alpine@sha256:abc", "docker://alpine@sha256:abc: not a valid sha256/sha512 digest: 'sha256:abc'"),
        (
            f"alpine:3@sha256:{HEX}",
            f"docker://alpine:3@sha256:{HEX}: a tag and a digest together are not supported; "
            "give one of them",
        ),
        ("bad_host.io:x/repo", "docker://bad_host.io:x/repo: not a valid registry host: 'bad_host.io:x'"),
        ("127.0.0.1:5000/", "docker://127.0.0.1:5000/: names no repository"),
        ("a" * 250 + "/b" * 3, f"docker://{'a' * 250}/b/b/b: repository name longer than 255 characters"),
    ],
)
def test_bad_names_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_reference(f"docker://{text}")
    assert str(caught.value) == message


def test_other_unsupported_transports_still_say_so() -> None:
    with pytest.raises(
        UsageError, match=r"^docker-daemon:x: the docker-daemon transport is not supported yet"
    ):
        parse_reference("docker-daemon:x")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1", True),
        ("127.0.0.1:5000", True),
        ("127.8.9.10:1", True),
        ("[::1]:5000", True),
        ("[::1]", True),
        ("localhost.example.com", False),
        ("10.0.0.1:5000", False),
        ("registry-1.docker.io", False),
        ("[::2]:5000", False),
    ],
)
def test_what_counts_as_this_machine(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
