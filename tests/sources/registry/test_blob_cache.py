"""The blob cache, against a real registry behind a proxy that counts the requests: what each command
fetches (cat from the top down, stopping at the file's layer; inspect: manifest and config only),
that a second query fetches no blob, from any reference to the same blobs; eviction by size, prune,
and a cached file that is damaged, truncated or a symlink (fetched again, never trusted)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imgtool.console.output import human_size
from imgtool.image.digest import Digest
from imgtool.sources.registry import blobcache
from imgtool.sources.registry.blobcache import BlobCache
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Dir,
    Entry,
    File,
    ImageSpec,
    incompressible,
    make_layer,
    write_oci_layout,
)
from tests.helpers.registry import Fault, FaultProxy
from tests.sources.registry.conftest import Pool

LAYER_DATA = [incompressible(50_000, b"base"), incompressible(40_000, b"mid"), incompressible(30_000, b"top")]
NAMES = ["base", "mid", "top"]


@dataclass(frozen=True)
class Stack:
    """``stack:1`` and ``other:2`` (the same blobs) in the registry: three layers, ``/data/base``,
    ``/data/mid`` and ``/data/top``, bottom first; the blobs as the registry holds them."""

    port: int
    config: str
    config_size: int
    layers: list[str]  # bottom first
    sizes: list[int]


def _get(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def stack(registries: Pool, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    registry = registries.get("none").registry
    layers = [
        make_layer([Dir("data/"), File(f"data/{name}", data)])
        for name, data in zip(NAMES, LAYER_DATA, strict=True)
    ]
    layout = write_oci_layout(tmp_path_factory.mktemp("stack") / "oci", [Entry(ImageSpec(layers), ref="1")])
    registry.push(layout.reference("1"), "stack:1")
    registry.push(layout.reference("1"), "other:2")
    manifest = json.loads(_get(registry.port, "/v2/stack/manifests/1"))
    return Stack(
        registry.port,
        manifest["config"]["digest"],
        manifest["config"]["size"],
        [layer["digest"] for layer in manifest["layers"]],
        [layer["size"] for layer in manifest["layers"]],
    )


@pytest.fixture
def proxy(registries: Pool) -> Iterator[FaultProxy]:
    server = FaultProxy(registries.get("none").registry)
    yield server
    server.close()


def blob_gets(proxy: FaultProxy) -> list[str]:
    """The digest of every blob GET through the proxy, in order; cleared for the next command."""
    got = [s.path.rpartition("/")[2] for s in proxy.seen if s.method == "GET" and "/blobs/" in s.path]
    proxy.seen.clear()
    return got


def cached(cache: Path) -> set[str]:
    """The digests the blob cache holds."""
    folder = cache / "imgtool" / "blobs" / "sha256"
    return {f"sha256:{name}" for name in os.listdir(folder)} if folder.exists() else set()


def blob_file(cache: Path, digest: str) -> Path:
    return cache / "imgtool" / "blobs" / "sha256" / digest.partition(":")[2]


def forget_indexes(cache: Path) -> None:
    for path in sorted((cache / "imgtool").glob("index-v*/*/*")):
        path.unlink()


@pytest.mark.parametrize(("name", "fetched"), [("top", [2]), ("mid", [2, 1]), ("base", [2, 1, 0])])
def test_cat_fetches_from_the_top_and_stops_at_the_layer_of_the_file(
    stack: Stack, proxy: FaultProxy, imgtool_cli: ImgtoolCli, name: str, fetched: list[int]
) -> None:
    run = imgtool_cli("cat", f"docker://{proxy.host}/stack:1", f"/data/{name}")
    assert (run.code, run.stderr) == (0, "")
    assert run.stdout_bytes == LAYER_DATA[NAMES.index(name)]
    # each layer once: its index read it, and the file's data comes from the cache
    assert blob_gets(proxy) == [stack.config] + [stack.layers[n] for n in fetched]
    again = imgtool_cli("cat", f"docker://{proxy.host}/stack:1", f"/data/{name}")
    assert (again.code, again.stdout_bytes) == (0, run.stdout_bytes)
    assert blob_gets(proxy) == []  # the second query fetches nothing


def test_inspect_fetches_the_manifest_and_the_config_only(
    stack: Stack, proxy: FaultProxy, imgtool_cli: ImgtoolCli
) -> None:
    run = imgtool_cli("inspect", f"docker://{proxy.host}/stack:1")
    assert (run.code, run.stderr) == (0, "")
    gets = [s.path for s in proxy.seen if s.method == "GET"]
    assert gets == ["/v2/", "/v2/stack/manifests/1", f"/v2/stack/blobs/{stack.config}"]


def test_a_second_query_fetches_no_blob_from_any_reference(
    stack: Stack, proxy: FaultProxy, imgtool_cli: ImgtoolCli, private_cache: Path, tmp_path: Path
) -> None:
    assert imgtool_cli("ls", "-R", f"docker://{proxy.host}/stack:1", "/").code == 0
    assert sorted(blob_gets(proxy)) == sorted([stack.config, *stack.layers])
    assert cached(private_cache) == {stack.config, *stack.layers}
    forget_indexes(private_cache)  # the layers read again: from the blob cache
    run = imgtool_cli("flatten", "-q", f"docker://{proxy.host}/other:2", "-o", str(tmp_path / "out"))
    assert (run.code, run.stderr) == (0, "")
    assert [s.path for s in proxy.seen if s.method == "GET"] == ["/v2/", "/v2/other/manifests/2"]
    assert (tmp_path / "out" / "data" / "mid").read_bytes() == LAYER_DATA[1]


def test_copy_reads_cached_blobs_and_adds_none(
    stack: Stack, proxy: FaultProxy, imgtool_cli: ImgtoolCli, private_cache: Path, tmp_path: Path
) -> None:
    """A pull keeps its blobs in its destination, not a second time in the cache; one the cache
    already holds is not fetched again."""
    ref = f"docker://{proxy.host}/stack:1"
    run = imgtool_cli("copy", "-q", ref, f"oci:{tmp_path / 'first'}:1")
    assert (run.code, run.stderr) == (0, "")
    assert sorted(blob_gets(proxy)) == sorted([stack.config, *stack.layers])
    assert cached(private_cache) == set()
    assert imgtool_cli("cat", ref, "/data/top").code == 0  # caches the config and the top layer
    blob_gets(proxy)
    run = imgtool_cli("copy", "-q", ref, f"oci:{tmp_path / 'second'}:1")
    assert (run.code, run.stderr) == (0, "")
    assert sorted(blob_gets(proxy)) == sorted(stack.layers[:2])
    assert cached(private_cache) == {stack.config, stack.layers[2]}
    assert imgtool_cli("verify", f"oci:{tmp_path / 'second'}:1").code == 0


def test_verify_fetches_every_blob_whatever_is_cached(
    stack: Stack, proxy: FaultProxy, imgtool_cli: ImgtoolCli
) -> None:
    ref = f"docker://{proxy.host}/stack:1"
    assert imgtool_cli("ls", "-R", ref, "/").code == 0
    blob_gets(proxy)
    run = imgtool_cli("verify", ref)
    assert run.code == 0
    assert sorted(blob_gets(proxy)) == sorted([stack.config, *stack.layers])


def test_no_cache_neither_reads_nor_writes_the_blob_cache(
    stack: Stack, proxy: FaultProxy, imgtool_cli: ImgtoolCli, private_cache: Path
) -> None:
    ref = f"docker://{proxy.host}/stack:1"
    assert imgtool_cli("cat", "--no-cache", ref, "/data/top").stdout_bytes == LAYER_DATA[2]
    assert cached(private_cache) == set()
    assert imgtool_cli("cat", ref, "/data/top").code == 0
    blob_gets(proxy)
    assert imgtool_cli("cat", "--no-cache", ref, "/data/top").code == 0
    assert blob_gets(proxy) == [stack.config, stack.layers[2], stack.layers[2]]  # index, then data


# -- a cached file is never trusted ----------------------------------------------------------------


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1])


def _symlink(path: Path) -> None:
    elsewhere = path.parent.parent.parent.parent / "elsewhere"
    elsewhere.write_bytes(path.read_bytes())  # the right bytes even: a link is not followed
    path.unlink()
    path.symlink_to(elsewhere)


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("damage", [_flip, _truncate, _symlink])
def test_a_damaged_cached_blob_is_fetched_again_and_replaced(
    stack: Stack, proxy: FaultProxy, imgtool_cli: ImgtoolCli, private_cache: Path, damage: object
) -> None:
    ref = f"docker://{proxy.host}/stack:1"
    assert imgtool_cli("cat", ref, "/data/top").code == 0
    blob_gets(proxy)
    path = blob_file(private_cache, stack.layers[2])
    assert callable(damage)
    damage(path)
    run = imgtool_cli("cat", ref, "/data/top")
    assert (run.code, run.stdout_bytes, run.stderr) == (0, LAYER_DATA[2], "")
    assert blob_gets(proxy) == [stack.layers[2]]  # the index is cached: only the data is read
    assert not path.is_symlink()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == stack.layers[2].partition(":")[2]
    if damage is _symlink:
        assert (private_cache / "elsewhere").read_bytes() == path.read_bytes()  # left as it was


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ({"corrupt_at": 1000}, ": digest mismatch: expected "),
        ({"append": b"more"}, ": blob is larger than the {size} bytes its descriptor declares"),
    ],
)
def test_a_blob_that_arrives_wrong_is_never_kept(
    stack: Stack,
    proxy: FaultProxy,
    imgtool_cli: ImgtoolCli,
    private_cache: Path,
    fault: dict[str, Any],
    said: str,
) -> None:
    proxy.faults = [Fault(path=stack.layers[2], **fault)]
    ref = f"docker://{proxy.host}/stack:1"
    run = imgtool_cli("cat", ref, "/data/top")
    assert (run.code, run.stdout_bytes) == (1, b"")
    assert run.stderr.startswith(
        f"imgtool: error: layer 2 ({stack.layers[2]}) blob{said.format(size=stack.sizes[2])}"
    )
    assert cached(private_cache) == {stack.config}
    assert [n for n in os.listdir(blob_file(private_cache, stack.config).parent) if n.startswith(".")] == []
    blob_gets(proxy)
    run = imgtool_cli("cat", ref, "/data/top")
    assert (run.code, run.stdout_bytes, run.stderr) == (0, LAYER_DATA[2], "")
    assert blob_gets(proxy) == [stack.layers[2]]


def test_a_directory_in_a_blobs_place_is_passed_by(
    stack: Stack, proxy: FaultProxy, imgtool_cli: ImgtoolCli, private_cache: Path
) -> None:
    ref = f"docker://{proxy.host}/stack:1"
    assert imgtool_cli("cat", ref, "/data/top").code == 0
    blob_gets(proxy)
    _directory(blob_file(private_cache, stack.layers[2]))
    for _ in range(2):
        run = imgtool_cli("cat", ref, "/data/top")
        assert (run.code, run.stdout_bytes, run.stderr) == (0, LAYER_DATA[2], "")
        assert blob_gets(proxy) == [stack.layers[2]]  # fetched each time: it cannot be kept
    path = blob_file(private_cache, stack.layers[2])
    assert path.is_dir()
    assert [name for name in os.listdir(path.parent) if name.startswith(".")] == []  # no temporary left


def test_a_symlinked_cache_directory_is_not_used(
    stack: Stack, proxy: FaultProxy, imgtool_cli: ImgtoolCli, private_cache: Path, tmp_path: Path
) -> None:
    (private_cache / "imgtool").mkdir()
    (tmp_path / "target").mkdir()
    (private_cache / "imgtool" / "blobs").symlink_to(tmp_path / "target")
    ref = f"docker://{proxy.host}/stack:1"
    assert imgtool_cli("cat", ref, "/data/top").stdout_bytes == LAYER_DATA[2]
    assert blob_gets(proxy) == [stack.config, stack.layers[2], stack.layers[2]]  # its index, its data
    assert imgtool_cli("cat", ref, "/data/top").stdout_bytes == LAYER_DATA[2]
    assert blob_gets(proxy) == [stack.config, stack.layers[2]]  # the index was cached, no blob
    assert list((tmp_path / "target").iterdir()) == []


# -- size ------------------------------------------------------------------------------------------


def test_the_least_recently_used_blobs_make_room(
    stack: Stack,
    proxy: FaultProxy,
    imgtool_cli: ImgtoolCli,
    private_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, mid, top = stack.sizes
    assert top < base and stack.config_size < top
    limit = stack.config_size + mid + base
    monkeypatch.setenv("IMGTOOL_BLOB_CACHE_MAX", str(limit))
    ref = f"docker://{proxy.host}/stack:1"
    assert imgtool_cli("cat", ref, "/data/base").stdout_bytes == LAYER_DATA[0]
    # config, top and mid kept as they came; base made room by removing the oldest: config, then top
    assert cached(private_cache) == {stack.layers[1], stack.layers[0]}
    blob_gets(proxy)
    assert imgtool_cli("cat", ref, "/data/mid").stdout_bytes == LAYER_DATA[1]
    assert blob_gets(proxy) == [stack.config]  # it fits beside them: nothing else is removed
    assert cached(private_cache) == {stack.config, stack.layers[1], stack.layers[0]}


@pytest.mark.parametrize("limit", ["0", "1K"])
def test_a_blob_larger_than_the_limit_is_not_kept(
    stack: Stack,
    proxy: FaultProxy,
    imgtool_cli: ImgtoolCli,
    private_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    limit: str,
) -> None:
    monkeypatch.setenv("IMGTOOL_BLOB_CACHE_MAX", limit)
    run = imgtool_cli("cat", f"docker://{proxy.host}/stack:1", "/data/top")
    assert (run.code, run.stdout_bytes) == (0, LAYER_DATA[2])
    assert cached(private_cache) == (set() if limit == "0" else {stack.config})
    folder = private_cache / "imgtool" / "blobs" / "sha256"
    assert [name for name in os.listdir(folder) if name.startswith(".")] == [] if folder.exists() else True


def test_which_layer_keeps_at_most_one_layer_beyond_the_limit(
    stack: Stack,
    proxy: FaultProxy,
    imgtool_cli: ImgtoolCli,
    private_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limit = max(stack.sizes) + stack.config_size
    monkeypatch.setenv("IMGTOOL_BLOB_CACHE_MAX", str(limit))
    folder = private_cache / "imgtool" / "blobs"
    peaks: list[int] = []
    real_read = blobcache._Keeping.read

    def measured(self: blobcache._Keeping, n: int = -1, /) -> bytes:
        data = real_read(self, n)
        peaks.append(sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()))
        return data

    monkeypatch.setattr(blobcache._Keeping, "read", measured)
    run = imgtool_cli("which-layer", f"docker://{proxy.host}/stack:1", "/data/top", "/data/base")
    assert run.code == 0
    assert peaks
    assert max(peaks) <= limit + max(stack.sizes)
    assert sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) <= limit


# -- the command line ------------------------------------------------------------------------------


def test_cache_info_and_prune(
    stack: Stack,
    proxy: FaultProxy,
    imgtool_cli: ImgtoolCli,
    private_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ref = f"docker://{proxy.host}/stack:1"
    assert imgtool_cli("ls", "-R", ref, "/").code == 0
    root = private_cache / "imgtool"
    indexes = sorted((root / "index-v5").glob("*/*"))
    index_bytes = sum(path.stat().st_size for path in indexes)
    blob_bytes = stack.config_size + sum(stack.sizes)
    info = imgtool_cli("cache", "info", "--json")
    assert (info.code, info.stderr) == (0, "")
    assert json.loads(info.stdout) == {
        "caches": [
            {"name": "blobs", "directory": str(root / "blobs"), "files": 4, "size": blob_bytes,
             "limit": 10_000_000_000},
            {"name": "header indexes", "directory": str(root / "index-v5"), "files": 3, "size": index_bytes,
             "limit": None},
        ]
    }  # fmt: skip
    # Oldest first: the top layer's blob and index made the least recently used, then a prune that
    # leaves room for everything but them.
    for path in [blob_file(private_cache, stack.layers[2]), *indexes]:
        os.utime(path, ns=(1, 1))
    newest = sorted(indexes)[-1]
    os.utime(newest, ns=(2, 2))
    keep = blob_bytes - stack.sizes[2] + newest.stat().st_size
    run = imgtool_cli("cache", "prune", "--max-size", str(keep))
    removed = index_bytes - newest.stat().st_size
    assert (run.code, run.stderr) == (0, "")
    assert (
        run.stdout
        == f"removed 1 blob ({human_size(stack.sizes[2])}) and 2 header indexes ({human_size(removed)})\n"
    )
    assert cached(private_cache) == {stack.config, stack.layers[0], stack.layers[1]}
    assert sorted((root / "index-v5").glob("*/*")) == [newest]
    (root / "index-v4" / "sha256").mkdir(parents=True)
    (root / "index-v4" / "sha256" / "old").write_bytes(b"12345")
    indexes_left = newest.stat().st_size + 5
    run = imgtool_cli("cache", "prune", "--all")
    left = blob_bytes - stack.sizes[2]
    assert (
        run.stdout
        == f"removed 3 blobs ({human_size(left)}) and 2 header indexes ({human_size(indexes_left)})\n"
    )
    assert run.code == 0
    assert cached(private_cache) == set()
    assert list((root / "index-v5").glob("*/*")) == []
    assert not (root / "index-v4").exists()
    empty = imgtool_cli("cache", "info")
    assert empty.stdout.splitlines()[2].split()[:4] == ["blobs", "0", "0", "B"]


SIZES = "(bytes, or a number with K, M, G, T, Ki, Mi, Gi or Ti)"


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["cache", "prune", "--max-size", "10X"], None, f"--max-size: not a size: '10X' {SIZES}"),
        (["cache", "prune"], "lots", f"IMGTOOL_BLOB_CACHE_MAX: not a size: 'lots' {SIZES}"),
        (["cat", "{ref}", "/data/top"], "-5", f"IMGTOOL_BLOB_CACHE_MAX: not a size: '-5' {SIZES}"),
    ],
)
def test_a_size_that_is_none_is_a_usage_error(
    stack: Stack,
    proxy: FaultProxy,
    imgtool_cli: ImgtoolCli,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: str | None,
    error: str,
) -> None:
    if env is not None:
        monkeypatch.setenv("IMGTOOL_BLOB_CACHE_MAX", env)
    run = imgtool_cli(*[a.replace("{ref}", f"docker://{proxy.host}/stack:1") for a in args])
    assert (run.code, run.stdout, run.stderr) == (2, "", f"imgtool: error: {error}\n")


# -- the cache itself: concurrent writers ----------------------------------------------------------


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def read(self, n: int = -1, /) -> bytes:
        end = len(self._data) if n < 0 else self._at + n
        piece = self._data[self._at : end]
        self._at += len(piece)
        return piece

    def close(self) -> None:
        pass

    def __enter__(self) -> _Bytes:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_concurrent_writers_of_one_blob_both_end_with_it(tmp_path: Path) -> None:
    data = incompressible(200_000, b"same")
    digest = Digest.of_bytes(data)
    cache = BlobCache(tmp_path, 1 << 20)
    streams = [cache.caching(_Bytes(data), digest, len(data)) for _ in range(4)]
    barrier = threading.Barrier(len(streams))
    results: list[bytes] = []

    def run(stream: object) -> None:
        barrier.wait()
        pieces = []
        while piece := stream.read(7_000):  # type: ignore[attr-defined]
            pieces.append(piece)
        results.append(b"".join(pieces))
        stream.close()  # type: ignore[attr-defined]

    threads = [threading.Thread(target=run, args=(stream,)) for stream in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [data] * 4
    assert os.listdir(tmp_path / "blobs" / "sha256") == [digest.hex]
    reader = cache.open(digest, len(data))
    assert reader is not None
    assert reader.read(-1) == data
    reader.close()


def test_a_stream_closed_before_its_end_keeps_nothing(tmp_path: Path) -> None:
    data = b"x" * 10_000
    digest = Digest.of_bytes(data)
    cache = BlobCache(tmp_path, 1 << 20)
    stream = cache.caching(_Bytes(data), digest, len(data))
    assert stream.read(100) == b"x" * 100
    stream.close()
    assert os.listdir(tmp_path / "blobs" / "sha256") == []
    wrong = cache.caching(_Bytes(data + b"!"), digest, len(data))
    while wrong.read(4096):
        pass
    wrong.close()
    assert os.listdir(tmp_path / "blobs" / "sha256") == []  # more than its size: never kept
