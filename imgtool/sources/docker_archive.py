"""``docker save`` tarballs: the legacy layout (``<id>/layer.tar``) and Docker 25+ (an OCI layout inside).

Both list their images in ``manifest.json``. Where the archive also holds an OCI
index with the image's real manifest, that manifest is used; otherwise a Docker
v2 schema 2 manifest is synthesized byte for byte as skopeo does, so the
manifest digest imgtool reports is the one ``skopeo inspect`` reports.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from imgtool.errors import (
    AmbiguousImageError,
    DigestMismatchError,
    ImageFormatError,
    ImageNotFoundError,
    LayerError,
    MediaTypeError,
    UsageError,
)
from imgtool.image.compression import CHUNK, Compression, open_decompressed, sniff
from imgtool.image.digest import Digest
from imgtool.image.mediatypes import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_MANIFEST
from imgtool.image.model import (
    MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    load_json,
    parse_config,
    parse_descriptor,
    parse_manifest,
)
from imgtool.image.platform import Platform
from imgtool.image.readable import RawStream
from imgtool.sources import oci_layout
from imgtool.sources.core import Resolved, open_tar
from imgtool.sources.reference import DOCKER_ARCHIVE, Reference
from imgtool.sources.stores import TarStore

_DIGEST_NAME: Final = re.compile(
    r"(?:^|/)(?:blobs/(sha256|sha512)/)?([0-9a-f]{64}|[0-9a-f]{128})(?:\.json|\.tar)?$"
)
# skopeo labels the uncompressed layer files of a docker-archive tar.gzip; imgtool does the
# same so that the synthesized manifest, and its digest, are skopeo's.
_LAYER_TYPES: Final = {
    Compression.NONE: DOCKER_LAYER_GZIP,
    Compression.GZIP: DOCKER_LAYER_GZIP,
    Compression.ZSTD: "application/vnd.docker.image.rootfs.diff.tar.zstd",
}


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One image of ``manifest.json``."""

    position: int
    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]
    layer_sources: dict[str, Any]


def normalize_tag(name: str) -> str:
    """Docker's short names: ``busybox:1`` is ``docker.io/library/busybox:1``; no tag means ``latest``."""
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        name += ":latest"
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        if not rest:
            return f"docker.io/library/{name}"
        return f"docker.io/{name}"
    return name


def read_entries(store: TarStore) -> list[ArchiveEntry]:
    what = f"{store.location}: manifest.json"
    with store.open("manifest.json") as raw:
        data = raw.read(MAX_MANIFEST_BYTES + 1)
    doc = load_json(data, what, MAX_MANIFEST_BYTES)
    if not isinstance(doc, list):
        raise ImageFormatError(f"{what}: expected a list of images")
    entries = []
    for i, item in enumerate(doc):
        where = f"{what}[{i}]"
        if not isinstance(item, dict):
            raise ImageFormatError(f"{where}: expected an object")
        config, tags, layers = item.get("Config"), item.get("RepoTags") or [], item.get("Layers")
        if not isinstance(config, str):
            raise ImageFormatError(f"{where}: field 'Config' must be a string")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ImageFormatError(f"{where}: field 'RepoTags' must be a list of strings")
        if not isinstance(layers, list) or not all(isinstance(p, str) for p in layers):
            raise ImageFormatError(f"{where}: field 'Layers' must be a list of strings")
        sources = item.get("LayerSources") or {}
        if not isinstance(sources, dict):
            raise ImageFormatError(f"{where}: field 'LayerSources' must be an object")
        entries.append(ArchiveEntry(i, config, tuple(tags), tuple(layers), sources))
    if not entries:
        raise ImageNotFoundError(f"{what}: the archive holds no image")
    return entries


def describe(entry: ArchiveEntry) -> str:
    return oci_layout.some(list(entry.repo_tags)) if entry.repo_tags else f"@{entry.position}"


def choose(entries: list[ArchiveEntry], selector: str | None, location: str) -> ArchiveEntry:
    if selector is None:
        if len(entries) == 1:
            return entries[0]
        shown = [f"@{e.position}" + (f" {describe(e)}" if e.repo_tags else "") for e in entries[:5]]
        listing = "; ".join(shown) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise AmbiguousImageError(f"{location}: holds {len(entries)} images, name one of: {listing}")
    if selector.startswith("@"):
        try:
            position = int(selector[1:])
        except ValueError:
            raise UsageError(f"invalid image position {selector!r}: expected @N") from None
        if not 0 <= position < len(entries):
            raise ImageNotFoundError(f"{location}: no image @{position}; the archive holds {len(entries)}")
        return entries[position]
    wanted = normalize_tag(selector)
    for entry in entries:
        if wanted in (normalize_tag(t) for t in entry.repo_tags):
            return entry
    tags = sorted({t for e in entries for t in e.repo_tags})
    raise ImageNotFoundError(
        f"{location}: no image tagged {selector!r}; tags present: {oci_layout.some(tags) if tags else 'none'}"
    )


