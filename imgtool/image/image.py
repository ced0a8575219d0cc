"""An opened image: its manifest, config and layers, whatever source it came from.

Sources reduce to blobs by digest plus the choice of manifest (``imgtool.sources.core``);
everything else (verification, decompression, layer entries) is derived from that, once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from imgtool.errors import LayerError, LimitExceededError, MediaTypeError
from imgtool.image.compression import CHUNK, Compression, open_decompressed
from imgtool.image.digest import Digest, VerifyingReader
from imgtool.image.mediatypes import FOREIGN_LAYER_TYPES, LAYER_TYPES
from imgtool.image.model import HistoryEntry, ImageConfig, IndexInfo, Manifest
from imgtool.image.platform import Platform
from imgtool.image.readable import Readable

if TYPE_CHECKING:
    from imgtool.image.readable import BlobSource, Drainable, RawStream

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Unchecked:
    """What a source cannot check of a layer, and why (a store that keeps layers unpacked).

    ``blob``: the stored blob is not there; the source serves the layer's uncompressed tar in its
    place, so the blob digest and size go unchecked. ``diff_id``: nothing the source holds tells
    what that tar's digest should be (a directory walked without a tar-split): it goes unchecked,
    and the layer's index is never cached.
    """

    blob: str | None = None
    diff_id: str | None = None


@dataclass(eq=False)
class Layer:
    """One layer of an image, bottom first (``index`` 0 is the base)."""

    index: int
    media_type: str
    digest: Digest
    size: int
    diff_id: Digest
    history: HistoryEntry | None
    urls: tuple[str, ...]
    _opener: Callable[[], RawStream] | None = field(repr=False)
    unchecked: Unchecked | None = None

    @property
    def blob_unchecked(self) -> str | None:
        return self.unchecked.blob if self.unchecked else None

    @property
    def diff_id_unchecked(self) -> str | None:
        return self.unchecked.diff_id if self.unchecked else None

    @property
    def what(self) -> str:
        return f"layer {self.index} ({self.digest})"

    @property
    def present(self) -> bool:
        """Whether the source holds the blob (a non-distributable layer's it may not)."""
        return self._opener is not None

    @property
    def created_by(self) -> str | None:
        return self.history.created_by if self.history else None

    def check_media_type(self) -> None:
        if self.media_type not in LAYER_TYPES:
            raise MediaTypeError(f"{self.what}: unsupported layer media type {self.media_type!r}")

    def open_blob(self) -> VerifyingReader:
        """The stored (possibly compressed) blob, verified against its digest and size at EOF."""
        self.check_media_type()
        if self._opener is None:
            where = f"; it is distributed from {', '.join(self.urls)}" if self.urls else ""
            kind = "foreign (non-distributable) " if self.media_type in FOREIGN_LAYER_TYPES else ""
            raise MediaTypeError(f"{self.what}: {kind}layer blob is not present in the image{where}")
        if self.blob_unchecked is not None:  # the layer's tar, not the blob: nothing to hold it to
            return VerifyingReader(self._opener(), self.digest, None, f"{self.what} blob", check_digest=False)
        return VerifyingReader(self._opener(), self.digest, self.size, f"{self.what} blob")

    def open(self, max_size: int | None = None) -> LayerStream:
        """The uncompressed tar stream; :meth:`LayerStream.finish` verifies both digests."""
        return LayerStream(self, max_size)


class LayerStream:
    """A layer's uncompressed tar, counted and hashed as it is read."""

    def __init__(self, layer: Layer, max_size: int | None) -> None:
        self.layer = layer
        self._blob = layer.open_blob()
        self._max_size = max_size
        self.compression, decompressed = open_decompressed(self._blob, f"{layer.what} blob")
        self._tar: Readable
        same = layer.digest == layer.diff_id and layer.blob_unchecked is None
        if layer.diff_id_unchecked is not None or (self.compression is Compression.NONE and same):
            self._tar = decompressed  # the blob digest already covers these very bytes, or nothing can
        else:
            self._tar = VerifyingReader(decompressed, layer.diff_id, None, f"{layer.what} diff_id", "diff_id")
        self.uncompressed_bytes = 0
        self.on_compressed_bytes: Callable[[int], None] | None = None
        self._reported = 0

    @property
    def compressed_bytes(self) -> int:
        return self._blob.bytes_read

    def read(self, n: int = CHUNK) -> bytes:
        try:
            data = self._tar.read(n)
        except LayerError:
            # Undecodable data in a blob that is not what its digest names: the digest is what is
            # wrong (a byte corrupted on the way), and it is what the error names.
            self._blob.drain()
            raise
        self.uncompressed_bytes += len(data)
        if self.on_compressed_bytes is not None:
            done = self._blob.bytes_read
            self.on_compressed_bytes(done - self._reported)
            self._reported = done
        if self._max_size is not None and self.uncompressed_bytes > self._max_size:
            raise LimitExceededError(
                f"{self.layer.what}: uncompressed size exceeds the limit of {self._max_size} bytes "
                "(raise it with --max-size)"
            )
        return data

    def finish(self, reader: Drainable | None = None) -> None:
        """Read to the end of both streams so that both digests are checked."""
        if reader is not None:
            reader.drain()
        while self.read(CHUNK):
            pass
        self._blob.drain()

    def close(self) -> None:
        self._blob.close()

    def __enter__(self) -> LayerStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(eq=False)
class Image:
    """An image opened from a local source; use as a context manager or call :meth:`close`."""

    reference: str
    transport: str
    stored_manifest_digest: Digest | None = field(repr=False)
    manifest_media_type: str
    manifest: Manifest
    stored_manifest_bytes: bytes = field(repr=False)
    config_digest: Digest
    config: ImageConfig
    config_bytes: bytes
    tags: list[str]
    layers: list[Layer]
    store: BlobSource = field(repr=False)  # the source the image was opened from
    manifest_synthesized: bool = False  # docker save stores no manifest: imgtool derived this one
    index: IndexInfo | None = None  # the image index this manifest was chosen from, if any
    # A manifest that costs reading the layers to derive (skopeo's for a docker-save with compressed
    # layers: their uncompressed sizes) is derived the first time it is asked for, while the image is open.
    derive_manifest: Callable[[], bytes] | None = field(default=None, repr=False)
    # The image index the reference names, as stored (None: it names a manifest, or index.json lists
    # the platforms itself).
    index_bytes: bytes | None = field(default=None, repr=False)

    @property
    def manifest_bytes(self) -> bytes:
        self._derive()
        return self.stored_manifest_bytes

    @property
    def manifest_digest(self) -> Digest | None:
        self._derive()
        return self.stored_manifest_digest

    def _derive(self) -> None:
        if self.derive_manifest is not None:
            data = self.derive_manifest()
            self.stored_manifest_bytes, self.stored_manifest_digest = data, Digest.of_bytes(data)
            self.derive_manifest = None

    @property
    def platform(self) -> Platform:
        return self.config.platform

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Image:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
