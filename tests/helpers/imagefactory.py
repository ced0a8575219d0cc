"""Build container images byte-exactly in tests, including broken and hostile ones.

Three levels:

* layer members (``File``, ``Dir``, ``Whiteout``, ``Raw`` ...) and ``make_layer`` -> tar bytes;
* ``ImageSpec`` (layers + config) and ``IndexSpec`` (nested indexes), with ``Fault`` and hooks to
  break digests, sizes, media types and blobs on purpose;
* writers: ``write_oci_layout``, ``write_oci_archive`` and ``write_docker_archive``, which return the
  facts a test needs (digests, diff_ids, reference strings).

Everything is deterministic: the same arguments give the same bytes.

Examples::

    base = make_layer([Dir("etc/"), File("etc/a", b"a"), File("etc/b", b"b")])
    rm_a = make_layer([Whiteout("etc/a"), Opaque("opt/")])
    top = make_layer([File("etc/c", b"c", mode=0o600)])

    # a 3-layer gzip OCI layout with a whiteout; open it as result.reference("v1") == "oci:DIR:v1"
    result = write_oci_layout(tmp_path / "oci", [Entry(ImageSpec([base, rm_a, top]), ref="v1")])

    # a two-platform nested index (platforms come from each image), plus buildx-style attestations
    multi = IndexSpec([ImageSpec([base]), ImageSpec([base], architecture="arm64", variant="v8")],
                      attestations=True)
    write_oci_layout(tmp_path / "multi", [Entry(multi, ref="latest")])

    # a legacy `docker save` tarball holding two tagged images
    write_docker_archive(tmp_path / "d.tar", [(ImageSpec([base]), ["app:1"]),
                                              (ImageSpec([base, top]), ["tool:2", "tool:latest"])])

    # a truncated gzip layer whose descriptor still matches the (truncated) bytes
    cut = Layer(base, compression="gzip", postprocess=lambda blob: blob[: len(blob) // 2])
    write_oci_layout(tmp_path / "cut", [Entry(ImageSpec([cut]), ref="v1")])
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import zstandard

Compression: TypeAlias = Literal["none", "gzip", "zstd"]
DockerStyle: TypeAlias = Literal["legacy", "skopeo", "docker25"]
PathT: TypeAlias = str | bytes
TarFormat: TypeAlias = Literal[0, 1, 2]
Json: TypeAlias = dict[str, Any]

DEFAULT_MTIME: Final = 1_600_000_000
DEFAULT_CREATED: Final = "2020-09-13T12:26:40Z"
DEFAULT_ENV: Final = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
OCI_LAYOUT_BYTES: Final = b'{"imageLayoutVersion":"1.0.0"}'

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
OCI_FOREIGN_LAYER: Final = "application/vnd.oci.image.layer.nondistributable.v1.tar"
DOCKER_LIST: Final = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST: Final = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG: Final = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER: Final = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_LAYER: Final = "application/vnd.docker.image.rootfs.foreign.diff.tar"
IN_TOTO: Final = "application/vnd.in-toto+json"
REF_NAME: Final = "org.opencontainers.image.ref.name"
CONTAINERD_IMAGE_NAME: Final = "io.containerd.image.name"
DOCKER_REF_TYPE: Final = "vnd.docker.reference.type"
DOCKER_REF_DIGEST: Final = "vnd.docker.reference.digest"

_OCI_SUFFIX: Final[dict[str, str]] = {"none": "", "gzip": "+gzip", "zstd": "+zstd"}
_DOCKER_SUFFIX: Final[dict[str, str]] = {"none": "", "gzip": ".gzip", "zstd": ".zstd"}
_SAFE_DIGEST: Final = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


# ---------------------------------------------------------------------------------------------
# Layer members
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class File:
    path: PathT
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = DEFAULT_MTIME
    xattrs: Mapping[str, bytes | str] | None = None


@dataclass(frozen=True)
class Dir:
    """A directory; the name is written as given, so pass ``"etc/"`` for the usual trailing slash."""

    path: PathT
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    mtime: int = DEFAULT_MTIME
    xattrs: Mapping[str, bytes | str] | None = None


@dataclass(frozen=True)
class Symlink:
    path: PathT
    target: PathT
    mode: int = 0o777
    uid: int = 0
    gid: int = 0
    mtime: int = DEFAULT_MTIME
    xattrs: Mapping[str, bytes | str] | None = None


@dataclass(frozen=True)
class Hardlink:
    path: PathT
    target: PathT
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = DEFAULT_MTIME
    xattrs: Mapping[str, bytes | str] | None = None


@dataclass(frozen=True)
class CharDev:
    path: PathT
    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0
    mtime: int = DEFAULT_MTIME
    xattrs: Mapping[str, bytes | str] | None = None


@dataclass(frozen=True)
class BlockDev:
    path: PathT
    major: int
    minor: int
    mode: int = 0o660
    uid: int = 0
    gid: int = 0
    mtime: int = DEFAULT_MTIME
    xattrs: Mapping[str, bytes | str] | None = None


@dataclass(frozen=True)
class Fifo:
    path: PathT
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = DEFAULT_MTIME
    xattrs: Mapping[str, bytes | str] | None = None


@dataclass(frozen=True)
class Whiteout:
    """AUFS-style whiteout: an empty file ``.wh.<name>`` beside the removed ``path``."""

    path: PathT
    mode: int = 0o644
    mtime: int = DEFAULT_MTIME


@dataclass(frozen=True)
class Opaque:
    """AUFS-style opaque marker: ``<dirpath>/.wh..wh..opq``."""

    dirpath: PathT
    mode: int = 0o644
    mtime: int = DEFAULT_MTIME


@dataclass(frozen=True)
class OverlayWhiteout:
    """overlayfs-style whiteout: a character device 0/0 at ``path`` itself."""

    path: PathT
    mode: int = 0o000
    mtime: int = DEFAULT_MTIME


@dataclass(frozen=True)
class OverlayOpaque:
    """overlayfs-style opaque directory: a directory with PAX xattr ``trusted.overlay.opaque=y``."""

    dirpath: PathT
    mode: int = 0o755
    mtime: int = DEFAULT_MTIME


@dataclass(frozen=True)
class Raw:
    """A hand-made header and the data written after it (padded to 512 from ``len(data)``, whatever
    ``header.size`` says). Use ``ExactTarInfo`` to keep a directory name without its trailing slash."""

    header: tarfile.TarInfo
    data: bytes = b""


@dataclass(frozen=True)
class RawBytes:
    """Bytes put into the tar stream verbatim, with no header and no padding."""

    data: bytes


Member: TypeAlias = (
    File
    | Dir
    | Symlink
    | Hardlink
    | CharDev
    | BlockDev
    | Fifo
    | Whiteout
    | Opaque
    | OverlayWhiteout
    | OverlayOpaque
    | Raw
    | RawBytes
)


class ExactTarInfo(tarfile.TarInfo):
    """A TarInfo whose name is written exactly, without the ``/`` tarfile adds to directories."""

    def get_info(self) -> dict[str, Any]:
        info: dict[str, Any] = dict(super().get_info())
        info["name"] = self.name
        return info


def as_str(path: PathT) -> str:
    """A str path for tarfile: bytes are decoded with surrogateescape, so they round-trip exactly."""
    return path.decode("utf-8", "surrogateescape") if isinstance(path, bytes) else path


def _sibling(path: PathT, prefix: str) -> str:
    text = as_str(path)
    stripped = text.rstrip("/")
    parent, slash, name = stripped.rpartition("/")
    return f"{parent}{slash}{prefix}{name}"


def _inside(dirpath: PathT, name: str) -> str:
    text = as_str(dirpath)
    if not text:
        return name
    return f"{text.rstrip('/')}/{name}"


def _header(
    path: PathT,
    kind: bytes,
    *,
    mode: int,
    uid: int = 0,
    gid: int = 0,
    mtime: int = DEFAULT_MTIME,
    size: int = 0,
    linkname: PathT = "",
    major: int = 0,
    minor: int = 0,
    xattrs: Mapping[str, bytes | str] | None = None,
    format: TarFormat,
) -> tarfile.TarInfo:
    info = ExactTarInfo(as_str(path))
    info.type = kind
    info.mode = mode
    info.uid = uid
    info.gid = gid
    info.mtime = mtime
    info.size = size
    info.linkname = as_str(linkname)
    info.devmajor = major
    info.devminor = minor
    info.uname = ""
    info.gname = ""
    if xattrs:
        if format != tarfile.PAX_FORMAT:
            raise ValueError("xattrs can only be written in PAX_FORMAT")
        info.pax_headers = {f"SCHILY.xattr.{name}": as_str(value) for name, value in xattrs.items()}
    return info


def member_header(member: Member, format: TarFormat = tarfile.PAX_FORMAT) -> tuple[tarfile.TarInfo, bytes]:
    """The TarInfo and data a member stands for (not for ``RawBytes``)."""
    h = _header
    match member:
        case File():
            return h(
                member.path,
                tarfile.REGTYPE,
                mode=member.mode,
                uid=member.uid,
                gid=member.gid,
                mtime=member.mtime,
                size=len(member.data),
                xattrs=member.xattrs,
                format=format,
            ), member.data
        case Dir():
            return h(
                member.path,
                tarfile.DIRTYPE,
                mode=member.mode,
                uid=member.uid,
                gid=member.gid,
                mtime=member.mtime,
                xattrs=member.xattrs,
                format=format,
            ), b""
        case Symlink():
            return h(
                member.path,
                tarfile.SYMTYPE,
                mode=member.mode,
                uid=member.uid,
                gid=member.gid,
                mtime=member.mtime,
                linkname=member.target,
                xattrs=member.xattrs,
                format=format,
            ), b""
        case Hardlink():
            return h(
                member.path,
                tarfile.LNKTYPE,
                mode=member.mode,
                uid=member.uid,
                gid=member.gid,
                mtime=member.mtime,
                linkname=member.target,
                xattrs=member.xattrs,
                format=format,
            ), b""
        case CharDev() | BlockDev():
            kind = tarfile.CHRTYPE if isinstance(member, CharDev) else tarfile.BLKTYPE
            return h(
                member.path,
                kind,
                mode=member.mode,
                uid=member.uid,
                gid=member.gid,
                mtime=member.mtime,
                major=member.major,
                minor=member.minor,
                xattrs=member.xattrs,
                format=format,
            ), b""
        case Fifo():
            return h(
                member.path,
                tarfile.FIFOTYPE,
                mode=member.mode,
                uid=member.uid,
                gid=member.gid,
                mtime=member.mtime,
                xattrs=member.xattrs,
                format=format,
            ), b""
        case Whiteout():
            return h(
                _sibling(member.path, ".wh."),
                tarfile.REGTYPE,
                mode=member.mode,
                mtime=member.mtime,
                format=format,
            ), b""
        case Opaque():
            return h(
                _inside(member.dirpath, ".wh..wh..opq"),
                tarfile.REGTYPE,
                mode=member.mode,
                mtime=member.mtime,
                format=format,
            ), b""
        case OverlayWhiteout():
            return h(member.path, tarfile.CHRTYPE, mode=member.mode, mtime=member.mtime, format=format), b""
        case OverlayOpaque():
            return h(
                member.dirpath,
                tarfile.DIRTYPE,
                mode=member.mode,
                mtime=member.mtime,
                xattrs={"trusted.overlay.opaque": b"y"},
                format=format,
            ), b""
        case Raw():
            return member.header, member.data
        case RawBytes():
            raise TypeError("RawBytes has no header")


def make_layer(
    members: Iterable[Member],
    *,
    format: TarFormat = tarfile.PAX_FORMAT,
    end_blocks: bool = True,
    pad_last: bool = True,
    record_size: int = tarfile.RECORDSIZE,
) -> bytes:
    """An uncompressed tar of ``members`` in the order given.

    ``end_blocks=False`` leaves out the two zero end blocks and the record padding; ``pad_last=False``
    also leaves out the zero padding after the last member's data. ``record_size`` pads the end of a
    complete archive to a multiple of it (tarfile's 10240 by default; 512 gives Go's archive/tar form).
    """
    chunks: list[bytes] = []
    items = list(members)
    for position, member in enumerate(items):
        if isinstance(member, RawBytes):
            chunks.append(member.data)
            continue
        info, data = member_header(member, format)
        chunks.append(info.tobuf(format, "utf-8", "surrogateescape"))
        chunks.append(data)
        padding = -len(data) % tarfile.BLOCKSIZE
        if padding and (pad_last or position != len(items) - 1):
            chunks.append(bytes(padding))
    if end_blocks:
        chunks.append(bytes(2 * tarfile.BLOCKSIZE))
        total = sum(len(chunk) for chunk in chunks)
        if record_size > 0:
            chunks.append(bytes(-total % record_size))
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------
# Bytes helpers
# ---------------------------------------------------------------------------------------------


def compress(data: bytes, method: Compression, *, level: int | None = None) -> bytes:
    """Deterministic compression: gzip with mtime 0, zstd with content size and checksum."""
    if method == "none":
        return data
    if method == "gzip":
        return gzip.compress(data, compresslevel=6 if level is None else level, mtime=0)
    if method == "zstd":
        compressor = zstandard.ZstdCompressor(level=3 if level is None else level, write_checksum=True)
        return compressor.compress(data)
    raise ValueError(f"unknown compression {method!r}")


def aufs_bookkeeping_layers(mtime: int) -> list[list[Member]]:
    """Two layers as Docker's old aufs driver saved them: a base, then hardlinks into
    ``.wh..wh.plnk/`` and the driver's other bookkeeping (``.wh..wh.aufs``, ``.wh..wh.orph/``)."""
    return [
        [Dir("bin/", mtime=mtime), File("bin/old", b"old", mtime=mtime)],
        [
            Dir(".wh..wh.plnk/", mode=0o700, mtime=mtime),
            File(".wh..wh.plnk/264.1045", b"busybox\n", mode=0o755, mtime=mtime + 5),
            Dir("bin/", mtime=mtime),
            Hardlink("bin/sh", ".wh..wh.plnk/264.1045", mtime=mtime),
            Hardlink("bin/ls", ".wh..wh.plnk/264.1045", mtime=mtime),
            File(".wh..wh.aufs", b"", mode=0o600, mtime=mtime),
            Dir(".wh..wh.orph/", mode=0o700, mtime=mtime),
            File(".wh..wh.orph/lost", b"x", mtime=mtime),
        ],
    ]


