"""What an archive, a layout or a store holds: every image in it, with the name that chooses it (``imgtool
images``; umoci ``ls``, skopeo ``list-tags``): the choices the "holds several images" error lists,
each opened as :func:`imgtool.sources.open_image` opens it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from imgtool.errors import UsageError
from imgtool.image.digest import Digest
from imgtool.image.image import Image
from imgtool.image.platform import Platform
from imgtool.image.readable import RawStream
from imgtool.sources.build import build_image
from imgtool.sources.core import ImageSource, Resolved
from imgtool.sources.docker_archive import DockerArchive
from imgtool.sources.oci_layout import OciLayout
from imgtool.sources.reference import Reference


@dataclass(frozen=True, slots=True)
class ListedImage:
    """One image of an archive or layout.

    ``name`` chooses it: a tag or OCI ref name, ``@N`` (its place in a docker-save manifest.json)
    for an image without tags, None for a layout's unnamed manifest. ``reference`` opens it, with
    ``--platform`` where one name leads to several platforms. ``names``: all its tags. ``size``: its
    config and layer blobs as its manifest gives them (as stored, compressed or not).
    """

    name: str | None
    reference: str
    names: tuple[str, ...]
    platform: Platform
    manifest_digest: Digest | None
    index_digest: Digest | None
    size: int
    created: str | None


class _Chosen:
    """``source`` with the manifest already chosen, for :func:`build_image`."""

    def __init__(self, source: ImageSource, resolve: Callable[[], Resolved]) -> None:
        self.location = source.location
        self.transport = source.transport
        self._source = source
        self._resolve = resolve

    def resolve(self, selector: str | None, platform: Platform | None) -> Resolved:
        return self._resolve()

    def names(self) -> list[str]:
        return []

    def open_blob(self, digest: Digest) -> RawStream:
        return self._source.open_blob(digest)

    def has_blob(self, digest: Digest) -> bool:
        return self._source.has_blob(digest)

    def blob_size(self, digest: Digest) -> int | None:
        return self._source.blob_size(digest)

    def close(self) -> None:
        """The source itself is closed by whoever opened it."""


@runtime_checkable
class _Store(Protocol):
    """A store of images (Docker's data root, containers-storage), which lists its own."""

    def each_image(self) -> list[tuple[str, Callable[[], Resolved]]]: ...


def _listed(image: Image, name: str | None, reference: str) -> ListedImage:
    return ListedImage(
        name=name,
        reference=reference,
        names=tuple(image.tags),
        platform=image.platform,
        manifest_digest=image.manifest_digest,
        index_digest=image.index.digest if image.index is not None else None,
        size=image.manifest.config.size + sum(layer.size for layer in image.layers),
        created=image.config.created,
    )


def _build(source: ImageSource, resolve: Callable[[], Resolved]) -> Image:
    return build_image(_Chosen(source, resolve), reference="", selector=None, platform=None)


def list_source(source: ImageSource, ref: Reference) -> list[ListedImage]:
    """Every image of ``source``, opened from ``ref`` (an archive, a layout or a store), in the order the
    archive's manifest.json, the layout's index.json or the store lists them; each document is read once."""
    where = f"{ref.transport or source.transport}:{ref.path}"
    out = []
    if isinstance(source, OciLayout):
        listing = source.listing()
        for candidate in listing.candidates:
            image = _build(source, functools.partial(source.resolve_candidate, candidate, listing))
            name = candidate.tags[0] if candidate.tags else None
            out.append(_listed(image, name, f"{where}:{name}" if name else where))
    elif isinstance(source, DockerArchive):
        for entry in source.entries():
            image = _build(source, functools.partial(source.resolve_entry, entry))
            name = entry.repo_tags[0] if entry.repo_tags else f"@{entry.position}"
            out.append(_listed(image, name, f"{where}:{name}"))
    elif isinstance(source, _Store):
        store = ref.path[: ref.path.index("]") + 1] if ref.path.startswith("[") else ""
        for name, resolve in source.each_image():
            out.append(_listed(_build(source, resolve), name, f"{ref.transport}:{store}{name}"))
    else:  # a container is one image; a registry's names are not listed (that would reach the network)
        raise UsageError(f"{ref}: images lists the images of an archive, a layout or a store")
    return out
