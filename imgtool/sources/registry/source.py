"""An image in a registry as a source: the manifest a tag or digest leads to (an image index chosen
from by platform, as a layout's is), blobs streamed by digest."""

from __future__ import annotations

import dataclasses
import io
from typing import Any, Final

from imgtool.errors import DigestMismatchError, ImageFormatError, MediaTypeError
from imgtool.image.destination import StoredManifest
from imgtool.image.digest import Digest, read_verified
from imgtool.image.mediatypes import FOREIGN_LAYER_TYPES, INDEX_TYPES, MANIFEST_TYPES
from imgtool.image.model import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    IndexEntry,
    IndexInfo,
    load_json,
    media_type_by_fields,
    media_type_of,
    parse_index,
    parse_manifest,
)
from imgtool.image.platform import Platform
from imgtool.image.readable import RawStream
from imgtool.sources.core import Resolved
from imgtool.sources.oci_layout import MAX_INDEX_DEPTH, Candidate, choose
from imgtool.sources.reference import DOCKER, DockerName
from imgtool.sources.registry.blobcache import BlobCache
from imgtool.sources.registry.client import Client
from imgtool.sources.registry.transfer import BlobStream

# Every type imgtool reads; a registry answers 404 to a request that leaves out the OCI ones.
ACCEPT: Final = ", ".join(sorted(MANIFEST_TYPES | INDEX_TYPES))


class RegistrySource:
    """The core of one repository of a registry, for the image ``name`` names."""

    transport = DOCKER
    remote = True  # blobs are fetched: a layer is not opened only to sniff its first bytes

    def __init__(
        self, name: DockerName, client: Client, location: str, cache: BlobCache | None = None
    ) -> None:
        self.name = name
        self.location = location
        self._client = client
        self._cache = cache
        self._foreign: set[Digest] = set()  # the chosen manifest's non-distributable layers
        self._sizes: dict[Digest, int] = {}  # the chosen manifest's blobs: what the cache holds them to

    def resolve(self, selector: str | None, platform: Platform | None) -> Resolved:
        name = self.name
        data, media_type = self._manifest(name.reference, name.digest, None)
        digest = name.digest or Digest.of_bytes(data)
        tags = (name.tag,) if name.tag else ()
        if media_type in MANIFEST_TYPES:
            resolved = Resolved(data, media_type, digest, tags)
        else:
            resolved = self._from_index(data, media_type, digest, tags=tags, platform=platform, depth=0)
            resolved = dataclasses.replace(resolved, index_bytes=data)
        what = f"{self.location}: manifest"
        manifest = parse_manifest(load_json(resolved.manifest_bytes, what), what)
        self._foreign = {d.digest for d in manifest.layers if d.media_type in FOREIGN_LAYER_TYPES}
        self._sizes = {d.digest: d.size for d in (manifest.config, *manifest.layers)}
        return resolved

    def _from_index(
        self,
        data: bytes,
        media_type: str,
        digest: Digest,
        *,
        tags: tuple[str, ...],
        platform: Platform | None,
        depth: int,
    ) -> Resolved:
        what = f"{self.location}: image index {digest}"
        index = parse_index(load_json(data, what), what)
        images = [d for d in index.manifests if not d.is_attestation]
        candidates = [Candidate(d, d.platform, (), d.media_type) for d in images]
        chosen = choose(candidates, None, platform, self.location).descriptor
        child, child_type = self._manifest(str(chosen.digest), chosen.digest, chosen)
        if child_type in INDEX_TYPES:
            if depth + 1 >= MAX_INDEX_DEPTH:
                raise ImageFormatError(
                    f"{self.location}: image indexes nested more than {MAX_INDEX_DEPTH} deep"
                )
            return self._from_index(
                child,
                child_type,
                chosen.digest,
                tags=tags,
                platform=platform or chosen.platform,
                depth=depth + 1,
            )
        entries = tuple(IndexEntry.of(d, d is chosen) for d in index.manifests)
        return Resolved(child, child_type, chosen.digest, tags, IndexInfo(digest, media_type, entries))

    def _manifest(self, reference: str, digest: Digest | None, desc: Descriptor | None) -> tuple[bytes, str]:
        """The manifest or index ``reference`` names, its bytes checked against ``digest`` (the
        user's or the index's: ``Docker-Content-Digest`` is only advisory), and its media type."""
        what = f"manifest {reference}"
        body, header_type = self._client.get_small(
            f"manifests/{reference}", {"Accept": ACCEPT}, MAX_MANIFEST_BYTES, what
        )
        if len(body) > MAX_MANIFEST_BYTES:
            raise ImageFormatError(
                f"{self.location}: {what}: larger than the {MAX_MANIFEST_BYTES}-byte limit"
            )
        data = body
        if digest is not None:
            size = desc.size if desc is not None else None
            try:
                data = read_verified(
                    io.BytesIO(body), digest, size, f"{self.location}: {what}", MAX_MANIFEST_BYTES
                )
            except DigestMismatchError as exc:
                if exc.actual is None:
                    raise
                raise DigestMismatchError(
                    f"{self.location}: {what}: the registry sent a manifest of another digest, {exc.actual}",
                    actual=exc.actual,
                ) from None
        doc = load_json(data, f"{self.location}: {what}")
        return data, _media_type(doc, header_type, desc, f"{self.location}: {what}")

    def names(self) -> list[str]:
        return []  # completion never reaches the network

    def top_manifest(self, selector: str | None) -> StoredManifest:
        """The manifest or index the tag or digest names, as the registry stores it."""
        data, media_type = self._manifest(self.name.reference, self.name.digest, None)
        return StoredManifest(data, media_type, self.name.digest or Digest.of_bytes(data))

    def child_manifest(self, desc: Descriptor) -> StoredManifest:
        data, media_type = self._manifest(str(desc.digest), desc.digest, desc)
        return StoredManifest(data, media_type, desc.digest)

    def open_blob(self, digest: Digest) -> RawStream:
        """The blob from the cache when it holds it (checked), else fetched (and kept there)."""
        if self._cache is None:
            return BlobStream(self._client, digest)
        size = self._sizes.get(digest)
        cached = self._cache.open(digest, size)
        if cached is not None:
            return cached
        return self._cache.caching(BlobStream(self._client, digest), digest, size)

    def has_blob(self, digest: Digest) -> bool:
        """A registry holds the blobs its manifests list (one missing is an error when read), but a
        non-distributable layer's only where someone pushed it anyway: that is asked (HEAD)."""
        return digest not in self._foreign or self._client.has(f"blobs/{digest}")

    def blob_size(self, digest: Digest) -> int | None:
        return None

    def close(self) -> None:
        self._client.close()


def _media_type(doc: Any, header: str, desc: Descriptor | None, what: str) -> str:
    """The document's own media type, else the response's, else the descriptor's, else what its
    fields show; a type imgtool does not read is refused here (a schema 1 manifest, an artifact)."""
    own = media_type_of(doc) if isinstance(doc, dict) else None
    for candidate in (own, header, desc.media_type if desc else None):
        if candidate in MANIFEST_TYPES or candidate in INDEX_TYPES:
            return candidate
    implied = media_type_by_fields(doc)
    if implied is not None:
        return implied
    shown = own or header or "none"
    raise MediaTypeError(f"{what}: not an image manifest or index (media type {shown!r})")
