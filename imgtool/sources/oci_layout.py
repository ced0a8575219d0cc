"""OCI image layouts, as a directory or as a tar archive: index.json, then manifests by digest."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from imgtool.errors import (
    AmbiguousImageError,
    ImageFormatError,
    ImageNotFoundError,
    ImgtoolError,
    MediaTypeError,
)
from imgtool.image.destination import StoredManifest
from imgtool.image.digest import Digest, read_verified
from imgtool.image.mediatypes import INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX
from imgtool.image.model import (
    MAX_MANIFEST_BYTES,
    MAX_SMALL_JSON_BYTES,
    Descriptor,
    Index,
    IndexEntry,
    IndexInfo,
    load_json,
    media_type_by_fields,
    media_type_of,
    parse_descriptor,
    parse_index,
)
from imgtool.image.platform import Platform
from imgtool.image.readable import BlobStore, RawStream
from imgtool.sources.core import Resolved, open_tar
from imgtool.sources.reference import OCI, OCI_ARCHIVE, Reference, require_exists
from imgtool.sources.stores import DirStore

MAX_INDEX_DEPTH: Final = 8  # image indexes nested in one another below index.json
MAX_DESCRIPTORS: Final = 4096  # descriptors in index.json and every distinct index it leads to, together
MAX_VISITS: Final = 4 * MAX_DESCRIPTORS  # index entries followed, counting an index reached again anew
_HEX: Final = {"sha256": re.compile(r"[0-9a-f]{64}"), "sha512": re.compile(r"[0-9a-f]{128}")}


@dataclass(frozen=True, slots=True)
class Candidate:
    """An image manifest reachable from index.json, with the names that lead to it.

    ``media_type`` is the manifest's own (the descriptor's, or the blob's where the descriptor
    gives a type that is neither a manifest nor an index); ``parent`` is the innermost image index
    that lists it (None: index.json itself), ``siblings`` every entry of that index, and ``top``
    the entry of index.json it was reached from.
    """

    descriptor: Descriptor
    platform: Platform | None
    tags: tuple[str, ...]
    media_type: str = ""
    parent: Descriptor | None = None
    siblings: tuple[Descriptor, ...] = ()
    top: Descriptor | None = None


@dataclass(frozen=True, slots=True)
class Unusable:
    """A descriptor that leads to no image manifest, and why (for messages that name it)."""

    descriptor: Descriptor
    tags: tuple[str, ...]
    reason: str


@dataclass(slots=True)
class Listing:
    candidates: list[Candidate]
    unusable: list[Unusable]
    media_type: str = OCI_INDEX  # index.json's


def some(items: list[str], limit: int = 5) -> str:
    """At most ``limit`` items, then how many more: error messages stay one short line."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def blob_path(digest: Digest) -> str:
    """Where a layout keeps a blob: built only from a well-formed digest, whoever constructed it."""
    pattern = _HEX.get(digest.algorithm)
    if pattern is None or pattern.fullmatch(digest.hex) is None:
        raise ImageFormatError(f"not a valid sha256/sha512 digest: {str(digest)!r}")
    return f"blobs/{digest.algorithm}/{digest.hex}"


def read_index(store: BlobStore) -> Index:
    what = f"{store.location}: index.json"
    with store.open("index.json") as raw:
        data = raw.read(MAX_MANIFEST_BYTES + 1)
    return parse_index(load_json(data, what, MAX_MANIFEST_BYTES), what)


def check_layout(store: BlobStore) -> None:
    what = f"{store.location}: oci-layout"
    with store.open("oci-layout") as raw:
        doc = load_json(raw.read(MAX_SMALL_JSON_BYTES + 1), what, MAX_SMALL_JSON_BYTES)
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
    return list_layout(store).candidates


def list_layout(store: BlobStore) -> Listing:
    """Every image manifest in the layout and every descriptor that leads to none.

    Each distinct index is read once however often it is listed, and the descriptors of
    index.json and of all the indexes together are bounded (``MAX_DESCRIPTORS``), as is the
    nesting (``MAX_INDEX_DEPTH``).
    """
    walker = _Walker(store)
    index = read_index(store)
    listing = Listing([], [], index.media_type)
    top = index.manifests
    walker.count(len(top), "index.json")
    for desc in top:
        tags = tuple(t for t in (desc.ref_name, desc.annotations.get("io.containerd.image.name")) if t)
        seen: set[tuple[Digest, Platform | None]] = set()
        for leaf in walker.expand(desc, platform=desc.platform, parent=None, siblings=(), depth=0, path=()):
            if isinstance(leaf, Unusable):
                listing.unusable.append(Unusable(leaf.descriptor, tags, leaf.reason))
                continue
            key = (leaf.descriptor.digest, leaf.platform)
            if key not in seen:
                seen.add(key)
                listing.candidates.append(dataclasses.replace(leaf, tags=tags, top=desc))
    return listing


