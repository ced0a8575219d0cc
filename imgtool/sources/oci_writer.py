"""An OCI image layout as a copy's destination (``oci:DIR[:REF]``): a new one, or one added to.

Every blob is written to a staging file beside its final name and renamed into place only once
its digest has been checked; ``index.json`` is written last, by rename too. A new layout is built
in a staging directory beside DIR (``.DIR.imgtool-PID-XXXXXXXX``) and renamed to DIR as the last
step. A copy that fails or is interrupted leaves the destination as it was: the staging files are
removed and the blobs it had already placed in an existing layout are removed again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import threading
from collections.abc import Iterator
from typing import Any, Final

from imgtool.errors import ImageFormatError, OutputError
from imgtool.image.compression import CHUNK
from imgtool.image.digest import Digest
from imgtool.image.model import MAX_MANIFEST_BYTES, load_json, parse_index
from imgtool.image.readable import Readable
from imgtool.system.fsutil import remove_tree
from imgtool.system.staging import (
    Claim,
    ClaimedOutput,
    make_dir,
    make_file,
    no_space,
    output_path,
    signals_deferred,
)

REF_NAME: Final = "org.opencontainers.image.ref.name"
OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
LAYOUT_FILE: Final = b'{"imageLayoutVersion":"1.0.0"}'


class LayoutDestination(ClaimedOutput):
    """``directory`` (made if absent; else an OCI layout, or an empty directory); ``ref`` is the
    ``org.opencontainers.image.ref.name`` the copied manifest gets in ``index.json`` (an entry
    with the same ref is replaced, as skopeo replaces it)."""

    holds_indexes = True

    def __init__(self, directory: str, ref: str | None, location: str) -> None:
        self.location = location
        self._directory = directory
        self._ref = ref
        self._target = output_path(directory)
        self._lock = threading.Lock()
        self._placed: list[str] = []  # blobs this copy put into an existing layout
        self._claims: list[Claim] = []
        self._manifest: dict[str, Any] | None = None
        self._staging: str | None = None
        self._committed = False
        self._index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        if os.path.lexists(self._target):
            if not os.path.isdir(self._target):
                raise OutputError(f"{directory}: exists and is not a directory (an OCI layout is one)")
            has_layout = os.path.lexists(os.path.join(self._target, "oci-layout"))
            if has_layout:
                self._index = self._read_index(directory)
            elif os.listdir(self._target):
                raise OutputError(f"{directory}: is neither an OCI layout (no oci-layout file) nor empty")
            self._root = self._target
            self._new_files = not has_layout
        else:
            parent, name = os.path.split(self._target)
            self._staging, claim = make_dir(parent, name)
            self._claims.append(claim)
            self._root = self._staging
            self._new_files = True
        self._blobs = os.path.join(self._root, "blobs", "sha256")
        for path in (os.path.dirname(self._blobs), self._blobs):
            if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
                raise OutputError(f"{path}: is not a directory; imgtool does not write through a symlink")
            if not os.path.lexists(path):
                os.mkdir(path)

    def _read_index(self, directory: str) -> dict[str, Any]:
        path = os.path.join(self._target, "index.json")
        what = f"{directory}: index.json"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise ImageFormatError(f"{what}: cannot be read: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
        doc = load_json(data, what)
        parse_index(doc, what)  # refused here, before anything is written, if it is not an index
        if not isinstance(doc, dict):  # pragma: no cover - parse_index refuses it
            raise ImageFormatError(f"{what}: not a JSON object")
        return doc

    def blob_path(self, digest: Digest) -> str:
        """Where the blob ``digest`` is (or goes) in the layout being written."""
        return self._path(digest)

    def _path(self, digest: Digest) -> str:
        if digest.algorithm != "sha256":
            raise ImageFormatError(f"{self.location}: blob {digest}: only sha256 blobs are written")
        return os.path.join(self._blobs, digest.hex)

    def has_blob(self, digest: Digest, size: int) -> bool:
        """A blob already in the layout is kept if it is a regular file of the size it should be
        (its content was verified when it was written; ``imgtool verify`` checks it again)."""
        try:
            st = os.lstat(self._path(digest))
        except FileNotFoundError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_size == size

    def put_blob(self, digest: Digest, size: int, reader: Readable) -> None:
        final = self._path(digest)
        fd, staging, claim = make_file(self._blobs, digest.hex)
        try:
            try:
                with os.fdopen(os.dup(fd), "wb", buffering=0) as out:
                    while data := reader.read(CHUNK):
                        out.write(data)
                    os.fsync(out.fileno())
            except OSError as exc:
                full = no_space(exc, self._blobs, f"writing blob {digest}", "free some space there")
                raise (full or OutputError(f"{final}: cannot be written: {exc.strerror}")) from exc
            # The reader has reached its end: the digest and size are checked.
            with self._lock:
                os.rename(staging, final)
                if not self._new_files:
                    self._placed.append(final)
        except BaseException:
            if os.path.lexists(staging):
                os.unlink(staging)
            raise
        finally:
            os.close(fd)
            claim.release()

    def put_manifest(self, data: bytes, media_type: str, digest: Digest) -> None:
        self.put_child(data, media_type, digest)
        entry: dict[str, Any] = {"mediaType": media_type, "digest": str(digest), "size": len(data)}
        if self._ref:
            entry["annotations"] = {REF_NAME: self._ref}
        self._manifest = entry

    def put_child(self, data: bytes, media_type: str, digest: Digest) -> None:
        if Digest.of_bytes(data) != digest:
            raise ImageFormatError(f"{self.location}: manifest bytes do not match {digest}")
        if not self.has_blob(digest, len(data)):
            self.put_blob(digest, len(data), _Bytes(data))

    def commit(self) -> None:
        assert self._manifest is not None
        # Into an existing layout, under its lock, taken before signals are held back: a copy
        # waiting for another stays interruptible. A new one is this copy's own until renamed.
        lock = _locked(self._root) if self._staging is None else contextlib.nullcontext()
        with lock, signals_deferred():
            self._commit(self._manifest)

    def _commit(self, entry: dict[str, Any]) -> None:
        """index.json with this copy's entry, read again under the layout's lock: another copy into
        the same layout may have added its own since this one began."""
        if self._staging is None and os.path.lexists(os.path.join(self._target, "index.json")):
            self._index = self._read_index(self._directory)
        kept = [
            m
            for m in self._index.get("manifests", [])
            if not (
                isinstance(m, dict)
                and _ref_of(m) == self._ref
                and (self._ref or m.get("digest") == entry["digest"])
            )
        ]
        self._index["manifests"] = [*kept, entry]
        index = json.dumps(self._index, separators=(",", ":")).encode()
        if self._new_files and not os.path.lexists(os.path.join(self._root, "oci-layout")):
            self._write_file("oci-layout", LAYOUT_FILE)
        self._write_file("index.json", index)
        if self._staging is not None:
            os.chmod(self._staging, 0o755)  # noqa: S103 - a layout is as readable as skopeo's
            try:
                os.rename(self._staging, self._target)  # an empty directory there is replaced
            except OSError as exc:
                raise OutputError(
                    f"{self._target}: cannot be put into place: {exc.strerror} "
                    "(did it appear while the copy ran?)"
                ) from exc
            self._staging = None
        self._placed = []  # an interrupt held back until here must not undo a copy now visible
        self._committed = True

    def _write_file(self, name: str, data: bytes) -> None:
        fd, staging, claim = make_file(self._root, name)
        try:
            with os.fdopen(os.dup(fd), "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.rename(staging, os.path.join(self._root, name))
        except BaseException:
            if os.path.lexists(staging):
                os.unlink(staging)
            raise
        finally:
            os.close(fd)
            claim.release()

    def abort(self) -> None:
        """What this copy placed is removed: the staging directory of a new layout, the blobs it
        added to an existing one (and, in a directory that was empty, everything it made there)."""
        if self._committed:
            return
        with self._lock:
            placed, self._placed = self._placed, []
        for path in placed:
            if os.path.lexists(path):
                os.unlink(path)
        if self._staging is not None:
            remove_tree(self._staging)
            self._staging = None
        elif self._new_files:  # a directory that was empty is left empty
            for name in ("blobs", "oci-layout", "index.json"):
                path = os.path.join(self._root, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    remove_tree(path)
                elif os.path.lexists(path):
                    os.unlink(path)


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """The layout's lock, an exclusive ``flock`` on its directory (no file is added to the layout),
    held while its index.json is read and replaced."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ref_of(entry: dict[str, Any]) -> str | None:
    annotations = entry.get("annotations")
    if isinstance(annotations, dict):
        ref = annotations.get(REF_NAME)
        return ref if isinstance(ref, str) else None
    return None


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0

    def read(self, n: int = -1, /) -> bytes:
        end = len(self._data) if n < 0 else self._at + n
        piece = bytes(self._data[self._at : end])
        self._at += len(piece)
        return piece
