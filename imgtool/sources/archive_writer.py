"""Tar archives as a copy's destination: ``oci-archive:FILE[:REF]`` (an OCI layout in a tar, as
skopeo writes it) and ``docker-archive:FILE[:NAME:TAG]`` (a ``docker save`` tarball, as ``docker
load`` reads it; see :mod:`imgtool.sources.docker_writer`).

Both stage the copy in a private directory beside FILE (``.FILE.imgtool-PID-XXXXXXXX``): the blobs
go into an OCI layout there, each verified by its digest before it is kept. Only when every blob
and the manifest are in does :meth:`commit` write the tar, into a staging file beside FILE, and
rename it to FILE (an existing file is replaced whole, as skopeo replaces an oci-archive). A copy
that fails or is interrupted leaves FILE as it was and removes what it staged; what a copy that
was killed left beside FILE is removed by the next one (:func:`imgtool.system.staging.sweep`).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from typing import IO, Final

from imgtool.errors import OutputError
from imgtool.image.destination import StoredManifest
from imgtool.image.digest import Digest
from imgtool.image.readable import Readable
from imgtool.sources.oci_writer import LayoutDestination
from imgtool.system.fsutil import remove_tree
from imgtool.system.staging import (
    Claim,
    ClaimedOutput,
    make_dir,
    make_file,
    no_space,
    output_path,
    signals_deferred,
    sweep,
)

FILE_MODE: Final = 0o644
DIR_MODE: Final = 0o755

# Fills the tar being written (the archive's members, in order).
Members = Callable[[tarfile.TarFile], None]


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(member(name, len(data)), io.BytesIO(data))


def add_file(tar: tarfile.TarFile, name: str, path: str) -> None:
    """The regular file at ``path`` (one this copy staged) as member ``name``."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        tar.addfile(member(name, os.fstat(f.fileno()).st_size), f)


def member(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    """A member as skopeo writes them: owned by root, mtime 0, readable by all."""
    info = tarfile.TarInfo(name)
    info.size = size if kind == tarfile.REGTYPE else 0
    info.type = kind
    info.mode = DIR_MODE if kind == tarfile.DIRTYPE else FILE_MODE
    info.linkname = link
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class StagedArchive(ClaimedOutput):
    """What both archive destinations share: FILE checked, the staging directory, the layout in it
    holding the blobs, and the tar written and renamed into place."""

    holds_indexes = True

    def __init__(self, path: str, ref: str | None, location: str) -> None:
        self.location = location
        self._target = output_path(path)
        try:
            st = os.lstat(self._target)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(st.st_mode):
                raise OutputError(f"{path}: exists and is not a regular file (an archive is one)")
        parent, self._name = os.path.split(self._target)
        self._parent = parent
        sweep(parent)  # what copies or flattens that were killed left there
        self._staging: str | None
        self._staging, claim = make_dir(parent, self._name)
        self._claims: list[Claim] = [claim]
        try:
            self.layout = LayoutDestination(os.path.join(self._staging, "layout"), ref, location)
        except BaseException:
            self.close()
            raise

    def has_blob(self, digest: Digest, size: int) -> bool:
        return self.layout.has_blob(digest, size)

    def put_blob(self, digest: Digest, size: int, reader: Readable) -> None:
        self.layout.put_blob(digest, size, reader)

    def staging_path(self, name: str) -> str:
        """A path of this copy's own in the staging directory."""
        assert self._staging is not None
        return os.path.join(self._staging, name)

    def write_archive(self, members: Members) -> None:
        """The tar ``members`` fills, written to a staging file and renamed to FILE."""
        fd, staging, claim = make_file(self._parent, self._name)
        try:
            try:
                with os.fdopen(os.dup(fd), "wb") as out:
                    _write_tar(out, members)
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as exc:
                full = no_space(exc, self._parent, f"writing {self._name}", "free some space there")
                raise (full or OutputError(f"{self._target}: cannot be written: {exc.strerror}")) from exc
            with signals_deferred():
                os.rename(staging, self._target)
        except BaseException:
            if os.path.lexists(staging):
                os.unlink(staging)
            raise
        finally:
            os.close(fd)
            claim.release()
        self._remove_staging()

    def _remove_staging(self) -> None:
        if self._staging is not None:
            self.layout.close()
            remove_tree(self._staging)
            self._staging = None

    def abort(self) -> None:
        """What this copy staged is removed; FILE is left as it was (unless the copy committed)."""
        self._remove_staging()


def _write_tar(out: IO[bytes], members: Members) -> None:
    # PAX: a member larger than 8 GiB gets a size record (ustar's field cannot hold it).
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        members(tar)


class OciArchiveDestination(StagedArchive):
    """``oci-archive:FILE[:REF]``: the staged layout, committed, then tarred as skopeo tars it
    (members relative to the layout's root, in sorted order: ``blobs/sha256/...``, ``index.json``,
    ``oci-layout``)."""

    def put_manifest(self, data: bytes, media_type: str, digest: Digest) -> StoredManifest | None:
        self.layout.put_manifest(data, media_type, digest)
        return None

    def put_child(self, data: bytes, media_type: str, digest: Digest) -> None:
        self.layout.put_child(data, media_type, digest)

    def commit(self) -> None:
        self.layout.commit()
        root = self.staging_path("layout")

        def members(tar: tarfile.TarFile) -> None:
            tar.addfile(member("blobs", kind=tarfile.DIRTYPE))
            tar.addfile(member("blobs/sha256", kind=tarfile.DIRTYPE))
            blobs = os.path.join(root, "blobs", "sha256")
            for name in sorted(os.listdir(blobs)):
                add_file(tar, f"blobs/sha256/{name}", os.path.join(blobs, name))
            for name in ("index.json", "oci-layout"):
                add_file(tar, name, os.path.join(root, name))

        self.write_archive(members)
