"""A fuzzer over what imgtool reads: the tar bytes of layers and the JSON of index.json, manifests, configs.

Property: opening, inspecting, verifying, indexing, listing, cat and flattening (to a directory and to a tar)
either succeed or raise an :class:`imgtool.ImgtoolError`; any other exception is a bug, and so is a change
anywhere in the sandbox but the outputs (see fuzzing.py: each example runs chrooted in a forked child).
Then every command runs through the CLI, tables and JSON: a traceback, an internal error or a raw control
character on stdout or stderr is a bug too.

The whole run takes about ``IMGTOOL_FUZZ_SECONDS`` seconds (default 60): hypothesis runs in batches until
the budget is spent. Set ``IMGTOOL_FUZZ_SAVE_DIR`` to keep every failing input found; the minimal ones
belong in ``regressions/``, which ``test_regression`` replays on every run.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.helpers.imagefactory import Compression, ExactTarInfo, Raw, TarFormat, canonical_json, make_layer
from tests.hostile.fuzzing import (
    JSON_TARGETS,
    SANDBOX_SENTINEL,
    Example,
    Format,
    JsonTarget,
    UnexpectedError,
    base_document,
    check,
    examples_dir,
    image_from_json,
    image_from_layers,
)

BUDGET: Final = float(os.environ.get("IMGTOOL_FUZZ_SECONDS", "60"))
SHARES: Final = {"tar": 0.6, "json": 0.4}
BATCH: Final = 20
REGRESSIONS: Final = Path(__file__).parent / "regressions"

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the fuzzer's sandbox (chroot) needs root"
)

FUZZ_SETTINGS: Final = settings(
    max_examples=BATCH,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)


def spend(seconds: float, batch: Callable[[], None]) -> int:
    """Run hypothesis batches until ``seconds`` have passed (at least one); returns how many ran."""
    deadline = time.monotonic() + seconds
    runs = 0
    while runs == 0 or time.monotonic() < deadline:
        batch()
        runs += 1
    return runs


def save_failure(name: str, files: dict[str, bytes]) -> None:
    where = os.environ.get("IMGTOOL_FUZZ_SAVE_DIR")
    if not where:
        return
    os.makedirs(where, exist_ok=True)
    for suffix, data in files.items():
        with open(os.path.join(where, f"{name}{suffix}"), "wb") as handle:
            handle.write(data)


# -- tar layers ----------------------------------------------------------------------------------------

COMPONENTS: Final = [
    "a",
    "b",
    "x",
    "etc",
    "passwd",
    "area",
    "sentinel",
    "..",
    ".",
    "",
    ".wh.a",
    ".wh.x",
    ".wh..wh..opq",
    ".wh..",
    ".wh...",
    ".wh.",
    "proc",
    "self",
    "\udcff",
    "é",
    "a\nb",
    "d" * 120,
    "x" * 260,
]
paths = st.builds(
    lambda prefix, parts, suffix: prefix + "/".join(parts) + suffix,
    st.sampled_from(["", "", "/", "./"]),
    st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=4),
    st.sampled_from(["", "", "/"]),
)
targets = paths | st.sampled_from(
    ["/", SANDBOX_SENTINEL, SANDBOX_SENTINEL + "/secret", "..", "../..", "../../.."]
)
KINDS: Final = [
    tarfile.REGTYPE,
    tarfile.REGTYPE,
    tarfile.AREGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.FIFOTYPE,
    tarfile.CONTTYPE,
    b"Z",
]
NUMBERS: Final = st.sampled_from([0, 1, 7, 1000, 65534, 2**21 - 1, 2**32 - 1, 2**40])
PAX_KEYS: Final = [
    "path",
    "linkpath",
    "size",
    "mtime",
    "uid",
    "gid",
    "atime",
    "hdrcharset",
    "SCHILY.xattr.user.note",
    "SCHILY.xattr.trusted.overlay.opaque",
    "GNU.sparse.size",
    "comment",
]
PAX_VALUES: Final = st.sampled_from(
    ["", "0", "-1", "1.5", "-1.5", "1e3", "99999999999999999999", "y", "../x", "/", "BINARY"]
) | st.text(max_size=12)


@st.composite
def members(draw: st.DrawFn) -> Raw:
    kind = draw(st.sampled_from(KINDS))
    info = ExactTarInfo(draw(paths))
    info.type = kind
    data = (
        draw(st.binary(max_size=40)) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE) else b""
    )
    info.size = draw(st.sampled_from([len(data)] * 6 + [0, 1, 513, 2**33]))
    info.mode = draw(st.integers(0, 0o7777))
    info.uid = draw(NUMBERS)
    info.gid = draw(NUMBERS)
    info.mtime = draw(st.sampled_from([0, 1_600_000_000, 2**33 - 1, 10**11]))
    info.uname = info.gname = ""
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = draw(targets)
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor = draw(st.sampled_from([0, 1, 8, 255, 4095]))
        info.devminor = draw(st.sampled_from([0, 1, 3, 255]))
    info.pax_headers = draw(st.dictionaries(st.sampled_from(PAX_KEYS), PAX_VALUES, max_size=3))
    return Raw(info, data)


def _header_blocks(tar: bytes) -> list[int]:
    """Offsets of the 512-byte blocks whose checksum is valid: the headers."""
    offsets = []
    for offset in range(0, len(tar) - 511, 512):
        block = tar[offset : offset + 512]
        if not any(block):
            continue
        try:
            stored = int(block[148:156].split(b"\x00", 1)[0].strip() or b"-1", 8)
        except ValueError:
            continue
        if stored == sum(block[:148]) + 256 + sum(block[156:]):
            offsets.append(offset)
    return offsets


def _fix_checksum(tar: bytearray, offset: int) -> None:
    block = tar[offset : offset + 512]
    block[148:156] = b" " * 8
    tar[offset + 148 : offset + 156] = b"%06o\x00 " % sum(block)


@st.composite
def layers(draw: st.DrawFn) -> bytes:
    """A layer's tar: members in one of the three formats, then byte flips, a cut or an appended tail."""
    fmt: TarFormat = draw(st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT]))
    items = draw(st.lists(members(), min_size=1, max_size=6))
    try:
        tar = bytearray(make_layer(items, format=fmt, end_blocks=draw(st.integers(0, 5)) > 0))
    except (ValueError, UnicodeError, OverflowError):
        assume(False)
        raise  # unreachable: assume(False) stops the example
    headers = _header_blocks(bytes(tar))
    for _ in range(draw(st.integers(0, 3))):
        in_header: bool = draw(st.booleans())
        if headers and in_header:
            offset = draw(st.sampled_from(headers))
            tar[offset + draw(st.integers(0, 511))] ^= draw(st.integers(1, 255))
            if draw(st.booleans()):
                _fix_checksum(tar, offset)
        elif tar:
            tar[draw(st.integers(0, len(tar) - 1))] ^= draw(st.integers(1, 255))
    if draw(st.integers(0, 4)) == 0:
        tar = tar[: draw(st.integers(0, len(tar)))]
    if draw(st.integers(0, 6)) == 0:
        tar += draw(st.binary(min_size=1, max_size=1100))
    return bytes(tar)


