"""Write a merged view as one PAX tar stream.

Members come in tree order (each directory followed by everything under it,
names in byte order), which is what GNU tar needs to restore directory times,
and each hardlink follows the path it links to. The same image always gives
the same bytes. Every layer is read once, front to back; layers are read side
by side, and a file that a layer holds earlier than tree order needs it is
kept aside (small ones in memory, large ones in a temporary file) until then.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import IO, BinaryIO, Final

from imgtool.errors import InterruptedAfterOutputError, LayerError, OutputError, UsageError
from imgtool.flatten.plan import InodeKey, WritePlan, make_plan, trim_spool
from imgtool.flatten.tarwriter import TarWriter
from imgtool.image.compression import Compression, compressing
from imgtool.layers.tarreader import HARDLINK, REGULAR, zero_chunks
from imgtool.layers.tarstream import IMPLIED_DIR, KIND_TYPEFLAGS, Entry, Kind, stored_regions, stored_size
from imgtool.merge.index import check_indexed
from imgtool.merge.overlay import Node
from imgtool.merge.spool import release_range
from imgtool.merge.view import LayerData, MergedView
from imgtool.progress import NoProgress, Progress
from imgtool.system.staging import make_file, no_space, output_path, signals_deferred

# The kinds written as a header alone, with their typeflags (a file's data follows its header).
_TYPEFLAGS: Final = {
    kind: KIND_TYPEFLAGS[kind] for kind in (Kind.DIR, Kind.SYMLINK, Kind.CHAR, Kind.BLOCK, Kind.FIFO)
}
_MEMORY_HOLD_ENTRY: Final = 1 << 16
_MEMORY_HOLD_TOTAL: Final = 32 << 20
_CHUNK: Final = 1 << 20


def _name(path: bytes, is_dir: bool) -> bytes:
    if not path:
        return b"./"
    return path + b"/" if is_dir else path


def _add_header(tar: TarWriter, path: bytes, node: Node) -> None:
    entry = node.content if not node.is_dir else (node.entry or IMPLIED_DIR)
    assert entry is not None
    tar.add(
        _name(path, node.is_dir),
        _TYPEFLAGS.get(entry.kind, REGULAR),
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        size=entry.size if entry.kind not in _TYPEFLAGS else 0,
        mtime_ns=entry.mtime_ns,
        linkname=entry.link if entry.kind == Kind.SYMLINK else b"",
        devmajor=entry.devmajor,
        devminor=entry.devminor,
        xattrs=entry.xattrs,
    )


class _LayerCursor:
    """One layer's entries, advanced on demand to those the tar needs, in whatever order it needs them."""

    def __init__(
        self, view: MergedView, number: int, wanted: set[int], progress: Progress, max_size: int | None
    ) -> None:
        self.what = view.image.layers[number].what
        self._wanted = wanted
        self._data = LayerData(view, number, progress, max_size)
        self._held: dict[int, IO[bytes]] = {}
        self._held_in_memory = 0
        if self._data.spool_fd is None:
            self._reader = self._data.reader
            self._entries: Iterator[Entry] = iter(self._reader)

    def copy(self, entry: Entry, tar: TarWriter) -> None:
        """Write the data of the entry with this ordinal (which must still be wanted) into the tar."""
        if self._data.spool_fd is not None:
            self._wanted.discard(entry.ordinal)
            at = 0  # a sparse file's holes become zeros: the tar holds a plain file
            for start, offset, length in stored_regions(entry):
                for zeros in zero_chunks(start - at):
                    tar.write_data(zeros)
                tar.write_from(self._data.spool_fd, offset, length)  # copies, never lends: see there
                at = start + length
            for zeros in zero_chunks(entry.size - at):
                tar.write_data(zeros)
            release_range(self._data.spool_fd, entry.offset, stored_size(entry))  # each entry is copied once
            return
        written = 0
        for chunk in self.data(entry):
            tar.write_data(chunk)
            written += len(chunk)
        if written != entry.size:
            raise LayerError(f"{self.what}: data of entry {entry.ordinal} ended early")

    def data(self, entry: Entry) -> Iterator[bytes | memoryview]:
        """The data of the entry with this ordinal, from the layer stream."""
        self._wanted.discard(entry.ordinal)
        held = self._held.pop(entry.ordinal, None)
        if held is not None:
            held.seek(0)
            with held:
                while chunk := held.read(_CHUNK):
                    yield chunk
            return
        for found in self._entries:
            if found.ordinal == entry.ordinal:
                check_indexed(found, entry, self.what)
                while data := self._reader.read_data(_CHUNK):
                    yield data
                return
            if found.ordinal in self._wanted and found.ordinal not in self._held:
                self._hold(found)
        raise LayerError(f"{self.what}: entry {entry.ordinal} is missing from the layer")

    def _hold(self, found: Entry) -> None:
        """Keep aside an entry the tar needs later than the layer holds it."""
        in_memory = (
            found.size <= _MEMORY_HOLD_ENTRY and self._held_in_memory + found.size <= _MEMORY_HOLD_TOTAL
        )
        try:
            holder: IO[bytes] = io.BytesIO() if in_memory else tempfile.TemporaryFile(prefix="imgtool-")  # noqa: SIM115
            if in_memory:
                self._held_in_memory += found.size
            try:
                while chunk := self._reader.read_data(_CHUNK):
                    holder.write(chunk)
            except BaseException:
                holder.close()
                raise
        except OSError as exc:
            where = f"holding {found.size} bytes of {self.what} aside for the tar"
            full = no_space(exc, tempfile.gettempdir(), where, "set TMPDIR to a larger directory")
            if full is None:
                raise
            raise full from exc
        self._held[found.ordinal] = holder

    @property
    def done(self) -> bool:
        return not self._wanted

    def close(self, complete: bool) -> None:
        """With ``complete``, read the rest so that both digests are checked."""
        for holder in self._held.values():
            holder.close()
        self._data.close(complete)


