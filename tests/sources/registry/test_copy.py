"""imgtool copy against a real registry: every test image round-trips (layout -> docker:// -> layout)
byte for byte in each auth configuration; skopeo reads what imgtool pushed and imgtool pulls what
skopeo pushed; chunked uploads, blobs the registry already has, refusals."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from imgtool.sources.registry import push
from imgtool.sources.registry.client import Client
from tests.helpers.cli import ImgtoolCli
from tests.helpers.realtools import umoci_unpack
from tests.helpers.registry import PASSWORD, USER
from tests.helpers.treesnap import compare, snapshot
from tests.sources.registry.conftest import SAMPLE, Pushed

EXAMPLES = SAMPLE.parent


def layout_image(layout: Path, ref: str | None) -> tuple[str, dict[str, bytes]]:
    """The manifest digest ``ref`` names in ``layout`` and every blob of that image, by digest."""
    index = json.loads((layout / "index.json").read_text())
    entries = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref
    ]
    assert len(entries) == 1, index
    digest = entries[0]["digest"]

    def blob(d: str) -> bytes:
        data = (layout / "blobs" / "sha256" / d.partition(":")[2]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == d
        return data

    manifest = blob(digest)
    doc = json.loads(manifest)
    blobs = {digest: manifest, doc["config"]["digest"]: blob(doc["config"]["digest"])}
    blobs.update({layer["digest"]: blob(layer["digest"]) for layer in doc["layers"]})
    return digest, blobs


def layout_files(layout: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}


def _images_of(pushed: Pushed) -> list[tuple[str, list[str]]]:
    return [
        (f"oci:{SAMPLE}:1.0", []),
        (f"oci:{SAMPLE}:1.1", []),
        (pushed.multi, ["--platform", "linux/amd64"]),
        (pushed.multi, ["--platform", "linux/arm64/v8"]),
        (pushed.big, []),
        (str(EXAMPLES / "sample.tar"), []),
    ]


IMAGES = ["sample-1.0", "sample-1.1", "multi-amd64", "multi-arm64", "big", "docker-archive"]


def _source(pushed: Pushed, which: str) -> tuple[str, list[str]]:
    return _images_of(pushed)[IMAGES.index(which)]


@pytest.mark.parametrize("which", IMAGES)
def test_every_image_round_trips_byte_for_byte(
    pushed: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path, which: str
) -> None:
    source, platform = _source(pushed, which)
    remote = pushed.ref(f"roundtrip/{which}:t1")
    first = tmp_path / "first"
    one = imgtool_cli("copy", "-q", *platform, source, f"oci:{first}:a")
    up = imgtool_cli("copy", "--json", f"oci:{first}:a", remote, *pushed.creds)
    down = imgtool_cli("copy", "-q", remote, f"oci:{tmp_path / 'back'}:b", *pushed.creds)
    assert [(r.code, r.stderr) for r in (one, up, down)] == [(0, "")] * 3
    expected = json.loads(imgtool_cli("inspect", "--json", *platform, source).stdout)["manifest_digest"]
    digest, blobs = layout_image(first, "a")
    assert digest == expected
    assert json.loads(up.stdout)["manifest_digest"] == expected
    assert layout_image(tmp_path / "back", "b") == (digest, blobs)
    # nothing else was written: the layouts hold that image's blobs and nothing more
    assert layout_files(tmp_path / "back") == {d.partition(":")[2]: b for d, b in blobs.items()}
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == ["blobs", "index.json", "oci-layout"]


def _skopeo(pushed: Pushed, *args: str) -> bytes:
    creds = [] if pushed.registry.auth == "none" else ["--creds", f"{USER}:{PASSWORD}"]
    return subprocess.run(
        ["skopeo", "--insecure-policy", *args[:1], "--tls-verify=false", *creds, *args[1:]],
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout


def test_skopeo_reads_what_imgtool_pushed(pushed: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    remote = pushed.ref("byimgtool/sample:1.1")
    run = imgtool_cli("copy", f"oci:{SAMPLE}:1.1", remote, *pushed.creds)
    assert (run.code, run.stderr) == (0, "")
    digest, blobs = layout_image(SAMPLE, "1.1")
    assert run.stdout == f"Copied {digest} to {remote}: 6 blobs copied (9.1 KB)\n"
    raw = _skopeo(pushed, "inspect", "--raw", remote)
    assert raw == blobs[digest]
    assert json.loads(_skopeo(pushed, "inspect", remote))["Digest"] == digest
    creds = [] if pushed.registry.auth == "none" else [f"--src-creds={USER}:{PASSWORD}"]
    subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false", *creds,
         remote, f"oci:{tmp_path / 'skopeo'}:x"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert layout_image(tmp_path / "skopeo", "x") == (digest, blobs)


def test_imgtool_pulls_what_skopeo_pushed_for_umoci(
    pushed: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    run = imgtool_cli("copy", "-q", pushed.ref("sample:1.1"), f"oci:{tmp_path / 'pulled'}:v", *pushed.creds)
    assert (run.code, run.stderr) == (0, "")
    assert layout_image(tmp_path / "pulled", "v") == layout_image(SAMPLE, "1.1")
    rootfs = umoci_unpack(tmp_path / "pulled", "v", tmp_path / "umoci")
    flat = imgtool_cli("flatten", "-q", f"oci:{SAMPLE}:1.1", "-o", str(tmp_path / "flat"))
    assert (flat.code, flat.stderr) == (0, "")
    tree = snapshot(rootfs, exclude_root_mtime=True)
    assert compare(snapshot(tmp_path / "flat", exclude_root_mtime=True), tree) == []
    assert b"usr/bin/hello" in tree


def test_a_second_push_sends_only_what_is_missing(plain: Pushed, imgtool_cli: ImgtoolCli) -> None:
    first = imgtool_cli("copy", "--json", f"oci:{SAMPLE}:1.0", plain.ref("again/sample:1.0"))
    second = imgtool_cli("copy", "--json", f"oci:{SAMPLE}:1.1", plain.ref("again/sample:1.1"))
    assert (first.code, second.code) == (0, 0)
    one: dict[str, Any] = json.loads(first.stdout)
    two: dict[str, Any] = json.loads(second.stdout)
    assert {b["status"] for b in one["blobs"]} == {"copied"}
    shared = {b["digest"] for b in one["blobs"]}
    assert [(b["digest"] in shared, b["status"]) for b in two["blobs"]] == [
        (b["digest"] in shared, "present" if b["digest"] in shared else "copied") for b in two["blobs"]
    ]
    assert any(b["status"] == "present" for b in two["blobs"])
    assert two["bytes_copied"] == sum(b["size"] for b in two["blobs"] if b["digest"] not in shared)


def test_a_blob_larger_than_a_piece_is_uploaded_in_chunks(
    pushed: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, str, int]] = []
    original = Client.send

    def spy(
        self: Client, method: str, url: str, headers: dict[str, str], body: bytes | None = None, **kwargs: Any
    ) -> Any:
        sent.append((method, headers.get("Content-Range", ""), len(body or b"")))
        return original(self, method, url, headers, body, **kwargs)

    monkeypatch.setattr(Client, "send", spy)
    monkeypatch.setattr(push, "UPLOAD_PIECE", 100_000)
    remote = pushed.ref("chunked/big:1")
    run = imgtool_cli("copy", "-q", "--jobs", "1", pushed.big, remote, *pushed.creds)
    assert (run.code, run.stderr) == (0, "")
    digest, blobs = layout_image(Path(pushed.big.split(":")[1]), "1")
    big = max(len(b) for b in blobs.values())
    assert big > 300_000
    patches = [(r, n) for m, r, n in sent if m == "PATCH"]
    pieces = -(-big // 100_000)
    assert [n for _, n in patches] == [100_001] + [100_000] * (pieces - 2) + [
        big - 100_001 - 100_000 * (pieces - 2)
    ]
    assert patches[0][0] == "0-100000"
    assert [m for m, _, _ in sent].count("PUT") == len(blobs)  # each blob finished once, the manifest too
    back = imgtool_cli("copy", "-q", remote, f"oci:{tmp_path / 'back'}:1", *pushed.creds)
    assert back.code == 0
    assert layout_image(tmp_path / "back", "1") == (digest, blobs)
    assert json.loads(_skopeo(pushed, "inspect", remote))["Digest"] == digest


def test_a_push_without_credentials_is_refused_and_tags_nothing(
    basic: Pushed, imgtool_cli: ImgtoolCli
) -> None:
    remote = basic.ref("refused/sample:1.0")
    run = imgtool_cli("copy", f"oci:{SAMPLE}:1.0", remote)
    assert (run.code, run.stdout) == (1, "")
    assert run.stderr.startswith(f"imgtool: error: {remote}: ")
    assert "authentication required (HTTP 401" in run.stderr
    check = imgtool_cli("inspect", remote, *basic.creds)
    assert check.code == 1
    assert "not found in the registry" in check.stderr


def test_a_destination_without_a_transport_is_refused(imgtool_cli: ImgtoolCli, tmp_path: Path) -> None:
    dest = str(tmp_path / "bare")
    run = imgtool_cli("copy", f"oci:{SAMPLE}:1.0", dest)
    assert run.code == 2, run.stderr
    assert run.stderr == (
        f"imgtool: error: {dest}: name the destination's transport: oci:DIR[:REF], oci-archive:FILE[:REF], "
        "docker-archive:FILE[:NAME:TAG] or docker://HOST/REPO[:TAG]\n"
    )
    assert sorted(tmp_path.iterdir()) == []


def layout_tree(layout: Path, ref: str) -> tuple[str, dict[str, bytes]]:
    """The digest ``ref`` names (an index) and every blob below it, read by following the index."""
    index = json.loads((layout / "index.json").read_text())
    (top,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == ref]
    blobs: dict[str, bytes] = {}

    def visit(digest: str) -> None:
        data = (layout / "blobs" / "sha256" / digest.partition(":")[2]).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        blobs[digest] = data
        doc = json.loads(data)
        for child in doc.get("manifests", []):
            visit(child["digest"])
        if "config" in doc:
            for d in [doc["config"], *doc["layers"]]:
                blob = (layout / "blobs" / "sha256" / d["digest"].partition(":")[2]).read_bytes()
                assert "sha256:" + hashlib.sha256(blob).hexdigest() == d["digest"]
                blobs[d["digest"]] = blob

    visit(top["digest"])
    return top["digest"], blobs


def test_all_platforms_round_trips_the_whole_index(
    pushed: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    source = Path(pushed.multi.split(":")[1])
    digest, blobs = layout_tree(source, "latest")
    assert len(blobs) == 7  # the index, two manifests, two configs, two layers
    remote = pushed.ref("whole/multi:latest")
    up = imgtool_cli("copy", "--json", "--all-platforms", pushed.multi, remote, *pushed.creds)
    assert (up.code, up.stderr) == (0, "")
    doc = json.loads(up.stdout)
    index_doc = json.loads(blobs[digest])
    assert (doc["manifest_digest"], doc["media_type"]) == (digest, "application/vnd.oci.image.index.v1+json")
    assert doc["manifests"] == [m["digest"] for m in index_doc["manifests"]]
    assert _skopeo(pushed, "inspect", "--raw", remote) == blobs[digest]
    for ref, back in [  # what imgtool pushed, what skopeo pushed
        (remote, tmp_path / "imgtool"),
        (pushed.ref("multi:latest"), tmp_path / "skopeo"),
    ]:
        down = imgtool_cli("copy", "-q", "--all-platforms", ref, f"oci:{back}:latest", *pushed.creds)
        assert (down.code, down.stderr) == (0, "")
        assert layout_tree(back, "latest") == (digest, blobs)
        assert layout_files(back) == {d.partition(":")[2]: b for d, b in blobs.items()}
        arm = imgtool_cli("cat", "--platform", "linux/arm64/v8", f"oci:{back}:latest", "/bin/tool")
        assert arm.stdout_bytes == b"tool-arm64"


def test_all_platforms_of_one_image_copies_that_image(
    plain: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    run = imgtool_cli("copy", "-q", "--all-platforms", plain.ref("sample:1.1"), f"oci:{tmp_path / 'one'}:x")
    assert (run.code, run.stderr) == (0, "")
    assert layout_image(tmp_path / "one", "x") == layout_image(SAMPLE, "1.1")


def test_a_copy_within_one_registry_mounts_the_blobs(
    pushed: Pushed, imgtool_cli: ImgtoolCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, str]] = []
    original = Client.send

    def spy(self: Client, method: str, url: str, headers: dict[str, str], body: bytes | None = None,
            **kwargs: Any) -> Any:  # fmt: skip
        sent.append((method, url))
        return original(self, method, url, headers, body, **kwargs)

    monkeypatch.setattr(Client, "send", spy)
    server = pushed.registry.token
    if server is not None:
        server.requests.clear()
    repository = f"mounted-{pushed.registry.auth}/sample"
    target = pushed.ref(f"{repository}:1.1")
    run = imgtool_cli("copy", "--json", pushed.ref("sample:1.1"), target, *pushed.creds)
    assert (run.code, run.stderr) == (0, "")
    doc = json.loads(run.stdout)
    digest, blobs = layout_image(SAMPLE, "1.1")
    assert doc["manifest_digest"] == digest
    # in every auth configuration the registry mounts the blobs: one POST each, nothing uploaded
    assert {b["status"] for b in doc["blobs"]} == {"present"}
    posts = [url for method, url in sent if method == "POST"]
    assert sorted(posts) == sorted(f"blobs/uploads/?mount={d.replace(':', '%3A')}&from=sample"
                                   for d in blobs if d != digest)  # fmt: skip
    assert [method for method, _ in sent if method != "POST"] == ["PUT"]  # the manifest alone
    if server is not None:  # one token for both repositories, asked once
        both = f"repository:{repository}:pull,push repository:sample:pull"
        assert [r for r in server.requests if r[0] == both] == [(both, USER, True)]
    assert _skopeo(pushed, "inspect", "--raw", target) == blobs[digest]
    verify = imgtool_cli("verify", target, *pushed.creds)
    assert verify.code == 0
