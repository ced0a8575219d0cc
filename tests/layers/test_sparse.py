"""GNU sparse members, written by real GNU tar, read expanded by every command (and as umoci reads them)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Final

import pytest

import imgtool
from imgtool.flatten import api as flatten_module
from imgtool.flatten.api import flatten
from imgtool.image.digest import content_hasher
from imgtool.merge.index import index_image
from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import Entry, File, ImageSpec, make_layer, write_oci_layout
from tests.helpers.realtools import ToolError, requires, umoci_unpack

SIZE: Final = 3 << 20
# Data at these offsets, holes everywhere else: 30 regions, more than an old-GNU header and its first
# extension block hold (4 + 21).
WRITES: Final = [(i * 100_000 + 7, b"region %02d " % i * 50) for i in range(30)]

# (id, GNU tar options, what marks the member as sparse in the layer's bytes)
FORMATS: Final = [
    ("pax-0.0", ["--format=posix", "--sparse-version=0.0"], b"GNU.sparse.offset="),
    ("pax-0.1", ["--format=posix", "--sparse-version=0.1"], b"GNU.sparse.map="),
    ("pax-1.0", ["--format=posix", "--sparse-version=1.0"], b"GNU.sparse.major=1"),
    ("old-gnu", ["--format=gnu"], b"ustar  \x00"),
]


def sparse_source(where: Path) -> bytes:
    """A sparse file made with truncate and writes, in ``where/src/var/log/lastlog``; returns its content."""
    path = where / "src" / "var" / "log" / "lastlog"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as out:
        out.truncate(SIZE)
        for offset, data in WRITES:
            out.seek(offset)
            out.write(data)
    return path.read_bytes()


def gnu_tar_layer(where: Path, options: list[str]) -> bytes:
    result = subprocess.run(
        [
            "tar",
            "--sparse",
            *options,
            "--owner=0",
            "--group=0",
            "--mtime=@1700000000",
            "-C",
            str(where / "src"),
            "-cf",
            "-",
            "var/log/lastlog",
        ],
        check=True,
        capture_output=True,
    )
    return result.stdout


@pytest.fixture(scope="module", params=FORMATS, ids=[f[0] for f in FORMATS])
def sparse_image(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, bytes]:
    """An OCI layout whose second layer is GNU tar's sparse archive; returns (ref, layout dir, content)."""
    _name, options, marker = request.param
    where = tmp_path_factory.mktemp("sparse")
    content = sparse_source(where)
    layer = gnu_tar_layer(where, options)
    assert marker in layer[:4096] and len(layer) < SIZE // 4  # really sparse, really this format
    if marker == b"ustar  \x00":
        assert layer[156:157] == b"S"
    base = make_layer([File("etc/hostname", b"box\n")])
    layout = write_oci_layout(where / "oci", [Entry(ImageSpec([base, layer]), ref="v1")])
    return layout.reference("v1"), where / "oci", content


def test_cat_gives_the_expanded_file(sparse_image: tuple[str, Path, bytes], imgtool_cli: ImgtoolCli) -> None:
    ref, _, content = sparse_image
    run = imgtool_cli("cat", ref, "/var/log/lastlog")
    assert (run.code, run.stderr) == (0, "")
    assert hashlib.sha256(run.stdout_bytes).hexdigest() == hashlib.sha256(content).hexdigest()
    assert run.stdout_bytes == content


def test_ls_which_layer_and_the_index_see_the_expanded_file(
    sparse_image: tuple[str, Path, bytes], imgtool_cli: ImgtoolCli, private_cache: Path
) -> None:
    ref, _, content = sparse_image
    for _ in range(2):  # built, then from the cache
        run = imgtool_cli("ls", ref, "/var/log", "--json")
        assert run.code == 0, run.stderr
        [row] = json.loads(run.stdout)
        assert (row["path"], row["type"], row["size"], row["layer"]) == ("/var/log/lastlog", "file", SIZE, 1)
        which = imgtool_cli("which-layer", ref, "/var/log/lastlog", "--json")
        assert which.code == 0, which.stderr
        [found] = json.loads(which.stdout)
        assert (found["layer"]["index"], found["size"]) == (1, SIZE)
    with imgtool.open_image(ref) as img:
        [entry] = [e for e in index_image(img)[1].entries if e.path == b"var/log/lastlog"]
    hasher = content_hasher()
    hasher.update(content)
    assert (entry.size, entry.digest) == (SIZE, hasher.digest())


