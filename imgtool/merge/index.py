"""Per-layer header indexes, built while streaming and cached on disk by diff_id.

A layer's index lists its entries (path, type, mode, owner, size, mtime, link,
xattrs and the sha256 of each regular file's content). It is written to the
cache only after the layer's digests verified, and since a diff_id is a content
address, a cached index never goes stale. Writes go to a temporary file that is
renamed into place, so concurrent runs are safe.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import re
import tempfile
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from imgtool.errors import LayerError
from imgtool.image.digest import CONTENT_HASH, Digest
from imgtool.image.findings import layer_warnings
from imgtool.image.image import Image, Layer
from imgtool.layers.tarstream import ENTRY_FIELDS, KIND_BY_VALUE, Entry, Kind, LayerReader
from imgtool.merge.spool import Spool, Tee
from imgtool.progress import LockedProgress, NoProgress, Progress
from imgtool.system.cachedir import cache_home

FORMAT_VERSION: Final = 5
DEFAULT_WORKERS: Final = 2


@dataclass(slots=True)
class LayerIndex:
    diff_id: Digest
    entries: list[Entry]
    warnings: list[str] = field(default_factory=list)
    has_digests: bool = True  # every regular file's content digest was computed, with CONTENT_HASH


def default_cache_dir() -> Path:
    return cache_home()


class IndexCache:
    """Layer indexes on disk under ``<cache dir>/index-v5/<algorithm>/<hex>``, one column per field.

    A column is stored in a form that holds nothing but its type: paths and link targets as one
    byte string joined with NUL (which no name holds), kinds as one byte each, numbers as 64-bit
    arrays; the few xattrs and sparse maps by entry position. So a file another program wrote,
    or a damaged one, is told from a good one by checks at C speed, and loading stays cheap.

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
        path = self._path(diff_id)
        try:
            # marshal.loads over the whole file: marshal.load reads a file object in tiny pieces.
            doc = marshal.loads(path.read_bytes())  # noqa: S302 - checked below
        except (OSError, EOFError, ValueError, TypeError):
            return None  # absent or unreadable: rebuild it
        columns = _decoded(doc)
        if columns is None:
            return None  # written by something else, or damaged: never trusted
        with contextlib.suppress(OSError):
            os.utime(path)  # used now: the last `imgtool cache prune` removes
        has_digests = doc["digests"] == CONTENT_HASH
        if need_digests and not has_digests:
            return None
        if not has_digests:  # digests of another algorithm must never meet ours
            columns["digest"] = [None] * len(columns["path"])
        entries = list(map(Entry, *(columns[name] for name in ENTRY_FIELDS)))
        return LayerIndex(diff_id, entries, list(doc["warnings"]), has_digests)

    def store(self, index: LayerIndex) -> None:
        doc = _encoded(index)
        if doc is None:
            return  # a number too large for the format: the layer is read again next time
        path = self._path(index.diff_id)
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
# Numbers stored as 64-bit arrays: signed where a tar may hold a negative value, unsigned where none
# is possible (so a negative one cannot be read back).
_NUMBERS: Final = {
    "mode": "q",
    "uid": "q",
    "gid": "q",
    "size": "Q",
    "mtime_ns": "q",
    "ordinal": "Q",
    "offset": "Q",
}
# Columns that most entries leave at their default, stored as {position: value} for the others.
_SPARSE_COLUMNS: Final[dict[str, object]] = {
    "link": b"",
    "devmajor": 0,
    "devminor": 0,
    "xattrs": None,
    "sparse": None,
}
_KIND_BYTES: Final = bytes(KIND_BY_VALUE)
# What shows where a path is not canonical, once the paths that are not the root are joined with "/"
# between and around them: a leading, trailing or doubled slash, a "." or ".." component.
_NOT_CANONICAL: Final = re.compile(rb"/\.{0,2}/")


def _encoded(index: LayerIndex) -> dict[str, object] | None:
    """The document a cache file holds for ``index``; None when a number does not fit 64 bits."""
    entries = index.entries
    try:
        numbers = {
            name: array(code, [getattr(entry, name) for entry in entries]).tobytes()
            for name, code in _NUMBERS.items()
        }
    except OverflowError:
        return None
    by_position = {
        name: {at: value for at, entry in enumerate(entries) if (value := getattr(entry, name)) != default}
        for name, default in _SPARSE_COLUMNS.items()
    }
    return {
        "version": FORMAT_VERSION,
        "count": len(entries),
        "path": b"\x00".join([entry.path for entry in entries]),
        "kind": bytes([entry.kind for entry in entries]),
        "numbers": numbers,
        "digest": [entry.digest for entry in entries],
        "by_position": by_position,
        "warnings": index.warnings,
        "digests": CONTENT_HASH if index.has_digests else None,
    }


