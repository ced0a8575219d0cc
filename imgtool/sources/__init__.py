"""Where images come from: opening an image from a reference (parse it, pick the source, detect
what a bare path holds), one module per source, and the stores they read blobs from.

Every source implements the core of :mod:`imgtool.sources.core` (a manifest for a reference,
blobs by digest); :mod:`imgtool.sources.build` derives the image from it. A new source is one
module and one line in ``SOURCES``. A source's module is imported when a reference names its
transport, so a command pays only for the source it reads.

May import: ``imgtool.layers`` (an archive is itself a tar), ``imgtool.image``, ``imgtool.system``,
``imgtool.errors``, ``imgtool.progress``.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from imgtool.errors import ImageFormatError, ImageNotFoundError, ImgtoolError, UsageError
from imgtool.image.image import Image
from imgtool.image.platform import Platform
from imgtool.sources import reference
from imgtool.sources.build import build_image
from imgtool.sources.core import ImageSource, SourceOpener, open_tar
from imgtool.sources.destinations import open_destination
from imgtool.sources.indexes import open_copy, open_document
from imgtool.sources.reference import DOCKER, DOCKER_ARCHIVE, OCI, OCI_ARCHIVE, Reference, require_exists
from imgtool.sources.registry import RegistryOptions, open_registry

if TYPE_CHECKING:
    from imgtool.sources.catalog import ListedImage

__all__ = [
    "SOURCES",
    "ImageSource",
    "Reference",
    "RegistryOptions",
    "catalog",
    "list_images",
    "open_copy",
    "open_destination",
    "open_document",
    "open_image",
    "parse_reference",
]

# The transports imgtool reads: name -> the function that opens the source a reference names, or
# where it is ("module:function"), imported when a reference names the transport.
SOURCES: dict[str, SourceOpener | str] = {
    OCI: "imgtool.sources.oci_layout:open_directory",
    OCI_ARCHIVE: "imgtool.sources.oci_layout:open_archive",
    DOCKER_ARCHIVE: "imgtool.sources.docker_archive:open_archive",
    DOCKER: open_registry,  # itself imports the HTTP code only when a registry is opened
    "containers-storage": "imgtool.sources.containers_storage:open_images",
    "podman-container": "imgtool.sources.containers_storage:open_container",
    "overlay": "imgtool.sources.overlay_dirs:open_stack",
    "docker-storage": "imgtool.sources.docker_store:open_images",
    "docker-container": "imgtool.sources.docker_store:open_container",
    "overlay-mount": "imgtool.sources.overlay_mount:open_mount",
}


def source_opener(transport: str) -> SourceOpener:
    """The function that opens a source of ``transport`` (one of ``SOURCES``)."""
    found = SOURCES[transport]
    if isinstance(found, str):
        module, _, name = found.partition(":")
        opener: SourceOpener = getattr(importlib.import_module(module), name)
        return opener
    return found


def parse_reference(text: str) -> Reference:
    """``TRANSPORT:PATH[:SELECTOR]`` for each transport of ``SOURCES``, or a bare path;
    see :func:`imgtool.sources.reference.parse_reference`."""
    return reference.parse_reference(text, tuple(SOURCES))


def _detect(ref: Reference) -> ImageSource:
    """The source a bare path holds: a layout directory, a docker-save or an OCI archive."""
    from imgtool.sources import docker_archive, oci_layout  # noqa: PLC0415 - see SOURCES

    require_exists(ref)
    if os.path.isdir(ref.path):
        return source_opener(OCI)(ref)
    tar = open_tar(ref)
    try:
        if tar.exists("manifest.json"):
            return docker_archive.DockerArchive(tar)
        if oci_layout.is_layout(tar):
            return oci_layout.OciLayout(tar, OCI_ARCHIVE)
        raise ImageFormatError(
            f"{ref.path}: not an image archive: neither manifest.json (docker save) nor oci-layout (OCI)"
        )
    except BaseException:
        tar.close()
        raise


def _open_source(ref: Reference, registry_options: RegistryOptions | None = None) -> ImageSource:
    """The transport the reference names or, for a bare path, the one its contents show; a
    registry is reached as ``registry_options`` say."""
    if ref.transport is None:
        return _detect(ref)
    if ref.transport == DOCKER and registry_options is not None:
        return open_registry(ref, registry_options)
    return source_opener(ref.transport)(ref)


def open_image(
    reference: str, platform: str | Platform | None = None, registry: RegistryOptions | None = None
) -> Image:
    """Open the image ``reference`` names; see :func:`parse_reference` for the syntax.

    ``platform`` ("os/arch[/variant]") chooses among the images of an index; without
    it the host's platform is preferred, and a reference leading to a single image
    opens that image whatever its platform. ``registry``: how to reach a ``docker://`` one
    (TLS, credentials, retries; default :class:`RegistryOptions`).
    """
    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    ref = parse_reference(reference)
    return image_from(_open_source(ref, registry), ref, wanted)


def image_from(source: ImageSource, ref: Reference, wanted: Platform | None) -> Image:
    """The image ``ref`` names in ``source``, opened from it (see :func:`open_image`); the image
    owns the source from then on, and it is closed here if the image cannot be made."""
    try:
        image = build_image(source, reference=str(ref), selector=ref.selector, platform=wanted)
        if wanted is not None and not wanted.matches(image.platform):
            where = str(ref) if ref.transport == DOCKER else ref.path
            raise ImageNotFoundError(
                f"{where}: no image for platform {wanted}; the image is {image.platform}"
            )
    except BaseException:
        source.close()
        raise
    return image


def list_images(reference: str) -> list[str]:
    """The names an image in this archive or layout can be chosen by (tags, refs, ``@N``)."""
    ref = parse_reference(reference)
    if ref.transport == DOCKER:
        return []  # a registry's tags are not listed: that would reach the network
    source = _open_source(ref)
    try:
        return source.names()
    except ImgtoolError:
        return []
    finally:
        source.close()


def catalog(reference: str) -> list[ListedImage]:
    """Every image of the archive, layout or store ``reference`` names (``imgtool images``)."""
    from imgtool.sources.catalog import list_source  # noqa: PLC0415 - see SOURCES

    ref = parse_reference(reference)
    if ref.transport == DOCKER:
        raise UsageError(f"{ref}: images lists the images of an archive or a layout, not a registry's")
    source = _open_source(ref)
    try:
        return list_source(source, ref)
    finally:
        source.close()
