"""Where images come from: opening an image from a reference (parse it, pick the source, detect
what a bare path holds), one module per source, and the stores they read blobs from.

Every source implements the core of :mod:`imgtool.sources.core` (a manifest for a reference,
blobs by digest); :mod:`imgtool.sources.build` derives the image from it. A new source is one
module and one line in ``SOURCES``.

May import: ``imgtool.layers`` (an archive is itself a tar), ``imgtool.image``, ``imgtool.system``,
``imgtool.errors``, ``imgtool.progress``.
"""

from __future__ import annotations

import os

from imgtool.errors import ImageFormatError, ImageNotFoundError, ImgtoolError, UsageError
from imgtool.image.image import Image
from imgtool.image.platform import Platform
from imgtool.sources import docker_archive, oci_layout, reference
from imgtool.sources.build import build_image
from imgtool.sources.catalog import ListedImage, list_source
from imgtool.sources.core import ImageSource, SourceOpener, open_tar
from imgtool.sources.reference import DOCKER, DOCKER_ARCHIVE, OCI, OCI_ARCHIVE, Reference, require_exists
from imgtool.sources.registry import RegistryOptions, open_registry

__all__ = [
    "SOURCES",
    "ImageSource",
    "ListedImage",
    "Reference",
    "RegistryOptions",
    "catalog",
    "list_images",
    "open_image",
    "parse_reference",
]

# The transports imgtool reads: name -> the function that opens the source a reference names.
SOURCES: dict[str, SourceOpener] = {
    OCI: oci_layout.open_directory,
    OCI_ARCHIVE: oci_layout.open_archive,
    DOCKER_ARCHIVE: docker_archive.open_archive,
    DOCKER: open_registry,
}


def parse_reference(text: str) -> Reference:
    """``TRANSPORT:PATH[:SELECTOR]`` for each transport of ``SOURCES``, or a bare path;
    see :func:`imgtool.sources.reference.parse_reference`."""
    return reference.parse_reference(text, tuple(SOURCES))


def _detect(ref: Reference) -> ImageSource:
    """The source a bare path holds: a layout directory, a docker-save or an OCI archive."""
    require_exists(ref)
    if os.path.isdir(ref.path):
        return SOURCES[OCI](ref)
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
    return SOURCES[ref.transport](ref)


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
    source = _open_source(ref, registry)
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
    """Every image of the archive or layout ``reference`` names (``imgtool images``)."""
    ref = parse_reference(reference)
    if ref.transport == DOCKER:
        raise UsageError(f"{ref}: images lists the images of an archive or a layout, not a registry's")
    source = _open_source(ref)
    try:
        return list_source(source, ref)
    finally:
        source.close()
