"""Warnings about a layer that every command which looks there gives in the same words.

A layer can be readable and still not be what the image says it is: its media type can name one
compression while its bytes have another (skopeo writes ``tar+gzip`` for plain tar layers in an
OCI layout when asked for uncompressed layers). imgtool reads it by its bytes, as it reads every
layer, and says so: ``verify`` as a warning row, ``inspect``, ``flatten`` and the queries on stderr.
The tar reader's own warnings (an archive that ends without end-of-archive blocks) are kept with
each layer's index and reported the same way.
"""

from __future__ import annotations

from imgtool.errors import ImgtoolError
from imgtool.image.compression import Compression, sniff
from imgtool.image.image import Image, Layer
from imgtool.image.mediatypes import LAYER_TYPES


def fetched(image: Image) -> bool:
    """Whether the image's blobs are fetched over the network (a registry's, whose source says so
    with ``remote``): a layer is then not opened only to look at its first bytes."""
    return bool(getattr(image.store, "remote", False))


def blob_compression(layer: Layer) -> Compression | None:
    """The compression the blob's magic bytes show; None when the blob cannot be opened."""
    try:
        reader = layer.open_blob()
    except ImgtoolError:
        return None
    try:
        return sniff(reader.read(6))
    finally:
        reader.close()


def compression_mismatch(image: Image, layer: Layer, actual: Compression | None) -> str | None:
    """The warning for a layer whose bytes are not compressed as its media type says, if they are not.

    A media type imgtool derived itself (a docker-save tarball has none; imgtool labels its layers
    as skopeo does) is not the image's word, and is not held against it.
    """
    declared = LAYER_TYPES.get(layer.media_type)
    if actual is None or declared is None or image.manifest_synthesized or declared == actual.value:
        return None
    if layer.blob_unchecked is not None:  # the source serves the layer's tar in place of the blob
        return None
    found = "not compressed" if actual is Compression.NONE else f"{actual.value}-compressed"
    return f"{layer.what}: media type {layer.media_type} says {declared}, but the blob is {found}"


def layer_warnings(image: Image, layer: Layer, actual: Compression | None = None) -> list[str]:
    """The warnings about a layer that need no more than a look at its first bytes; of a registry's
    layer, only when ``actual`` was found while reading it."""
    if image.manifest_synthesized or LAYER_TYPES.get(layer.media_type) is None:
        return []
    if actual is None and fetched(image):
        return []
    message = compression_mismatch(image, layer, actual if actual is not None else blob_compression(layer))
    return [message] if message else []