def incompressible(size: int, seed: bytes) -> bytes:
    """Deterministic bytes that no compressor shrinks."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Compact JSON in the key order given, as Go's encoding/json writes structs."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def tamper(data: bytes) -> bytes:
    """Different bytes of the same size that still read the same where that is possible.

    gzip: the header's mtime changes, so the stream still decompresses to the same tar. A JSON object
    of at least two keys: the keys are written in reverse order. A tar ending in a zero block: its last
    byte becomes 1, past the end-of-archive marker. Anything else (zstd too, where that breaks the
    frame checksum): the last byte's low bit flips. An empty blob becomes one byte.
    """
    if not data:
        return b"\x01"
    if data[:2] == b"\x1f\x8b" and len(data) > 8:
        return data[:4] + bytes([data[4] ^ 1]) + data[5:]
    if data[:1] == b"{":
        try:
            doc = json.loads(data)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and len(doc) >= 2:
            swapped = canonical_json(dict(reversed(list(doc.items()))))
            if len(swapped) == len(data) and swapped != data:
                return swapped
    if len(data) >= 1024 and not any(data[-512:]):
        return data[:-1] + b"\x01"
    return data[:-1] + bytes([data[-1] ^ 1])


def blob_path(digest: str) -> str:
    """``blobs/<algorithm>/<encoded>`` for a digest; ValueError when it would not be one plain file."""
    if not _SAFE_DIGEST.fullmatch(digest):
        raise ValueError(f"digest {digest!r} does not name a blob file")
    algorithm, _, encoded = digest.partition(":")
    return f"blobs/{algorithm}/{encoded}"


# ---------------------------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """How a blob and the descriptor pointing at it are broken on purpose.

    ``missing``: the blob is not written. ``tamper``: the blob is changed after its digest was taken
    (True uses ``tamper()``; a callable gets the bytes and returns the new ones). ``size_delta`` is added
    to the descriptor's size. ``digest`` replaces the digest in the descriptor; the blob is then stored
    under that name when it is a plain one (``sha256:<hex>`` or similar), else not at all.
    """

    missing: bool = False
    tamper: bool | Callable[[bytes], bytes] = False
    size_delta: int = 0
    digest: str | None = None


MISSING: Final = Fault(missing=True)
TAMPERED: Final = Fault(tamper=True)


@dataclass(frozen=True)
class Placed:
    """A blob's digest and size as descriptors name them, and what goes to disk (empty if nothing)."""

    digest: str
    size: int
    true_digest: str
    stored: dict[str, bytes]