def _distinct(descriptors: Sequence[Descriptor]) -> list[Descriptor]:
    """The descriptors, each (digest, media type, platform) once."""
    found: dict[tuple[Digest, str, Platform | None], Descriptor] = {}
    for desc in descriptors:
        found.setdefault((desc.digest, desc.media_type, desc.platform), desc)
    return list(found.values())


class _Walker:
    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.indexes: dict[Digest, Index] = {}
        self.blob_types: dict[Digest, str | Descriptor | Unusable] = {}
        self.descriptors = 0
        self.visits = 0
        self.expanded: dict[tuple[Digest, Platform | None], list[Candidate | Unusable]] = {}

    def count(self, n: int, where: str) -> None:
        self.descriptors += n
        if self.descriptors > MAX_DESCRIPTORS:
            raise ImageFormatError(
                f"{self.store.location}: {where}: the layout's indexes list more than "
                f"{MAX_DESCRIPTORS} descriptors in all"
            )

    def expand(
        self,
        desc: Descriptor,
        *,
        platform: Platform | None,
        parent: Descriptor | None,
        siblings: tuple[Descriptor, ...],
        depth: int,
        path: tuple[Digest, ...],
    ) -> list[Candidate | Unusable]:
        if desc.is_attestation:
            return []
        media_type = desc.media_type
        if media_type not in MANIFEST_TYPES and media_type not in INDEX_TYPES:
            found = self._blob_type(desc)
            if isinstance(found, Unusable):
                return [found]
            if isinstance(found, Descriptor):  # a descriptor blob: follow it, as umoci does
                self._check_depth(desc, depth, path)
                return self.expand(
                    found,
                    platform=found.platform or desc.platform or platform,
                    parent=parent,
                    siblings=siblings,
                    depth=depth + 1,
                    path=(*path, desc.digest),
                )
            media_type = found
        if media_type in MANIFEST_TYPES:
            return [Candidate(desc, desc.platform or platform, (), media_type, parent, siblings)]
        self._check_depth(desc, depth, path)
        inherited = desc.platform or platform
        key = (desc.digest, inherited)
        done = self.expanded.get(key)
        if done is not None:  # the same index reached again, with the same platform: the same images
            return done
        index = self._index(desc)
        out: dict[tuple[object, ...], Candidate | Unusable] = {}
        as_index = dataclasses.replace(desc, media_type=media_type)
        for child in _distinct(index.manifests):  # an entry listed twice is one entry
            self.visits += 1
            if self.visits > MAX_VISITS:
                raise ImageFormatError(
                    f"{self.store.location}: image index {desc.digest}: the layout's indexes lead to more "
                    f"than {MAX_VISITS} descriptors (indexes that list one another many times over)"
                )
            for leaf in self.expand(
                child,
                platform=child.platform or inherited,
                parent=as_index,
                siblings=index.manifests,
                depth=depth + 1,
                path=(*path, desc.digest),
            ):
                if isinstance(leaf, Unusable):
                    out.setdefault(("unusable", leaf.descriptor.digest, leaf.reason), leaf)
                else:
                    parent_digest = leaf.parent.digest if leaf.parent else None
                    out.setdefault(("image", leaf.descriptor.digest, leaf.platform, parent_digest), leaf)
        self.expanded[key] = list(out.values())
        return self.expanded[key]

    def _check_depth(self, desc: Descriptor, depth: int, path: tuple[Digest, ...]) -> None:
        if desc.digest in path:
            raise ImageFormatError(f"{self.store.location}: image index {desc.digest} refers back to itself")
        if depth >= MAX_INDEX_DEPTH:
            raise ImageFormatError(
                f"{self.store.location}: image indexes nested more than {MAX_INDEX_DEPTH} deep"
            )

    def _index(self, desc: Descriptor) -> Index:
        index = self.indexes.get(desc.digest)
        if index is None:
            data = read_blob_json(self.store, desc, "image index")
            what = f"{self.store.location}: image index {desc.digest}"
            index = parse_index(load_json(data, what), what)
            self.count(len(index.manifests), f"image index {desc.digest}")
            self.indexes[desc.digest] = index
        return index

    def _blob_type(self, desc: Descriptor) -> str | Descriptor | Unusable:
        """What a descriptor of an unexpected media type points at, read from the blob.

        umoci reads such a blob too: a descriptor blob (``application/vnd.oci.descriptor.v1+json``)
        is followed to what it describes; unlike umoci, a blob that is itself a manifest or an index
        is used as what it is, whatever the descriptor pointing at it says.
        """
        known = self.blob_types.get(desc.digest)
        if known is None:
            known = self._read_blob_type(desc)
            self.blob_types[desc.digest] = known
        return known

    def _read_blob_type(self, desc: Descriptor) -> str | Descriptor | Unusable:
        label = f"descriptor of media type {desc.media_type!r}"
        if desc.size > MAX_MANIFEST_BYTES:
            return Unusable(desc, (), f"{label}: its blob of {desc.size} bytes is no manifest or index")
        try:
            data = read_blob_json(self.store, desc, "blob")
            doc = load_json(data, f"{self.store.location}: blob {desc.digest}")
        except ImageNotFoundError:
            return Unusable(desc, (), f"{label}: its blob {desc.digest} is missing")
        except ImgtoolError as exc:
            return Unusable(desc, (), f"{label}: {exc}")
        if isinstance(doc, dict) and "digest" in doc and "config" not in doc and "manifests" not in doc:
            try:  # a descriptor (only descriptors have a top-level digest)
                return parse_descriptor(doc, f"{self.store.location}: descriptor blob {desc.digest}")
            except ImgtoolError as exc:
                return Unusable(desc, (), f"{label}: {exc}")
        own = media_type_of(doc) if isinstance(doc, dict) else None
        if own in MANIFEST_TYPES or own in INDEX_TYPES:
            return own
        implied = media_type_by_fields(doc)
        if implied is not None:
            return implied
        what = f"media type {own!r}" if own else "no image manifest or index"
        return Unusable(desc, (), f"{label}: its blob is {what}")


