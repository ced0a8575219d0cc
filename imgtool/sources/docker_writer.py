"""``docker-archive:FILE[:NAME:TAG]`` as a copy's destination: a ``docker save`` tarball.

What ``docker save`` (before Docker 25) and skopeo write, and ``docker load`` reads: every layer
uncompressed as ``<diff_id>.tar``, the config as ``<digest>.json``, ``manifest.json`` listing them
(with NAME:TAG in ``RepoTags``), the legacy per-layer directories (``<id>/VERSION``, ``<id>/json``,
``<id>/layer.tar`` a symlink to the layer) and ``repositories`` naming the top one. Layers are
stored uncompressed, as ``docker save`` stores them: so the archive's manifest (the one skopeo
and imgtool derive from it: each layer by its diff_id) is not the source's, and neither is its
digest, unless the source's layers were uncompressed already. :meth:`put_manifest` decompresses
each layer, checks it against the diff_id the config gives it, and returns that manifest.

An archive holds images, not image indexes (``--all-platforms`` of an index is refused), and
every layer's bytes (a non-distributable layer the source does not hold is refused).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass
from typing import Any, Final

from imgtool.errors import ImageFormatError, OutputError, UsageError
from imgtool.image.compression import CHUNK, open_decompressed
from imgtool.image.destination import StoredManifest
from imgtool.image.digest import Digest
from imgtool.image.mediatypes import DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, INDEX_TYPES
from imgtool.image.model import MAX_CONFIG_BYTES, load_json, parse_config, parse_manifest
from imgtool.sources.archive_writer import StagedArchive, add_bytes, add_file, member
from imgtool.sources.reference import parse_docker_name
from imgtool.system.staging import no_space

# The attributes of the image config the top legacy layer's json carries (as docker and skopeo).
_LEGACY_ATTRIBUTES: Final = (
    "architecture", "config", "container", "container_config", "created", "docker_version", "os",
)  # fmt: skip


def parse_repo_tag(text: str | None, location: str) -> tuple[str, str] | None:
    """``NAME[:TAG]`` as (NAME, TAG), ``latest`` if no tag is given; checked as a ``docker://``
    name is. A digest is refused: an archive names its images by tag."""
    if not text:
        return None
    if text.startswith("@"):
        raise UsageError(f"{location}: @N names an image to read; name the image to write NAME:TAG")
    try:
        parsed = parse_docker_name(text)
    except UsageError as exc:
        raise UsageError(f"{location}: {str(exc).removeprefix(f'docker://{text}: ')}") from None
    if parsed.digest is not None:
        raise UsageError(f"{location}: a docker-archive names its image by NAME:TAG, not by digest")
    if ":" in text.rpartition("/")[2]:
        name, _, tag = text.rpartition(":")
        return name, tag
    return text, "latest"


@dataclass(frozen=True, slots=True)
class _Layer:
    diff_id: Digest
    size: int  # uncompressed
    staged: str  # the uncompressed tar in the staging directory


class DockerArchiveDestination(StagedArchive):
    """Writes one image to FILE, tagged NAME:TAG when given (else untagged, as ``docker save IMAGE-ID``)."""

    holds_indexes = False

    def __init__(self, path: str, repo_tag: str | None, location: str) -> None:
        self._tag = parse_repo_tag(repo_tag, location)
        super().__init__(path, None, location)
        self._config: tuple[Digest, bytes] | None = None
        self._layers: list[_Layer] = []

    def put_child(self, data: bytes, media_type: str, digest: Digest) -> None:
        raise UsageError(
            f"{self.location}: a docker-archive holds images, not an image index; "
            "copy one platform (without --all-platforms)"
        )

    def put_manifest(self, data: bytes, media_type: str, digest: Digest) -> StoredManifest:
        """Every layer decompressed and checked against its diff_id; the manifest the archive
        will have (that ``imgtool inspect`` and ``skopeo inspect`` of it give)."""
        if media_type in INDEX_TYPES:
            self.put_child(data, media_type, digest)
        what = f"{self.location}: manifest {digest}"
        manifest = parse_manifest(load_json(data, what), what)
        config = self._staged_config(manifest.config.digest)
        where = f"{self.location}: config {manifest.config.digest}"
        diff_ids = parse_config(load_json(config, where, MAX_CONFIG_BYTES), where).diff_ids
        if len(diff_ids) != len(manifest.layers):
            raise ImageFormatError(
                f"{what}: lists {len(manifest.layers)} layers but the config has {len(diff_ids)} diff_ids"
            )
        done: dict[Digest, _Layer] = {}
        for i, (desc, diff_id) in enumerate(zip(manifest.layers, diff_ids, strict=True)):
            if desc.digest not in done:
                done[desc.digest] = self._uncompress(i, desc.digest, desc.size, diff_id)
            elif done[desc.digest].diff_id != diff_id:
                raise ImageFormatError(
                    f"{what}: layer {i} ({desc.digest}) is given two diff_ids: "
                    f"{done[desc.digest].diff_id} and {diff_id}"
                )
            self._layers.append(done[desc.digest])
        self._config = manifest.config.digest, config
        archived = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG,
                "size": len(config),
                "digest": str(manifest.config.digest),
            },
            "layers": [
                {"mediaType": DOCKER_LAYER_GZIP, "size": layer.size, "digest": str(layer.diff_id)}
                for layer in self._layers
            ],
        }
        text = json.dumps(archived, separators=(",", ":")).encode()
        return StoredManifest(text, DOCKER_MANIFEST, Digest.of_bytes(text))

    def _staged_config(self, digest: Digest) -> bytes:
        path = self.layout.blob_path(digest)
        with open(path, "rb") as f:
            return f.read(MAX_CONFIG_BYTES + 1)

    def _uncompress(self, index: int, digest: Digest, size: int, diff_id: Digest) -> _Layer:
        what = f"{self.location}: layer {index} ({digest})"
        path = self.layout.blob_path(digest)
        if not self.layout.has_blob(digest, size):
            raise UsageError(
                f"{what}: is non-distributable and not in the source; a docker-archive holds every layer"
            )
        if diff_id.algorithm != "sha256":
            raise ImageFormatError(f"{what}: its diff_id {diff_id} is not a sha256 (docker load needs one)")
        staged = self.staging_path(f"layer-{index}.tar")
        hasher = hashlib.sha256()
        total = 0
        try:
            with open(path, "rb") as raw, open(staged, "xb") as out:
                _, stream = open_decompressed(raw, what)
                while data := stream.read(CHUNK):
                    hasher.update(data)
                    total += len(data)
                    out.write(data)
        except OSError as exc:
            full = no_space(exc, os.path.dirname(staged), f"uncompressing {what}", "free some space there")
            raise (full or OutputError(f"{staged}: cannot be written: {exc.strerror}")) from exc
        if hasher.hexdigest() != diff_id.hex:
            raise ImageFormatError(
                f"{what}: uncompressed it is sha256:{hasher.hexdigest()}, not the diff_id "
                f"{diff_id} the config gives it"
            )
        return _Layer(diff_id, total, staged)

    def commit(self) -> None:
        assert self._config is not None
        config_digest, config = self._config
        config_name = f"{config_digest.hex}.json"
        legacy = _legacy_layers(self._layers, config)
        entry: dict[str, Any] = {
            "Config": config_name,
            "RepoTags": [f"{self._tag[0]}:{self._tag[1]}"] if self._tag else [],
            "Layers": [f"{layer.diff_id.hex}.tar" for layer in self._layers],
        }
        repositories: dict[str, dict[str, str]] = {}
        if self._tag and legacy:
            repositories[self._tag[0]] = {self._tag[1]: legacy[-1][0]}

        def members(tar: tarfile.TarFile) -> None:
            written: set[Digest] = set()  # a layer listed twice is stored once
            for layer in self._layers:
                if layer.diff_id not in written:
                    add_file(tar, f"{layer.diff_id.hex}.tar", layer.staged)
                    written.add(layer.diff_id)
            add_bytes(tar, config_name, config)
            for (layer_id, layer_json), layer in zip(legacy, self._layers, strict=True):
                tar.addfile(member(layer_id, kind=tarfile.DIRTYPE))
                add_bytes(tar, f"{layer_id}/VERSION", b"1.0")
                add_bytes(tar, f"{layer_id}/json", layer_json)
                link = f"../{layer.diff_id.hex}.tar"
                tar.addfile(member(f"{layer_id}/layer.tar", kind=tarfile.SYMTYPE, link=link))
            add_bytes(tar, "manifest.json", json.dumps([entry], separators=(",", ":")).encode())
            add_bytes(tar, "repositories", json.dumps(repositories, separators=(",", ":")).encode())

        self.write_archive(members)


def _legacy_layers(layers: list[_Layer], config: bytes) -> list[tuple[str, bytes]]:
    """The legacy (v1) id and ``json`` of each layer, bottom first: each id the sha256 of the
    chain of diff_ids up to it (as docker's chain ids are made) and of the parent's id, so that
    each is unique to its place in this image; the top one carries the image's attributes."""
    doc = json.loads(config)
    attributes = {k: doc.get(k) for k in _LEGACY_ATTRIBUTES if k in doc} if isinstance(doc, dict) else {}
    found: list[tuple[str, bytes]] = []
    chain = ""
    parent = ""
    for i, layer in enumerate(layers):
        chain = str(layer.diff_id) if not chain else str(Digest.of_bytes(f"{chain} {layer.diff_id}".encode()))
        layer_id = hashlib.sha256(f"{parent} {chain}".encode()).hexdigest()
        body: dict[str, Any] = {"id": layer_id}
        if parent:
            body["parent"] = parent
        if i == len(layers) - 1:
            body.update(attributes)
        found.append((layer_id, json.dumps(body, separators=(",", ":")).encode()))
        parent = layer_id
    return found
