"""Write a merged view into a directory, confined to it, appearing there atomically.

The tree is resolved in memory, so every parent imgtool writes into is a
directory it created itself; symlinks from the image are only ever created,
never followed (files are opened with O_NOFOLLOW|O_EXCL, links and metadata
calls do not follow). The rootfs is built in a hidden sibling directory and
renamed into place at the end; on any error or interrupt it is removed.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Final

from imgtool.errors import ImgtoolError, InterruptedAfterOutputError, LayerError, OutputError
from imgtool.flatten.plan import WritePlan, inode_key, make_plan, trim_spool
from imgtool.image.image import Image
from imgtool.layers.paths import display
from imgtool.layers.tarreader import is_hole
from imgtool.layers.tarstream import Entry, Kind, stored_regions, stored_size
from imgtool.merge.index import check_indexed
from imgtool.merge.overlay import Node
from imgtool.merge.spool import copy_range, release_range
from imgtool.merge.view import LayerData, MergedView
from imgtool.progress import LockedProgress, NoProgress, Progress
from imgtool.system.fsutil import remove_tree
from imgtool.system.staging import Claim, make_dir, no_space, output_path, signals_deferred

Warn = Callable[[str], None]
_OPEN_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DEFAULT_DIR_MODE: Final = 0o755
WRITERS: Final = 2
_NO_OWNER: Final = 0xFFFFFFFF  # (uid_t)-1 tells chown to leave the owner as it is


class _CancelledError(Exception):
    """Stops a writer thread because another one failed (that failure is the one reported)."""


@dataclass(slots=True)
class WriteStats:
    paths: int = 0
    data_bytes: int = 0
    skipped_owner: int = 0
    skipped_devices: int = 0
    skipped_xattrs: int = 0


@contextlib.contextmanager
def _output_errors(path: bytes, directory: str = "") -> Iterator[None]:
    """Errors writing ``path`` of the rootfs; a full disk names the ``directory`` that filled."""
    try:
        yield
    except OSError as exc:
        what = f"writing {display(path)} of the output"
        full = no_space(exc, directory, what, "choose another -o") if directory else None
        if full is not None:
            raise full from exc
        reason = exc.strerror or str(exc)
        raise OutputError(f"cannot write {display(path)}: {reason}") from exc
    except (OverflowError, ValueError) as exc:  # a time, owner or device number the system cannot hold
        raise OutputError(f"cannot write {display(path)}: {exc}") from exc


class RootfsWriter:
    """Creates the entries of a plan under ``root`` (an empty directory imgtool made)."""

    def __init__(self, root: str, warn: Warn) -> None:
        self.root = os.fsencode(root)
        self.directory = os.path.dirname(root)
        self.root_mode = _DEFAULT_DIR_MODE  # given to the root once the rootfs is in place
        self.warn = warn
        self.privileged = os.geteuid() == 0
        self.stats = WriteStats()
        self.cancelled = threading.Event()  # set when another writer thread failed
        self._lock = threading.Lock()

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + amount)

    def _full(self, path: bytes) -> bytes:
        return self.root + b"/" + path if path else self.root

    # -- metadata -------------------------------------------------------------------------------

    def _chown(self, target: bytes | int, entry: Entry) -> None:
        for owner in (entry.uid, entry.gid):
            if not 0 <= owner < _NO_OWNER:
                raise OverflowError(f"owner {entry.uid}:{entry.gid} is out of range")
        if not self.privileged:
            if entry.uid != os.geteuid() or entry.gid != os.getegid():
                self._count("skipped_owner")
            return
        if isinstance(target, int):
            os.fchown(target, entry.uid, entry.gid)
        else:
            os.chown(target, entry.uid, entry.gid, follow_symlinks=False)

    def _xattrs(self, target: bytes | int, entry: Entry) -> None:
        for name, value in (entry.xattrs or {}).items():
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, value)
                else:
                    os.setxattr(target, name, value, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES):
                    raise
                self._count("skipped_xattrs")

    def _apply(self, target: bytes | int, entry: Entry | None, kind: int) -> None:
        """Owner, then mode (chown clears setuid), xattrs, then times; symlinks get no mode."""
        if entry is None:
            if not isinstance(target, int):
                os.chmod(target, _DEFAULT_DIR_MODE)
                os.utime(target, ns=(0, 0))
            return
        self._chown(target, entry)
        if kind != Kind.SYMLINK:
            os.chmod(target, entry.mode)
        self._xattrs(target, entry)
        times = (entry.mtime_ns, entry.mtime_ns)
        if isinstance(target, int):
            os.utime(target, ns=times)
        else:
            os.utime(target, ns=times, follow_symlinks=False)

    # -- entries --------------------------------------------------------------------------------

    def make_dirs(self, dirs: list[tuple[bytes, Node]]) -> None:
        for path, _node in dirs:
            if path:
                with _output_errors(path, self.directory):
                    os.mkdir(self._full(path), 0o700)

    def make_special(self, path: bytes, node: Node) -> bool:
        """Create a symlink, device, fifo or empty file; False when it had to be skipped."""
        entry = node.content
        assert entry is not None
        full = self._full(path)
        with _output_errors(path, self.directory):
            if entry.kind == Kind.SYMLINK:
                os.symlink(entry.link, full)
            elif entry.kind in (Kind.CHAR, Kind.BLOCK):
                if not self.privileged:
                    self._count("skipped_devices")
                    return False
                kind_bit = stat.S_IFCHR if entry.kind == Kind.CHAR else stat.S_IFBLK
                os.mknod(full, kind_bit | 0o600, os.makedev(entry.devmajor, entry.devminor))
            elif entry.kind == Kind.FIFO:
                os.mkfifo(full, 0o600)
            else:
                os.close(os.open(full, _OPEN_FLAGS, 0o600))
            self._apply(full, entry, entry.kind)
        return True

    def write_file(self, path: bytes, entry: Entry, fill: Callable[[int], None]) -> None:
        """Create a regular file, ``fill(fd)`` writing its ``entry.size`` bytes, then set its metadata."""
        if self.cancelled.is_set():
            raise _CancelledError
        full = self._full(path)
        with _output_errors(path, self.directory):
            fd = os.open(full, _OPEN_FLAGS, 0o600)
            try:
                fill(fd)
                self._apply(fd, entry, Kind.FILE)
            finally:
                os.close(fd)
        self._count("data_bytes", entry.size)

    def link(self, first: bytes, others: list[bytes]) -> None:
        for other in others:
            with _output_errors(other, self.directory):
                os.link(self._full(first), self._full(other), follow_symlinks=False)

    def finish_dirs(self, dirs: list[tuple[bytes, Node]]) -> None:
        """Directory metadata last, deepest first, so writing children cannot disturb it."""
        for path, node in reversed(dirs):
            with _output_errors(path, self.directory):
                self._apply(self._full(path), node.entry, node.kind)
                if not path:  # the root stays private until the whole rootfs is in place
                    self.root_mode = node.entry.mode if node.entry is not None else _DEFAULT_DIR_MODE
                    os.chmod(self.root, 0o700)

    def report(self) -> None:
        skipped = []
        if self.stats.skipped_owner:
            skipped.append(f"ownership of {self.stats.skipped_owner} entries was not set")
        if self.stats.skipped_devices:
            skipped.append(f"{self.stats.skipped_devices} device nodes were not created")
        if skipped:
            self.warn("not running as root: " + " and ".join(skipped))
        if self.stats.skipped_xattrs:
            self.warn(f"{self.stats.skipped_xattrs} extended attributes could not be set on this filesystem")


def write_plan(
    *,
    image: Image,
    view: MergedView,
    plan: WritePlan,
    writer: RootfsWriter,
    progress: Progress,
    max_size: int | None,
) -> None:
    trim_spool(view, plan)
    writer.make_dirs(plan.dirs)
    for path, node in plan.specials:
        if writer.make_special(path, node):
            writer.link(path, plan.links.get(inode_key(node), []))
    layers = plan.layers_to_read()
    progress.start("writing", sum(image.layers[i].size for i in layers))
    shared = LockedProgress(progress)
    # Two layers at a time: creating files is mostly time in the kernel, which a second thread overlaps.
    ordered = sorted(layers, key=lambda number: plan.layer_bytes[number], reverse=True)
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        futures = [
            pool.submit(
                _write_layer_files,
                image=image,
                view=view,
                number=number,
                plan=plan,
                writer=writer,
                progress=shared,
                max_size=max_size,
            )
            for number in ordered
        ]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            writer.cancelled.set()
            for future in futures:
                future.cancel()
            raise
    writer.finish_dirs(plan.dirs)
    writer.stats.paths = plan.path_count
    progress.finish()


def _write_layer_files(
    *,
    image: Image,
    view: MergedView,
    number: int,
    plan: WritePlan,
    writer: RootfsWriter,
    progress: Progress,
    max_size: int | None,
) -> None:
    layer = image.layers[number]
    wanted = plan.data[number]
    data = LayerData(view, number, progress, max_size)
    complete = False
    try:
        if data.spool_fd is not None:
            _write_from_spool(data.spool_fd, number, wanted, plan, writer)
        else:
            reader = data.reader
            for entry in reader:
                target = wanted.get(entry.ordinal)
                if target is None:
                    continue
                path, node = target
                known = node.content
                assert known is not None
                check_indexed(entry, known, layer.what)
                writer.write_file(path, known, _from_stream(reader.read_data, known.size, path))
                writer.link(path, plan.links.get((number, entry.ordinal), []))
        complete = True
    finally:
        data.close(complete)


def _write_from_spool(
    spool_fd: int, number: int, wanted: dict[int, tuple[bytes, Node]], plan: WritePlan, writer: RootfsWriter
) -> None:
    """Each file's data at its offset in the spooled tar, in the order the tar holds them."""
    for ordinal, (path, node) in sorted(wanted.items(), key=lambda item: _offset(item[1][1])):
        known = node.content
        assert known is not None
        writer.write_file(path, known, functools.partial(_copy_into, spool_fd, known))
        writer.link(path, plan.links.get((number, ordinal), []))