def place(data: bytes, fault: Fault | None = None) -> Placed:
    f = fault or Fault()
    true_digest = sha256_digest(data)
    digest = f.digest or true_digest
    size = len(data) + f.size_delta
    if f.missing or not _SAFE_DIGEST.fullmatch(digest):
        return Placed(digest, size, true_digest, {})
    stored = (tamper(data) if f.tamper else data) if isinstance(f.tamper, bool) else f.tamper(data)
    return Placed(digest, size, true_digest, {digest: stored})


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: Sequence[str] | None = None

    def to_json(self) -> Json:
        out: Json = {"architecture": self.architecture, "os": self.os}
        if self.os_version is not None:
            out["os.version"] = self.os_version
        if self.os_features is not None:
            out["os.features"] = list(self.os_features)
        if self.variant is not None:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        tail = f"/{self.variant}" if self.variant else ""
        return f"{self.os}/{self.architecture}{tail}"


@dataclass(frozen=True)
class Layer:
    """One layer: its uncompressed tar and how it is stored and described.

    ``compression`` None takes the image's. ``postprocess`` changes the stored blob before its digest
    is taken (e.g. truncate it: digest and size then match the broken bytes). ``urls`` makes a
    foreign/non-distributable descriptor whose blob is not written unless ``keep_blob``. ``diff_id``
    replaces the diff_id recorded in the config. ``media_type`` replaces the descriptor's media type.
    """

    tar: bytes
    compression: Compression | None = None
    created_by: str | None = None
    media_type: str | None = None
    urls: Sequence[str] | None = None
    keep_blob: bool = False
    annotations: Mapping[str, str] | None = None
    postprocess: Callable[[bytes], bytes] | None = None
    diff_id: str | None = None
    fault: Fault | None = None


