"""squash: a new image whose layers ``first..last`` are merged into one, the others kept as they
are (the same blobs), written to any destination ``copy`` writes to.

The merged layer is flatten's tar of those layers, as a layer (:mod:`imgtool.flatten.layer`: a
range above the base keeps the whiteouts of what it removed below), compressed (gzip by default,
as ``crane flatten`` compresses, at its level 9), kept in an unlinked temporary file. The config
keeps every field but two: ``rootfs.diff_ids`` (the merged layer's in place of the range's) and
``history``, where the entries of the range (those that made its layers and the ``empty_layer``
ones between them and after the layer below) become one entry, as docker-squash and ``crane
flatten`` replace them by one: its ``created`` is the last of theirs (docker-squash stamps the
time of squashing, which would make every run a new image), ``created_by`` says what was squashed
and from which manifest, and ``comment`` holds the entries folded, as JSON (where crane keeps the
old history). The manifest keeps its fields and the descriptors of the layers kept, byte for byte. Then
the new image goes through :func:`imgtool.ops.copy.copy_image`: every blob verified on the way,
the manifest last, nothing left at the destination if anything fails.
"""

from __future__ import annotations

import contextlib
import copy as deep
import dataclasses
import hashlib
import json
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Final, cast

import zstandard

from imgtool.errors import OutputError, UsageError
from imgtool.flatten.layer import check_range, write_layer
from imgtool.image.destination import Destination
from imgtool.image.digest import Digest
from imgtool.image.image import Image, Layer
from imgtool.image.mediatypes import DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_MANIFEST
from imgtool.image.model import load_json, parse_config, parse_manifest
from imgtool.image.readable import FileSlice, RawStream
from imgtool.merge.index import IndexCache
from imgtool.ops.copy import DEFAULT_JOBS, CopyResult, copy_image
from imgtool.progress import Progress
from imgtool.system.staging import no_space

COMPRESSIONS: Final = ("gzip", "zstd", "none")
GZIP_LEVEL: Final = 9  # crane flatten's (gzip.BestCompression)
ZSTD_LEVEL: Final = 3  # zstd's own default
_OCI_LAYER: Final = "application/vnd.oci.image.layer.v1.tar"
_OCI_SUFFIX: Final = {"gzip": "+gzip", "zstd": "+zstd", "none": ""}


@dataclass(frozen=True, slots=True)
class SquashedLayer:
    index: int  # its place in the new image
    digest: str
    diff_id: str
    size: int  # the blob's
    uncompressed_size: int
    media_type: str


@dataclass(frozen=True, slots=True)
class SquashResult:
    source: str
    destination: str
    first: int  # the range squashed, layers of the source
    last: int
    layers_before: int
    layers_after: int
    layer: SquashedLayer
    config_digest: str
    manifest_digest: str
    copy: CopyResult


def layer_media_type(manifest_media_type: str, compression: str) -> str:
    """The merged layer's media type, in the manifest's family; zstd has none in Docker's."""
    if compression not in COMPRESSIONS:
        raise UsageError(f"--compress {compression}: choose one of {', '.join(COMPRESSIONS)}")
    if manifest_media_type != DOCKER_MANIFEST:
        return _OCI_LAYER + _OCI_SUFFIX[compression]
    if compression == "zstd":
        raise UsageError(
            "--compress zstd: the image has a Docker manifest, which has no zstd layer type; use gzip or none"
        )
    return DOCKER_LAYER_GZIP if compression == "gzip" else DOCKER_LAYER


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    """An OSError writing the layer's temporary file, as the error of the output it is."""
    try:
        yield
    except OSError as exc:
        where = tempfile.gettempdir()
        full = no_space(exc, where, "writing the squashed layer", "set TMPDIR to a larger directory")
        raise (
            full or OutputError(f"writing the squashed layer into {where}: {exc.strerror or exc}")
        ) from exc


class _Compressor:
    """Takes the layer tar as the tar writer writes it: hashes it (the diff_id), compresses it,
    hashes the result (the blob digest) and writes that to ``out``."""

    def __init__(self, out: IO[bytes], compression: str) -> None:
        self._out = out
        self._tar = hashlib.sha256()
        self._blob = hashlib.sha256()
        self.tar_size = 0
        self.blob_size = 0
        self._compress: Callable[[bytes | memoryview], bytes] | None = None
        self._flush: Callable[[], bytes] | None = None
        if compression == "gzip":
            gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
            self._compress, self._flush = gz.compress, gz.flush
        elif compression == "zstd":
            zs = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
            self._compress, self._flush = zs.compress, zs.flush

    def write(self, data: bytes | memoryview) -> int:
        self._tar.update(data)
        self.tar_size += len(data)
        self._emit(self._compress(data) if self._compress is not None else bytes(data))
        return len(data)

    def _emit(self, data: bytes) -> None:
        if data:
            self._blob.update(data)
            self.blob_size += len(data)
            with _writing():
                self._out.write(data)

    def flush(self) -> None:
        """Nothing to do: the tar writer flushes only a file it hands to the kernel, and this is
        none; :meth:`finish` ends the compressed stream."""

    def finish(self) -> tuple[Digest, Digest]:
        """The end of the stream: returns (blob digest, diff_id)."""
        if self._flush is not None:
            self._emit(self._flush())
        with _writing():
            self._out.flush()
        return Digest("sha256", self._blob.hexdigest()), Digest("sha256", self._tar.hexdigest())