def tar_example(base: Path, tars: list[bytes], fmt: Format, compression: Compression) -> Example:
    return image_from_layers(base, tars, fmt, compression)


def test_fuzz_tar_layers(tmp_path: Path) -> None:
    with examples_dir(tmp_path / "examples") as base:

        @FUZZ_SETTINGS
        @given(
            st.lists(layers(), min_size=1, max_size=3),
            st.sampled_from(["oci", "docker"]),
            st.sampled_from(["none", "gzip", "zstd"]),
        )
        def batch(tars: list[bytes], fmt: Format, compression: Compression) -> None:
            try:
                check(lambda: tar_example(base, tars, fmt, compression))
            except UnexpectedError:
                name = hashlib.sha256(b"".join(tars)).hexdigest()[:12]
                save_failure(name, {f"-{i}.tar": tar for i, tar in enumerate(tars)})
                raise

        spend(BUDGET * SHARES["tar"], batch)


# -- JSON documents ------------------------------------------------------------------------------------

KEYS: Final = [
    "schemaVersion",
    "mediaType",
    "manifests",
    "digest",
    "size",
    "annotations",
    "platform",
    "architecture",
    "os",
    "variant",
    "config",
    "layers",
    "urls",
    "rootfs",
    "type",
    "diff_ids",
    "history",
    "created",
    "created_by",
    "empty_layer",
    "Env",
    "Cmd",
    "Entrypoint",
    "Labels",
    "Config",
    "RepoTags",
    "Layers",
    "LayerSources",
    "org.opencontainers.image.ref.name",
]
STRINGS: Final = [
    "sha256:" + "0" * 64,
    "sha256:" + "a" * 63,
    "sha512:" + "0" * 128,
    "md5:00",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+bzip2",
    "layers",
    "linux",
    "amd64",
    "../../etc/passwd",
    "/etc/passwd",
    "blobs/sha256/" + "0" * 64,
    "v1",
    "",
]
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(STRINGS)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
edits = st.lists(
    st.tuples(st.lists(st.integers(0, 9), max_size=5), st.sampled_from(["set", "delete"]), json_values),
    min_size=1,
    max_size=3,
)


