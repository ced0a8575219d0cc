"""OCI image layouts, as a directory or as a tar archive: index.json, then manifests by digest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from imgtool.digest import Digest, read_verified
from imgtool.errors import AmbiguousImageError, ImageFormatError, ImageNotFoundError, MediaTypeError
from imgtool.image import Image
from imgtool.model import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Index,
    Platform,
    load_json,
    parse_index,
)
from imgtool.sources.build import build_image
from imgtool.sources.stores import BlobStore, blob_path

_MAX_INDEX_DEPTH: Final = 8
_ATTESTATION: Final = "attestation-manifest"


@dataclass(frozen=True, slots=True)
class Candidate:
    """An image manifest reachable from index.json, with the names that lead to it."""

    descriptor: Descriptor
    platform: Platform | None
    tags: tuple[str, ...]


def read_index(store: BlobStore) -> Index:
    what = f"{store.location}: index.json"
    with store.open("index.json") as raw:
        data = raw.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ImageFormatError(f"{what}: larger than {MAX_MANIFEST_BYTES} bytes")
    return parse_index(load_json(data, what), what)


def check_layout(store: BlobStore) -> None:
    what = f"{store.location}: oci-layout"
    with store.open("oci-layout") as raw:
        doc = load_json(raw.read(1 << 16), what)
    if not isinstance(doc, dict) or not isinstance(doc.get("imageLayoutVersion"), str):
        raise ImageFormatError(f"{what}: no imageLayoutVersion: not an OCI image layout")


def read_blob_json(store: BlobStore, desc: Descriptor, what: str, limit: int = MAX_MANIFEST_BYTES) -> bytes:
    path = blob_path(desc.digest)
    if not store.exists(path):
        raise ImageNotFoundError(f"{store.location}: {what} blob {desc.digest} is missing")
    with store.open(path) as raw:
        return read_verified(raw, desc.digest, desc.size, f"{what} {desc.digest}", limit)


def list_candidates(store: BlobStore) -> list[Candidate]:
    """Every image manifest in the layout, following nested indexes, attestations left out."""
    found: list[Candidate] = []
    for desc in read_index(store).manifests:
        tags = tuple(t for t in (desc.ref_name, desc.annotations.get("io.containerd.image.name")) if t)
        _expand(store, desc=desc, platform=desc.platform, tags=tags, found=found, seen=set(), depth=0)
    return found


def _expand(
    store: BlobStore,
    *,
    desc: Descriptor,
    platform: Platform | None,
    tags: tuple[str, ...],
    found: list[Candidate],
    seen: set[Digest],
    depth: int,
) -> None:
    if desc.annotations.get("vnd.docker.reference.type") == _ATTESTATION:
        return
    if desc.media_type in MANIFEST_TYPES:
        found.append(Candidate(desc, desc.platform or platform, tags))
    elif desc.media_type in INDEX_TYPES:
        if desc.digest in seen:
            raise ImageFormatError(f"{store.location}: image index {desc.digest} refers back to itself")
        if depth >= _MAX_INDEX_DEPTH:
            raise ImageFormatError(
                f"{store.location}: image indexes nested more than {_MAX_INDEX_DEPTH} deep"
            )
        data = read_blob_json(store, desc, "image index")
        what = f"{store.location}: image index {desc.digest}"
        index = parse_index(load_json(data, what), what)
        for child in index.manifests:
            _expand(
                store,
                desc=child,
                platform=child.platform or desc.platform,
                tags=tags,
                found=found,
                seen=seen | {desc.digest},
                depth=depth + 1,
            )


def describe(candidate: Candidate) -> str:
    label = ", ".join(candidate.tags) if candidate.tags else str(candidate.descriptor.digest)
    return f"{label} ({candidate.platform})" if candidate.platform else label


def choose(
    candidates: list[Candidate], selector: str | None, platform: Platform | None, location: str
) -> Candidate:
    """Pick the image: by ref name first, then by platform (the host's unless one is asked for)."""
    if selector is not None:
        named = [c for c in candidates if selector in c.tags]
        if not named:
            refs = sorted({t for c in candidates for t in c.tags})
            listing = ", ".join(refs) if refs else "none"
            raise ImageNotFoundError(f"{location}: no image named {selector!r}; refs present: {listing}")
        candidates = named
    if not candidates:
        raise ImageNotFoundError(f"{location}: the layout holds no image manifest")
    groups = {c.tags for c in candidates}
    if len(groups) > 1:
        listing = "; ".join(sorted(", ".join(g) or "(unnamed)" for g in groups))
        raise AmbiguousImageError(f"{location}: holds several images, name one of: {listing}")
    if len(candidates) == 1:
        only = candidates[0]
        if platform is not None and only.platform is not None and not platform.matches(only.platform):
            raise ImageNotFoundError(
                f"{location}: no image for platform {platform}; present: {only.platform}"
            )
        return only
    wanted = platform or Platform.host()
    if all(c.platform is None for c in candidates):
        listing = "; ".join(str(c.descriptor.digest) for c in candidates)
        raise AmbiguousImageError(f"{location}: holds several images without platforms: {listing}")
    matching = [c for c in candidates if c.platform is not None and wanted.matches(c.platform)]
    if not matching:
        present = ", ".join(sorted({str(c.platform) for c in candidates if c.platform}))
        raise ImageNotFoundError(f"{location}: no image for platform {wanted}; platforms present: {present}")
    exact = [c for c in matching if c.platform == wanted]
    best = exact or matching
    if len({c.descriptor.digest for c in best}) > 1:
        listing = ", ".join(sorted(str(c.descriptor.digest) for c in best))
        raise AmbiguousImageError(f"{location}: several images match, for platform {wanted}: {listing}")
    return best[0]


def open_layout(
    *, store: BlobStore, reference: str, transport: str, selector: str | None, platform: Platform | None
) -> Image:
    check_layout(store)
    chosen = choose(list_candidates(store), selector, platform, store.location)
    desc = chosen.descriptor
    if desc.media_type not in MANIFEST_TYPES:
        raise MediaTypeError(f"{store.location}: unsupported manifest media type {desc.media_type!r}")
    manifest_bytes = read_blob_json(store, desc, "manifest")

    return build_image(
        store=store,
        reference=reference,
        transport=transport,
        manifest_digest=desc.digest,
        manifest_media_type=desc.media_type,
        manifest_bytes=manifest_bytes,
        tags=list(chosen.tags),
    )
