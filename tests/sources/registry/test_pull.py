"""imgtool on docker:// against a real registry answers what it answers on the same image as a
local layout, in each auth configuration (none, htpasswd Basic, token)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.treesnap import snapshot
from tests.sources.registry.conftest import SAMPLE, Pushed

SAMPLE_10 = f"oci:{SAMPLE}:1.0"


def _same_json(remote: str, local: str) -> dict[str, object]:
    a: dict[str, object] = json.loads(remote)
    b: dict[str, object] = json.loads(local)
    assert a.pop("reference", None) is not None and b.pop("reference", None) is not None
    assert (a.pop("transport"), b.pop("transport")) == ("docker", "oci")
    assert a == b
    return a


def test_inspect_equals_the_layouts(pushed: Pushed, imgtool_cli: ImgtoolCli) -> None:
    remote = imgtool_cli("inspect", "--json", pushed.ref("sample:1.0"), *pushed.creds)
    local = imgtool_cli("inspect", "--json", SAMPLE_10)
    assert (remote.code, remote.stderr) == (0, "")
    doc = _same_json(remote.stdout, local.stdout)
    assert doc["manifest_digest"] == "sha256:077d75fe3a34db76cbf7c17be9958266b9c8433e6f40fce98915f391bf300e8a"
    assert doc["tags"] == ["1.0"]
    assert json.loads(remote.stdout)["reference"] == pushed.ref("sample:1.0")


@pytest.mark.parametrize(
    "args",
    [
        ["ls", "-R", "--no-cache", "{ref}", "/"],
        ["ls", "--json", "--no-cache", "{ref}", "/etc", "-R"],
        [
            "which-layer",
            "--no-cache",
            "{ref}",
            "/bin/hello",
            "/etc/app/app.conf",
            "/opt/app/share/install.log",
        ],
        ["verify", "{ref}"],
        ["diff", "layers", "--no-cache", "{ref}", "1", "3"],
    ],
)
def test_queries_equal_the_layouts(pushed: Pushed, imgtool_cli: ImgtoolCli, args: list[str]) -> None:
    remote = imgtool_cli(*[a.replace("{ref}", pushed.ref("sample:1.1")) for a in args], *pushed.creds)
    local = imgtool_cli(*[a.replace("{ref}", f"oci:{SAMPLE}:1.1") for a in args])
    assert (remote.code, remote.stderr) == (local.code, local.stderr)
    assert remote.stdout == local.stdout
    assert remote.stdout


def test_cat_gives_the_same_bytes(pushed: Pushed, imgtool_cli: ImgtoolCli) -> None:
    remote = imgtool_cli("cat", pushed.ref("sample:1.0"), "/etc/app/app.conf", *pushed.creds)
    local = imgtool_cli("cat", SAMPLE_10, "/etc/app/app.conf")
    assert (remote.code, remote.stderr) == (0, "")
    assert remote.stdout_bytes == local.stdout_bytes
    assert b"9090" in remote.stdout_bytes


def test_flatten_gives_the_same_tree(pushed: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    remote = imgtool_cli(
        "flatten", "-q", pushed.ref("sample:1.1"), "-o", str(tmp_path / "remote"), *pushed.creds
    )
    local = imgtool_cli("flatten", "-q", f"oci:{SAMPLE}:1.1", "-o", str(tmp_path / "local"))
    assert (remote.code, remote.stderr) == (local.code, local.stderr) == (0, "")
    tree = snapshot(tmp_path / "remote")
    assert tree == snapshot(tmp_path / "local")
    assert b"usr/bin/hello" in tree


def test_diff_images_across_sources(pushed: Pushed, imgtool_cli: ImgtoolCli) -> None:
    remote = imgtool_cli("diff", "images", pushed.ref("sample:1.0"), pushed.ref("sample:1.1"), *pushed.creds)
    local = imgtool_cli("diff", "images", SAMPLE_10, f"oci:{SAMPLE}:1.1")
    assert (remote.code, remote.stderr) == (local.code, local.stderr) == (1, "")  # 1: they differ
    assert remote.stdout == local.stdout.replace(SAMPLE_10, pushed.ref("sample:1.0")).replace(
        f"oci:{SAMPLE}:1.1", pushed.ref("sample:1.1")
    )


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64/v8"])
def test_platform_is_chosen_from_the_index(pushed: Pushed, imgtool_cli: ImgtoolCli, platform: str) -> None:
    remote = imgtool_cli(
        "inspect", "--json", "--platform", platform, pushed.ref("multi:latest"), *pushed.creds
    )
    local = imgtool_cli("inspect", "--json", "--platform", platform, pushed.multi)
    assert (remote.code, remote.stderr) == (0, "")
    doc = _same_json(remote.stdout, local.stdout)
    assert doc["platform"] == platform
    index = doc["index"]
    assert isinstance(index, dict)
    assert [e["platform"] for e in index["manifests"]] == ["linux/amd64", "linux/arm64/v8"]
    cat = imgtool_cli("cat", "--platform", platform, pushed.ref("multi:latest"), "/bin/tool", *pushed.creds)
    assert cat.stdout_bytes == f"tool-{platform.split('/')[1]}".encode()


def test_a_platform_the_index_lacks(plain: Pushed, imgtool_cli: ImgtoolCli) -> None:
    ref = plain.ref("multi:latest")
    result = imgtool_cli("inspect", "--platform", "linux/s390x", ref)
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == (
        f"imgtool: error: {ref}: no image for platform linux/s390x; "
        "platforms present: linux/amd64, linux/arm64/v8\n"
    )


def test_by_digest(plain: Pushed, imgtool_cli: ImgtoolCli) -> None:
    digest = "sha256:077d75fe3a34db76cbf7c17be9958266b9c8433e6f40fce98915f391bf300e8a"
    remote = imgtool_cli("inspect", "--json", plain.ref(f"sample@{digest}"))
    assert remote.code == 0
    doc = json.loads(remote.stdout)
    assert (doc["manifest_digest"], doc["tags"]) == (digest, [])


def test_a_digest_the_registry_does_not_hold(plain: Pushed, imgtool_cli: ImgtoolCli) -> None:
    ref = plain.ref("sample@sha256:" + "0" * 64)
    result = imgtool_cli("inspect", ref)
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == (
        f"imgtool: error: {ref}: manifest sha256:{'0' * 64}: not found in the registry: "
        "MANIFEST_UNKNOWN manifest unknown\n"
    )


def test_a_tag_the_registry_does_not_hold(plain: Pushed, imgtool_cli: ImgtoolCli) -> None:
    ref = plain.ref("sample:9.9")
    result = imgtool_cli("ls", ref)
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == (
        f"imgtool: error: {ref}: manifest 9.9: not found in the registry: MANIFEST_UNKNOWN manifest unknown\n"
    )


def test_no_registry_there(imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from tests.helpers.registry import free_port

    waited: list[float] = []
    monkeypatch.setattr(time, "sleep", waited.append)
    port = free_port()
    result = imgtool_cli("inspect", f"docker://127.0.0.1:{port}/x")
    assert result.code == 1
    assert result.stderr.startswith(
        f"imgtool: error: docker://127.0.0.1:{port}/x: cannot reach 127.0.0.1:{port} (tried 6 times): "
    )
    assert "Connection refused" in result.stderr
    assert result.stderr.count("\n") == 1
    assert waited == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_basic_auth_needs_credentials(
    basic: Pushed, imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    ref = basic.ref("sample:1.0")
    anonymous = imgtool_cli("inspect", ref)
    assert (anonymous.code, anonymous.stdout) == (1, "")
    assert anonymous.stderr == (
        f"imgtool: error: {ref}: manifest 1.0: authentication required "
        "(HTTP 401: UNAUTHORIZED authentication required); "
        "give --creds or log in (docker login, podman login)\n"
    )
    wrong = imgtool_cli("inspect", ref, "--creds", "tester:wrong")
    assert wrong.stderr == (
        f"imgtool: error: {ref}: manifest 1.0: access denied to tester "
        "(HTTP 401: UNAUTHORIZED authentication required)\n"
    )


def test_credentials_from_docker_config(
    basic: Pushed, imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import base64

    from tests.helpers.registry import PASSWORD, USER

    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {basic.registry.host: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    result = imgtool_cli("cat", basic.ref("sample:1.0"), "/etc/motd")
    assert (result.code, result.stderr) == (0, "")
    assert result.stdout_bytes == imgtool_cli("cat", SAMPLE_10, "/etc/motd").stdout_bytes


def test_a_failing_helper_warns_and_goes_on_anonymously(
    plain: Pushed, imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "imgtool-test-absent"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    result = imgtool_cli("cat", plain.ref("sample:1.0"), "/etc/motd")
    assert result.code == 0
    assert result.stderr == (
        "imgtool: warning: credential helper docker-credential-imgtool-test-absent is not installed; "
        f"going on without credentials for {plain.registry.host}\n"
    )


def test_a_docker_schema_2_manifest(plain: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    """skopeo converts the image to Docker's manifest and config types on the way in: the registry
    serves those, and the image reads as the same tree."""
    plain.registry.push(f"oci:{SAMPLE}:1.1", "sample-docker:1.1", extra=("--format", "v2s2"))
    ref = plain.ref("sample-docker:1.1")
    inspected = imgtool_cli("inspect", "--json", ref)
    assert inspected.code == 0
    doc = json.loads(inspected.stdout)
    assert doc["manifest_media_type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert {layer["media_type"] for layer in doc["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    }
    assert imgtool_cli("verify", ref).code == 0
    remote = imgtool_cli("flatten", "-q", ref, "-o", str(tmp_path / "remote"))
    local = imgtool_cli("flatten", "-q", f"oci:{SAMPLE}:1.1", "-o", str(tmp_path / "local"))
    assert (remote.code, local.code) == (0, 0)
    assert snapshot(tmp_path / "remote") == snapshot(tmp_path / "local")


def test_a_foreign_layer_is_reported_as_in_a_layout(
    plain: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    from tests.helpers.imagefactory import Entry, File, ImageSpec, Layer, make_layer, write_oci_layout

    base = make_layer([File("etc/a", b"a")])
    foreign = Layer(
        make_layer([File("win/b", b"b")]),
        media_type="application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        urls=["https://example.invalid/blob"],
    )
    layout = write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([base, foreign]), ref="v1")])
    plain.registry.push(layout.reference("v1"), "foreign:v1")
    remote = imgtool_cli("ls", "--no-cache", plain.ref("foreign:v1"))
    local = imgtool_cli("ls", "--no-cache", layout.reference("v1"))
    assert (remote.code, remote.stdout) == (local.code, local.stdout) == (1, "")
    assert remote.stderr == local.stderr
    assert "foreign (non-distributable) layer blob is not present in the image" in remote.stderr


def test_a_tar_stream_through_a_slow_pipe(plain: Pushed) -> None:
    from tests.helpers.slowpipe import flatten_through_slow_pipe

    remote = flatten_through_slow_pipe(plain.ref("sample:1.1"), "-q")
    local = flatten_through_slow_pipe(f"oci:{SAMPLE}:1.1", "-q")
    assert remote == local
    assert remote[0] == 0
    assert len(remote[1]) > 10_000


def test_a_platform_a_single_image_is_not(plain: Pushed, imgtool_cli: ImgtoolCli) -> None:
    ref = plain.ref("sample:1.0")
    result = imgtool_cli("ls", "--platform", "linux/arm64", ref)
    assert (result.code, result.stdout) == (1, "")
    assert (
        result.stderr
        == f"imgtool: error: {ref}: no image for platform linux/arm64; the image is linux/amd64\n"
    )


def test_the_password_is_read_from_stdin(basic: Pushed, imgtool_cli: ImgtoolCli) -> None:
    import subprocess
    import sys

    from tests.helpers.registry import PASSWORD, USER

    done = subprocess.run(
        [sys.executable, "-m", "imgtool", "cat", "--creds", USER, basic.ref("sample:1.0"), "/etc/motd"],
        input=f"{PASSWORD}\n".encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout == imgtool_cli("cat", SAMPLE_10, "/etc/motd").stdout_bytes
