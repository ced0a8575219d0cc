"""The core every source implements, and nothing more: resolve a reference to a manifest, open a
blob by digest. Config, layers, diff_ids, platform and verification are derived from it in
:mod:`imgtool.sources.build`, once for all sources (as go-containerregistry's ``partial``
derives an image from a few methods).

Layers are blobs here because every source so far stores them as tars; a layer's entries are
read from that tar (``imgtool.layers.tarstream.layer_entries``), so a source whose layers are
directories needs only another producer of entries, not another build.

A new source is one module with a class implementing :class:`ImageSource` and a function
``Reference -> ImageSource``, registered in ``SOURCES`` in :mod:`imgtool.sources`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from imgtool.errors import ImageFormatError
from imgtool.image.digest import Digest
from imgtool.image.image import Unchecked
from imgtool.image.model import IndexInfo
from imgtool.image.platform import Platform
from imgtool.image.readable import BlobSource
from imgtool.sources.reference import Reference, require_exists
from imgtool.sources.stores import TarStore


@dataclass(frozen=True, slots=True)
class Resolved:
    """The manifest a reference leads to.

    ``digest`` is the manifest's as stored, None where the source has no stored manifest and
    synthesized these bytes (docker save): the digest is then theirs. With ``derive_manifest``,
    ``manifest_bytes`` is provisional (right in its config and layer blobs) and the image's
    manifest is what ``derive_manifest`` returns, the first time it is asked for. ``index`` is
    the image index the manifest was chosen from, if any; ``index_bytes`` the image index the
    reference names, as stored (None: it names a manifest, or the index is index.json itself).
    ``unchecked``: what the source cannot check of the layers it serves, by their digest in the
    manifest (a store of unpacked layers).
    """

    manifest_bytes: bytes
    media_type: str
    digest: Digest | None
    tags: tuple[str, ...] = ()
    index: IndexInfo | None = None
    derive_manifest: Callable[[], bytes] | None = None
    unchecked: dict[Digest, Unchecked] = field(default_factory=dict)
    index_bytes: bytes | None = None


class ImageSource(BlobSource, Protocol):
    """A source of images: blobs by digest (``open_blob``, ``has_blob``, ``blob_size``, ``close``)
    and the choice of a manifest."""

    transport: str

    def resolve(self, selector: str | None, platform: Platform | None) -> Resolved:
        """The manifest ``selector`` (a tag, ref or position; None: the only one) names, preferring
        ``platform`` among the images of an index."""
        ...

    def names(self) -> list[str]:
        """The names an image can be chosen by, for completion."""
        ...


SourceOpener = Callable[[Reference], ImageSource]


def open_tar(ref: Reference) -> TarStore:
    """The tar archive a file transport names; a directory is refused, naming the transport."""
    require_exists(ref)
    if os.path.isdir(ref.path):
        raise ImageFormatError(
            f"{ref.path}: is a directory ({ref.transport}: expects a tar file; oci:{ref.path} opens a layout)"
        )
    return TarStore(ref.path)
