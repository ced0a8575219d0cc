"""Where imgtool keeps what it may throw away: ``$XDG_CACHE_HOME/imgtool``, else ``~/.cache/imgtool``;
and what its caches share: the files they hold, sizes as people write them."""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from imgtool.errors import UsageError


def cache_home() -> Path:
    """The directory of imgtool's caches (the layer index cache, the blob cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imgtool"


TEMP_PREFIX: Final = ".tmp-"
STALE_TEMP_SECONDS: Final = 24 * 3600  # a temporary file this old was left by a process that died
_SIZE_RE: Final = re.compile(r"(\d+)\s*(?:([KMGT])(i?)B?|B?)", re.IGNORECASE)
_POWERS: Final = {"K": 1, "M": 2, "G": 3, "T": 4}


def parse_size(text: str, what: str) -> int:
    """A size as people write it (and as imgtool shows sizes): bytes, or a number with K, M, G or T,
    powers of 1000 (``10G``, ``500MB``), or with Ki, Mi, Gi or Ti, powers of 1024 (``512MiB``); a
    UsageError naming ``what`` otherwise."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"{what}: not a size: {text!r} (bytes, or a number with K, M, G, T, Ki, Mi, Gi or Ti)"
        )
    number, unit, binary = match.groups()
    if unit is None:
        return int(number)
    size = int(number)
    for _ in range(_POWERS[unit.upper()]):
        size *= 1024 if binary else 1000
    return size


@dataclass(frozen=True, slots=True)
class CacheFile:
    """A file of a cache: ``<directory>/<algorithm>/<name>``; ``used_ns``: when it was last used
    (its mtime, which the caches set when they read a file)."""

    path: Path
    size: int
    used_ns: int


def real_directory(path: Path) -> bool:
    """``path`` is a directory itself, not a symlink to one (a cache never follows a link)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def cache_files(directory: Path) -> tuple[list[CacheFile], list[CacheFile]]:
    """The files of a cache laid out as ``<directory>/<algorithm>/<name>``, and its temporary files
    (being written, or left by a process that died). Symlinks are not followed: a symlink at any
    level is listed among neither."""
    files: list[CacheFile] = []
    temps: list[CacheFile] = []
    if not real_directory(directory):
        return files, temps
    for folder in sorted(os.listdir(directory)):
        sub = directory / folder
        if not real_directory(sub):
            continue
        for name in sorted(os.listdir(sub)):
            try:
                info = os.lstat(sub / name)
            except OSError:
                continue  # removed meanwhile
            if not stat.S_ISREG(info.st_mode):
                continue
            item = CacheFile(sub / name, info.st_size, info.st_mtime_ns)
            (temps if name.startswith(TEMP_PREFIX) else files).append(item)
    return files, temps


def remove(path: Path) -> bool:
    """Remove one file of a cache (a link as the link); False when it was gone already, or cannot be
    removed (a cache that cannot be written only costs speed)."""
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def stale(item: CacheFile, now_ns: int | None = None) -> bool:
    now = time.time_ns() if now_ns is None else now_ns
    return now - item.used_ns > STALE_TEMP_SECONDS * 1_000_000_000


def evict(files: list[CacheFile], max_bytes: int, keep: Path | None = None) -> list[CacheFile]:
    """Remove the least recently used of ``files`` until the rest hold at most ``max_bytes``
    (``keep`` is never removed); returns those removed."""
    total = sum(item.size for item in files)
    removed: list[CacheFile] = []
    for item in sorted(files, key=lambda item: item.used_ns):
        if total <= max_bytes:
            break
        if item.path != keep and remove(item.path):
            total -= item.size
            removed.append(item)
    return removed