@dataclass(frozen=True)
class ImageSpec:
    """An image: layers, config and manifest.

    ``layers`` are uncompressed tars (``bytes``) or ``Layer`` objects. ``compression`` is one method
    for all layers or one per layer. History: one entry per layer (``Layer.created_by``, else
    ``created_by[i]``, else a default), with ``empty_history[i]`` entries (``empty_layer: true``)
    inserted before layer ``i`` (``i == len(layers)``: after the last); ``history`` replaces all that
    verbatim. ``media="docker"`` writes Docker v2 schema 2 media types instead of OCI ones.
    ``edit_config``/``edit_manifest`` change the JSON documents before they are serialised, and
    ``raw_config`` replaces the config bytes entirely. ``fault`` breaks the manifest blob (as seen by
    every descriptor pointing at it), ``config_fault`` the config blob.
    """

    layers: Sequence[bytes | Layer] = ()
    compression: Compression | Sequence[Compression] = "gzip"
    created_by: Sequence[str] | None = None
    empty_history: Mapping[int, Sequence[str]] | None = None
    history: Sequence[Mapping[str, Any]] | None = None
    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None
    os_version: str | None = None
    env: Sequence[str] | None = DEFAULT_ENV
    cmd: Sequence[str] | None = None
    entrypoint: Sequence[str] | None = None
    working_dir: str | None = None
    user: str | None = None
    labels: Mapping[str, str] | None = None
    created: str | None = DEFAULT_CREATED
    author: str | None = None
    media: Literal["oci", "docker"] = "oci"
    manifest_annotations: Mapping[str, str] | None = None
    edit_config: Callable[[Json], None] | None = None
    edit_manifest: Callable[[Json], None] | None = None
    raw_config: bytes | None = None
    fault: Fault | None = None
    config_fault: Fault | None = None

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant, self.os_version)

    def layer_specs(self) -> list[Layer]:
        """Every layer as a ``Layer`` with its compression resolved."""
        out: list[Layer] = []
        for position, item in enumerate(self.layers):
            layer = item if isinstance(item, Layer) else Layer(item)
            if layer.compression is None:
                layer = dataclasses.replace(layer, compression=self._compression_at(position))
            out.append(layer)
        return out

    def _compression_at(self, position: int) -> Compression:
        if isinstance(self.compression, str):
            return self.compression
        return self.compression[position]

    def with_compression(self, method: Compression) -> ImageSpec:
        """The same image with every layer stored with ``method``."""
        layers = [dataclasses.replace(layer, compression=method) for layer in self.layer_specs()]
        return dataclasses.replace(self, layers=layers, compression=method)

    def diff_ids(self) -> list[str]:
        return [layer.diff_id or sha256_digest(layer.tar) for layer in self.layer_specs()]

    def history_entries(self) -> list[Json]:
        if self.history is not None:
            return [dict(entry) for entry in self.history]
        layers = self.layer_specs()
        empties = self.empty_history or {}
        stamp: Json = {"created": self.created} if self.created is not None else {}
        out: list[Json] = []
        for position in range(len(layers) + 1):
            out.extend(
                {**stamp, "created_by": text, "empty_layer": True} for text in empties.get(position, ())
            )
            if position == len(layers):
                break
            text = layers[position].created_by
            if text is None and self.created_by is not None and position < len(self.created_by):
                text = self.created_by[position]
            if text is None:
                text = f"/bin/sh -c #(nop) ADD file:layer{position} in / "
            out.append({**stamp, "created_by": text})
        return out

    def runtime_config(self) -> Json:
        inner: Json = {}
        if self.user is not None:
            inner["User"] = self.user
        if self.env is not None:
            inner["Env"] = list(self.env)
        if self.entrypoint is not None:
            inner["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            inner["Cmd"] = list(self.cmd)
        if self.working_dir is not None:
            inner["WorkingDir"] = self.working_dir
        if self.labels is not None:
            inner["Labels"] = dict(self.labels)
        return inner

    def config_document(self) -> Json:
        doc: Json = {}
        if self.created is not None:
            doc["created"] = self.created
        if self.author is not None:
            doc["author"] = self.author
        doc["architecture"] = self.architecture
        doc["os"] = self.os
        if self.os_version is not None:
            doc["os.version"] = self.os_version
        if self.variant is not None:
            doc["variant"] = self.variant
        doc["config"] = self.runtime_config()
        doc["rootfs"] = {"type": "layers", "diff_ids": self.diff_ids()}
        doc["history"] = self.history_entries()
        if self.edit_config is not None:
            self.edit_config(doc)
        return doc

    def config_json(self) -> bytes:
        return self.raw_config if self.raw_config is not None else canonical_json(self.config_document())

    def manifest_json(self) -> bytes:
        return self.build().manifest

    def blobs(self) -> dict[str, bytes]:
        """Every blob the image writes (config, layers, manifest), faults applied, keyed by digest."""
        return dict(self.build().blobs)

    def build(self) -> BuiltImage:
        docker = self.media == "docker"
        blobs: dict[str, bytes] = {}
        layer_descriptors: list[Json] = []
        layer_blobs: list[bytes] = []
        layer_digests: list[str] = []
        layer_sizes: list[int] = []
        for layer in self.layer_specs():
            method = layer.compression or "none"
            blob = compress(layer.tar, method)
            if layer.postprocess is not None:
                blob = layer.postprocess(blob)
            fault = layer.fault
            if layer.urls is not None and not layer.keep_blob:
                fault = dataclasses.replace(fault or Fault(), missing=True)
            placed = place(blob, fault)
            _merge(blobs, placed.stored)
            media_type = layer.media_type or layer_media_type(method, docker=docker, foreign=bool(layer.urls))
            descriptor = _descriptor(media_type, placed.digest, placed.size, docker=docker)
            if layer.urls is not None:
                descriptor["urls"] = list(layer.urls)
            if layer.annotations:
                descriptor["annotations"] = dict(layer.annotations)
            layer_descriptors.append(descriptor)
            layer_blobs.append(blob)
            layer_digests.append(placed.digest)
            layer_sizes.append(placed.size)
        config = self.config_json()
        config_placed = place(config, self.config_fault)
        _merge(blobs, config_placed.stored)
        manifest_doc: Json = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
            "config": _descriptor(
                DOCKER_CONFIG if docker else OCI_CONFIG,
                config_placed.digest,
                config_placed.size,
                docker=docker,
            ),
            "layers": layer_descriptors,
        }
        if self.manifest_annotations:
            manifest_doc["annotations"] = dict(self.manifest_annotations)
        if self.edit_manifest is not None:
            self.edit_manifest(manifest_doc)
        manifest = canonical_json(manifest_doc)
        manifest_placed = place(manifest, self.fault)
        _merge(blobs, manifest_placed.stored)
        manifest_type = manifest_doc.get("mediaType")
        return BuiltImage(
            spec=self,
            manifest=manifest,
            manifest_digest=manifest_placed.digest,
            manifest_size=manifest_placed.size,
            manifest_media_type=manifest_type if isinstance(manifest_type, str) else OCI_MANIFEST,
            config=config,
            config_digest=config_placed.digest,
            layer_blobs=layer_blobs,
            layer_digests=layer_digests,
            layer_sizes=layer_sizes,
            layer_media_types=[str(d.get("mediaType")) for d in layer_descriptors],
            diff_ids=self.diff_ids(),
            platform=self.platform,
            blobs=blobs,
        )


