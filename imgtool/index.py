"""Per-layer header indexes, built while streaming and cached on disk by diff_id.

A layer's index lists its entries (path, type, mode, owner, size, mtime, link,
xattrs and the sha256 of each regular file's content). It is written to the
cache only after the layer's digests verified, and since a diff_id is a content
address, a cached index never goes stale. Writes go to a temporary file that is
renamed into place, so concurrent runs are safe.
"""

from __future__ import annotations

import marshal
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from imgtool.digest import CONTENT_HASH, Digest
from imgtool.errors import LayerError
from imgtool.findings import layer_warnings
from imgtool.image import Image, Layer
from imgtool.progress import LockedProgress, NoProgress, Progress
from imgtool.spool import Spool, Tee
from imgtool.tarstream import ENTRY_FIELDS, Entry, LayerReader

FORMAT_VERSION: Final = 4
DEFAULT_WORKERS: Final = 2


@dataclass(slots=True)
class LayerIndex:
    diff_id: Digest
    entries: list[Entry]
    warnings: list[str] = field(default_factory=list)
    has_digests: bool = True  # every regular file's content digest was computed, with CONTENT_HASH


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgtool"


class IndexCache:
    """Layer indexes on disk under ``<cache dir>/index-v4/<algorithm>/<hex>``, one column per field.

    flatten needs no content digests and stores indexes without them; the commands that
    compare contents ask for digests, and an index without them (or with digests of another
    algorithm, written where blake3 was or was not installed) is then built again.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = (directory or default_cache_dir()) / f"index-v{FORMAT_VERSION}"

    def _path(self, diff_id: Digest) -> Path:
        return self.directory / diff_id.algorithm / diff_id.hex

    def load(self, diff_id: Digest, need_digests: bool = True) -> LayerIndex | None:
        try:
            # marshal.loads over the whole file: marshal.load reads a file object in tiny pieces.
            doc = marshal.loads(self._path(diff_id).read_bytes())  # noqa: S302 - our own cache
            has_digests = doc["digests"] == CONTENT_HASH
            if need_digests and not has_digests:
                return None
            columns = doc["columns"]
            if not has_digests:  # digests of another algorithm must never meet ours
                columns["digest"] = [None] * len(columns["path"])
            entries = list(map(Entry, *(columns[name] for name in ENTRY_FIELDS)))
            return LayerIndex(diff_id, entries, list(doc["warnings"]), has_digests)
        except (OSError, EOFError, ValueError, TypeError, KeyError):
            return None  # absent or unreadable: rebuild it

    def store(self, index: LayerIndex) -> None:
        path = self._path(index.diff_id)
        columns = {name: [getattr(entry, name) for entry in index.entries] for name in ENTRY_FIELDS}
        doc = {
            "version": FORMAT_VERSION,
            "columns": columns,
            "warnings": index.warnings,
            "digests": CONTENT_HASH if index.has_digests else None,
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(marshal.dumps(doc))
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass  # a cache that cannot be written only costs speed


def check_indexed(found: Entry, known: Entry, what: str) -> None:
    """A streamed entry must be the one the index describes (same position, path and size)."""
    if (found.ordinal, found.path, found.size) != (known.ordinal, known.path, known.size):
        raise LayerError(f"{what}: entry {found.ordinal} differs from the layer's index (the layer changed?)")


def build_layer_index(
    layer: Layer,
    progress: Progress | None = None,
    max_size: int | None = None,
    spool: Spool | None = None,
    hash_content: bool = True,
) -> LayerIndex:
    """Read a whole layer once: every header, the hash of every file, both digests checked.

    With a ``spool``, the uncompressed stream is also kept there once it has verified.
    Without ``hash_content``, files get no content digest.
    """
    warnings: list[str] = []
    with layer.open(max_size) as stream:
        if progress is not None:
            stream.on_compressed_bytes = progress.advance
        if spool is None:
            reader = LayerReader(stream, layer.what, warnings.append, hash_content=hash_content)
            entries = list(reader)
            stream.finish(reader)
            return LayerIndex(layer.diff_id, entries, warnings, hash_content)
        fd, path = spool.start(layer.index)
        complete = False
        try:
            tee = Tee(stream, fd, spool.take)
            reader = LayerReader(tee, layer.what, warnings.append, hash_content=hash_content)
            entries = list(reader)
            reader.drain()
            stream.finish()
            complete = not tee.failed
        finally:
            spool.finish(layer.index, fd, path, complete)
    return LayerIndex(layer.diff_id, entries, warnings, hash_content)


def index_image(
    image: Image,
    *,
    cache: IndexCache | None = None,
    progress: Progress | None = None,
    max_size: int | None = None,
    upto: int | None = None,
    workers: int = DEFAULT_WORKERS,
    warn: Callable[[str], None] | None = None,
    spool: Spool | None = None,
    hash_content: bool = True,
) -> list[LayerIndex]:
    """The index of every layer (or of layers ``0..upto``), from the cache where possible.

    Layers read here are kept uncompressed in ``spool``, when one is given. Without
    ``hash_content`` an index need not hold content digests (flatten has no use for them).
    """
    layers: Sequence[Layer] = image.layers if upto is None else image.layers[: upto + 1]
    found: dict[int, LayerIndex] = {}
    missing: list[Layer] = []
    for layer in layers:
        cached = cache.load(layer.diff_id, need_digests=hash_content) if cache is not None else None
        if cached is not None:
            found[layer.index] = cached
        else:
            layer.check_media_type()
            missing.append(layer)
    if missing:
        shown = LockedProgress(progress or NoProgress())
        shown.start("indexing layers", sum(layer.size for layer in missing))
        try:
            # Largest first, so that no big layer is left to run alone at the end.
            ordered = sorted(missing, key=lambda layer: layer.size, reverse=True)
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                built = pool.map(
                    lambda layer: build_layer_index(layer, shown, max_size, spool, hash_content), ordered
                )
                for layer, index in zip(ordered, built, strict=True):
                    found[layer.index] = index
                    if cache is not None:
                        cache.store(index)
        finally:
            shown.finish()
    result = [found[layer.index] for layer in layers]
    if warn is not None:
        for layer, index in zip(layers, result, strict=True):
            for message in [*layer_warnings(image, layer), *index.warnings]:
                warn(message)
    return result