def fold_history(
    entries: list[dict[str, Any]], first: int, last: int, created_by: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The history with the entries of layers ``first..last`` (and the ``empty_layer`` entries
    after layer ``first - 1`` up to layer ``last``) folded into one; returns it and those folded."""
    kept: list[dict[str, Any]] = []
    folded: list[dict[str, Any]] = []
    at: int | None = None
    made = 0  # layers made by the entries before this one
    for entry in entries:
        empty = entry.get("empty_layer") is True
        if first <= made <= last:
            folded.append(entry)
        else:
            if made < first:
                at = len(kept) + 1
            kept.append(entry)
        if not empty:
            made += 1
    new: dict[str, Any] = {}
    created = [e["created"] for e in folded if isinstance(e.get("created"), str)]
    if created:
        new["created"] = created[-1]
    new["created_by"] = created_by
    if folded:
        new["comment"] = json.dumps(folded, separators=(",", ":"))
    position = at or 0
    return [*kept[:position], new, *kept[position:]], folded


def _document(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


@contextlib.contextmanager
def _layer_file() -> Iterator[IO[bytes]]:
    """An unlinked temporary file for the merged layer's blob: gone however the process ends."""
    try:
        handle = tempfile.TemporaryFile(prefix="imgtool-squash-")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise OutputError(f"cannot make a temporary file in {tempfile.gettempdir()}: {exc}") from exc
    try:
        yield handle
    finally:
        with contextlib.suppress(OSError):  # what it holds is thrown away: a failing flush is no news
            handle.close()


def squash_image(
    image: Image,
    dest: Destination,
    *,
    first: int | None = None,
    last: int | None = None,
    compression: str = "gzip",
    cache: IndexCache | None = None,
    progress: Progress | None = None,
    max_size: int | None = None,
    warn: Callable[[str], None] | None = None,
    jobs: int = DEFAULT_JOBS,
) -> SquashResult:
    """Write ``image`` with its layers ``first..last`` (0 is the base; default: all) merged into one
    to ``dest``; ``dest`` is left as it was on any failure."""
    top = len(image.layers) - 1
    first = 0 if first is None else first
    last = top if last is None else last
    check_range(image, first, last)
    media_type = layer_media_type(image.manifest_media_type, compression)
    source_digest = image.manifest_digest or Digest.of_bytes(image.manifest_bytes)
    with _layer_file() as handle:
        sink = _Compressor(handle, compression)
        # The tar writer needs only write() and flush() of its output.
        out = cast(BinaryIO, sink)
        write_layer(image, out, first, last, cache=cache, progress=progress, max_size=max_size, warn=warn)
        digest, diff_id = sink.finish()
        fd = handle.fileno()
        size = sink.blob_size

        def open_layer() -> RawStream:
            return FileSlice(fd, 0, size)

        created_by = f"imgtool squash --from {first} --to {last} {source_digest}"
        new_image = _rebuilt(image, first, last, media_type, digest, size, diff_id, open_layer, created_by)
        copied = copy_image(new_image, dest, jobs=jobs, progress=progress)
    return SquashResult(
        source=image.reference,
        destination=dest.location,
        first=first,
        last=last,
        layers_before=len(image.layers),
        layers_after=len(new_image.layers),
        layer=SquashedLayer(first, str(digest), str(diff_id), size, sink.tar_size, media_type),
        config_digest=str(new_image.config_digest),
        manifest_digest=copied.manifest_digest,
        copy=copied,
    )


def _rebuilt(  # noqa: PLR0917 - one caller: the facts of the merged layer
    image: Image,
    first: int,
    last: int,
    media_type: str,
    digest: Digest,
    size: int,
    diff_id: Digest,
    open_layer: Callable[[], RawStream],
    created_by: str,
) -> Image:
    """The image with the merged layer in place of layers ``first..last``: new config, new manifest."""
    config = deep.deepcopy(dict(image.config.raw))
    rootfs = dict(config["rootfs"])
    diff_ids = [str(d) for d in image.config.diff_ids]
    rootfs["diff_ids"] = [*diff_ids[:first], str(diff_id), *diff_ids[last + 1 :]]
    config["rootfs"] = rootfs
    history = config.get("history")
    if isinstance(history, list) and history:
        config["history"], _ = fold_history(history, first, last, created_by)
    config_bytes = _document(config)
    config_digest = Digest.of_bytes(config_bytes)

    manifest = load_json(image.manifest_bytes, f"{image.reference}: manifest")
    descriptors = list(manifest["layers"])
    merged = {"mediaType": media_type, "digest": str(digest), "size": size}
    manifest["layers"] = [*descriptors[:first], merged, *descriptors[last + 1 :]]
    manifest["config"] = {**manifest["config"], "digest": str(config_digest), "size": len(config_bytes)}
    manifest_bytes = _document(manifest)

    what = f"{image.reference}: squashed"
    parsed_config = parse_config(load_json(config_bytes, f"{what} config"), f"{what} config")
    kept = [*image.layers[:first], None, *image.layers[last + 1 :]]
    made = parsed_config.layer_history(len(kept))
    layers: list[Layer] = []
    for index, old in enumerate(kept):
        history = made[index]
        if old is None:
            layers.append(Layer(index, media_type, digest, size, diff_id, history, (), open_layer))
        else:
            layers.append(dataclasses.replace(old, index=index, history=history))
    return dataclasses.replace(
        image,
        stored_manifest_digest=Digest.of_bytes(manifest_bytes),
        manifest=parse_manifest(load_json(manifest_bytes, f"{what} manifest"), f"{what} manifest"),
        stored_manifest_bytes=manifest_bytes,
        config_digest=config_digest,
        config=parsed_config,
        config_bytes=config_bytes,
        layers=layers,
        manifest_synthesized=False,
        index=None,
        derive_manifest=None,
        index_bytes=None,
    )
