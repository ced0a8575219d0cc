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

from imgtool.errors import LayerError
from imgtool.image.digest import CONTENT_HASH, Digest
from imgtool.image.findings import layer_warnings
from imgtool.image.image import Image, Layer
from imgtool.layers.tarstream import ENTRY_FIELDS, KIND_BY_VALUE, KIND_NAMES, Entry, Kind, LayerReader
from imgtool.merge.spool import Spool, Tee
from imgtool.progress import LockedProgress, NoProgress, Progress

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
        """The cached index, or None when there is none or it fails validation (it is then rebuilt)."""
        try:
            # marshal.loads over the whole file: marshal.load reads a file object in tiny pieces.
            doc = marshal.loads(self._path(diff_id).read_bytes())  # noqa: S302 - checked below
        except (OSError, EOFError, ValueError, TypeError):
            return None  # absent or unreadable: rebuild it
        if not _valid_document(doc):
            return None  # written by something else, or damaged: never trusted
        has_digests = doc["digests"] == CONTENT_HASH
        if need_digests and not has_digests:
            return None
        columns = doc["columns"]
        if not has_digests:  # digests of another algorithm must never meet ours
            columns["digest"] = [None] * len(columns["path"])
        columns["kind"] = list(map(KIND_BY_VALUE.__getitem__, columns["kind"]))  # stored as plain ints
        entries = list(map(Entry, *(columns[name] for name in ENTRY_FIELDS)))
        return LayerIndex(diff_id, entries, list(doc["warnings"]), has_digests)

    def store(self, index: LayerIndex) -> None:
        path = self._path(index.diff_id)
        columns = {name: [getattr(entry, name) for entry in index.entries] for name in ENTRY_FIELDS}
        columns["kind"] = list(map(int, columns["kind"]))  # marshal refuses int subclasses such as Kind
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


_NONE: Final = type(None)
# What each column of a cached index may hold (exact types: a bool is not a number here).
_COLUMN_TYPES: Final[dict[str, frozenset[type]]] = {
    "path": frozenset({bytes}),
    "kind": frozenset({int}),
    "mode": frozenset({int}),
    "uid": frozenset({int}),
    "gid": frozenset({int}),
    "size": frozenset({int}),
    "mtime_ns": frozenset({int}),
    "link": frozenset({bytes}),
    "devmajor": frozenset({int}),
    "devminor": frozenset({int}),
    "xattrs": frozenset({dict, _NONE}),
    "digest": frozenset({bytes, _NONE}),
    "ordinal": frozenset({int}),
    "offset": frozenset({int}),
    "sparse": frozenset({tuple, _NONE}),
}
_NOT_NEGATIVE: Final = ("size", "ordinal", "offset")
# Where a path that is not canonical shows, once the paths are joined with NUL (which no path holds)
# between and around them: a leading, trailing or doubled slash, a "." or ".." component.
_NOT_CANONICAL: Final = (b"\x00/", b"/\x00", b"//", b"/./", b"/../", b"\x00./", b"\x00../", b"/.\x00")
_NOT_CANONICAL_WHOLE: Final = (b"/..\x00", b"\x00.\x00", b"\x00..\x00")


def _valid_document(doc: object) -> bool:
    """Whether a cache file holds an index this version wrote: every column of every field, all of one
    length and of the right types, known entry kinds, canonical paths, and the root only as a
    directory. Each check runs over a whole column at C speed: loading stays cheap."""
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        return False
    columns, warnings = doc.get("columns"), doc.get("warnings")
    if not isinstance(columns, dict) or not isinstance(warnings, list):
        return False
    if not set(map(type, warnings)) <= {str} or not isinstance(doc.get("digests"), str | None):
        return False
    paths = columns.get("path")
    if not isinstance(paths, list):
        return False
    for name in ENTRY_FIELDS:
        column = columns.get(name)
        allowed = _COLUMN_TYPES.get(name)
        if allowed is None or not isinstance(column, list) or len(column) != len(paths):
            return False
        if not set(map(type, column)) <= allowed:
            return False
    if not paths:
        return True
    if not set(columns["kind"]) <= KIND_NAMES.keys():
        return False
    if any(min(columns[name]) < 0 for name in _NOT_NEGATIVE):
        return False
    for xattrs in filter(None, columns["xattrs"]):
        if not (set(map(type, xattrs)) <= {str} and set(map(type, xattrs.values())) <= {bytes}):
            return False
    for regions in filter(None, columns["sparse"]):  # (offset, length) pairs of stored data
        if len(regions) % 2 or not set(map(type, regions)) <= {int} or min(regions) < 0:
            return False
    joined = b"\x00" + b"\x00".join(paths) + b"\x00"
    if joined.count(b"\x00") != len(paths) + 1 or any(bad in joined for bad in _NOT_CANONICAL):
        return False
    if any(bad in joined for bad in _NOT_CANONICAL_WHOLE):
        return False
    return _root_is_a_directory(paths, columns["kind"])


def _root_is_a_directory(paths: list[bytes], kinds: list[int]) -> bool:
    """The root (the empty path) may only be a directory, or the directory an opaque marker clears."""
    at = -1
    try:
        while True:
            at = paths.index(b"", at + 1)
            if kinds[at] not in (Kind.DIR, Kind.OPAQUE):
                return False
    except ValueError:
        return True


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