def layer_media_type(method: Compression, *, docker: bool = False, foreign: bool = False) -> str:
    if docker:
        return (DOCKER_FOREIGN_LAYER if foreign else DOCKER_LAYER) + _DOCKER_SUFFIX[method]
    return (OCI_FOREIGN_LAYER if foreign else OCI_LAYER) + _OCI_SUFFIX[method]


def _descriptor(media_type: str, digest: str, size: int, *, docker: bool = False) -> Json:
    if docker:
        return {"mediaType": media_type, "size": size, "digest": digest}
    return {"mediaType": media_type, "digest": digest, "size": size}


def _merge(into: dict[str, bytes], new: Mapping[str, bytes]) -> None:
    for digest, data in new.items():
        into.setdefault(digest, data)


@dataclass(frozen=True)
class BuiltImage:
    """Facts about one built image. Digests are the ones descriptors name (faults included);
    ``layer_blobs`` are the layer bytes those digests were taken of; ``blobs`` is what gets written."""

    spec: ImageSpec
    manifest: bytes
    manifest_digest: str
    manifest_size: int
    manifest_media_type: str
    config: bytes
    config_digest: str
    layer_blobs: list[bytes]
    layer_digests: list[str]
    layer_sizes: list[int]
    layer_media_types: list[str]
    diff_ids: list[str]
    platform: Platform
    blobs: dict[str, bytes]

    def descriptor(self) -> Json:
        return _descriptor(
            self.manifest_media_type,
            self.manifest_digest,
            self.manifest_size,
            docker=self.manifest_media_type == DOCKER_MANIFEST,
        )


@dataclass(frozen=True)
class LoopTo:
    """An index entry pointing back at the ``IndexSpec`` called ``name``.

    If that index encloses this entry, the result is a loop. Since no index can contain its own digest,
    the looped index is stored under a made-up digest (its content does not hash to it; sizes are
    right): a reader that verifies an index before following it sees a digest mismatch, one that does
    not must notice the loop. If the named index was built earlier and does not enclose this entry,
    this is a plain second reference to it.
    """

    name: str


@dataclass(frozen=True)
class RawDescriptor:
    """A descriptor written verbatim; ``blob``, if given, is stored under ``descriptor["digest"]``."""

    descriptor: Mapping[str, Any]
    blob: bytes | None = None


@dataclass(frozen=True)
class IndexSpec:
    """An image index (or Docker manifest list with ``media_type=DOCKER_LIST``).

    ``name`` lets ``LoopTo`` entries refer to it (listing the same named spec twice writes it once;
    two different specs may not share a name). ``attestations=True`` adds, after the entries, one
    buildx-style attestation manifest (platform unknown/unknown) per image entry. ``media_type=None``
    leaves the field out. ``edit`` changes the document before it is serialised.
    """

    manifests: Sequence[EntryLike] = ()
    name: str | None = None
    media_type: str | None = OCI_INDEX
    annotations: Mapping[str, str] | None = None
    attestations: bool = False
    edit: Callable[[Json], None] | None = None
    fault: Fault | None = None


@dataclass(frozen=True)
class Entry:
    """A descriptor in an index for ``target``, with what only the descriptor carries.

    ``platform="auto"``: an image's own platform inside an ``IndexSpec``, none at the top of index.json
    and for indexes. ``extra`` is merged into the descriptor last (a None value deletes the key).
    """

    target: ImageSpec | IndexSpec | LoopTo
    ref: str | None = None
    platform: Platform | Literal["auto"] | None = "auto"
    annotations: Mapping[str, str] | None = None
    extra: Mapping[str, Any] | None = None


EntryLike: TypeAlias = ImageSpec | IndexSpec | Entry | LoopTo | RawDescriptor


@dataclass(frozen=True)
class BuiltIndex:
    spec: IndexSpec
    content: bytes
    digest: str
    true_digest: str
    looped: bool


def _loop_digest(name: str) -> str:
    return sha256_digest(b"imagefactory loop placeholder\0" + name.encode())


