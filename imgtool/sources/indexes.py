"""The whole image index a reference names, for ``copy --all-platforms``: the index as stored, and
every manifest and nested index below it, each verified against its digest as it is read."""

from __future__ import annotations

from typing import Protocol

from imgtool.errors import ImageFormatError, UsageError
from imgtool.image.destination import IndexTree, StoredManifest
from imgtool.image.image import Image
from imgtool.image.mediatypes import INDEX_TYPES
from imgtool.image.model import Descriptor, load_json, parse_index
from imgtool.sources.oci_layout import MAX_DESCRIPTORS, MAX_INDEX_DEPTH
from imgtool.sources.reference import parse_reference


class IndexSource(Protocol):
    """What a source offers to copy a whole index: the manifest or index its reference names as
    stored (None: index.json itself lists the images), and a manifest an index lists."""

    def top_manifest(self, selector: str | None) -> StoredManifest | None: ...

    def child_manifest(self, desc: Descriptor) -> StoredManifest: ...


def whole_index(image: Image, wanted: bool = True) -> IndexTree | None:
    """The image index ``image``'s reference names, with all below it; None if not ``wanted`` or
    if the reference names one image (then that image is all there is to copy)."""
    if not wanted:
        return None
    source = image.store
    top_manifest = getattr(source, "top_manifest", None)
    child_manifest = getattr(source, "child_manifest", None)
    if top_manifest is None or child_manifest is None:
        return None  # docker save: one image per reference
    top: StoredManifest | None = top_manifest(parse_reference(image.reference).selector)
    if top is None:
        raise UsageError(
            f"{image.reference}: --all-platforms: index.json lists these images without an image index "
            "of their own; name one image (--platform), or copy each"
        )
    if top.media_type not in INDEX_TYPES:
        return None
    below: list[StoredManifest] = []
    seen: set[str] = set()

    def walk(index: StoredManifest, depth: int) -> None:
        what = f"{image.reference}: image index {index.digest}"
        for desc in parse_index(load_json(index.data, what), what).manifests:
            if str(desc.digest) in seen:
                continue
            seen.add(str(desc.digest))
            if len(seen) > MAX_DESCRIPTORS:
                raise ImageFormatError(f"{image.reference}: more than {MAX_DESCRIPTORS} manifests")
            child: StoredManifest = child_manifest(desc)
            if child.media_type in INDEX_TYPES:
                if depth + 1 >= MAX_INDEX_DEPTH:
                    raise ImageFormatError(
                        f"{image.reference}: image indexes nested more than {MAX_INDEX_DEPTH} deep"
                    )
                walk(child, depth + 1)
            below.append(child)

    walk(top, 0)
    return IndexTree(top, tuple(below), source.open_blob, source.has_blob)