def apply_edit(doc: Any, path: list[int], op: str, value: Any) -> Any:
    """Set or delete the value ``path`` leads to (indexes taken modulo each container's size)."""
    parent: Any = None
    key: Any = None
    node = doc
    for step in path:
        if isinstance(node, dict) and node:
            parent, key = node, sorted(node)[step % len(node)]
        elif isinstance(node, list) and node:
            parent, key = node, step % len(node)
        else:
            break
        node = parent[key]
    if parent is None:
        return value if op == "set" else doc
    if op == "set":
        parent[key] = value
    else:
        del parent[key]
    return doc


@st.composite
def documents(draw: st.DrawFn) -> tuple[JsonTarget, bytes]:
    target = draw(st.sampled_from(JSON_TARGETS))
    doc = base_document(target)
    for path, op, value in draw(edits):
        doc = apply_edit(doc, path, op, value)
    data = canonical_json(doc)
    form = draw(st.sampled_from(["json", "json", "json", "cut", "bytes"]))
    if form == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif form == "bytes":
        data = draw(st.binary(max_size=200))
    return target, data


def test_fuzz_json_documents(tmp_path: Path) -> None:
    with examples_dir(tmp_path / "examples") as base:

        @FUZZ_SETTINGS
        @given(documents(), st.sampled_from([True, True, True, False]))
        def batch(document: tuple[JsonTarget, bytes], fix_digests: bool) -> None:
            target, data = document
            try:
                check(lambda: image_from_json(base, target, data, fix_digests))
            except UnexpectedError:
                save_failure(hashlib.sha256(data).hexdigest()[:12], {f".{target}.json": data})
                raise

        spend(BUDGET * SHARES["json"], batch)


# -- regressions ---------------------------------------------------------------------------------------


def _regression_params() -> list[Any]:
    return [pytest.param(path, id=path.name) for path in sorted(REGRESSIONS.glob("*")) if path.is_file()]


@pytest.mark.parametrize("path", _regression_params())
def test_regression(path: Path, tmp_path: Path) -> None:
    """Replay an input the fuzzer once found: ``NAME.tar`` is a layer, ``NAME.TARGET.json`` a document."""
    data = path.read_bytes()
    base = tmp_path / "examples"
    base.mkdir()
    if path.suffix == ".tar":
        check(lambda: image_from_layers(base, [data], "oci", "gzip"))
        check(lambda: image_from_layers(base, [data], "docker", "none"))
        return
    target = next((t for t in JSON_TARGETS if path.name.endswith(f".{t}.json")), None)
    assert target is not None, f"{path.name}: expected NAME.tar or NAME.<{'|'.join(JSON_TARGETS)}>.json"
    check(lambda: image_from_json(base, target, data, fix_digests=True))