def _digest_in_name(path: str) -> Digest | None:
    match = _DIGEST_NAME.search(path)
    if match is None:
        return None
    return Digest(match.group(1) or "sha256", match.group(2))


def _read_config(store: TarStore, path: str) -> tuple[bytes, Digest]:
    if not store.exists(path):
        raise ImageNotFoundError(f"{store.location}: config {path} is missing from the archive")
    with store.open(path) as raw:
        data = raw.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        what = f"{store.location}: config {path}"
        raise ImageFormatError(f"{what}: larger than the {MAX_CONFIG_BYTES}-byte limit for this document")
    named = _digest_in_name(path)
    actual = Digest.of_bytes(data, named.algorithm if named else "sha256")
    if named is not None and named != actual:
        raise DigestMismatchError(
            f"{store.location}: config {path}: digest mismatch: expected {named}, got {actual}"
        )
    return data, actual


@dataclass(frozen=True, slots=True)
class _LayerFile:
    """A layer file of the archive, as stored."""

    path: str
    blob: Descriptor
    compressed: bool


def _layer_file(store: TarStore, path: str, diff_id: Digest) -> _LayerFile:
    """The blob a layer file is: its own digest (its diff_id if uncompressed), size and compression."""
    size = store.size(path)
    facts = store.streamed_facts(path)  # a compressed archive: known without reading it again
    if facts is not None:
        kind = facts.compression
    else:
        with store.open(path) as raw:
            kind = sniff(raw.read(6))
    media_type = _LAYER_TYPES.get(kind, DOCKER_LAYER)
    if kind is Compression.NONE:
        return _LayerFile(path, Descriptor(media_type, diff_id, size), compressed=False)
    if facts is not None:
        return _LayerFile(path, Descriptor(media_type, Digest("sha256", facts.sha256), size), compressed=True)
    hasher = hashlib.sha256()
    with store.open(path) as raw:
        while chunk := raw.read(CHUNK):
            hasher.update(chunk)
    return _LayerFile(
        path, Descriptor(media_type, Digest("sha256", hasher.hexdigest()), size), compressed=True
    )


def _skopeo_layer(store: TarStore, layer: _LayerFile, diff_id: Digest, count: bool) -> dict[str, Any]:
    """skopeo's descriptor of a layer file (containers/image ``docker/internal/tarfile``).

    skopeo names every layer by its diff_id, with its uncompressed size and the media type
    tar.gzip, whatever the file holds; so a compressed file (kaniko writes gzip) is decompressed
    to count its size, as skopeo counts it, when ``count``. Where it cannot be (a compression
    imgtool does not read, a broken stream: skopeo fails there), or without ``count``, the file
    is described as it is stored.
    """
    if not layer.compressed:
        return {"mediaType": DOCKER_LAYER_GZIP, "size": layer.blob.size, "digest": str(diff_id)}
    as_stored = {
        "mediaType": layer.blob.media_type,
        "size": layer.blob.size,
        "digest": str(layer.blob.digest),
    }
    if not count:
        return as_stored
    facts = store.streamed_facts(layer.path)
    if facts is not None:  # counted when the archive was read
        if facts.unpacked_size is None:
            return as_stored
        return {"mediaType": DOCKER_LAYER_GZIP, "size": facts.unpacked_size, "digest": str(diff_id)}
    try:
        with store.open(layer.path) as raw:
            _, stream = open_decompressed(raw, f"{store.location}: layer {layer.path}")
            size = 0
            while chunk := stream.read(CHUNK):
                size += len(chunk)
    except (MediaTypeError, LayerError):
        return as_stored
    return {"mediaType": DOCKER_LAYER_GZIP, "size": size, "digest": str(diff_id)}


def _find_oci_manifest(store: TarStore, config_digest: Digest) -> tuple[oci_layout.Candidate, bytes] | None:
    """Docker 25+ archives carry the real manifest in an OCI index; find the one for this config."""
    if not (store.exists("index.json") and store.exists("oci-layout")):
        return None
    for candidate in oci_layout.list_candidates(store):
        data = oci_layout.read_blob_json(store, candidate.descriptor, "manifest")
        doc = load_json(data, f"{store.location}: manifest {candidate.descriptor.digest}")
        config = doc.get("config") if isinstance(doc, dict) else None
        if isinstance(config, dict) and config.get("digest") == str(config_digest):
            return candidate, data
    return None