def _copy_into(spool_fd: int, entry: Entry, fd: int) -> None:
    # copy_range makes real copies into this regular file, so the range may be released after it.
    if entry.sparse is None:
        copy_range(spool_fd, entry.offset, fd, entry.size)
    else:  # a sparse file keeps its holes: each stored region at its place, then the size
        for at, offset, length in stored_regions(entry):
            os.lseek(fd, at, os.SEEK_SET)
            copy_range(spool_fd, offset, fd, length)
        os.ftruncate(fd, entry.size)
    release_range(spool_fd, entry.offset, stored_size(entry))  # each entry is written once; links follow


def _offset(node: Node) -> int:
    content = node.content
    assert content is not None
    return content.offset


def _from_stream(chunks: Callable[[], bytes | memoryview], size: int, path: bytes) -> Callable[[int], None]:
    def fill(fd: int) -> None:
        remaining = size
        holes = False
        while remaining > 0:
            data = chunks()
            if not data:
                raise LayerError(f"entry {display(path)}: data ended early")
            remaining -= len(data)
            if is_hole(data):  # a sparse file's hole stays a hole
                os.lseek(fd, len(data), os.SEEK_CUR)
                holes = True
                continue
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        if holes:
            os.ftruncate(fd, size)

    return fill


# -- the output directory ---------------------------------------------------------------------