def _decoded(doc: object) -> dict[str, list[Any]] | None:
    """The columns of a cache file this version wrote, or None when it is anything else: every column
    of one length and of its type, known entry kinds, canonical paths, the root only as a directory."""
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        return None
    count, warnings = doc.get("count"), doc.get("warnings")
    if type(count) is not int or not isinstance(warnings, list) or not set(map(type, warnings)) <= {str}:
        return None
    if not isinstance(doc.get("digests"), str | None):
        return None
    joined, kinds = doc.get("path"), doc.get("kind")
    if type(joined) is not bytes or type(kinds) is not bytes or (not count and joined):
        return None
    paths = joined.split(b"\x00") if count else []
    if len(paths) != count or len(kinds) != count or kinds.translate(None, _KIND_BYTES):
        return None
    if _NOT_CANONICAL.search(b"/" + b"/".join(filter(None, paths)) + b"/"):
        return None
    columns: dict[str, list[Any]] = {"path": paths, "kind": list(map(KIND_BY_VALUE.__getitem__, kinds))}
    numbers = doc.get("numbers")
    if not isinstance(numbers, dict) or numbers.keys() != _NUMBERS.keys():
        return None
    for name, code in _NUMBERS.items():
        stored = numbers[name]
        if type(stored) is not bytes or len(stored) != 8 * count:
            return None
        values = array(code)
        values.frombytes(stored)
        columns[name] = values.tolist()
    digests = doc.get("digest")
    if (
        not isinstance(digests, list)
        or len(digests) != count
        or not set(map(type, digests)) <= {bytes, _NONE}
    ):
        return None
    columns["digest"] = digests
    by_position = doc.get("by_position")
    if not isinstance(by_position, dict) or by_position.keys() != _SPARSE_COLUMNS.keys():
        return None
    for name, default in _SPARSE_COLUMNS.items():
        found = by_position[name]
        if not isinstance(found, dict) or not all(
            _valid_value(name, at, value, count) for at, value in found.items()
        ):
            return None
        spread: list[Any] = [default] * count
        for at, value in found.items():
            spread[at] = value
        columns[name] = spread
    if not _root_is_a_directory(paths, columns["kind"]):
        return None
    return columns


def _valid_value(name: str, at: object, value: object, count: int) -> bool:
    """Whether ``value`` may be the ``name`` of the entry at ``at``: a link target (bytes), a device
    number, xattrs (str to bytes), a sparse map ((offset, length) pairs)."""
    if type(at) is not int or not 0 <= at < count:
        return False
    if name == "link":
        return type(value) is bytes
    if name in ("devmajor", "devminor"):
        return type(value) is int
    if name == "xattrs":
        return (
            type(value) is dict
            and set(map(type, value)) <= {str}
            and set(map(type, value.values())) <= {bytes}
        )
    return (
        type(value) is tuple
        and not len(value) % 2
        and set(map(type, value)) <= {int}
        and (not value or min(value) >= 0)
    )


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


def layer_index(layer: Layer, cache: IndexCache | None, max_size: int | None = None) -> LayerIndex:
    """One layer's index (with content digests), from the cache when it has it, else built (and
    stored there)."""
    cacheable = layer.diff_id_unchecked is None  # a diff_id never checked is no content address
    cached = cache.load(layer.diff_id) if cache and cacheable else None
    if cached is not None:
        return cached
    layer.check_media_type()
    index = build_layer_index(layer, None, max_size)
    if cache is not None and cacheable:
        cache.store(index)
    return index


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
        cacheable = layer.diff_id_unchecked is None  # a diff_id never checked is no content address
        cached = cache.load(layer.diff_id, need_digests=hash_content) if cache and cacheable else None
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
                    if cache is not None and layer.diff_id_unchecked is None:
                        cache.store(index)
        finally:
            shown.finish()
    result = [found[layer.index] for layer in layers]
    if warn is not None:
        for layer, index in zip(layers, result, strict=True):
            for message in [*layer_warnings(image, layer), *index.warnings]:
                warn(message)
    return result