def write_tar(
    view: MergedView,
    out: BinaryIO,
    progress: Progress | None = None,
    max_size: int | None = None,
    plan: WritePlan | None = None,
    *,
    compression: Compression = Compression.NONE,
    level: int | None = None,
    linked: Mapping[InodeKey, bytes] | None = None,
) -> int:
    """Write the tar to ``out``, compressed with ``compression`` (at ``level``: its default if None);
    returns the number of bytes of the tar (before compression). ``linked``: inodes whose paths are
    all written as hardlinks to the path given (see :func:`make_plan`)."""
    plan = plan or make_plan(view.tree, linked)
    trim_spool(view, plan)
    progress = progress or NoProgress()
    progress.start("writing", sum(view.image.layers[i].size for i in plan.layers_to_read()))
    with compressing(out, compression, level) as sink:
        tar = TarWriter(sink)
        _write_members(view, tar, plan, progress, max_size, linked=linked)
    progress.finish()
    return tar.bytes_written


def _write_members(
    view: MergedView,
    tar: TarWriter,
    plan: WritePlan,
    progress: Progress,
    max_size: int | None,
    *,
    linked: Mapping[InodeKey, bytes] | None,
) -> None:
    cursors: dict[int, _LayerCursor] = {}
    wanted = {layer: set(ordinals) for layer, ordinals in plan.data.items()}
    first_path: dict[InodeKey, bytes] = dict(linked or {})
    try:
        for path, node in view.tree.walk():
            if node.is_dir:
                _add_header(tar, path, node)
                continue
            layer, entry = node.inode or (0, IMPLIED_DIR)
            key = (layer, entry.ordinal)
            if key in plan.shared and key in first_path:
                tar.add(
                    path,
                    HARDLINK,
                    mode=entry.mode,
                    uid=entry.uid,
                    gid=entry.gid,
                    mtime_ns=entry.mtime_ns,
                    linkname=first_path[key],
                )
                continue
            if key in plan.shared:
                first_path[key] = path
            _add_header(tar, path, node)
            if entry.kind != Kind.FILE or entry.size == 0:
                continue
            cursor = cursors.get(layer)
            if cursor is None:
                cursor = cursors[layer] = _LayerCursor(view, layer, wanted[layer], progress, max_size)
            cursor.copy(entry, tar)
            tar.end_data(entry.size)
            if cursor.done:
                cursors.pop(layer).close(complete=True)
        tar.close()
    finally:
        for cursor in cursors.values():
            cursor.close(complete=False)


def check_tar_destination(dest: str, force: bool) -> str:
    """Check a tar file may be written at DEST; returns its path (parent resolved, DEST not a symlink)."""
    target = output_path(dest)
    if os.path.isdir(target):
        raise OutputError(f"{dest}: is a directory")
    if os.path.lexists(target) and not force:
        raise OutputError(f"{dest}: already exists (use --force to replace it)")
    return target


def check_tar_stream(out: BinaryIO) -> None:
    """Refuse to write a tar over a terminal (as ``docker save`` does)."""
    try:
        terminal = os.isatty(out.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        terminal = False
    if terminal:
        raise UsageError("refusing to write a tar to a terminal; use -o FILE or a pipe")


def flatten_to_tar_file(
    view: MergedView,
    dest: str,
    progress: Progress | None = None,
    max_size: int | None = None,
    force: bool = False,
    *,
    then: Callable[[], None] | None = None,
    plan: WritePlan | None = None,
    compression: Compression = Compression.NONE,
    level: int | None = None,
) -> int:
    """Write the tar (compressed with ``compression``) to a file, atomically: a claimed temporary
    sibling renamed into place at the end.

    ``then`` runs right after the rename, with interrupts held back until both are done.
    """
    target = check_tar_destination(dest, force)
    directory = os.path.dirname(target)
    try:
        fd, staging, claim = make_file(directory, os.path.basename(target))
    except OSError as exc:
        raise OutputError(f"{dest}: cannot write there: {exc.strerror or exc}") from exc
    placed = False
    try:
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as handle:
                written = write_tar(
                    view, handle, progress, max_size, plan, compression=compression, level=level
                )
            with signals_deferred():
                os.replace(staging, target)
                placed = True
                if then is not None:
                    then()
        except KeyboardInterrupt as exc:
            if not placed:
                os.unlink(staging)
                raise
            raise InterruptedAfterOutputError(f"interrupted: output written to {dest}") from exc
        except OSError as exc:
            os.unlink(staging)
            full = no_space(exc, directory, f"writing {os.path.basename(target)}", "choose another -o")
            raise full or OutputError(f"cannot write {dest}: {exc.strerror or exc}") from exc
        except BaseException:
            with contextlib.suppress(FileNotFoundError):  # gone if ``then`` failed after the rename
                os.unlink(staging)
            raise
    finally:
        claim.release()
    return written