def describe(candidate: Candidate) -> str:
    label = ", ".join(candidate.tags) if candidate.tags else str(candidate.descriptor.digest)
    return f"{label} ({candidate.platform})" if candidate.platform else label


def choose(
    candidates: list[Candidate],
    selector: str | None,
    platform: Platform | None,
    location: str,
    unusable: Sequence[Unusable] = (),
) -> Candidate:
    """Pick the image: by ref name first, then by platform (the host's unless one is asked for)."""
    if selector is not None:
        named = [c for c in candidates if selector in c.tags]
        if not named:
            for item in unusable:
                if selector in item.tags:
                    raise MediaTypeError(f"{location}: ref {selector!r} leads to no image: {item.reason}")
            refs = sorted({t for c in candidates for t in c.tags})
            listing = some(refs) if refs else "none"
            raise ImageNotFoundError(f"{location}: no image named {selector!r}; refs present: {listing}")
        candidates = named
    if not candidates:
        if unusable:
            raise MediaTypeError(f"{location}: the layout holds no image manifest: {unusable[0].reason}")
        raise ImageNotFoundError(f"{location}: the layout holds no image manifest")
    groups = {c.tags for c in candidates}
    if len(groups) > 1:
        names = sorted(", ".join(g) or "(unnamed)" for g in groups)
        listing = "; ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
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
        listing = some([str(c.descriptor.digest) for c in candidates])
        raise AmbiguousImageError(f"{location}: holds several images without platforms: {listing}")
    matching = [c for c in candidates if c.platform is not None and wanted.matches(c.platform)]
    if not matching:
        present = some(sorted({str(c.platform) for c in candidates if c.platform}))
        raise ImageNotFoundError(f"{location}: no image for platform {wanted}; platforms present: {present}")
    exact = [c for c in matching if c.platform == wanted]
    best = exact or matching
    if len({c.descriptor.digest for c in best}) > 1:
        listing = some(sorted({str(c.descriptor.digest) for c in best}))
        raise AmbiguousImageError(f"{location}: several images match, for platform {wanted}: {listing}")
    return best[0]