class DockerArchive:
    """The core of a ``docker save`` archive: its "blobs" are members named in manifest.json.

    The config is found by its digest (its sha256, or the sha512 its name gives), a layer file by
    the digest the manifest gives it: its diff_id if uncompressed, else the sha256 of the file;
    in a Docker 25+ archive, the digests of the archive's own OCI manifest.
    """

    transport = DOCKER_ARCHIVE

    def __init__(self, store: TarStore) -> None:
        self.location = store.location
        self._store = store
        self._members: dict[Digest, str] = {}  # filled by resolve: the blobs of the chosen image

    def names(self) -> list[str]:
        names: list[str] = []
        for entry in read_entries(self._store):
            names.extend(entry.repo_tags)
            names.append(f"@{entry.position}")
        return names

    def resolve(self, selector: str | None, platform: Platform | None) -> Resolved:
        return self.resolve_entry(choose(self.entries(), selector, self.location))

    def entries(self) -> list[ArchiveEntry]:
        """The images of manifest.json (:func:`read_entries`)."""
        return read_entries(self._store)

    def resolve_entry(self, entry: ArchiveEntry) -> Resolved:
        """The manifest of ``entry``, one of :meth:`entries`."""
        store = self._store
        config_bytes, config_digest = _read_config(store, entry.config)
        what = f"{store.location}: config {config_digest}"
        diff_ids = parse_config(load_json(config_bytes, what, MAX_CONFIG_BYTES), what).diff_ids
        if len(diff_ids) != len(entry.layers):
            raise ImageFormatError(
                f"{store.location}: manifest.json lists {len(entry.layers)} layers "
                f"but the config has {len(diff_ids)} diff_ids"
            )
        members = {config_digest: entry.config}
        found = _find_oci_manifest(store, config_digest)
        if found is not None:
            candidate, manifest_bytes = found
            what = f"{store.location}: manifest"
            layers = parse_manifest(load_json(manifest_bytes, what), what).layers
            for desc, path in zip(layers, entry.layers, strict=False):  # build checks the count
                if store.exists(path):
                    members.setdefault(desc.digest, path)
            self._members = members
            digest = candidate.descriptor.digest
            return Resolved(manifest_bytes, candidate.media_type, digest, entry.repo_tags)
        files: list[_LayerFile | dict[str, Any]] = []
        for path, diff_id in zip(entry.layers, diff_ids, strict=True):
            if store.exists(path):
                layer = _layer_file(store, path, diff_id)
                files.append(layer)
                members.setdefault(layer.blob.digest, path)
            elif str(diff_id) in entry.layer_sources:
                files.append(entry.layer_sources[str(diff_id)])
            else:
                raise ImageNotFoundError(f"{store.location}: layer {path} is missing from the archive")
        for i, item in enumerate(files):  # a LayerSources descriptor must be one
            if not isinstance(item, _LayerFile):
                parse_descriptor(item, f"{store.location}: manifest.json[{i}] LayerSources")

        def synthesize(count: bool) -> bytes:
            layers = [
                _skopeo_layer(store, item, diff_id, count) if isinstance(item, _LayerFile) else item
                for item, diff_id in zip(files, diff_ids, strict=True)
            ]
            manifest = {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": {
                    "mediaType": DOCKER_CONFIG,
                    "size": len(config_bytes),
                    "digest": str(config_digest),
                },
                "layers": layers,
            }
            return json.dumps(manifest, separators=(",", ":")).encode()

        derive: Callable[[], bytes] | None = None
        if any(isinstance(item, _LayerFile) and item.compressed for item in files):
            derive = lambda: synthesize(count=True)  # noqa: E731 - reads every compressed layer
        self._members = members
        return Resolved(synthesize(count=False), DOCKER_MANIFEST, None, entry.repo_tags, None, derive)

    def _member(self, digest: Digest) -> str:
        path = self._members.get(digest)
        if path is None:
            raise ImageNotFoundError(f"{self.location}: blob {digest} is not in the archive")
        return path

    def open_blob(self, digest: Digest) -> RawStream:
        return self._store.open(self._member(digest))

    def has_blob(self, digest: Digest) -> bool:
        return digest in self._members

    def blob_size(self, digest: Digest) -> int | None:
        return self._store.size(self._member(digest)) if digest in self._members else None

    def close(self) -> None:
        self._store.close()


def open_archive(ref: Reference) -> DockerArchive:
    """``docker-archive:PATH``: a ``docker save`` tarball."""
    tar = open_tar(ref)
    if not tar.exists("manifest.json"):
        tar.close()
        raise ImageFormatError(f"{ref.path}: not a docker-save archive (no manifest.json)")
    return DockerArchive(tar)