@pytest.mark.parametrize("use_spool", [True, False], ids=["spool", "stream"])
def test_flatten_to_a_directory_writes_the_expanded_file(
    sparse_image: tuple[str, Path, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_spool: bool
) -> None:
    ref, _, content = sparse_image
    monkeypatch.setattr(flatten_module, "worth_spooling", lambda _d, _n: use_spool)
    out = tmp_path / "rootfs"
    with imgtool.open_image(ref) as img:
        flatten(img, str(out))
    written = out / "var" / "log" / "lastlog"
    assert written.read_bytes() == content
    assert sorted(os.listdir(out / "var" / "log")) == ["lastlog"]
    assert os.stat(written).st_blocks * 512 < SIZE // 2  # the holes stay holes


def test_flatten_to_a_tar_gives_a_plain_file_with_and_without_the_spool(
    sparse_image: tuple[str, Path, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref, _, content = sparse_image
    outputs = []
    for use_spool in (True, False):
        monkeypatch.setattr(flatten_module, "worth_spooling", lambda _d, _n, use=use_spool: use)
        out = tmp_path / f"out-{use_spool}.tar"
        with imgtool.open_image(ref) as img:
            flatten(img, str(out), as_tar=True)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert b"GNU.sparse" not in outputs[0]
    with tarfile.open(fileobj=io.BytesIO(outputs[0])) as tar:
        member = tar.getmember("var/log/lastlog")
        assert (member.type, member.size) == (tarfile.REGTYPE, SIZE)
        extracted = tar.extractfile(member)
        assert extracted is not None
        assert extracted.read() == content


def test_flatten_from_the_cli_and_from_the_cache(
    sparse_image: tuple[str, Path, bytes], tmp_path: Path, imgtool_cli: ImgtoolCli, private_cache: Path
) -> None:
    """The second run takes the entries (and their sparse regions) from the index cache."""
    ref, _, content = sparse_image
    tars = []
    for run_number in range(2):
        out = tmp_path / f"rootfs-{run_number}"
        run = imgtool_cli("flatten", ref, "-o", str(out), "--quiet")
        assert run.code == 0, run.stderr
        assert (out / "var" / "log" / "lastlog").read_bytes() == content
        tar = tmp_path / f"rootfs-{run_number}.tar"
        assert imgtool_cli("flatten", ref, "-o", str(tar), "--quiet").code == 0
        tars.append(tar.read_bytes())
    assert list(private_cache.rglob("index-v5/sha256/*"))
    assert tars[0] == tars[1]
    with tarfile.open(fileobj=io.BytesIO(tars[0])) as archive:
        extracted = archive.extractfile("var/log/lastlog")
        assert extracted is not None
        assert extracted.read() == content


@requires("umoci")
def test_umoci_reads_the_same_file(
    sparse_image: tuple[str, Path, bytes], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    ref, layout, content = sparse_image
    if request.node.callspec.id == "old-gnu":  # umoci 0.4.7 does not expand the old-GNU form
        with pytest.raises(ToolError, match=r"var/log/lastlog: unknown typeflag '\\x53'"):
            umoci_unpack(layout, "v1", tmp_path / "umoci-rootfs")
        return
    bundle = umoci_unpack(layout, "v1", tmp_path / "umoci-rootfs")
    theirs = (bundle / "var" / "log" / "lastlog").read_bytes()
    out = tmp_path / "rootfs"
    with imgtool.open_image(ref) as img:
        flatten(img, str(out))
    assert (out / "var" / "log" / "lastlog").read_bytes() == theirs == content
