"""What flatten keeps beside its output while it works, named for the process that owns it.

Every staging file and directory is called ``.NAME.imgtool-PID-XXXXXXXX`` (a rootfs or tar being
written, a provenance file), ``.NAME.imgtool-old-PID-XXXXXXXX`` (a replaced output on its way out)
or ``.imgtool-spool-PID-XXXXXXXX`` (decompressed layers), and its owner holds an exclusive
``flock`` on it for as long as it exists. A process killed with SIGKILL cannot remove what it
left; the next flatten that looks in the same directory removes every such leftover whose PID is
no longer running and whose lock nobody holds (the lock also covers a PID that belongs to
another PID namespace), provided it belongs to the user running imgtool.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from typing import Final, Self

from imgtool.errors import OutputError
from imgtool.system.fsutil import remove_tree

_LEFTOVER: Final = re.compile(r"\A\.(?:.+\.imgtool-(?:old-)?|imgtool-spool-)(\d+)-[a-z0-9_]{8}\Z")


_FULL: Final = (errno.ENOSPC, errno.EDQUOT)
_FILE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NAME_LETTERS: Final = "abcdefghijklmnopqrstuvwxyz0123456789_"  # those of tempfile's names
_NAME_ATTEMPTS: Final = 100


def output_path(dest: str) -> str:
    """DEST as an absolute path whose parent is resolved once; its last component is never followed.

    A symlink there is refused: writing through it would put (or, with --force, replace) the
    output wherever it points.
    """
    path = os.path.abspath(dest)
    parent, name = os.path.split(path)
    if not name:
        raise OutputError(f"{dest}: is the root directory")
    if not os.path.isdir(parent):
        raise OutputError(f"{dest}: parent directory {parent} does not exist")
    path = os.path.join(os.path.realpath(parent), name)
    if os.path.islink(path):
        raise OutputError(
            f"{dest}: is a symlink; imgtool does not write through a symlink at the output "
            "(name its target instead, or remove it)"
        )
    return path


def no_space(exc: OSError, directory: str, what: str, hint: str) -> OutputError | None:
    """For a full disk or quota, the error naming the directory that filled and how to move it."""
    if exc.errno not in _FULL:
        return None
    return OutputError(f"{directory}: {exc.strerror or 'No space left on device'} ({what}); {hint}")


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block (a few renames that must happen together).

    A signal that comes meanwhile is delivered as the block ends. Only the main thread
    receives them; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def prefix(name: str, kind: str = "") -> str:
    """The name a staging path for ``name`` starts with (``kind``: "", "old" or "spool")."""
    pid = os.getpid()
    if kind == "spool":
        return f".imgtool-spool-{pid}-"
    return f".{name}.imgtool-{kind + '-' if kind else ''}{pid}-"


class Claim:
    """An exclusive flock on a staging path, held until :meth:`release`: the path is in use."""

    def __init__(self, path: str, fd: int | None = None) -> None:
        """Claim ``path``, or the file already open as ``fd`` (which may then be closed)."""
        if fd is not None:
            self._fd: int | None = os.dup(fd)  # the lock belongs to the open file, not to one descriptor
        else:
            self._fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ClaimedOutput:
    """An output written through staging paths it claims: closing it undoes what was not committed
    (:meth:`abort`), then lets go of its claims. A subclass fills ``_claims`` and says ``abort``."""

    _claims: list[Claim]

    def abort(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        try:
            self.abort()
        finally:
            for claim in self._claims:
                claim.release()
            self._claims = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_dir(directory: str, name: str, kind: str = "") -> tuple[str, Claim]:
    """A new private (0700) staging directory in ``directory``, claimed."""
    path = tempfile.mkdtemp(prefix=prefix(name, kind), dir=directory)
    try:
        return path, Claim(path)
    except BaseException:
        os.rmdir(path)
        raise


def make_file(directory: str, name: str) -> tuple[int, str, Claim]:
    """A new staging file in ``directory``, open for writing, and claimed.

    Its mode is 0666 less the umask, what ``tar -cf`` or ``cp`` gives a new file (``mkstemp``
    would make it 0600 whatever the umask); renamed into place, it is the output as it stays.
    """
    for _ in range(_NAME_ATTEMPTS):
        suffix = "".join(secrets.choice(_NAME_LETTERS) for _ in range(8))
        path = os.path.join(directory, prefix(name) + suffix)
        try:
            fd = os.open(path, _FILE_FLAGS, 0o666)
        except FileExistsError:
            continue
        try:
            return fd, path, Claim(path, fd)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
    raise FileExistsError(errno.EEXIST, f"no unused staging name in {directory}")


def owner_pid(name: str) -> int | None:
    """The PID a staging name carries, or None if it is not one of imgtool's names."""
    found = _LEFTOVER.match(name)
    return int(found.group(1)) if found else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(directory: str) -> list[str]:
    """Remove the leftovers of dead imgtool processes in ``directory``; returns the paths removed.

    Best effort: whatever cannot be listed, locked or removed is left as it is.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in sorted(names):
        pid = owner_pid(name)
        if pid is None or pid == os.getpid() or _running(pid):
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if st.st_uid != os.geteuid() or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                continue
            claim = Claim(path)  # raises if a live process (in any PID namespace) holds it
            try:
                if stat.S_ISDIR(st.st_mode):
                    remove_tree(path)
                else:
                    os.unlink(path)
            finally:
                claim.release()
            removed.append(path)
    return removed
