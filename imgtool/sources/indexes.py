"""What ``imgtool copy`` reads: one image, or (``--all-platforms``) the whole image index a
reference names, the index as stored and every manifest and nested index below it, each verified
against its digest as it is read; and the destination it writes, opened first. And what
``inspect --raw`` reads: the index a reference names, or the image."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from imgtool.errors import ImageFormatError, UsageError
from imgtool.image.destination import Destination, IndexTree, StoredManifest
from imgtool.image.image import Image
from imgtool.image.mediatypes import INDEX_TYPES
from imgtool.image.model import Descriptor, load_json, parse_index
from imgtool.image.platform import Platform
from imgtool.sources.core import ImageSource
from imgtool.sources.destinations import open_destination
from imgtool.sources.oci_layout import MAX_DESCRIPTORS, MAX_INDEX_DEPTH
from imgtool.sources.reference import DOCKER, DockerName, Reference, parse_docker_name
from imgtool.sources.registry import RegistryOptions


class IndexSource(Protocol):
    """What a source offers to copy a whole index: the manifest or index its reference names as
    stored (None: index.json itself lists the images), and a manifest an index lists."""

    def top_manifest(self, selector: str | None) -> StoredManifest | None: ...

    def child_manifest(self, desc: Descriptor) -> StoredManifest: ...


@contextlib.contextmanager
def open_copy(
    src: str, dest: str, platform: Platform | None, registry: RegistryOptions | None, all_platforms: bool
) -> Iterator[tuple[Image | IndexTree, Destination]]:
    """The destination ``dest`` names (opened first: a bad one fails before anything is read), and
    what to copy into it: with ``all_platforms`` the whole index ``src`` names (if it names one),
    else the image ``platform`` chooses; both closed at the end."""
    from imgtool.sources import _open_source, open_image, parse_reference  # noqa: PLC0415 - a cycle

    with open_destination(dest, registry) as out:
        _mount_from(out, parse_reference(src))
        if all_platforms:
            ref = parse_reference(src)
            source = _open_source(ref, registry)
            try:
                tree = index_tree(source, ref)
            except BaseException:
                source.close()
                raise
            if tree is not None:
                with contextlib.closing(source):
                    yield tree, out
                return
            source.close()
        with open_image(src, platform, registry) as image:
            yield image, out


@contextlib.contextmanager
def open_document(
    reference: str, document: str, platform: Platform | None, registry: RegistryOptions | None
) -> Iterator[Image | StoredManifest]:
    """What ``inspect --raw``/``--config`` shows: for the manifest without ``platform``, the image
    index the reference names, as stored, when it names one (no platform is chosen, so none need
    match this machine's, as skopeo ``inspect --raw``); otherwise the image, opened as for any command."""
    from imgtool.sources import _open_source, image_from, parse_reference  # noqa: PLC0415 - a cycle

    ref = parse_reference(reference)
    source = _open_source(ref, registry)  # opened once: the image, if it comes to that, is made from it
    if document == "manifest" and platform is None:
        try:
            top_manifest = getattr(source, "top_manifest", None)
            top: StoredManifest | None = top_manifest(ref.selector) if top_manifest is not None else None
        except BaseException:
            source.close()
            raise
        if top is not None and top.media_type in INDEX_TYPES:
            with contextlib.closing(source):
                yield top
            return
    with image_from(source, ref, platform) as image:
        yield image


def index_tree(source: ImageSource, ref: Reference) -> IndexTree | None:
    """The image index ``ref`` names in ``source``, with all below it; None if it names one image
    (then that image is all there is to copy) or the source holds one image per reference."""
    top_manifest = getattr(source, "top_manifest", None)
    child_manifest = getattr(source, "child_manifest", None)
    if top_manifest is None or child_manifest is None:
        return None  # docker save: one image per reference
    top: StoredManifest | None = top_manifest(ref.selector)
    if top is None:
        raise UsageError(
            f"{ref}: --all-platforms: index.json lists these images without an image index "
            "of their own; name one image (--platform), or copy each"
        )
    if top.media_type not in INDEX_TYPES:
        return None
    below: list[StoredManifest] = []
    seen: set[str] = set()

    def walk(index: StoredManifest, depth: int) -> None:
        what = f"{ref}: image index {index.digest}"
        for desc in parse_index(load_json(index.data, what), what).manifests:
            if str(desc.digest) in seen:
                continue
            seen.add(str(desc.digest))
            if len(seen) > MAX_DESCRIPTORS:
                raise ImageFormatError(f"{ref}: more than {MAX_DESCRIPTORS} manifests")
            child: StoredManifest = child_manifest(desc)
            if child.media_type in INDEX_TYPES:
                if depth + 1 >= MAX_INDEX_DEPTH:
                    raise ImageFormatError(f"{ref}: image indexes nested more than {MAX_INDEX_DEPTH} deep")
                walk(child, depth + 1)
            below.append(child)

    walk(top, 0)
    return IndexTree(str(ref), top, tuple(below), source.open_blob, source.has_blob)


@runtime_checkable
class _Mountable(Protocol):
    """A registry destination (:class:`~imgtool.sources.registry.push.RegistryDestination`)."""

    name: DockerName
    mount_from: str | None


def _mount_from(out: Destination, ref: Reference) -> None:
    """A push from a repository of the same registry mounts the blobs from it rather than send them."""
    if ref.transport == DOCKER and isinstance(out, _Mountable):
        source = parse_docker_name(ref.path)
        if source.registry == out.name.registry:
            out.mount_from = source.repository
