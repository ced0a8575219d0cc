"""A compressed layer whose blob was corrupted (its digest no longer matches) is reported by its
digest, not by the decompressor that tripped over it first: that is what a byte flipped on the way
from a registry looks like, and the same holds for a local layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.helpers.cli import ImgtoolCli
from tests.helpers.imagefactory import (
    Entry,
    Fault,
    File,
    ImageSpec,
    Layer,
    incompressible,
    make_layer,
    write_oci_layout,
)


def _flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]


def test_a_corrupted_gzip_blob_is_a_digest_mismatch(tmp_path: Path, imgtool_cli: ImgtoolCli) -> None:
    tar = make_layer([File("data", incompressible(100_000, b"c"))])
    spec = ImageSpec([Layer(tar, compression="gzip", fault=Fault(tamper=_flip_middle))])
    result = write_oci_layout(tmp_path / "oci", [Entry(spec, ref="v1")])
    digest = result.image.layer_digests[0]
    stored = (tmp_path / "oci" / "blobs" / "sha256" / digest.partition(":")[2]).read_bytes()
    got = "sha256:" + hashlib.sha256(stored).hexdigest()
    for args in (
        ["cat", result.reference("v1"), "/data"],
        ["flatten", result.reference("v1"), "-o", str(tmp_path / "out")],
    ):
        run = imgtool_cli(*args)
        assert (run.code, run.stdout_bytes) == (1, b"")
        assert (
            run.stderr
            == f"imgtool: error: layer 0 ({digest}) blob: digest mismatch: expected {digest}, got {got}\n"
        )
    assert not (tmp_path / "out").exists()
