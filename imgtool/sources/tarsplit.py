"""A layer's exact tar, rebuilt from its tar-split file and the directory it was unpacked into.

An engine that unpacks a layer keeps the tar's own bytes (headers, padding, the end of the
archive) in a tar-split file, gzip-compressed JSON lines: a *segment* entry carries raw bytes of
the tar (``payload``, base64), a *file* entry names a member (``name``, or ``name_raw`` in base64
where it is not UTF-8) whose ``size`` bytes of data are read from the directory. Replaying them
in order gives the layer's tar byte for byte, so its diff_id is checked as any blob's.

Every file is opened below the layer directory only, component by component without following a
symlink; a name that climbs out of it is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import zlib
from collections.abc import Iterator
from typing import Any, Final

from imgtool.errors import ImgtoolError, LayerError
from imgtool.image.compression import CHUNK
from imgtool.layers.dirwalk import ChunkStream, file_data, open_dir, open_file
from imgtool.layers.paths import clean_path, escape

_FILE: Final = 1
_SEGMENT: Final = 2
MAX_LINE: Final = 64 << 20  # one JSON line: a segment holds headers, at most a large PAX header


def rebuild_tar(split_path: str, root: str, relative: str, what: str) -> ChunkStream:
    """The tar that ``split_path`` records, its file data read from ``root/relative``."""
    return ChunkStream(_chunks(split_path, root, relative, what))


def _lines(split_path: str, what: str) -> Iterator[bytes]:
    try:
        fd = os.open(split_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise LayerError(f"{what}: cannot open its tar-split file: {exc.strerror}") from None
    try:
        inflater = zlib.decompressobj(wbits=31)
        pending = b""
        offset = 0
        while True:
            data = os.pread(fd, CHUNK, offset)
            offset += len(data)
            try:
                piece = inflater.decompress(data) if data else inflater.flush()
            except zlib.error as exc:
                raise LayerError(f"{what}: its tar-split file is not valid gzip: {exc}") from None
            pending += piece
            *lines, pending = pending.split(b"\n")
            yield from (line for line in lines if line.strip())
            if len(pending) > MAX_LINE:
                raise LayerError(f"{what}: its tar-split file has a line over {MAX_LINE} bytes")
            if not data:
                break
            if inflater.eof and inflater.unused_data:  # gzip members one after another
                rest = inflater.unused_data
                inflater = zlib.decompressobj(wbits=31)
                pending += inflater.decompress(rest)
        if not inflater.eof:
            raise LayerError(f"{what}: its tar-split file is truncated")
        if pending.strip():
            yield pending
    finally:
        os.close(fd)


def _field_bytes(entry: dict[str, object], key: str, what: str) -> bytes:
    value = entry.get(key)
    if value is None:
        return b""
    if not isinstance(value, str):
        raise LayerError(f"{what}: tar-split entry field {key!r} is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise LayerError(f"{what}: tar-split entry field {key!r} is not base64") from None


def _entries(split_path: str, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each entry of the tar-split file (one JSON object a line), with its number."""
    for number, line in enumerate(_lines(split_path, what)):
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            raise LayerError(f"{what}: tar-split entry {number} is not JSON") from None
        if not isinstance(entry, dict):
            raise LayerError(f"{what}: tar-split entry {number} is not an object")
        yield number, entry


def _chunks(split_path: str, root: str, relative: str, what: str) -> Iterator[bytes]:
    directory = open_dir(root, relative, what)
    try:
        for number, entry in _entries(split_path, what):
            kind = entry.get("type")
            if kind == _SEGMENT:
                yield _field_bytes(entry, "payload", what)
            elif kind == _FILE:
                size = entry.get("size", 0)
                if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                    raise LayerError(f"{what}: tar-split entry {number} has no valid size")
                if size:
                    yield from _file(directory, entry, size, what)
            else:
                raise LayerError(f"{what}: tar-split entry {number} has unknown type {kind!r}")
    finally:
        os.close(directory)


def _file(directory: int, entry: dict[str, object], size: int, what: str) -> Iterator[bytes]:
    name = entry.get("name")
    raw = _field_bytes(entry, "name_raw", what) if name is None else None
    if raw is None:
        if not isinstance(name, str):
            raise LayerError(f"{what}: tar-split file entry has no name")
        raw = name.encode("utf-8", "surrogateescape")
    try:
        path = clean_path(raw)
    except ImgtoolError:
        raise LayerError(f"{what}: tar-split names '{escape(raw)}', outside the layer directory") from None
    if not path:
        raise LayerError(f"{what}: tar-split names the layer directory itself as a file")
    fd = open_file(directory, path, what)
    try:
        if os.fstat(fd).st_size != size:
            raise LayerError(
                f"{what}: '{escape(path)}' holds {os.fstat(fd).st_size} bytes; its tar-split says {size}"
            )
        yield from file_data(fd, size, what, path)
    finally:
        os.close(fd)


def tar_size(split_path: str, what: str) -> int:
    """How many bytes the tar ``split_path`` records is, without reading a file of the layer."""
    total = 0
    for _number, entry in _entries(split_path, what):
        if entry.get("type") == _SEGMENT:
            total += len(_field_bytes(entry, "payload", what))
        else:
            size = entry.get("size", 0)
            total += size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0
    return total
