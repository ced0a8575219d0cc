"""imgtool copy when things go wrong: a byte corrupted on the way from the registry, a slow registry
and Ctrl-C, a corrupted blob in the source of a push. Nothing unverified reaches the destination,
the blob is named, and the destination is left as it was."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.cli import ImgtoolCli
from tests.helpers.registry import Fault, FaultProxy
from tests.helpers.treesnap import Node, snapshot
from tests.sources.registry.conftest import SAMPLE, Pushed


@pytest.fixture
def proxy(plain: Pushed) -> Iterator[FaultProxy]:
    proxy = FaultProxy(plain.registry)
    yield proxy
    proxy.close()


def _get(pushed: Pushed, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", pushed.registry.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


def _big_layer(pushed: Pushed) -> tuple[str, bytes]:
    digest = json.loads(_get(pushed, "/v2/big/manifests/1"))["layers"][0]["digest"]
    return digest, _get(pushed, f"/v2/big/blobs/{digest}")


def _contents(layout: Path) -> dict[bytes, Node]:
    """Every file and its bytes; a directory's mtime changes with the staging files made in it."""
    return {k: replace(v, mtime_ns=None) if v.type == "dir" else v for k, v in snapshot(layout).items()}


def _existing_layout(imgtool_cli: ImgtoolCli, where: Path) -> dict[bytes, Node]:
    run = imgtool_cli("copy", "-q", f"oci:{SAMPLE}:1.0", f"oci:{where}:old")
    assert (run.code, run.stderr) == (0, "")
    return _contents(where)


def test_a_corrupted_byte_leaves_nothing_and_names_the_blob(
    plain: Pushed, proxy: FaultProxy, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    digest, blob = _big_layer(plain)
    corrupted = blob[:1000] + bytes([blob[1000] ^ 1]) + blob[1001:]
    got = "sha256:" + hashlib.sha256(corrupted).hexdigest()
    existing = tmp_path / "existing"
    before = _existing_layout(imgtool_cli, existing)
    for dest in (tmp_path / "new", existing):
        proxy.faults = [Fault(digest, corrupt_at=1000)]
        run = imgtool_cli("copy", plain.ref("big:1", proxy.host), f"oci:{dest}:big")
        assert (run.code, run.stdout) == (1, "")
        assert (
            run.stderr
            == f"imgtool: error: layer 0 ({digest}) blob: digest mismatch: expected {digest}, got {got}\n"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]  # no layout, no staging left
    assert _contents(existing) == before  # the other layer, fetched meanwhile, was taken out again


def test_a_corrupted_blob_in_the_source_is_never_pushed(
    plain: Pushed, imgtool_cli: ImgtoolCli, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    assert imgtool_cli("copy", "-q", f"oci:{SAMPLE}:1.1", f"oci:{layout}:x").code == 0
    manifest = json.loads(_index_manifest(layout))
    layer = manifest["layers"][2]["digest"]
    path = layout / "blobs" / "sha256" / layer.partition(":")[2]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    remote = plain.ref("corrupt/sample:1.1")
    run = imgtool_cli("copy", "--jobs", "1", f"oci:{layout}:x", remote)
    got = "sha256:" + hashlib.sha256(bytes(data)).hexdigest()
    assert (run.code, run.stdout) == (1, "")
    assert (
        run.stderr
        == f"imgtool: error: layer 2 ({layer}) blob: digest mismatch: expected {layer}, got {got}\n"
    )
    conn = http.client.HTTPConnection("127.0.0.1", plain.registry.port, timeout=30)
    for path_asked in (f"/v2/corrupt/sample/blobs/{layer}", "/v2/corrupt/sample/manifests/1.1"):
        conn.request("HEAD", path_asked, headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 404, path_asked
    conn.close()


def _index_manifest(layout: Path) -> bytes:
    digest = str(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])
    return (layout / "blobs" / "sha256" / digest.partition(":")[2]).read_bytes()


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("into", ["new", "existing"])
def test_ctrl_c_during_a_slow_copy_leaves_the_destination_as_it_was(
    plain: Pushed, proxy: FaultProxy, imgtool_cli: ImgtoolCli, tmp_path: Path, into: str
) -> None:
    digest, _ = _big_layer(plain)
    work = tmp_path / "work"
    work.mkdir()
    dest = work / "layout"
    before = _existing_layout(imgtool_cli, dest) if into == "existing" else {}
    proxy.faults = [Fault(digest, delay=0.05)]  # 300 kB in 4 kB pieces: about 4 s
    err = tmp_path / "stderr"
    with open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imgtool",
                "copy",
                "-q",
                plain.ref("big:1", proxy.host),
                f"oci:{dest}:big",
            ],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ},
            preexec_fn=_default_signals,  # noqa: PLW1509 - only resets signal dispositions
        )
    try:
        deadline = time.monotonic() + 60
        while not any(s.method == "GET" and s.path.endswith(digest) for s in proxy.seen):
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)  # some of the blob is in a staging file now
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (code, err.read_text()) == (130, "imgtool: error: interrupted\n")
    if into == "new":
        assert list(work.iterdir()) == []
    else:
        assert sorted(p.name for p in work.iterdir()) == ["layout"]
        assert _contents(dest) == before


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_ctrl_c_during_a_slow_copy_into_an_archive_leaves_the_file_as_it_was(
    plain: Pushed, proxy: FaultProxy, tmp_path: Path, transport: str
) -> None:
    digest, _ = _big_layer(plain)
    work = tmp_path / "work"
    work.mkdir()
    (work / "out.tar").write_bytes(b"an earlier archive")
    proxy.faults = [Fault(digest, delay=0.05)]  # 300 kB in 4 kB pieces: about 4 s
    err = tmp_path / "stderr"
    argv = [sys.executable, "-m", "imgtool", "copy", "-q", plain.ref("big:1", proxy.host),
            f"{transport}:{work / 'out.tar'}"]  # fmt: skip
    with open(err, "wb") as stderr:
        proc = subprocess.Popen(
            argv,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=_default_signals,  # noqa: PLW1509 - only resets signal dispositions
        )
    try:
        deadline = time.monotonic() + 60
        while not any(s.method == "GET" and s.path.endswith(digest) for s in proxy.seen):
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)  # some of the blob is staged beside the file now
        assert proc.poll() is None
        assert len(list(work.iterdir())) == 2  # the file and the staging directory
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (code, err.read_text()) == (130, "imgtool: error: interrupted\n")
    assert [(p.name, p.read_bytes()) for p in work.iterdir()] == [("out.tar", b"an earlier archive")]
