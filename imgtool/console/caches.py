"""``imgtool cache``: what the caches hold, and pruning them. The two caches, side by side under
``$XDG_CACHE_HOME/imgtool``: blobs fetched from registries (``blobs/``, see
:mod:`imgtool.sources.registry.blobcache`) and layer header indexes (``index-vN/``, see
:mod:`imgtool.merge.index`). Both are laid out ``<algorithm>/<hex>``, and both set a file's mtime
when they use it: pruning removes the least recently used first, whichever cache it is in."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imgtool.merge.index import IndexCache
from imgtool.sources.registry.blobcache import BlobCache
from imgtool.system.cachedir import CacheFile, cache_files, evict, real_directory, remove, stale
from imgtool.system.fsutil import remove_tree


@dataclass(frozen=True, slots=True)
class CacheUsage:
    """One cache: where it is, how many files and bytes it holds, its limit (None: it has none)."""

    name: str
    directory: Path
    count: int
    size: int
    limit: int | None


@dataclass(frozen=True, slots=True)
class Pruned:
    """What a prune removed from one cache: how many files, how many bytes."""

    name: str
    count: int
    size: int


BLOBS = "blobs"
INDEXES = "header indexes"


def cache_info() -> list[CacheUsage]:
    """The blob cache and the header index cache, as they stand."""
    blobs, indexes = BlobCache(), IndexCache()
    blob_files, _ = blobs.usage()
    index_files, _ = cache_files(indexes.directory)
    return [
        CacheUsage(BLOBS, blobs.directory, len(blob_files), sum(f.size for f in blob_files), blobs.max_bytes),
        CacheUsage(INDEXES, indexes.directory, len(index_files), sum(f.size for f in index_files), None),
    ]


def prune_caches(max_bytes: int | None = None, everything: bool = False) -> list[Pruned]:
    """Shrink the caches: blobs and header indexes together to at most ``max_bytes`` (default: the
    blob cache's limit), least recently used first; ``everything``: empty both. Temporary files
    left by a run that died (a day old), and header indexes of an older format, are removed too."""
    blobs, indexes = BlobCache(), IndexCache()
    blob_files, blob_temps = blobs.usage()
    index_files, index_temps = cache_files(indexes.directory)
    gone: dict[str, list[CacheFile]] = {BLOBS: [], INDEXES: []}
    for name, temps in ((BLOBS, blob_temps), (INDEXES, index_temps)):
        gone[name] += [item for item in temps if (everything or stale(item)) and remove(item.path)]
    gone[INDEXES] += _older_formats(indexes.directory)
    if everything:
        for name, files in ((BLOBS, blob_files), (INDEXES, index_files)):
            gone[name] += [item for item in files if remove(item.path)]
    else:
        limit = blobs.max_bytes if max_bytes is None else max_bytes
        blob_paths = {item.path for item in blob_files}
        for item in evict(blob_files + index_files, limit):
            gone[BLOBS if item.path in blob_paths else INDEXES].append(item)
    return [Pruned(name, len(items), sum(item.size for item in items)) for name, items in gone.items()]


def _older_formats(current: Path) -> list[CacheFile]:
    """Remove the header index directories of formats this imgtool no longer reads; their files."""
    removed: list[CacheFile] = []
    root = current.parent
    if not real_directory(root):
        return removed
    for name in sorted(os.listdir(root)):
        path = root / name
        if name.startswith("index-v") and path != current and real_directory(path):
            files, temps = cache_files(path)
            remove_tree(str(path))
            removed += files + temps
    return removed
