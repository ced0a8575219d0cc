"""Where images come from: opening an image from a reference (parse it, pick the source, detect
what a bare path holds), one module per source, and the stores they read blobs from.

May import: ``imgtool.layers`` (an archive is itself a tar), ``imgtool.image``, ``imgtool.system``,
``imgtool.errors``, ``imgtool.progress``.
"""

from __future__ import annotations

import os

from imgtool.errors import ImageFormatError, ImageNotFoundError, ImgtoolError
from imgtool.image.image import Image
from imgtool.image.model import Platform
from imgtool.image.readable import BlobStore
from imgtool.sources import docker_archive, oci_layout
from imgtool.sources.reference import (
    DOCKER_ARCHIVE,
    OCI,
    OCI_ARCHIVE,
    Reference,
    parse_reference,
    require_exists,
)
from imgtool.sources.stores import DirStore, TarStore

__all__ = ["Reference", "list_images", "open_image", "parse_reference"]


def _open_store(ref: Reference) -> tuple[str, BlobStore]:
    """The transport the reference names or, for a bare path, the one its contents show."""
    require_exists(ref)
    if ref.transport == OCI or (ref.transport is None and os.path.isdir(ref.path)):
        if not os.path.isdir(ref.path):
            raise ImageFormatError(f"{ref.path}: not a directory (oci: expects an OCI layout directory)")
        store = DirStore(ref.path)
        if not store.exists("oci-layout"):
            raise ImageFormatError(f"{ref.path}: not an OCI image layout (no oci-layout file)")
        return OCI, store
    if os.path.isdir(ref.path):
        raise ImageFormatError(
            f"{ref.path}: is a directory ({ref.transport}: expects a tar file; oci:{ref.path} opens a layout)"
        )
    tar = TarStore(ref.path)
    try:
        if ref.transport == DOCKER_ARCHIVE or (ref.transport is None and tar.exists("manifest.json")):
            if not tar.exists("manifest.json"):
                raise ImageFormatError(f"{ref.path}: not a docker-save archive (no manifest.json)")
            return DOCKER_ARCHIVE, tar
        if tar.exists("oci-layout") and tar.exists("index.json"):
            return OCI_ARCHIVE, tar
        if ref.transport == OCI_ARCHIVE:
            raise ImageFormatError(f"{ref.path}: not an OCI archive (no oci-layout and index.json)")
        raise ImageFormatError(
            f"{ref.path}: not an image archive: neither manifest.json (docker save) nor oci-layout (OCI)"
        )
    except BaseException:
        tar.close()
        raise


def open_image(reference: str, platform: str | Platform | None = None) -> Image:
    """Open the image ``reference`` names; see :func:`parse_reference` for the syntax.

    ``platform`` ("os/arch[/variant]") chooses among the images of an index; without
    it the host's platform is preferred, and a reference leading to a single image
    opens that image whatever its platform.
    """
    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    ref = parse_reference(reference)
    transport, store = _open_store(ref)
    try:
        if transport == DOCKER_ARCHIVE:
            assert isinstance(store, TarStore)
            image = docker_archive.open_archive(store, str(ref), ref.selector)
        else:
            image = oci_layout.open_layout(
                store=store, reference=str(ref), transport=transport, selector=ref.selector, platform=wanted
            )
        if wanted is not None and not wanted.matches(image.platform):
            raise ImageNotFoundError(
                f"{ref.path}: no image for platform {wanted}; the image is {image.platform}"
            )
    except BaseException:
        store.close()
        raise
    return image


def list_images(reference: str) -> list[str]:
    """The names an image in this archive or layout can be chosen by (tags, refs, ``@N``)."""
    ref = parse_reference(reference)
    transport, store = _open_store(ref)
    try:
        if transport == DOCKER_ARCHIVE:
            assert isinstance(store, TarStore)
            names: list[str] = []
            for entry in docker_archive.read_entries(store):
                names.extend(entry.repo_tags)
                names.append(f"@{entry.position}")
            return names
        return sorted({t for c in oci_layout.list_candidates(store) for t in c.tags})
    except ImgtoolError:
        return []
    finally:
        store.close()