class _Builder:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.images: list[BuiltImage] = []
        self.attestations: list[BuiltImage] = []
        self.indexes: list[BuiltIndex] = []
        self._pending: dict[str, tuple[str, int, str | None]] = {}
        self._done: dict[str, Json] = {}
        self._named: dict[str, IndexSpec] = {}
        self._loop_hits: set[str] = set()

    def _snapshot(self) -> tuple[dict[str, bytes], int, int, int, set[str], dict[str, Json]]:
        return (
            dict(self.blobs),
            len(self.images),
            len(self.attestations),
            len(self.indexes),
            set(self._loop_hits),
            dict(self._done),
        )

    def _restore(self, snap: tuple[dict[str, bytes], int, int, int, set[str], dict[str, Json]]) -> None:
        self.blobs, images, attestations, indexes, self._loop_hits, self._done = snap
        del self.images[images:]
        del self.attestations[attestations:]
        del self.indexes[indexes:]

    def document(self, spec: IndexSpec, *, nested: bool) -> tuple[bytes, list[Json]]:
        descriptors: list[Json] = []
        images: list[tuple[Json, BuiltImage]] = []
        for item in spec.manifests:
            descriptor, built = self.descriptor(item, nested=nested)
            descriptors.append(descriptor)
            if built is not None:
                images.append((descriptor, built))
        if spec.attestations:
            for descriptor, _ in images:
                descriptors.append(self.attestation(descriptor))
        doc: Json = {"schemaVersion": 2}
        if spec.media_type is not None:
            doc["mediaType"] = spec.media_type
        doc["manifests"] = descriptors
        if spec.annotations:
            doc["annotations"] = dict(spec.annotations)
        if spec.edit is not None:
            spec.edit(doc)
        return canonical_json(doc), descriptors

    def descriptor(self, item: EntryLike, *, nested: bool) -> tuple[Json, BuiltImage | None]:
        if isinstance(item, RawDescriptor):
            descriptor = dict(item.descriptor)
            if item.blob is not None:
                _merge(self.blobs, {str(descriptor["digest"]): item.blob})
            return descriptor, None
        entry = item if isinstance(item, Entry) else Entry(item)
        target = entry.target
        built: BuiltImage | None = None
        auto: Platform | None = None
        if isinstance(target, ImageSpec):
            built = target.build()
            _merge(self.blobs, built.blobs)
            self.images.append(built)
            descriptor = built.descriptor()
            auto = built.platform if nested else None
        elif isinstance(target, IndexSpec):
            descriptor = self.index(target)
        else:
            descriptor = self.loop(target)
        annotations = dict(entry.annotations or {})
        if entry.ref is not None:
            annotations[REF_NAME] = entry.ref
        if annotations:
            descriptor["annotations"] = annotations
        platform = auto if entry.platform == "auto" else entry.platform
        if platform is not None:
            descriptor["platform"] = platform.to_json()
        for key, value in (entry.extra or {}).items():
            if value is None:
                descriptor.pop(key, None)
            else:
                descriptor[key] = value
        return descriptor, built

    def loop(self, target: LoopTo) -> Json:
        if target.name in self._pending:
            digest, size, media_type = self._pending[target.name]
            self._loop_hits.add(target.name)
            out: Json = {}
            if media_type is not None:
                out["mediaType"] = media_type
            out["digest"] = digest
            out["size"] = size
            return out
        if target.name in self._done:
            return dict(self._done[target.name])
        raise ValueError(f"LoopTo({target.name!r}) names no enclosing or earlier IndexSpec")

    def index(self, spec: IndexSpec) -> Json:
        if spec.name is not None and spec.name in self._done:
            if self._named[spec.name] != spec:
                raise ValueError(f"two different IndexSpecs are called {spec.name!r}")
            return dict(self._done[spec.name])
        content, looped = self._index_content(spec)
        fault = spec.fault
        if looped and spec.name is not None:
            fault = dataclasses.replace(fault or Fault(), digest=_loop_digest(spec.name))
        placed = place(content, fault)
        _merge(self.blobs, placed.stored)
        self.indexes.append(BuiltIndex(spec, content, placed.digest, placed.true_digest, looped))
        descriptor: Json = {}
        if spec.media_type is not None:
            descriptor["mediaType"] = spec.media_type
        descriptor["digest"] = placed.digest
        descriptor["size"] = placed.size
        if spec.name is not None:
            self._done[spec.name] = dict(descriptor)
            self._named[spec.name] = spec
        return descriptor

    def _index_content(self, spec: IndexSpec) -> tuple[bytes, bool]:
        if spec.name is None:
            return self.document(spec, nested=True)[0], False
        if spec.name in self._pending:
            raise ValueError(f"two enclosing IndexSpecs are called {spec.name!r}")
        guess = 0
        for _ in range(16):
            snap = self._snapshot()
            self._pending[spec.name] = (_loop_digest(spec.name), guess, spec.media_type)
            try:
                content = self.document(spec, nested=True)[0]
            finally:
                del self._pending[spec.name]
            if spec.name not in self._loop_hits:
                return content, False
            if len(content) == guess:
                return content, True
            self._restore(snap)
            guess = len(content)
        raise RuntimeError(f"the size of looped index {spec.name!r} did not settle")

    def attestation(self, subject: Json) -> Json:
        statement = canonical_json(
            {
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": "https://slsa.dev/provenance/v0.2",
                "subject": [{"name": "_", "digest": {"sha256": str(subject["digest"]).partition(":")[2]}}],
                "predicate": {},
            }
        )
        spec = ImageSpec(
            layers=[
                Layer(
                    statement,
                    compression="none",
                    media_type=IN_TOTO,
                    annotations={"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
                )
            ],
            architecture="unknown",
            os="unknown",
            env=None,
            created=None,
            history=[],
        )
        built = spec.build()
        _merge(self.blobs, built.blobs)
        self.attestations.append(built)
        descriptor = built.descriptor()
        descriptor["annotations"] = {
            DOCKER_REF_DIGEST: str(subject["digest"]),
            DOCKER_REF_TYPE: "attestation-manifest",
        }
        descriptor["platform"] = {"architecture": "unknown", "os": "unknown"}
        return descriptor


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OciResult:
    """What ``write_oci_layout``/``write_oci_archive`` wrote.

    ``images``: every image manifest built, in the order met (attestations apart, in
    ``attestations``); ``indexes``: every nested index; ``descriptors``: index.json's entries;
    ``blobs``: the blobs written (after ``mutate_blobs``), by digest.
    """

    path: str
    transport: str
    index: bytes
    descriptors: list[Json]
    images: list[BuiltImage]
    attestations: list[BuiltImage]
    indexes: list[BuiltIndex]
    blobs: dict[str, bytes]
    files: dict[str, bytes]

    @property
    def image(self) -> BuiltImage:
        """The first image built (the only one, in single-image layouts)."""
        return self.images[0]

    @property
    def refs(self) -> list[str]:
        out: list[str] = []
        for descriptor in self.descriptors:
            ref = (descriptor.get("annotations") or {}).get(REF_NAME)
            if isinstance(ref, str):
                out.append(ref)
        return out

    def reference(self, ref: str | None = None) -> str:
        """``oci:DIR:REF`` / ``oci-archive:FILE:REF`` (or without ``:REF``)."""
        return f"{self.transport}:{self.path}" + (f":{ref}" if ref else "")

    @property
    def references(self) -> list[str]:
        return [self.reference(ref) for ref in self.refs]


def _layout_files(
    entries: Sequence[EntryLike] | IndexSpec,
    *,
    mutate_blobs: Callable[[dict[str, bytes]], None] | None,
    layout: bytes | None,
    extra_files: Mapping[str, bytes] | None,
) -> tuple[dict[str, bytes], _Builder, bytes, list[Json], dict[str, bytes]]:
    builder = _Builder()
    top = entries if isinstance(entries, IndexSpec) else IndexSpec(manifests=list(entries))
    index, descriptors = builder.document(top, nested=False)
    blobs = dict(builder.blobs)
    if mutate_blobs is not None:
        mutate_blobs(blobs)
    files: dict[str, bytes] = {}
    if layout is not None:
        files["oci-layout"] = layout
    files["index.json"] = index
    for digest in sorted(blobs):
        files[blob_path(digest)] = blobs[digest]
    files.update(extra_files or {})
    return files, builder, index, descriptors, blobs


def write_oci_layout(
    dest_dir: str | os.PathLike[str],
    entries: Sequence[EntryLike] | IndexSpec,
    *,
    mutate_blobs: Callable[[dict[str, bytes]], None] | None = None,
    layout: bytes | None = OCI_LAYOUT_BYTES,
    extra_files: Mapping[str, bytes] | None = None,
) -> OciResult:
    """Write an OCI image layout directory whose index.json lists ``entries``.

    ``entries`` may be an ``IndexSpec`` to set index.json's own media type, annotations or ``edit``.
    ``mutate_blobs`` gets every blob by digest and may add, drop or change some before writing.
    ``layout`` is the oci-layout file's content (None: no such file). ``extra_files`` (relative paths)
    are written last, so they can also replace index.json or a blob.
    """
    path = os.fspath(dest_dir)
    files, builder, index, descriptors, blobs = _layout_files(
        entries, mutate_blobs=mutate_blobs, layout=layout, extra_files=extra_files
    )
    os.makedirs(os.path.join(path, "blobs"), exist_ok=True)
    for name, data in files.items():
        target = os.path.join(path, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(data)
    return OciResult(
        path, "oci", index, descriptors, builder.images, builder.attestations, builder.indexes, blobs, files
    )


def tree_members(
    files: Mapping[str, bytes],
    *,
    symlinks: Mapping[str, str] | None = None,
    directories: bool = True,
    mode: int = 0o644,
    mtime: int = 0,
) -> list[Member]:
    """Members for a file tree in directory-walk order (each directory, then its entries sorted)."""
    links = dict(symlinks or {})
    names = set(files) | set(links)
    dirs: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    out: list[Member] = []
    for name in sorted(names | (dirs if directories else set()), key=lambda n: n.split("/")):
        if name in dirs and name not in names:
            out.append(Dir(name + "/", mtime=mtime))
        elif name in links:
            out.append(Symlink(name, links[name], mtime=mtime))
        else:
            out.append(File(name, files[name], mode=mode, mtime=mtime))
    return out


def _write_archive(
    dest_file: str | os.PathLike[str],
    members: list[Member],
    *,
    outer: Compression,
    edit_members: Callable[[list[Member]], list[Member]] | None,
) -> str:
    if edit_members is not None:
        members = edit_members(members)
    data = compress(make_layer(members), outer)
    path = os.fspath(dest_file)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def write_oci_archive(
    dest_file: str | os.PathLike[str],
    entries: Sequence[EntryLike] | IndexSpec,
    *,
    outer: Compression = "none",
    mutate_blobs: Callable[[dict[str, bytes]], None] | None = None,
    layout: bytes | None = OCI_LAYOUT_BYTES,
    extra_files: Mapping[str, bytes] | None = None,
    edit_members: Callable[[list[Member]], list[Member]] | None = None,
) -> OciResult:
    """Write an OCI layout as a tar (``oci-archive``), compressed as a whole with ``outer``.

    Same options as ``write_oci_layout``; ``edit_members`` gets the outer tar's members (directory-walk
    order, as skopeo writes them) and returns the ones to write, e.g. reordered, duplicated or hostile.
    """
    files, builder, index, descriptors, blobs = _layout_files(
        entries, mutate_blobs=mutate_blobs, layout=layout, extra_files=extra_files
    )
    path = _write_archive(dest_file, tree_members(files), outer=outer, edit_members=edit_members)
    return OciResult(
        path,
        "oci-archive",
        index,
        descriptors,
        builder.images,
        builder.attestations,
        builder.indexes,
        blobs,
        files,
    )


@dataclass(frozen=True)
class DockerArchiveResult:
    """What ``write_docker_archive`` wrote: per image its tags, the archive paths of its config and
    layers, and the built facts (digests of the layer files as stored, diff_ids)."""

    path: str
    style: DockerStyle
    manifest_json: bytes
    images: list[BuiltImage]
    tags: list[list[str]]
    config_paths: list[str]
    layer_paths: list[list[str]]
    files: dict[str, bytes]
    symlinks: dict[str, str]

    @property
    def image(self) -> BuiltImage:
        return self.images[0]

    def reference(self, tag: str | None = None) -> str:
        """``docker-archive:FILE:NAME:TAG`` (or ``docker-archive:FILE`` without a tag)."""
        return f"docker-archive:{self.path}" + (f":{tag}" if tag else "")

    def reference_at(self, position: int) -> str:
        """``docker-archive:FILE:@N``: the N-th image of manifest.json."""
        return f"docker-archive:{self.path}:@{position}"


def split_tag(repo_tag: str) -> tuple[str, str]:
    """``name:tag`` -> (name, tag); a colon inside the registry host is not a tag separator."""
    name, colon, tag = repo_tag.rpartition(":")
    if not colon or "/" in tag or not name:
        return repo_tag, "latest"
    return name, tag


def docker_full_name(name: str) -> str:
    """Docker's normalised form: ``busybox`` -> ``docker.io/library/busybox``."""
    first, slash, _ = name.partition("/")
    if not slash:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def _legacy_ids(built: BuiltImage) -> list[str]:
    ids: list[str] = []
    parent = ""
    for position, diff_id in enumerate(built.diff_ids):
        seed = f"{parent}\n{diff_id}"
        if position == len(built.diff_ids) - 1:
            seed += f"\n{built.config_digest}"
        parent = hashlib.sha256(seed.encode()).hexdigest()
        ids.append(parent)
    return ids


def _legacy_json(built: BuiltImage, layer_id: str, parent: str | None, top: bool) -> bytes:
    spec = built.spec
    doc: Json = {"id": layer_id}
    if parent is not None:
        doc["parent"] = parent
    doc["created"] = spec.created if spec.created is not None and top else "1970-01-01T00:00:00Z"
    doc["container_config"] = {"Cmd": None}
    if top:
        doc["architecture"] = spec.architecture
        doc["config"] = spec.runtime_config()
    doc["os"] = spec.os
    return canonical_json(doc)


def write_docker_archive(
    dest_file: str | os.PathLike[str],
    images: Sequence[tuple[ImageSpec, Sequence[str]]],
    *,
    style: DockerStyle = "legacy",
    outer: Compression = "none",
    layer_compression: Compression | None = "none",
    mutate_files: Callable[[dict[str, bytes]], None] | None = None,
    edit_manifest_json: Callable[[list[Json]], None] | None = None,
    edit_members: Callable[[list[Member]], list[Member]] | None = None,
) -> DockerArchiveResult:
    """Write a ``docker save``-style tarball of ``images``, each with its ``name:tag`` list.

    ``style``: ``legacy`` (docker before 25: ``<id>/layer.tar``, ``<id>/json``, ``<id>/VERSION``,
    ``<config>.json``), ``skopeo`` (``<digest>.tar`` layers, with ``<id>/layer.tar`` symlinks to them,
    no directory entries) or ``docker25`` (an OCI layout with uncompressed layers plus manifest.json
    pointing into ``blobs/sha256``). Layers are stored with ``layer_compression`` (None: as each spec
    says). Faults in the specs apply (a missing layer blob leaves its file out). ``mutate_files`` gets
    the regular files by archive path before the tar is made; ``edit_manifest_json`` the manifest.json
    list; ``edit_members`` the final member list.
    """
    specs = [
        spec if layer_compression is None else spec.with_compression(layer_compression) for spec, _ in images
    ]
    built_images = [spec.build() for spec in specs]
    tag_lists = [list(tags) for _, tags in images]
    files: dict[str, bytes] = {}
    symlinks: dict[str, str] = {}
    manifest: list[Json] = []
    repositories: dict[str, dict[str, str]] = {}
    config_paths: list[str] = []
    layer_paths: list[list[str]] = []
    index_descriptors: list[Json] = []
    skopeo_order: list[str] = []

    for built, tags in zip(built_images, tag_lists, strict=True):
        ids = _legacy_ids(built)
        hexes = [digest.partition(":")[2] for digest in built.layer_digests]
        config_hex = built.config_digest.partition(":")[2]
        config_path = f"blobs/sha256/{config_hex}" if style == "docker25" else f"{config_hex}.json"
        if built.config_digest in built.blobs:
            files[config_path] = built.blobs[built.config_digest]
        paths: list[str] = []
        legacy_order: list[str] = []
        for position, (layer_id, layer_hex, digest) in enumerate(
            zip(ids, hexes, built.layer_digests, strict=True)
        ):
            parent = ids[position - 1] if position else None
            v1 = _legacy_json(built, layer_id, parent, position == len(ids) - 1)
            if style == "legacy":
                layer_path = f"{layer_id}/layer.tar"
            elif style == "skopeo":
                layer_path = f"{layer_hex}.tar"
                symlinks[f"{layer_id}/layer.tar"] = f"../{layer_hex}.tar"
                legacy_order.extend([f"{layer_id}/layer.tar", f"{layer_id}/VERSION", f"{layer_id}/json"])
            else:
                layer_path = f"blobs/sha256/{layer_hex}"
            if style == "docker25":
                files[blob_path(sha256_digest(v1))] = v1
            else:
                files[f"{layer_id}/VERSION"] = b"1.0"
                files[f"{layer_id}/json"] = v1
            blob = built.blobs.get(digest)
            if blob is not None:
                files[layer_path] = blob
            paths.append(layer_path)
        skopeo_order.extend([*paths, config_path, *legacy_order])
        item: Json = {"Config": config_path, "RepoTags": tags or None, "Layers": paths}
        foreign: Json = {}
        for diff_id, media_type, size, digest, layer in zip(
            built.diff_ids,
            built.layer_media_types,
            built.layer_sizes,
            built.layer_digests,
            built.spec.layer_specs(),
            strict=True,
        ):
            if layer.urls is not None:
                foreign[diff_id] = {
                    "mediaType": media_type,
                    "size": size,
                    "digest": digest,
                    "urls": list(layer.urls),
                }
        if foreign:
            item["LayerSources"] = foreign
        manifest.append(item)
        config_paths.append(config_path)
        layer_paths.append(paths)
        top_id = (hexes[-1] if style == "docker25" else ids[-1]) if ids else ""
        for tag in tags:
            name, tag_name = split_tag(tag)
            repositories.setdefault(name, {})[tag_name] = top_id
        if style == "docker25":
            if built.manifest_digest in built.blobs:
                files[blob_path(built.manifest_digest)] = built.blobs[built.manifest_digest]
            for tag in tags:
                name, tag_name = split_tag(tag)
                descriptor = built.descriptor()
                descriptor["annotations"] = {
                    CONTAINERD_IMAGE_NAME: f"{docker_full_name(name)}:{tag_name}",
                    REF_NAME: tag_name,
                }
                descriptor["platform"] = built.platform.to_json()
                index_descriptors.append(descriptor)

    if edit_manifest_json is not None:
        edit_manifest_json(manifest)
    newline = b"" if style == "skopeo" else b"\n"
    manifest_bytes = canonical_json(manifest) + newline
    files["manifest.json"] = manifest_bytes
    if repositories:
        files["repositories"] = canonical_json(repositories) + newline
    if style == "docker25":
        files["oci-layout"] = OCI_LAYOUT_BYTES
        files["index.json"] = canonical_json(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_descriptors}
        )
    if mutate_files is not None:
        mutate_files(files)

    if style == "skopeo":
        members: list[Member] = []
        seen: set[str] = set()
        for name in [*skopeo_order, *sorted(files)]:
            if name in seen:
                continue
            seen.add(name)
            if name in symlinks:
                members.append(Symlink(name, symlinks[name], mtime=0))
            elif name in files:
                members.append(File(name, files[name], mode=0o444, mtime=0))
        members.extend(
            Symlink(name, target, mtime=0) for name, target in symlinks.items() if name not in seen
        )
    else:
        members = tree_members(files)
    path = _write_archive(dest_file, members, outer=outer, edit_members=edit_members)
    return DockerArchiveResult(
        path, style, manifest_bytes, built_images, tag_lists, config_paths, layer_paths, files, symlinks
    )


__all__ = [
    "DEFAULT_CREATED",
    "DEFAULT_MTIME",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "MISSING",
    "OCI_INDEX",
    "OCI_LAYOUT_BYTES",
    "OCI_MANIFEST",
    "REF_NAME",
    "TAMPERED",
    "BlockDev",
    "BuiltImage",
    "BuiltIndex",
    "CharDev",
    "Compression",
    "Dir",
    "DockerArchiveResult",
    "Entry",
    "EntryLike",
    "ExactTarInfo",
    "Fault",
    "Fifo",
    "File",
    "Hardlink",
    "ImageSpec",
    "IndexSpec",
    "Layer",
    "LoopTo",
    "Member",
    "OciResult",
    "Opaque",
    "OverlayOpaque",
    "OverlayWhiteout",
    "Platform",
    "Raw",
    "RawBytes",
    "RawDescriptor",
    "Symlink",
    "Whiteout",
    "as_str",
    "blob_path",
    "canonical_json",
    "compress",
    "docker_full_name",
    "layer_media_type",
    "make_layer",
    "member_header",
    "place",
    "sha256_digest",
    "split_tag",
    "tamper",
    "tree_members",
    "write_docker_archive",
    "write_oci_archive",
    "write_oci_layout",
]