def prepare_destination(dest: str, force: bool) -> tuple[str, bool]:
    """Check DEST may be written; returns its path (parent resolved) and whether it must be replaced."""
    path = output_path(dest)
    if not os.path.lexists(path):
        return path, False
    if not os.path.isdir(path):
        raise OutputError(f"{dest}: exists and is not a directory")
    if os.listdir(path) and not force:
        raise OutputError(f"{dest}: directory is not empty (use --force to replace it)")
    return path, True


def flatten_to_dir(
    view: MergedView,
    dest: str,
    *,
    force: bool = False,
    progress: Progress | None = None,
    max_size: int | None = None,
    warn: Warn | None = None,
    then: Callable[[], None] | None = None,
) -> WriteStats:
    """Write the merged view to ``dest``; on failure ``dest`` is left as it was.

    The rootfs is built in a claimed staging sibling whose root stays 0700 until it is in
    place. ``then`` runs right after it is (provenance goes into place there); a replaced
    old tree is removed last.
    """
    warn = warn or (lambda _m: None)
    target, replace = prepare_destination(dest, force)
    plan = make_plan(view.tree)
    parent = os.path.dirname(target)
    _check_space(parent, plan)
    try:
        staging, claim = make_dir(parent, os.path.basename(target))
    except OSError as exc:
        raise OutputError(f"{dest}: cannot write there: {exc.strerror or exc}") from exc
    writer = RootfsWriter(staging, warn)
    try:
        write_plan(
            image=view.image,
            view=view,
            plan=plan,
            writer=writer,
            progress=progress or NoProgress(),
            max_size=max_size,
        )
        _finish(dest, staging, target, replace, writer.root_mode, then, warn)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_tree(staging)  # already gone if the rootfs was put in place
        raise
    finally:
        claim.release()
    writer.report()
    return writer.stats