class OciLayout:
    """The core of an OCI image layout, a directory or a tar archive: blobs under ``blobs/``."""

    def __init__(self, store: BlobStore, transport: str) -> None:
        self.location = store.location
        self.transport = transport
        self._store = store

    def resolve(self, selector: str | None, platform: Platform | None) -> Resolved:
        listing = self.listing()
        chosen = choose(listing.candidates, selector, platform, self.location, listing.unusable)
        return self.resolve_candidate(chosen, listing)

    def listing(self) -> Listing:
        """Every image manifest of the layout (:func:`list_layout`)."""
        check_layout(self._store)
        return list_layout(self._store)

    def resolve_candidate(self, chosen: Candidate, listing: Listing) -> Resolved:
        """The manifest of ``chosen``, one of ``listing``'s candidates."""
        store = self._store
        desc = chosen.descriptor
        return Resolved(
            manifest_bytes=read_blob_json(store, desc, "manifest"),
            media_type=chosen.media_type,
            digest=desc.digest,
            tags=chosen.tags,
            index=_index_info(chosen, listing),
            index_bytes=self._named_index(chosen),
        )

    def _named_index(self, chosen: Candidate) -> bytes | None:
        """The image index the reference names (the entry of index.json it leads to), as stored;
        None when that entry is the manifest itself."""
        if chosen.parent is None:
            return None
        top = chosen.top
        named = top if top is not None and top.media_type in INDEX_TYPES else chosen.parent
        return read_blob_json(self._store, named, "image index")

    def names(self) -> list[str]:
        return sorted({t for c in list_candidates(self._store) for t in c.tags})

    def top_manifest(self, selector: str | None) -> StoredManifest | None:
        """What index.json names by ``selector`` (or lists alone), as stored; None if it lists several."""
        entries = [d for d in read_index(self._store).manifests if selector is None or d.ref_name == selector]
        return self.child_manifest(entries[0]) if len(entries) == 1 else None

    def child_manifest(self, desc: Descriptor) -> StoredManifest:
        data = read_blob_json(self._store, desc, "manifest")
        doc = load_json(data, f"{self.location}: manifest {desc.digest}")
        own = media_type_of(doc) if isinstance(doc, dict) else None
        return StoredManifest(data, own or desc.media_type, desc.digest)

    def open_blob(self, digest: Digest) -> RawStream:
        return self._store.open(blob_path(digest))

    def has_blob(self, digest: Digest) -> bool:
        return self._store.exists(blob_path(digest))

    def blob_size(self, digest: Digest) -> int | None:
        path = blob_path(digest)
        return self._store.size(path) if self._store.exists(path) else None

    def close(self) -> None:
        self._store.close()


def open_directory(ref: Reference) -> OciLayout:
    """``oci:DIR``: an OCI image layout directory."""
    require_exists(ref)
    if not os.path.isdir(ref.path):
        raise ImageFormatError(f"{ref.path}: not a directory (oci: expects an OCI layout directory)")
    store = DirStore(ref.path)
    if not store.exists("oci-layout"):
        raise ImageFormatError(f"{ref.path}: not an OCI image layout (no oci-layout file)")
    return OciLayout(store, OCI)


def open_archive(ref: Reference) -> OciLayout:
    """``oci-archive:PATH``: an OCI image layout in a tar archive."""
    tar = open_tar(ref)
    if not is_layout(tar):
        tar.close()
        raise ImageFormatError(f"{ref.path}: not an OCI archive (no oci-layout and index.json)")
    return OciLayout(tar, OCI_ARCHIVE)


def is_layout(store: BlobStore) -> bool:
    return store.exists("oci-layout") and store.exists("index.json")


def _index_info(chosen: Candidate, listing: Listing) -> IndexInfo | None:
    """The image index the manifest was chosen from, with every image it lists.

    Where index.json itself lists the images of one ref for several platforms, that is the
    index (it has no digest).
    """
    siblings = chosen.siblings
    if chosen.parent is None:
        siblings = tuple(
            c.descriptor for c in listing.candidates if c.parent is None and c.tags == chosen.tags
        )
        if len(_distinct(siblings)) < 2:
            return None
    mine = (chosen.descriptor.digest, chosen.descriptor.platform)
    entries = tuple(IndexEntry.of(d, (d.digest, d.platform) == mine) for d in _distinct(siblings))
    if chosen.parent is None:
        return IndexInfo(None, listing.media_type, entries)
    return IndexInfo(chosen.parent.digest, chosen.parent.media_type, entries)
