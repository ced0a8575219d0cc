"""inspect --raw and --config: an image's documents exactly as stored (skopeo ``inspect --raw`` and
``--config``, crane ``manifest`` and ``config``)."""

from __future__ import annotations

from typing import NamedTuple

from imgtool.image.destination import StoredManifest
from imgtool.image.image import Image


class RawDocument(NamedTuple):
    """A document's bytes as stored, and a note when there is no stored one (the bytes are derived)."""

    data: bytes
    note: str | None = None


def raw_document(image: Image | StoredManifest, document: str, platform_chosen: bool = False) -> RawDocument:
    """``document`` "config" (:func:`raw_config`) or "manifest" (:func:`raw_manifest`); of an image
    index as stored (no image chosen from it), its bytes."""
    if isinstance(image, StoredManifest):
        return RawDocument(image.data)
    return raw_config(image) if document == "config" else raw_manifest(image, platform_chosen)


def raw_manifest(image: Image, platform_chosen: bool = False) -> RawDocument:
    """The document the reference names: its image index where it names one, unless a platform was
    asked for (``platform_chosen``: that platform's manifest, as crane ``manifest --platform``);
    otherwise the manifest. A docker-save archive stores no manifest: the one skopeo derives is given,
    and the note says so."""
    if image.index_bytes is not None and not platform_chosen:
        return RawDocument(image.index_bytes)
    data = image.manifest_bytes
    if image.manifest_synthesized:
        return RawDocument(
            data,
            f"{image.reference}: the archive stores no manifest; this one is derived as skopeo derives it",
        )
    return RawDocument(data)


def raw_config(image: Image) -> RawDocument:
    """The image config's bytes as stored (its digest is the config digest)."""
    return RawDocument(image.config_bytes)