def _finish(  # noqa: PLR0917 - one private step of flatten_to_dir, called once
    dest: str,
    staging: str,
    target: str,
    replace: bool,
    root_mode: int,
    then: Callable[[], None] | None,
    warn: Warn,
) -> None:
    """Put the rootfs in place, give its root its mode, run ``then``, remove any old tree.

    Interrupts wait until the rootfs and what ``then`` places are in place; one that comes
    while the old tree is removed says so, and where the rest of it is.
    """
    old: tuple[str, Claim] | None = None
    failure: ImgtoolError | None = None
    placed = False
    try:
        with signals_deferred():
            old = _move_into_place(staging, target, replace)
            placed = True
            os.chmod(target, root_mode)
            if then is not None:
                try:
                    then()
                except ImgtoolError as exc:
                    failure = exc
        if old is not None:
            _remove_old(dest, old, warn)
    except KeyboardInterrupt as exc:
        if not placed:  # came just before the signals were held: nothing has moved
            raise
        if old is not None and os.path.lexists(old[0]):
            raise InterruptedAfterOutputError(
                f"interrupted: output written to {dest}; removing the old tree was interrupted, "
                f"left at {old[0]} (the next flatten there removes it)"
            ) from exc
        raise InterruptedAfterOutputError(f"interrupted: output written to {dest}") from exc
    if failure is not None:
        raise failure


def _remove_old(dest: str, old: tuple[str, Claim], warn: Warn) -> None:
    path, claim = old
    try:
        remove_tree(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        warn(f"output written to {dest}, but the old tree could not be removed ({reason}): left at {path}")
    finally:
        claim.release()


def _check_space(directory: str, plan: WritePlan) -> None:
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    if plan.data_bytes > free:
        raise OutputError(
            f"{directory}: not enough free space: the rootfs needs {plan.data_bytes} bytes, {free} are free"
        )


def _move_into_place(staging: str, target: str, replace: bool) -> tuple[str, Claim] | None:
    """Rename the staging tree to ``target``; a replaced non-empty tree is moved aside and returned."""
    try:
        os.rename(staging, target)  # replaces an empty directory atomically
    except OSError as exc:
        if not replace or exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise OutputError(f"cannot move the rootfs into {target}: {exc.strerror}") from exc
    else:
        return None
    old, claim = make_dir(os.path.dirname(target), os.path.basename(target), "old")
    try:
        os.rename(target, os.path.join(old, "tree"))
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(os.path.join(old, "tree"), target)
            raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.rmdir(old)
        claim.release()
        raise
    return old, claim
